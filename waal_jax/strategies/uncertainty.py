"""Uncertainty sampling on the softmax output (baselines 2-4).

Every score is arranged so that the smallest is queried first.
"""

import jax.numpy as jnp

from waal_jax.strategies import base


def least_confidence_scores(log_probs):
  """max_y p(y|x): the least confident prediction has the smallest top probability."""
  return jnp.exp(jnp.max(log_probs, axis=-1))


def margin_scores(log_probs):
  """p(first) - p(second): the smallest margin between the two likeliest classes."""
  top2 = jnp.sort(jnp.exp(log_probs), axis=-1)[..., -2:]
  return top2[..., 1] - top2[..., 0]


def entropy(log_probs):
  """H[p(y|x)] = -sum_y p log p, in nats; largest at the uniform prediction."""
  return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


@base.register
class LeastConfidence(base.ScoreStrategy):
  name = "least_confidence"

  inputs = ("log_probs",)

  def scores(self, outputs):
    return least_confidence_scores(outputs["log_probs"])


@base.register
class Margin(base.ScoreStrategy):
  name = "margin"

  inputs = ("log_probs",)

  def scores(self, outputs):
    return margin_scores(outputs["log_probs"])


@base.register
class Entropy(base.ScoreStrategy):
  name = "entropy"

  inputs = ("log_probs",)

  def scores(self, outputs):
    return -entropy(outputs["log_probs"])
