"""A run's TensorBoard event files, written from the records the run keeps anyway.

Everything drawn comes from the records of results.json (a round's record and its
`epoch_metrics`), so a finished or committed run can be drawn again from its
results.json alone (`write_results`), and nothing is computed for TensorBoard inside
the training step. The event files go into the run's workdir itself, so
`tensorboard --logdir=TREE` over a tree of runs (seeds, arms) shows each run under
its path, side by side.

Two x axes, one per group of tags:
  epoch/...            step = the run's epoch count over all its rounds so far (a
                       round's curve starts where the previous round's ended)
  round/..., per_class_accuracy/..., queried_classes
                       step = the round's labels (num_labeled), the axis of the
                       field's budget curves
A resumed run writes the rounds and epochs it trains again at the same steps with the
same values (training is exact on resume), so TensorBoard draws them over each other.
The config goes in as hyperparameters (TensorBoard's HParams tab), flattened to
dotted names.
"""

import json
import math
import sys
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from waal_jax.errors import UserError

# A round's numbers drawn against its labels, and their tags.
ROUND_SCALARS = {
    "test_accuracy": "round/test_accuracy",
    "test_ece": "round/test_ece",
    "test_nll": "round/test_nll",
    "test_brier": "round/test_brier",
    "stop_set_kappa": "round/stop_set_kappa",
    "val_accuracy": "round/val_accuracy",
    "train_seconds": "round/train_seconds",
    "query_seconds": "round/query_seconds",
    "eval_seconds": "round/eval_seconds",
    "epochs_trained": "round/epochs_trained",
}
# An epoch's numbers (train.FitResult.epochs) and their tags. `adversarial` is the
# critic's Wasserstein estimate, mean g(z_u) - C mean g(z_l) (Eq. 8), in WAAL's
# training; minus the discriminator's cross-entropy with train.adversarial=h_divergence.
EPOCH_SCALARS = {
    "loss": "epoch/loss",
    "cross_entropy": "epoch/cross_entropy",
    "learning_rate": "epoch/learning_rate",
    "val_accuracy": "epoch/val_accuracy",
    "seconds": "epoch/seconds",
}
ADVERSARIAL_TAGS = {"wasserstein": "epoch/wasserstein_estimate",
                    "h_divergence": "epoch/h_divergence_term"}
QUERIED_CLASSES_TAG = "queried_classes"
PER_CLASS_PREFIX = "per_class_accuracy/"
# The HParams tab's metrics: a run's last value of each.
HPARAM_METRICS = ("round/test_accuracy", "round/test_ece", "round/stop_set_kappa")


def _summary_writer_class():
  """tensorboardX's SummaryWriter: a small, well-kept writer of the event format that
  needs no TensorFlow (whose import would add seconds to every run's start).
  tensorboardX imports PyTorch too where it is installed, only to accept torch tensors,
  which a run never passes; that import cost the README's quick command 1.1 s and
  180 MiB (measured), so it is kept out: `import torch` fails while tensorboardX loads.
  A torch that the caller has imported already is left as it is."""
  keep_out = "torch" not in sys.modules
  if keep_out:
    sys.modules["torch"] = None       # (Python's way to make an import fail)
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f"tensorboard=true needs the tensorboardX package ({e}): pip install "
                    "tensorboardX, or set tensorboard=false") from None
  finally:
    if keep_out:
      del sys.modules["torch"]
  return SummaryWriter


def flat_config(config: dict, prefix: str = "") -> Dict[str, object]:
  """The config as {dotted name: value} with values TensorBoard's HParams tab takes
  (numbers, strings, booleans; a list or tuple as its JSON text)."""
  flat = {}
  for name, value in config.items():
    if isinstance(value, dict):
      flat.update(flat_config(value, f"{prefix}{name}."))
    elif isinstance(value, (bool, int, float, str)):
      flat[f"{prefix}{name}"] = value
    else:
      flat[f"{prefix}{name}"] = json.dumps(value)
  return flat


def _finite(value) -> bool:
  return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


