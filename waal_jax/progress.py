"""Progress of work that takes a while: a bar with its rate and time left where stderr
is a terminal (tqdm), plain lines where it is not (CI, nohup logs), which say the same
at most every `PLAIN_LINE_SECONDS` and nothing for work shorter than that.

Loops over device calls run ahead of the device (JAX dispatches asynchronously), so a
count taken at dispatch would race to the end and wait there. `Progress.due()` says
when a new count is worth showing (a few times a second on a terminal, every half
minute in plain lines); only then does the caller wait for the device, so the wait
costs a pipeline bubble a few times a second at most, and nothing where nothing is
shown (the training loop checks `Progress.shown` first).

A loop inside one jitted function (BatchBALD's and ProbCover's greedy picks) counts
with `jax.debug.callback(progress.device_tick, count)`: the count reaches the
`Progress` given to `counted_on_device` while the device runs, and nothing when there
is none (the picks are the same either way).

Where the plain lines go: `lines_to(log)` for a block of code (the run's log, which
stamps them with the time), else stderr.
"""

import contextlib
import math
import os
import sys
import time
from typing import Callable, Iterator, Optional

PLAIN_LINE_SECONDS = 30.0
BAR_SECONDS = 0.25
_log: Optional[Callable[[str], None]] = None
_from_device: Optional["Progress"] = None


def on_terminal() -> bool:
  """Whether stderr is a terminal a bar can be drawn on (one of no width, as a pseudo-
  terminal that was never sized, gets the plain lines)."""
  if not sys.stderr.isatty():
    return False
  try:
    return os.get_terminal_size(sys.stderr.fileno()).columns > 0
  except OSError:
    return False


@contextlib.contextmanager
def lines_to(log: Callable[[str], None]) -> Iterator[None]:
  """Plain progress lines inside the block go to `log`."""
  global _log
  before, _log = _log, log
  try:
    yield
  finally:
    _log = before


@contextlib.contextmanager
def counted_on_device(bar: "Progress") -> Iterator["Progress"]:
  """`device_tick`s inside the block update `bar` (close it after the device is done:
  the block should wait for the results)."""
  global _from_device
  before, _from_device = _from_device, bar
  try:
    yield bar
  finally:
    _from_device = before


def device_tick(done) -> None:
  """The host side of `jax.debug.callback(device_tick, count)` in a jitted loop."""
  bar = _from_device
  if bar is not None and bar.due():
    bar.update(int(done))


def _plain_line(message: str) -> None:
  if _log is not None:
    _log(message)
  else:
    print(message, file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
  """12s, 4m05s or 2h10m."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class Progress:
  """`done` of `total` `unit`s of the work called `what`; `update(done)` with the count
  so far, `close()` at the end (or use it in a `with`). `terminal_only`: no plain
  lines (for work whose end is logged anyway, such as an epoch)."""

  def __init__(self, total: int, what: str, unit: str, terminal_only: bool = False):
    self.total, self.what, self.unit = int(total), what, unit
    self.start = self._last = time.monotonic()
    self._bar = None
    if on_terminal():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=self.total, desc=what, unit=unit, leave=False, file=sys.stderr,
                       dynamic_ncols=True, mininterval=BAR_SECONDS)
    self.shown = self._bar is not None or not terminal_only
    self._done = 0

  def due(self) -> bool:
    """Whether a new count would be shown now."""
    if not self.shown:
      return False
    every = BAR_SECONDS if self._bar is not None else PLAIN_LINE_SECONDS
    return time.monotonic() - self._last >= every

  def update(self, done: int) -> None:
    self._last = time.monotonic()
    if self._bar is not None:
      self._bar.update(done - self._done)
    elif self.shown and done < self.total:
      _plain_line(self.line(done, self._last - self.start))
    self._done = done

  def line(self, done: int, seconds: float) -> str:
    """`what: done/total unit (rate, about T left)`."""
    rate = done / seconds if seconds > 0 else math.inf
    left = (self.total - done) / rate if done and rate > 0 else math.inf
    return (f"  {self.what}: {done:,}/{self.total:,} {self.unit} ({rate:,.1f} {self.unit}/s"
            + (f", about {format_duration(left)} left)" if math.isfinite(left) else ")"))

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
