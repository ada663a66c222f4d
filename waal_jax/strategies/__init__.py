"""Query strategies, chosen by name (`query.strategy`). Importing this package registers them.

A new strategy is one module in this folder: it defines a `base.Strategy` subclass
with `@base.register` (its name, its options, the model outputs it reads, `choose`),
and is imported, and so registered, by the loop below.
"""

import importlib
import pkgutil

from waal_jax.strategies.arrays import query
from waal_jax.strategies.base import (OUTPUTS, PoolScorer, QuerySettings, ScoringPool,
                                      Strategy, all_options, create, get, names, register,
                                      scoring_pool, smallest_selectable, smallest_unlabeled)

# Every module of the package, in name order (which fixes the order of the options).
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
  importlib.import_module(f"{__name__}.{_module}")

__all__ = ["OUTPUTS", "PoolScorer", "QuerySettings", "ScoringPool", "Strategy", "all_options",
           "create", "get", "names", "query", "register", "scoring_pool",
           "smallest_selectable", "smallest_unlabeled"]
