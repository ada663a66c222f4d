"""Random sampling (baseline 1): a uniform draw without replacement from the unlabeled pool."""

import jax

from waal_jax import sharding
from waal_jax.strategies import base


@base.register
class Random(base.Strategy):
  name = "random"

  def select(self, key, variables, pool, is_labeled, query_size):
    del variables, pool  # The model plays no part.
    return self.choose({}, is_labeled, key, query_size)

  def choose(self, outputs, is_labeled, key, query_size):
    # The k smallest of i.i.d. uniform keys are a uniform k-subset. Drawn for the real
    # examples only, so padding (which depends on the device count) changes nothing.
    keys = jax.random.uniform(key, (len(is_labeled),))
    selectable = base.selectable_rows(self.mesh, len(is_labeled), is_labeled)
    return sharding.to_host(base.smallest_selectable(keys, selectable, k=query_size))
