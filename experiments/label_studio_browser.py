"""Opens a task of a Label Studio project in headless Chromium, as the person would, and
says what the page shows: the task's image (its size as loaded) and the class choices.

Runs with the Python of .venv-label-studio (Selenium is installed there by
`./install.sh --label-studio`) and Debian's chromium and chromedriver:

    LABEL_STUDIO_PASSWORD=... .venv-label-studio/bin/python experiments/label_studio_browser.py \\
        --url http://localhost:8080 --username labeler@localhost --project 1 --task 1 \\
        --screenshot task.png

Prints one JSON line: {"image_width", "image_height", "choices", "title"}. Exits 1 with
one line when the page does not show them within --timeout seconds.
"""

import argparse
import json
import os
import sys
import time

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

import headless_chromium  # (this folder: the script runs as a file)

# The image the labeling interface shows, once loaded (a data: URL of the task), and the
# labels of its choices (radio buttons: single-radio in waal_jax's interface), once
# both are on the page.
_SHOWN = """
const image = [...document.querySelectorAll('img')].find(
    i => i.src.startsWith('data:image') && i.complete && i.naturalWidth > 0);
const choices = [...document.querySelectorAll('label')]
    .filter(l => l.querySelector('input[type=radio], input[type=checkbox]'))
    .map(l => { const c = l.cloneNode(true);           // without the hotkey, [1]
                c.querySelectorAll('sup').forEach(s => s.remove());
                return c.textContent.trim(); })
    .filter(t => t);
return image && choices.length ? {image_width: image.naturalWidth,
                                   image_height: image.naturalHeight, choices: choices} : null;
"""


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--url", required=True, help="the server, e.g. http://localhost:8080")
  parser.add_argument("--username", required=True, help="the account's e-mail")
  parser.add_argument("--project", type=int, required=True)
  parser.add_argument("--task", type=int, required=True)
  parser.add_argument("--screenshot", required=True, help="PNG written of the page")
  parser.add_argument("--timeout", type=float, default=120.0)
  headless_chromium.add_arguments(parser)
  args = parser.parse_args()
  password = os.environ.get("LABEL_STUDIO_PASSWORD", "")
  if not password:
    print("label_studio_browser.py: set LABEL_STUDIO_PASSWORD", file=sys.stderr)
    return 1
  driver = headless_chromium.start(args, "label_studio_browser.py")
  if driver is None:
    return 1
  try:
    wait = WebDriverWait(driver, args.timeout)
    driver.get(f"{args.url}/user/login/")
    wait.until(expected_conditions.presence_of_element_located((By.NAME, "email")))
    driver.find_element(By.NAME, "email").send_keys(args.username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form [type=submit]").click()
    wait.until(lambda d: "/user/login" not in d.current_url)
    driver.get(f"{args.url}/projects/{args.project}/data?task={args.task}")
    try:
      shown = wait.until(lambda d: d.execute_script(_SHOWN))
    except TimeoutException:
      driver.save_screenshot(args.screenshot)
      print(f"label_studio_browser.py: task {args.task} of project {args.project} showed no "
            f"image and choices within {args.timeout:.0f} s (screenshot: {args.screenshot})",
            file=sys.stderr)
      return 1
    time.sleep(1)                  # the interface settles (fonts, the image's zoom)
    driver.save_screenshot(args.screenshot)
    shown["title"] = driver.title
    print(json.dumps(shown))
    return 0
  finally:
    driver.quit()


if __name__ == "__main__":
  sys.exit(main())
