"""Training one network for one active-learning round (Alg. 1 lines 1-7).

Everything an epoch needs lives on the device: the uint8 pool, the epoch's index plan,
the optimiser state. The host only loops over steps (async dispatch) and reads the
summed metrics once per epoch. Step functions are jitted once per run and take the
round-dependent numbers (learning rate, mu', C0) as arrays, so rounds never recompile.
"""

import dataclasses
import functools
import logging
import math
import time
from typing import Any, Callable, List, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from waal_jax import data as data_lib
from waal_jax import objectives
from waal_jax import sharding
from waal_jax.models import Networks

ADVERSARIAL_MODES = ("wasserstein", "h_divergence", "none")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """The static parts of training (hashable: they are baked into the compiled step)."""
  adversarial: str          # 'wasserstein' (WAAL), 'h_divergence' (ablation), 'none'
  variant: str              # 'paper' or 'reference' (see objectives and DESIGN.md)
  epochs: int               # the most epochs per round
  batch_size: int           # S: examples per mini-batch, labeled and unlabeled each
  learning_rate: float      # initial SGD learning rate
  momentum: float           # SGD momentum
  mu: float                 # weight of the adversarial term (before mu' = gamma/(1+gamma) mu)
  gradient_penalty: float   # weight of the critic's gradient penalty
  patience: int             # early stopping: epochs without a better validation accuracy
  augment: bool             # random crop + flip on the device (the authors' SVHN/CIFAR code)
  eval_batch_size: int      # examples per evaluation batch
  # Steps per epoch: 'auto' walks the unlabeled pool in adversarial training and the
  # labeled set in supervised training; 'match_pool' gives supervised training as many
  # steps as WAAL (one per S unlabeled examples, S labeled drawn with replacement).
  steps_per_epoch: str = "auto"

  def learning_rate_at(self, epoch: int) -> float:
    """Table 3: x0.1 at 50% and x0.01 at 75% of the epochs; the released code is constant."""
    if self.variant == "reference":
      return self.learning_rate
    if epoch >= 0.75 * self.epochs:
      return self.learning_rate * 0.01
    if epoch >= 0.5 * self.epochs:
      return self.learning_rate * 0.1
    return self.learning_rate

  @property
  def early_stopping(self) -> bool:
    return self.variant == "paper" and self.patience > 0


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # () int32, steps taken this round
  params: Any              # {'features', 'classifier', 'critic'}
  batch_stats: Any         # running batch-norm statistics of the feature extractor
  opt_main: Any            # SGD momentum of features + classifier
  opt_critic: Any          # SGD momentum of the critic


@flax.struct.dataclass
class EpochPlan:
  """Pool indices of every mini-batch of one epoch, padded to a fixed number of steps."""
  labeled: jax.Array            # (steps, S) int32
  labeled_mask: jax.Array       # (steps, S) bool; False on padding
  unlabeled: jax.Array          # (steps, S) int32
  unlabeled_mask: jax.Array     # (steps, S) bool


@flax.struct.dataclass
class Hyper:
  """Numbers that change between rounds or epochs, passed as arrays (no recompiles)."""
  learning_rate: jax.Array        # () float32
  adversarial_weight: jax.Array   # () float32: mu' (paper) or mu (reference)
  labeled_coefficient: jax.Array  # () float32: C0 (paper) or L/U (reference)


@dataclasses.dataclass(frozen=True)
class DeviceData:
  """A dataset on the devices, replicated: uint8 images, int32 labels."""
  pool_images: jax.Array     # (N, H, W, C)
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
  adversarial_weight: float     # mu' (paper) or mu (reference); 0 without adversary
  labeled_coefficient: float    # C0 (paper) or L/U (reference)


@dataclasses.dataclass
class FitResult:
  variables: dict            # {'params', 'batch_stats'} of the chosen (best) epoch
  epochs: List[dict]         # per epoch: loss terms, validation accuracy, seconds
  best_epoch: int
  best_val_accuracy: float
  seconds: float


