"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022, "Active Learning
Through a Covering Lens").

With few labels, query the points whose balls of radius delta cover the most of the
data: greedy maximum coverage on the L2-normalised embeddings. A ball is open,
B(x) = {y : |x - y| < delta}. Points in the ball of a labeled point are covered at the
start; each pick is the selectable point whose ball holds the most uncovered points
(ties: the lower index), and its ball is then covered. When no ball holds an
uncovered point, the rest of the query is a uniform draw from `key` (as the paper's
code does).

delta is probcover_radius, or (0) the largest radius whose balls are pure for a share
>= probcover_purity (alpha) of the points, purity measured against k-means of the
embeddings into num_classes clusters. A ball around x is pure iff it holds no point of
another cluster, i.e. iff delta <= d_x, the distance from x to the nearest point of
another cluster. The share of pure balls, #{x : d_x >= delta} / n, falls as delta
grows and is >= alpha iff #{x : d_x < delta} <= (1 - alpha) n; the largest such delta
is the (1 - alpha) quantile d_(j), j = floor((1 - alpha) n) (0-based, ascending): there
only the j points below it are impure, and any larger delta adds d_(j) itself.

Cost, never an N x N matrix (`clustering.pair_pass`, tiles of 256 x 256 points, each
unordered pair of tiles once):
- d_x: points sorted by cluster, every tile but those inside one cluster, about
  (1 - sum_c n_c^2 / N^2) N^2 / 2 distances (~40% of N^2).
- coverage: a pure point's ball holds points of its own cluster only, so with the
  impure points (a share 1 - alpha) sorted last, the counts need the tiles within a
  cluster plus the impure rows against all: about (sum_c n_c^2 / N^2 + 1 - alpha) N^2
  / 2, twice (points covered by the labeled set; then each candidate's uncovered
  points). With probcover_radius set there are no clusters: N^2 / 2 each.
- the greedy is lazy (Minoux): counts only fall, so a stale count bounds the true one;
  each round recounts the GREEDY_BATCH candidates of largest bound exactly (their
  balls against the points uncovered at the start, one U x batch product) and picks
  from them while the best beats every bound outside, updating the batch's counts as
  it covers. The picks are those of recounting every candidate after every pick (the
  eager greedy), but a pick no longer costs a pass over all N points for its ball plus
  one per newly covered point. On Fashion-MNIST LeNet embeddings (40K points, 500
  picks) ~12K recounts (~100 rounds).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from waal_jax import fields
from waal_jax import progress
from waal_jax import sharding
from waal_jax.strategies import base
from waal_jax.strategies import clustering
from waal_jax.strategies import diversity

GREEDY_BATCH = 128   # candidates recounted together by the lazy greedy
TARGET_BLOCK = 4096  # the greedy's uncovered points, padded to a multiple of this


def purity_radius_sq(nearest_other_sq: np.ndarray, purity: float) -> float:
  """The largest delta^2 with a share >= purity of pure balls: the j-th smallest of the
  squared distances to another cluster, j = floor((1 - purity) n) (module docstring).
  (1e-9 absorbs float error such as (1 - 0.9) * 10 = 0.9999999999999998.)"""
  ordered = np.sort(np.asarray(nearest_other_sq))
  j = min(int(np.floor((1.0 - purity) * len(ordered) + 1e-9)), len(ordered) - 1)
  return float(ordered[j])


def nearest_other_cluster_sq(mesh, points, assign: np.ndarray,
                             *, block: int = clustering.BLOCK) -> np.ndarray:
  """Per point (first len(assign) rows of points), the squared distance to the nearest
  point of another cluster (inf if there is none): (N,). Tiles inside one cluster are
  skipped."""
  count = len(assign)
  order = np.argsort(assign, kind="stable")
  ordered = clustering.gather_rows(mesh, points, order, block=block)
  labels = np.full(ordered.shape[0], -1, np.int32)
  labels[:count] = assign[order]
  low, high = clustering.block_ranges(labels, block)
  one = low == high                            # a block of a single cluster
  real = high >= 0
  needed = (real[:, None] & real[None, :]
            & ~(one[:, None] & one[None, :] & (low[:, None] == low[None, :])))
  nearest = clustering.nearest_other_sq(mesh, ordered, labels, needed)
  out = np.empty(count, np.float32)
  out[order] = np.asarray(sharding.to_host(nearest))[:count]
  return out


