"""SIGINT (Ctrl-C) and SIGTERM (a scheduler's preemption) end a run cleanly.

The drivers call `stop_on_signals()`: either signal then raises `Stopped` (a
KeyboardInterrupt) in the main thread, which unwinds the run like any error, closing
its checkpoints and releasing its workdir, and the driver says in one line how to
resume. Every round is written atomically when it ends, so a stop loses only the round
in progress, which the rerun trains again exactly. `held()` keeps a stop out of those
writes, so none is left half done (Orbax's background commit, a temporary file).
"""

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
  """SIGINT or SIGTERM arrived; `signum` says which."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum


def _stop(signum, frame):
  del frame
  # One stop is enough: later signals (Ctrl-C pressed again, a parent passing SIGTERM on
  # to its children) must not break into the unwinding; kill -9 still ends it at once.
  for s in STOP_SIGNALS:
    signal.signal(s, signal.SIG_IGN)
  raise Stopped(signum)


def stop_on_signals() -> None:
  """SIGINT and SIGTERM raise Stopped from now on (call from the main thread)."""
  for s in STOP_SIGNALS:
    signal.signal(s, _stop)


@contextlib.contextmanager
def held():
  """Delays SIGINT and SIGTERM to the end of the block (in the main thread; signals
  cannot be handled elsewhere), where they act as they would have."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  received = []
  previous = {s: signal.signal(s, lambda signum, _: received.append(signum))
              for s in STOP_SIGNALS}
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, signal.SIG_DFL if handler is None else handler)
    if received:
      signal.raise_signal(received[0])
