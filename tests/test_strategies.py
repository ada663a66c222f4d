"""The baseline strategies on hand-made cases whose answers are known."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_nets, make_settings
from waal_jax import sharding
from waal_jax import strategies
from waal_jax.strategies import bald
from waal_jax.strategies import deepfool
from waal_jax.strategies import diversity
from waal_jax.strategies import uncertainty


def _log(p):
  return jnp.log(jnp.asarray(p, jnp.float32))


def _pick(scores, k):
  return strategies.smallest_unlabeled(scores, jnp.zeros(len(scores), bool), k=k).tolist()


def test_least_confidence_and_margin_pick_the_hand_computed_examples():
  probs = [[0.50, 0.30, 0.20],    # top 0.50, margin 0.20
           [0.45, 0.44, 0.11],    # top 0.45, margin 0.01
           [0.40, 0.30, 0.30],    # top 0.40, margin 0.10
           [0.90, 0.05, 0.05]]    # top 0.90, margin 0.85
  confidence = uncertainty.least_confidence_scores(_log(probs))
  np.testing.assert_allclose(confidence, [0.5, 0.45, 0.4, 0.9], rtol=1e-6)
  assert _pick(confidence, 2) == [2, 1]
  margin = uncertainty.margin_scores(_log(probs))
  np.testing.assert_allclose(margin, [0.2, 0.01, 0.1, 0.85], atol=1e-6)
  assert _pick(margin, 2) == [1, 2]


def test_entropy_is_maximal_at_uniform():
  rng = np.random.default_rng(0)
  probs = np.concatenate([np.full((1, 4), 0.25), rng.dirichlet(np.ones(4), 300)])
  h = np.asarray(uncertainty.entropy(_log(probs)))
  assert h[0] == pytest.approx(np.log(4), rel=1e-6)
  assert np.all(h[1:] < h[0])
  assert _pick(-h, 1) == [0]


def test_bald_is_zero_without_disagreement_and_positive_with_it():
  same = jnp.stack([_log([[0.7, 0.3], [0.5, 0.5]])] * 10)          # (T, B, K)
  np.testing.assert_allclose(bald.bald_scores(same), [0.0, 0.0], atol=1e-6)
  # Two passes that disagree completely: H(mean) = log 2, mean H = 0 -> log 2.
  disagree = jnp.stack([_log([[1 - 1e-7, 1e-7]]), _log([[1e-7, 1 - 1e-7]])])
  assert bald.bald_scores(disagree)[0] == pytest.approx(np.log(2), abs=1e-4)


def test_dbal_strategy_without_dropout_scores_zero():
  spec = _fashion_spec()
  mesh = sharding.make_mesh()
  images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)).astype(np.uint8)
  pool = strategies.scoring_pool(mesh, images, 32)
  query = make_settings(query__strategy="dbal", query__batch_size=32).query
  bald_of = {}
  for head, extractor in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5)):
    nets = make_nets(model__dropout=head, model__extractor_dropout=extractor)
    variables = nets.init(jax.random.key(0), spec.image_shape)
    strategy = strategies.create(nets, spec, query, mesh)
    bald_of[head, extractor] = -np.asarray(strategy.scorer(variables, pool, jax.random.key(1)))
  np.testing.assert_allclose(bald_of[0.0, 0.0], 0.0, atol=1e-6)
  # MC dropout samples the head's dropout and the extractor's channel dropout alike.
  assert np.all(bald_of[0.5, 0.0] > 1e-7) and np.all(bald_of[0.0, 0.5] > 1e-7)


def test_extractor_dropout_sample_is_a_channel_mask_of_the_eval_features():
  """LeNet-5's channel dropout drawn on evaluation features equals the training-mode
  extractor: each of the 20 channels of the (4, 4, 20) features is zeroed or doubled."""
  nets = make_nets()
  variables = nets.init(jax.random.key(0), (28, 28, 1))
  x = jax.random.normal(jax.random.key(1), (6, 28, 28, 1))
  z, _ = nets.embed(variables["params"], {}, x)
  for sample in (nets.extractor.sample_output_dropout(z, jax.random.key(2)),
                 nets.embed(variables["params"], {}, x, train=True,
                            dropout_key=jax.random.key(3))[0]):
    ratio = np.asarray(sample).reshape(6, 16, 20) / np.where(z == 0, 1.0, z).reshape(6, 16, 20)
    live = np.asarray(z).reshape(6, 16, 20) != 0
    for example in range(6):
      for channel in range(20):
        values = set(np.round(ratio[example, live[example, :, channel], channel], 5))
        assert values <= {0.0} or values <= {2.0}, (example, channel, values)
    dropped = np.all(np.asarray(sample).reshape(6, 16, 20) == 0, axis=1)
    assert 0.2 < dropped.mean() < 0.8       # about half the channels, rate 0.5


def _fashion_spec():
  from waal_jax import data  # pylint: disable=g-import-not-at-top
  return data.get_spec("fashion_mnist")


def test_k_center_picks_the_point_farthest_from_the_labeled_set_first():
  points = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [10.0, 10.0], [9.0, 10.0],
                      [-3.0, 0.0]])
  labeled = np.array([0])
  min_sq = diversity.min_sq_distances_to(points, labeled, chunk=4)
  np.testing.assert_allclose(min_sq, [0, 1, 4, 200, 181, 9])
  selectable = jnp.array([False, True, True, True, True, True])
  picks = diversity.k_center_greedy(points, min_sq, selectable, k=3).tolist()
  # First the farthest (10, 10); then (-3, 0) at 9 beats (9, 10) now at 1 from the pick.
  assert picks == [3, 5, 2]


def test_k_center_chunked_equals_unchunked():
  rng = np.random.default_rng(0)
  points = jnp.asarray(rng.normal(size=(500, 16)), jnp.float32)
  labeled = rng.choice(500, 70, replace=False)
  selectable = np.ones(500, bool)
  selectable[labeled] = False
  whole = diversity.min_sq_distances_to(points, labeled, chunk=70)
  picks = diversity.k_center_greedy(points, whole, jnp.asarray(selectable), k=25).tolist()
  assert len(set(picks)) == 25 and not set(picks) & set(labeled.tolist())
  for chunk in (1, 16, 64):
    chunked = diversity.min_sq_distances_to(points, labeled, chunk=chunk)
    # Equal up to float rounding (the matrix products have other shapes) ...
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-4)
    # ... and the same selection.
    assert diversity.k_center_greedy(points, chunked, jnp.asarray(selectable),
                                     k=25).tolist() == picks
  # And the brute-force definition.
  brute = ((np.asarray(points)[:, None] - np.asarray(points)[labeled][None]) ** 2).sum(-1).min(1)
  np.testing.assert_allclose(whole, brute, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool", ["gaussian", "ties", "nothing_labeled"])
@pytest.mark.parametrize("candidates", [1, 7, 64])
def test_lazy_k_center_picks_what_the_eager_greedy_picks(pool, candidates):
  """The lazy greedy measures a few candidates per pick; it must pick exactly as the
  eager one, ties (exact duplicates, at the lowest index) and an empty labeled set
  included. One candidate at a time makes it stop and go on as often as it can."""
  rng = np.random.default_rng(candidates)
  points = rng.normal(size=(1200, 12)).astype(np.float32)
  if pool == "ties":     # every point three times: equal distances everywhere
    points = np.repeat(points[:400], 3, axis=0)
  labeled = np.array([], np.int64) if pool == "nothing_labeled" else rng.choice(1200, 90,
                                                                                replace=False)
  selectable = np.ones(1200, bool)
  selectable[labeled] = False
  points, selectable = jnp.asarray(points), jnp.asarray(selectable)
  min_sq = diversity.min_sq_distances_to(points, labeled, chunk=32)
  # 150 picks: rows are measured against picks from three chunks of _PICK_CHUNK (64).
  eager = diversity.k_center_greedy_eager(points, min_sq, selectable, k=150).tolist()
  lazy = diversity.k_center_greedy_lazy(points, min_sq, selectable, k=150,
                                        candidates=candidates).tolist()
  assert lazy == eager and len(set(eager)) == 150
  if pool == "ties":     # of equally far copies the first; the others are then at 0
    assert all(p % 3 == 0 for p in eager)


def test_lazy_k_center_measures_distances_bit_for_bit_as_the_eager_one():
  """Same picks at any pool size need the same float32 distances: the lazy greedy's
  (a block of rows against the picks) must equal the eager one's (the whole pool
  against one pick) to the bit, here at LeNet-5's embedding width."""
  rng = np.random.default_rng(5)
  points = jnp.asarray(rng.normal(0, 2, (4096, 320)).astype(np.float32))
  picks = jnp.asarray([17, 900, 3000])
  centers = jnp.zeros((8, 320), jnp.float32).at[:3].set(points[picks])
  rows = jnp.asarray(rng.choice(4096, 256, replace=False))
  lazy = jax.jit(diversity._min_sq_to_centers)(points[rows], centers, jnp.arange(8) < 3)
  eager = functools.reduce(jnp.minimum, [
      jax.jit(diversity._sq_distances)(points, points[p][None, :])[rows] for p in picks])
  assert np.array_equal(np.asarray(lazy), np.asarray(eager))
  # And chunk by chunk of picks (150 picks: three chunks), from a bound that holds the
  # first 70 picks' distances already, as the greedy measures a row again.
  picks = jnp.asarray(rng.choice(4096, 150, replace=False))
  centers = jnp.zeros((192, 320), jnp.float32).at[:150].set(points[picks])
  each = jnp.stack([jax.jit(diversity._sq_distances)(points, points[p][None, :])[rows]
                    for p in picks.tolist()])
  bound = jnp.min(each[:70], axis=0)
  lazy = jax.jit(diversity._min_sq_to_picks)(points[rows], bound, centers, 70, 150)
  assert np.array_equal(np.asarray(lazy), np.asarray(jnp.min(each, axis=0)))


