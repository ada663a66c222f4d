"""What a round's test set says of its network beyond accuracy: calibration (expected
calibration error over 15 equal-width confidence bins, negative log-likelihood, Brier
score) and accuracy per class.

`evaluation_sums` runs on the devices, batch by batch, and adds into sums that
`from_sums` turns into the metrics on the host, so a test set is read once and no
per-example output is kept.

`cohen_kappa` and `stable_round` are the stopping signal (Bloodgood and Vijay-Shanker,
2009): the agreement of consecutive rounds' predictions on a stop set, and the round
where it has stayed high long enough.
"""

from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

CALIBRATION_BINS = 15


def zero_sums(num_classes: int) -> Dict[str, np.ndarray]:
  """The sums before the first batch."""
  return {"correct": np.int32(0), "nll": np.float32(0), "brier": np.float32(0),
          "bin_count": np.zeros(CALIBRATION_BINS, np.int32),
          "bin_confidence": np.zeros(CALIBRATION_BINS, np.float32),
          "bin_correct": np.zeros(CALIBRATION_BINS, np.int32),
          "class_count": np.zeros(num_classes, np.int32),
          "class_correct": np.zeros(num_classes, np.int32)}


def evaluation_sums(sums: Dict[str, jax.Array], logits: jax.Array, labels: jax.Array,
                    valid: jax.Array) -> Dict[str, jax.Array]:
  """`sums` plus a batch's: logits (B, C), labels (B,), valid (B,) bool (padding rows
  add nothing). The predicted class is argmax(logits), as accuracy counts it."""
  num_classes = logits.shape[-1]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  probs = jnp.exp(log_probs)
  predicted = jnp.argmax(logits, axis=-1)
  correct = (predicted == labels) & valid
  weight = valid.astype(jnp.float32)
  confidence = jnp.max(probs, axis=-1)
  # Bin b holds confidences in [b/15, (b+1)/15); a confidence of 1 goes to the last.
  bins = jnp.minimum((confidence * CALIBRATION_BINS).astype(jnp.int32), CALIBRATION_BINS - 1)
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  by_bin = lambda values: jax.ops.segment_sum(values, bins, CALIBRATION_BINS)
  by_class = lambda values: jax.ops.segment_sum(values, labels, num_classes)
  return {
      "correct": sums["correct"] + jnp.sum(correct).astype(jnp.int32),
      "nll": sums["nll"] - jnp.sum(jnp.sum(log_probs * one_hot, axis=-1) * weight),
      "brier": sums["brier"] + jnp.sum(jnp.sum((probs - one_hot) ** 2, axis=-1) * weight),
      "bin_count": sums["bin_count"] + by_bin(valid.astype(jnp.int32)),
      "bin_confidence": sums["bin_confidence"] + by_bin(confidence * weight),
      "bin_correct": sums["bin_correct"] + by_bin(correct.astype(jnp.int32)),
      "class_count": sums["class_count"] + by_class(valid.astype(jnp.int32)),
      "class_correct": sums["class_correct"] + by_class(correct.astype(jnp.int32)),
  }


def from_sums(sums: Dict[str, np.ndarray], count: int) -> Dict[str, object]:
  """accuracy, ece, nll, brier (means over the `count` examples) and per_class_accuracy
  (None for a class without examples) from the sums of every batch."""
  sums = {name: np.asarray(value) for name, value in sums.items()}
  gaps = np.abs(sums["bin_correct"].astype(np.float64) - sums["bin_confidence"])
  per_class: list = [None if n == 0 else float(c) / float(n)
                     for c, n in zip(sums["class_correct"], sums["class_count"])]
  return {"accuracy": int(sums["correct"]) / count,
          "ece": float(np.sum(gaps) / count),
          "nll": float(sums["nll"]) / count,
          "brier": float(sums["brier"]) / count,
          "per_class_accuracy": per_class}



def cohen_kappa(first: np.ndarray, second: np.ndarray, num_classes: int) -> float:
  """Cohen's kappa of two labelings of the same examples (class indices): their
  agreement beyond what their class frequencies give by chance, (p_o - p_e) / (1 - p_e).
  1 when both give every example the same single class."""
  first, second = np.asarray(first), np.asarray(second)
  agreement = float(np.mean(first == second))
  chance = float(np.dot(np.bincount(first, minlength=num_classes) / len(first),
                        np.bincount(second, minlength=num_classes) / len(second)))
  if chance == 1.0:
    return 1.0
  return (agreement - chance) / (1.0 - chance)


def stable_round(kappas: Sequence[Optional[float]], threshold: float,
                 rounds: int) -> Optional[int]:
  """The first round at which the stopping signal fires: the kappas of it and of the
  `rounds` - 1 rounds before it (`kappas[r]`: round r's predictions against round
  r - 1's; None where there is none, as in round 0) are all >= `threshold`. None when
  it never fires."""
  if rounds < 1:
    raise ValueError(f"rounds must be at least 1, not {rounds}")
  streak = 0
  for round_index, kappa in enumerate(kappas):
    streak = streak + 1 if kappa is not None and kappa >= threshold else 0
    if streak >= rounds:
      return round_index
  return None