class CoverageTiles:
  """The points in the order that makes coverage passes cheap, and those passes.

  A pure point's ball (impure False) holds points of its own cluster only: with pure
  points sorted by cluster and impure ones last, a pass over the `ok` points in every
  point's ball needs only the tiles whose blocks share a cluster, or hold an impure
  point and an ok point. (Labeled points come first in their cluster, so the labeled
  ones fill few blocks.)
  """

  def __init__(self, mesh, points, assign: np.ndarray, impure: np.ndarray,
               is_labeled: np.ndarray, radius_sq: float, block: int = clustering.BLOCK):
    self.mesh, self.block, self.count = mesh, block, len(assign)
    self.radius_sq = np.float32(radius_sq)
    self.order = np.lexsort((np.arange(self.count), ~is_labeled, assign, impure))
    self.points = clustering.gather_rows(mesh, points, self.order, block=block)
    self.labels = self.ordered(assign, -1)
    self.low, self.high = clustering.block_ranges(self.labels, block,
                                                  where=self.ordered(~impure, False))
    self.has_impure = self.ordered(impure, False).reshape(-1, block).any(axis=1)

  def ordered(self, values: np.ndarray, fill) -> np.ndarray:
    """values (N,) in pool order -> (L,) in this order, padded with fill."""
    out = np.full(self.points.shape[0], fill, np.asarray(values).dtype)
    out[:self.count] = np.asarray(values)[self.order]
    return out

  def needed(self, ok: np.ndarray) -> np.ndarray:
    """Tiles that can hold a pair (any point, ok point) in one ball; ok (L,) ordered."""
    ok_low, ok_high = clustering.block_ranges(self.labels, self.block, where=ok)
    return (clustering.ranges_meet(self.low, self.high, ok_low, ok_high)
            | (self.has_impure[:, None] & ok.reshape(-1, self.block).any(axis=1)[None, :]))

  def count_in_balls(self, ok: np.ndarray) -> np.ndarray:
    """Per point, the points with ok (N,) in its ball: (N,) int32, pool order."""
    ok = self.ordered(ok, False)
    counts = clustering.count_within(self.mesh, self.points, ok, self.radius_sq,
                                     self.needed(ok))
    out = np.empty(self.count, np.int32)
    out[self.order] = np.asarray(sharding.to_host(counts))[:self.count]
    return out


def _fill(picks, n, selectable, key, count: int):
  """picks[:n], then a uniform draw of the remaining selectable points (draws for the
  real points only, so the padding changes nothing)."""
  length, k = selectable.shape[0], picks.shape[0]
  slots = jnp.arange(k)
  taken = jnp.zeros(length, bool).at[jnp.where(slots < n, picks, length)].set(
      True, mode="drop")
  u = jnp.pad(jax.random.uniform(key, (count,)), (0, length - count), constant_values=-1.0)
  _, fill = jax.lax.top_k(jnp.where(selectable & ~taken, u, -1.0), k)
  return jnp.where(slots < n, picks, fill[jnp.clip(slots - n, 0, k - 1)])


@functools.partial(jax.jit, static_argnames=("count", "k", "batch"))
def greedy_cover(points, targets, target_count, counts, selectable, radius_sq, key, *,
                 count: int, k: int, batch: int = GREEDY_BATCH):
  """k picks: greedy max coverage (each the selectable point whose ball holds the most
  uncovered points, ties: the lower index), then, once no ball holds any, a uniform
  draw of the remaining selectable points. points (L, D) all points; targets (T, D):
  first the target_count points uncovered at the start, then padding; counts (L,)
  int32, exact at the start; selectable (L,) bool (padding: not selectable)."""
  length = points.shape[0]
  batch = min(batch, length)
  sq = jnp.sum(points * points, axis=-1)
  target_sq = jnp.sum(targets * targets, axis=-1)
  slot = jnp.arange(batch)

  def round_(carry):
    bound, covered, picks, n = carry
    # Candidates by (bound desc, index asc); the (batch+1)-th bounds all the others.
    top, candidate = jax.lax.top_k(jnp.append(bound, -1), batch + 1)
    outside, outside_index = top[batch], candidate[batch]
    top, candidate = top[:batch], candidate[:batch]
    d2 = (target_sq[:, None] + sq[candidate][None, :]
          - 2.0 * clustering.dot(targets, points[candidate]))
    member = d2 < radius_sq                                          # (T, batch)

    def recount(covered, alive):
      return jnp.where(alive, jnp.sum(member & ~covered[:, None], axis=0), -1)

    def pick(state):
      exact, covered, picks, n, alive, _ = state
      best = jnp.max(exact)
      position = jnp.argmin(jnp.where(exact == best, candidate, length))
      chosen = candidate[position]
      wins = (best > 0) & ((best > outside) | ((best == outside) & (chosen < outside_index)))
      covered = jnp.where(wins, covered | member[:, position], covered)
      picks = jnp.where(wins, picks.at[n].set(chosen), picks)
      alive = alive & ~(wins & (slot == position))
      jax.debug.callback(progress.device_tick, n + wins)
      return recount(covered, alive), covered, picks, n + wins, alive, wins

    alive = top >= 0
    state = (recount(covered, alive), covered, picks, n, alive, True)
    exact, covered, picks, n, alive, _ = jax.lax.while_loop(
        lambda s: s[5] & (s[3] < k), pick, state)
    bound = bound.at[candidate].set(jnp.where(alive, exact, -1))
    return bound, covered, picks, n

  bound = jnp.where(selectable, counts, -1)
  covered = jnp.arange(targets.shape[0]) >= target_count             # the padding
  init = (bound, covered, jnp.zeros(k, jnp.int32), jnp.int32(0))
  _, _, picks, n = jax.lax.while_loop(lambda c: (c[3] < k) & (jnp.max(c[0]) > 0),
                                      round_, init)
  return _fill(picks, n, selectable, key, count)