def _k_center_in_float64(points, labeled, k):
  """Greedy k-center by its definition, every distance in float64."""
  p = np.asarray(points, np.float64)
  min_sq = ((p[:, None, :] - p[None, labeled, :]) ** 2).sum(-1).min(1)
  available = np.ones(len(p), bool)
  available[labeled] = False
  picks = []
  for _ in range(k):
    j = int(np.argmax(np.where(available, min_sq, -1.0)))
    picks.append(j)
    available[j] = False
    min_sq = np.minimum(min_sq, ((p - p[j]) ** 2).sum(-1))
  return picks


@pytest.mark.parametrize("copies", [8, 40])
def test_k_center_orders_near_duplicates_as_float64_does(copies):
  """Bases of norm ~57 (D = 32, scale 10), each copied with 1e-3 jitter: the copies are
  ~6e-5 apart in squared distance, below |x|^2 + |y|^2 - 2 x.y's float32 rounding
  (one rounding of |x|^2 + |y|^2 = 6,400 is 8e-4). Half the pool labeled, so most points have 4 (copies=8) or 20
  (copies=40) labeled near-duplicates. The picks must be float64's."""
  rng = np.random.default_rng(copies)
  bases = rng.normal(0, 10, (2400 // copies, 32))
  points = (bases[:, None, :] + rng.normal(0, 1e-3, (len(bases), copies, 32))).reshape(-1, 32)
  points = points.astype(np.float32)
  labeled = rng.choice(len(points), len(points) // 2, replace=False)
  selectable = np.ones(len(points), bool)
  selectable[labeled] = False
  min_sq = diversity.min_sq_distances_to(jnp.asarray(points), labeled, chunk=256)
  reference = _k_center_in_float64(points, labeled, 50)
  # The eager reference and the lazy greedy (k_center_greedy's default, and a few rows
  # a round) must all pick as float64 does.
  eager = diversity.k_center_greedy_eager(jnp.asarray(points), min_sq, jnp.asarray(selectable),
                                          k=50)
  assert np.asarray(eager).tolist() == reference
  picks = diversity.k_center_greedy(jnp.asarray(points), min_sq, jnp.asarray(selectable), k=50)
  assert np.asarray(picks).tolist() == reference
  lazy = diversity.k_center_greedy_lazy(jnp.asarray(points), min_sq, jnp.asarray(selectable),
                                        k=50, candidates=16)
  assert np.asarray(lazy).tolist() == reference
  # The product alone would not do: greedy on its float32 distances picks otherwise.
  sq = np.sum(points * points, axis=-1)
  min_sq = (sq[:, None] + sq[labeled][None] - 2.0 * points @ points[labeled].T).min(axis=1)
  available, by_product = selectable.copy(), []
  for _ in range(50):
    j = int(np.argmax(np.where(available, min_sq, -1.0)))
    by_product.append(j)
    available[j] = False
    min_sq = np.minimum(min_sq, sq + sq[j] - 2.0 * points @ points[j])
  assert by_product != _k_center_in_float64(points, labeled, 50)


def test_k_median_centers_land_in_each_of_two_separated_clusters():
  rng = np.random.default_rng(0)
  left = rng.normal(-10.0, 1.0, (300, 8))
  right = rng.normal(10.0, 1.0, (212, 8))
  points = np.concatenate([left, right]).astype(np.float32)
  mesh = sharding.make_mesh()
  selectable = np.ones(512, bool)
  # Start both centers in the left cluster: the iterations must move one right.
  centers = points[[0, 1]]
  for _ in range(10):
    assign, _ = diversity.l1_assign(mesh, jnp.asarray(points), jnp.asarray(centers))
    centers = diversity.coordinate_medians(points, np.asarray(assign), selectable, centers)
  centers = np.sort(centers[:, 0])
  assert centers[0] < -8 and centers[1] > 8
  picks = diversity.k_median(mesh, jnp.asarray(points), jnp.asarray(selectable),
                             jax.random.key(0), k=2, iterations=10)
  assert sorted(int(p) < 300 for p in picks) == [False, True]   # one example from each


def test_l1_assignment_and_medians_match_numpy():
  rng = np.random.default_rng(1)
  points = rng.normal(size=(256, 5)).astype(np.float32)
  centers = points[:4]
  mesh = sharding.make_mesh()
  assign, dist = diversity.l1_assign(mesh, jnp.asarray(points), jnp.asarray(centers))
  l1 = np.abs(points[:, None] - centers[None]).sum(-1)
  np.testing.assert_array_equal(assign, l1.argmin(1))
  np.testing.assert_allclose(dist, l1.min(1), rtol=1e-5)
  valid = np.ones(256, bool)
  valid[-6:] = False
  previous = np.full((5, 5), 7.0, np.float32)     # cluster 4 has no members: kept
  medians = diversity.coordinate_medians(points, np.asarray(assign), valid, previous)
  for c in range(4):
    members = np.sort(points[(np.asarray(assign) == c) & valid], axis=0)
    np.testing.assert_array_equal(medians[c], members[(len(members) - 1) // 2])
  np.testing.assert_array_equal(medians[4], previous[4])
  # Hand-computed: members 1, 5, 2, 9 -> lower median 2 (the 2nd of 1 2 5 9).
  four = np.array([[1.0], [5.0], [2.0], [9.0], [100.0]], np.float32)
  assert diversity.coordinate_medians(four, np.zeros(5, int), np.arange(5) < 4,
                                      np.zeros((1, 1)))[0, 0] == 2.0


def test_medians_with_many_equal_values_and_255_clusters():
  # ReLU embeddings are mostly zeros; 255 clusters put the ids and the "no cluster"
  # id 255 in one byte. Cluster 0: 0, 0, 3, 0, 5, 0 -> sorted 0 0 0 0 3 5, lower
  # median (rank 2) 0; cluster 254: 4, 7, 0 -> 0 4 7, median 4; the invalid row's
  # 100 counts nowhere; the other clusters are empty and keep their previous centers.
  values = np.array([0, 0, 3, 0, 5, 0, 4, 7, 0, 100], np.float32)[:, None]
  assign = np.array([0, 0, 0, 0, 0, 0, 254, 254, 254, 254])
  valid = np.arange(10) < 9
  previous = np.full((255, 1), -1.0, np.float32)
  medians = diversity.coordinate_medians(values, assign, valid, previous)
  assert medians[0, 0] == 0.0 and medians[254, 0] == 4.0
  np.testing.assert_array_equal(medians[1:254], previous[1:254])


def test_medians_where_the_os_does_not_say_which_cores_the_process_may_use(monkeypatch):
  # macOS has no os.sched_getaffinity: the medians use os.cpu_count() threads there.
  monkeypatch.delattr(os, "sched_getaffinity", raising=False)
  values = np.arange(40, dtype=np.float32)[:, None]          # cluster c: 4c .. 4c + 3
  assign = np.arange(40) // 4
  medians = diversity.coordinate_medians(values, assign, np.ones(40, bool),
                                         np.zeros((10, 1), np.float32))
  np.testing.assert_array_equal(medians[:, 0], 4 * np.arange(10) + 1)   # lower median


def test_nearest_members_fill_empty_clusters_with_distinct_points():
  assign = jnp.array([0, 0, 2, 2, 2, 0])        # cluster 1 is empty
  dist = jnp.array([3.0, 1.0, 5.0, 0.5, 9.0, 2.0])
  picks = diversity.nearest_members(assign, dist, jnp.ones(6, bool), k=3).tolist()
  assert picks[:2] == [1, 3]                    # the nearest member of clusters 0 and 2
  assert picks[2] == 4                          # then the farthest of the rest
  assert len(set(picks)) == 3


def test_deepfool_on_a_linear_classifier_is_the_exact_distance():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(6, 2)).astype(np.float32)
  b = rng.normal(size=2).astype(np.float32)
  x = rng.normal(size=(40, 6)).astype(np.float32)
  logits_fn = lambda v: v @ w + b
  distances = deepfool.deepfool_distances(logits_fn, jnp.asarray(x), iterations=5,
                                          overshoot=0.02)
  f = x @ w + b
  expected = np.abs(f[:, 1] - f[:, 0]) / np.linalg.norm(w[:, 1] - w[:, 0])
  np.testing.assert_allclose(distances, expected, atol=1e-4)


def test_deepfool_multiclass_linear_finds_the_nearest_boundary():
  # Three classes, linear: the distance is the smallest over the other classes k of
  # |f_k - f_label| / ||w_k - w_label|| (one step, exact).
  rng = np.random.default_rng(1)
  w = rng.normal(size=(5, 3)).astype(np.float32)
  x = rng.normal(size=(30, 5)).astype(np.float32)
  logits_fn = lambda v: v @ w
  distances = deepfool.deepfool_distances(logits_fn, jnp.asarray(x), iterations=5,
                                          overshoot=0.02)
  f = x @ w
  label = f.argmax(1)
  expected = []
  for i in range(30):
    others = [k for k in range(3) if k != label[i]]
    expected.append(min(abs(f[i, k] - f[i, label[i]]) / np.linalg.norm(w[:, k] - w[:, label[i]])
                        for k in others))
  np.testing.assert_allclose(distances, expected, atol=1e-4)


def test_deepfool_searches_every_class_by_default():
  """The nearest boundary can belong to the class of smallest logit. At x = 0 the
  logits are b = (3, 2, 1, 0), label 0; the boundaries with classes 1, 2 and 3 lie at
  |b_k - b_0| / ||w_k - w_0|| = 1/0.1 = 10, 2/0.2 = 10 and 3/30 = 0.1."""
  w = jnp.array([[0.0, 0.1, 0.0, -30.0], [0.0, 0.0, 0.2, 0.0]])     # (2 inputs, 4 classes)
  b = jnp.array([3.0, 2.0, 1.0, 0.0])
  logits_fn = lambda v: v @ w + b
  x0 = jnp.zeros((1, 2))
  everything = deepfool.deepfool_distances(logits_fn, x0, iterations=5, overshoot=0.02)
  assert float(everything[0]) == pytest.approx(0.1, rel=1e-4)
  # Limited to the label and the two classes of largest logit, it misses class 3.
  limited = deepfool.deepfool_distances(logits_fn, x0, iterations=5, overshoot=0.02,
                                        classes=3)
  assert float(limited[0]) == pytest.approx(10.0, rel=1e-4)


def test_deepfool_last_class_boundary_is_the_deepal_2018_behaviour():
  """DeepAL's DeepFool before its 2022 fix moved towards the last class other than the
  prediction, not the nearest one. Two inputs, three classes, logits x @ w + b, x = 0.
  First case: label 0; class 1's boundary is at |0.5 - 1| / ||(1, 0)|| = 0.5, class
  2's at |0 - 1| / ||(0, 1)|| = 1. Second: label 2, the last class, so the move goes
  to class 1 (|0 - 1| / ||(0, 1)|| = 1) though class 0's is nearer (|0.5 - 1| / 1)."""
  cases = (([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [1.0, 0.5, 0.0]),
           ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [0.5, 0.0, 1.0]))
  for w, b in cases:
    logits_fn = lambda v, w=jnp.asarray(w), b=jnp.asarray(b): v @ w + b
    x0 = jnp.zeros((1, 2))
    found = {kind: float(deepfool.deepfool_distances(
        logits_fn, x0, iterations=5, overshoot=0.02, boundary=kind)[0])
             for kind in ("nearest", "last_class")}
    assert found["nearest"] == pytest.approx(0.5, rel=1e-4)
    assert found["last_class"] == pytest.approx(1.0, rel=1e-4)
