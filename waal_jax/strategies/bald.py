"""DBAL: Bayesian active learning by disagreement with MC dropout (Gal et al., 2017).

BALD(x) = H[mean_t p_t(y|x)] - mean_t H[p_t(y|x)], the mutual information between the
label and the weights, estimated from T stochastic forward passes with dropout on.
Each pass samples every dropout layer of the network: the classifier head's and, for
LeNet-5, the extractor's channel dropout (as DeepAL's MC dropout does, the network in
training mode). Without extractor dropout the features are computed once and only the
head runs T times. All on the device, in the same batches as the other scorers.
"""

import jax.numpy as jnp

from waal_jax import fields
from waal_jax.strategies import base
from waal_jax.strategies.uncertainty import entropy


def bald_scores(log_probs_samples):
  """(T, B, K) log-probabilities of T passes -> (B,) mutual information (>= 0)."""
  mean_probs = jnp.mean(jnp.exp(log_probs_samples), axis=0)
  predictive = -jnp.sum(mean_probs * jnp.log(jnp.maximum(mean_probs, 1e-30)), axis=-1)
  return predictive - jnp.mean(entropy(log_probs_samples), axis=0)


# Shared with BatchBALD.
MC_SAMPLES = fields.Option(10, fields.Int(1), "dbal, batchbald: stochastic forward passes T "
                           "(MC dropout)")


@base.register
class DBAL(base.ScoreStrategy):
  name = "dbal"
  config_fields = {"mc_samples": MC_SAMPLES}

  inputs = ("mc_log_probs",)

  def scores(self, outputs):
    return -bald_scores(jnp.swapaxes(outputs["mc_log_probs"], 0, 1))   # largest first