def probcover_picks(mesh, points, is_labeled: np.ndarray, selectable: np.ndarray, key,
                    query_size: int, *, radius: float, purity: float, clusters: int,
                    iterations: int) -> np.ndarray:
  """ProbCover's query from pool points (M, D) on the devices (the first N = len(
  is_labeled) real); selectable (N,) bool; radius 0 = chosen by purity against k-means
  into `clusters` clusters."""
  count = len(is_labeled)
  is_labeled = np.asarray(is_labeled, bool)
  cluster_key, fill_key = jax.random.split(key)
  points = clustering.gather_rows(mesh, points, np.arange(count), normalize=True)
  if radius > 0:     # No clusters: every ball may hold any point.
    radius_sq, assign, impure = radius * radius, np.zeros(count, np.int32), np.ones(count, bool)
  else:
    assign, _ = clustering.kmeans(mesh, points, count, cluster_key, k=min(clusters, count),
                                  iterations=iterations)
    other = nearest_other_cluster_sq(mesh, points, assign)
    radius_sq = purity_radius_sq(other, purity)
    impure = other < radius_sq
  tiles = CoverageTiles(mesh, points, assign, impure, is_labeled, radius_sq)
  covered = tiles.count_in_balls(is_labeled) > 0
  counts = tiles.count_in_balls(~covered)
  # Only the uncovered points can still be covered: the greedy's distances are to them
  # alone (padded to a multiple of TARGET_BLOCK, so few shapes compile).
  uncovered = np.flatnonzero(~covered)
  targets = clustering.gather_rows(mesh, points, uncovered, block=TARGET_BLOCK)
  length = points.shape[0]
  with progress.Progress(query_size, "ProbCover", "picks") as bar, \
      progress.counted_on_device(bar):
    picks = greedy_cover(points, targets, np.int32(len(uncovered)),
                         np.pad(counts, (0, length - count)),
                         np.pad(np.asarray(selectable, bool), (0, length - count)),
                         np.float32(radius_sq), fill_key, count=count, k=query_size)
    return np.asarray(sharding.to_host(picks))


@base.register
class ProbCover(diversity.EmbeddingStrategy):
  name = "probcover"
  config_fields = {
      "probcover_radius": fields.Option(0.0, fields.Float(), "probcover: ball radius delta "
                                        "on the normalised embeddings; 0 = the largest with "
                                        "the purity below"),
      "probcover_purity": fields.Option(0.95, fields.Float(0.0, 1.0, open_minimum=True),
                                        "probcover: share of pure balls (alpha) that sets "
                                        "delta when probcover_radius is 0"),
      "kmeans_iterations": diversity.KMEANS_ITERATIONS,
      "embeddings_file": diversity.EMBEDDINGS_FILE}

  def choose(self, outputs, is_labeled, key, query_size):
    selectable = ~np.asarray(is_labeled, bool)      # (N,): the real rows of the selectable
    return probcover_picks(self.mesh, outputs["embeddings"], is_labeled,
                           selectable, key, query_size,
                           radius=self.options["probcover_radius"],
                           purity=self.options["probcover_purity"],
                           clusters=self.spec.num_classes,
                           iterations=self.options["kmeans_iterations"])
