"""Query strategies, chosen by name (`query.strategy`). Importing this package registers them."""

# Each module registers its strategies on import.
from waal_jax.strategies import badge  # noqa: F401
from waal_jax.strategies import bald  # noqa: F401
from waal_jax.strategies import batchbald  # noqa: F401
from waal_jax.strategies import deepfool  # noqa: F401
from waal_jax.strategies import diversity  # noqa: F401
from waal_jax.strategies import probcover  # noqa: F401
from waal_jax.strategies import random_sampling  # noqa: F401
from waal_jax.strategies import typiclust  # noqa: F401
from waal_jax.strategies import uncertainty  # noqa: F401
from waal_jax.strategies import waal  # noqa: F401
from waal_jax.strategies.base import (PoolScorer, ScoringPool, Strategy, all_options, create,
                                      get, names, register, scoring_pool,
                                      smallest_selectable, smallest_unlabeled)

__all__ = ["PoolScorer", "ScoringPool", "Strategy", "all_options", "create", "get", "names",
           "register", "scoring_pool", "smallest_selectable", "smallest_unlabeled"]
