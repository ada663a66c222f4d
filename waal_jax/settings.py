"""Every setting of a run in one schema: its default, its check and one line of help.

Each field of the dataclasses below is a `fields.setting(default, check, help)`; a
strategy's own options live beside its code (`Strategy.config_fields`). From this one
schema come the command line's config (`default_config`, which experiments/configs
starts from), the list of fields with their help (`schema`), the checked, typed
settings of a config (`resolve`), and the value a field missing from an older run's
config takes (its default: a new field's default must do what older runs did, or
checkpoints.EARLIER_BEHAVIOUR names the value that does). The
library reads a config object (an ml_collections.ConfigDict or anything with the same
attributes); it never reads flags.
"""

import dataclasses
import types
from typing import Iterator, Tuple

import ml_collections

from waal_jax import data as data_lib
from waal_jax import fields
from waal_jax import strategies
from waal_jax.errors import UserError
from waal_jax.fields import setting

ADVERSARIAL_MODES = ("wasserstein", "h_divergence", "none")


Int, Float, Choice, Bool, Text, Floats = (fields.Int, fields.Float, fields.Choice,
                                          fields.Bool, fields.Text, fields.Floats)


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """Which images, and how they are split and normalised (the command line's data)."""
  name: str = setting("", Choice(data_lib.DATASET_NAMES), "tfds name: fashion_mnist, "
                      "svhn_cropped, cifar10, stl10; or image_folder: your images at data.path")
  path: str = setting("", Text(), "image_folder: a folder (train/<class>/*.png|jpg, optional "
                      "val/, test/, unlabeled/) or an .npz (x_train, y_train, x_test, ...)")
  image_size: int = setting(0, Int(0), "image_folder: resize every image to this many pixels "
                            "square; 0 = keep them (they must share one size)")
  val_fraction: float = setting(0.1, Float(0.0, 0.9), "image_folder without val/: share of "
                                "each class of train/ held out for validation")
  test_fraction: float = setting(0.2, Float(0.0, 0.9), "image_folder without test/: share "
                                 "held out for test")
  data_dir: str = setting("", Text(), "tfds data_dir; \"\" = the tfds default "
                          "(~/tensorflow_datasets)")
  manual_dir: str = setting("", Text(), "folder with the original files, for offline use")
  cache_dir: str = setting("", Text(), "cache of loaded arrays; \"\" = ~/.cache/waal_jax")
  download: bool = setting(True, Bool(), "may tfds download the data when nothing local "
                           "has it")
  pool_size: int = setting(-1, Int(1, special=(-1,)), "-1 = the whole Table 2 pool; n = a "
                           "random subset of n")
  val_size: int = setting(-1, Int(1, special=(-1,)), "-1 = the whole validation split; n = a "
                          "random subset")
  mean: Tuple[float, ...] = setting((), Floats(), "per-channel mean of [0, 1] pixels "
                                    "subtracted before the network; () = the dataset's own")
  std: Tuple[float, ...] = setting((), Floats(Float(0.0, open_minimum=True)), "per-channel "
                                   "divisor after that; () = the dataset's own")


