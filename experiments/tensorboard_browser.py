"""Opens a running TensorBoard in headless Chromium and says which tags its page shows,
with a screenshot of the page (filtered to some tags, if asked).

Runs with a Python that has Selenium (the Label Studio virtualenv has it:
`./install.sh --label-studio`) and Debian's chromium and chromedriver:

    .venv-label-studio/bin/python experiments/tensorboard_browser.py \\
        --url http://localhost:6006 --tags round/test_accuracy,epoch/loss \\
        --runs waal/seed_0 --filter 'round/test|epoch/loss' --screenshot tensorboard.png

Prints one JSON line: {"shown": [the tags of the page's cards], "runs": [the runs
listed], "title"}. Exits 1 with one line when the page has no card for a tag of --tags,
or does not list a run of --runs, within --timeout seconds.
`experiments/tensorboard_screenshot.sh` makes the docs' screenshot with it.
"""

import argparse
import json
import re
import sys
import time

from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import headless_chromium  # (this folder: the script runs as a file)

# The tags of the cards on the page (TensorBoard 2.21's Time Series dashboard: a
# card-view per tag, titled by a tb-truncated-path; scalars and histograms alike). A
# card draws its chart once scrolled into view.
_CARDS = """
return [...document.querySelectorAll('card-view .heading tb-truncated-path[title]')]
    .map(t => t.title);
"""


# The points as recorded, on axes that hold them all: the smoothing set (its number
# field, as typing into it would) and "Ignore outliers in chart scaling" unticked.
_SETTINGS = """
const field = document.querySelector('.slider-row input[type=number]');
if (field) {
  field.value = String(arguments[0]);
  field.dispatchEvent(new Event('input', {bubbles: true}));
  field.dispatchEvent(new Event('change', {bubbles: true}));
}
for (const row of document.querySelectorAll('mat-checkbox')) {
  const box = row.querySelector('input[type=checkbox]');
  if (box && box.checked && /Ignore outliers/.test(row.textContent)) box.click();
}
"""


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--url", required=True, help="the TensorBoard, e.g. http://localhost:6006")
  parser.add_argument("--tags", required=True, help="comma-separated tags the page must show")
  parser.add_argument("--runs", default="", help="comma-separated run names the page must "
                      "list (e.g. waal/seed_0)")
  parser.add_argument("--filter", default="", help="TensorBoard's tag filter (a regex) to "
                      "type in, so that the screenshot shows those cards")
  parser.add_argument("--screenshot", required=True, help="PNG written of the page")
  parser.add_argument("--smoothing", type=float, default=0.0, help="the charts' smoothing")
  parser.add_argument("--timeout", type=float, default=120.0)
  headless_chromium.add_arguments(parser, 1600, 1100)
  args = parser.parse_args()
  wanted = [t for t in args.tags.split(",") if t]
  driver = headless_chromium.start(args, "tensorboard_browser.py")
  if driver is None:
    return 1
  try:
    deadline = time.monotonic() + args.timeout
    while True:                    # a TensorBoard just started takes seconds to listen
      try:
        driver.get(f"{args.url}/#timeseries")
        break
      except WebDriverException as e:
        if time.monotonic() > deadline:
          print(f"tensorboard_browser.py: {args.url} did not answer within "
                f"{args.timeout:.0f} s ({e.msg.splitlines()[0]})", file=sys.stderr)
          return 1
        time.sleep(1)
    wait = WebDriverWait(driver, args.timeout, poll_frequency=0.5)
    shown = []
    try:
      wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "card-view"))
      # (TensorBoard smooths by 0.6 unless told.) The settings pane then closes: it
      # would cover the charts.
      driver.execute_script(_SETTINGS, args.smoothing)
      for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close side pane']"):
        button.click()
      tag_filter = driver.find_element(By.CSS_SELECTOR, "input[placeholder='Filter tags (regex)']")
      # The dashboard draws only the cards in view: each tag is filtered for in turn.
      for tag in wanted:
        tag_filter.send_keys(Keys.CONTROL, "a")
        tag_filter.send_keys(f"^{re.escape(tag)}$")
        wait.until(lambda d, tag=tag: tag in d.execute_script(_CARDS))
        shown.append(tag)
      tag_filter.send_keys(Keys.CONTROL, "a")
      tag_filter.send_keys(args.filter or Keys.DELETE)
      tag_filter.send_keys(Keys.ESCAPE)     # (the filter's suggestions would cover the charts)
      wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "scalar-card canvas"))
    except TimeoutException:
      driver.save_screenshot(args.screenshot)
      missing = [t for t in wanted if t not in shown]
      print(f"tensorboard_browser.py: {args.url} showed no card for {', '.join(missing)} "
            f"within {args.timeout:.0f} s (screenshot: {args.screenshot})", file=sys.stderr)
      return 1
    page = driver.find_element(By.TAG_NAME, "body").text
    missing_runs = [r for r in args.runs.split(",") if r and r not in page]
    if missing_runs:
      driver.save_screenshot(args.screenshot)
      print(f"tensorboard_browser.py: the page lists no run {', '.join(missing_runs)} "
            f"(screenshot: {args.screenshot})", file=sys.stderr)
      return 1
    time.sleep(2)                  # the charts finish their transitions
    driver.save_screenshot(args.screenshot)
    print(json.dumps({"shown": sorted(shown), "runs": [r for r in args.runs.split(",") if r],
                      "title": driver.title}))
    return 0
  finally:
    driver.quit()


if __name__ == "__main__":
  sys.exit(main())
