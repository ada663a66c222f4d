"""WAAL's query score (section 3.4) and the top-B selection."""

import jax.numpy as jnp
import numpy as np
import pytest

from waal_jax import strategies
from waal_jax.strategies import waal


def _log(p):
  return jnp.log(jnp.asarray(p, jnp.float32))


@pytest.mark.parametrize("mixture", [0.0, 0.5, 1.0])
def test_paper_example_chooses_the_less_confident(mixture):
  # h(x1) = [0.4, 0.6], h(x2) = [0.3, 0.7]: x1 is chosen (the smaller bound).
  u = waal.uncertainty(_log([[0.4, 0.6], [0.3, 0.7]]), mixture, "single_worst")
  single_worst = np.array([-np.log(0.4), -np.log(0.3)])
  l1 = np.array([-np.log(0.4) - np.log(0.6), -np.log(0.3) - np.log(0.7)])
  np.testing.assert_allclose(u, mixture * single_worst + (1 - mixture) * l1, rtol=1e-6)
  chosen = strategies.smallest_unlabeled(u, jnp.zeros(2, bool), k=1)
  assert chosen.tolist() == [0]


def test_l1_bound_is_minimal_at_uniform():
  rng = np.random.default_rng(0)
  others = rng.dirichlet(np.ones(5), size=200)
  probs = np.concatenate([np.full((1, 5), 0.2), others])
  u = np.asarray(waal.uncertainty(_log(probs), 0.0, "single_worst"))
  assert u[0] == pytest.approx(5 * np.log(5), rel=1e-6)
  assert np.all(u[1:] > u[0])
  # The single-worst bound too: max_y -log p >= log K with equality at uniform.
  u = np.asarray(waal.uncertainty(_log(probs), 1.0, "single_worst"))
  assert np.all(u[1:] > u[0])


def test_larger_critic_moves_an_example_ahead():
  log_probs = _log([[0.5, 0.5], [0.6, 0.4], [0.9, 0.1]])
  no_critic = waal.waal_scores(log_probs, jnp.zeros(3), selection=5.0, mixture=0.5,
                               bound="single_worst")
  assert strategies.smallest_unlabeled(no_critic, jnp.zeros(3, bool), k=1).tolist() == [0]
  # The confident example 2 looks unlike the labeled set: g = 0.9 puts it first.
  with_critic = waal.waal_scores(log_probs, jnp.array([0.0, 0.0, 0.9]), selection=5.0,
                                 mixture=0.5, bound="single_worst")
  np.testing.assert_allclose(with_critic[2], no_critic[2] - 4.5, rtol=1e-6)
  assert strategies.smallest_unlabeled(with_critic, jnp.zeros(3, bool), k=1).tolist() == [2]


def test_l2_bound_mixture_is_the_released_codes():
  log_probs = _log([[0.2, 0.8]])
  expected = 0.5 * np.hypot(np.log(0.2), np.log(0.8)) + 0.5 * -(np.log(0.2) + np.log(0.8))
  assert waal.uncertainty(log_probs, 0.5, "l2")[0] == pytest.approx(expected, rel=1e-6)


def test_selection_skips_labeled_examples():
  scores = jnp.array([0.1, 0.5, 0.2, 0.9, 0.3])
  is_labeled = jnp.array([True, False, True, False, False])
  chosen = strategies.smallest_unlabeled(scores, is_labeled, k=2)
  assert chosen.tolist() == [4, 1]
