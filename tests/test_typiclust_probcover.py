"""TypiClust, ProbCover and their k-means and tile passes on cases whose answers are
known by hand or by brute force."""

import jax
import numpy as np
import pytest

from conftest import make_nets, make_settings
from waal_jax import sharding
from waal_jax import strategies
from waal_jax.strategies import clustering
from waal_jax.strategies import probcover
from waal_jax.strategies import typiclust


@pytest.fixture(scope="module")
def mesh():
  return sharding.make_mesh()


def _rows(mesh, points, block=clustering.BLOCK):
  points = np.asarray(points, np.float32)
  return clustering.gather_rows(mesh, points, np.arange(len(points)), block=block)


def _blobs(rng, sizes, dims=8, spread=0.3, distance=10.0):
  """Points of separated Gaussian blobs, blob b centred at distance * e_b."""
  points, blob = [], []
  for b, size in enumerate(sizes):
    center = np.zeros(dims)
    center[b] = distance
    points.append(center + rng.normal(0.0, spread, (size, dims)))
    blob.append(np.full(size, b))
  return np.concatenate(points).astype(np.float32), np.concatenate(blob)


def _ring(center, radius, count):
  angles = 2 * np.pi * np.arange(count) / count
  return np.asarray(center) + radius * np.stack([np.cos(angles), np.sin(angles)], 1)


def test_kmeans_finds_separated_blobs(mesh):
  rng = np.random.default_rng(0)
  points, blob = _blobs(rng, (50, 70, 37))          # 157 real rows, padded to 256
  assign, centers = clustering.kmeans(mesh, _rows(mesh, points), len(points),
                                      jax.random.key(0), k=3, iterations=20)
  assert assign.shape == (157,)
  for b in range(3):                                # one cluster per blob, all distinct
    assert len(set(assign[blob == b].tolist())) == 1
  assert len(set(assign.tolist())) == 3
  for b in range(3):
    np.testing.assert_allclose(centers[assign[blob == b][0]], points[blob == b].mean(0),
                               atol=1e-4)


def test_minibatch_kmeans_finds_separated_blobs_in_small_batches(mesh):
  rng = np.random.default_rng(0)
  points, blob = _blobs(rng, (300, 420, 222))       # 942 real rows, padded to 1,024
  assign, centers = clustering.minibatch_kmeans(mesh, _rows(mesh, points), len(points),
                                                jax.random.key(0), k=3, batch=64)
  assert assign.shape == (942,)
  assert sorted(set(assign.tolist())) == [0, 1, 2]
  for b in range(3):                                # one cluster per blob
    assert len(set(assign[blob == b].tolist())) == 1
    # The running mean of the blob's drawn points: near the blob's mean.
    np.testing.assert_allclose(centers[assign[blob == b][0]], points[blob == b].mean(0),
                               atol=0.1)
  again = clustering.minibatch_kmeans(mesh, _rows(mesh, points), len(points),
                                      jax.random.key(0), k=3, batch=64)
  np.testing.assert_array_equal(again[1], centers)  # the same given the key


def test_a_minibatch_moves_each_center_to_the_running_mean_of_its_points():
  centers = np.array([[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]])
  seen = np.array([1.0, 0.0, 4.0])
  rows = np.array([[2.0, 4.0], [4.0, 2.0], [11.0, 13.0]])
  clustering.minibatch_update(centers, seen, rows, np.array([0, 0, 1]))
  # (0 x 1 + 2 + 4) / 3 = 2 in both columns; the unseen center jumps to its one point;
  # the center given no point this batch stays.
  np.testing.assert_allclose(centers, [[2.0, 2.0], [11.0, 13.0], [5.0, 5.0]])
  np.testing.assert_array_equal(seen, [3.0, 1.0, 4.0])


