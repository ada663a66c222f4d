"""Training one network for one active-learning round (Alg. 1 lines 1-7).

Everything an epoch needs lives on the device: the uint8 pool, the epoch's index plan,
the optimiser states. The host only loops over steps (async dispatch) and reads the
summed metrics once per epoch. The step is jitted once per run: the learning rate sits
in the optimiser state (optax.inject_hyperparams) and the round's weights (mu', C0) are
arrays, so neither rounds nor epochs recompile.

Each training behaviour on which the paper and the authors' code differ is a field of
`settings.TrainSettings` (see experiments/configs/base.py for their meaning).
"""

import dataclasses
import functools
import json
import logging
import math
import time
from typing import Any, Callable, List, NamedTuple, Optional

import flax
from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from waal_jax import data as data_lib
from waal_jax import metrics
from waal_jax import objectives
from waal_jax import progress as progress_lib
from waal_jax import sharding
from waal_jax.models import Networks
from waal_jax.progress import format_duration
from waal_jax.settings import TrainSettings

MAIN = ("features", "classifier")     # the parameters of the feature step


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # () int32, steps taken this round
  params: Any              # {'features', 'classifier', 'critic'}
  batch_stats: Any         # running batch-norm statistics of the feature extractor
  opt_main: Any            # SGD state of features + classifier (holds the learning rate)
  opt_critic: Any          # SGD state of the critic


@flax.struct.dataclass
class EpochPlan:
  """Pool indices of every mini-batch of one epoch, padded to a fixed number of steps."""
  labeled: jax.Array            # (steps, S) int32
  labeled_mask: jax.Array       # (steps, S) bool; False on padding
  unlabeled: jax.Array          # (steps, S) int32
  unlabeled_mask: jax.Array     # (steps, S) bool


@flax.struct.dataclass
class RoundWeights:
  """The adversarial weights of a round, as arrays (no recompiles)."""
  adversarial: jax.Array          # () mu' or mu: weight of the adversarial term
  labeled_coefficient: jax.Array  # () C0 or L/U: weight of the labeled critic mean
  unlabeled_fraction: jax.Array   # () U/(L+U): H-divergence weight of the unlabeled mean


class StepKeys(NamedTuple):
  """A step's random keys, one per purpose (folded from the round key and the step)."""
  augment: jax.Array
  extractor_dropout: jax.Array
  classifier_dropout: jax.Array
  adversarial_dropout: jax.Array     # the critic inside the feature step's loss
  recompute_dropout: jax.Array       # the extractor when the critic step recomputes z
  critic_dropout: jax.Array
  penalty_dropout: jax.Array
  interpolation: jax.Array


def step_keys(key, step) -> StepKeys:
  return StepKeys(*jax.random.split(jax.random.fold_in(key, step), len(StepKeys._fields)))


class Batch(NamedTuple):
  labeled: jax.Array          # (S, H, W, C) normalised images
  labels: jax.Array           # (S,)
  labeled_mask: jax.Array     # (S,) bool
  unlabeled: jax.Array        # (S, H, W, C); unused in supervised training
  unlabeled_mask: jax.Array   # (S,) bool


@dataclasses.dataclass(frozen=True)
class DeviceData:
  """A dataset on the devices: the pool split over them (sharding.pool_blocks), the
  labels and evaluation splits replicated."""
  pool_images: jax.Array     # (M / B, B, ...) blocks of the scorers, M >= N rows
  pool_labels: jax.Array     # (N,)
  val: "EvalSet"
  test: "EvalSet"


@dataclasses.dataclass(frozen=True)
class EvalSet:
  images: jax.Array   # (M, H, W, C), padded to a multiple of the evaluation batch
  labels: jax.Array   # (M,)
  valid: jax.Array    # (M,) bool
  count: int          # real examples


@dataclasses.dataclass(frozen=True)
class RoundInputs:
  """A round's labeled / unlabeled split as fixed-shape padded index arrays."""
  labeled: np.ndarray           # (final budget,) int32 pool indices, valid ones first
  num_labeled: int
  unlabeled: np.ndarray         # (pool size,) int32 pool indices, valid ones first
  num_unlabeled: int
  steps: int                    # steps of an epoch
  weights: RoundWeights         # host floats


@dataclasses.dataclass
class FitResult:
  variables: dict            # {'params', 'batch_stats'} of the chosen epoch
  epochs: List[dict]         # per epoch: loss terms, validation accuracy, seconds
  best_epoch: int            # the chosen epoch (1-based)
  best_val_accuracy: float   # its validation accuracy
  seconds: float


# --- The epoch plan --------------------------------------------------------------------


def _shuffled(key, order, count):
  """A random permutation of order[:count], the padding after it."""
  position = jnp.arange(order.shape[0])
  sort_keys = jnp.where(position < count, jax.random.uniform(key, order.shape), 2.0)
  return order[jnp.argsort(sort_keys)]


def walked_count(num_labeled, num_unlabeled, *, walk_labeled: bool, labeled_sampling: str):
  """How many examples (positions) an epoch walks; works on ints and traced values."""
  if walk_labeled:
    return num_labeled
  if labeled_sampling == "cycle":
    return jnp.maximum(num_labeled, num_unlabeled)
  return num_unlabeled


