"""The early-stopping rules and the side-by-side comparison, on hand-made numbers."""

import json
import os

import pytest

from conftest import make_config
from experiments import compare_runs
from experiments import stopping_study


def test_stopping_rules_pick_their_epochs_and_score_on_the_other_half():
  # Half A peaks at epoch 2 (0-based 1), then again higher at epoch 9 (0-based 8).
  a = [0.50, 0.60, 0.55, 0.55, 0.55, 0.55, 0.55, 0.58, 0.70, 0.65, 0.64, 0.63]
  b = [0.40, 0.61, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.66, 0.67, 0.60, 0.62]
  seconds = [1.0] * len(a)
  outcomes = stopping_study.rule_outcomes(a, b, seconds)
  # Patience 5: no better epoch than 2 during epochs 3-7, stop after epoch 7 and keep
  # epoch 2, whose half-B accuracy is 0.61.
  assert outcomes["patience 5"] == (0.61, 7, 7.0)
  # Patience 10 sees epoch 9 (best 0.70 on A) and runs to the end (12 < 9 + 10).
  assert outcomes["patience 10"] == (0.66, 12, 12.0)
  assert outcomes["best of all epochs"] == (0.66, 12, 12.0)
  assert outcomes["last epoch"] == (0.62, 12, 12.0)


def test_labeled_set_at_a_budget_is_the_initial_set_plus_the_bought_batches():
  results = {"rounds": [{"num_labeled": 2, "queried_indices": [7, 8]},
                        {"num_labeled": 4, "queried_indices": [9]},
                        {"num_labeled": 5, "queried_indices": []}]}
  assert stopping_study.labeled_at(results, [1, 2], 2) == [1, 2]
  assert stopping_study.labeled_at(results, [1, 2], 5) == [1, 2, 7, 8, 9]
  with pytest.raises(ValueError):
    stopping_study.labeled_at(results, [1, 2], 3)


def _write(tree, seed, accuracies):
  os.makedirs(os.path.join(tree, f"seed_{seed}"))
  rounds = [{"num_labeled": n, "test_accuracy": a} for n, a in accuracies.items()]
  with open(os.path.join(tree, f"seed_{seed}", "results.json"), "w") as f:
    json.dump({"rounds": rounds}, f)


def test_compare_runs_means_and_difference(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  _write(a, 0, {100: 0.70, 200: 0.80})
  _write(a, 1, {100: 0.72, 200: 0.84})
  _write(b, 0, {100: 0.69, 200: 0.78})
  _write(b, 1, {100: 0.71, 200: 0.78})
  _write(b, 2, {100: 0.10, 200: 0.10})          # not in tree a: left out
  table = compare_runs.compare(a, b).splitlines()
  assert table[0] == "seeds 0, 1; test accuracy in %"
  row_100 = next(line for line in table if line.startswith("| 100 |"))
  assert "71.00 +- 1.41" in row_100 and "70.00 +- 1.41" in row_100 and "+1.00" in row_100
  row_all = next(line for line in table if line.startswith("| all |"))
  assert "+2.50" in row_all            # (0.765 - 0.74) in points


def test_compare_runs_names_one_arm_on_two_platforms_by_the_folders_that_differ():
  assert compare_runs.column_names("r/full/margin", "r/gpu/margin/") == ("full/margin",
                                                                         "gpu/margin")
  assert compare_runs.column_names("x/waal", "y/random") == ("waal", "random")
  assert compare_runs.column_names("r/waal", "r/waal") == ("A", "B")


def test_rerun_check_finds_a_run_equal_and_a_changed_pick_different(tmp_path, synthetic_cache):
  from experiments import rerun_check  # pylint: disable=g-import-not-at-top
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  config = make_config(data__cache_dir=synthetic_cache, data__pool_size=400,
                       data__val_size=200, al__initial_labeled=40, al__query_size=20,
                       al__rounds=2, train__epochs=1, train__batch_size=16,
                       train__eval_batch_size=100, query__batch_size=128,
                       query__strategy="margin")
  committed = str(tmp_path / "committed")
  loop.run(config, committed, lambda _: None)
  lines = []
  assert rerun_check.compare(committed, 2, str(tmp_path / "again"), lines.append) == 0
  compared = [l for l in lines if "queried indices" in l]
  assert [l.split(";")[0] for l in compared] == [
      "round 0: queried indices equal (20)", "round 1: queried indices equal (20)"]
  with open(os.path.join(committed, "results.json")) as f:
    results = json.load(f)
  results["rounds"][1]["queried_indices"][0] = -1      # as if the code had changed
  with open(os.path.join(committed, "results.json"), "w") as f:
    json.dump(results, f)
  assert rerun_check.compare(committed, 2, str(tmp_path / "third"), lambda _: None) == 1
