"""The arms of the Table 4 campaign and the config of each (arm, seed) run.

Kept apart from experiments/table4.py, which defines absl flags, so that tests and
other tools can build an arm's config without importing those flags (absl refuses a
flag name defined twice in one process).
"""

from experiments.configs import base
from experiments.configs import fashion_mnist

# arm -> (preset, config overrides)
ARMS = {
    "waal": ("paper", {}),
    "random": ("paper", {"query.strategy": "random"}),
    "least_confidence": ("paper", {"query.strategy": "least_confidence"}),
    "margin": ("paper", {"query.strategy": "margin"}),
    "entropy": ("paper", {"query.strategy": "entropy"}),
    "kmedian": ("paper", {"query.strategy": "kmedian"}),
    "coreset": ("paper", {"query.strategy": "coreset"}),
    "dbal": ("paper", {"query.strategy": "dbal"}),
    "deepfool": ("paper", {"query.strategy": "deepfool"}),
    # Control for training length: Random with WAAL's steps per epoch.
    "random_match_pool": ("paper", {"query.strategy": "random",
                                    "train.steps_per_epoch": "match_pool"}),
    # Control for the adversarial loss: Random queries, WAAL's training.
    "random_wasserstein": ("paper", {"query.strategy": "random",
                                     "train.adversarial": "wasserstein"}),
    "waal_reference": ("reference", {}),
}
# Strategies newer than the paper (issue 12's comparison), run the same way on request.
NEWER_ARMS = {name: ("paper", {"query.strategy": name})
              for name in ("badge", "batchbald", "typiclust", "probcover")}
# The committed BatchBALD runs scored the whole pool at every pick (the default then).
NEWER_ARMS["batchbald"][1]["query.batchbald_candidates"] = 0
# ... and the committed TypiClust runs clustered by full k-means passes.
NEWER_ARMS["typiclust"][1]["query.typiclust_kmeans"] = "lloyd"
# DeepFool as DeepAL ran it until its 2022 fix (towards the last class other than the
# prediction, no overshoot), which the paper's DeepFool most likely was; on request.
CHECK_ARMS = {"deepfool_last_class": ("paper", {"query.strategy": "deepfool",
                                                "query.deepfool_boundary": "last_class",
                                                "query.deepfool_overshoot": 0.0})}
ALL_ARMS = {**ARMS, **NEWER_ARMS, **CHECK_ARMS}


def parse_value(old, text: str):
  """`text` (a --set value) read as the type of the field's current value `old`."""
  if isinstance(old, bool):
    if text.lower() not in ("true", "false"):
      raise ValueError(f"expected true or false, not {text!r}")
    return text.lower() == "true"
  if isinstance(old, tuple):
    return tuple(float(v) for v in text.strip("()").split(",") if v.strip())
  return type(old)(text)


def arm_config(arm: str, seed: int, settings: list):
  """The config of one (arm, seed) run: the arm's preset and overrides, then --set."""
  preset, overrides = ALL_ARMS[arm]
  config = base.apply(fashion_mnist.get_config(preset), overrides)
  for item in settings:
    name, sep, text = item.partition("=")
    group, _, field = name.partition(".")
    if not sep or group not in config or field not in config[group]:
      raise ValueError(f"--set {item}: expected group.field=value with a field of the config")
    try:
      config[group][field] = parse_value(config[group][field], text)
    except ValueError as e:
      raise ValueError(f"--set {item}: {e}") from e
  config.seed, config.seeds, config.parallel_seeds = seed, 1, 1
  return config
