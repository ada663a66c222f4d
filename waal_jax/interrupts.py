"""SIGINT (Ctrl-C) and SIGTERM (a scheduler's preemption) end a run cleanly.

The drivers call `stop_on_signals()`: either signal then raises `Stopped` (a
KeyboardInterrupt) in the main thread, which unwinds the run like any error, closing
its checkpoints and releasing its workdir, and the driver says in one line how to
resume. Every round is written atomically when it ends, and its training between
epochs (checkpoints.RoundProgress), so a stop loses only the epochs since the last
save, which the rerun trains again exactly. `held()` keeps a stop out of those writes,
so none is left half done (Orbax's background commit, a temporary file).
"""

import _thread
import contextlib
import signal
import sys
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


_other_unraisable = sys.unraisablehook      # what handles every other such exception


def _deliver_swallowed_stops(unraisable):
  """A signal handled inside a garbage-collector callback or a __del__ (JAX has a gc
  callback) raises Stopped where Python cannot propagate it: it prints "Exception
  ignored in ..." and goes on, and the stop would be lost (_stop has already set both
  signals to be ignored). Such a Stopped is signalled again instead; the handler then
  runs at the main thread's next check, where the exception can propagate (or, landing
  in a callback again, comes back here)."""
  if isinstance(unraisable.exc_value, Stopped):
    signum = unraisable.exc_value.signum
    signal.signal(signum, _stop)
    # From another thread, shortly: raised here, in the hook, it would be lost too.
    again = threading.Timer(0.01, _thread.interrupt_main, (signum,))
    again.daemon = True
    again.start()
    return
  _other_unraisable(unraisable)


def stop_on_signals() -> None:
  """SIGINT and SIGTERM raise Stopped from now on (call from the main thread)."""
  for s in STOP_SIGNALS:
    signal.signal(s, _stop)
  global _other_unraisable
  if sys.unraisablehook is not _deliver_swallowed_stops:
    _other_unraisable, sys.unraisablehook = sys.unraisablehook, _deliver_swallowed_stops


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
