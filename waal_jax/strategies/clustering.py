"""K-means and blockwise passes over pairs of pool points, for typiclust and probcover.

Both strategies need, per point, something about its distances to some of the others:
its nearest neighbours in its own cluster (typicality), its nearest point in another
cluster (ProbCover's purity), how many points lie within a radius (coverage).
`pair_pass` computes these over square tiles of block x block points: only the tiles a
host-side `needed` matrix of block pairs names, and each unordered pair of blocks once
(a tile feeds both its rows and its columns, which halves the work). With the points
sorted by cluster, the needed tiles follow the clusters, so no N x N matrix is built
and most pairs that cannot matter are never computed.

Every device holds all points (N x D is small); the tiles are dealt round-robin to the
devices and the per-device results are combined by exact reductions (minimum, integer
sum, the k smallest), and each tile is computed the same way whatever device computes
it, so results are the same on any number of devices. K-means assigns on the devices
in the same way and averages on the host (in float64), for the same reason; so does
mini-batch k-means, which TypiClust's authors ran for more than 50 clusters.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from waal_jax import sharding

BLOCK = 256   # points per tile side (a 256 x 256 x D matrix product per tile)


def padded_length(count: int, block: int = BLOCK) -> int:
  return -(-count // block) * block


@functools.partial(jax.jit, static_argnames=("normalize",))
def _gather(points, order, count, *, normalize: bool):
  rows = points[order]
  if normalize:
    rows = rows / jnp.maximum(jnp.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
  return jnp.where((jnp.arange(len(order)) < count)[:, None], rows, 0.0)


def gather_rows(mesh, points, order, *, block: int = BLOCK, normalize: bool = False):
  """points[order] (len(order) real rows; optionally scaled to unit L2 norm), zero-padded
  to whole blocks and held whole on every device. (The order is padded before the
  gather, so one compilation serves every order of the same padded length.)"""
  order = np.asarray(order, np.int32)
  padded = np.zeros(padded_length(len(order), block), np.int32)
  padded[:len(order)] = order
  return sharding.replicate(mesh, _gather(points, padded, np.int32(len(order)),
                                          normalize=normalize))


# --- Passes over tiles of pairs --------------------------------------------------------


def pair_schedule(needed: np.ndarray, devices: int):
  """Every unordered pair of blocks {I, J} that `needed` names either way round, once,
  dealt round-robin to the devices: (devices, capacity, 2) int32 block indices (I <= J)
  and (devices,) counts. The capacity depends only on the number of blocks, so one
  compilation serves every round."""
  blocks = needed.shape[0]
  pairs = np.argwhere(np.triu(needed | needed.T)).astype(np.int32)
  capacity = max(1, -(-blocks * (blocks + 1) // 2 // devices))
  schedule = np.zeros((devices, capacity, 2), np.int32)
  counts = np.zeros(devices, np.int32)
  for d in range(devices):
    mine = pairs[d::devices]
    schedule[d, :len(mine)] = mine
    counts[d] = len(mine)
  return schedule, counts


def dot(a, b):
  """a @ b.T, kept out of the elementwise fusion that follows it (XLA:CPU fuses the
  two into one loop ~2.5x slower than the matrix product alone)."""
  return jax.lax.optimization_barrier(a @ b.T)


def _slice(x, start, size):
  return jax.lax.dynamic_slice_in_dim(x, start, size)


def _update(x, part, start):
  return jax.lax.dynamic_update_slice_in_dim(x, part, start, axis=0)


def pair_pass(mesh, tile_fn, combine, points, data, needed: np.ndarray, init):
  """Runs acc = tile_fn(acc, data, i, j, d2) over the needed tiles (i <= j the first rows
  of the two blocks, d2 their (block, block) squared L2 distances) from `init` on every
  device, then `combine` folds the devices' accumulators (stacked on a leading axis).
  points: (L, D), L = blocks x block; needed: (blocks, blocks) bool."""
  block = points.shape[0] // needed.shape[0]
  schedule, counts = pair_schedule(needed, mesh.size)
  return _run_tiles(mesh, tile_fn, combine, block, points, data, schedule, counts, init)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _run_tiles(mesh, tile_fn, combine, block, points, data, schedule, counts, init):

  def local(points, data, schedule, counts, acc):
    sq = jnp.sum(points * points, axis=-1)

    def one_tile(t, acc):
      i, j = schedule[0, t, 0] * block, schedule[0, t, 1] * block
      a, b = _slice(points, i, block), _slice(points, j, block)
      d2 = _slice(sq, i, block)[:, None] + _slice(sq, j, block)[None, :] - 2.0 * dot(a, b)
      # A block against itself: the same distance both ways round (rounding can differ).
      d2 = jnp.where(i == j, jnp.minimum(d2, d2.T), d2)
      return tile_fn(acc, data, i, j, jnp.maximum(d2, 0.0))

    # The accumulators differ per device ("varying" in shard_map's types).
    acc = jax.tree.map(lambda a: jax.lax.pcast(a, (sharding.DATA_AXIS,), to="varying"), acc)
    acc = jax.lax.fori_loop(0, counts[0], one_tile, acc)
    return jax.tree.map(lambda a: a[None], acc)

  devices = P(sharding.DATA_AXIS)
  stacked = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), devices, devices, P()),
                          out_specs=devices)(points, data, schedule, counts, init)
  return combine(stacked)


def _smallest(x, k: int):
  """The k smallest values of each row, ascending."""
  return -jax.lax.top_k(-x, k)[0]


def _nearest_other_tile(acc, labels, i, j, d2):
  size = d2.shape[0]
  li, lj = _slice(labels, i, size), _slice(labels, j, size)
  other = (li[:, None] != lj[None, :]) & (li[:, None] >= 0) & (lj[None, :] >= 0)
  d2 = jnp.where(other, d2, jnp.inf)
  acc = _update(acc, jnp.minimum(_slice(acc, i, size), jnp.min(d2, axis=1)), i)
  return _update(acc, jnp.minimum(_slice(acc, j, size), jnp.min(d2, axis=0)), j)


def _count_within_tile(acc, data, i, j, d2):
  ok, radius_sq = data
  size = d2.shape[0]
  hit = d2 < radius_sq
  rows = jnp.sum(hit & _slice(ok, j, size)[None, :], axis=1, dtype=jnp.int32)
  cols = jnp.sum(hit & _slice(ok, i, size)[:, None], axis=0, dtype=jnp.int32)
  acc = _update(acc, _slice(acc, i, size) + rows, i)
  return _update(acc, _slice(acc, j, size) + jnp.where(i == j, 0, cols), j)  # once a pair


def _nearest_same_tile(acc, labels, i, j, d2):
  size, k = d2.shape[0], acc.shape[1]
  li, lj = _slice(labels, i, size), _slice(labels, j, size)
  position = jnp.arange(size)
  same = ((li[:, None] == lj[None, :]) & (li[:, None] >= 0)
          & ((i + position)[:, None] != (j + position)[None, :]))      # not itself
  d2 = jnp.where(same, d2, jnp.inf)
  acc = _update(acc, _smallest(jnp.concatenate([_slice(acc, i, size), d2], 1), k), i)
  d2 = jnp.where(i == j, jnp.inf, d2.T)           # a diagonal tile has fed both already
  return _update(acc, _smallest(jnp.concatenate([_slice(acc, j, size), d2], 1), k), j)


def _min_of_devices(stacked):
  return jnp.min(stacked, axis=0)


def _sum_of_devices(stacked):
  return jnp.sum(stacked, axis=0)


def _smallest_of_devices(stacked):
  devices, length, k = stacked.shape
  return _smallest(jnp.moveaxis(stacked, 0, 1).reshape(length, devices * k), k)


def nearest_other_sq(mesh, points, labels, needed):
  """Per point, the squared L2 distance to its nearest point with another label (inf if
  none) among the tiles named; labels (L,) int32, -1 for padding (never counted)."""
  init = jnp.full(points.shape[0], jnp.inf, points.dtype)
  return pair_pass(mesh, _nearest_other_tile, _min_of_devices, points,
                   jnp.asarray(labels, jnp.int32), needed, init)


def count_within(mesh, points, ok, radius_sq, needed):
  """Per point, how many points with `ok` lie at squared distance < radius_sq (itself
  included if ok) among the tiles named: (L,) int32."""
  init = jnp.zeros(points.shape[0], jnp.int32)
  data = (jnp.asarray(ok, bool), jnp.asarray(radius_sq, points.dtype))
  return pair_pass(mesh, _count_within_tile, _sum_of_devices, points, data, needed, init)


def nearest_same_sq(mesh, points, labels, needed, k: int):
  """Per point, the k smallest squared distances to other points of its label, ascending
  (inf where there are fewer): (L, k)."""
  init = jnp.full((points.shape[0], k), jnp.inf, points.dtype)
  return pair_pass(mesh, _nearest_same_tile, _smallest_of_devices, points,
                   jnp.asarray(labels, jnp.int32), needed, init)


def block_ranges(labels: np.ndarray, block: int, where=None):
  """Per block of `block` consecutive points: the smallest and largest label among the
  points `where` holds (all real points if None; labels < 0 are padding), or (big, -1)
  for a block with none. Two blocks can share a label only if their ranges meet."""
  labels = np.asarray(labels)
  keep = labels >= 0 if where is None else (np.asarray(where, bool) & (labels >= 0))
  big = np.iinfo(np.int32).max
  low = np.where(keep, labels, big).reshape(-1, block).min(axis=1)
  high = np.where(keep, labels, -1).reshape(-1, block).max(axis=1)
  return low, high


def ranges_meet(low_a, high_a, low_b, high_b) -> np.ndarray:
  """(blocks_a, blocks_b) bool: the label ranges of two sets of blocks overlap."""
  return (np.maximum(low_a[:, None], low_b[None, :])
          <= np.minimum(high_a[:, None], high_b[None, :]))


# --- K-means ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("count", "k"))
def kmeans_plus_plus(points, key, *, count: int, k: int):
  """k start centers (indices among the first `count` points, distinct while there are
  k distinct points) by k-means++ (Arthur & Vassilvitskii, 2007): the first uniform,
  each next one drawn with probability proportional to its squared distance to the
  nearest chosen one, by inverting the cumulative weights with one uniform draw.
  points (L, D) is held whole on every device, so every device draws the same."""
  length = points.shape[0]
  sq = jnp.sum(points * points, axis=-1)
  real = jnp.arange(length) < count

  def sq_to(j):
    return jnp.maximum(sq + sq[j] - 2.0 * points @ points[j], 0.0)

  def draw(i, weight):
    cumulative = jnp.cumsum(jnp.where(real, weight, 0.0))
    u = jax.random.uniform(jax.random.fold_in(key, i), dtype=points.dtype) * cumulative[-1]
    return jnp.minimum(jnp.searchsorted(cumulative, u, side="right"), count - 1)

  first = draw(0, jnp.ones(length, points.dtype)).astype(jnp.int32)

  def step(i, carry):
    min_sq, chosen = carry
    j = draw(i, min_sq).astype(jnp.int32)      # weight 0 (a chosen point) is never drawn
    return jnp.minimum(min_sq, sq_to(j)).at[j].set(0.0), chosen.at[i].set(j)

  chosen = jnp.full(k, first, jnp.int32)
  return jax.lax.fori_loop(1, k, step, (sq_to(first).at[first].set(0.0), chosen))[1]


def block_schedule(blocks: int, devices: int):
  """Block indices dealt round-robin to the devices: (devices, capacity), counts."""
  capacity = -(-blocks // devices)
  schedule = np.zeros((devices, capacity), np.int32)
  counts = np.zeros(devices, np.int32)
  for d in range(devices):
    mine = np.arange(d, blocks, devices)
    schedule[d, :len(mine)] = mine
    counts[d] = len(mine)
  return schedule, counts


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _nearest_centers(mesh, block, with_scores, points, centers, schedule, counts):

  def local(points, centers, schedule, counts):
    center_sq = jnp.sum(centers * centers, axis=-1)

    def one_block(t, carry):
      assign, score = carry
      i = schedule[0, t] * block
      rows = _slice(points, i, block)
      # |x|^2 is the same for every center: the nearest minimises |c|^2 - 2 x.c.
      scores = center_sq[None, :] - 2.0 * dot(rows, centers)
      assign = _update(assign, jnp.argmin(scores, axis=-1).astype(jnp.int32), i)
      if with_scores:        # (static: full k-means never reads them)
        score = _update(score, jnp.min(scores, axis=-1), i)
      return assign, score

    carry = (jnp.zeros(points.shape[0], jnp.int32), jnp.zeros(points.shape[0], points.dtype))
    carry = jax.lax.pcast(carry, (sharding.DATA_AXIS,), to="varying")
    return jax.tree.map(lambda a: a[None], jax.lax.fori_loop(0, counts[0], one_block, carry))

  devices = P(sharding.DATA_AXIS)
  per_device = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), devices, devices),
                             out_specs=devices)(points, centers, schedule, counts)
  # Each row was written by one device only.
  return jax.tree.map(lambda a: jnp.sum(a, axis=0), per_device)


def nearest_centers(mesh, points, centers, *, block: int = BLOCK, with_scores: bool = False):
  """Per point (L, D), the index of the nearest center (L2; ties: the lower): (L,);
  with_scores: also its |c|^2 - 2 x.c (its squared distance less |x|^2)."""
  schedule, counts = block_schedule(points.shape[0] // block, mesh.size)
  assign, scores = _nearest_centers(mesh, block, with_scores, points,
                                    jnp.asarray(centers, points.dtype), schedule, counts)
  return (assign, scores) if with_scores else assign


def cluster_sums(columns, assign: np.ndarray, k: int):
  """Per cluster its point count (k,) and the sum of its points (k, D), columns = the
  points transposed (D, N): summed on the host in float64 in one fixed order (so alike
  on any number of devices), one bincount per dimension (~20x faster than sorting the
  rows)."""
  sizes = np.bincount(assign, minlength=k)
  return sizes, np.stack([np.bincount(assign, weights=column, minlength=k)
                          for column in columns], 1)


def cluster_means(columns: np.ndarray, assign: np.ndarray, previous: np.ndarray):
  """Per cluster the mean of its points (`cluster_sums`); empty clusters keep
  `previous`."""
  sizes, sums = cluster_sums(columns, assign, previous.shape[0])
  return np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], previous)


def kmeans(mesh, points, count: int, key, *, k: int, iterations: int, block: int = BLOCK):
  """Lloyd's k-means (squared L2) of the first `count` of points (L, D) (held whole on
  every device), from a k-means++ start drawn with `key`: at most `iterations` updates,
  fewer if the assignments stop changing. Returns the assignments (count,) int32,
  each point's nearest of the returned centers (k, D) float32."""
  host = np.asarray(sharding.to_host(points))[:count]
  columns = np.ascontiguousarray(host.T)
  start = np.asarray(sharding.to_host(kmeans_plus_plus(points, key, count=count, k=k)))
  centers = host[start]

  def assign_to(centers):
    return np.asarray(sharding.to_host(nearest_centers(mesh, points, centers,
                                                        block=block)))[:count]

  assign = assign_to(centers)
  for _ in range(iterations):
    centers = cluster_means(columns, assign, centers).astype(np.float32)
    new = assign_to(centers)
    converged = np.array_equal(new, assign)
    assign = new
    if converged:
      break
  return assign, np.asarray(centers, np.float32)


