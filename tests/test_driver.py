"""The driver end to end: results.json, resume after kill -9, SIGTERM, divergence or a
damaged checkpoint, one run per workdir, and every bad input.

Plumbing only, so on synthetic Fashion-MNIST-shaped images (conftest): these run on a
machine without the Debian dataset package too.
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import (ROOT, TINY, make_config, run_in_process, run_module,
                      write_synthetic_fashion_mnist)
from waal_jax import metrics


def _main_args(workdir, cache_dir, *extra):
  return ["--config=fashion_mnist", f"--workdir={workdir}",
          f"--config.data.cache_dir={cache_dir}", *TINY, *extra]


def _in_process(workdir, cache, *extra):
  return run_in_process(*_main_args(workdir, cache, *extra))


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def _copy_run(source, workdir, rounds=None):
  """A copy of the run in `source` whose results.json keeps only its first `rounds`."""
  shutil.copytree(source, workdir)
  if rounds is not None:
    results = _results(workdir)
    results["rounds"] = results["rounds"][:rounds]
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f)


def _wait_for_rounds(workdir, process, rounds=1):
  """Polls results.json until it holds `rounds` rounds; returns how many it saw."""
  results_path = os.path.join(workdir, "results.json")
  deadline = time.time() + 300
  finished = 0
  while time.time() < deadline and process.poll() is None:
    if os.path.exists(results_path):
      finished = len(_results(workdir)["rounds"])
      if finished >= rounds:
        break
    time.sleep(0.02)
  return finished


def _essentials(results):
  """What must be identical between a resumed and an uninterrupted run."""
  return [(r["round"], r["num_labeled"], r["test_accuracy"], r["val_accuracy"],
           r["queried_indices"]) for r in results["rounds"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  cache = write_synthetic_fashion_mnist(str(tmp_path_factory.mktemp("cache")))
  done = run_module("experiments.main", *_main_args(workdir, cache))
  assert done.returncode == 0, done.stderr
  return workdir, cache, done


def test_results_json_schema(uninterrupted):
  workdir, _, done = uninterrupted
  results = _results(workdir)
  assert set(results) >= {"config", "device", "software", "rounds"}
  import jax, flax, optax  # pylint: disable=g-import-not-at-top,multiple-imports
  software = results["software"]
  assert (software["jax"], software["flax"], software["optax"]) == (
      jax.__version__, flax.__version__, optax.__version__)
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True, check=False).stdout.strip()
  assert software["commit"] == (head or None)
  assert {r["commit"] for r in results["rounds"]} == {head or None}
  assert {r["cpu"] for r in results["rounds"]} == {software["cpu"] or None}
  assert results["config"]["data"]["name"] == "fashion_mnist"
  assert results["config"]["al"]["query_size"] == 20
  rounds = results["rounds"]
  assert [r["round"] for r in rounds] == [0, 1, 2]
  assert [r["num_labeled"] for r in rounds] == [40, 60, 80]
  for r in rounds:
    assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["val_accuracy"] <= 1.0
    assert r["train_seconds"] > 0 and r["query_seconds"] >= 0
  # 20 distinct new pool indices per round but the last, never queried twice.
  queried = [r["queried_indices"] for r in rounds]
  assert [len(q) for q in queried] == [20, 20, 0]
  flat = queried[0] + queried[1]
  assert len(set(flat)) == 40 and all(0 <= i < 400 for i in flat)
  assert rounds[1]["query_seconds"] > 0 and rounds[2]["query_seconds"] == 0
  # Provenance: the class histogram of each bought batch.
  counts = [r["queried_class_counts"] for r in rounds]
  assert [len(c) for c in counts] == [10, 10, 10]
  assert [sum(c) for c in counts] == [20, 20, 0]
  # Progress was reported per epoch and per round.
  assert "epoch 2/2" in done.stderr and "test accuracy" in done.stderr
  assert "left" in done.stderr
  # Calibration and accuracy per class (waal_jax/metrics.py, tests/test_metrics.py).
  for record in rounds:
    assert 0.0 <= record["test_ece"] <= 1.0 and record["test_nll"] > 0.0
    assert 0.0 <= record["test_brier"] <= 2.0
    per_class = record["test_per_class_accuracy"]
    assert len(per_class) == 10 and all(0.0 <= a <= 1.0 for a in per_class)
    # Accuracy is the per-class accuracies' mean weighted by the classes' test examples.
    assert min(per_class) <= record["test_accuracy"] <= max(per_class)
  # The stop set: 2,000 asked, 360 of TINY's pool of 400 unlabeled at round 0 (40
  # labeled), drawn once; each round's kappa compares its predictions with the last's.
  stop_set = rounds[0]["stop_set_indices"]
  assert len(stop_set) == 360 and stop_set == sorted(set(stop_set))
  assert set(rounds[0]["queried_indices"]) <= set(stop_set)   # (unlabeled at round 0)
  assert rounds[0]["stop_set_kappa"] is None
  for previous, record in zip(rounds, rounds[1:]):
    assert "stop_set_indices" not in record and len(record["stop_set_predictions"]) == 360
    assert record["stop_set_kappa"] == pytest.approx(metrics.cohen_kappa(
        previous["stop_set_predictions"], record["stop_set_predictions"], 10))


def test_kill_and_resume_equals_uninterrupted(uninterrupted, tmp_path):
  reference_dir, cache, _ = uninterrupted
  workdir = str(tmp_path / "killed")
  process = subprocess.Popen([sys.executable, "-m", "experiments.main",
                              *_main_args(workdir, cache)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  finished = _wait_for_rounds(workdir, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert finished == 1, "the run should be killed after its first round"
  assert len(_results(workdir)["rounds"]) < 3
  # Its lock is left behind, and taken over: the kernel released it with the process.
  with open(os.path.join(workdir, "run.lock")) as f:
    assert f.read().startswith(f"process {process.pid} on ")

  resumed = run_module("experiments.main", *_main_args(workdir, cache))
  assert resumed.returncode == 0, resumed.stderr
  assert f"taking over the lock of process {process.pid} on " in resumed.stderr
  assert "resuming" in resumed.stderr
  assert _essentials(_results(workdir)) == _essentials(_results(reference_dir))
  assert not os.path.exists(os.path.join(workdir, "run.lock"))

  # A finished run rerun does nothing more and changes nothing.
  log, error = _in_process(workdir, cache)
  assert error is None and "round 0/" not in log
  assert _essentials(_results(workdir)) == _essentials(_results(reference_dir))


def test_a_run_without_checkpoints_resumes_from_results_json(uninterrupted, tmp_path):
  """Only results.json and config.json are committed: a run carried to another machine
  without its checkpoints continues after its last recorded round, and a finished one is
  left byte for byte as it is."""
  reference_dir, cache, _ = uninterrupted
  finished_dir, partial_dir = tmp_path / "finished", tmp_path / "partial"
  for workdir in (finished_dir, partial_dir):
    workdir.mkdir()
    for name in ("config.json", "results.json"):
      (workdir / name).write_bytes(open(os.path.join(reference_dir, name), "rb").read())
  partial = _results(str(partial_dir))
  partial["rounds"] = partial["rounds"][:2]
  (partial_dir / "results.json").write_text(json.dumps(partial))

  resumed = run_module("experiments.main", *_main_args(str(partial_dir), cache))
  assert resumed.returncode == 0, resumed.stderr
  assert "after round 1 (80 labels) from its results.json" in resumed.stderr
  assert "round 0/" not in resumed.stderr and "round 2/2: training" in resumed.stderr
  assert _essentials(_results(str(partial_dir))) == _essentials(_results(reference_dir))

  before = (finished_dir / "results.json").read_bytes()
  log, error = _in_process(finished_dir, cache)
  assert error is None, error
  assert "holds a finished run (3 rounds)" in log and "training on" not in log
  assert (finished_dir / "results.json").read_bytes() == before
  assert not (finished_dir / "checkpoints").exists() or not os.listdir(
      finished_dir / "checkpoints")


@pytest.mark.parametrize("checkpoints", ["none", "damaged"])
def test_a_damaged_results_json_without_usable_checkpoints_is_one_line(
    uninterrupted, tmp_path, checkpoints):
  reference_dir, cache, _ = uninterrupted
  workdir = tmp_path / "damaged"
  if checkpoints == "none":
    workdir.mkdir()
    (workdir / "config.json").write_bytes(
        open(os.path.join(reference_dir, "config.json"), "rb").read())
  else:
    _copy_run(reference_dir, str(workdir))
    for step in (2, 3):
      os.remove(workdir / "checkpoints" / str(step) / "loop" / "_METADATA")
  text = open(os.path.join(reference_dir, "results.json")).read()
  (workdir / "results.json").write_text(text[:len(text) // 2])
  _, line = _in_process(workdir, cache)
  assert line.startswith(f"{workdir}/results.json is damaged"), line
  if checkpoints == "damaged":
    assert "no checkpoint is usable (checkpoint 3 cannot be read" in line
    assert f"{workdir}/checkpoints/2/loop: Metadata file" in line
  assert (workdir / "results.json").read_text() == text[:len(text) // 2]


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_round(uninterrupted, tmp_path):
  """Killed after its checkpoint of round 2 but before results.json had round 1, whose
  newest checkpoint was then truncated: the rerun resumes from checkpoint 2 (the
  furthest usable), says why, replaces checkpoint 3 and ends as an uninterrupted run."""
  reference_dir, cache, _ = uninterrupted
  workdir = str(tmp_path / "truncated")
  _copy_run(reference_dir, workdir, rounds=1)
  [damaged] = glob.glob(os.path.join(workdir, "checkpoints", "3", "loop", "d", "*"))
  with open(damaged, "r+b") as f:
    f.truncate(os.path.getsize(damaged) // 2)
  resumed = run_module("experiments.main", *_main_args(workdir, cache))
  assert resumed.returncode == 0, resumed.stderr
  assert (f"resuming {workdir} after round 1 (80 labels) from checkpoint 2: checkpoint 3 "
          f"cannot be read ({damaged}: ") in resumed.stderr
  assert "round 1/2: training" not in resumed.stderr
  assert _essentials(_results(workdir)) == _essentials(_results(reference_dir))
  from waal_jax import checkpoints  # pylint: disable=g-import-not-at-top
  store = checkpoints.LoopCheckpoints(workdir)
  assert store.steps() == [2, 3] and len(store.restore(3)[2]) == 3
  store.close()


def test_divergence_is_one_line_and_keeps_the_finished_rounds(uninterrupted, tmp_path):
  """A run of learning rate 1e9 that finished round 0 (made from the uninterrupted one:
  the rate plays no part in what results.json records) diverges in round 1."""
  reference_dir, cache, _ = uninterrupted
  workdir = str(tmp_path / "diverging")
  os.makedirs(workdir)
  with open(os.path.join(reference_dir, "config.json")) as f:
    config = json.load(f)
  config["train"]["learning_rate"] = 1e9
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config, f)
  recorded = _results(reference_dir)
  recorded["rounds"] = recorded["rounds"][:1]
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(recorded, f)
  _, error = _in_process(workdir, cache, "--config.train.learning_rate=1e9")
  assert error == (
      "training diverged at round 1, epoch 1: loss nan; lower train.learning_rate "
      "(1e+09 now) and use another --workdir (this one keeps round 0; the same command "
      "would diverge again)")
  assert _results(workdir)["rounds"] == recorded["rounds"]
  assert not os.listdir(os.path.join(workdir, "checkpoints"))
  assert not os.path.exists(os.path.join(workdir, "run.lock"))


def _listing(workdir):
  """Every file below `workdir` with its size and modification time."""
  return {path: (os.stat(path).st_size, os.stat(path).st_mtime_ns)
          for path in glob.glob(os.path.join(workdir, "**"), recursive=True)}


@pytest.fixture(scope="module")
def stopped_in_round_1(uninterrupted, tmp_path_factory):
  """A run frozen (SIGSTOP) once its round 0 is written; a second run on its workdir
  meanwhile; then SIGTERM to the first, which acts as it continues, in round 1; then
  the same command again."""
  _, cache, _ = uninterrupted
  workdir = str(tmp_path_factory.mktemp("stopped") / "run")
  first = subprocess.Popen([sys.executable, "-m", "experiments.main",
                            *_main_args(workdir, cache)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  finished = _wait_for_rounds(workdir, first)
  first.send_signal(signal.SIGSTOP)
  before = _listing(workdir)
  second = run_module("experiments.main", *_main_args(workdir, cache))
  after = _listing(workdir)
  first.send_signal(signal.SIGTERM)
  first.send_signal(signal.SIGCONT)
  first_stderr = first.communicate(timeout=120)[1]
  assert finished == 1, first_stderr
  stopped = {"rounds": len(_results(workdir)["rounds"]),
             "lock_left": os.path.exists(os.path.join(workdir, "run.lock"))}
  rerun = run_module("experiments.main", *_main_args(workdir, cache))
  return {"workdir": workdir, "first": first, "first_stderr": first_stderr,
          "second": second, "before": before, "after": after, "stopped": stopped,
          "rerun": rerun}


def test_a_second_run_on_a_running_workdir_is_refused_untouched(stopped_in_round_1):
  run = stopped_in_round_1
  second = run["second"]
  assert second.returncode == 1 and "Traceback" not in second.stderr
  lines = second.stderr.strip().splitlines()
  assert len(lines) == 1, second.stderr
  assert lines[0].startswith(
      f"error: --workdir {run['workdir']} is in use by process {run['first'].pid} on "
      f"{socket.gethostname()} since "), lines[0]
  assert run["after"] == run["before"]


def test_a_stop_signal_inside_a_gc_callback_is_not_lost():
  """Python swallows an exception raised in a gc callback (JAX registers one): a SIGTERM
  handled there must still stop the run, without the "Exception ignored" traceback."""
  child = textwrap.dedent("""
      import gc, os, signal, time
      from waal_jax import interrupts
      interrupts.stop_on_signals()
      def callback(phase, info):
        if phase == "start":
          os.kill(os.getpid(), signal.SIGTERM)   # handled inside the callback's loop
          for _ in range(10000):
            pass
      gc.callbacks.append(callback)
      try:
        gc.collect()
        time.sleep(1)
        print("not stopped")
      except interrupts.Stopped as e:
        print("stopped by", e)
  """)
  done = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True,
                        text=True, timeout=60, check=False)
  assert done.stdout.strip() == "stopped by SIGTERM", (done.stdout, done.stderr)
  assert "Exception ignored" not in done.stderr, done.stderr


def test_sigterm_is_one_line_and_the_rerun_equals_uninterrupted(uninterrupted,
                                                                 stopped_in_round_1):
  run = stopped_in_round_1
  assert run["first"].returncode == 143
  assert "Traceback" not in run["first_stderr"]
  assert run["first_stderr"].strip().splitlines()[-1] == (
      "stopped by SIGTERM: kept round 0; rerun the same command to resume")
  assert run["stopped"] == {"rounds": 1, "lock_left": False}
  rerun = run["rerun"]
  assert rerun.returncode == 0, rerun.stderr
  assert f"resuming {run['workdir']} after round 0 (60 labels)\n" in rerun.stderr
  assert "round 0/" not in rerun.stderr
  assert _essentials(_results(run["workdir"])) == _essentials(_results(uninterrupted[0]))


def test_workdir_of_another_config_is_refused_untouched(uninterrupted):
  workdir, cache, _ = uninterrupted
  before = {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)}
  results_before = _results(workdir)
  _, error = _in_process(workdir, cache, "--config.seed=7")
  assert error.startswith("--workdir") and "seed: 0 there, 7 now" in error
  after = {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)}
  assert after == before and _results(workdir) == results_before


_SEED_ARGS = ("--config.seeds=2", "--config.seed=5", "--config.al.rounds=1")


@pytest.fixture(scope="module")
def seeds_in_turn(uninterrupted, tmp_path_factory):
  """Seeds 5 and 6 run one after the other into one tree."""
  _, cache, _ = uninterrupted
  tree = str(tmp_path_factory.mktemp("seeds") / "tree")
  args = _main_args(tree, cache, *_SEED_ARGS)
  first = run_module("experiments.main", *args)
  assert first.returncode == 0, first.stderr
  return tree, args


def test_a_run_recorded_before_newer_fields_resumes(uninterrupted, tmp_path):
  """config.json of an older version: without model.matmul_dtype and the newer strategies'
  fields, conv 'banded'."""
  import shutil  # pylint: disable=g-import-not-at-top
  workdir, cache, _ = uninterrupted
  older = str(tmp_path / "older")
  shutil.copytree(workdir, older)
  with open(os.path.join(older, "config.json")) as f:
    config = json.load(f)
  del config["model"]["matmul_dtype"]
  for field in ("batchbald_configurations", "typiclust_neighbors", "embeddings_file"):
    del config["query"][field]      # (issue 12's strategies' fields came later too)
  config["model"]["conv"] = "banded"
  with open(os.path.join(older, "config.json"), "w") as f:
    json.dump(config, f)
  _, error = _in_process(older, cache)
  assert error is None, error                           # finished: nothing to do
  assert _essentials(_results(older)) == _essentials(_results(workdir))
  _, error = _in_process(older, cache, "--config.model.matmul_dtype=bfloat16")
  # The refusal names the value the older run had: the field's default.
  assert "(model.matmul_dtype: 'float32' there, 'bfloat16' now)" in error


def test_seeds_run_into_one_tree_and_resume(seeds_in_turn, uninterrupted):
  (tree, _), (_, cache, _) = seeds_in_turn, uninterrupted
  runs = {seed: _results(os.path.join(tree, f"seed_{seed}")) for seed in (5, 6)}
  assert sorted(os.listdir(tree)) == ["seed_5", "seed_6"]
  assert [runs[seed]["config"]["seed"] for seed in (5, 6)] == [5, 6]
  assert runs[5]["rounds"][0]["queried_indices"] != runs[6]["rounds"][0]["queried_indices"]
  _, error = _in_process(tree, cache, *_SEED_ARGS)      # finished: changes nothing
  assert error is None, error
  assert {seed: _results(os.path.join(tree, f"seed_{seed}")) for seed in (5, 6)} == runs


def test_a_pinned_seed_process_keeps_every_xla_flag(tmp_path):
  """XLA stops reading XLA_FLAGS at the first word that is not a flag: the one-thread
  flags of a seed process, then the tuning flags, then a dump flag must all hold."""
  dump = str(tmp_path / "dump")
  child = ("import os; from waal_jax import seed_pool, xla_tuning; "
           "os.environ['XLA_FLAGS'] = seed_pool.thread_flags(1); "
           "xla_tuning.tune_cpu_flags(); "
           f"os.environ['XLA_FLAGS'] += ' --xla_dump_to={dump}'; "
           "import jax.numpy as jnp; print(float(jnp.ones(3).sum()))")
  done = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, check=False)
  assert done.returncode == 0 and done.stdout.strip() == "3.0", done.stderr
  assert os.listdir(dump)     # The last flag was read, so every one before it was too.


def test_parallel_seeds_equal_seeds_in_turn(seeds_in_turn, tmp_path):
  tree, args = seeds_in_turn
  parallel_tree = str(tmp_path / "parallel")
  parallel_args = [a.replace(tree, parallel_tree) for a in args] + ["--config.parallel_seeds=2"]
  done = run_module("experiments.main", *parallel_args)
  assert done.returncode == 0, done.stderr
  assert "seed 5 started on core(s)" in done.stderr and "seed 6: round 1/1" in done.stderr
  for seed in (5, 6):
    in_turn = _results(os.path.join(tree, f"seed_{seed}"))
    at_once = _results(os.path.join(parallel_tree, f"seed_{seed}"))
    assert _essentials(at_once) == _essentials(in_turn)
    assert at_once["config"] == in_turn["config"]   # so either way resumes the other's


def test_vmapped_seeds_equal_seeds_in_turn(seeds_in_turn, tmp_path):
  """The GPU/TPU way (here forced on CPU): one program, the seed axis vmapped."""
  tree, args = seeds_in_turn
  vmapped_tree = str(tmp_path / "vmapped")
  vmapped_args = [a.replace(tree, vmapped_tree) for a in args] + [
      "--config.parallel_seeds=2", "--config.parallel_seeds_mode=vmap"]
  done = run_module("experiments.main", *vmapped_args)
  assert done.returncode == 0, done.stderr
  assert "seeds 5, 6 vmapped in one program" in done.stderr
  for seed in (5, 6):
    in_turn = _results(os.path.join(tree, f"seed_{seed}"))
    vmapped = _results(os.path.join(vmapped_tree, f"seed_{seed}"))
    assert vmapped["config"] == in_turn["config"]
    for a, b in zip(vmapped["rounds"], in_turn["rounds"], strict=True):
      assert a["queried_indices"] == b["queried_indices"]
      assert a["trained_with_seeds"] == [5, 6] and "trained_with_seeds" not in b
      assert (a["best_epoch"], a["epochs_trained"]) == (b["best_epoch"], b["epochs_trained"])
      # Batched products may round differently: equal up to float tolerance.
      assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=2e-3)
      assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=2e-3)
      for x, y in zip(a["epoch_metrics"], b["epoch_metrics"], strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-3)
  # Rerun: every seed is finished, nothing trains again.
  again = run_module("experiments.main", *vmapped_args)
  assert again.returncode == 0 and "training on" not in again.stderr


def test_a_failing_parallel_seed_loses_no_other(seeds_in_turn, tmp_path):
  tree, args = seeds_in_turn
  parallel_tree = str(tmp_path / "parallel")
  # Seed 6's workdir is its own, but its newest checkpoint cannot be read.
  broken = os.path.join(parallel_tree, "seed_6")
  os.makedirs(os.path.join(broken, "checkpoints", "2"))
  with open(os.path.join(tree, "seed_6", "config.json")) as f:
    config = f.read()
  with open(os.path.join(broken, "config.json"), "w") as f:
    f.write(config)
  parallel_args = [a.replace(tree, parallel_tree) for a in args] + ["--config.parallel_seeds=2"]
  done = run_module("experiments.main", *parallel_args)
  assert done.returncode == 1
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("error: seed(s) 6 failed") and "rerun the same command" in last
  # Seed 6 ends in one line: nothing to resume from, and it does not restart over it.
  assert "seed 6: error: checkpoint 2 cannot be read" in done.stderr
  assert "Traceback" not in done.stderr
  assert _essentials(_results(os.path.join(parallel_tree, "seed_5"))) == _essentials(
      _results(os.path.join(tree, "seed_5")))


def test_more_parallel_seeds_than_cores_is_refused(uninterrupted, tmp_path):
  _, cache, _ = uninterrupted
  cores = len(os.sched_getaffinity(0))
  _, error = _in_process(tmp_path / "tree", cache, "--config.seeds=8",
                         f"--config.parallel_seeds={cores + 1}")
  assert error == (
      f"parallel_seeds: {cores + 1} processes but this run may use only {cores} "
      f"core(s) (taskset / cgroup); use at most {cores}")
  assert not os.path.exists(tmp_path / "tree")


def test_seeds_refuse_a_single_run_workdir(uninterrupted):
  workdir, cache, _ = uninterrupted
  _, error = _in_process(workdir, cache, "--config.seeds=2")
  assert error.startswith("--workdir=")
  assert not os.path.exists(os.path.join(workdir, "seed_0"))


# What the command line itself must turn into one line: flags it cannot parse, and a
# field error (the library's UserError) as it reaches the command line.
BAD_INPUTS = [
    # (extra arguments, what the one line must name)
    (["--config=no_such_dataset"], "unknown config 'no_such_dataset'"),
    (["--config.train.epoch=3"], "--config.train.epoch: no such config field"),
    (["--config.train.epochs=three"], "--config.train.epochs=three"),
    (["--config.query.strategy=bogus"], "query.strategy='bogus'"),
    (["--config.data.mean=(0.5,0.5)"], "data.mean=(0.5, 0.5): give 1 value(s)"),
]
# Every other bad field, refused by the library before anything is written (in-process:
# the lines above show how such an error reaches the command line).
BAD_FIELDS = [
    ({"al__query_size": 5000}, "al.query_size=5000"),
    ({"al__initial_labeled": -5}, "al.initial_labeled=-5"),
    ({"train__mu": -0.1}, "train.mu=-0.1"),
    ({"train__gradient_penalty": -1.0}, "train.gradient_penalty=-1.0"),
    ({"data__pool_size": -3}, "data.pool_size=-3"),
    ({"train__epochs": 0}, "train.epochs=0"),
    ({"train__lr_schedule": "cosine"}, "train.lr_schedule='cosine'"),
    ({"model__init": "xavier"}, "model.init='xavier'"),
    ({"query__deepfool_classes": 1}, "query.deepfool_classes=1"),
    ({"train__adversarial": "none"}, "train.adversarial='none': query.strategy=waal"),
    ({"query__mc_samples": 0}, "query.mc_samples=0"),
    ({"top__seeds": 0}, "seeds=0"),
    ({"train__steps_per_epoch": "labeled"}, "train.steps_per_epoch='labeled'"),
    ({"query__strategy": "random", "train__steps_per_epoch": "all"},
     "train.steps_per_epoch='all'"),
]


@pytest.mark.parametrize("extra,named", BAD_INPUTS)
def test_bad_input_is_one_line(tmp_path, extra, named):
  args = _main_args(str(tmp_path / "w"), write_synthetic_fashion_mnist(str(tmp_path / "cache")))
  if extra[0].startswith("--config="):
    args = [a for a in args if not a.startswith("--config=")]
  done = run_module("experiments.main", *args, *extra)
  assert done.returncode != 0
  lines = [l for l in done.stderr.strip().splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and named in lines[0], done.stderr
  assert "Traceback" not in done.stderr
  # Nothing written: the corrected command can use the same workdir.
  assert not os.path.exists(tmp_path / "w" / "results.json")
  assert not os.path.exists(tmp_path / "w" / "config.json")


@pytest.mark.parametrize("fields,named", BAD_FIELDS)
def test_bad_field_is_one_user_error_and_writes_nothing(tmp_path, synthetic_cache, fields,
                                                        named):
  from waal_jax import seeds  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  config = make_config(data__cache_dir=synthetic_cache, data__pool_size=400,
                       data__val_size=200, al__initial_labeled=40, al__query_size=20,
                       al__rounds=2)
  for name, value in fields.items():
    group, field = name.split("__")
    if group == "top":
      config[field] = value
    else:
      config[group][field] = value
  with pytest.raises(UserError) as raised:
    seeds.run_seeds(config, str(tmp_path / "w"))
  assert named in str(raised.value) and "\n" not in str(raised.value)
  assert not os.path.exists(tmp_path / "w" / "results.json")
  assert not os.path.exists(tmp_path / "w" / "config.json")


def test_missing_dataset_is_one_line(tmp_path):
  done = run_module("experiments.main", "--config=cifar10", f"--workdir={tmp_path / 'w'}",
                    f"--config.data.cache_dir={tmp_path / 'cache'}",
                    f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.data.download=False")
  assert done.returncode != 0 and "Traceback" not in done.stderr
  line = done.stderr.strip().splitlines()[-1]
  assert line.startswith("error: data.name=cifar10: no data found; tried")
  assert "--config.data.manual_dir" in line
