"""One round of every strategy, and of the H-divergence ablation, through the loop.

Plumbing, on synthetic Fashion-MNIST-shaped images (conftest).
"""

import json

import jax
import pytest

from conftest import write_synthetic_fashion_mnist
from experiments.configs import fashion_mnist
from waal_jax import loop
from waal_jax import strategies


def _tiny_config(cache_dir, **overrides):
  config = fashion_mnist.get_config()
  config.data.cache_dir = cache_dir
  config.data.pool_size, config.data.val_size = 600, 200
  config.al.initial_labeled, config.al.query_size, config.al.rounds = 60, 30, 1
  config.train.epochs, config.train.batch_size, config.train.eval_batch_size = 1, 32, 100
  config.query.batch_size, config.query.kmedian_iterations = 128, 3
  config.query.deepfool_iterations = 5
  for field, value in overrides.items():
    group, name = field.split(".")
    config[group][name] = value
  return config


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return write_synthetic_fashion_mnist(str(tmp_path_factory.mktemp("cache")))


@pytest.mark.parametrize("strategy", strategies.names())
def test_one_round_of_each_strategy(strategy, cache_dir, tmp_path):
  results = loop.run(_tiny_config(cache_dir, **{"query.strategy": strategy}), str(tmp_path),
                     log=lambda _: None)
  rounds = results["rounds"]
  assert [r["num_labeled"] for r in rounds] == [60, 90]
  queried = rounds[0]["queried_indices"]
  assert len(queried) == len(set(queried)) == 30
  assert rounds[1]["queried_indices"] == []
  assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rounds)
  epoch = rounds[0]["epoch_metrics"][0]
  if strategy == "waal":       # auto: WAAL trains adversarially over the unlabeled pool
    assert epoch["steps"] == 17 and epoch["gradient_penalty"] > 0   # 540 / 32
  else:                        # auto: the baselines train on the labeled set alone
    assert epoch["steps"] == 2 and epoch["adversarial"] == 0.0      # 60 / 32


@pytest.mark.parametrize("strategy", ["margin", "waal"])
def test_h_divergence_ablation(strategy, cache_dir, tmp_path):
  config = _tiny_config(cache_dir, **{"query.strategy": strategy,
                                      "train.adversarial": "h_divergence"})
  results = loop.run(config, str(tmp_path), log=lambda _: None)
  epoch = results["rounds"][0]["epoch_metrics"][0]
  assert epoch["steps"] == 17                       # walks the unlabeled pool
  # The adversarial term is minus the discriminator's cross-entropy: near -log 2 at the
  # start, when the discriminator cannot tell the two sets apart.
  assert -1.0 < epoch["adversarial"] < -0.3
  assert epoch["gradient_penalty"] == 0.0
  assert len(results["rounds"][0]["queried_indices"]) == 30


def test_seeds_of_one_experiment_compile_once(cache_dir, tmp_path):
  """The second seed reuses the first one's trainer and strategy: it lowers nothing
  (the first lowers what earlier tests in the process have not: at least its own
  trainer's and strategy's closures)."""
  lowered = []

  def count(event, duration, **_):
    del duration
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      lowered.append(event)

  jax.monitoring.register_event_duration_secs_listener(count)
  try:
    shared, per_seed = {}, []
    for seed in (5, 6):
      config = _tiny_config(cache_dir, **{"query.strategy": "kmedian"})
      config.seed = seed
      del lowered[:]
      results = loop.run(config, str(tmp_path / f"seed_{seed}"), lambda _: None, shared)
      per_seed.append(len(lowered))
      assert len(results["rounds"]) == 2
  finally:
    jax.monitoring.unregister_event_duration_listener(count)
  assert per_seed[0] > 0 and per_seed[1] == 0, per_seed


def test_a_strategy_s_notes_reach_the_log_and_results_json(cache_dir, tmp_path, monkeypatch):
  random_sampling = strategies.get("random")
  select = random_sampling.select

  def select_with_a_note(self, *args):
    self.note("the batch saturated at pick 3")
    return select(self, *args)

  monkeypatch.setattr(random_sampling, "select", select_with_a_note)
  lines = []
  results = loop.run(_tiny_config(cache_dir, **{"query.strategy": "random"}), str(tmp_path),
                     log=lines.append)
  assert results["rounds"][0]["query_notes"] == ["the batch saturated at pick 3"]
  assert "query_notes" not in results["rounds"][1]      # the last round does not query
  assert "round 0/1: query note: the batch saturated at pick 3" in lines
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["rounds"][0]["query_notes"] == ["the batch saturated at pick 3"]
