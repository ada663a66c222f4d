"""WAAL's query (section 3.4, Alg. 1 line 9): uncertainty minus `selection` x critic.

Both uncertainty bounds are upper bounds of the unknown loss -log p(y*|x) and are
smallest for the most uncertain prediction (uniform at the minimum), so the strategy
takes the smallest scores; a large critic value g(x) (unlike the labeled set) lowers a
score and moves the example ahead.
"""

import jax.numpy as jnp

from waal_jax import fields
from waal_jax.strategies import base


def uncertainty(log_probs, mixture: float, bound: str):
  """(B, K) log-probabilities -> (B,) uncertainty bound; smaller = more uncertain.

  mixture * first bound + (1 - mixture) * sum_y -log p (the L1 bound, Eq. 11), the
  first bound being single_worst: max_y -log p (Eq. 10), or l2: ||log p||_2 (the
  authors' released code).
  """
  neg = -log_probs
  if bound == "single_worst":
    first = jnp.max(neg, axis=-1)
  elif bound == "l2":
    first = jnp.sqrt(jnp.sum(neg * neg, axis=-1))
  else:
    raise ValueError(f"unknown uncertainty bound {bound!r}")
  return mixture * first + (1.0 - mixture) * jnp.sum(neg, axis=-1)


def waal_scores(log_probs, critic, *, selection: float, mixture: float, bound: str):
  """U(x) - selection * g(x) (B,): the query takes the smallest."""
  return uncertainty(log_probs, mixture, bound) - selection * critic


@base.register
class WAAL(base.ScoreStrategy):
  name = "waal"
  needs_critic = True
  config_fields = {
      "selection": fields.Option(5.0, fields.Float(), "waal: weight of the critic in the "
                                 "score (Table 3)"),
      "mixture": fields.Option(0.5, fields.Float(0.0, 1.0), "waal: weight of the first "
                               "bound against Eq. 11's"),
      "uncertainty_bound": fields.Option(
          "single_worst", fields.Choice(("single_worst", "l2")), "waal: the first bound, "
          "single_worst (max_y -log p, Eq. 10) or l2 (||log p||_2, the authors' code)")}

  inputs = ("log_probs", "critic")

  def scores(self, outputs):
    o = self.options
    return waal_scores(outputs["log_probs"], outputs["critic"], selection=o["selection"],
                       mixture=o["mixture"], bound=o["uncertainty_bound"])

