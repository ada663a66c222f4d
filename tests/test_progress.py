"""Progress of long work: plain lines off a terminal, a bar on one, counts from inside
jitted loops. (The lines a run's evaluation and slow queries give: test_rounds.)"""

import io
import os

import jax
import jax.numpy as jnp

from waal_jax import progress


def test_a_plain_line_says_the_count_rate_and_time_left():
  bar = progress.Progress(100, "scoring the pool", "examples")
  # 25 of 100 in 5 s: 5 a second, 75 left take 15 s.
  assert bar.line(25, 5.0) == "  scoring the pool: 25/100 examples (5.0 examples/s, about 15s left)"
  assert bar.line(0, 1.0) == "  scoring the pool: 0/100 examples (0.0 examples/s)"


def test_plain_lines_go_to_the_run_s_log_at_most_every_interval(monkeypatch):
  lines = []
  monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 0.0)
  with progress.lines_to(lines.append), progress.Progress(3, "work", "items") as bar:
    for done in (1, 2, 3):
      assert bar.due()
      bar.update(done)
  # The last count is the end of the work: no line for it.
  assert [line.split(" (")[0] for line in lines] == ["  work: 1/3 items", "  work: 2/3 items"]
  monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 3600.0)
  assert not progress.Progress(3, "work", "items").due()     # short work says nothing
  assert not progress.Progress(3, "epoch", "steps", terminal_only=True).shown


def test_on_a_terminal_a_bar_shows_rate_and_time_left(monkeypatch):
  screen = io.StringIO()
  monkeypatch.setattr(progress, "on_terminal", lambda: True)
  monkeypatch.setattr(progress, "BAR_SECONDS", 0.0)     # draw every update
  monkeypatch.setattr(progress.sys, "stderr", screen)
  with progress.Progress(200, "training", "steps", terminal_only=True) as bar:
    assert bar.shown
    bar.update(50)
  shown = screen.getvalue()
  assert "training" in shown and "50/200" in shown and "steps/s" in shown and "<" in shown


def test_a_jitted_loop_reports_its_count_while_it_runs(monkeypatch):
  monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 0.0)
  lines = []

  @jax.jit
  def count_to(n):
    def body(i, total):
      jax.debug.callback(progress.device_tick, i + 1)
      return total + i
    return jax.lax.fori_loop(0, n, body, jnp.int32(0))

  with progress.lines_to(lines.append), progress.Progress(5, "picks", "picks") as bar, \
      progress.counted_on_device(bar):
    assert int(count_to(5)) == 10
  assert [line.split(" (")[0] for line in lines] == [f"  picks: {n}/5 picks" for n in range(1, 5)]
  assert int(count_to(5)) == 10       # no Progress: the callback does nothing


def test_a_terminal_of_no_width_gets_plain_lines(monkeypatch):
  # A pseudo-terminal that was never sized (some CI runners) would show tqdm's bar as
  # nothing at all.
  class Terminal(io.StringIO):
    def isatty(self):
      return True

    def fileno(self):
      return 2

  monkeypatch.setattr(progress.sys, "stderr", Terminal())
  monkeypatch.setattr(progress.os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
  assert not progress.on_terminal()
  monkeypatch.setattr(progress.os, "get_terminal_size", lambda fd: os.terminal_size((80, 24)))
  assert progress.on_terminal()
