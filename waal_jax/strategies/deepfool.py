"""DeepFool active learning (Ducoffe & Precioso, 2018): query the examples closest to
the decision boundary, measured by the norm of their DeepFool perturbation
(Moosavi-Dezfooli et al., 2016) in the normalised input space, smallest first.

Each DeepFool step linearises the network at the current point, moves to the nearest
linearised boundary among the other classes (all of them by default, as the method
and DeepAL do; `query.deepfool_classes` can limit the search to the classes of largest
logit at that step), and stops once the predicted label changes (tested with a small
overshoot) or after `deepfool_iterations` steps. `query.deepfool_boundary=last_class`
moves instead, at every step, to the boundary of the last class other than the
prediction (class K-1, or K-2 where K-1 is predicted): what DeepAL's DeepFool did until
its fix of October 2022, because its search for the nearest class never updated the
running minimum. The paper's DeepFool most likely ran that way: so run, on seeds 0-2,
it is within the seed spread of the paper's Table 4 at every budget (the README's
check of the baselines).

Examples need different numbers of steps, so the pool is processed as a work queue: a
fixed set of slots (one scoring batch, split over the devices) steps together, and a
slot whose example is done takes the next one. Every step is one jitted call on
fixed shapes; the host only refills slots. A step ends by testing its new point, so
an example leaves as soon as its label flips: the gradients, K-1 backward passes, are
only computed for examples that still need a move (on Fashion-MNIST 1.8 per example
instead of 2.8).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from waal_jax import data as data_lib
from waal_jax import fields
from waal_jax import objectives
from waal_jax import progress
from waal_jax import sharding
from waal_jax.strategies import base


def _other_classes(logits, label, classes: int):
  """(B, C) classes to try besides the label: all K-1 others when classes is 0 (or K),
  else the classes-1 of largest logit."""
  k = logits.shape[-1]
  if classes == 0 or classes >= k:
    return (label[:, None] + 1 + jnp.arange(k - 1)[None, :]) % k
  masked = jnp.where(jax.nn.one_hot(label, k, dtype=bool), -jnp.inf, logits)
  return jnp.argsort(-masked, axis=-1)[:, :classes - 1]


def deepfool_step(logits_fn, x0, r, label, fresh, *, overshoot: float, classes: int,
                  boundary: str = "nearest"):
  """One DeepFool step for a batch.

  Args:
    logits_fn: (B, ...) inputs -> (B, K) logits.
    x0: (B, ...) original inputs.
    r: (B, ...) perturbation found so far (ignored, i.e. 0, where `fresh`).
    label: (B,) int32 original predictions (set here where `fresh`).
    fresh: (B,) bool, examples starting now.
    overshoot: the point tested is x0 + (1 + overshoot) r.
    classes: classes searched, the label included; 0 = all.
    boundary: "nearest" (DeepFool) or "last_class" (only the boundary with the last
      class other than the label; `classes` is then ignored).

  Returns:
    (fooled (B,) bool: the tested point is already classified differently,
     r_next (B, ...): r plus this step's move to the chosen linearised boundary,
     label).
  """
  expand = lambda m: m.reshape(-1, *([1] * (x0.ndim - 1)))
  r = jnp.where(expand(fresh), 0.0, r)
  x = x0 + (1.0 + overshoot) * r
  logits, vjp = jax.vjp(logits_fn, x)
  prediction = jnp.argmax(logits, axis=-1)
  label = jnp.where(fresh, prediction, label)
  fooled = prediction != label
  num_classes = logits.shape[-1]
  onehot_label = jax.nn.one_hot(label, num_classes, dtype=logits.dtype)
  if boundary == "last_class":
    candidates = jnp.where(label == num_classes - 1, num_classes - 2, num_classes - 1)[:, None]
  else:
    candidates = _other_classes(logits, label, classes)

  def linearised(k):                         # (B,) one candidate class per example
    direction = jax.nn.one_hot(k, num_classes, dtype=logits.dtype) - onehot_label
    w, = vjp(direction)                      # gradient of f_k - f_label: (B, ...)
    return w, jnp.sum(logits * direction, axis=-1)

  # One plain backward pass per candidate: a vmap over the cotangents batches the
  # convolution transposes into layouts that XLA:CPU runs ~8x slower.
  w, f = (jnp.stack(parts) for parts in zip(
      *[linearised(candidates[:, c]) for c in range(candidates.shape[1])]))  # (C, B, ...), (C, B)
  w_norm = objectives.safe_norm(w.reshape(*w.shape[:2], -1))          # (C, B)
  nearest = jnp.argmin(jnp.abs(f) / jnp.maximum(w_norm, 1e-12), axis=0)   # (B,)
  batch = jnp.arange(x0.shape[0])
  w_l, f_l, norm_l = w[nearest, batch], f[nearest, batch], w_norm[nearest, batch]
  step = expand(jnp.abs(f_l) / jnp.maximum(norm_l, 1e-12) ** 2) * w_l
  return fooled, r + step, label


def deepfool_distances(logits_fn, x0, *, iterations: int, overshoot: float, classes: int = 0,
                       boundary: str = "nearest"):
  """||r|| of DeepFool for a whole batch at once (small problems and tests)."""
  b = x0.shape[0]
  r = jnp.zeros_like(x0)
  label = jnp.zeros(b, jnp.int32)
  done = jnp.zeros(b, bool)
  fresh = jnp.ones(b, bool)
  for _ in range(iterations + 1):
    fooled, r_next, label = deepfool_step(logits_fn, x0, r, label, fresh, overshoot=overshoot,
                                          classes=classes, boundary=boundary)
    fresh = jnp.zeros(b, bool)
    done = done | fooled
    r = jnp.where(done.reshape(-1, *([1] * (r.ndim - 1))), r, r_next)
  return objectives.safe_norm(r.reshape(b, -1))


@base.register
class DeepFool(base.Strategy):
  name = "deepfool"
  inputs = None   # it steps through the model itself
  config_fields = {
      "deepfool_iterations": fields.Option(50, fields.Int(1), "deepfool: most steps per "
                                           "example"),
      "deepfool_overshoot": fields.Option(0.02, fields.Float(), "deepfool: overshoot when "
                                          "testing for a flip"),
      "deepfool_classes": fields.Option(0, fields.Int(2, special=(0,)), "deepfool: classes "
                                        "searched at every step (those of largest logit); "
                                        "0 = all"),
      "deepfool_boundary": fields.Option(
          "nearest", fields.Choice(("nearest", "last_class")), "deepfool: nearest (the "
          "method) or last_class (DeepAL's DeepFool before its 2022 fix)")}

  def __init__(self, nets, spec, query, mesh):
    super().__init__(nets, spec, query, mesh)
    self._step = jax.jit(functools.partial(
        self._slots_step, nets, spec, mesh, iterations=self.options["deepfool_iterations"],
        overshoot=self.options["deepfool_overshoot"], classes=self.options["deepfool_classes"],
        boundary=self.options["deepfool_boundary"]))

  @staticmethod
  def _slots_step(nets, spec, mesh, variables, blocks, slots, fresh, r, label, steps, *,
                  iterations: int, overshoot: float, classes: int, boundary: str):
    """Advances every slot by one DeepFool step; fresh slots start their example."""
    def logits_fn(x):
      z, _ = nets.embed(variables["params"], variables["batch_stats"], x)
      return nets.logits(variables["params"], z)

    x0 = sharding.constrain_batch(
        mesh, data_lib.normalize(sharding.pool_rows(mesh, blocks, slots), spec))
    expand = lambda m: m.reshape(-1, *([1] * (r.ndim - 1)))
    fooled, r_next, label = deepfool_step(logits_fn, x0, r, label, fresh, overshoot=overshoot,
                                          classes=classes, boundary=boundary)
    r = jnp.where(expand(fresh), 0.0, r)
    steps = jnp.where(fresh, 0, steps)
    done = fooled | (steps >= iterations)
    r = jnp.where(expand(done), r, r_next)
    steps = steps + jnp.where(done, 0, 1)
    # Test the new point at once (one forward pass, ~1/10 of the step's cost): an
    # example it fools is finished now, instead of one more step of K-1 gradients
    # that would only find it fooled. Same perturbations as without the test.
    prediction = jnp.argmax(logits_fn(x0 + (1.0 + overshoot) * r), axis=-1)
    done = done | (prediction != label) | (steps >= iterations)
    distance = objectives.safe_norm(r.reshape(r.shape[0], -1))
    return r, label, steps, done, distance

  def select(self, key, variables, pool, is_labeled, query_size):
    del key  # Deterministic.
    todo = np.flatnonzero(~np.asarray(is_labeled, bool))            # the queue
    b = pool.batch_size
    smallest = 8 * self.mesh.size           # the slot count never shrinks below this
    distances = np.full(pool.padded_count, np.inf, np.float32)
    slots = np.zeros(b, np.int32)
    live = np.zeros(b, bool)                 # slot holds an unfinished example
    fresh = np.zeros(b, bool)
    put = functools.partial(sharding.replicate, self.mesh)
    state = (put(np.zeros((b, *pool.example_shape), np.float32)),   # r
             put(np.zeros(b, np.int32)),                                 # label
             put(np.zeros(b, np.int32)))                                 # steps taken
    next_item = 0
    with progress.Progress(len(todo), "DeepFool", "examples") as bar:
      while True:
        free = np.flatnonzero(~live)
        take = min(len(free), len(todo) - next_item)
        slots[free[:take]] = todo[next_item:next_item + take]
        live[free[:take]] = True
        fresh[:] = False
        fresh[free[:take]] = True
        next_item += take
        if not live.any():
          break
        if next_item == len(todo) and live.sum() <= b // 8 and b // 8 >= smallest:
          # The queue is empty and few examples remain (the slow ones): carry them on in
          # fewer slots rather than stepping mostly idle ones.
          keep = np.flatnonzero(live)
          b //= 8
          index = np.zeros(b, np.int32)
          index[:len(keep)] = keep
          state = tuple(put(sharding.to_host(a)[index]) for a in state)
          slots, fresh = slots[index], fresh[index]
          live = np.arange(b) < len(keep)
        *state, done, distance = self._step(variables, pool.blocks, slots, fresh, *state)
        done, distance = sharding.to_host((done, distance))
        finished = live & done
        distances[slots[finished]] = distance[finished]
        live &= ~done
        if bar.due():   # (the step's results are on the host already)
          bar.update(next_item - int(live.sum()))
    return np.argsort(distances, kind="stable")[:query_size]