@dataclasses.dataclass(frozen=True)
class ModelSettings:
  """The built-in networks (appendix G.2); your own Flax modules need none of this."""
  name: str = setting("lenet5", Choice(("auto", "lenet5", "vgg16")), "feature extractor: "
                      "lenet5, vgg16, or auto (lenet5 for 28x28 grayscale images, else vgg16)")
  head_hidden: int = setting(50, Int(1), "hidden units of the classifier and critic heads "
                             "(G.2)")
  feature_dim: int = setting(0, Int(0), "vgg16: dense layer to this many features; 0 = none")
  dropout: float = setting(0.5, Float(0.0, 0.99), "dropout rate in both heads (G.2)")
  extractor_dropout: float = setting(0.5, Float(0.0, 0.99), "lenet5: channel dropout after "
                                     "conv2, as the authors' (and DeepAL's) LeNet-5; 0 = none")
  init: str = setting("pytorch", Choice(("pytorch", "lecun")), "initial weights: pytorch "
                      "(uniform +-1/sqrt(fan_in), as the published numbers had) or lecun")
  conv: str = setting("auto", Choice(("auto", "banded", "xla")), "convolution kernels: auto "
                      "(cpu: banded; gpu/tpu: xla), banded (fast on XLA:CPU) or xla; same "
                      "result and parameters")
  matmul_dtype: str = setting("float32", Choice(("float32", "bfloat16")), "operands of the "
                              "products: float32, or bfloat16 (float32 accumulation; for "
                              "GPU/TPU)")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """How a round's network is trained. Hashable: the static parts of training, baked
  into the compiled step. The defaults are the paper's (Table 3, section 4)."""
  epochs: int = setting(80, Int(1), "most epochs per round (Table 3 / section 4)")
  epochs_added_per_round: int = setting(0, Int(0), "round r trains at most epochs + r x this "
                                        "(0: every round the same)")
  batch_size: int = setting(64, Int(1), "mini-batch size S, labeled and unlabeled each")
  learning_rate: float = setting(0.01, Float(0.0, open_minimum=True), "initial SGD learning "
                                 "rate (Table 3)")
  lr_schedule: str = setting("step", Choice(("step", "constant")), "step: x0.1 from 50%, "
                             "x0.01 from 75% of the epochs (Table 3); constant")
  momentum: float = setting(0.5, Float(0.0, 0.999), "SGD momentum (Table 3)")
  mu: float = setting(1e-2, Float(), "weight mu of the adversarial term (Table 3)")
  gradient_penalty: float = setting(2.0, Float(), "weight of the critic's gradient penalty")
  adversarial: str = setting("auto", Choice(("auto",) + ADVERSARIAL_MODES), "auto "
                             "(wasserstein for waal, none for the baselines), wasserstein, "
                             "h_divergence (appendix H) or none")
  adversarial_weights: str = setting(
      "bias_coefficient", Choice(("bias_coefficient", "size_ratio")), "bias_coefficient: "
      "mu' = mu U/(L+U) on the Wasserstein term and C0 on the labeled critic mean (Eq. 8); "
      "size_ratio: mu and L/U")
  critic_penalty_sign: str = setting("subtract", Choice(("subtract", "add")), "subtract: the "
                                     "critic maximises W - penalty (WGAN-GP); add: W + penalty")
  penalty_points: str = setting(
      "interpolates", Choice(("interpolates", "interpolates_and_ends")), "where the penalty "
      "is taken: interpolates between paired labeled and unlabeled features, or also at "
      "both sets of features (interpolates_and_ends)")
  critic_features: str = setting("shared", Choice(("shared", "recomputed")), "the critic "
                                 "step's features: shared (the feature step's) or recomputed "
                                 "(by the updated extractor)")
  labeled_sampling: str = setting(
      "with_replacement", Choice(("with_replacement", "cycle")), "labeled batch beside each "
      "unlabeled one: with_replacement (Alg. 1) or cycle (position p takes labeled p mod L)")
  domain_batches: str = setting("joint", Choice(("joint", "separate")), "joint: labeled and "
                                "unlabeled through the extractor as one batch; separate: one "
                                "call each")
  model_selection: str = setting("best_val", Choice(("best_val", "last")), "the round's "
                                 "network: best_val (the epoch of best validation accuracy) "
                                 "or last")
  patience: int = setting(10, Int(0), "stop after this many epochs without a better "
                          "validation accuracy; 0 = train every epoch")
  augment: str = setting("none", Choice(("none", "crop_flip")), "none, or crop_flip (random "
                         "crop after 4-pixel padding + horizontal flip; images only)")
  steps_per_epoch: str = setting(
      "auto", Choice(("auto", "labeled", "match_pool")), "auto (WAAL: the unlabeled pool; "
      "baselines: the labeled set), labeled, or match_pool (baselines get WAAL's steps)")
  eval_batch_size: int = setting(250, Int(1), "examples per evaluation batch")
  variant: str = setting("paper", Text(), "the preset's name, recorded in results (a label: "
                         "the fields above say what is done)")

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


# Who labels a run's queries; all but simulated are a person.
ORACLES = ("simulated", "human", "label_studio")


