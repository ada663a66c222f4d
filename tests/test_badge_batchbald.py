"""BADGE and BatchBALD on hand-made cases whose answers are known."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_nets, make_settings
from waal_jax import data
from waal_jax import models
from waal_jax import sharding
from waal_jax import strategies
from waal_jax.errors import UserError
from waal_jax.strategies import badge
from waal_jax.strategies import bald
from waal_jax.strategies import batchbald


def _pool(n=64, seed=0):
  images = np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1)).astype(np.uint8)
  return images, strategies.scoring_pool(sharding.make_mesh(), images, 32)


@pytest.fixture(scope="module")
def lenet():
  """LeNet-5 with head dropout (XLA's convolutions: the same network, compiled faster)
  and random variables of its shapes, uniform in +-1/sqrt(fan in) like PyTorch's
  initialisation (nets.init itself would compile for seconds)."""
  nets = make_nets(model__dropout=0.5, model__conv="xla")
  shapes = jax.eval_shape(lambda key: nets.init(key, (28, 28, 1)), jax.random.key(0))
  rng = np.random.default_rng(0)
  fill = lambda s: (rng.uniform(-1.0, 1.0, s.shape)
                    / np.sqrt(np.prod(s.shape[:-1]) if len(s.shape) > 1 else s.shape[0]))
  return nets, jax.tree.map(lambda s: jnp.asarray(fill(s), jnp.float32), shapes)


def _strategy(name, nets, **query):
  fields = {f"query__{k}": v for k, v in query.items()}
  settings = make_settings(query__strategy=name, query__batch_size=32, **fields)
  return strategies.create(nets, data.get_spec("fashion_mnist"), settings.query,
                           sharding.make_mesh())


# --- BADGE --------------------------------------------------------------------------


def test_gradient_factor_is_p_minus_the_predicted_one_hot():
  a = badge.gradient_factors(jnp.log(jnp.array([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]])))
  np.testing.assert_allclose(a, [[-0.3, 0.2, 0.1], [0.25, -0.5, 0.25]], atol=1e-6)


def test_factorised_sq_distances_equal_the_materialised_embeddings():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(7, 3)).astype(np.float32)
  h = rng.normal(size=(7, 5)).astype(np.float32)
  g = np.stack([np.kron(a[i], h[i]) for i in range(7)])              # (7, 15)
  norms = badge.sq_norms(jnp.asarray(a), jnp.asarray(h))
  np.testing.assert_allclose(norms, (g * g).sum(1), rtol=1e-5)
  for j in range(7):
    d2 = badge.sq_distances_to(jnp.asarray(a), jnp.asarray(h), norms, j)
    np.testing.assert_allclose(d2, ((g - g[j]) ** 2).sum(1), rtol=1e-4, atol=1e-4)


def test_last_layer_input_gives_the_logits_through_the_last_dense(lenet):
  """h = relu(z @ Dense_0 + bias) and logits = h @ Dense_1 + bias, for LeNet-5's head
  (320 -> 50 -> 10) and a VGG-width one (512 -> 9 -> 4, parameters made by hand)."""
  nets, variables = lenet
  rng = np.random.default_rng(0)
  dense = lambda n_in, n_out: {"kernel": rng.normal(size=(n_in, n_out)).astype(np.float32),
                               "bias": rng.normal(size=n_out).astype(np.float32)}
  vgg_params = {"classifier": {"Dense_0": dense(512, 9), "Dense_1": dense(9, 4)}}
  for n, params, width in ((nets, variables["params"], 320),
                           (models.Model(models.MLPExtractor(), models.MLPHead(9, 4)), vgg_params, 512)):
    z = rng.normal(size=(4, width)).astype(np.float32)
    first, last = params["classifier"]["Dense_0"], params["classifier"]["Dense_1"]
    h = np.asarray(n.last_layer_input(params, jnp.asarray(z)))
    np.testing.assert_allclose(h, np.maximum(z @ first["kernel"] + first["bias"], 0.0),
                               rtol=1e-5, atol=1e-5)
    assert np.any(h == 0) and np.any(h > 0)
    np.testing.assert_allclose(h @ last["kernel"] + last["bias"], n.logits(params, z),
                               rtol=1e-5, atol=1e-4)


def test_badge_first_pick_is_the_largest_unlabeled_gradient():
  # ||g||^2 = ||a||^2 ||h||^2 = 0.5 * 1, 0.02 * 4, 0.18 * 4, 0.32 * 9 = 0.5, 0.08, 0.72, 2.88.
  a = jnp.array([[0.5, -0.5], [0.1, -0.1], [0.3, -0.3], [0.4, -0.4]])
  h = jnp.array([[1.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 3.0]])
  np.testing.assert_allclose(badge.sq_norms(a, h), [0.5, 0.08, 0.72, 2.88], rtol=1e-6)
  everything = jnp.ones(4, bool)
  assert int(badge.kmeans_pp_seeds(a, h, everything, jax.random.key(0), k=1)[0]) == 3
  third_labeled = everything.at[3].set(False)
  picks = badge.kmeans_pp_seeds(a, h, third_labeled, jax.random.key(0), k=3).tolist()
  assert picks[0] == 2 and sorted(picks) == [0, 1, 2]


def test_badge_picks_are_distinct_and_never_labeled_even_among_duplicates():
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(50, 4)), jnp.float32)
  h = jnp.asarray(rng.normal(size=(50, 6)), jnp.float32)
  selectable = jnp.asarray(rng.random(50) > 0.3)
  for key in range(3):
    picks = badge.kmeans_pp_seeds(a, h, selectable, jax.random.key(key), k=20).tolist()
    assert len(set(picks)) == 20 and all(selectable[i] for i in picks)
  # Every gradient the same: all distances 0 after the first pick, drawn uniformly then.
  same = badge.kmeans_pp_seeds(jnp.ones((10, 2)), jnp.ones((10, 3)), jnp.ones(10, bool),
                               jax.random.key(0), k=10).tolist()
  assert sorted(same) == list(range(10))


def test_badge_gives_each_of_two_tight_clusters_one_pick():
  """Equal norms (||a||^2 ||h||^2 = 0.5 * 100), clusters 10 apart (squared distance
  100) and 1e-3 wide (squared distances ~1e-6 within): D^2 sampling leaves the first
  pick's cluster with probability 1 - ~1e-7."""
  rng = np.random.default_rng(0)
  noise = rng.normal(0.0, 1e-3, (40, 2))
  a = np.tile([0.5, -0.5], (40, 1))
  h = np.concatenate([np.tile([10.0, 0.0], (20, 1)), np.tile([0.0, 10.0], (20, 1))]) + noise
  for key in range(5):
    picks = badge.kmeans_pp_seeds(jnp.asarray(a, jnp.float32), jnp.asarray(h, jnp.float32),
                                  jnp.ones(40, bool), jax.random.key(key), k=2).tolist()
    assert sorted(p < 20 for p in picks) == [False, True], (key, picks)


def test_badge_strategy_starts_from_the_network_s_largest_gradient(lenet):
  nets, variables = lenet
  images, pool = _pool()
  is_labeled = np.zeros(64, bool)
  is_labeled[::5] = True
  picks = np.asarray(_strategy("badge", nets).select(jax.random.key(1), variables, pool,
                                                     is_labeled, 8))
  assert len(set(picks.tolist())) == 8 and not np.any(is_labeled[picks])
  x = data.normalize(jnp.asarray(images), data.get_spec("fashion_mnist"))
  z, _ = nets.embed(variables["params"], {}, x)
  probs = np.asarray(jax.nn.softmax(nets.logits(variables["params"], z)))
  h = np.asarray(nets.last_layer_input(variables["params"], z))
  a = probs - np.eye(10)[probs.argmax(1)]
  norms = np.where(is_labeled, -1.0, (a * a).sum(1) * (h * h).sum(1))
  assert picks[0] == norms.argmax()


# --- BatchBALD ----------------------------------------------------------------------


def _brute_force_joint_entropy(probs, indices):
  """H(y_indices) from every label configuration: p(config) = mean_t prod_i p_i(y_i|t)."""
  probs = np.asarray(probs, np.float64)
  h = 0.0
  for config in itertools.product(range(probs.shape[-1]), repeat=len(indices)):
    p = np.mean(np.prod([probs[i][:, c] for i, c in zip(indices, config)], axis=0))
    h -= p * np.log(p) if p > 0 else 0.0
  return h


def _dirichlet_probs(n, samples, classes, seed):
  return np.random.default_rng(seed).dirichlet(np.full(classes, 0.7), (n, samples)).astype(
      np.float32)


def _state_after(chosen, configurations, key):
  state = batchbald.initial_state(chosen.shape[1], configurations)
  chosen_log_probs = jnp.log(jnp.asarray(chosen))
  for i in range(len(chosen)):
    state = batchbald.extend(state, chosen_log_probs, i + 1, jax.random.fold_in(key, i))
  return state


def test_exact_information_equals_brute_force_enumeration():
  """5 picks of 3 classes: at most 3^4 = 81 configurations, all kept in S = 256 rows, so
  the greedy's I(y_1..y_n; w) after each pick is exact."""
  probs = _dirichlet_probs(12, 5, 3, seed=0)
  picks, information = batchbald.batchbald_greedy(jnp.log(probs), jnp.ones(12, bool),
                                                  jax.random.key(0), k=5, configurations=256)
  conditional = -np.sum(probs * np.log(probs), -1).mean(-1)
  picks = picks.tolist()
  assert len(set(picks)) == 5
  for n in range(1, 6):
    mi = _brute_force_joint_entropy(probs, picks[:n]) - conditional[picks[:n]].sum()
    assert float(information[n - 1]) == pytest.approx(mi, rel=1e-5, abs=1e-5)


def test_sampled_joint_entropy_agrees_with_the_exact_one():
  """8 chosen examples of 3 classes: 6561 configurations, all kept with S = 8192, 2048
  drawn with S = 2048. The estimate is within 0.15 nats of the exact ~8.2 (its spread
  over keys was ~0.03), and the differences between candidates, which decide the pick,
  within 0.03 (spread ~0.01)."""
  probs = _dirichlet_probs(28, 5, 3, seed=1)
  blocks = batchbald.candidate_blocks(jnp.asarray(probs[8:]), 20)
  exact_state = _state_after(probs[:8], 8192, jax.random.key(0))
  sampled_state = _state_after(probs[:8], 2048, jax.random.key(0))
  assert bool(exact_state[3]) and not bool(sampled_state[3])
  exact = np.asarray(batchbald.joint_entropies(exact_state, blocks, 3))
  sampled = np.asarray(batchbald.joint_entropies(sampled_state, blocks, 3))
  np.testing.assert_allclose(sampled, exact, atol=0.15)
  np.testing.assert_allclose(sampled - sampled.mean(), exact - exact.mean(), atol=0.03)
  assert exact[0] == pytest.approx(_brute_force_joint_entropy(probs[:9], range(9)),
                                   rel=1e-5)


def test_sampled_configurations_are_stratified_over_the_draws():
  """T = 4 sure draws: example 1's label is t // 2, example 2's is t % 2 under draw t.
  S = 10 rows: 10 // 4 = 2 per draw (rows 2t, 2t + 1 from draw t, weight 1/8 each), the
  last 2 rows unused (weight 0). Each configuration names its draw: rows one-hot at t,
  p(config) = 1/4."""
  e = 1e-6
  sure_0, sure_1 = [1 - e, e], [e, 1 - e]
  chosen = np.log(np.array([[sure_0, sure_0, sure_1, sure_1],
                            [sure_0, sure_1, sure_0, sure_1]], np.float32))
  rows, log_prob, weight, exact, count = batchbald.sample_configurations(
      jnp.asarray(chosen), 2, jax.random.key(0), 10)
  assert not bool(exact) and int(count) == 10
  np.testing.assert_allclose(weight, [1 / 8] * 8 + [0, 0])
  np.testing.assert_allclose(rows[:8], np.repeat(np.eye(4), 2, axis=0), atol=1e-5)
  np.testing.assert_allclose(log_prob[:8], np.log(0.25), atol=1e-5)


def test_the_sampled_information_stays_at_its_ceiling():
  """T = 4 draws, 400 examples, 60 picks, S = 512: the batch saturates within a few picks,
  so the true I(y_1..y_n; w) stays at most log 4 = 1.386 nats. Configurations drawn
  afresh each pick keep the estimate there (mean over picks 21-60: 1.43); carried over
  from pick to pick, as this code did before, they inherited the greedy choice's bias
  and the estimate climbed to 2.26 (1.77 with another pool)."""
  probs = np.random.default_rng(3).dirichlet(np.full(10, 0.5), (400, 4)).astype(np.float32)
  _, information = batchbald.batchbald_greedy(jnp.log(probs), jnp.ones(400, bool),
                                              jax.random.key(0), k=60, configurations=512)
  assert float(np.mean(information[20:])) == pytest.approx(np.log(4), abs=0.2)


def test_fewer_configurations_than_draws_are_refused(lenet):
  nets, _ = lenet
  with pytest.raises(UserError, match=r"query.batchbald_configurations=8: must be at least "
                                      r"query.mc_samples=10"):
    _strategy("batchbald", nets, mc_samples=10, batchbald_configurations=8)


def test_batchbald_first_pick_and_score_are_bald_s():
  probs = _dirichlet_probs(300, 8, 10, seed=2)
  log_probs = jnp.log(jnp.asarray(probs))
  selectable = jnp.arange(300) % 7 != 0
  scores = bald.bald_scores(jnp.swapaxes(log_probs, 0, 1))
  top = int(jnp.argmax(jnp.where(selectable, scores, -1.0)))
  picks, information = batchbald.batchbald_greedy(log_probs, selectable, jax.random.key(0),
                                                  k=1, configurations=64)
  assert picks.tolist() == [top]
  assert float(information[0]) == pytest.approx(float(scores[top]), rel=1e-5)


def test_batchbald_skips_a_duplicate_that_bald_takes_twice():
  """Example 1 and its copy 3: half the draws say class 0, half class 1 (BALD ~ log 2).
  Example 2 disagrees 0.9/0.1 across the other split of the draws (BALD = log 2 -
  H(0.9) = 0.368). Once 1's label is known the copy's is too (gain ~0), while 2's gain
  stays 0.368: I(y_1, y_2; w) = log 4 - H(0.9) = 1.061."""
  e = 1e-6
  sure_0, sure_1 = [1 - e, e], [e, 1 - e]
  split = [sure_0, sure_0, sure_1, sure_1]                        # (T = 4, C = 2)
  other = [[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]
  probs = np.array([[[0.5, 0.5]] * 4, split, other, split, [[0.7, 0.3]] * 4], np.float32)
  log_probs = jnp.log(jnp.asarray(probs))
  scores = bald.bald_scores(jnp.swapaxes(log_probs, 0, 1))
  assert strategies.smallest_unlabeled(-scores, jnp.zeros(5, bool), k=2).tolist() == [1, 3]
  picks, information = batchbald.batchbald_greedy(log_probs, jnp.ones(5, bool),
                                                  jax.random.key(0), k=3, configurations=64)
  assert picks.tolist()[:2] == [1, 2]
  h9 = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
  np.testing.assert_allclose(information[:2], [np.log(2), np.log(4) - h9], atol=1e-4)


def test_the_exact_picks_come_from_the_whole_pool_not_the_shortlist():
  """The duplicate case above with batchbald_candidates=2: the shortlist is BALD's top
  two, example 1 and its copy 3. Pick 2 is still exact (2 configurations fit in 64),
  so it is the whole pool's best, example 2, not the copy the shortlist holds."""
  e = 1e-6
  sure_0, sure_1 = [1 - e, e], [e, 1 - e]
  split = [sure_0, sure_0, sure_1, sure_1]
  other = [[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]
  probs = np.array([[[0.5, 0.5]] * 4, split, other, split, [[0.7, 0.3]] * 4], np.float32)
  picks, _ = batchbald.batchbald_greedy(jnp.log(jnp.asarray(probs)), jnp.ones(5, bool),
                                        jax.random.key(0), k=2, configurations=64,
                                        candidates=2)
  assert picks.tolist() == [1, 2]


@pytest.mark.parametrize("chosen_count,configurations", [(2, 64), (4, 64)])
def test_branch_and_bound_finds_the_best_of_every_candidate(chosen_count, configurations,
                                                            monkeypatch):
  """400 candidates of 6 classes, T = 5, after 2 picks (36 configurations: exact) and 4
  (sampled): the group bounds are never below a candidate's joint entropy, and
  best_of_all, which evaluates only the candidates whose bound can still win, returns
  the candidate (and joint entropy) that scoring every one of them gives."""
  probs = _dirichlet_probs(400 + chosen_count, 5, 6, seed=4)
  state = _state_after(probs[:chosen_count], configurations, jax.random.key(2))
  assert bool(state[3]) == (chosen_count == 2)
  pool = jnp.asarray(probs[chosen_count:])
  joint = np.asarray(batchbald.joint_entropies(
      state, batchbald.candidate_blocks(pool, 100), 6))
  bounds = np.asarray(batchbald.group_bounds(state, pool, 8))
  assert np.all(bounds >= joint - 1e-5)
  # In blocks of 64 candidates (the last one overlapping the one before), the same.
  monkeypatch.setattr(batchbald, "_BOUND_ROWS", 64)
  np.testing.assert_allclose(batchbald.group_bounds(state, pool, 8), bounds, rtol=1e-6)
  assert np.mean(bounds - joint) > 0.01          # (a bound, not the same numbers)
  conditional = -np.sum(probs[chosen_count:] * np.log(probs[chosen_count:]), -1).mean(-1)
  available = np.arange(400) % 9 != 0
  expected = int(np.argmax(np.where(available, joint - conditional, -np.inf)))
  index, best_joint = batchbald.best_of_all(state, pool, jnp.asarray(conditional),
                                            jnp.asarray(available), groups=8, chunk=16)
  assert int(index) == expected
  assert float(best_joint) == pytest.approx(joint[expected], rel=1e-5)


def test_a_batch_that_pins_down_the_draw_is_noted():
  """T = 4 draws. Example 1's label tells draws {0, 1} from {2, 3}, example 2's tells
  {0, 2} from {1, 3}: together they name the draw, I = log 4 = 1.386 nats, the ceiling
  H(w), at pick 2 of 3; example 0 agrees under every draw and adds 0."""
  e = 1e-6
  sure_0, sure_1 = [1 - e, e], [e, 1 - e]
  probs = np.array([[[0.5, 0.5]] * 4, [sure_0, sure_0, sure_1, sure_1],
                    [sure_0, sure_1, sure_0, sure_1]], np.float32)
  picks, information = batchbald.batchbald_greedy(jnp.log(jnp.asarray(probs)),
                                                  jnp.ones(3, bool), jax.random.key(0),
                                                  k=3, configurations=64)
  assert picks.tolist() == [1, 2, 0]
  np.testing.assert_allclose(information, [np.log(2), np.log(4), np.log(4)], atol=1e-4)
  note = batchbald.saturation_note(np.asarray(information), 4)
  assert "ceiling log(query.mc_samples) = 1.39 nats at pick 2 of 3" in note
  # The duplicate test's batch ends at log 4 - H(0.9) = 1.061 nats, 77% of it: no note;
  # nor when only the last pick reaches 95% (1.36 >= 0.95 x 1.386 = 1.317).
  assert batchbald.saturation_note(np.array([0.693, 1.061, 1.061]), 4) == ""
  assert batchbald.saturation_note(np.array([0.5, 1.2, 1.36]), 4) == ""


def test_batchbald_strategy_shares_dropout_masks_and_starts_at_bald(lenet):
  """Through strategies.create on LeNet-5 with dropout: a copied image gets the same T
  predictions (one set of masks for the pool, which the joint needs) while the passes
  differ; with batchbald_candidates=10 the picks are distinct and unlabeled, the first
  is BALD's top, the two exact ones (10 configurations of one pick fit in 64, 100 of two
  do not) are the whole pool's, and the sampled ones are among the 10 of largest BALD."""
  nets, variables = lenet
  images, _ = _pool()
  images[40] = images[3]
  pool = strategies.scoring_pool(sharding.make_mesh(), images, 32)
  strategy = _strategy("batchbald", nets, mc_samples=6, batchbald_configurations=64,
                       batchbald_candidates=10)
  key = jax.random.key(1)
  log_probs = np.asarray(strategy.mc_log_probs(variables, pool, jax.random.split(key)[0]))
  assert log_probs.shape == (64, 6, 10)
  np.testing.assert_array_equal(log_probs[40], log_probs[3])
  assert np.abs(log_probs[:, 0] - log_probs[:, 1]).max() > 1e-3
  is_labeled = np.zeros(64, bool)
  is_labeled[::4] = True
  scores = np.array(bald.bald_scores(jnp.swapaxes(jnp.asarray(log_probs), 0, 1)))
  scores[is_labeled] = -1.0
  picks = strategy.select(key, variables, pool, is_labeled, 8).tolist()
  assert picks[0] == scores.argmax()
  assert len(set(picks)) == 8 and not np.any(is_labeled[picks])
  whole_pool, _ = batchbald.batchbald_greedy(
      jnp.asarray(log_probs), jnp.asarray(~is_labeled), jax.random.split(key)[1], k=2,
      configurations=64)
  assert picks[:2] == whole_pool.tolist()
  assert set(picks[2:]) <= set(np.argsort(-scores)[:10].tolist())
  strategy.take_notes()
  assert strategy.take_notes() == []    # the loop takes each query's notes once
