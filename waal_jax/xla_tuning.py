"""XLA flags that measurably speed this workload up (docs/design.md section 5)."""

import os

import jax

# XLA:CPU's YNNPACK fusions are slower than its default kernels for these small convs:
# a LeNet-5 WAAL step went from ~20 to ~16 ms on a 2-core AVX-512 machine. The flag
# exists in the jaxlib versions listed; XLA aborts on flags it does not know.
_YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
_YNN_FLAG_VERSIONS = ("0.10.",)


def tune_cpu_flags() -> None:
  """Turns YNNPACK fusions off. Call before JAX first touches a device; else no effect."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" in flags:
    return  # The user chose.
  if jax.__version__.startswith(_YNN_FLAG_VERSIONS):
    # First: XLA stops reading at a word that is not a flag, whatever follows it.
    os.environ["XLA_FLAGS"] = f"{_YNN_OFF} {flags}".strip()
