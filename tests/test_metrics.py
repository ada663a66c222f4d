"""Calibration and per-class accuracy of a round's test set, against values worked out
by hand."""

import jax
import numpy as np
import pytest

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


def test_cohen_kappa_by_hand():
  # Agreement 5/6; chance: first gives each class 2/6, second 2/6, 1/6, 3/6, so
  # p_e = (2x2 + 2x1 + 2x3) / 36 = 1/3; kappa = (5/6 - 1/3) / (2/3) = 0.75.
  first, second = [0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 2]
  assert metrics.cohen_kappa(first, second, 3) == pytest.approx(0.75)
  assert metrics.cohen_kappa(first, first, 3) == pytest.approx(1.0)
  # Agreeing less often than chance: below zero (p_o = 0, p_e = 1/2: kappa = -1).
  assert metrics.cohen_kappa([0, 1], [1, 0], 2) == pytest.approx(-1.0)
  assert metrics.cohen_kappa([2, 2, 2], [2, 2, 2], 3) == 1.0     # one class only


def test_the_stopping_signal_fires_after_enough_stable_rounds():
  kappas = [None, 0.95, 0.991, 0.98, 0.99, 0.995, 0.999]
  # Rounds 4, 5 and 6 are >= 0.99; round 2 alone is, then round 3 breaks the streak.
  assert metrics.stable_round(kappas, 0.99, 1) == 2
  assert metrics.stable_round(kappas, 0.99, 2) == 5
  assert metrics.stable_round(kappas, 0.99, 3) == 6
  assert metrics.stable_round(kappas, 0.99, 4) is None
  assert metrics.stable_round(kappas, 0.9, 3) == 3       # 0.95, 0.991, 0.98
  assert metrics.stable_round([None, None, 1.0], 0.5, 2) is None   # a missing kappa breaks it
  with pytest.raises(ValueError):
    metrics.stable_round(kappas, 0.99, 0)
