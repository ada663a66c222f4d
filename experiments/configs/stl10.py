r"""STL-10 variant, VGG16 with batch norm at 96x96 (paper Tables 2, 3, 7).

Run:
  python -m experiments.main --config=stl10 --workdir=/tmp/waal_stl10
The authors' released code instead: --config=stl10:reference.
Paper (Table 7): WAAL reaches 65.42 +- 1.33% test accuracy with 3,000 labels.
The 13K labeled images re-split per class into 8K pool (800 a class), 1K validation and
4K test; the unlabeled part of STL-10 is not used. 500 labels, +500 a round for 5 rounds.
"""

from experiments.configs import base

# The authors' code has no STL-10 path: the general reference preset only.
REFERENCE = {}


def get_config(preset: str = "paper"):
  config = base.get_base_config()
  config.data.name = "stl10"
  config.model.name = "vgg16"
  config.model.head_hidden = 100
  config.model.feature_dim = 4096
  config.train.momentum = 0.3
  config.train.mu = 1e-3
  config.query.selection = 10.0
  config.al.initial_labeled = 500
  config.al.query_size = 500
  config.al.rounds = 5
  return base.finish(config, preset, REFERENCE)
