"""The in-memory active learner: your Flax model and your arrays in, indices to label out.

    learner = ActiveLearner(model, pool, labels=labels, validation=(x_val, y_val))
    learner.fit()                   # WAAL's min-max, or cross-entropy for the baselines
    picks = learner.query(500)      # 500 distinct unlabeled pool indices
    learner.add_labels(picks, answers)
    learner.save(directory)         # ... and days later, in another process:
    ActiveLearner(model, pool, ...).restore(directory)

No workdir, flags or files: those belong to the command line's harness (waal_jax.loop),
which runs every round through this learner (`from_parts`). The pool goes onto the
devices once; the training step and the scorers compile once, whatever the number of
labels (the labeled set is padded to `max_labels`), so every round reuses them.
"""

import dataclasses
import json
import logging
import os
from typing import Callable, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from waal_jax import data as data_lib
from waal_jax import settings as settings_lib
from waal_jax import sharding
from waal_jax import strategies
from waal_jax import train as train_lib
from waal_jax.errors import UserError
from waal_jax.models import Model

UNLABELED = data_lib.UNKNOWN_LABEL   # a pool label not known (yet): -1
_STATE_FILE = "learner.json"


def _inputs(name: str, x) -> np.ndarray:
  """`x` as an array of examples (N, ...): uint8 images or float vectors."""
  x = np.asarray(x)
  if x.ndim < 2 or x.shape[0] == 0:
    raise UserError(f"{name}: expected examples of shape (N, ...) with N > 0, got shape "
                    f"{x.shape}")
  if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
    raise UserError(f"{name}: expected uint8 images or float vectors, got {x.dtype}")
  if x.dtype != np.uint8:
    if not np.all(np.isfinite(x)):
      raise UserError(f"{name}: holds a NaN or infinite value")
    x = x.astype(np.float32)
  return x


def _class_labels(name: str, y, count: int, num_classes: int, missing_ok: bool) -> np.ndarray:
  y = np.asarray(y)
  if y.shape != (count,) or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
    raise UserError(f"{name}: expected {count} integer labels, got {y.dtype} of shape "
                    f"{y.shape}")
  low = UNLABELED if missing_ok else 0
  bad = np.flatnonzero((y < low) | (y >= num_classes))
  if bad.size:
    allowed = f"-1 (unlabeled) or 0..{num_classes - 1}" if missing_ok else f"0..{num_classes - 1}"
    raise UserError(f"{name}: label {y[bad[0]]} at position {bad[0]} is out of range "
                    f"({allowed})")
  return y.astype(np.int32)


def _capacity(max_labels, pool_count: int) -> int:
  if max_labels is None:
    return pool_count
  if isinstance(max_labels, bool) or not isinstance(max_labels, (int, np.integer)) or not (
      0 < max_labels <= pool_count):
    raise UserError(f"max_labels={max_labels!r}: must be an integer in 1..{pool_count} (the "
                    "pool's size)")
  return int(max_labels)


class TrainingDiverged(UserError):
  """A fit ended an epoch with a non-finite loss (too large a learning rate, as a rule)."""

  def __init__(self, message: str, epoch: int, loss: float):
    super().__init__(message)
    self.epoch, self.loss = epoch, loss


def _pixel_statistics(images: np.ndarray) -> Tuple[tuple, tuple]:
  """Per-channel mean and std of [0, 1] pixels (the last axis is the channel)."""
  pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
  std = np.maximum(pixels.std(axis=0), 1e-3)
  return tuple(pixels.mean(axis=0).tolist()), tuple(std.tolist())


