"""The Table 4 campaign driver: arms, trees, SIGTERM, resume, its bad input and --status."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TINY, run_module, write_synthetic_fashion_mnist
from experiments import campaign_status

# The driver's --set takes the TINY overrides without their --config. prefix.
_TINY_SET = [f"--set={a[len('--config.'):]}" for a in TINY]


def _config(tree, arm, seed):
  with open(os.path.join(tree, arm, f"seed_{seed}", "config.json")) as f:
    return json.load(f)


def test_campaign_runs_every_arm_resumes_and_refuses_bad_input(tmp_path):
  cache = write_synthetic_fashion_mnist(str(tmp_path / "cache"))
  tree = str(tmp_path / "tree")
  args = [f"--out={tree}", "--seeds=1", "--parallel=2", "--arms=random_match_pool,waal_reference",
          *_TINY_SET, "--set=al.rounds=1", f"--set=data.cache_dir={cache}"]
  _stop_while_both_run(tree, args)
  done = run_module("experiments.table4", *args)    # resumes the two stopped runs
  assert done.returncode == 0, done.stderr
  assert "all 2 runs finished" in done.stderr
  control, reference = _config(tree, "random_match_pool", 0), _config(tree, "waal_reference", 0)
  assert (control["query"]["strategy"], control["train"]["steps_per_epoch"]) == (
      "random", "match_pool")
  assert (reference["train"]["variant"], reference["train"]["mu"]) == ("reference", 0.002)
  assert control["al"]["rounds"] == reference["al"]["rounds"] == 1 and control["seed"] == 0
  with open(os.path.join(tree, "random_match_pool", "seed_0", "results.json")) as f:
    results = json.load(f)
  assert [r["num_labeled"] for r in results["rounds"]] == [40, 60]

  again = run_module("experiments.table4", *args)     # finished: nothing is trained again
  assert again.returncode == 0 and "round 0/1" not in again.stderr
  status = run_module("experiments.table4", *args, "--status")
  assert status.returncode == 0, status.stderr
  table = status.stdout.splitlines()
  assert table[0] == "| arm | seed 0 | hours | hours left |"
  assert [line.split(" | ")[:2] for line in table[2:4]] == [
      ["| random_match_pool", "done"], ["| waal_reference", "done"]]
  assert all(line.endswith(" | 0.0 |") for line in table[2:4])
  assert table[-1].endswith(" 0.0 left, about 0.0 hours at --parallel=2.")

  for bad, message in ((["--arms=waal,magic"], "error: --arms: unknown arm(s) magic"),
                       (["--set=train.epochs=two"], "error: --set train.epochs=two:"),
                       (["--set=train.speed=2"], "error: --set train.speed=2: expected"),
                       (["--set=al.rounds=2"], "holds a run of another config")):
    refused = run_module("experiments.table4", *args, *bad)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert message in refused.stderr.strip().splitlines()[-1]


def _stop_while_both_run(tree, args):
  """SIGTERM to the campaign once both runs hold their workdirs stops them too, and the
  campaign ends in one line."""
  campaign = subprocess.Popen([sys.executable, "-m", "experiments.table4", *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  locks = [os.path.join(tree, arm, "seed_0", "run.lock")
           for arm in ("random_match_pool", "waal_reference")]
  children = {}    # lock -> the pid in it ("process PID on HOST since ..."), once seen
  deadline = time.time() + 300
  while time.time() < deadline and campaign.poll() is None and len(children) < 2:
    for lock in set(locks) - set(children):
      try:
        with open(lock) as f:
          text = f.read()
      except FileNotFoundError:
        continue
      if text:
        children[lock] = int(text.split()[1])
    time.sleep(0.05)
  assert campaign.poll() is None and len(children) == 2, "both runs should have started"
  campaign.send_signal(signal.SIGTERM)
  stderr = campaign.communicate(timeout=120)[1]
  assert campaign.returncode == 143 and "Traceback" not in stderr, stderr
  assert stderr.strip().splitlines()[-1] == (
      "stopped by SIGTERM: the finished rounds are kept; rerun the same command to resume"), stderr
  for pid in children.values():
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
  assert not any(os.path.exists(l) for l in locks), stderr    # each stopped cleanly


def _write_rounds(path, seconds):
  """A results.json whose rounds took these (train, eval, query) seconds."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump({"rounds": [{"train_seconds": t, "eval_seconds": e, "query_seconds": q}
                          for t, e, q in seconds]}, f)


def test_campaign_status_counts_rounds_and_estimates_what_is_left(tmp_path):
  """Hand-computed: waal's seed 0 recorded all 3 rounds (110, 220 and 330 s), seed 1
  round 0 (90 s), seed 2 nothing. Left: seed 1's rounds 1 and 2 at seed 0's times
  (550 s), seed 2's round 0 at the mean of both seeds' (100 s) and rounds 1-2 (550 s):
  1,200 s. Random recorded nothing, so its time left is unknown; dbal's seed 0 file is
  garbled."""
  tree = str(tmp_path)
  _write_rounds(os.path.join(tree, "waal", "seed_0", "results.json"),
                [(100, 5, 5), (200, 10, 10), (300, 20, 10)])
  _write_rounds(os.path.join(tree, "waal", "seed_1", "results.json"), [(80, 5, 5)])
  os.makedirs(os.path.join(tree, "dbal", "seed_0"))
  with open(os.path.join(tree, "dbal", "seed_0", "results.json"), "w") as f:
    f.write('{"rounds": [')
  rounds = {"waal": 3, "random": 3, "dbal": 3}
  rows = campaign_status.status(tree, ["waal", "random", "dbal"], 3, rounds)
  # A round that two vmapped seeds trained together counts half its training per seed.
  shared = os.path.join(tree, "margin", "seed_0", "results.json")
  os.makedirs(os.path.dirname(shared))
  with open(shared, "w") as f:
    json.dump({"rounds": [{"train_seconds": 360, "eval_seconds": 10, "query_seconds": 2,
                           "trained_with_seeds": [0, 1]}]}, f)
  margin = campaign_status.status(tree, ["margin"], 1, {"margin": 1})[0]
  assert margin["hours"] == pytest.approx(192 / 3600) and margin["hours_left"] == 0.0
  assert rows[0]["rounds"] == [3, 1, 0]
  assert rows[0]["hours"] == pytest.approx(750 / 3600)
  assert rows[0]["hours_left"] == pytest.approx(1200 / 3600)
  assert rows[1] == {"arm": "random", "rounds": [0, 0, 0], "hours": 0.0, "hours_left": None}
  assert rows[2]["rounds"] == [None, 0, 0] and rows[2]["hours_left"] is None
  assert campaign_status.table(rows, rounds, 3, 2).splitlines() == [
      "| arm | seed 0 | seed 1 | seed 2 | hours | hours left |",
      "| --- | --- | --- | --- | --- | --- |",
      "| waal | done | 1/3 | 0/3 | 0.2 | 0.3 |",
      "| random | 0/3 | 0/3 | 0/3 | 0.0 | ? |",
      "| dbal | ? | 0/3 | 0/3 | 0.0 | ? |",
      "",
      "0.2 process-hours spent; 0.3 left besides random, dbal (no round recorded), about "
      "0.2 hours at --parallel=2 ('?': a results.json that cannot be read)."]