def test_starved_centers_move_to_the_batch_and_get_the_smallest_other_count():
  centers = np.zeros((4, 1))
  seen = np.array([300.0, 2.0, 50.0, 3.5])           # below 0.01 x 300 = 3: center 1 only
  rows = np.array([[7.0], [8.0], [9.0], [10.0]])
  clustering.move_starved(centers, seen, rows, lambda: np.array([2, 0, 1, 3]))
  np.testing.assert_array_equal(centers[:, 0], [0.0, 9.0, 0.0, 0.0])
  np.testing.assert_array_equal(seen, [300.0, 3.5, 50.0, 3.5])
  # At most half the batch moves: the two least chosen of three starved centers.
  centers, seen = np.zeros((4, 1)), np.array([1000.0, 2.0, 1.0, 3.0])
  clustering.move_starved(centers, seen, rows, lambda: np.array([3, 2, 1, 0]))
  np.testing.assert_array_equal(centers[:, 0], [0.0, 10.0, 9.0, 0.0])   # rows 3, 2
  np.testing.assert_array_equal(seen, [1000.0, 3.0, 3.0, 3.0])


def test_the_plateau_stops_after_patience_batches_without_a_new_smoothed_minimum():
  plateau = clustering.Plateau(smoothing=0.5, patience=2)
  # Smoothed: 4, 3 (new best), 3.5, 3.25: two batches above 3.
  assert [plateau.stalled(c) for c in (4.0, 2.0, 4.0, 3.0)] == [False, False, False, True]
  plateau = clustering.Plateau(smoothing=0.5, patience=2)
  # 4, 3, 3.5, then 2.75: a new best resets the count.
  assert [plateau.stalled(c) for c in (4.0, 2.0, 4.0, 2.0, 5.0)] == [False] * 5


def test_typiclust_clusters_as_its_authors_code_does():
  assert not typiclust.uses_minibatch("auto", 50)
  assert typiclust.uses_minibatch("auto", 51)
  assert not typiclust.uses_minibatch("lloyd", 500)
  assert typiclust.uses_minibatch("minibatch", 3)


def test_kmeans_plus_plus_draws_distinct_real_points(mesh):
  points = np.random.default_rng(1).normal(size=(20, 4))
  start = clustering.kmeans_plus_plus(_rows(mesh, points), jax.random.key(3), count=20, k=20)
  assert sorted(np.asarray(start).tolist()) == list(range(20))   # never the padding


def test_mean_neighbour_distance_by_hand(mesh):
  # One cluster on a line, 2 neighbours: 0 -> (1, 2), 1 -> (0, 2), 2 -> (1, 3),
  # 3 -> (2, 1), 10 -> (3, 2); and a cluster of two (1 neighbour) and one of one (none).
  line = [[0.0], [1.0], [2.0], [3.0], [10.0], [50.0], [54.0], [90.0]]
  assign = np.array([0, 0, 0, 0, 0, 1, 1, 2])
  mean = typiclust.mean_neighbour_distance(mesh, _rows(mesh, line, 8), assign, 2, block=8)
  np.testing.assert_allclose(mean, [1.5, 1.0, 1.0, 1.5, 7.5, 4.0, 4.0, np.inf], rtol=1e-6)


def test_mean_neighbour_distance_equals_brute_force_across_tiles(mesh):
  rng = np.random.default_rng(2)
  points = rng.normal(size=(150, 6)).astype(np.float32)
  assign = rng.integers(0, 7, 150)                  # clusters straddle the 16-point tiles
  mean = typiclust.mean_neighbour_distance(mesh, _rows(mesh, points, 16), assign, 5,
                                           block=16)
  for i in range(150):
    members = np.flatnonzero((assign == assign[i]) & (np.arange(150) != i))
    d = np.sort(np.linalg.norm(points[members] - points[i], axis=1))
    np.testing.assert_allclose(mean[i], d[:5].mean(), rtol=1e-4)


def _two_clusters():
  """A big 2-D cluster: the point (0, 0) (index 0) and rings of 8 at radius 1, 2, 3;
  its 20 nearest neighbours are at mean distance (8 + 16 + 4 x 3) / 20 = 1.8, every
  other point's farther. A smaller one at (20, 0): its centre (index 25) and 6 points
  at 1.5."""
  big = np.concatenate([[[0.0, 0.0]]] + [_ring((0, 0), r, 8) for r in (1.0, 2.0, 3.0)])
  small = np.concatenate([[[20.0, 0.0]], _ring((20, 0), 1.5, 6)])
  return np.concatenate([big, small])