# --- Mini-batch k-means ----------------------------------------------------------------

# scikit-learn's MiniBatchKMeans defaults, with the batch TypiClust's authors gave it.
MINIBATCH_SIZE = 5000
MINIBATCH_EPOCHS = 100      # (max_iter) at most this many passes' worth of batches
MINIBATCH_PATIENCE = 10     # (max_no_improvement) batches without a new best smoothed cost
REASSIGN_RATIO = 0.01       # (reassignment_ratio) centers chosen less than this x the most
BATCH_BLOCK = 1024          # a batch's rows per assignment tile (~20% faster than 256 here)


@functools.partial(jax.jit, static_argnames=("count", "batch"))
def _batch_draw(key, step, *, count: int, batch: int):
  """A batch: `batch` point indices drawn uniformly with replacement."""
  return jax.random.randint(jax.random.split(jax.random.fold_in(key, step))[0], (batch,),
                            0, count)


@functools.partial(jax.jit, static_argnames=("batch",))
def _batch_order(key, step, *, batch: int):
  """An order of the batch: where starved centers move (drawn only when some are)."""
  return jax.random.permutation(jax.random.split(jax.random.fold_in(key, step))[1], batch)


def minibatch_update(centers: np.ndarray, seen: np.ndarray, rows: np.ndarray,
                     assign: np.ndarray) -> None:
  """One batch's move, in place: each center to the running mean of every point ever
  assigned to it, `seen` (k,) counting them; centers (k, D) float64."""
  sizes, sums = cluster_sums(rows.T, assign, centers.shape[0])
  chosen = sizes > 0
  centers[chosen] = ((centers[chosen] * seen[chosen, None] + sums[chosen])
                     / (seen[chosen] + sizes[chosen])[:, None])
  seen += sizes