class ActiveLearner:
  """Pool-based active learning on your model and arrays, one round at a time.

  Args:
    model: the model contract (`waal_jax.Model`): your extractor, and a classifier and
      critic of your own or the default heads.
    pool: (N, ...) the examples that may be labeled: uint8 images (normalised with
      `mean`/`std`, by default the pool's own per-channel statistics) or float vectors
      (used as they are unless `mean`/`std` are given).
    labels: (N,) the labels known now, -1 where unknown (default: none known; give some
      with `add_labels` before `fit`).
    strategy: a query strategy by name (`waal_jax.strategies.names()`).
    query_options: the strategy's options (e.g. {"selection": 5.0}); the rest keep their
      defaults (see `waal_jax.settings.schema()`).
    train: how to train (`waal_jax.TrainSettings`; default: the paper's, 80 epochs with
      its step schedule and early stopping on `validation`).
    validation: (x, y) for early stopping and choosing the best epoch; without it every
      epoch is trained and the last network is kept.
    query_size: the batch you will buy each round: WAAL's bias coefficient C0 depends on
      it (Eq. 8), and `query()` takes this many by default. Default: the size of the
      last query, before any the number of labels.
    mean: per-channel mean subtracted, of [0, 1] pixels for uint8 images (x is
      (x / 255 - mean) / std), of the values as they are for float inputs.
    std: per-channel divisor, after the mean.
    seed: the root of every random draw: the same calls give the same picks.
    query_batch_size: pool examples scored per call and device.
    max_labels: the most labels this learner will hold (default: the pool's size). The
      training step compiles for this many, so a budget far below a large pool saves
      memory; adding labels beyond it is refused.
    log: where progress lines go (e.g. print); default: logging.info.
  """

  def __init__(self, model: Model, pool: np.ndarray, *, labels: Optional[np.ndarray] = None,
               strategy: str = "waal",
               query_options: Optional[Mapping] = None,
               train: Optional[settings_lib.TrainSettings] = None,
               validation: Optional[Tuple] = None, query_size: Optional[int] = None,
               mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
               seed: int = 0,
               query_batch_size: int = 256, max_labels: Optional[int] = None,
               log: Optional[Callable[[str], None]] = None):
    if not isinstance(model, Model):
      raise UserError(f"model: expected a waal_jax.Model (your extractor and heads), got "
                      f"{type(model).__name__}")
    self.model, self.log = model, log or logging.info
    self.pool = _inputs("pool", pool)
    self.pool_shape = self.pool.shape
    self.seed = int(seed)
    shape = self.pool.shape[1:]
    self.num_classes = model.num_outputs(shape)
    self.strategy_name = strategy
    query = settings_lib.QuerySettings.of(strategy, query_batch_size, **(query_options or {}))
    self.train_settings = self._train_settings(train, strategy, validation is not None)
    if mean is None and std is None and self.pool.dtype == np.uint8:
      mean, std = _pixel_statistics(self.pool)
    self.spec = data_lib.DatasetSpec("arrays", shape, self.num_classes, tuple(mean or ()),
                                     tuple(std or ()))
    if self.train_settings.augment == "crop_flip" and (self.pool.ndim != 4 or
                                                       self.pool.dtype != np.uint8):
      raise UserError("train.augment=crop_flip: crops and flips uint8 images (N, H, W, C); "
                      f"the pool is {self.pool.dtype} of shape {self.pool.shape}")
    mesh = sharding.make_mesh()
    count = len(self.pool)
    trainer = train_lib.Trainer(model, self.train_settings, self.spec, mesh, count,
                                labeled_capacity=_capacity(max_labels, count))
    strategy_obj = strategies.create(model, self.spec, query, mesh)
    scoring_pool = strategies.scoring_pool(mesh, self.pool, query.batch_size)
    val = None
    if validation is not None:
      if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise UserError("validation: expected a pair (x, y)")
      x_val = _inputs("validation x", validation[0])
      if x_val.shape[1:] != shape or x_val.dtype != self.pool.dtype:
        raise UserError(f"validation x: {x_val.dtype} of shape {x_val.shape[1:]} per example; "
                        f"the pool's is {self.pool.dtype} of shape {shape}")
      y_val = _class_labels("validation y", validation[1], len(x_val), self.num_classes, False)
      val = trainer.eval_set(x_val, y_val)
    self._start(trainer, strategy_obj, scoring_pool,
                train_lib.DeviceData(scoring_pool.blocks, None, val, None),
                jax.random.key(self.seed), query_size, round_index=0, planned_rounds=None)
    if labels is not None:
      known = _class_labels("labels", labels, count, self.num_classes, True)
      self.add_labels(np.flatnonzero(known != UNLABELED), known[known != UNLABELED])

  @classmethod
  def from_parts(cls, trainer: train_lib.Trainer, strategy: strategies.Strategy,
                 pool: strategies.ScoringPool, data: train_lib.DeviceData, *,
                 strategy_name: str, seed: int, root_key,
                 query_size: int, round_index: int = 0, planned_rounds: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = None) -> "ActiveLearner":
    """A learner over parts that a harness built itself: a trainer and a strategy that
    several seeds share (so each step compiles once), a pool sharded over hosts, its
    splits already on the devices (`data`: the pool images and validation split; its
    labels are replaced by the learner's). No label is known until `add_labels`; the
    next `fit` is round `round_index` of `planned_rounds` (for the log lines)."""
    self = cls.__new__(cls)
    self.model, self.spec, self.log = trainer.nets, trainer.spec, log or logging.info
    self.pool, self.seed = None, int(seed)
    self.pool_shape = (pool.count, *self.spec.image_shape)
    self.num_classes, self.strategy_name = self.spec.num_classes, strategy_name
    self.train_settings = trainer.settings
    self._start(trainer, strategy, pool, data, root_key, query_size, round_index,
                planned_rounds)
    return self

  def _start(self, trainer, strategy, scoring_pool, data, root_key, query_size,
             round_index, planned_rounds) -> None:
    self.trainer, self.strategy, self.mesh = trainer, strategy, trainer.mesh
    self._scoring_pool = scoring_pool
    strategy.check_pool(scoring_pool)
    self._root_key = root_key
    self._labels = np.full(self.pool_shape[0], UNLABELED, np.int32)
    self._labeled: list = []                       # pool indices in the order labeled
    self._data = data
    self._query_size = query_size
    self._planned_rounds = planned_rounds
    self.round = round_index                       # the next fit's round
    self.variables = None                          # the last fit's network
    self.history: list = []                        # per fit: its epochs' records
    self.query_notes: list = []                    # what the strategy said of the last query
    self._sync_labels()

  def _train_settings(self, train, strategy: str, has_validation: bool):
    train = train or settings_lib.TrainSettings()
    if not isinstance(train, settings_lib.TrainSettings):
      raise UserError(f"train: expected waal_jax.TrainSettings, got {type(train).__name__}")
    train = settings_lib.for_strategy(train, strategy)
    if not has_validation and (train.model_selection != "last" or train.patience):
      # Early stopping and the best epoch need a validation split to judge by.
      train = dataclasses.replace(train, model_selection="last", patience=0)
    return train

  # --- Labels -------------------------------------------------------------------------

  @property
  def labeled(self) -> np.ndarray:
    """The labeled pool indices, in the order they were labeled."""
    return np.asarray(self._labeled, np.int64)

  @property
  def labels(self) -> np.ndarray:
    """(N,) the labels known, -1 where unknown."""
    return self._labels.copy()

  @property
  def unlabeled(self) -> np.ndarray:
    """The pool indices without a label, in increasing order."""
    return np.flatnonzero(self._labels == UNLABELED)

  def add_labels(self, indices, labels) -> None:
    """Labels pool examples: `indices` (k,) distinct and not labeled yet, `labels` (k,)
    in 0..classes-1. Checked in full before anything changes."""
    indices = np.asarray(indices)
    if indices.ndim != 1 or not (np.issubdtype(indices.dtype, np.integer) or indices.size == 0):
      raise UserError(f"indices: expected a 1-D array of pool indices, got {indices.dtype} "
                      f"of shape {indices.shape}")
    labels = _class_labels("labels", labels, len(indices), self.num_classes, False)
    count = self.pool_shape[0]
    if len(self._labeled) + len(indices) > self.trainer.labeled_capacity:
      raise UserError(f"indices: {len(self._labeled)} + {len(indices)} labels exceed "
                      f"max_labels={self.trainer.labeled_capacity}")
    outside = indices[(indices < 0) | (indices >= count)]
    if outside.size:
      raise UserError(f"indices: {outside[0]} is not in the pool of {count} examples")
    values, repeats = np.unique(indices, return_counts=True)
    if np.any(repeats > 1):
      raise UserError(f"indices: {values[repeats > 1][0]} is given twice")
    already = indices[self._labels[indices] != UNLABELED]
    if already.size:
      raise UserError(f"indices: {already[0]} is already labeled")
    self._labels[indices] = labels
    self._labeled += indices.astype(np.int64).tolist()
    self._sync_labels()

  def _sync_labels(self) -> None:
    labels = np.maximum(self._labels, 0)   # (unlabeled rows are never trained on as labeled)
    self._data = dataclasses.replace(self._data,
                                     pool_labels=sharding.replicate(self.mesh, labels))

  # --- Rounds -------------------------------------------------------------------------

  def round_key(self, round_index: int) -> jax.Array:
    """Round r's key, fold_in(fold_in(root, 1), r), the root being key(seed);
    fold_in(root, 0) is left for drawing a random first labeled set."""
    return jax.random.fold_in(jax.random.fold_in(self._root_key, 1), round_index)

  def round_keys(self, round_index: int) -> Tuple[jax.Array, jax.Array]:
    """Round r's (training, query) keys: the split of `round_key(r)`."""
    return tuple(jax.random.split(self.round_key(round_index)))

  def _round_name(self, round_index: int) -> str:
    if self._planned_rounds is None:
      return f"round {round_index}"
    return f"round {round_index}/{self._planned_rounds}"

  def log_round_start(self) -> None:
    """Says what the next fit trains on (fit says it itself; a harness that trains the
    round elsewhere, as vmapped seeds do, calls this)."""
    labeled = len(self._labeled)
    self.log(f"{self._round_name(self.round)}: training on {labeled} labels "
             f"({self.pool_shape[0] - labeled} unlabeled)")

  def fit(self, progress=None,
          on_epoch: Optional[Callable[[dict, dict], None]] = None) -> train_lib.FitResult:
    """Trains a fresh network on the labels (and, for WAAL, the unlabeled pool) and
    keeps it for `query`; returns its epochs' records and the chosen epoch.
    `progress` (a checkpoints.RoundProgress): keeps the training between epochs and
    continues a round's training that it holds. `on_epoch(record, variables)`, if
    given, sees each epoch's record and network as it ends (e.g. to draw it)."""
    labeled = self.labeled
    if len(labeled) == 0:
      raise UserError("fit: no example is labeled yet; give labels= or call add_labels")
    count = self.pool_shape[0]
    if len(labeled) >= count:
      raise UserError("fit: every pool example is labeled; nothing is left to query")
    query_size = self._query_size or len(labeled)
    train_key, _ = self.round_keys(self.round)
    self.log_round_start()
    try:
      fit = self.trainer.fit(train_key, self._data, labeled, query_size, log=self.log,
                             on_epoch=on_epoch, progress=progress, round_index=self.round)
    except train_lib.Diverged as e:
      raise TrainingDiverged(f"{e}; lower train.learning_rate "
                             f"({self.train_settings.learning_rate:g} now)",
                             e.epoch, e.loss) from None
    return self.adopt(fit)

  def adopt(self, fit: train_lib.FitResult) -> train_lib.FitResult:
    """Takes a network trained for this round outside the learner (several seeds'
    training vmapped in one program) as if `fit` had trained it."""
    self.variables = fit.variables
    self.history.append(fit.epochs)
    self._fitted_round = self.round
    self.round += 1
    return fit

  def query(self, k: Optional[int] = None) -> np.ndarray:
    """The strategy's next k (default: query_size) distinct unlabeled pool indices,
    chosen with the last fit's network."""
    if self.variables is None:
      raise UserError("query: no trained network yet; call fit() first")
    k = self._query_size or 0 if k is None else k
    unlabeled = len(self.unlabeled)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k <= unlabeled:
      raise UserError(f"query: k={k!r} must be an integer in 1..{unlabeled} (the unlabeled "
                      "examples)")
    _, query_key = self.round_keys(self._fitted_round)
    is_labeled = self._labels != UNLABELED
    picks = self.strategy.checked_select(query_key, self.variables, self._scoring_pool,
                                         is_labeled, int(k))
    self.query_notes = self.strategy.take_notes()
    for note in self.query_notes:
      self.log(f"{self._round_name(self._fitted_round)}: query note: {note}")
    self._query_size = int(k)
    return picks

  def predict(self, x) -> np.ndarray:
    """The last fit's network's class (an index) for each example of x."""
    if self.variables is None:
      raise UserError("predict: no trained network yet; call fit() first")
    return self.trainer.predicted_classes(self.variables, _inputs("x", x))

  def accuracy(self, x, y) -> float:
    """The last fit's network's accuracy on (x, y)."""
    if self.variables is None:
      raise UserError("accuracy: no trained network yet; call fit() first")
    x = _inputs("x", x)
    y = _class_labels("y", y, len(x), self.num_classes, False)
    return self.trainer.accuracy(self.variables, self.trainer.eval_set(x, y))

  # --- Saving -------------------------------------------------------------------------

  def save(self, directory: str) -> None:
    """Writes the labels, the round and the last network (Orbax) to `directory`, so
    that `restore` in another process continues from here."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    state = {"labeled": self.labeled, "labels": self._labels}
    if self.variables is not None:
      state["variables"] = sharding.to_host(self.variables)
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(os.path.join(directory, "state"), state, force=True)
    meta = {"pool_shape": list(self.pool_shape), "strategy": self.strategy_name,
            "seed": self.seed, "round": self.round, "query_size": self._query_size,
            "fitted": self.variables is not None, "history": self.history}
    if self.variables is not None:
      meta["fitted_round"] = self._fitted_round
    with open(os.path.join(directory, _STATE_FILE), "w") as f:
      json.dump(meta, f)

  def restore(self, directory: str) -> "ActiveLearner":
    """Takes the state `save` wrote into this learner (built with the same model and
    pool); returns it."""
    directory = os.path.abspath(directory)
    path = os.path.join(directory, _STATE_FILE)
    try:
      with open(path) as f:
        meta = json.load(f)
    except (OSError, ValueError) as e:
      raise UserError(f"{path}: cannot be read ({e})") from None
    if meta["pool_shape"] != list(self.pool_shape) or meta["seed"] != self.seed:
      raise UserError(f"{directory}: saved for a pool of shape {tuple(meta['pool_shape'])} and "
                      f"seed {meta['seed']}, not {tuple(self.pool_shape)} and {self.seed}")
    count = self.pool_shape[0]
    template = {"labeled": np.zeros(0, np.int64), "labels": np.zeros(count, np.int32)}
    if meta["fitted"]:
      template["variables"] = sharding.to_host(self.model.init(jax.random.key(0),
                                                               tuple(self.pool_shape[1:])))
    with ocp.StandardCheckpointer() as checkpointer:
      metadata = checkpointer.metadata(os.path.join(directory, "state"))
      template["labeled"] = np.zeros(metadata.item_metadata["labeled"].shape, np.int64)
      state = checkpointer.restore(os.path.join(directory, "state"), template)
    self._labels = np.asarray(state["labels"], np.int32)
    self._labeled = np.asarray(state["labeled"], np.int64).tolist()
    self._sync_labels()
    self.round, self._query_size = meta["round"], meta["query_size"]
    self.history = meta["history"]
    self.variables = None
    if meta["fitted"]:
      self.variables = sharding.replicate(self.mesh, state["variables"])
      self._fitted_round = meta["fitted_round"]
    return self
