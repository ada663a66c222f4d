"""The losses of WAAL training (paper section 3.3, Eq. 7-8, appendix E)."""

from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp


def bias_coefficient(num_labeled: int, num_unlabeled: int, query_size: int) -> float:
  """C0 = (1 / gamma^2) (gamma - alpha) / (1 + alpha), gamma = U/L, alpha = B/L (Eq. 8).

  The weight of the labeled critic mean once labeled batches are drawn with replacement
  at the size of the unlabeled ones. L=1K, U=9K, B=1K gives 4/81.
  """
  gamma = num_unlabeled / num_labeled
  alpha = query_size / num_labeled
  return (gamma - alpha) / (1.0 + alpha) / gamma**2


def adversarial_weights(rule: str, mu: float, num_labeled: int, num_unlabeled: int,
                        query_size: int) -> Tuple[float, float]:
  """(weight of the Wasserstein term, coefficient of the labeled critic mean).

  bias_coefficient: mu' = gamma / (1 + gamma) * mu and C0 (Eq. 8).
  size_ratio: mu itself and L / U (the authors' released code).
  """
  if rule == "bias_coefficient":
    gamma = num_unlabeled / num_labeled
    return gamma / (1.0 + gamma) * mu, bias_coefficient(num_labeled, num_unlabeled, query_size)
  if rule == "size_ratio":
    return mu, num_labeled / num_unlabeled
  raise ValueError(f"unknown adversarial_weights rule {rule!r}")


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
                     unlabeled_weights: Optional[jax.Array] = None,
                     labeled_weights: Optional[jax.Array] = None):
  """mean g(x_u) - coefficient * mean g(x_l): the bracket of Eq. 8; the weights (B,)
  mask padded examples."""
  return (weighted_mean(critic_unlabeled, unlabeled_weights)
          - labeled_coefficient * weighted_mean(critic_labeled, labeled_weights))


def interpolation_weights(key, count: int):
  """t ~ U[0, 1) per pair (count, 1): the penalty is taken at z_l + t (z_u - z_l)."""
  return jax.random.uniform(key, (count, 1), jnp.float32)


def interpolate(t, z_labeled, z_unlabeled):
  """Points on the segments between paired labeled and unlabeled features."""
  return z_labeled + t.astype(z_labeled.dtype) * (z_unlabeled - z_labeled)


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


def critic_loss(wasserstein, penalty, weight, penalty_weight, penalty_sign: str):
  """What the critic minimises.

  subtract: -weight * (W - penalty_weight * GP): the critic maximises the Wasserstein
    estimate while the penalty keeps it 1-Lipschitz (WGAN-GP).
  add: -weight * (W + penalty_weight * GP), as the authors' released code does; it
    rewards a gradient norm away from 1, i.e. it never enforces the constraint.
  """
  if penalty_sign == "subtract":
    return -weight * (wasserstein - penalty_weight * penalty)
  if penalty_sign == "add":
    return -weight * (wasserstein + penalty_weight * penalty)
  raise ValueError(f"unknown penalty sign {penalty_sign!r}")


def domain_cross_entropy(logit_unlabeled, logit_labeled, unlabeled_fraction,
                         unlabeled_weights: Optional[jax.Array] = None,
                         labeled_weights: Optional[jax.Array] = None):
  """Binary cross-entropy of a discriminator that tells unlabeled (1) from labeled (0).

  The H-divergence ablation (appendix H, Eq. 20): the discriminator minimises it, the
  feature extractor maximises it. (Eq. 20 as printed gives the discriminator the
  opposite sign, which is unbounded; the text describes this min-max.) Eq. 20 sums over
  the examples of both sets; normalised by L + U as Eq. 7 normalises the Wasserstein
  term, every example weighs the same: the unlabeled mean has weight U / (L + U)
  (`unlabeled_fraction`) and the labeled mean L / (L + U), however many of each a
  mini-batch holds.
  """
  unlabeled_term = weighted_mean(-jax.nn.log_sigmoid(logit_unlabeled), unlabeled_weights)
  labeled_term = weighted_mean(-jax.nn.log_sigmoid(-logit_labeled), labeled_weights)
  return unlabeled_fraction * unlabeled_term + (1.0 - unlabeled_fraction) * labeled_term
