"""Random sampling (baseline 1): a uniform draw without replacement from the unlabeled pool."""

import jax
import jax.numpy as jnp

from waal_jax import sharding
from waal_jax.strategies import base


@base.register
class Random(base.Strategy):
  name = "random"

  def select(self, key, variables, pool, is_labeled, query_size):
    del variables  # The model plays no part.
    # The k smallest of i.i.d. uniform keys are a uniform k-subset. Drawn for the real
    # examples only, so padding (which depends on the device count) changes nothing.
    keys = jax.random.uniform(key, (pool.count,))
    keys = jnp.pad(keys, (0, pool.padded_count - pool.count), constant_values=jnp.inf)
    chosen = base.smallest_selectable(keys, pool.selectable(is_labeled), k=query_size)
    return sharding.to_host(chosen)