def test_typiclust_picks_the_largest_clusters_most_typical_point(mesh):
  points = _two_clusters()
  count = len(points)
  no_labels = np.zeros(count, bool)
  mean = typiclust.mean_neighbour_distance(mesh, _rows(mesh, points), np.zeros(count, int), 20)
  assert mean[0] == pytest.approx(1.8) and np.argmin(mean) == 0
  for query, expected in ((1, [0]), (2, [0, 25])):
    picks = typiclust.typiclust_picks(mesh, points, no_labels, ~no_labels, jax.random.key(0),
                                      query, max_clusters=500, neighbours=20, iterations=10)
    assert picks.tolist() == expected
  # With a label in the big cluster, the small one is the uncovered one.
  labeled = no_labels.copy()
  labeled[3] = True
  picks = typiclust.typiclust_picks(mesh, points, labeled, ~labeled, jax.random.key(0), 1,
                                    max_clusters=500, neighbours=20, iterations=10)
  assert picks.tolist() == [25]


def test_typical_picks_rules_by_hand():
  # Clusters: 0 (6 points, one labeled), 1 (5 points), 2 (3 points: too small).
  assign = np.array([0] * 6 + [1] * 5 + [2] * 3)
  mean = np.array([5.0, 1.0, 2.0, 3.0, 4.0, 6.0,    # cluster 0
                   2.0, 1.0, 3.0, 4.0, 5.0,         # cluster 1
                   0.1, 0.3, 0.2])                  # cluster 2
  labeled = np.zeros(14, bool)
  labeled[1] = True
  picks = typiclust.typical_picks(assign, mean, labeled, ~labeled, 3, query_size=12)
  # 1st: cluster 1 (no label yet) -> 7. 2nd: 0 and 1 have one each, 0 is larger -> 2.
  # Then 1 (one vs two) -> 6, then 0 and 1 alternate, the larger first: 3, 8, 4, 9, 0,
  # 10, 5; cluster 0 is then empty, 1 too: the rest by mean distance from cluster 2.
  assert picks.tolist() == [7, 2, 6, 3, 8, 4, 9, 0, 10, 5, 11, 13]


def test_nearest_other_cluster_and_purity_radius_by_hand(mesh):
  # Clusters A = {0, 1}, B = {3, 7} on a line: the nearest point of the other cluster
  # is at 3, 2, 2, 6, so squared 9, 4, 4, 36.
  points = [[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]]
  other = probcover.nearest_other_cluster_sq(mesh, _rows(mesh, points, 8),
                                             np.array([0, 0, 1, 1]), block=8)
  np.testing.assert_allclose(other, [9.0, 4.0, 4.0, 36.0], rtol=1e-6)
  # alpha = 0.75: j = floor(0.25 * 4) = 1 -> delta^2 = 4 (delta 2): a ball pure iff
  # delta <= d_x, all four (any larger delta loses points 1 and 2: 2/4 < 0.75).
  assert probcover.purity_radius_sq(other, 0.75) == pytest.approx(4.0)
  # alpha = 0.5: j = 2 -> delta^2 = 9 (delta 3): pure for d_x = 3 and 6, 2/4 = 0.5.
  assert probcover.purity_radius_sq(other, 0.5) == pytest.approx(9.0)
  assert probcover.purity_radius_sq(other, 1.0) == pytest.approx(4.0)     # j = 0
  # (1 - 0.9) * 10 is 0.99999... in floats: still j = 1.
  assert probcover.purity_radius_sq(np.arange(10.0), 0.9) == 1.0


def _coverage_case(mesh, radius):
  rng = np.random.default_rng(4)
  points, _ = _blobs(rng, (90, 60, 80, 70), dims=6, spread=1.0, distance=3.0)
  points /= np.linalg.norm(points, axis=1, keepdims=True)
  count = len(points)
  rows = _rows(mesh, points, 16)
  if radius:
    radius_sq, assign, impure = radius ** 2, np.zeros(count, np.int32), np.ones(count, bool)
  else:
    assign, _ = clustering.kmeans(mesh, rows, count, jax.random.key(0), k=4, iterations=10)
    other = probcover.nearest_other_cluster_sq(mesh, rows, assign, block=16)
    radius_sq = probcover.purity_radius_sq(other, 0.9)
    impure = other < radius_sq
  labeled = np.zeros(count, bool)
  labeled[rng.choice(count, 15, replace=False)] = True
  tiles = probcover.CoverageTiles(mesh, rows, assign, impure, labeled, radius_sq, block=16)
  return points, radius_sq, labeled, tiles