def move_starved(centers: np.ndarray, seen: np.ndarray, rows: np.ndarray, order) -> None:
  """In place: the centers chosen less than REASSIGN_RATIO x the most chosen one's count
  (at most len(rows) // 2 of the least chosen) move to the batch's rows in the order
  `order()` returns, and their counts rise to the smallest of the others, so they are
  not moved again at once."""
  starved = seen < REASSIGN_RATIO * seen.max()
  limit = len(rows) // 2
  if starved.sum() > limit:
    starved[np.argsort(seen, kind="stable")[limit:]] = False
  if starved.any():
    centers[starved] = rows[order()[:starved.sum()]]
    seen[starved] = seen[~starved].min()


class Plateau:
  """Mini-batch k-means' stop: the batches' costs smoothed (each new one weighs
  `smoothing`); `stalled` says True once the smoothed cost has not reached a new
  minimum for `patience` batches in a row."""

  def __init__(self, smoothing: float, patience: int):
    self.smoothing, self.patience = smoothing, patience
    self.smoothed = self.best = None
    self.stale = 0

  def stalled(self, cost: float) -> bool:
    self.smoothed = (cost if self.smoothed is None
                     else self.smoothed * (1 - self.smoothing) + cost * self.smoothing)
    if self.best is None or self.smoothed < self.best:
      self.best, self.stale = self.smoothed, 0
    else:
      self.stale += 1
    return self.stale >= self.patience


