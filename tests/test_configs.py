"""The dataset configs: they load, pass the checks and follow Tables 2 and 3."""

import csv
import os

import pytest

from conftest import ROOT
from experiments import cli
from experiments.configs import cifar10, fashion_mnist, stl10, svhn
from waal_jax import settings
from waal_jax.errors import UserError

CONFIGS = {"fashion_mnist": fashion_mnist, "svhn": svhn, "cifar10": cifar10, "stl10": stl10}
PAPER_DATASET = {"fashion_mnist": "fashion_mnist", "svhn_cropped": "svhn", "cifar10": "cifar10",
                 "stl10": "stl10"}


def _paper_budgets():
  budgets = {}
  with open(os.path.join(ROOT, "experiments", "paper", "paper_accuracy.csv")) as f:
    for row in csv.DictReader(f):
      if row["setting"] == "standard" and row["method"] == "waal":
        budgets.setdefault(row["dataset"], set()).add(int(row["num_labeled"]))
  return {k: sorted(v) for k, v in budgets.items()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_budgets_match_the_paper_tables(name):
  config = CONFIGS[name].get_config()
  settings.check(config)
  al = settings.al_settings(config)
  budgets = [al.initial_labeled + k * al.query_size for k in range(al.rounds + 1)]
  assert budgets == _paper_budgets()[PAPER_DATASET[config.data.name]]


# Table 3: (momentum, mu, selection, mixture) per dataset.
TABLE3 = {"fashion_mnist": (0.5, 1e-2, 5, 0.5), "svhn": (0.5, 1e-2, 5, 0.5),
          "cifar10": (0.3, 1e-2, 10, 0.5), "stl10": (0.3, 1e-3, 10, 0.5)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_hyperparameters_match_table3(name):
  config = CONFIGS[name].get_config()
  assert (config.train.momentum, config.train.mu, config.query.selection,
          config.query.mixture) == TABLE3[name]
  assert (config.train.learning_rate, config.train.batch_size, config.train.epochs) == (
      0.01, 64, 80)
  assert config.train.variant == "paper"


def test_reference_argument_sets_the_released_code():
  config = svhn.get_config("reference")
  assert config.train.variant == "reference"
  assert config.train.mu == 2e-3 and config.query.selection == 10
  assert settings.train_settings(config).augment          # crop + flip on SVHN
  assert not settings.train_settings(fashion_mnist.get_config("reference")).augment
  assert not settings.train_settings(svhn.get_config()).augment


def test_config_names_resolve():
  assert cli.config_names() == sorted(CONFIGS)
  assert cli.resolve_config_argument("svhn:reference").endswith(
      os.path.join("configs", "svhn.py") + ":reference")


def test_lenet_on_color_images_is_refused():
  config = cifar10.get_config()
  config.model.name = "lenet5"
  with pytest.raises(UserError, match="model.name='lenet5': takes 28x28x1 images"):
    settings.check(config)
