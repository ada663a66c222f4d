"""Random sampling (baseline 1): a uniform draw without replacement from the unlabeled pool."""

import jax

from waal_jax.strategies import base


@base.register
class Random(base.Strategy):
  name = "random"

  def select(self, key, variables, pool, is_labeled, query_size):
    del variables  # The model plays no part.
    # The k smallest of i.i.d. uniform keys are a uniform k-subset, whatever the device count.
    keys = jax.random.uniform(key, (pool.count,))
    return jax.device_get(base.smallest_unlabeled(keys, is_labeled, k=query_size))
