"""The command-line side of waal_jax: driver, configs, benchmarks and reports."""
