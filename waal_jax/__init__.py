"""waal_jax: Wasserstein Adversarial Active Learning (Shui et al., AISTATS 2020) in JAX.

The public API: your Flax modules as a `Model`, an `ActiveLearner` for the rounds, the
settings (`TrainSettings`, `settings.schema()`), the strategies (by name, and on plain
arrays in `waal_jax.strategies`), Label Studio as the oracle (`label_studio`) and the one
error type, `UserError`.
"""

__version__ = "0.2.0"

# pylint: disable=wrong-import-position
from waal_jax import label_studio
from waal_jax import settings
from waal_jax import strategies
from waal_jax.errors import UserError
from waal_jax.learner import ActiveLearner
from waal_jax.models import MLPExtractor, Model
from waal_jax.settings import TrainSettings

__all__ = ["ActiveLearner", "MLPExtractor", "Model", "TrainSettings", "UserError",
           "label_studio", "settings", "strategies"]
