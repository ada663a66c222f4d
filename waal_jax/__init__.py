"""waal_jax: Wasserstein Adversarial Active Learning (Shui et al., AISTATS 2020) in JAX."""

__version__ = "0.1.0"
