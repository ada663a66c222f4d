"""The dataset configs: they load, pass the checks and follow Tables 2 and 3."""

import csv
import dataclasses
import json
import os

import pytest

from conftest import ROOT
from experiments import cli
from experiments.configs import base, cifar10, fashion_mnist, stl10, svhn
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
  al = settings.resolve(config).al
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
  for field, value in base.REFERENCE.items():
    group, name = field.split(".")
    assert config[group][name] == value, field
  assert settings.resolve(config).train.augment == "crop_flip"      # SVHN only
  assert settings.resolve(fashion_mnist.get_config("reference")).train.augment == "none"
  assert settings.resolve(svhn.get_config()).train.augment == "none"
  mnist = fashion_mnist.get_config("reference")
  assert (mnist.data.mean, mnist.data.std) == ((0.1307,), (0.3081,))


def test_the_preset_name_is_only_a_label():
  """train.variant changes no behaviour: the fields say what is done."""
  reference = fashion_mnist.get_config("reference")
  relabelled = fashion_mnist.get_config("reference")
  relabelled.train.variant = "paper"
  a, b = settings.resolve(reference), settings.resolve(relabelled)
  assert a.train.variant != b.train.variant
  assert dataclasses.replace(a.train, variant="") == dataclasses.replace(b.train, variant="")
  assert (a.model, a.data, a.query) == (b.model, b.data, b.query)


def test_paper_preset_differs_from_reference_in_the_listed_fields_only():
  paper, reference = fashion_mnist.get_config(), fashion_mnist.get_config("reference")
  flat = lambda c: {f"{g}.{k}": v for g, group in c.items() if hasattr(group, "items")
                    for k, v in group.items()}
  differing = {k for k, v in flat(paper).items() if flat(reference)[k] != v}
  assert differing == set(base.REFERENCE) | set(fashion_mnist.REFERENCE)


def test_config_names_resolve():
  assert cli.config_names() == sorted([*CONFIGS, "image_folder"])   # the paper's, the user's
  assert cli.resolve_config_argument("svhn:reference").endswith(
      os.path.join("configs", "svhn.py") + ":reference")


def test_lenet_on_color_images_is_refused():
  config = cifar10.get_config()
  config.model.name = "lenet5"
  with pytest.raises(UserError, match="model.name='lenet5': takes 28x28x1 images"):
    settings.resolve(config)


def test_a_field_missing_from_an_older_run_takes_its_default(tmp_path):
  """A config.json recorded before a field existed belongs to today's config when the
  field is at its schema default, and to no other value of it (the refusal names the
  default as the value that run had)."""
  from waal_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config = fashion_mnist.get_config().to_dict()
  older = json.loads(json.dumps(config))
  del older["train"]["epochs_added_per_round"], older["query"]["deepfool_boundary"]
  (tmp_path / checkpoints.OWNER_FILE).write_text(json.dumps(older))
  assert checkpoints.check_workdir(str(tmp_path), config)
  config["train"]["epochs_added_per_round"] = 5
  with pytest.raises(UserError, match=r"train.epochs_added_per_round: 0 there, 5 now"):
    checkpoints.check_workdir(str(tmp_path), config)


def test_every_field_has_one_default_and_help_in_the_schema():
  """The config the command line starts from is the schema at its defaults, field for
  field, and each field says what it is for."""
  names = [name for name, _ in settings.schema()]
  assert len(names) == len(set(names))
  flat = {}
  for group, value in settings.default_config().items():
    if hasattr(value, "items"):
      flat.update({f"{group}.{k}": v for k, v in value.items()})
    else:
      flat[group] = value
  assert flat == {name: option.default for name, option in settings.schema()}
  assert all(len(option.help) > 10 for _, option in settings.schema())
  assert settings.default("train.epochs") == 80 and settings.default("query.mc_samples") == 10


def test_only_the_run_s_own_strategy_options_decide_whose_run_it_is(tmp_path):
  """A WAAL run recorded with query.batchbald_candidates=0 (the default then) belongs to
  today's config, whose default is 2000: WAAL never reads it. A BatchBALD run recorded
  so does not, and neither does a WAAL run with another query.selection."""
  from waal_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config = fashion_mnist.get_config().to_dict()
  assert config["query"]["batchbald_candidates"] == 2000
  older = json.loads(json.dumps(config))
  older["query"]["batchbald_candidates"] = 0
  (tmp_path / checkpoints.OWNER_FILE).write_text(json.dumps(older))
  assert checkpoints.check_workdir(str(tmp_path), config)
  config["query"]["selection"] = 3.0
  with pytest.raises(UserError, match=r"query.selection: 5.0 there, 3.0 now"):
    checkpoints.check_workdir(str(tmp_path), config)
  config["query"]["selection"] = 5.0
  older["query"]["strategy"] = config["query"]["strategy"] = "batchbald"
  (tmp_path / checkpoints.OWNER_FILE).write_text(json.dumps(older))
  with pytest.raises(UserError, match=r"query.batchbald_candidates: 0 there, 2000 now"):
    checkpoints.check_workdir(str(tmp_path), config)


def test_a_typiclust_run_recorded_before_its_clustering_option_clustered_by_lloyd(tmp_path):
  """query.typiclust_kmeans came with the default auto (mini-batch k-means above 50
  clusters); a TypiClust run recorded without it clustered by full passes, so it belongs
  to lloyd, not to today's default. Other fields added later still take their default."""
  from waal_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config = fashion_mnist.get_config().to_dict()
  config["query"]["strategy"] = "typiclust"
  assert config["query"]["typiclust_kmeans"] == "auto"
  older = json.loads(json.dumps(config))
  del older["query"]["typiclust_kmeans"], older["query"]["typiclust_neighbors"]
  (tmp_path / checkpoints.OWNER_FILE).write_text(json.dumps(older))
  with pytest.raises(UserError, match=r"query.typiclust_kmeans: 'lloyd' there, 'auto' now"):
    checkpoints.check_workdir(str(tmp_path), config)
  config["query"]["typiclust_kmeans"] = "lloyd"
  assert checkpoints.check_workdir(str(tmp_path), config)


def test_the_committed_campaign_resumes_under_today_s_config():
  """Each arm's committed seed 0 of results/fashion_mnist_full belongs to the config
  experiments/table4_arms.py builds now: a changed default would stop the whole campaign
  at its next start (query.batchbald_candidates: the BatchBALD arm keeps the committed
  runs' 0; query.typiclust_kmeans: the TypiClust arm keeps lloyd)."""
  from experiments import table4_arms  # pylint: disable=g-import-not-at-top
  from waal_jax import checkpoints  # pylint: disable=g-import-not-at-top
  root = os.path.join(ROOT, "results", "fashion_mnist_full")
  for arm in {**table4_arms.ARMS, **table4_arms.NEWER_ARMS}:
    config = table4_arms.arm_config(arm, 0, [])
    settings.resolve(config)
    workdir = os.path.join(root, arm, "seed_0")
    owned = checkpoints.check_workdir(workdir, config.to_dict())
    assert owned, (arm, workdir, sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None)


def test_the_strategy_field_s_help_names_every_strategy():
  from waal_jax import strategies  # pylint: disable=g-import-not-at-top
  help_text = dict(settings.schema())["query.strategy"].help
  assert all(name in help_text for name in strategies.names())
