r"""Fashion-MNIST, LeNet-5 (paper Tables 2-4).

Run:
  python -m experiments.main --config=fashion_mnist --workdir=/tmp/waal_fmnist
The authors' released code instead: --config=fashion_mnist:reference.
Paper (Table 4): WAAL reaches 85.99 +- 0.43% test accuracy with 6,000 labels.
Pool 40K, validation 20K, test 10K; 1K labels, +500 a round for 10 rounds.
"""

from experiments.configs import base

# The authors' code for Fashion-MNIST normalises with MNIST's constants (their Test.py).
REFERENCE = {"data.mean": (0.1307,), "data.std": (0.3081,)}


def get_config(preset: str = "paper"):
  config = base.get_base_config()
  config.data.name = "fashion_mnist"
  config.model.name = "lenet5"
  config.model.head_hidden = 50
  config.train.momentum = 0.5
  config.train.mu = 1e-2
  config.query.selection = 5.0
  config.al.initial_labeled = 1000
  config.al.query_size = 500
  config.al.rounds = 10
  return base.finish(config, preset, REFERENCE)