def minibatch_kmeans(mesh, points, count: int, key, *, k: int, batch: int = MINIBATCH_SIZE,
                     epochs: int = MINIBATCH_EPOCHS, patience: int = MINIBATCH_PATIENCE,
                     block: int = BLOCK):
  """Mini-batch k-means (Sculley, 2010) of the first `count` of points (L, D), as
  scikit-learn's MiniBatchKMeans runs it:
  - the start: k-means++ on a uniform sample of 3 x batch points (at least 3k);
  - each batch: `batch` points drawn uniformly with replacement, each assigned to its
    nearest center (`minibatch_update`);
  - starved centers (`move_starved`): whenever some center was never chosen, or 10k
    points were drawn since the last time;
  - the end: after epochs x count / batch batches, or once the batches' mean squared
    distance to the nearest center (taken before the update), smoothed over about half
    a pass (weight 2 x batch / (count + 1)), has not reached a new minimum for
    `patience` batches (`Plateau`; the first batch, whose cost is the start's, not
    counted).

  Its cost is the batches' (independent of count once the sample stops growing) plus
  one full assignment at the end: the returned assignments (count,) int32 are each
  point's nearest of the returned centers (k, D) float32. The same on any number of
  devices (the assignments as in `kmeans`, the updates on the host in float64)."""
  host = np.asarray(sharding.to_host(points))[:count]
  row_sq = np.sum(np.square(host, dtype=np.float64), axis=1)
  batch = min(batch, count)
  sample_key, start_key, batch_key = jax.random.split(key, 3)
  sample_size = min(count, max(3 * batch, 3 * k))
  sample = np.sort(np.asarray(jax.random.choice(sample_key, count, (sample_size,),
                                                replace=False)))
  start = kmeans_plus_plus(gather_rows(mesh, points, sample, block=block), start_key,
                           count=sample_size, k=k)
  centers = host[sample[np.asarray(sharding.to_host(start))]].astype(np.float64)
  seen = np.zeros(k)                          # points assigned to each center so far
  drawn_since_moving = 0
  plateau = Plateau(min(1.0, 2.0 * batch / (count + 1)), patience)
  for step in range(max(1, epochs * count // batch)):
    drawn = np.asarray(_batch_draw(batch_key, step, count=count, batch=batch))
    drawn_since_moving += batch
    starving = (seen == 0).any() or drawn_since_moving >= 10 * k
    rows = host[drawn]
    assign, scores = sharding.to_host(nearest_centers(
        mesh, gather_rows(mesh, points, drawn, block=BATCH_BLOCK),
        centers.astype(np.float32), block=BATCH_BLOCK, with_scores=True))
    assign = np.asarray(assign)[:batch]
    cost = np.mean(row_sq[drawn] + np.asarray(scores, np.float64)[:batch])
    minibatch_update(centers, seen, rows, assign)
    if starving:
      drawn_since_moving = 0
      move_starved(centers, seen, rows,
                   lambda step=step: np.asarray(_batch_order(batch_key, step, batch=batch)))
    if step > 0 and plateau.stalled(cost):
      break
  centers = centers.astype(np.float32)
  assign = np.asarray(sharding.to_host(nearest_centers(mesh, points, centers,
                                                        block=block)))[:count]
  return assign, centers
