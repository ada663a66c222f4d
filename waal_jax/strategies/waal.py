"""WAAL's query (section 3.4, Alg. 1 line 9): uncertainty minus `selection` x critic.

Both uncertainty bounds are upper bounds of the unknown loss -log p(y*|x) and are
smallest for the most uncertain prediction (uniform at the minimum), so the strategy
takes the smallest scores; a large critic value g(x) (unlike the labeled set) lowers a
score and moves the example ahead.
"""

import jax
import jax.numpy as jnp

from waal_jax.strategies import base


def uncertainty(log_probs, mixture: float, variant: str):
  """(B, K) log-probabilities -> (B,) uncertainty bound; smaller = more uncertain.

  paper: mixture * max_y -log p (Eq. 10) + (1 - mixture) * sum_y -log p (Eq. 11).
  reference: mixture * ||log p||_2 + (1 - mixture) * ||log p||_1, as the released code.
  """
  neg = -log_probs
  if variant == "paper":
    return mixture * jnp.max(neg, axis=-1) + (1.0 - mixture) * jnp.sum(neg, axis=-1)
  if variant == "reference":
    return (mixture * jnp.sqrt(jnp.sum(neg * neg, axis=-1))
            + (1.0 - mixture) * jnp.sum(neg, axis=-1))
  raise ValueError(f"unknown variant {variant!r}")


def waal_scores(log_probs, critic, *, selection: float, mixture: float, variant: str):
  """U(x) - selection * g(x) (B,): the query takes the smallest."""
  return uncertainty(log_probs, mixture, variant) - selection * critic


@base.register
class WAAL(base.ScoreStrategy):
  name = "waal"
  needs_critic = True

  def example_scores(self, variables, x, keys):
    del keys  # Deterministic.
    params = variables["params"]
    z, _ = self.nets.embed(params, variables["batch_stats"], x)
    log_probs = jax.nn.log_softmax(self.nets.logits(params, z))
    critic = self.nets.critic_value(params["critic"], z)
    s = self.settings
    return waal_scores(log_probs, critic, selection=s.selection, mixture=s.mixture,
                       variant=s.variant)

