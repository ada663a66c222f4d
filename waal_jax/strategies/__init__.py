"""Query strategies, chosen by name (`query.strategy`). Importing this package registers them."""

from waal_jax.strategies import random_sampling  # noqa: F401  (registers the strategy)
from waal_jax.strategies import waal  # noqa: F401  (registers the strategy)
from waal_jax.strategies.base import (PoolScorer, QuerySettings, ScoringPool, Strategy, create,
                                      names, register, scoring_pool, smallest_unlabeled)

__all__ = ["PoolScorer", "QuerySettings", "ScoringPool", "Strategy", "create", "names",
           "register", "scoring_pool", "smallest_unlabeled"]