@dataclasses.dataclass(frozen=True)
class ALSettings:
  """The budget of the command line's runs (Table 2) and who labels."""
  initial_labeled: int = setting(1000, Int(1), "labels at round 0 (Table 2)")
  query_size: int = setting(500, Int(1), "labels bought per round, B (Table 2)")
  rounds: int = setting(10, Int(0), "query rounds after round 0: results hold rounds + 1 "
                        "entries (al.rounds=1 trains twice)")
  stop_set_size: int = setting(2000, Int(0), "examples of the pool, unlabeled at round 0, "
                               "whose predicted classes every round compares with the "
                               "previous round's (stop_set_kappa, a stopping signal); 0: none")
  stop_when_stable: int = setting(0, Int(0), "end the run once stop_set_kappa >= "
                                  "al.stable_kappa in this many rounds in a row (the last "
                                  "of them buys nothing); 0: run every round")
  stable_kappa: float = setting(0.99, Float(-1.0, 1.0), "the stop_set_kappa that counts as "
                                "stable for al.stop_when_stable (Bloodgood and "
                                "Vijay-Shanker, 2009: 0.99)")
  oracle: str = setting("simulated", Choice(ORACLES), "who labels the queries: simulated "
                        "(the dataset's labels), human (a CSV per round in WORKDIR/to_label, "
                        "answered in WORKDIR/labels) or label_studio (a person in Label "
                        "Studio: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY from the "
                        "environment)")
  label_studio_project: int = setting(0, Int(0), "al.oracle=label_studio: the id of the "
                                      "project the tasks go to; 0: the run makes one, its "
                                      "choices the class names")
  wait: bool = setting(False, Bool(), "al.oracle=label_studio: after a query, wait (polling) "
                       "until every task is labeled and go on, instead of exiting")
  poll_seconds: int = setting(10, Int(1), "al.wait=true: seconds between two looks")
  reimport: bool = setting(False, Bool(), "al.oracle=label_studio: import the tasks of the "
                           "waiting round that were deleted in Label Studio again")

  @property
  def by_a_person(self) -> bool:
    """Whether a person labels the queries (each round waits for their labels)."""
    return self.oracle != "simulated"

  @property
  def final_budget(self) -> int:
    """The labels at the end of the last round: initial_labeled + rounds x query_size."""
    return self.initial_labeled + self.rounds * self.query_size


# The strategy and its options; with the strategies, which it checks.
QuerySettings = strategies.QuerySettings


@dataclasses.dataclass(frozen=True)
class Settings:
  """A command-line run: the seeds and how they run, and one settings group each."""
  seed: int = setting(0, Int(0), "root PRNG seed: data split, initial labels, training")
  seeds: int = setting(1, Int(1), "repetitions with seeds seed, seed+1, ...; with more than "
                       "one, repetition k runs in WORKDIR/seed_<seed+k>")
  parallel_seeds: int = setting(1, Int(1), "seeds run at once; 1 = one after another")
  parallel_seeds_mode: str = setting("auto", Choice(("auto", "processes", "vmap")), "how: "
                                     "processes (one per seed, pinned to cores), vmap (one "
                                     "program), auto (CPU: processes; GPU/TPU: vmap)")
  distributed: bool = setting(False, Bool(), "several hosts: call "
                              "jax.distributed.initialize() (cluster from SLURM, MPI, TPU)")
  tensorboard: bool = setting(True, Bool(), "write TensorBoard event files into the workdir "
                              "(per epoch and per round; tensorboard --logdir=WORKDIR)")
  data: DataSettings = dataclasses.field(default_factory=DataSettings)
  model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
  train: TrainSettings = dataclasses.field(default_factory=TrainSettings)
  al: ALSettings = dataclasses.field(default_factory=ALSettings)
  query: QuerySettings = dataclasses.field(default_factory=QuerySettings)


_GROUPS = {"data": DataSettings, "model": ModelSettings, "train": TrainSettings,
           "al": ALSettings}


def _options(cls) -> Iterator[Tuple[str, fields.Option]]:
  for field in dataclasses.fields(cls):
    if "option" in field.metadata:
      yield field.name, field.metadata["option"]


