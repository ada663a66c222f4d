"""DBAL: Bayesian active learning by disagreement with MC dropout (Gal et al., 2017).

BALD(x) = H[mean_t p_t(y|x)] - mean_t H[p_t(y|x)], the mutual information between the
label and the weights, estimated from T stochastic forward passes with dropout on.
Each pass samples every dropout layer of the network: the classifier head's and, for
LeNet-5, the extractor's channel dropout (as DeepAL's MC dropout does, the network in
training mode). Without extractor dropout the features are computed once and only the
head runs T times. All on the device, in the same batches as the other scorers.
"""

import jax
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

  def example_scores(self, variables, x, keys):
    params, batch_stats = variables["params"], variables["batch_stats"]
    z, _ = self.nets.embed(params, batch_stats, x)

    def one_pass(t):
      # Dropout masks drawn per example from its own key: the same on any device count.
      def one_example(x_i, z_i, key_i):
        extractor_key, head_key = jax.random.split(jax.random.fold_in(key_i, t))
        z_i = self.nets.dropout_features(params, batch_stats, x_i, z_i, extractor_key)
        logits = self.nets.logits(params, z_i[None], mc=True, dropout_key=head_key)
        return jax.nn.log_softmax(logits[0])
      return jax.vmap(one_example)(x, z, keys)                       # (B, K)

    samples = jax.vmap(one_pass)(jnp.arange(self.options["mc_samples"]))   # (T, B, K)
    return -bald_scores(samples)   # The largest disagreement first.
