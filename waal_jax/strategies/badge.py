"""BADGE: diverse, uncertain gradient embeddings (Ash et al., 2020).

Each example is embedded as the gradient of its cross-entropy at the predicted label
with respect to the classifier's last layer's weights, g = (p - onehot(argmax p)) ⊗ h,
h the layer's input: the norm grows with the uncertainty (it lower-bounds the gradient
of the true label), the direction says what the example would change. k-means++
seeding over the unlabeled g's picks the batch: first the largest ||g||, then each next
with probability proportional to its squared distance to the nearest pick (D^2
sampling), so large and mutually far gradients come first.

The C x D embeddings are never formed: ||a ⊗ h||^2 = ||a||^2 ||h||^2 and
<a ⊗ h, a' ⊗ h'> = (a.a')(h.h'), so each pick costs O(M (C + D)) (not O(M C D)) and the
pool holds M (C + D) numbers. The seeding runs whole on one device, with one Gumbel
draw per example and pick from the query key (JAX's partitionable threefry gives the
same noise to an index whatever the padded length), so 1 and 8 devices pick the same.
"""

import functools

import jax
import jax.numpy as jnp

from waal_jax import sharding
from waal_jax.strategies import base


def gradient_factors(log_probs):
  """(B, C) log p -> (B, C) a = p - onehot(argmax p): the gradient of the cross-entropy
  at the predicted label w.r.t. the logits, the first factor of g = a ⊗ h."""
  probs = jnp.exp(log_probs)
  predicted = jax.nn.one_hot(jnp.argmax(log_probs, axis=-1), probs.shape[-1], dtype=probs.dtype)
  return probs - predicted


def sq_norms(a, h):
  """||a_i ⊗ h_i||^2 = ||a_i||^2 ||h_i||^2 (M,)."""
  return jnp.sum(a * a, axis=-1) * jnp.sum(h * h, axis=-1)


def sq_distances_to(a, h, norms, j):
  """||g_i - g_j||^2 for every i (M,), in O(M (C + D)): the products' inner product is
  (a_i.a_j)(h_i.h_j). `norms` = sq_norms(a, h)."""
  cross = (a @ a[j]) * (h @ h[j])
  return jnp.maximum(norms + norms[j] - 2.0 * cross, 0.0)   # >= 0 despite rounding


def d2_sample(key, min_sq, available):
  """An available index drawn with probability proportional to min_sq (Gumbel-max);
  uniformly among the available ones if every available min_sq is 0 (all duplicates
  of picks). Unavailable indices are never drawn."""
  weights = jnp.where(available, min_sq, 0.0)
  logits = jnp.where(jnp.sum(weights) > 0, jnp.log(weights),
                     jnp.where(available, 0.0, -jnp.inf))
  return jax.random.categorical(key, logits)


@functools.partial(jax.jit, static_argnames=("k",))
def kmeans_pp_seeds(a, h, selectable, key, *, k: int):
  """k distinct selectable indices: k-means++ seeding of the embeddings a_i ⊗ h_i,
  starting from the largest norm (ties: the lower index)."""
  norms = sq_norms(a, h)
  first = jnp.argmax(jnp.where(selectable, norms, -1.0))

  def pick(i, carry):
    min_sq, available, picks = carry
    j = d2_sample(jax.random.fold_in(key, i), min_sq, available)
    min_sq = jnp.minimum(min_sq, sq_distances_to(a, h, norms, j))
    return min_sq, available.at[j].set(False), picks.at[i].set(j)

  init = (sq_distances_to(a, h, norms, first), selectable.at[first].set(False),
          jnp.zeros(k, jnp.int32).at[0].set(first))
  return jax.lax.fori_loop(1, k, pick, init)[2]


@base.register
class Badge(base.Strategy):
  name = "badge"

  inputs = ("log_probs", "last_layer_input")

  def __init__(self, nets, spec, query, mesh):
    super().__init__(nets, spec, query, mesh)
    self.outputs = base.PoolScorer(self.batch_outputs, spec, mesh, query.batch_size)

  def select(self, key, variables, pool, is_labeled, query_size):
    return self.choose(self.outputs(variables, pool), is_labeled, key, query_size)

  def choose(self, outputs, is_labeled, key, query_size):
    # The factors, (M, C) and (M, hidden), whole on one device (see sharding.on_one_device).
    rows = outputs["log_probs"].shape[0]
    a, h, selectable, key = sharding.on_one_device(
        (gradient_factors(outputs["log_probs"]), outputs["last_layer_input"],
         base.selectable_rows(self.mesh, rows, is_labeled), key))
    return sharding.to_host(kmeans_pp_seeds(a, h, selectable, key, k=query_size))
