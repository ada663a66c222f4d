"""The config, checked once, as typed settings; every bad value is one line naming its field.

The config (experiments/configs) is the only source of defaults and of the meaning of
each field; the dataclasses here repeat neither. Each dataclass field carries the type
it is checked with (`fields.*`), and `resolve` checks them all, then the rules that tie
fields together. The library reads a config object (an ml_collections.ConfigDict or
anything with the same attributes); it never reads flags.
"""

import dataclasses
import types
from typing import Any, Mapping, Tuple

from waal_jax import data as data_lib
from waal_jax import fields
from waal_jax import strategies
from waal_jax.errors import UserError

ADVERSARIAL_MODES = ("wasserstein", "h_divergence", "none")


def _checked(field_type):
  """A dataclass field, without default, checked with `field_type`."""
  return dataclasses.field(metadata={"check": field_type})


@dataclasses.dataclass(frozen=True)
class DataSettings:
  name: str = _checked(fields.Choice(data_lib.DATASET_NAMES))
  path: str = _checked(fields.Text())
  image_size: int = _checked(fields.Int(0))
  val_fraction: float = _checked(fields.Float(0.0, 0.9))
  test_fraction: float = _checked(fields.Float(0.0, 0.9))
  data_dir: str = _checked(fields.Text())
  manual_dir: str = _checked(fields.Text())
  cache_dir: str = _checked(fields.Text())
  download: bool = _checked(fields.Bool())
  pool_size: int = _checked(fields.Int(1, special=(-1,)))
  val_size: int = _checked(fields.Int(1, special=(-1,)))
  mean: Tuple[float, ...] = _checked(fields.Floats())
  std: Tuple[float, ...] = _checked(fields.Floats(fields.Float(0.0, open_minimum=True)))