class TensorBoardWriter:
  """Writes one run's records as TensorBoard events into `logdir` (its workdir).

  `class_names` name the per-class tags; `adversarial` is the run's
  train.adversarial (wasserstein, h_divergence or none), which names the adversarial
  term's tag (none: the term is not drawn)."""

  def __init__(self, logdir: str, class_names: Sequence[str], adversarial: str):
    self._writer = _summary_writer_class()(logdir=logdir, flush_secs=10)
    self.class_names = list(class_names)
    self.adversarial_tag = ADVERSARIAL_TAGS.get(adversarial)
    self._epochs_written = 0     # the run's epochs whose scalars are written

  def hparams(self, config: dict) -> None:
    """The config as hyperparameters of this run."""
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    for event in summary.hparams(flat_config(config), {tag: 0.0 for tag in HPARAM_METRICS}):
      self._writer.file_writer.add_summary(event)

  def epoch(self, record: dict, step: int) -> None:
    """One epoch's record (train.FitResult.epochs entry) at the run's epoch `step`."""
    for name, tag in EPOCH_SCALARS.items():
      if _finite(record.get(name)):
        self._writer.add_scalar(tag, record[name], step)
    if self.adversarial_tag and _finite(record.get("adversarial")):
      self._writer.add_scalar(self.adversarial_tag, record["adversarial"], step)
    # Only the Wasserstein critic has a gradient penalty to draw.
    if self.adversarial_tag == ADVERSARIAL_TAGS["wasserstein"] and _finite(
        record.get("gradient_penalty")):
      self._writer.add_scalar("epoch/gradient_penalty", record["gradient_penalty"], step)
    self._epochs_written = max(self._epochs_written, step)

  def round(self, record: dict, epochs_before: int) -> None:
    """A finished round's record, at its labels; its epochs (at the run's epochs
    `epochs_before` + 1, ...) where they were not written as they ran."""
    for k, epoch_record in enumerate(record.get("epoch_metrics") or []):
      step = epochs_before + k + 1
      if step > self._epochs_written:
        self.epoch(epoch_record, step)
    labels = record["num_labeled"]
    for name, tag in ROUND_SCALARS.items():
      if _finite(record.get(name)):
        self._writer.add_scalar(tag, record[name], labels)
    for name, accuracy in zip(self._names(), record.get("test_per_class_accuracy") or []):
      if _finite(accuracy):
        self._writer.add_scalar(PER_CLASS_PREFIX + name, accuracy, labels)
    counts = record.get("queried_class_counts")
    if counts and sum(counts):
      self._class_histogram(counts, labels)
    self._writer.flush()

  def _names(self) -> List[str]:
    return [name.replace(" ", "_").replace("/", "_") for name in self.class_names]

  def _class_histogram(self, counts: Sequence[int], step: int) -> None:
    """The queried batch over the classes: bucket c holds class c's count (its upper
    edge at c + 0.5, so TensorBoard's histogram shows one bar per class)."""
    counts = np.asarray(counts, np.float64)
    classes = np.arange(len(counts), dtype=np.float64)
    present = classes[counts > 0]
    self._writer.add_histogram_raw(
        QUERIED_CLASSES_TAG, min=float(present.min()), max=float(present.max()),
        num=float(counts.sum()), sum=float(classes @ counts),
        sum_squares=float((classes ** 2) @ counts), bucket_limits=(classes + 0.5).tolist(),
        bucket_counts=counts.tolist(), global_step=step)

  def close(self) -> None:
    self._writer.close()


def epochs_before(history: Iterable[dict]) -> int:
  """The epochs trained by the recorded rounds: the epoch step the next round starts
  after."""
  return sum(len(record.get("epoch_metrics") or []) for record in history)


def write_results(results: dict, logdir: str, class_names: Optional[Sequence[str]] = None,
                  adversarial: str = "wasserstein") -> None:
  """Writes a whole run from its results.json content (e.g. a committed run) as
  event files into `logdir`."""
  rounds = results["rounds"]
  if class_names is None:
    width = max((len(r.get("test_per_class_accuracy") or []) for r in rounds), default=0)
    class_names = [str(c) for c in range(width)]
  writer = TensorBoardWriter(logdir, class_names, adversarial)
  try:
    writer.hparams(results.get("config", {}))
    done = 0
    for record in rounds:
      writer.round(record, done)
      done += len(record.get("epoch_metrics") or [])
  finally:
    writer.close()
