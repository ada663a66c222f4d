r"""CIFAR-10, VGG16 with batch norm (paper Tables 2, 3, 6).

Run:
  python -m experiments.main --config=cifar10 --workdir=/tmp/waal_cifar10
The authors' released code instead: --config=cifar10:reference.
Paper (Table 6): WAAL reaches 75.11 +- 0.49% test accuracy with 12,000 labels.
Pool 45K, validation 5K, test 10K; 2K labels, +2K a round for 5 rounds.
"""

from experiments.configs import base

# The authors' code trains CIFAR-10 with random crop (4-pixel padding) + horizontal flip.
REFERENCE = {"train.augment": "crop_flip"}


def get_config(preset: str = "paper"):
  config = base.get_base_config()
  config.data.name = "cifar10"
  config.model.name = "vgg16"
  config.model.head_hidden = 50
  config.train.momentum = 0.3
  config.train.mu = 1e-2
  config.query.selection = 10.0
  config.al.initial_labeled = 2000
  config.al.query_size = 2000
  config.al.rounds = 5
  return base.finish(config, preset, REFERENCE)
