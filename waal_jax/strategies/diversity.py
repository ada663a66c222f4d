"""Diversity baselines on the feature-extractor embeddings (Sener & Savarese, 2018).

coreset: greedy k-center. Each pool example keeps its squared distance to the nearest
  labeled (or already chosen) example; the farthest one is chosen next.
kmedian: K-median clustering (L1 distances, coordinate-wise medians) of the unlabeled
  embeddings into B clusters; the member nearest each center is chosen.

Neither builds an N x N matrix: distances come in blocks of N x chunk (or, for L1,
rows x B), on the devices. Rows are the padded pool (M); `selectable` masks it.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from waal_jax import fields
from waal_jax import sharding
from waal_jax.strategies import base


class _EmbeddingStrategy(base.Strategy):
  """A strategy that works on the feature-extractor embeddings of the pool."""

  def __init__(self, nets, spec, query, mesh):
    super().__init__(nets, spec, query, mesh)

    def embed(variables, x, keys):
      del keys
      z, _ = nets.embed(variables["params"], variables["batch_stats"], x)
      return z

    self.embeddings = base.PoolScorer(embed, spec, mesh, query.batch_size)   # (M, D)


# --- Core-set (greedy k-center) -----------------------------------------------------


@jax.jit
def update_min_sq_distances(min_sq, points, centers, center_valid):
  """min(min_sq, squared L2 distance of every point to the valid centers) (M,)."""
  sq_points = jnp.sum(points * points, axis=-1)                     # (M,)
  sq_centers = jnp.sum(centers * centers, axis=-1)                  # (C,)
  d2 = sq_points[:, None] + sq_centers[None, :] - 2.0 * points @ centers.T   # (M, C)
  d2 = jnp.where(center_valid[None, :], jnp.maximum(d2, 0.0), jnp.inf)
  return jnp.minimum(min_sq, jnp.min(d2, axis=-1))


def min_sq_distances_to(points, center_indices: np.ndarray, chunk: int):
  """Squared distance of each point to its nearest point among `center_indices`,
  computed chunk by chunk (memory M x chunk; one compilation for all chunks)."""
  min_sq = jnp.full(points.shape[0], jnp.inf, points.dtype)
  for start in range(0, len(center_indices), chunk):
    part = center_indices[start:start + chunk]
    padded = np.zeros(chunk, np.int32)
    padded[:len(part)] = part
    valid = np.arange(chunk) < len(part)
    min_sq = update_min_sq_distances(min_sq, points, points[padded], valid)
  return min_sq


@functools.partial(jax.jit, static_argnames=("k",))
def k_center_greedy(points, min_sq, selectable, *, k: int):
  """k picks, each the selectable point farthest from the labeled set and earlier picks."""
  sq_points = jnp.sum(points * points, axis=-1)

  def pick(i, carry):
    min_sq, available, picks = carry
    j = jnp.argmax(jnp.where(available, min_sq, -1.0))
    d2 = jnp.maximum(sq_points + sq_points[j] - 2.0 * points @ points[j], 0.0)
    return jnp.minimum(min_sq, d2), available.at[j].set(False), picks.at[i].set(j)

  init = (min_sq, selectable, jnp.zeros(k, jnp.int32))
  return jax.lax.fori_loop(0, k, pick, init)[2]


@base.register
class CoreSet(_EmbeddingStrategy):
  name = "coreset"
  config_fields = {"chunk_size": fields.Int(1)}

  def select(self, key, variables, pool, is_labeled, query_size):
    points = self.embeddings(variables, pool)
    labeled = np.flatnonzero(np.asarray(is_labeled))
    min_sq = min_sq_distances_to(points, labeled, self.options["chunk_size"])
    picks = k_center_greedy(points, min_sq, pool.selectable(is_labeled), k=query_size)
    return sharding.to_host(picks)


# --- K-median -----------------------------------------------------------------------


def _row_block(rows_per_device: int, limit: int = 256) -> int:
  return math.gcd(rows_per_device, limit)


# Feature columns added per pass over the rows x B accumulator of l1_assign. (With
# YNNPACK fusions off, as waal_jax.xla_tuning sets, this form is ~9x faster than one
# sum over a (rows, B, D) block; with them on it is the other way round.)
_L1_GROUP = 8


@functools.partial(jax.jit, static_argnums=0)
def l1_assign(mesh, points, centers):
  """(nearest center by L1 distance, that distance) per point: (M,) int32, (M,).

  Rows are split over the devices; each device walks its rows in blocks and the
  feature dimension _L1_GROUP columns at a time, so memory stays at rows x B (never
  M x B x D).
  """
  group = _L1_GROUP
  pad = -points.shape[1] % group            # zero columns add |0 - 0| = 0
  points = jnp.pad(points, ((0, 0), (0, pad)))
  centers = jnp.pad(centers, ((0, 0), (0, pad)))
  m, d = points.shape
  block = _row_block(m // mesh.size)

  def local(points_local, centers):
    centers_t = centers.T                                            # (D, B)

    def one_block(rows):                                             # (block, D)
      def add_columns(i, acc):
        cols = jax.lax.dynamic_slice_in_dim(rows, i * group, group, axis=1)        # (block, g)
        cents = jax.lax.dynamic_slice_in_dim(centers_t, i * group, group, axis=0)  # (g, B)
        return acc + jnp.sum(jnp.abs(cols[:, :, None] - cents[None, :, :]), axis=1)
      zeros = jnp.zeros((rows.shape[0], centers.shape[0]), rows.dtype)
      # The carry differs per device, as the rows do ("varying" in shard_map's types).
      zeros = jax.lax.pcast(zeros, (sharding.DATA_AXIS,), to="varying")
      dist = jax.lax.fori_loop(0, d // group, add_columns, zeros)
      return jnp.argmin(dist, axis=-1).astype(jnp.int32), jnp.min(dist, axis=-1)

    assign, dist = jax.lax.map(one_block, points_local.reshape(-1, block, d))
    return assign.reshape(-1), dist.reshape(-1)

  return jax.shard_map(local, mesh=mesh, in_specs=(P(sharding.DATA_AXIS), P()),
                       out_specs=(P(sharding.DATA_AXIS), P(sharding.DATA_AXIS)))(points, centers)


def coordinate_medians(points, assign, valid, previous, bins: int = 64):
  """Per cluster and dimension, the lower median of the members' values (k, D).

  Two histogram passes (bins x bins cells between each dimension's min and max) find
  the median's cell, so it is exact to range / (2 bins^2); XLA:CPU sorts are ~10x
  slower than this. Empty clusters keep their `previous` center.
  """
  k, d = previous.shape
  cluster = jnp.where(valid, assign, k)                              # k = "no cluster"
  dims = jnp.arange(d)[None, :]
  big = jnp.finfo(points.dtype).max
  lo = jnp.min(jnp.where(valid[:, None], points, big), axis=0)       # (D,)
  hi = jnp.max(jnp.where(valid[:, None], points, -big), axis=0)
  width = jnp.where(hi > lo, (hi - lo) / bins, 1.0)
  counts = jax.ops.segment_sum(valid.astype(jnp.int32), cluster, k + 1)[:k]     # (k,)
  rank = jnp.maximum(counts - 1, 0) // 2                             # 0-based lower median

  def histogram(bin_index, member):                                  # (M, D) each
    cells = (cluster[:, None] * d + dims) * bins + bin_index
    member = jnp.broadcast_to(member, bin_index.shape).astype(jnp.int32)
    hist = jax.ops.segment_sum(member.ravel(), cells.ravel(),
                               (k + 1) * d * bins)
    return jnp.cumsum(hist.reshape(k + 1, d, bins)[:k], axis=-1)     # (k, D, bins)

  def first_bin_beyond(cumulative, target):                          # (k, D), counts before
    chosen = jnp.argmax(cumulative > target[..., None], axis=-1)
    before = jnp.where(chosen > 0, jnp.take_along_axis(
        cumulative, jnp.maximum(chosen - 1, 0)[..., None], axis=-1)[..., 0], 0)
    return chosen, before

  coarse_index = jnp.clip(jnp.floor((points - lo) / width), 0, bins - 1).astype(jnp.int32)
  coarse, before = first_bin_beyond(histogram(coarse_index, valid[:, None]),
                                    jnp.broadcast_to(rank[:, None], (k, d)))
  fine_lo = lo + coarse * width                                      # (k, D)
  fine_width = width / bins
  in_cell = valid[:, None] & (coarse_index == coarse[jnp.minimum(cluster, k - 1)])
  fine_index = jnp.clip(jnp.floor((points - fine_lo[jnp.minimum(cluster, k - 1)]) / fine_width),
                        0, bins - 1).astype(jnp.int32)
  fine, _ = first_bin_beyond(histogram(fine_index, in_cell), rank[:, None] - before)
  medians = fine_lo + (fine + 0.5) * fine_width
  return jnp.where((counts > 0)[:, None], medians, previous)


@functools.partial(jax.jit, static_argnames=("k",))
def nearest_members(assign, dist, valid, *, k: int):
  """The member nearest each cluster's center; empty clusters are made up for by the
  valid points farthest from their centers. Returns k distinct indices."""
  m = assign.shape[0]
  cluster = jnp.where(valid, assign, k)
  dist = jnp.where(valid, dist, jnp.inf)
  nearest = jax.ops.segment_min(dist, cluster, k + 1)[:k]
  is_nearest = valid & (dist == nearest[jnp.minimum(cluster, k - 1)]) & (cluster < k)
  best = jax.ops.segment_min(jnp.where(is_nearest, jnp.arange(m), m), cluster, k + 1)[:k]
  found = best < m
  taken = jnp.zeros(m, bool).at[jnp.where(found, best, m)].set(True, mode="drop")
  _, farthest = jax.lax.top_k(jnp.where(valid & ~taken, dist, -jnp.inf), k)
  best = best[jnp.argsort(~found, stable=True)]                       # found ones first
  slot = jnp.arange(k)
  n_found = jnp.sum(found)
  return jnp.where(slot < n_found, best, farthest[jnp.clip(slot - n_found, 0, k - 1)])


def k_median(mesh, points, selectable, key, *, k: int, iterations: int):
  """Lloyd-style K-median on the selectable points; returns k distinct indices."""
  _, start = jax.lax.top_k(jnp.where(selectable, jax.random.uniform(key, selectable.shape),
                                     -1.0), k)
  centers = points[start]
  assign = None
  update = jax.jit(coordinate_medians)
  for _ in range(iterations):
    new_assign, _ = l1_assign(mesh, points, centers)
    if assign is not None and bool(jnp.all((new_assign == assign) | ~selectable)):
      break   # Converged: the medians would not move.
    assign = new_assign
    centers = update(points, assign, selectable, centers)
  assign, dist = l1_assign(mesh, points, centers)
  return nearest_members(assign, dist, selectable, k=k)


@base.register
class KMedian(_EmbeddingStrategy):
  name = "kmedian"
  config_fields = {"kmedian_iterations": fields.Int(1)}

  def select(self, key, variables, pool, is_labeled, query_size):
    points = self.embeddings(variables, pool)
    picks = k_median(self.mesh, points, pool.selectable(is_labeled), key, k=query_size,
                     iterations=self.options["kmedian_iterations"])
    return sharding.to_host(picks)
