r"""SVHN (cropped digits), VGG16 with batch norm (paper Tables 2, 3, 5).

Run:
  python -m experiments.main --config=svhn --workdir=/tmp/waal_svhn
The authors' released code instead: --config=svhn:reference.
Paper (Table 5): WAAL reaches 89.71 +- 0.83% test accuracy with 6,000 labels.
Pool 40K, validation 33K, test 26K; 1K labels, +1K a round for 5 rounds.
"""

from experiments.configs import base

# The authors' code trains SVHN with random crop (4-pixel padding) + horizontal flip.
REFERENCE = {"train.augment": "crop_flip"}


def get_config(preset: str = "paper"):
  config = base.get_base_config()
  config.data.name = "svhn_cropped"
  config.model.name = "vgg16"
  config.model.head_hidden = 50
  config.train.momentum = 0.5
  config.train.mu = 1e-2
  config.query.selection = 5.0
  config.al.initial_labeled = 1000
  config.al.query_size = 1000
  config.al.rounds = 5
  return base.finish(config, preset, REFERENCE)
