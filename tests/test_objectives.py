"""The training objectives against values computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from waal_jax import objectives


def test_bias_coefficient_paper_example():
  # Section 3.3: L = 1K labeled, U = 9K unlabeled, B = 1K: gamma = 9, alpha = 1,
  # C0 = (1/81) * (9 - 1) / (1 + 1) = 4/81 = 0.0494.
  assert objectives.bias_coefficient(1000, 9000, 1000) == pytest.approx(4 / 81)
  assert objectives.bias_coefficient(1000, 9000, 1000) == pytest.approx(0.0494, abs=1e-4)


def test_adversarial_weights_per_rule():
  weight, c0 = objectives.adversarial_weights("bias_coefficient", 0.01, 1000, 9000, 1000)
  assert weight == pytest.approx(0.01 * 9 / 10)        # mu' = gamma / (1 + gamma) mu
  assert c0 == pytest.approx(4 / 81)
  weight, coefficient = objectives.adversarial_weights("size_ratio", 0.002, 1000, 9000, 1000)
  assert weight == 0.002 and coefficient == pytest.approx(1 / 9)   # gamma = L / U


def test_cross_entropy_and_masking():
  logits = jnp.log(jnp.array([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]]))
  labels = jnp.array([1, 0, 1])
  expected = -(np.log(0.75) + np.log(0.5) + np.log(0.1)) / 3
  assert objectives.cross_entropy(logits, labels) == pytest.approx(expected, rel=1e-6)
  masked = objectives.cross_entropy(logits, labels, jnp.array([True, True, False]))
  assert masked == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2, rel=1e-6)


def test_wasserstein_term():
  g_u = jnp.array([0.9, 0.7, 0.1])
  g_l = jnp.array([0.2, 0.4])
  # mean over the two valid unlabeled values minus C * mean labeled.
  value = objectives.wasserstein_term(g_u, g_l, 0.5, jnp.array([1, 1, 0]))
  assert value == pytest.approx(0.8 - 0.5 * 0.3, rel=1e-6)
  # A padded labeled row (the last batch of a cycled epoch) is left out too.
  value = objectives.wasserstein_term(g_u, jnp.array([0.2, 0.4, 0.9]), 0.5,
                                      jnp.array([1, 1, 0]), jnp.array([1, 1, 0]))
  assert value == pytest.approx(0.8 - 0.5 * 0.3, rel=1e-6)


def test_domain_cross_entropy_weighs_every_example_the_same():
  """Eq. 20 sums over the examples: with L = 1,000 and U = 3,000 the unlabeled mean
  weighs 3/4 and the labeled mean 1/4, whatever the batch holds of each."""
  logit_u = jnp.log(jnp.array([3.0, 1.0]))       # sigmoid = 0.75, 0.5
  logit_l = jnp.log(jnp.array([1.0 / 3.0]))      # sigmoid = 0.25: -log(1 - 0.25)
  unlabeled = -(np.log(0.75) + np.log(0.5)) / 2
  labeled = -np.log(0.75)
  value = objectives.domain_cross_entropy(logit_u, logit_l, 3000 / 4000)
  assert value == pytest.approx(0.75 * unlabeled + 0.25 * labeled, rel=1e-6)
  # Not the mean of the two means (what an S + S batch gives unweighted).
  assert abs(float(value) - 0.5 * (unlabeled + labeled)) > 0.02


def _linear_critic(w, b):
  return lambda z: jax.nn.sigmoid(z @ w + b)


def test_gradient_penalty_matches_closed_form():
  # g(z) = sigmoid(w.z + b) has dg/dz = s (1 - s) w, so its norm is s (1 - s) ||w||.
  w = jnp.array([3.0, -4.0])          # ||w|| = 5
  b = 0.5
  points = jnp.array([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
  expected = []
  for p in np.asarray(points):
    s = 1 / (1 + np.exp(-(p @ np.asarray(w) + b)))
    expected.append((s * (1 - s) * 5.0 - 1.0) ** 2)
  penalty = objectives.gradient_penalty(_linear_critic(w, b), points)
  assert penalty == pytest.approx(np.mean(expected), rel=1e-5)
  # Weights drop a point from the mean.
  weighted = objectives.gradient_penalty(_linear_critic(w, b), points, jnp.array([1, 0, 1]))
  assert weighted == pytest.approx((expected[0] + expected[2]) / 2, rel=1e-5)


def test_gradient_penalty_at_interpolates():
  # With equal endpoints every interpolate is that point, whatever the random t.
  z = jnp.array([[0.3, -0.2], [1.0, 2.0]])
  t = objectives.interpolation_weights(jax.random.key(0), 2)
  np.testing.assert_allclose(objectives.interpolate(t, z, z), z)
  # Interpolates lie on the segment: t in [0, 1] per row.
  z_l, z_u = jnp.zeros((4, 2)), jnp.ones((4, 2))
  t = objectives.interpolation_weights(jax.random.key(1), 4)
  points = objectives.interpolate(t, z_l, z_u)
  assert np.all((points >= 0) & (points <= 1))
  np.testing.assert_allclose(points[:, 0], points[:, 1])


def test_critic_loss_sign():
  """subtract: a larger penalty makes the critic's loss larger (it is minimised away)."""
  w, weight, lam = 0.3, 0.01, 2.0
  grad = jax.grad(lambda gp: objectives.critic_loss(w, gp, weight, lam, "subtract"))(0.5)
  assert grad == pytest.approx(weight * lam)                # > 0
  grad = jax.grad(lambda gp: objectives.critic_loss(w, gp, weight, lam, "add"))(0.5)
  assert grad == pytest.approx(-weight * lam)               # the released code's sign
  # The critic maximises W: its loss falls as W grows.
  assert jax.grad(lambda x: objectives.critic_loss(x, 0.5, weight, lam, "subtract"))(w) < 0


def test_critic_step_reduces_the_penalty_with_the_subtracted_penalty():
  """Descending the paper critic loss with W held fixed drives the gradient norm to 1."""
  b = 0.0
  w = jnp.array([20.0, 0.0])          # Gradient norm at 0: 0.25 * 20 = 5, far from 1.
  points = jnp.zeros((1, 2))

  def loss(w):
    gp = objectives.gradient_penalty(_linear_critic(w, b), points)
    return objectives.critic_loss(0.0, gp, 1.0, 1.0, "subtract")

  before = loss(w)
  for _ in range(300):
    w = w - 0.5 * jax.grad(loss)(w)
  assert loss(w) < 1e-3 < before
  assert float(w[0]) == pytest.approx(4.0, abs=0.1)   # 0.25 * ||w|| = 1


def test_safe_norm_has_finite_gradient_at_zero():
  grad = jax.grad(lambda x: objectives.safe_norm(x))(jnp.zeros(3))
  np.testing.assert_array_equal(grad, np.zeros(3))
  assert objectives.safe_norm(jnp.array([3.0, 4.0])) == pytest.approx(5.0)
