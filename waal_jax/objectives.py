"""The losses of WAAL training (paper section 3.3, Eq. 7-8, appendix E)."""

from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp

VARIANTS = ("paper", "reference")


def bias_coefficient(num_labeled: int, num_unlabeled: int, query_size: int) -> float:
  """C0 = (1 / gamma^2) (gamma - alpha) / (1 + alpha), gamma = U/L, alpha = B/L (Eq. 8).

  The weight of the labeled critic mean once labeled batches are drawn with replacement
  at the size of the unlabeled ones. L=1K, U=9K, B=1K gives 4/81.
  """
  gamma = num_unlabeled / num_labeled
  alpha = query_size / num_labeled
  return (gamma - alpha) / (1.0 + alpha) / gamma**2


def adversarial_weights(variant: str, mu: float, num_labeled: int, num_unlabeled: int,
                        query_size: int) -> Tuple[float, float]:
  """(weight of the Wasserstein term, coefficient of the labeled critic mean).

  paper: mu' = gamma / (1 + gamma) * mu and C0 (Eq. 8).
  reference: the released code uses mu itself and gamma = L / U.
  """
  if variant == "paper":
    gamma = num_unlabeled / num_labeled
    return gamma / (1.0 + gamma) * mu, bias_coefficient(num_labeled, num_unlabeled, query_size)
  if variant == "reference":
    return mu, num_labeled / num_unlabeled
  raise ValueError(f"unknown variant {variant!r}")


def cross_entropy(logits, labels, weights: Optional[jax.Array] = None):
  """Mean -log softmax(logits)[label]; `weights` (B,) masks padded examples."""
  log_probs = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  return weighted_mean(nll, weights)


def weighted_mean(values, weights: Optional[jax.Array] = None):
  if weights is None:
    return jnp.mean(values)
  weights = weights.astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def wasserstein_term(critic_unlabeled, critic_labeled, labeled_coefficient,
                     unlabeled_weights: Optional[jax.Array] = None):
  """mean g(x_u) - coefficient * mean g(x_l): the bracket of Eq. 8."""
  return (weighted_mean(critic_unlabeled, unlabeled_weights)
          - labeled_coefficient * jnp.mean(critic_labeled))


def interpolate(key, z_labeled, z_unlabeled):
  """Random points on the segments between paired labeled and unlabeled features."""
  t = jax.random.uniform(key, (z_labeled.shape[0], 1), z_labeled.dtype)
  return z_labeled + t * (z_unlabeled - z_labeled)


def safe_norm(x, axis: int = -1):
  """Euclidean norm whose gradient is 0 (not NaN) at x = 0."""
  squared = jnp.sum(x * x, axis=axis)
  nonzero = squared > 0
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, squared, 1.0)), 0.0)


def gradient_penalty(critic_fn: Callable, points, weights: Optional[jax.Array] = None):
  """WGAN-GP: mean over points of (||d critic / d z|| - 1)^2.

  `critic_fn` maps (B, D) -> (B,) row by row, so the gradient of the sum is the stack
  of per-point gradients.
  """
  grads = jax.grad(lambda p: jnp.sum(critic_fn(p)))(points)
  return weighted_mean((safe_norm(grads) - 1.0) ** 2, weights)


def critic_loss(wasserstein, penalty, weight, penalty_weight, variant: str):
  """What the critic minimises.

  paper: -weight * (W - penalty_weight * GP): the critic maximises the Wasserstein
    estimate while the penalty keeps it 1-Lipschitz.
  reference: -weight * (W + penalty_weight * GP), as the released code does; it
    rewards a large gradient norm away from 1, i.e. it never enforces the constraint.
  """
  if variant == "paper":
    return -weight * (wasserstein - penalty_weight * penalty)
  if variant == "reference":
    return -weight * (wasserstein + penalty_weight * penalty)
  raise ValueError(f"unknown variant {variant!r}")


def domain_cross_entropy(logit_unlabeled, logit_labeled,
                         unlabeled_weights: Optional[jax.Array] = None):
  """Binary cross-entropy of a discriminator that tells unlabeled (1) from labeled (0).

  The H-divergence ablation (appendix H, Eq. 20): the discriminator minimises it, the
  feature extractor maximises it. (Eq. 20 as printed gives the discriminator the
  opposite sign, which is unbounded; the text describes this min-max.) Mean over each
  side, then averaged, so a batch of S + S weighs both domains equally.
  """
  unlabeled_term = weighted_mean(-jax.nn.log_sigmoid(logit_unlabeled), unlabeled_weights)
  labeled_term = jnp.mean(-jax.nn.log_sigmoid(-logit_labeled))
  return 0.5 * (unlabeled_term + labeled_term)