def schema() -> Iterator[Tuple[str, fields.Option]]:
  """Every config field, as (dotted name, fields.Option), in the config's order: the
  run's own, each group's, then the query's and every strategy's options."""
  yield from _options(Settings)
  for group, cls in _GROUPS.items():
    for name, option in _options(cls):
      yield f"{group}.{name}", option
  for name, option in _options(QuerySettings):
    yield f"query.{name}", option
  for name, option in strategies.all_options().items():
    yield f"query.{name}", option


def default(name: str):
  """The schema's default of the dotted field `name` (KeyError if there is none)."""
  return dict(schema())[name].default


def default_config() -> ml_collections.ConfigDict:
  """A config with every field at its default (the paper's settings; `data.name` has
  none and must be set)."""
  config = ml_collections.ConfigDict()
  for name, option in schema():
    group, _, field = name.rpartition(".")
    node = config
    if group:
      if group not in config:
        config[group] = ml_collections.ConfigDict()
      node = config[group]
    node[field] = option.default
  return config


_NO_DEFAULT = object()


def _get(config, name: str, fallback=_NO_DEFAULT):
  """config's value of the dotted field `name`; where the config lacks it (an older
  run's), `fallback`, else an error."""
  node = config
  for part in name.split("."):
    if not hasattr(node, part) and not (hasattr(node, "__contains__") and part in node):
      if fallback is not _NO_DEFAULT:
        return fallback
      raise UserError(f"{name}: missing from the config")
    node = getattr(node, part)
  return node


def _checked(name: str, option: fields.Option, config):
  return option.check.check(name, _get(config, name, option.default))


def _read(cls, config, group: str):
  """cls built from config.<group>, each field checked by its declared type."""
  return cls(**{name: _checked(f"{group}.{name}", option, config)
                for name, option in _options(cls)})


def _query_settings(config) -> QuerySettings:
  strategy = strategies.get(_get(config, "query.strategy"))
  checked = {name: _checked(f"query.{name}", option, config)   # every strategy's, used or not
             for name, option in strategies.all_options().items()}
  options = {name: checked[name] for name in strategy.config_fields}
  return QuerySettings(strategy.name,
                       _checked("query.batch_size", dict(_options(QuerySettings))["batch_size"],
                                config),
                       types.MappingProxyType(options))


def for_strategy(train: TrainSettings, strategy: str) -> TrainSettings:
  """`train` with adversarial=auto resolved for `strategy` (WAAL trains its critic, the
  baselines train supervised), and the rules that tie the two checked."""
  needs_critic = strategies.get(strategy).needs_critic
  adversarial = train.adversarial
  if adversarial == "auto":
    adversarial = "wasserstein" if needs_critic else "none"
  if adversarial != "none" and train.steps_per_epoch == "labeled":
    fields.fail("train.steps_per_epoch", train.steps_per_epoch, f"train.adversarial="
                f"{adversarial} needs the unlabeled pool in every step: use auto or match_pool")
  if needs_critic and adversarial == "none":
    fields.fail("train.adversarial", adversarial, f"query.strategy={strategy} scores "
                "with the critic, which only adversarial training trains")
  return dataclasses.replace(train, adversarial=adversarial)


def _train_settings(config) -> TrainSettings:
  return for_strategy(_read(TrainSettings, config, "train"), _get(config, "query.strategy"))


def resolve(config) -> Settings:
  """Checks every field that needs no data; raises UserError on the first bad one."""
  data = _read(DataSettings, config, "data")
  top = {name: _checked(name, option, config) for name, option in _options(Settings)}
  settings = Settings(**top, data=data, model=_read(ModelSettings, config, "model"),
                      train=_train_settings(config), al=_read(ALSettings, config, "al"),
                      query=_query_settings(config))
  if settings.al.stop_when_stable and not settings.al.stop_set_size:
    fields.fail("al.stop_when_stable", settings.al.stop_when_stable, "needs a stop set: "
                "al.stop_set_size must be above 0")
  if settings.al.by_a_person and (settings.seeds > 1 or settings.parallel_seeds > 1):
    fields.fail("al.oracle", settings.al.oracle, "runs one seed at a time (seeds=1, "
                "parallel_seeds=1): a person labels one run's queries")
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
