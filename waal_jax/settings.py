"""Config -> typed settings, with every bad value reported as one line naming its field.

The library reads a config object (an ml_collections.ConfigDict or anything with the
same attributes); it never reads flags.
"""

import dataclasses
import math
from typing import Any

from waal_jax import data as data_lib
from waal_jax import objectives
from waal_jax import strategies
from waal_jax import train as train_lib
from waal_jax.errors import UserError

AUGMENT_MODES = ("auto", "none", "crop_flip")
STEPS_PER_EPOCH = ("auto", "labeled", "match_pool")
# The datasets the authors' code trains with random crop + flip.
REFERENCE_AUGMENTED = ("svhn_cropped", "cifar10")


@dataclasses.dataclass(frozen=True)
class ALSettings:
  initial_labeled: int   # labels at round 0
  query_size: int        # B: labels bought per round
  rounds: int            # query rounds; the run trains rounds + 1 networks

  @property
  def final_budget(self) -> int:
    return self.initial_labeled + self.rounds * self.query_size


def _fail(field: str, value: Any, why: str):
  raise UserError(f"{field}={value!r}: {why}")


def _check_int(config, field: str, minimum: int) -> int:
  value = _get(config, field)
  if isinstance(value, bool) or not isinstance(value, int):
    _fail(field, value, "must be an integer")
  if value < minimum:
    _fail(field, value, f"must be >= {minimum}")
  return value


def _check_float(config, field: str, minimum: float = 0.0, maximum: float = math.inf,
                 open_minimum: bool = False) -> float:
  value = _get(config, field)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    _fail(field, value, "must be a finite number")
  if value < minimum or (open_minimum and value == minimum):
    _fail(field, value, f"must be {'>' if open_minimum else '>='} {minimum:g}")
  if value > maximum:
    _fail(field, value, f"must be <= {maximum:g}")
  return float(value)


def _check_choice(config, field: str, choices) -> str:
  value = _get(config, field)
  if value not in choices:
    _fail(field, value, f"choose one of {', '.join(choices)}")
  return value


def _get(config, field: str):
  node = config
  for part in field.split("."):
    if not hasattr(node, part) and not (hasattr(node, "__contains__") and part in node):
      raise UserError(f"{field}: missing from the config")
    node = getattr(node, part)
  return node


def check(config) -> None:
  """Checks every field that needs no data. Raises UserError on the first bad one."""
  _check_int(config, "seed", 0)
  data_lib.get_spec(_get(config, "data.name"))
  for field in ("data.pool_size", "data.val_size"):
    value = _get(config, field)
    if value != -1:
      _check_int(config, field, 1)
  _check_choice(config, "model.name", ("lenet5", "vgg16"))
  _check_int(config, "seeds", 1)
  _check_int(config, "model.head_hidden", 1)
  _check_int(config, "model.feature_dim", 0)
  _check_float(config, "model.dropout", 0.0, 0.99)
  _check_choice(config, "model.conv", ("banded", "xla"))
  train_settings(config)
  query_settings(config)
  al_settings(config)
  spec = data_lib.get_spec(config.data.name)
  if config.model.name == "lenet5" and spec.image_shape != (28, 28, 1):
    _fail("model.name", "lenet5", f"takes 28x28x1 images; {spec.name} has "
          f"{'x'.join(map(str, spec.image_shape))} (use vgg16)")


def train_settings(config) -> train_lib.TrainSettings:
  variant = _check_choice(config, "train.variant", objectives.VARIANTS)
  augment = _check_choice(config, "train.augment", AUGMENT_MODES)
  if augment == "auto":
    augment = ("crop_flip" if variant == "reference" and config.data.name in REFERENCE_AUGMENTED
               else "none")
  adversarial = _check_choice(config, "train.adversarial",
                              ("auto",) + train_lib.ADVERSARIAL_MODES)
  strategy = strategies.get(_get(config, "query.strategy"))
  if adversarial == "auto":   # WAAL trains its critic; the baselines train supervised.
    adversarial = "wasserstein" if strategy.needs_critic else "none"
  steps_per_epoch = _check_choice(config, "train.steps_per_epoch", STEPS_PER_EPOCH)
  if adversarial != "none" and steps_per_epoch == "labeled":
    _fail("train.steps_per_epoch", steps_per_epoch, f"train.adversarial={adversarial} "
          "needs the unlabeled pool in every step: use auto or match_pool")
  if strategy.needs_critic and adversarial == "none":
    _fail("train.adversarial", adversarial, f"query.strategy={strategy.name} scores with "
          "the critic, which only adversarial training trains")
  return train_lib.TrainSettings(
      adversarial=adversarial,
      variant=variant,
      epochs=_check_int(config, "train.epochs", 1),
      batch_size=_check_int(config, "train.batch_size", 1),
      learning_rate=_check_float(config, "train.learning_rate", 0.0, open_minimum=True),
      momentum=_check_float(config, "train.momentum", 0.0, 0.999),
      mu=_check_float(config, "train.mu"),
      gradient_penalty=_check_float(config, "train.gradient_penalty"),
      patience=_check_int(config, "train.patience", 0),
      augment=augment == "crop_flip",
      eval_batch_size=_check_int(config, "train.eval_batch_size", 1),
      steps_per_epoch=steps_per_epoch)


def query_settings(config) -> strategies.QuerySettings:
  return strategies.QuerySettings(
      strategy=strategies.get(_get(config, "query.strategy")).name,
      selection=_check_float(config, "query.selection"),
      mixture=_check_float(config, "query.mixture", 0.0, 1.0),
      variant=_check_choice(config, "train.variant", objectives.VARIANTS),
      batch_size=_check_int(config, "query.batch_size", 1),
      mc_samples=_check_int(config, "query.mc_samples", 1),
      chunk_size=_check_int(config, "query.chunk_size", 1),
      kmedian_iterations=_check_int(config, "query.kmedian_iterations", 1),
      deepfool_iterations=_check_int(config, "query.deepfool_iterations", 1),
      deepfool_overshoot=_check_float(config, "query.deepfool_overshoot"),
      deepfool_candidates=_check_int(config, "query.deepfool_candidates", 2))


def al_settings(config) -> ALSettings:
  return ALSettings(_check_int(config, "al.initial_labeled", 1),
                    _check_int(config, "al.query_size", 1),
                    _check_int(config, "al.rounds", 0))


def check_budget(al: ALSettings, pool_count: int) -> None:
  """The labels asked for must fit in the pool, with unlabeled examples left to train on."""
  if al.initial_labeled >= pool_count:
    _fail("al.initial_labeled", al.initial_labeled,
          f"must be smaller than the pool of {pool_count} examples")
  if al.query_size > pool_count - al.initial_labeled:
    _fail("al.query_size", al.query_size,
          f"larger than the {pool_count - al.initial_labeled} unlabeled examples in the pool")
  if al.final_budget >= pool_count:
    _fail("al.rounds", al.rounds,
          f"{al.initial_labeled} + {al.rounds} x {al.query_size} = {al.final_budget} labels "
          f"would exhaust the pool of {pool_count} examples")
