"""One round of every strategy, and of the H-divergence ablation, through the loop; a
round killed between epochs (of one seed, and of a vmapped batch of seeds), resumed.

Plumbing, on synthetic Fashion-MNIST-shaped images (conftest).
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import serialization

from conftest import TINY, run_in_process, tiny_loop_config, write_synthetic_fashion_mnist
from experiments import report
from waal_jax import checkpoints
from waal_jax import loop
from waal_jax import progress
from waal_jax import seeds
from waal_jax import strategies
from waal_jax import train


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return write_synthetic_fashion_mnist(str(tmp_path_factory.mktemp("cache")))


# The progress lines (waal_jax/progress.py) of a query's slow parts, beside those of
# the test evaluation that every round has.
PROGRESS_LINES = {"batchbald": ("scoring the pool", "BatchBALD"), "deepfool": ("DeepFool",),
                  "probcover": ("ProbCover",), "bald": ("scoring the pool",)}


@pytest.mark.parametrize("strategy", strategies.names())
def test_one_round_of_each_strategy(strategy, cache_dir, tmp_path, monkeypatch):
  monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 0.0)   # a line at every count
  lines = []
  results = loop.run(tiny_loop_config(cache_dir, **{"query.strategy": strategy}), str(tmp_path),
                     log=lines.append)
  for what in ("evaluation",) + PROGRESS_LINES.get(strategy, ()):
    assert any(line.startswith(f"  {what}: ") for line in lines), (what, lines)
  rounds = results["rounds"]
  assert [r["num_labeled"] for r in rounds] == [60, 90]
  queried = rounds[0]["queried_indices"]
  assert len(queried) == len(set(queried)) == 30
  assert rounds[1]["queried_indices"] == []
  assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rounds)
  epoch = rounds[0]["epoch_metrics"][0]
  if strategy == "waal":       # auto: WAAL trains adversarially over the unlabeled pool
    assert epoch["steps"] == 17 and epoch["gradient_penalty"] > 0   # 540 / 32
  else:                        # auto: the baselines train on the labeled set alone
    assert epoch["steps"] == 2 and epoch["adversarial"] == 0.0      # 60 / 32


@pytest.mark.parametrize("strategy", ["margin", "waal"])
def test_h_divergence_ablation(strategy, cache_dir, tmp_path):
  config = tiny_loop_config(cache_dir, **{"query.strategy": strategy,
                                      "train.adversarial": "h_divergence"})
  results = loop.run(config, str(tmp_path), log=lambda _: None)
  epoch = results["rounds"][0]["epoch_metrics"][0]
  assert epoch["steps"] == 17                       # walks the unlabeled pool
  # The adversarial term is minus the discriminator's cross-entropy: near -log 2 at the
  # start, when the discriminator cannot tell the two sets apart.
  assert -1.0 < epoch["adversarial"] < -0.3
  assert epoch["gradient_penalty"] == 0.0
  assert len(results["rounds"][0]["queried_indices"]) == 30


def test_seeds_of_one_experiment_compile_once(cache_dir, tmp_path):
  """The second seed reuses the first one's trainer and strategy: it lowers nothing
  (the first lowers what earlier tests in the process have not: at least its own
  trainer's and strategy's closures)."""
  lowered = []

  def count(event, duration, **_):
    del duration
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      lowered.append(event)

  jax.monitoring.register_event_duration_secs_listener(count)
  try:
    shared, per_seed = {}, []
    for seed in (5, 6):
      config = tiny_loop_config(cache_dir, **{"query.strategy": "kmedian"})
      config.seed = seed
      del lowered[:]
      results = loop.run(config, str(tmp_path / f"seed_{seed}"), lambda _: None, shared)
      per_seed.append(len(lowered))
      assert len(results["rounds"]) == 2
  finally:
    jax.monitoring.unregister_event_duration_listener(count)
  assert per_seed[0] > 0 and per_seed[1] == 0, per_seed


def test_a_strategy_s_notes_reach_the_log_and_results_json(cache_dir, tmp_path, monkeypatch):
  random_sampling = strategies.get("random")
  select = random_sampling.select

  def select_with_a_note(self, *args):
    self.note("the batch saturated at pick 3")
    return select(self, *args)

  monkeypatch.setattr(random_sampling, "select", select_with_a_note)
  lines = []
  results = loop.run(tiny_loop_config(cache_dir, **{"query.strategy": "random"}), str(tmp_path),
                     log=lines.append)
  assert results["rounds"][0]["query_notes"] == ["the batch saturated at pick 3"]
  assert "query_notes" not in results["rounds"][1]      # the last round does not query
  assert "round 0/1: query note: the batch saturated at pick 3" in lines
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["rounds"][0]["query_notes"] == ["the batch saturated at pick 3"]


class _Killed(Exception):
  """Stands for a kill: raised from the log once the given line has been logged."""


def _killed_at(line_start: str, lines: list):
  """A log that raises _Killed once round 1 has begun and a line (after any "seed N:"
  prefix) starts with `line_start`."""
  def log(message):
    lines.append(message)
    if (message.split(": ", 1)[-1] if message.startswith("seed ") else message).strip(
        ).startswith(line_start) and "round 1/1: training" in "\n".join(lines):
      raise _Killed(message)
  return log


def _round_essentials(results):
  """Everything a round records but its seconds (a resumed round spans two processes)."""
  drop = ("train_seconds", "query_seconds", "eval_seconds", "seconds")
  return [{k: ([{m: v for m, v in e.items() if m not in drop} for e in r["epoch_metrics"]]
               if k == "epoch_metrics" else r[k]) for k in r if k not in drop}
          for r in results["rounds"]]


def test_a_round_killed_between_epochs_resumes_after_its_saved_epoch(cache_dir, tmp_path):
  """WAAL, two rounds of 4 epochs, saved after every epoch and killed in round 1 once
  epoch 3 is logged (after the save of epoch 2, before that of epoch 3): the rerun
  trains epochs 3 and 4 only and records exactly what an unsaved, uninterrupted run
  did. A file in the format before seed batches were saved (no "epochs_run",
  "running", "stopped_variables") resumes the same way. With the saved file truncated,
  or lacking a field every format has, the rerun says so in one line and trains the
  round from its first epoch, to the same records."""
  config = tiny_loop_config(cache_dir, **{"train.epochs": 4, "train.patience": 0})
  uninterrupted = loop.run(config, str(tmp_path / "uninterrupted"), lambda _: None,
                           progress_seconds=-1)
  killed = tmp_path / "killed"
  with pytest.raises(_Killed):
    loop.run(config, str(killed), _killed_at("epoch 3/4", []), progress_seconds=0)
  for case in ("resumed", "older format", "damaged", "lacks history"):
    workdir = tmp_path / case.replace(" ", "_")
    shutil.copytree(killed, workdir)      # (each case starts from the same kill)
    saved = workdir / "round_progress.msgpack"
    assert saved.exists()
    if case == "damaged":
      saved.write_bytes(saved.read_bytes()[:100])
    elif case in ("older format", "lacks history"):
      payload = serialization.msgpack_restore(saved.read_bytes())
      drop = (("epochs_run", "running", "stopped_variables") if case == "older format"
              else ("history",))
      saved.write_bytes(serialization.msgpack_serialize(
          {k: v for k, v in payload.items() if k not in drop}))
    lines = []
    rerun = loop.run(config, str(workdir), lines.append, progress_seconds=0)
    start = lines.index("round 1/1: training on 90 labels (510 unlabeled)")
    epochs = [line.split(":")[0].strip() for line in lines[start:] if "loss" in line]
    if case in ("resumed", "older format"):
      assert lines[start + 1] == ("  resuming the round's training after epoch 2 (saved in "
                                  f"{saved})")
      assert epochs == ["epoch 3/4", "epoch 4/4"]
      # Its train_seconds count the killed process's two epochs too.
      record = rerun["rounds"][1]
      assert record["train_seconds"] >= sum(e["seconds"] for e in record["epoch_metrics"])
    else:
      reason = "cannot be read (" if case == "damaged" else "cannot be used (KeyError: 'history')"
      assert lines[start + 1].startswith(f"  {saved} {reason}")
      assert lines[start + 1].endswith("; the round trains from its first epoch")
      assert epochs == ["epoch 1/4", "epoch 2/4", "epoch 3/4", "epoch 4/4"]
    assert _round_essentials(rerun) == _round_essentials(uninterrupted)
    assert not saved.exists()      # discarded once the round is written


def test_time_left_comes_from_the_recorded_rounds_not_this_process_s_clock():
  """Two rounds recorded 100 + 2 + 8 s and 300 + 2 + 8 s (training, test, query; the
  second resumed after a stop, its 300 s counting the killed process's epochs): with 3
  rounds left, 3 x 210 s = 630 s = 10m30s. The clock of the resumed process saw only
  its own part of round 1 and would have said far less."""
  history = [{"train_seconds": 100.0, "eval_seconds": 2.0, "query_seconds": 8.0},
             {"train_seconds": 300.0, "eval_seconds": 2.0, "query_seconds": 8.0}]
  assert loop.seconds_left(history, 3) == pytest.approx(630.0)
  assert train.format_duration(loop.seconds_left(history, 3)) == "10m30s"
  assert loop.seconds_left([], 3) == 0.0
  # A round recorded before eval_seconds existed (results.json of an older commit).
  assert loop.seconds_left([{"train_seconds": 50.0, "query_seconds": 10.0}], 2) == 120.0


def test_round_progress_belongs_to_one_round_labeled_set_and_key(tmp_path):
  """What one round saved is not loaded by a round that differs in index, labeled set
  or key."""
  labeled, key = np.arange(90), jax.random.key(0)
  saver = checkpoints.RoundProgress(str(tmp_path), 1, labeled, key, 0, print)
  assert saver.load() is None                       # nothing saved yet
  saver.save({"epochs": np.arange(3)})
  same = checkpoints.RoundProgress(str(tmp_path), 1, labeled.copy(), jax.random.key(0), 0, print)
  np.testing.assert_array_equal(same.load()["epochs"], np.arange(3))
  for round_index, other_labeled, other_key in [(2, labeled, key), (1, labeled[::-1], key),
                                                (1, labeled[:-1], key),
                                                (1, labeled, jax.random.key(1))]:
    other = checkpoints.RoundProgress(str(tmp_path), round_index, other_labeled, other_key, 0,
                                      print)
    assert other.load() is None
  same.discard()
  assert list(tmp_path.iterdir()) == []


def test_a_vmapped_batch_killed_between_epochs_resumes_after_its_saved_epoch(cache_dir,
                                                                           tmp_path):
  """Two seeds vmapped in one program (the GPU/TPU way), patience 1: in round 1 seed 5
  stops after epoch 2 and goes on inside the batch. Killed once seed 6 logs epoch 3:
  the rerun resumes the batch after epoch 2, with seed 5 stopped, and records what the
  uninterrupted batch did."""
  configs = []
  for seed in (5, 6):
    config = tiny_loop_config(cache_dir, **{"train.epochs": 4, "train.patience": 1})
    config.seed = seed
    configs.append(config)

  def workdirs(name):
    return [str(tmp_path / name / f"seed_{seed}") for seed in (5, 6)]

  uninterrupted = seeds.run_vmapped(configs, workdirs("uninterrupted"), lambda _: None,
                                   progress_seconds=-1)
  # What makes this case: seed 5 stops in round 1 before seed 6.
  assert [r["rounds"][1]["epochs_trained"] for r in uninterrupted] == [2, 4]
  with pytest.raises(_Killed):
    seeds.run_vmapped(configs, workdirs("killed"), _killed_at("epoch 3/4", []),
                     progress_seconds=0)
  lines = []
  resumed = seeds.run_vmapped(configs, workdirs("killed"), lines.append, progress_seconds=0)
  saved = [os.path.join(d, "round_progress.msgpack") for d in workdirs("killed")]
  assert ("seed 5:   resuming the round's training after epoch 2 (saved in "
          f"{', '.join(saved)})") in lines
  start = lines.index("seed 5: round 1/1: training on 90 labels (510 unlabeled)")
  assert [line.split(": loss")[0] for line in lines[start:] if ": loss" in line] == [
      "seed 6:   epoch 3/4", "seed 6:   epoch 4/4"]
  for got, want in zip(resumed, uninterrupted, strict=True):
    assert _round_essentials(got) == _round_essentials(want)
  assert not any(os.path.exists(path) for path in saved)


def test_epochs_added_per_round_train_each_round_longer_alone_and_vmapped(cache_dir,
                                                                          tmp_path):
  """1 epoch +2 a round, no early stop, two rounds: round 0 trains 1 epoch and round 1
  trains 3, for one seed and for two seeds vmapped in one program (which train alike);
  the report's protocol says so."""
  configs = []
  for seed in (5, 6):
    config = tiny_loop_config(cache_dir, **{"train.epochs": 1, "train.epochs_added_per_round": 2,
                                        "train.patience": 0})
    config.seed = seed
    configs.append(config)
  lines = []
  alone = loop.run(configs[0], str(tmp_path / "alone"), lines.append, progress_seconds=-1)
  assert [r["epochs_trained"] for r in alone["rounds"]] == [1, 3]
  assert "  epoch 3/3" in [line.split(":")[0] for line in lines]
  vmapped_lines = []
  vmapped = seeds.run_vmapped(configs, [str(tmp_path / "vmapped" / f"seed_{s}") for s in (5, 6)],
                             vmapped_lines.append, progress_seconds=-1)
  assert [[r["epochs_trained"] for r in one["rounds"]] for one in vmapped] == [[1, 3], [1, 3]]
  # Round 1's 3 epochs: after the second, each way says what the last one takes at most.
  assert sum(line.startswith("  about ") for line in lines) == 1
  for seed in (5, 6):
    said = [l for l in vmapped_lines if l.startswith(f"seed {seed}:   about ")]
    assert len(said) == 1 and "left in this round at most (1 more epochs at" in said[0]
    assert f"seed {seed}: round 1/1: training on 90 labels (510 unlabeled)" in vmapped_lines
  assert report.find_runs([str(tmp_path / "alone")])[0].protocol.endswith(
      "at most 1 epochs (+2 a round), preset paper")


def test_round_estimate_after_the_second_epoch():
  """78 epochs left at 3.0 s: at most 234 s = 3m54s."""
  record = {"epoch": 2, "seconds": 3.0}
  assert train.round_estimate(record, 80) == (
      "  about 3m54s left in this round at most (78 more epochs at 3.0s; early stopping "
      "may end it sooner)")


def test_a_run_says_what_al_rounds_means_first_and_estimates_round_0_early(tmp_path):
  cache = write_synthetic_fashion_mnist(str(tmp_path / "cache"))
  workdir = tmp_path / "w"
  log, error = run_in_process("--config=fashion_mnist", f"--workdir={workdir}",
                              f"--config.data.cache_dir={cache}", *TINY,
                              "--config.train.epochs=4", "--config.al.rounds=1")
  assert error is None, error
  lines = log.splitlines()
  assert lines[0] == (f"{workdir}: round 0 trains on the first labels, then al.rounds=1 "
                      "query round(s) of 20 labels each train again (2 trainings)")
  estimate = next(i for i, line in enumerate(lines)
                  if line.startswith("  about ") and "left in this round at most (2 more "
                  "epochs at" in line)
  assert lines[estimate - 1].startswith("  epoch 2/4")
  assert estimate < lines.index(next(l for l in lines if l.startswith("round 0/1: test")))


def test_a_stop_line_says_what_was_kept(tmp_path):
  """No round finished and no epoch saved; an epoch saved by this process; rounds
  recorded; a tree of seeds."""
  run = str(tmp_path / "run")
  os.makedirs(run)
  assert loop.kept(run) == "nothing yet (no round had finished, no epoch was saved)"
  progress = checkpoints.RoundProgress(run, 0, np.arange(3), jax.random.key(0), 0.0,
                                       lambda _: None)
  progress.save({"history": "[]", "epochs_run": 7})
  try:
    assert loop.kept(run) == "round 0's training to epoch 7 (no round had finished)"
    with open(os.path.join(run, "results.json"), "w") as f:
      json.dump({"rounds": [{"round": 0}]}, f)
    assert loop.kept(run) == "round 0"       # (the saved epoch belongs to round 0)
    with open(os.path.join(run, "results.json"), "w") as f:
      json.dump({"rounds": [{"round": 0}, {"round": 1}]}, f)
    assert loop.kept(run) == "rounds 0-1"
  finally:
    progress.discard()
  os.makedirs(tmp_path / "tree" / "seed_5")
  os.makedirs(tmp_path / "tree" / "seed_6")
  with open(tmp_path / "tree" / "seed_5" / "results.json", "w") as f:
    json.dump({"rounds": [{"round": 0}]}, f)
  assert loop.kept(str(tmp_path / "tree")) == (
      "seed_5: round 0; seed_6: nothing yet (no round had finished, no epoch was saved)")
