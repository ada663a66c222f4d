"""The base of every dataset config: the library's settings schema at its defaults (the
paper's), and the two presets `paper` and `reference`.

Every field, its default and its one-line help live in waal_jax/settings.py (and a
strategy's options in its module); this file adds only the presets. Scripts override
fields as --config.<group>.<field>=<value>. The field names of docs/design.md section 2
are a contract.

Presets: a dataset config file takes an argument, `--config=NAME` (the paper, the
default) or `--config=NAME:reference` (what the authors' released code does). A preset
is nothing but field values (`PRESETS` below); `train.variant` records its name.
"""

import ml_collections

from waal_jax import settings


def get_base_config() -> ml_collections.ConfigDict:
  """The paper preset: the equations, Table 3 and appendix G as published."""
  return settings.default_config()


# What the authors' released PyTorch code (github.com/cjshui/WAAL) does where it differs
# from the paper; docs/design.md section 3 lists each difference with its place there.
REFERENCE = {
    "train.variant": "reference",
    "train.mu": 2e-3,                       # alpha in their Test.py
    "query.selection": 10.0,                # self.selection in their WAAL class
    "train.lr_schedule": "constant",
    "train.adversarial_weights": "size_ratio",
    "train.critic_penalty_sign": "add",
    "train.penalty_points": "interpolates_and_ends",
    "train.critic_features": "recomputed",
    "train.labeled_sampling": "cycle",
    "train.domain_batches": "separate",
    "train.model_selection": "last",
    "train.patience": 0,
    "query.uncertainty_bound": "l2",
}

PRESETS = {"paper": {}, "reference": REFERENCE}


def apply(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  for name, value in values.items():
    group, field = name.split(".")
    config[group][field] = value
  return config


def finish(config: ml_collections.ConfigDict, preset: str,
           dataset_reference: dict = None) -> ml_collections.ConfigDict:
  """Applies the `:preset` argument of a dataset config file; `dataset_reference` holds
  what the authors' code does for that dataset only."""
  if preset not in PRESETS:
    raise ValueError(f"config argument must be one of {', '.join(PRESETS)}, not {preset!r}")
  apply(config, PRESETS[preset])
  if preset == "reference":
    apply(config, dataset_reference or {})
  return config