@pytest.mark.parametrize("radius", [0.0, 0.3])
def test_coverage_counts_equal_brute_force(mesh, radius):
  points, radius_sq, labeled, tiles = _coverage_case(mesh, radius)
  within = ((points[:, None] - points[None]) ** 2).sum(-1) < radius_sq
  covered = tiles.count_in_balls(labeled) > 0
  np.testing.assert_array_equal(covered, within[:, labeled].any(1))
  np.testing.assert_array_equal(tiles.count_in_balls(~covered), within[:, ~covered].sum(1))
  if not radius:   # The automatic radius skips tiles: fewer than all 19 x 20 / 2.
    needed = tiles.needed(tiles.ordered(~covered, False))
    assert np.triu(needed | needed.T).sum() < 19 * 20 // 2


def test_greedy_cover_equals_the_eager_greedy(mesh):
  """The lazy greedy (small batches: many rounds) picks what recounting every
  candidate after every pick does."""
  points, radius_sq, labeled, tiles = _coverage_case(mesh, 0.5)
  count = len(points)
  covered = tiles.count_in_balls(labeled) > 0
  counts = tiles.count_in_balls(~covered)
  within = ((points[:, None] - points[None]) ** 2).sum(-1) < radius_sq
  expected, open_, now = [], ~labeled, covered.copy()
  while True:
    gain = np.where(open_, (within & ~now[None]).sum(1), -1)
    if gain.max() <= 0:
      break
    j = int(np.argmax(gain))                        # ties: the lower index
    expected.append(j)
    open_[j] = False
    now |= within[j]
  k = len(expected) + 10
  assert 10 < k < count - labeled.sum()
  rows = tiles.points[np.argsort(tiles.order)]      # back in pool order
  uncovered = np.flatnonzero(~covered)
  targets = clustering.gather_rows(mesh, rows, uncovered, block=64)
  length = tiles.points.shape[0]
  picks = probcover.greedy_cover(
      clustering.gather_rows(mesh, rows, np.arange(count), block=16), targets,
      np.int32(len(uncovered)), np.pad(counts, (0, length - count)),
      np.pad(~labeled, (0, length - count)), np.float32(radius_sq), jax.random.key(1),
      count=count, k=k, batch=4)
  picks = np.asarray(picks)
  assert picks[:len(expected)].tolist() == expected
  # Then random selectable points: distinct, never labeled, never padding.
  assert len(set(picks.tolist())) == k and not labeled[picks].any() and picks.max() < count


def test_probcover_covers_two_separated_clusters_with_two_picks(mesh):
  rng = np.random.default_rng(5)
  points, blob = _blobs(rng, (40, 25), dims=4, spread=0.05, distance=1.0)
  no_labels = np.zeros(len(points), bool)
  for radius in (0.0, 0.5):   # automatic (purity against 2 k-means clusters) and given
    picks = probcover.probcover_picks(mesh, points, no_labels, ~no_labels, jax.random.key(0),
                                      2, radius=radius, purity=0.95, clusters=2,
                                      iterations=10)
    assert sorted(blob[picks].tolist()) == [0, 1]