def make_epoch_plan(key, labeled, num_labeled, unlabeled, num_unlabeled, *,
                    batch_size: int, walk: str):
  """One epoch's mini-batches (the redundancy trick of section 3.3).

  walk='unlabeled' (WAAL): the unlabeled pool is visited once in random order, and each
    step pairs S unlabeled examples with S labeled ones drawn with replacement.
  walk='labeled' (supervised baselines): the labeled set is visited once.
  `labeled` (P,) and `unlabeled` (N,) hold valid indices first, then padding; the
  counts say how many are valid. Shapes are fixed, so this compiles once.
  """
  walk_key, draw_key = jax.random.split(key)
  if walk == "unlabeled":
    order, count = unlabeled, num_unlabeled
  elif walk == "labeled":
    order, count = labeled, num_labeled
  else:
    raise ValueError(walk)
  # A random permutation of the valid entries, padding sorted to the end.
  position = jnp.arange(order.shape[0])
  sort_keys = jnp.where(position < count, jax.random.uniform(walk_key, order.shape), 2.0)
  order = order[jnp.argsort(sort_keys)]
  steps = -(-order.shape[0] // batch_size)
  order = jnp.pad(order, (0, steps * batch_size - order.shape[0]))
  mask = jnp.arange(steps * batch_size) < count
  walked = order.reshape(steps, batch_size)
  walked_mask = mask.reshape(steps, batch_size)
  if walk == "labeled":
    empty = jnp.zeros_like(walked)
    return EpochPlan(walked, walked_mask, empty, jnp.zeros_like(walked_mask))
  draws = jax.random.randint(draw_key, (steps, batch_size), 0, num_labeled)
  return EpochPlan(labeled[draws], jnp.ones_like(walked_mask), walked, walked_mask)


def _adversarial_term(nets: Networks, settings: TrainSettings, hyper: Hyper, critic_params,
                      z, num_labeled: int, unlabeled_mask, dropout_key):
  """What the features minimise beside the cross-entropy, and the critic maximises.

  wasserstein: mean g(z_u) - C * mean g(z_l) (Eq. 8).
  h_divergence: minus the discriminator's cross-entropy (appendix H).
  `z` holds the labeled features first, then the unlabeled ones.
  """
  s = num_labeled
  if settings.adversarial == "wasserstein":
    g = nets.critic_value(critic_params, z, train=True, dropout_key=dropout_key)   # (2S,)
    return objectives.wasserstein_term(g[s:], g[:s], hyper.labeled_coefficient, unlabeled_mask)
  logit = nets.critic_logit(critic_params, z, train=True, dropout_key=dropout_key)
  return -objectives.domain_cross_entropy(logit[s:], logit[:s], unlabeled_mask)


def _train_step(nets: Networks, settings: TrainSettings, spec: data_lib.DatasetSpec, mesh,
                state: TrainState, pool_images, pool_labels, plan: EpochPlan, i, hyper: Hyper,
                sums: dict, key):
  """One SGD step on features + classifier, then one on the critic (Alg. 1 lines 3-6)."""
  s = settings.batch_size
  l_idx, l_mask = plan.labeled[i], plan.labeled_mask[i]                 # (S,)
  u_idx, u_mask = plan.unlabeled[i], plan.unlabeled_mask[i]             # (S,)
  step_key = jax.random.fold_in(key, state.step)
  aug_key, cls_key, adv_key, critic_key, gp_key, gp_drop_key = jax.random.split(step_key, 6)
  adversarial = settings.adversarial != "none"

  # Labeled and unlabeled images go through the extractor as one batch.
  images = pool_images[jnp.concatenate([l_idx, u_idx]) if adversarial else l_idx]
  if settings.augment:
    images = data_lib.random_crop_flip(aug_key, images)
  x = sharding.constrain_batch(mesh, data_lib.normalize(images, spec))  # (2S or S, H, W, C)
  y = pool_labels[l_idx]

  def main_loss(trainable):
    params = {**state.params, **trainable}
    z, batch_stats = nets.embed(params, state.batch_stats, x, train=True)
    logits = nets.logits(params, z[:s], train=True, dropout_key=cls_key)
    ce = objectives.cross_entropy(logits, y, l_mask)
    if not adversarial:
      return ce, (batch_stats, z, ce, jnp.zeros(()))
    adv = _adversarial_term(nets, settings, hyper, params["critic"], z, s, u_mask, adv_key)
    return ce + hyper.adversarial_weight * adv, (batch_stats, z, ce, adv)

  trainable = {k: state.params[k] for k in ("features", "classifier")}
  grads, (batch_stats, z, ce, adv) = jax.grad(main_loss, has_aux=True)(trainable)
  tx = optax.sgd(1.0, momentum=settings.momentum)   # Unit rate: scaled by hyper.lr below.
  updates, opt_main = tx.update(grads, state.opt_main, trainable)
  trainable = jax.tree.map(lambda p, u: p + hyper.learning_rate * u, trainable, updates)
  params = {**state.params, **trainable}
  metrics = {"loss": ce + hyper.adversarial_weight * adv, "cross_entropy": ce,
             "adversarial": adv}

  opt_critic = state.opt_critic
  if adversarial:
    if settings.variant == "reference" and settings.adversarial == "wasserstein":
      # The released code recomputes the features with the updated extractor.
      z, _ = nets.embed(params, batch_stats, x, train=True)
    z = jax.lax.stop_gradient(z)
    penalty_points, penalty_weights = None, None
    if settings.adversarial == "wasserstein":
      z_l, z_u = z[:s], z[s:]
      penalty_points = objectives.interpolate(gp_key, z_l, z_u)
      penalty_weights = u_mask
      if settings.variant == "reference":
        # ... and also penalises the gradient at the labeled and unlabeled features.
        penalty_points = jnp.concatenate([penalty_points, z_u, z_l])
        penalty_weights = jnp.concatenate([u_mask, u_mask, jnp.ones_like(u_mask)])

    def critic_loss(critic_params):
      adv_critic = _adversarial_term(nets, settings, hyper, critic_params, z, s, u_mask,
                                     critic_key)
      if penalty_points is None:   # H-divergence: the discriminator's cross-entropy.
        return -hyper.adversarial_weight * adv_critic, jnp.zeros(())
      penalty = objectives.gradient_penalty(
          lambda p: nets.critic_value(critic_params, p, train=True, dropout_key=gp_drop_key),
          penalty_points, penalty_weights)
      loss = objectives.critic_loss(adv_critic, penalty, hyper.adversarial_weight,
                                    settings.gradient_penalty, settings.variant)
      return loss, penalty

    critic_grads, penalty = jax.grad(critic_loss, has_aux=True)(params["critic"])
    updates, opt_critic = tx.update(critic_grads, state.opt_critic, params["critic"])
    params["critic"] = jax.tree.map(lambda p, u: p + hyper.learning_rate * u,
                                    params["critic"], updates)
    metrics["gradient_penalty"] = penalty

  new_state = TrainState(state.step + 1, params, batch_stats, opt_main, opt_critic)
  sums = {k: sums[k] + metrics.get(k, 0.0) for k in sums}
  sums["steps"] = sums["steps"] + 1.0
  return new_state, sums


METRIC_NAMES = ("loss", "cross_entropy", "adversarial", "gradient_penalty", "steps")


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


class Trainer:
  """Trains a fresh network per round; compiled once, reused by every round of a run."""

  def __init__(self, nets: Networks, settings: TrainSettings, spec: data_lib.DatasetSpec,
               mesh, num_pool: int, labeled_capacity: int):
    self.nets, self.settings, self.spec, self.mesh = nets, settings, spec, mesh
    supervised_walk = settings.adversarial == "none" and settings.steps_per_epoch != "match_pool"
    walk = "labeled" if supervised_walk else "unlabeled"
    self._plan = jax.jit(functools.partial(make_epoch_plan, batch_size=settings.batch_size,
                                           walk=walk),
                         out_shardings=sharding.replicated(mesh))
    self.walk = walk
    self.num_pool, self.labeled_capacity = num_pool, labeled_capacity
    self.step_fn = jax.jit(functools.partial(_train_step, nets, settings, spec, mesh),
                           donate_argnums=(0, 6))
    self._add_correct = jax.jit(
        functools.partial(_add_correct, nets, spec, mesh, batch_size=settings.eval_batch_size))
    self._tx = optax.sgd(1.0, momentum=settings.momentum)

  def device_data(self, splits: data_lib.Splits) -> DeviceData:
    """Puts the dataset on the devices once per run."""
    put = functools.partial(sharding.replicate, self.mesh)
    return DeviceData(put(splits.pool_images), put(splits.pool_labels.astype(np.int32)),
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

  def accuracy(self, variables: dict, eval_set: EvalSet) -> float:
    correct = sharding.replicate(self.mesh, np.int32(0))
    wait = sharding.wait_each_call(self.mesh)
    for start in range(0, eval_set.images.shape[0], self.settings.eval_batch_size):
      correct = self._add_correct(correct, variables["params"], variables["batch_stats"],
                                  eval_set.images, eval_set.labels, eval_set.valid,
                                  np.int32(start))
      if wait:
        jax.block_until_ready(correct)
    return int(sharding.to_host(correct)) / eval_set.count

  def init_state(self, key) -> TrainState:
    variables = self.nets.init(key, self.spec.image_shape)
    params = variables["params"]
    main = {k: params[k] for k in ("features", "classifier")}
    state = TrainState(jnp.zeros((), jnp.int32), params, variables["batch_stats"],
                       self._tx.init(main), self._tx.init(params["critic"]))
    return sharding.replicate(self.mesh, state)

  def round_inputs(self, labeled: np.ndarray, query_size: int) -> "RoundInputs":
    """Fixed-shape index arrays and the adversarial weights for one round."""
    num_labeled = len(labeled)
    is_labeled = np.zeros(self.num_pool, bool)
    is_labeled[labeled] = True
    unlabeled = np.flatnonzero(~is_labeled)
    labeled_padded = np.zeros(self.labeled_capacity, np.int32)
    labeled_padded[:num_labeled] = labeled
    unlabeled_padded = np.zeros(self.num_pool, np.int32)
    unlabeled_padded[:len(unlabeled)] = unlabeled
    walked = len(unlabeled) if self.walk == "unlabeled" else num_labeled
    if self.settings.adversarial == "wasserstein":
      weight, coefficient = objectives.adversarial_weights(
          self.settings.variant, self.settings.mu, num_labeled, max(len(unlabeled), 1),
          query_size)
    elif self.settings.adversarial == "h_divergence":
      weight, coefficient = self.settings.mu, 0.0
    else:
      weight, coefficient = 0.0, 0.0
    return RoundInputs(labeled_padded, num_labeled, unlabeled_padded, len(unlabeled),
                       math.ceil(walked / self.settings.batch_size), weight, coefficient)

  def epoch_plan(self, key, inputs: "RoundInputs") -> EpochPlan:
    return self._plan(key, inputs.labeled, np.int32(inputs.num_labeled), inputs.unlabeled,
                      np.int32(inputs.num_unlabeled))

  def hyper(self, inputs: "RoundInputs", epoch: int) -> Hyper:
    return Hyper(*(np.float32(v) for v in (self.settings.learning_rate_at(epoch),
                                           inputs.adversarial_weight,
                                           inputs.labeled_coefficient)))

  def train_epoch(self, state: TrainState, data: DeviceData, plan: EpochPlan, hyper: Hyper,
                  step_key, num_steps: int):
    """num_steps steps of the plan; returns the state and the summed metrics (on device)."""
    sums = sharding.replicate(self.mesh, {k: np.float32(0) for k in METRIC_NAMES})
    wait = sharding.wait_each_call(self.mesh)
    for i in range(num_steps):
      state, sums = self.step_fn(state, data.pool_images, data.pool_labels, plan, np.int32(i),
                                 hyper, sums, step_key)
      if wait:
        jax.block_until_ready(sums)
    return state, sums

  def fit(self, key, data: DeviceData, labeled: np.ndarray, query_size: int,
          log: Optional[Callable[[str], None]] = None) -> FitResult:
    """Trains from scratch on `labeled` (pool indices) and the rest of the pool.

    Returns the variables of the epoch with the best validation accuracy when early
    stopping is on (paper variant), else those after the last epoch.
    """
    log = log or logging.info
    settings = self.settings
    start_time = time.time()
    init_key, plan_key, step_key = jax.random.split(key, 3)
    inputs = self.round_inputs(labeled, query_size)
    state = self.init_state(init_key)
    best = None
    history = []
    for epoch in range(settings.epochs):
      epoch_start = time.time()
      hyper = self.hyper(inputs, epoch)
      plan = self.epoch_plan(jax.random.fold_in(plan_key, epoch), inputs)
      state, sums = self.train_epoch(state, data, plan, hyper, step_key, inputs.steps)
      variables = {"params": state.params, "batch_stats": state.batch_stats}
      val_accuracy = self.accuracy(variables, data.val)
      sums = sharding.to_host(sums)
      record = {k: float(sums[k] / max(sums["steps"], 1)) for k in METRIC_NAMES if k != "steps"}
      record.update(epoch=epoch + 1, steps=inputs.steps, val_accuracy=val_accuracy,
                    learning_rate=settings.learning_rate_at(epoch),
                    seconds=time.time() - epoch_start)
      history.append(record)
      if not np.isfinite(record["loss"]):
        raise FloatingPointError(f"training diverged at epoch {epoch + 1}: loss {record['loss']}")
      improved = best is None or val_accuracy > best[1]
      if improved:
        # A copy: the step donates (reuses) the state's buffers.
        best = (jax.tree.map(jnp.copy, variables) if settings.early_stopping else None,
                val_accuracy, epoch + 1)
      log(f"  epoch {epoch + 1}/{settings.epochs}: loss {record['loss']:.4f} "
          f"(ce {record['cross_entropy']:.4f}, adv {record['adversarial']:+.4f}, "
          f"gp {record['gradient_penalty']:.3f}) val {val_accuracy:.4f} "
          f"lr {record['learning_rate']:g} {record['seconds']:.1f}s")
      if settings.early_stopping and epoch + 1 - best[2] >= settings.patience:
        log(f"  early stop: no better validation accuracy for {settings.patience} epochs; "
            f"using epoch {best[2]}")
        break
    final = best[0] if settings.early_stopping else {"params": state.params,
                                                    "batch_stats": state.batch_stats}
    chosen_epoch = best[2] if settings.early_stopping else len(history)
    chosen_val = best[1] if settings.early_stopping else history[-1]["val_accuracy"]
    return FitResult(final, history, chosen_epoch, chosen_val, time.time() - start_time)