def make_epoch_plan(key, labeled, num_labeled, unlabeled, num_unlabeled, *,
                    batch_size: int, walk_labeled: bool, labeled_sampling: str):
  """One epoch's mini-batches (the redundancy trick of section 3.3).

  walk_labeled (supervised baselines): the labeled set is visited once.
  Otherwise the unlabeled pool is visited once in random order, each step pairing S
  unlabeled examples with S labeled ones:
    with_replacement (Alg. 1): drawn uniformly with replacement;
    cycle (the authors' code): the epoch walks a random order of max(L, U) positions;
      position p takes labeled p mod L and unlabeled p mod U (so the labeled set is
      cycled, each example about U/L times an epoch, in a fixed pairing).
  `labeled` (P,) and `unlabeled` (N,) hold valid indices first, then padding; the
  counts say how many are valid. Shapes are fixed, so this compiles once.
  """
  walk_key, draw_key = jax.random.split(key)
  if walk_labeled:
    order = _shuffled(walk_key, labeled, num_labeled)
    steps = -(-order.shape[0] // batch_size)
    walked = jnp.pad(order, (0, steps * batch_size - order.shape[0])).reshape(steps, -1)
    mask = (jnp.arange(steps * batch_size) < num_labeled).reshape(steps, -1)
    return EpochPlan(walked, mask, jnp.zeros_like(walked), jnp.zeros_like(mask))
  n = unlabeled.shape[0]                     # the pool size: max(L, U) <= L + U = N
  steps = -(-n // batch_size)
  if labeled_sampling == "cycle":
    count = walked_count(num_labeled, num_unlabeled, walk_labeled=False,
                         labeled_sampling=labeled_sampling)
    positions = _shuffled(walk_key, jnp.arange(n), count)
    pad = steps * batch_size - n
    positions = jnp.pad(positions, (0, pad)).reshape(steps, -1)
    mask = (jnp.arange(steps * batch_size) < count).reshape(steps, -1)
    return EpochPlan(labeled[positions % num_labeled], mask,
                     unlabeled[positions % num_unlabeled], mask)
  if labeled_sampling != "with_replacement":
    raise ValueError(labeled_sampling)
  order = jnp.pad(_shuffled(walk_key, unlabeled, num_unlabeled), (0, steps * batch_size - n))
  mask = (jnp.arange(steps * batch_size) < num_unlabeled).reshape(steps, -1)
  draws = jax.random.randint(draw_key, (steps, batch_size), 0, num_labeled)
  return EpochPlan(labeled[draws], jnp.ones_like(mask), order.reshape(steps, -1), mask)


# --- The step ----------------------------------------------------------------------------


def _gather_batch(settings: TrainSettings, spec, mesh, pool_images, pool_labels,
                  plan: EpochPlan, i, key) -> Batch:
  """Step i's images from the pool, augmented if asked, normalised, split over devices."""
  l_idx, u_idx = plan.labeled[i], plan.unlabeled[i]                    # (S,)

  def prepare(indices, key):
    images = sharding.pool_rows(mesh, pool_images, indices)
    if settings.augment == "crop_flip":
      images = data_lib.random_crop_flip(key, images)
    return sharding.constrain_batch(mesh, data_lib.normalize(images, spec))

  l_key, u_key = jax.random.split(key)
  return Batch(prepare(l_idx, l_key), pool_labels[l_idx], plan.labeled_mask[i],
               prepare(u_idx, u_key), plan.unlabeled_mask[i])


def _embed_batch(nets: Networks, settings: TrainSettings, params, batch_stats, batch: Batch,
                 key, with_unlabeled: bool):
  """(z_labeled, z_unlabeled or None, batch_stats) in training mode.

  joint: one extractor call on [labeled; unlabeled] (one set of batch statistics);
  separate: labeled, then unlabeled, as the authors' code calls it.
  """
  s = batch.labeled.shape[0]
  if not with_unlabeled:
    z, batch_stats = nets.embed(params, batch_stats, batch.labeled, train=True,
                                dropout_key=key, mask=batch.labeled_mask)
    return z, None, batch_stats
  if settings.domain_batches == "joint":
    x = jnp.concatenate([batch.labeled, batch.unlabeled])
    mask = jnp.concatenate([batch.labeled_mask, batch.unlabeled_mask])
    z, batch_stats = nets.embed(params, batch_stats, x, train=True, dropout_key=key,
                                mask=mask)
    return z[:s], z[s:], batch_stats
  l_key, u_key = jax.random.split(key)
  z_l, batch_stats = nets.embed(params, batch_stats, batch.labeled, train=True,
                                dropout_key=l_key, mask=batch.labeled_mask)
  z_u, batch_stats = nets.embed(params, batch_stats, batch.unlabeled, train=True,
                                dropout_key=u_key, mask=batch.unlabeled_mask)
  return z_l, z_u, batch_stats


def _adversarial_term(nets: Networks, settings: TrainSettings, weights: RoundWeights,
                      critic_params, z_l, z_u, batch: Batch, key):
  """What the features minimise beside the cross-entropy, and the critic maximises.

  wasserstein: mean g(z_u) - C * mean g(z_l) (Eq. 8).
  h_divergence: minus the discriminator's cross-entropy (appendix H, Eq. 20).
  """
  z = jnp.concatenate([z_l, z_u])
  s = z_l.shape[0]
  if settings.adversarial == "wasserstein":
    g = nets.critic_value(critic_params, z, train=True, dropout_key=key)          # (2S,)
    return objectives.wasserstein_term(g[s:], g[:s], weights.labeled_coefficient,
                                       batch.unlabeled_mask, batch.labeled_mask)
  logit = nets.critic_logit(critic_params, z, train=True, dropout_key=key)
  return -objectives.domain_cross_entropy(logit[s:], logit[:s], weights.unlabeled_fraction,
                                          batch.unlabeled_mask, batch.labeled_mask)


def _feature_step(nets, settings: TrainSettings, tx, state: TrainState, batch: Batch,
                  weights: RoundWeights, keys: StepKeys):
  """One SGD step of extractor + classifier on CE + weight * adversarial term (Alg. 1
  lines 4-5). Returns the state, the metrics and the (pre-step) features."""
  adversarial = settings.adversarial != "none"

  def loss_fn(trainable):
    params = {**state.params, **trainable}
    z_l, z_u, batch_stats = _embed_batch(nets, settings, params, state.batch_stats, batch,
                                         keys.extractor_dropout, adversarial)
    logits = nets.logits(params, z_l, train=True, dropout_key=keys.classifier_dropout)
    ce = objectives.cross_entropy(logits, batch.labels, batch.labeled_mask)
    adv = jnp.zeros(())
    if adversarial:
      adv = _adversarial_term(nets, settings, weights, params["critic"], z_l, z_u, batch,
                              keys.adversarial_dropout)
    return ce + weights.adversarial * adv, (batch_stats, z_l, z_u, ce, adv)

  trainable = {k: state.params[k] for k in MAIN}
  grads, (batch_stats, z_l, z_u, ce, adv) = jax.grad(loss_fn, has_aux=True)(trainable)
  updates, opt_main = tx.update(grads, state.opt_main, trainable)
  params = {**state.params, **optax.apply_updates(trainable, updates)}
  state = state.replace(params=params, batch_stats=batch_stats, opt_main=opt_main)
  metrics = {"loss": ce + weights.adversarial * adv, "cross_entropy": ce, "adversarial": adv}
  return state, metrics, (z_l, z_u)


def _penalty_points(settings: TrainSettings, z_l, z_u, batch: Batch, key):
  """Where the gradient penalty is taken, and the weights that mask padding."""
  points = objectives.interpolate(objectives.interpolation_weights(key, z_l.shape[0]), z_l,
                                  z_u)
  pair_mask = batch.unlabeled_mask & batch.labeled_mask
  if settings.penalty_points == "interpolates":
    return points, pair_mask
  return (jnp.concatenate([points, z_u, z_l]),
          jnp.concatenate([pair_mask, batch.unlabeled_mask, batch.labeled_mask]))


def _critic_step(nets, settings: TrainSettings, tx, state: TrainState, batch: Batch,
                 features, weights: RoundWeights, keys: StepKeys):
  """One SGD step of the critic (Alg. 1 line 6) on detached features: it maximises the
  adversarial term (less the gradient penalty, for the Wasserstein critic)."""
  z_l, z_u = features
  batch_stats = state.batch_stats
  if settings.critic_features == "recomputed":
    z_l, z_u, batch_stats = _embed_batch(nets, settings, state.params, batch_stats, batch,
                                         keys.recompute_dropout, True)
  z_l, z_u = jax.lax.stop_gradient(z_l), jax.lax.stop_gradient(z_u)
  wasserstein = settings.adversarial == "wasserstein"
  if wasserstein:
    points, point_weights = _penalty_points(settings, z_l, z_u, batch, keys.interpolation)

  def loss_fn(critic_params):
    adv = _adversarial_term(nets, settings, weights, critic_params, z_l, z_u, batch,
                            keys.critic_dropout)
    if not wasserstein:   # H-divergence: the discriminator's cross-entropy.
      return -weights.adversarial * adv, jnp.zeros(())
    penalty = objectives.gradient_penalty(
        lambda p: nets.critic_value(critic_params, p, train=True,
                                    dropout_key=keys.penalty_dropout),
        points, point_weights)
    return objectives.critic_loss(adv, penalty, weights.adversarial,
                                  settings.gradient_penalty,
                                  settings.critic_penalty_sign), penalty

  grads, penalty = jax.grad(loss_fn, has_aux=True)(state.params["critic"])
  updates, opt_critic = tx.update(grads, state.opt_critic, state.params["critic"])
  params = {**state.params, "critic": optax.apply_updates(state.params["critic"], updates)}
  return state.replace(params=params, batch_stats=batch_stats, opt_critic=opt_critic), penalty


METRIC_NAMES = ("loss", "cross_entropy", "adversarial", "gradient_penalty", "steps")


def _train_step(nets: Networks, settings: TrainSettings, spec: data_lib.DatasetSpec, mesh, tx,
                state: TrainState, pool_images, pool_labels, plan: EpochPlan, i,
                weights: RoundWeights, sums: dict, key):
  """One step: features + classifier, then the critic (Alg. 1 lines 3-6)."""
  keys = step_keys(key, state.step)
  batch = _gather_batch(settings, spec, mesh, pool_images, pool_labels, plan, i, keys.augment)
  state, metrics, features = _feature_step(nets, settings, tx, state, batch, weights, keys)
  if settings.adversarial != "none":
    state, metrics["gradient_penalty"] = _critic_step(nets, settings, tx, state, batch,
                                                      features, weights, keys)
  sums = {k: sums[k] + metrics.get(k, 0.0) for k in sums}
  sums["steps"] = sums["steps"] + 1.0
  return state.replace(step=state.step + 1), sums


def _add_correct(nets: Networks, spec: data_lib.DatasetSpec, mesh, correct, params,
                 batch_stats, images, labels, valid, start, *, batch_size: int):
  """correct + the correct predictions in images[start:start + batch_size]."""
  x = jax.lax.dynamic_slice_in_dim(images, start, batch_size)
  y = jax.lax.dynamic_slice_in_dim(labels, start, batch_size)
  ok = jax.lax.dynamic_slice_in_dim(valid, start, batch_size)
  x = sharding.constrain_batch(mesh, data_lib.normalize(x, spec))
  z, _ = nets.embed(params, batch_stats, x, train=False)
  predictions = jnp.argmax(nets.logits(params, z), axis=-1)
  return correct + jnp.sum((predictions == y) & ok)


def _add_evaluation(nets: Networks, spec: data_lib.DatasetSpec, mesh, sums, params, batch_stats,
                    images, labels, valid, start, *, batch_size: int):
  """sums + images[start:start + batch_size]'s (metrics.evaluation_sums)."""
  x = jax.lax.dynamic_slice_in_dim(images, start, batch_size)
  y = jax.lax.dynamic_slice_in_dim(labels, start, batch_size)
  ok = jax.lax.dynamic_slice_in_dim(valid, start, batch_size)
  x = sharding.constrain_batch(mesh, data_lib.normalize(x, spec))
  z, _ = nets.embed(params, batch_stats, x, train=False)
  return metrics.evaluation_sums(sums, nets.logits(params, z), y, ok)


def _predicted_classes(nets: Networks, spec: data_lib.DatasetSpec, mesh, params, batch_stats,
                       images, start, *, batch_size: int):
  """The network's class for each of images[start:start + batch_size]."""
  x = jax.lax.dynamic_slice_in_dim(images, start, batch_size)
  x = sharding.constrain_batch(mesh, data_lib.normalize(x, spec))
  z, _ = nets.embed(params, batch_stats, x, train=False)
  return jnp.argmax(nets.logits(params, z), axis=-1)


# --- Choosing the round's network ---------------------------------------------------------


class Diverged(FloatingPointError):
  """An epoch ended with a non-finite loss (too large a learning rate, as a rule). The
  loop adds the round and says it in one line; `seed_index` is the seed's position in
  a SeedBatchTrainer batch."""

  def __init__(self, epoch: int, loss: float, seed_index: int = 0):
    super().__init__(f"training diverged at epoch {epoch}: loss {loss}")
    self.epoch, self.loss, self.seed_index = epoch, loss, seed_index


class ModelSelection:
  """Keeps the network that `train.model_selection` asks for and decides early stops."""

  def __init__(self, settings: TrainSettings):
    self.settings = settings
    self.best_accuracy, self.best_epoch, self.best_variables = -1.0, 0, None

  def see(self, epoch: int, val_accuracy: float, variables: dict) -> None:
    """After epoch (1-based) with this validation accuracy and network."""
    if val_accuracy > self.best_accuracy:
      self.best_accuracy, self.best_epoch = val_accuracy, epoch
      if self.settings.model_selection == "best_val":
        # A copy: the step donates (reuses) the state's buffers.
        self.best_variables = jax.tree.map(jnp.copy, variables)

  def should_stop(self, epoch: int) -> bool:
    patience = self.settings.patience
    return patience > 0 and epoch - self.best_epoch >= patience

  def after_epoch(self, record: dict, variables: dict, log) -> bool:
    """Logs an epoch's record, refuses a diverged loss, keeps the network if it is the
    best so far; True when the early-stopping rule ends training."""
    epoch = record["epoch"]
    log(_epoch_line(record, self.settings.epochs))
    if not np.isfinite(record["loss"]):
      raise Diverged(epoch, record["loss"])
    self.see(epoch, record["val_accuracy"], variables)
    if not self.should_stop(epoch):
      return False
    log(f"  early stop: no better validation accuracy for {self.settings.patience} epochs; "
        f"using epoch {self.best_epoch}")
    return True


# --- The trainer -------------------------------------------------------------------------


class Trainer:
  """Trains a fresh network per round; compiled once, reused by every round of a run."""

  def __init__(self, nets: Networks, settings: TrainSettings, spec: data_lib.DatasetSpec,
               mesh, num_pool: int, labeled_capacity: int):
    self.nets, self.settings, self.spec, self.mesh = nets, settings, spec, mesh
    self.num_pool, self.labeled_capacity = num_pool, labeled_capacity
    self._tx = optax.inject_hyperparams(optax.sgd)(learning_rate=settings.learning_rate,
                                                   momentum=settings.momentum)
    self._plan = jax.jit(functools.partial(make_epoch_plan, batch_size=settings.batch_size,
                                           walk_labeled=settings.walks_labeled_set,
                                           labeled_sampling=settings.labeled_sampling),
                         out_shardings=sharding.replicated(mesh))
    self.step_fn = jax.jit(functools.partial(_train_step, nets, settings, spec, mesh, self._tx),
                           donate_argnums=(0, 6))
    self._add_correct = jax.jit(
        functools.partial(_add_correct, nets, spec, mesh, batch_size=settings.eval_batch_size))
    self._add_evaluation = jax.jit(functools.partial(
        _add_evaluation, nets, spec, mesh, batch_size=settings.eval_batch_size))
    self._predicted_classes = jax.jit(functools.partial(
        _predicted_classes, nets, spec, mesh, batch_size=settings.eval_batch_size))

  def device_data(self, splits: data_lib.Splits, pool_images: jax.Array) -> DeviceData:
    """The labels and evaluation splits on the devices, beside the pool already there
    (the scorers' blocks, sharding.pool_blocks: the pool goes onto the devices once)."""
    return DeviceData(pool_images,
                      sharding.replicate(self.mesh, splits.pool_labels.astype(np.int32)),
                      self.eval_set(splits.val_images, splits.val_labels),
                      self.eval_set(splits.test_images, splits.test_labels))

  def eval_set(self, images: np.ndarray, labels: np.ndarray) -> EvalSet:
    b = self.settings.eval_batch_size
    padded = -(-len(labels) // b) * b
    pad = padded - len(labels)
    images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
    valid = np.arange(padded) < len(labels)
    labels = np.concatenate([labels, np.zeros(pad, labels.dtype)]).astype(np.int32)
    put = functools.partial(sharding.replicate, self.mesh)
    return EvalSet(put(images), put(labels), put(valid), len(valid) - pad)

  def _over_batches(self, add, total, variables: dict, eval_set: EvalSet):
    """total, with add(total, params, batch_stats, images, labels, valid, start) applied
    to each evaluation batch of `eval_set` in turn; on the host."""
    wait = sharding.wait_each_call(self.mesh)
    rows, batch = eval_set.images.shape[0], self.settings.eval_batch_size
    with progress_lib.Progress(rows, "evaluation", "examples") as bar:
      for start in range(0, rows, batch):
        total = add(total, variables["params"], variables["batch_stats"], eval_set.images,
                    eval_set.labels, eval_set.valid, np.int32(start))
        due = bar.due()
        if wait or due:
          jax.block_until_ready(total)
        if due:
          bar.update(min(start + batch, rows))
    return sharding.to_host(total)

  def accuracy(self, variables: dict, eval_set: EvalSet) -> float:
    correct = self._over_batches(self._add_correct, sharding.replicate(self.mesh, np.int32(0)),
                                 variables, eval_set)
    return int(correct) / eval_set.count

  def evaluate(self, variables: dict, eval_set: EvalSet) -> dict:
    """accuracy (as `accuracy` gives it), ece, nll, brier and per_class_accuracy of the
    network on `eval_set` (waal_jax.metrics)."""
    zeros = sharding.replicate(self.mesh, metrics.zero_sums(self.spec.num_classes))
    return metrics.from_sums(self._over_batches(self._add_evaluation, zeros, variables,
                                                eval_set), eval_set.count)

  def predicted_classes(self, variables: dict, images: np.ndarray) -> np.ndarray:
    """The network's class (argmax) for each example of `images` (n, ...): uint8 images
    or float vectors, as the pool holds them; int64."""
    eval_set = self.eval_set(images, np.zeros(len(images), np.int32))
    classes = [sharding.to_host(self._predicted_classes(
        variables["params"], variables["batch_stats"], eval_set.images, np.int32(start)))
               for start in range(0, eval_set.images.shape[0], self.settings.eval_batch_size)]
    return np.concatenate(classes)[:len(images)].astype(np.int64)

  def init_state(self, key) -> TrainState:
    variables = self.nets.init(key, self.spec.image_shape)
    params = variables["params"]
    state = TrainState(jnp.zeros((), jnp.int32), params, variables["batch_stats"],
                       self._tx.init({k: params[k] for k in MAIN}),
                       self._tx.init(params["critic"]))
    return sharding.replicate(self.mesh, state)

  def with_learning_rate(self, state: TrainState, learning_rate: float) -> TrainState:
    """Both optimisers' learning rate set to `learning_rate` (no recompilation); of the
    shape it has (a scalar, or one per seed in a SeedBatchTrainer's stacked state)."""
    def set_lr(opt):   # A buffer of its own per optimiser: the step donates both.
      shape = opt.hyperparams["learning_rate"].shape
      lr = sharding.replicate(self.mesh, np.full(shape, learning_rate, np.float32))
      return opt._replace(hyperparams={**opt.hyperparams, "learning_rate": lr})
    return state.replace(opt_main=set_lr(state.opt_main), opt_critic=set_lr(state.opt_critic))

  def round_inputs(self, labeled: np.ndarray, query_size: int) -> RoundInputs:
    """Fixed-shape index arrays and the adversarial weights for one round."""
    num_labeled = len(labeled)
    is_labeled = np.zeros(self.num_pool, bool)
    is_labeled[labeled] = True
    unlabeled = np.flatnonzero(~is_labeled)
    labeled_padded = np.zeros(self.labeled_capacity, np.int32)
    # Cycled batches pair positions with the labeled set in ascending pool order, as the
    # authors' code (it keeps the labeled set as a boolean mask over the pool).
    cycle = self.settings.labeled_sampling == "cycle"
    labeled_padded[:num_labeled] = np.sort(labeled) if cycle else labeled
    unlabeled_padded = np.zeros(self.num_pool, np.int32)
    unlabeled_padded[:len(unlabeled)] = unlabeled
    s = self.settings
    walked = int(walked_count(num_labeled, len(unlabeled), walk_labeled=s.walks_labeled_set,
                              labeled_sampling=s.labeled_sampling))
    weight, coefficient = 0.0, 0.0
    if s.adversarial == "wasserstein":
      weight, coefficient = objectives.adversarial_weights(
          s.adversarial_weights, s.mu, num_labeled, max(len(unlabeled), 1), query_size)
    elif s.adversarial == "h_divergence":
      weight = s.mu                     # Eq. 20 weighs the sums with mu itself.
    fraction = len(unlabeled) / (num_labeled + len(unlabeled))
    return RoundInputs(labeled_padded, num_labeled, unlabeled_padded, len(unlabeled),
                       math.ceil(walked / s.batch_size),
                       RoundWeights(*(np.float32(v) for v in (weight, coefficient, fraction))))

  def epoch_plan(self, key, inputs: RoundInputs) -> EpochPlan:
    return self._plan(key, inputs.labeled, np.int32(inputs.num_labeled), inputs.unlabeled,
                      np.int32(inputs.num_unlabeled))

  def train_epoch(self, state: TrainState, data: DeviceData, plan: EpochPlan,
                  weights: RoundWeights, step_key, num_steps: int):
    """num_steps steps of the plan; returns the state and the summed metrics (on device)."""
    sums = sharding.replicate(self.mesh, {k: np.float32(0) for k in METRIC_NAMES})
    weights = sharding.replicate(self.mesh, weights)
    wait = sharding.wait_each_call(self.mesh)
    with progress_lib.Progress(num_steps, "training", "steps", terminal_only=True) as bar:
      for i in range(num_steps):
        state, sums = self.step_fn(state, data.pool_images, data.pool_labels, plan,
                                   np.int32(i), weights, sums, step_key)
        if wait:
          jax.block_until_ready(sums)
        if bar.shown and bar.due():   # (on a terminal only: a wait a few times a second)
          jax.block_until_ready(sums)
          bar.update(i + 1)
    return state, sums

  def fit(self, key, data: DeviceData, labeled: np.ndarray, query_size: int,
          log: Optional[Callable[[str], None]] = None,
          on_epoch: Optional[Callable[[dict, dict], None]] = None,
          progress=None, round_index: int = 0) -> FitResult:
    """Trains from scratch on `labeled` (pool indices) and the rest of the pool for round
    `round_index`'s epochs (settings.for_round), and returns the network
    `train.model_selection` chooses. `on_epoch(record, variables)`,
    if given, sees every epoch's network (e.g. to evaluate it on more splits).
    `progress` (a checkpoints.RoundProgress), if given, keeps the training between
    epochs; when it holds this round's, training continues after the saved epoch and
    ends with what the uninterrupted fit would return (its seconds are those of both)."""
    log = log or logging.info
    start_time = time.time()
    settings = self.settings.for_round(round_index)
    init_key, plan_key, step_key = jax.random.split(key, 3)
    inputs = self.round_inputs(labeled, query_size)
    state = self.init_state(init_key)
    selection = ModelSelection(settings)
    history, seconds_before = [], 0.0
    saved = progress.load() if progress is not None else None
    if saved is not None:
      try:
        state, history, seconds_before = self._resume(saved, state, selection,
                                                      settings.epochs)
        log(f"  resuming the round's training after epoch {len(history)} "
            f"(saved in {progress.path})")
      except (ValueError, KeyError, TypeError) as e:
        log(f"  {progress.path} cannot be used ({type(e).__name__}: {e}); the round "
            "trains from its first epoch")
    for epoch in range(len(history), settings.epochs):
      state, record = self._epoch(state, data, inputs, epoch, settings.learning_rate_at(epoch),
                                  jax.random.fold_in(plan_key, epoch), step_key)
      if on_epoch is not None:
        on_epoch(record, _variables(state))
      history.append(record)
      if selection.after_epoch(record, _variables(state), log):
        break
      if record["epoch"] == 2 and settings.epochs > 2:   # (SeedBatchTrainer.fit: the same)
        log(round_estimate(record, settings.epochs))
      if progress is not None and epoch + 1 < settings.epochs and progress.due():
        self._save_progress(progress, state, selection, history,
                            seconds_before + time.time() - start_time)
    return _fit_result(selection, history, _variables(state),
                       seconds_before + time.time() - start_time)

  def _save_progress(self, progress, state: TrainState, selection: ModelSelection,
                     history: List[dict], seconds: float, epochs_run: int = 0,
                     running: bool = True, stopped_variables: Optional[dict] = None) -> None:
    """Saves one seed's training. In a seed batch (SeedBatchTrainer) the batch has run
    `epochs_run` epochs, and a seed that has stopped (`running` False) has fewer in its
    history and, with model_selection=last, the network of its stop."""
    def host(tree):
      return {} if tree is None else serialization.to_state_dict(sharding.to_host(tree))
    progress.save({
        "state": host(state), "best_variables": host(selection.best_variables),
        "best_accuracy": selection.best_accuracy, "best_epoch": selection.best_epoch,
        "history": json.dumps(history), "seconds": seconds,
        "epochs_run": epochs_run or len(history), "running": running,
        "stopped_variables": host(stopped_variables)})

  def _resume(self, saved: dict, fresh: TrainState, selection: ModelSelection,
              epochs: int) -> tuple:
    """(state, history, seconds) that _save_progress saved, and the model selection as
    it stood; raises ValueError (KeyError, TypeError) if they do not fit this network
    or a round of `epochs` epochs."""
    template = sharding.to_host(fresh)
    state = _restored(template, saved["state"])
    best = (_restored(_variables(template), saved["best_variables"])
            if saved["best_variables"] else None)
    history = json.loads(saved["history"])
    epochs_run = _saved_epochs_run(saved)
    if not isinstance(history, list) or epochs_run >= epochs:
      raise ValueError(f"it holds {epochs_run} epochs of {epochs}")
    selection.best_accuracy = float(saved["best_accuracy"])
    selection.best_epoch = int(saved["best_epoch"])
    selection.best_variables = None if best is None else sharding.replicate(self.mesh, best)
    return sharding.replicate(self.mesh, state), history, float(saved["seconds"])

  def _epoch(self, state, data, inputs: RoundInputs, epoch: int, learning_rate: float,
             plan_key, step_key):
    """One epoch and its validation; returns the state and the epoch's record."""
    epoch_start = time.time()
    state = self.with_learning_rate(state, learning_rate)
    plan = self.epoch_plan(plan_key, inputs)
    state, sums = self.train_epoch(state, data, plan, inputs.weights, step_key, inputs.steps)
    val_accuracy = (float("nan") if data.val is None else   # (no validation: nothing chosen)
                    self.accuracy(_variables(state), data.val))
    record = _epoch_record(sharding.to_host(sums), epoch, inputs.steps, val_accuracy,
                           learning_rate, time.time() - epoch_start)
    return state, record


def _epoch_record(sums: dict, epoch: int, steps: int, val_accuracy: float,
                  learning_rate: float, seconds: float) -> dict:
  """An epoch's history entry from its summed metrics (host values)."""
  record = {k: float(sums[k] / max(sums["steps"], 1)) for k in METRIC_NAMES if k != "steps"}
  record.update(epoch=epoch + 1, steps=steps, val_accuracy=float(val_accuracy),
                learning_rate=learning_rate, seconds=seconds)
  return record


def _fit_result(selection: ModelSelection, history: List[dict], last_variables: dict,
                seconds: float) -> FitResult:
  """The network `train.model_selection` chose: the best epoch's, or the last one's."""
  if selection.settings.model_selection == "best_val":
    return FitResult(selection.best_variables, history, selection.best_epoch,
                     selection.best_accuracy, seconds)
  return FitResult(last_variables, history, len(history), history[-1]["val_accuracy"], seconds)


def _variables(state: TrainState) -> dict:
  return {"params": state.params, "batch_stats": state.batch_stats}


def _saved_epochs_run(saved: dict) -> int:
  """The epochs a saved training had run. Files written before seed batches were saved
  (7597462) lack the field; they hold one seed, which had run its history's epochs."""
  if "epochs_run" in saved:
    return int(saved["epochs_run"])
  return len(json.loads(saved["history"]))


def _restored(template, state_dict: dict):
  """`template` (host arrays) with the saved arrays of `state_dict`, which must have its
  structure, shapes and dtypes."""
  restored = serialization.from_state_dict(template, state_dict)
  for want, got in zip(jax.tree.leaves(template), jax.tree.leaves(restored)):
    if np.shape(want) != np.shape(got) or np.asarray(want).dtype != np.asarray(got).dtype:
      raise ValueError(f"a saved array is {np.asarray(got).dtype}{list(np.shape(got))}, "
                       f"the network's {np.asarray(want).dtype}{list(np.shape(want))}")
  return restored


def round_estimate(record: dict, epochs: int) -> str:
  """The line after a round's second epoch (the first compiles): the time the round's
  remaining epochs take at most, so that the first estimate comes within minutes, not
  after a round that may train for an hour."""
  left = epochs - record["epoch"]
  return (f"  about {format_duration(left * record['seconds'])} left in this round at most "
          f"({left} more epochs at {record['seconds']:.1f}s; early stopping may end it sooner)")


def _epoch_line(record: dict, epochs: int) -> str:
  val = record["val_accuracy"]
  return (f"  epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f} "
          f"(ce {record['cross_entropy']:.4f}, adv {record['adversarial']:+.4f}, "
          f"gp {record['gradient_penalty']:.3f}) "
          + ("" if math.isnan(val) else f"val {val:.4f} ")
          + f"lr {record['learning_rate']:g} {record['seconds']:.1f}s")


# --- Several seeds in one program ----------------------------------------------------------


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _seed_slice(tree, k: int):
  return jax.tree.map(lambda leaf: leaf[k], tree)


class SeedBatchTrainer:
  """Trains one network per seed in one program (GPU/TPU, where one LeNet-5 step leaves
  the device mostly idle): every array gets a leading seed axis and the one-seed step,
  epoch plan and evaluation are `vmap`ped over it.

  Each seed keeps its own pool, labeled set, keys and model selection; the batch trains
  until every seed's early-stopping rule has fired, and a seed's epochs after its own
  stop are computed but ignored, so each seed ends with the network it would get alone
  (to float rounding: batched products may round differently).
  """

  def __init__(self, trainer: Trainer):
    self.trainer = trainer
    t, s = trainer, trainer.settings
    self._plan = jax.jit(jax.vmap(functools.partial(
        make_epoch_plan, batch_size=s.batch_size, walk_labeled=s.walks_labeled_set,
        labeled_sampling=s.labeled_sampling)))
    self._step = jax.jit(jax.vmap(functools.partial(_train_step, t.nets, s, t.spec, t.mesh, t._tx),
                                  in_axes=(0, 0, 0, 0, None, 0, 0, 0)),
                         donate_argnums=(0, 6))
    self._add_correct = jax.jit(jax.vmap(
        functools.partial(_add_correct, t.nets, t.spec, t.mesh, batch_size=s.eval_batch_size),
        in_axes=(0, 0, 0, 0, 0, 0, None)))

  def stack_data(self, datas: List[DeviceData]) -> DeviceData:
    """The seeds' pools and validation splits as one DeviceData with a leading seed
    axis (test: None; each seed's network is tested on its own DeviceData)."""
    val = EvalSet(*(jnp.stack([getattr(d.val, f) for d in datas])
                    for f in ("images", "labels", "valid")), datas[0].val.count)
    return DeviceData(jnp.stack([d.pool_images for d in datas]),
                      jnp.stack([d.pool_labels for d in datas]), val, None)

  def _accuracies(self, variables: dict, eval_set: EvalSet) -> np.ndarray:
    correct = jnp.zeros(eval_set.images.shape[0], jnp.int32)
    for start in range(0, eval_set.images.shape[1], self.trainer.settings.eval_batch_size):
      correct = self._add_correct(correct, variables["params"], variables["batch_stats"],
                                  eval_set.images, eval_set.labels, eval_set.valid,
                                  np.int32(start))
    return np.asarray(correct) / eval_set.count

  def fit(self, keys: List[jax.Array], data: DeviceData, labeled: List[np.ndarray],
          query_size: int, logs: List[Callable[[str], None]],
          progress: Optional[list] = None, round_index: int = 0) -> List[FitResult]:
    """Trainer.fit for every seed at once: keys, labeled sets and logs per seed, `data`
    from stack_data. `progress`, if given, holds a checkpoints.RoundProgress per seed
    (each seed's part of the batch's training goes to its own workdir), used as in
    Trainer.fit when every seed's holds the same epoch; `round_index` as there.
    Returns each seed's FitResult."""
    t, settings = self.trainer, self.trainer.settings.for_round(round_index)
    start_time = time.time()
    split = [jax.random.split(key, 3) for key in keys]
    inputs = [t.round_inputs(one, query_size) for one in labeled]
    if len({i.steps for i in inputs}) != 1:
      raise ValueError("seeds in one batch must have equal labeled and pool sizes")
    fresh = [t.init_state(s[0]) for s in split]
    plan_keys, step_keys_ = jnp.stack([s[1] for s in split]), jnp.stack([s[2] for s in split])
    stacked = {name: jnp.asarray(np.stack([getattr(i, name) for i in inputs]))
               for name in ("labeled", "num_labeled", "unlabeled", "num_unlabeled")}
    weights = _stack([i.weights for i in inputs])
    selections = [ModelSelection(settings) for _ in keys]
    histories = [[] for _ in keys]
    stopped_variables = {}                       # model_selection=last: a seed's at its stop
    running = list(range(len(keys)))             # seeds whose rule has not stopped them
    first_epoch, seconds_before = 0, 0.0
    resumed = self._resume(progress, fresh, selections, logs, settings) if progress else None
    if resumed is not None:
      fresh, histories, stopped_variables, running, first_epoch, seconds_before = resumed
    state = _stack(fresh)
    for epoch in range(first_epoch, settings.epochs):
      epoch_start = time.time()
      learning_rate = settings.learning_rate_at(epoch)
      state = t.with_learning_rate(state, learning_rate)
      plan = self._plan(jax.vmap(jax.random.fold_in, in_axes=(0, None))(plan_keys, epoch),
                        stacked["labeled"], stacked["num_labeled"], stacked["unlabeled"],
                        stacked["num_unlabeled"])
      sums = {k: jnp.zeros(len(keys), jnp.float32) for k in METRIC_NAMES}
      for i in range(inputs[0].steps):
        state, sums = self._step(state, data.pool_images, data.pool_labels, plan, np.int32(i),
                                 weights, sums, step_keys_)
      variables = _variables(state)
      val_accuracy = self._accuracies(variables, data.val)
      sums = jax.device_get(sums)
      for k in list(running):
        record = _epoch_record({m: v[k] for m, v in sums.items()}, epoch, inputs[k].steps,
                               val_accuracy[k], learning_rate, time.time() - epoch_start)
        histories[k].append(record)
        try:
          stop = selections[k].after_epoch(record, _seed_slice(variables, k), logs[k])
        except Diverged as e:
          e.seed_index = k
          raise
        if record["epoch"] == 2 and settings.epochs > 2 and not stop:
          logs[k](round_estimate(record, settings.epochs))
        if stop:
          running.remove(k)
          if settings.model_selection == "last":
            stopped_variables[k] = _seed_slice(variables, k)
      if not running:
        break
      if progress and epoch + 1 < settings.epochs and progress[0].due():
        for k, saver in enumerate(progress):
          t._save_progress(saver, _seed_slice(state, k), selections[k], histories[k],
                           seconds_before + time.time() - start_time,
                           epochs_run=epoch + 1, running=k in running,
                           stopped_variables=stopped_variables.get(k))
    seconds = seconds_before + time.time() - start_time
    return [_fit_result(selection, histories[k],
                        stopped_variables.get(k) or _seed_slice(_variables(state), k), seconds)
            for k, selection in enumerate(selections)]

  def _resume(self, progress: list, fresh: List[TrainState], selections: List[ModelSelection],
              logs: List[Callable[[str], None]], settings: TrainSettings) -> Optional[tuple]:
    """(per-seed states, histories, stopped variables, running seeds, next epoch,
    seconds) that the seeds' savers hold, if every seed's holds the batch at the same
    epoch; else None (and the batch trains from its first epoch)."""
    t = self.trainer
    saved = [saver.load() for saver in progress]
    if all(one is None for one in saved):
      return None
    where = ", ".join(saver.path for saver in progress)
    try:
      if any(one is None for one in saved):
        raise ValueError("not every seed's training was saved")
      epochs = {_saved_epochs_run(one) for one in saved}
      if len(epochs) != 1:
        raise ValueError(f"the seeds' trainings were saved after epochs {sorted(epochs)}")
      restored = [t._resume(one, state, selection, settings.epochs)
                  for one, state, selection in zip(saved, fresh, selections)]
      stopped = {k: sharding.replicate(t.mesh, _restored(_variables(sharding.to_host(fresh[k])),
                                                         one["stopped_variables"]))
                 for k, one in enumerate(saved) if one["stopped_variables"]}
      running = [k for k, one in enumerate(saved) if one["running"]]
    except (ValueError, KeyError, TypeError) as e:
      # As they were before: some seeds' may have been restored.
      selections[:] = [ModelSelection(settings) for _ in selections]
      logs[0](f"  {where} cannot be used ({type(e).__name__}: {e}); the round trains from "
              "its first epoch")
      return None
    epochs_run = epochs.pop()
    logs[0](f"  resuming the round's training after epoch {epochs_run} (saved in {where})")
    return ([state for state, _, _ in restored], [history for _, history, _ in restored],
            stopped, running, epochs_run, max(seconds for _, _, seconds in restored))