def test_probcover_fills_with_random_selectable_points_once_all_is_covered(mesh):
  rng = np.random.default_rng(6)
  points, blob = _blobs(rng, (40, 25), dims=4, spread=0.05, distance=1.0)
  labeled = np.zeros(len(points), bool)
  labeled[[0, 45]] = True                           # one label in each blob: all covered
  selectable = ~labeled
  selectable[50:] = False
  picks = probcover.probcover_picks(mesh, points, labeled, selectable, jax.random.key(0), 20,
                                    radius=0.5, purity=0.95, clusters=2, iterations=10)
  assert len(set(picks.tolist())) == 20 and selectable[picks].all()
  again = probcover.probcover_picks(mesh, points, labeled, selectable, jax.random.key(1), 20,
                                    radius=0.5, purity=0.95, clusters=2, iterations=10)
  assert sorted(again.tolist()) != sorted(picks.tolist())        # drawn from the key


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_strategy_picks_distinct_unlabeled_real_examples(mesh, name):
  from waal_jax import data  # pylint: disable=g-import-not-at-top
  spec = data.get_spec("fashion_mnist")
  rng = np.random.default_rng(7)
  images = rng.integers(0, 256, (300, 28, 28, 1)).astype(np.uint8)
  pool = strategies.scoring_pool(mesh, images, 128)            # padded to 384
  assert pool.padded_count > pool.count
  is_labeled = np.zeros(300, bool)
  is_labeled[rng.choice(300, 30, replace=False)] = True
  query = make_settings(query__strategy=name, query__batch_size=128,
                        query__kmeans_iterations=5).query
  nets = make_nets()
  variables = nets.init(jax.random.key(0), spec.image_shape)
  strategy = strategies.create(nets, spec, query, mesh)
  picks = np.asarray(strategy.select(jax.random.key(1), variables, pool, is_labeled, 40))
  assert len(set(picks.tolist())) == 40
  assert picks.min() >= 0 and picks.max() < 300 and not is_labeled[picks].any()
  again = strategy.select(jax.random.key(1), variables, pool, is_labeled, 40)
  assert np.asarray(again).tolist() == picks.tolist()          # deterministic given the key


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_precomputed_embeddings_replace_the_networks(name, tmp_path):
  """query.embeddings_file: row r embeds the dataset's train example r; each seed's pool
  takes its own examples' rows, and a bad file is refused when the run is built."""
  from conftest import write_synthetic_fashion_mnist  # pylint: disable=g-import-not-at-top
  from experiments.configs import fashion_mnist  # pylint: disable=g-import-not-at-top
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  cache = write_synthetic_fashion_mnist(str(tmp_path / "cache"))       # 1,200 train images
  rows = np.random.default_rng(0).normal(size=(1200, 6)).astype(np.float32)
  path = str(tmp_path / "embeddings.npy")
  np.save(path, rows)

  def config(file, seed=0):
    c = fashion_mnist.get_config()
    c.data.cache_dir, c.data.pool_size, c.data.val_size, c.seed = cache, 400, 100, seed
    c.al.initial_labeled, c.al.query_size, c.al.rounds = 40, 20, 1
    c.query.strategy, c.query.batch_size, c.query.embeddings_file = name, 128, file
    return c

  for seed in (0, 1):
    exp = loop.build(config(path, seed), log=lambda _: None)
    variables = exp.trainer.nets.init(jax.random.key(0), exp.splits.spec.image_shape)
    points = np.asarray(exp.strategy.pool_points(variables, exp.pool))[:400]
    np.testing.assert_array_equal(points, rows[exp.splits.pool_source])
    is_labeled = np.zeros(400, bool)
    is_labeled[:40] = True
    picks = np.asarray(exp.strategy.select(jax.random.key(1), variables, exp.pool,
                                           is_labeled, 20))
    assert len(set(picks.tolist())) == 20 and picks.min() >= 40 and picks.max() < 400

  np.save(str(tmp_path / "short.npy"), rows[:100])
  np.save(str(tmp_path / "nan.npy"), np.full((1200, 6), np.nan, np.float32))
  np.save(str(tmp_path / "flat.npy"), rows[:, 0])
  for file, message in ((str(tmp_path / "missing.npy"), "cannot be read"),
                        (str(tmp_path / "short.npy"), "has 100 rows, but the pool holds"),
                        (str(tmp_path / "nan.npy"), "NaN or infinite"),
                        (str(tmp_path / "flat.npy"), r"of shape \(1200,\)")):
    with pytest.raises(UserError, match=f"query.embeddings_file=.*{message}"):
      loop.build(config(file), log=lambda _: None)
