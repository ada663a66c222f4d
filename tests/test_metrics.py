"""Calibration and per-class accuracy of a round's test set, against values worked out
by hand."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import TINY, needs_fashion_mnist, run_in_process
from waal_jax import metrics

# Four examples of three classes, as probabilities (the logits are their logs), and a
# fifth row of padding that must count for nothing.
PROBABILITIES = np.array([[0.7, 0.2, 0.1],      # label 0: right, confidence 0.7 (bin 10)
                          [0.5, 0.4, 0.1],      # label 1: wrong, confidence 0.5 (bin 7)
                          [0.25, 0.25, 0.5],    # label 2: right, confidence 0.5 (bin 7)
                          [0.1, 0.1, 0.8],      # label 2: right, confidence 0.8 (bin 12)
                          [0.9, 0.05, 0.05]])   # padding
LABELS = np.array([0, 1, 2, 2, 1])
VALID = np.array([True, True, True, True, False])


def _metrics(batches):
  sums = metrics.zero_sums(3)
  add = jax.jit(metrics.evaluation_sums)
  for rows in batches:
    sums = add(sums, np.log(PROBABILITIES[rows]), LABELS[rows], VALID[rows])
  return metrics.from_sums(jax.device_get(sums), count=4)


def test_calibration_and_per_class_accuracy_by_hand():
  result = _metrics([np.arange(5)])
  assert result["accuracy"] == 0.75
  # ECE: bin 7 holds two examples, one right, mean confidence 0.5: |1 - 2 x 0.5| = 0;
  # bins 10 and 12 one right example each: |1 - 0.7| + |1 - 0.8| = 0.5; over 4: 0.125.
  assert result["ece"] == pytest.approx(0.125, abs=1e-6)
  # NLL: -(ln 0.7 + ln 0.4 + ln 0.5 + ln 0.8) / 4.
  assert result["nll"] == pytest.approx(
      -(np.log(0.7) + np.log(0.4) + np.log(0.5) + np.log(0.8)) / 4, rel=1e-6)
  # Brier, summed over classes: 0.14 + 0.62 + 0.375 + 0.06 = 1.195; over 4: 0.29875.
  assert result["brier"] == pytest.approx(0.29875, rel=1e-6)
  assert result["per_class_accuracy"] == [1.0, 0.0, 1.0]


def test_the_sums_do_not_depend_on_the_batches():
  assert _metrics([np.arange(5)]) == pytest.approx(_metrics([np.arange(2), np.arange(2, 5)]))


def test_a_perfectly_calibrated_set_has_no_calibration_error():
  # Confidence 0.6 (bin 9), right on three of five examples: |3 - 5 x 0.6| = 0.
  probabilities = np.tile([0.6, 0.3, 0.1], (5, 1))
  labels = np.array([0, 0, 0, 1, 2])
  sums = metrics.evaluation_sums(metrics.zero_sums(3), np.log(probabilities), labels,
                                 np.ones(5, bool))
  result = metrics.from_sums(jax.device_get(sums), 5)
  assert result["ece"] == pytest.approx(0.0, abs=1e-6)
  assert result["per_class_accuracy"] == [1.0, 0.0, 0.0]


def test_a_class_without_test_examples_has_no_accuracy():
  sums = metrics.evaluation_sums(metrics.zero_sums(4), np.log(PROBABILITIES[:4] @ np.eye(3, 4)
                                                               + 1e-9), LABELS[:4], VALID[:4])
  assert metrics.from_sums(jax.device_get(sums), 4)["per_class_accuracy"][3] is None


@needs_fashion_mnist
def test_every_round_records_its_calibration(tmp_path, cache_dir):
  workdir = str(tmp_path / "w")
  _, error = run_in_process("--config=fashion_mnist", f"--workdir={workdir}",
                            f"--config.data.cache_dir={cache_dir}", *TINY)
  assert error is None, error
  with open(os.path.join(workdir, "results.json")) as f:
    rounds = json.load(f)["rounds"]
  for record in rounds:
    assert 0.0 <= record["test_ece"] <= 1.0 and record["test_nll"] > 0.0
    assert 0.0 <= record["test_brier"] <= 2.0
    per_class = record["test_per_class_accuracy"]
    assert len(per_class) == 10 and all(0.0 <= a <= 1.0 for a in per_class)
    # Fashion-MNIST's test split has 1,000 images of each class: accuracy is their mean.
    assert np.mean(per_class) == pytest.approx(record["test_accuracy"], abs=1e-9)