@dataclasses.dataclass(frozen=True)
class ModelSettings:
  name: str = _checked(fields.Choice(("auto", "lenet5", "vgg16")))
  head_hidden: int = _checked(fields.Int(1))
  feature_dim: int = _checked(fields.Int(0))
  dropout: float = _checked(fields.Float(0.0, 0.99))
  extractor_dropout: float = _checked(fields.Float(0.0, 0.99))
  init: str = _checked(fields.Choice(("pytorch", "lecun")))
  conv: str = _checked(fields.Choice(("auto", "banded", "xla")))
  matmul_dtype: str = _checked(fields.Choice(("float32", "bfloat16")))


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Hashable: the static parts of training, baked into the compiled step."""
  epochs: int = _checked(fields.Int(1))
  epochs_added_per_round: int = _checked(fields.Int(0))
  batch_size: int = _checked(fields.Int(1))
  learning_rate: float = _checked(fields.Float(0.0, open_minimum=True))
  lr_schedule: str = _checked(fields.Choice(("step", "constant")))
  momentum: float = _checked(fields.Float(0.0, 0.999))
  mu: float = _checked(fields.Float())
  gradient_penalty: float = _checked(fields.Float())
  adversarial: str = _checked(fields.Choice(("auto",) + ADVERSARIAL_MODES))
  adversarial_weights: str = _checked(fields.Choice(("bias_coefficient", "size_ratio")))
  critic_penalty_sign: str = _checked(fields.Choice(("subtract", "add")))
  penalty_points: str = _checked(fields.Choice(("interpolates", "interpolates_and_ends")))
  critic_features: str = _checked(fields.Choice(("shared", "recomputed")))
  labeled_sampling: str = _checked(fields.Choice(("with_replacement", "cycle")))
  domain_batches: str = _checked(fields.Choice(("joint", "separate")))
  model_selection: str = _checked(fields.Choice(("best_val", "last")))
  patience: int = _checked(fields.Int(0))
  augment: str = _checked(fields.Choice(("none", "crop_flip")))
  steps_per_epoch: str = _checked(fields.Choice(("auto", "labeled", "match_pool")))
  eval_batch_size: int = _checked(fields.Int(1))
  variant: str = _checked(fields.Text())

  def for_round(self, round_index: int) -> "TrainSettings":
    """The settings of round `round_index` (0 = the initial labels): `epochs` grows by
    `epochs_added_per_round` a round (the schedule's steps move with it)."""
    if not self.epochs_added_per_round:
      return self
    return dataclasses.replace(
        self, epochs=self.epochs + round_index * self.epochs_added_per_round)

  def learning_rate_at(self, epoch: int) -> float:
    """'step' (Table 3): x0.1 from 50% and x0.01 from 75% of the epochs; 'constant'."""
    if self.lr_schedule == "step":
      if epoch >= 0.75 * self.epochs:
        return self.learning_rate * 0.01
      if epoch >= 0.5 * self.epochs:
        return self.learning_rate * 0.1
    return self.learning_rate

  @property
  def walks_labeled_set(self) -> bool:
    """Whether an epoch walks the labeled set (plain supervised training) rather than
    the unlabeled pool."""
    return self.adversarial == "none" and self.steps_per_epoch != "match_pool"


@dataclasses.dataclass(frozen=True)
class ALSettings:
  initial_labeled: int = _checked(fields.Int(1))
  query_size: int = _checked(fields.Int(1))
  rounds: int = _checked(fields.Int(0))
  oracle: str = _checked(fields.Choice(("simulated", "human")))

  @property
  def final_budget(self) -> int:
    return self.initial_labeled + self.rounds * self.query_size


@dataclasses.dataclass(frozen=True)
class QuerySettings:
  strategy: str
  batch_size: int                  # pool examples scored per call and device
  options: Mapping[str, Any]       # the strategy's own fields (Strategy.config_fields)


@dataclasses.dataclass(frozen=True)
class Settings:
  seed: int
  seeds: int
  parallel_seeds: int
  parallel_seeds_mode: str
  distributed: bool
  data: DataSettings
  model: ModelSettings
  train: TrainSettings
  al: ALSettings
  query: QuerySettings


def _get(config, name: str):
  node = config
  for part in name.split("."):
    if not hasattr(node, part) and not (hasattr(node, "__contains__") and part in node):
      raise UserError(f"{name}: missing from the config")
    node = getattr(node, part)
  return node


def _read(cls, config, group: str, **resolved):
  """cls built from config.<group>, each field checked by its declared type."""
  values = {}
  for field in dataclasses.fields(cls):
    name = f"{group}.{field.name}"
    values[field.name] = field.metadata["check"].check(name, _get(config, name))
  values.update(resolved)
  return cls(**values)


def _query_settings(config) -> QuerySettings:
  strategy = strategies.get(_get(config, "query.strategy"))
  checked = {name: field_type.check(f"query.{name}", _get(config, f"query.{name}"))
             for other in strategies.names()     # every strategy's fields, used or not
             for name, field_type in strategies.get(other).config_fields.items()}
  options = {name: checked[name] for name in strategy.config_fields}
  return QuerySettings(strategy.name, fields.Int(1).check("query.batch_size",
                                                          _get(config, "query.batch_size")),
                       types.MappingProxyType(options))


def _train_settings(config) -> TrainSettings:
  train = _read(TrainSettings, config, "train")
  strategy = strategies.get(_get(config, "query.strategy"))
  adversarial = train.adversarial
  if adversarial == "auto":   # WAAL trains its critic; the baselines train supervised.
    adversarial = "wasserstein" if strategy.needs_critic else "none"
  if adversarial != "none" and train.steps_per_epoch == "labeled":
    fields.fail("train.steps_per_epoch", train.steps_per_epoch, f"train.adversarial="
                f"{adversarial} needs the unlabeled pool in every step: use auto or match_pool")
  if strategy.needs_critic and adversarial == "none":
    fields.fail("train.adversarial", adversarial, f"query.strategy={strategy.name} scores "
                "with the critic, which only adversarial training trains")
  return dataclasses.replace(train, adversarial=adversarial)


def resolve(config) -> Settings:
  """Checks every field that needs no data; raises UserError on the first bad one."""
  data = _read(DataSettings, config, "data")
  model = _read(ModelSettings, config, "model")
  settings = Settings(
      seed=fields.Int(0).check("seed", _get(config, "seed")),
      seeds=fields.Int(1).check("seeds", _get(config, "seeds")),
      parallel_seeds=fields.Int(1).check("parallel_seeds", _get(config, "parallel_seeds")),
      parallel_seeds_mode=fields.Choice(("auto", "processes", "vmap")).check(
          "parallel_seeds_mode", _get(config, "parallel_seeds_mode")),
      distributed=fields.Bool().check("distributed", _get(config, "distributed")),
      data=data, model=model, train=_train_settings(config),
      al=_read(ALSettings, config, "al"), query=_query_settings(config))
  if settings.al.oracle == "human" and (settings.seeds > 1 or settings.parallel_seeds > 1):
    fields.fail("al.oracle", "human", "runs one seed at a time (seeds=1, parallel_seeds=1): "
                "a person labels one run's queries")
  if data.name != data_lib.USER_DATASET:
    return for_data(settings, data_lib.get_spec(data.name))
  if not data.path:
    fields.fail("data.path", data.path, "give the folder (train/<class>/*.png|jpg) or the "
                ".npz of your images")
  if data.val_fraction + data.test_fraction >= 1.0:
    fields.fail("data.val_fraction", data.val_fraction, f"with data.test_fraction="
                f"{data.test_fraction} it leaves no training images")
  return settings   # The rest is checked once the images are read (for_data).


def for_data(settings: Settings, spec: data_lib.DatasetSpec) -> Settings:
  """Checks the fields that depend on the images against the dataset and resolves
  model.name=auto: LeNet-5 for 28x28 grayscale images, VGG16-BN otherwise."""
  data, model = settings.data, settings.model
  shape = "x".join(map(str, spec.image_shape))
  channels = spec.image_shape[-1]
  for name in ("mean", "std"):
    value = getattr(data, name)
    if value and len(value) != channels:
      fields.fail(f"data.{name}", value, f"give {channels} value(s), one per channel of "
                  f"{spec.name}, or () for the dataset's own statistics")
  if model.name == "auto":
    model = dataclasses.replace(
        model, name="lenet5" if spec.image_shape == (28, 28, 1) else "vgg16")
  if model.name == "lenet5" and spec.image_shape != (28, 28, 1):
    fields.fail("model.name", "lenet5", f"takes 28x28x1 images; {spec.name} has {shape} "
                "(use vgg16)")
  height, width = spec.image_shape[:2]
  if model.name == "vgg16" and (height % 32 or width % 32):
    fields.fail("model.name", "vgg16", f"halves the image five times, so its sides must be "
                f"multiples of 32; {spec.name} has {shape} (set data.image_size, e.g. 32)")
  return dataclasses.replace(settings, model=model)


def check_budget(al: ALSettings, pool_count: int) -> None:
  """The labels asked for must fit in the pool, with unlabeled examples left to train on."""
  if al.initial_labeled >= pool_count:
    fields.fail("al.initial_labeled", al.initial_labeled,
                f"must be smaller than the pool of {pool_count} examples")
  if al.query_size > pool_count - al.initial_labeled:
    fields.fail("al.query_size", al.query_size,
                f"larger than the {pool_count - al.initial_labeled} unlabeled examples in "
                "the pool")
  if al.final_budget >= pool_count:
    fields.fail("al.rounds", al.rounds,
                f"{al.initial_labeled} + {al.rounds} x {al.query_size} = {al.final_budget} "
                f"labels would exhaust the pool of {pool_count} examples")
