"""Headless Chromium through Selenium, for the browser checks (label_studio_browser.py,
tensorboard_browser.py), which run as scripts with the Python of .venv-label-studio."""

import sys

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service


def add_arguments(parser, width: int = 1280, height: int = 900) -> None:
  """The browser's flags: where Debian's chromium and chromedriver are, the window."""
  parser.add_argument("--chromium", default="/usr/bin/chromium")
  parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
  parser.add_argument("--width", type=int, default=width)
  parser.add_argument("--height", type=int, default=height)


def start(args, script: str):
  """A headless Chromium driver as `args` (add_arguments) say; None, after one line on
  stderr naming `script`, when it does not start."""
  options = webdriver.ChromeOptions()
  options.binary_location = args.chromium
  for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
               f"--window-size={args.width},{args.height}"):
    options.add_argument(flag)
  try:
    return webdriver.Chrome(service=Service(args.chromedriver), options=options)
  except WebDriverException as e:
    print(f"{script}: Chromium did not start: {e.msg}", file=sys.stderr)
    return None
