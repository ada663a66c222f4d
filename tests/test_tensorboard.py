"""The TensorBoard event files a run writes, read back as `tensorboard --logdir` reads
them; and al.stop_when_stable ending a run.

Plumbing, on synthetic Fashion-MNIST-shaped images (conftest).
"""

import json
import os

import pytest

from conftest import tiny_loop_config, write_synthetic_fashion_mnist
from experiments import tensorboard_export
from waal_jax import loop
from waal_jax import seeds
from waal_jax import tensorboard_writer

# Fashion-MNIST's classes have no names in the dataset's spec: they are 0-9.
CLASS_TAGS = [str(c) for c in range(10)]


def _tiny_config(cache_dir, **overrides):
  """Two epochs a round (so that each round draws an epoch curve) and a small stop set."""
  return tiny_loop_config(cache_dir, **{"train.epochs": 2, "al.stop_set_size": 100,
                                        **overrides})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return write_synthetic_fashion_mnist(str(tmp_path_factory.mktemp("cache")))


def _read_events(logdir: str):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  events = event_accumulator.EventAccumulator(logdir, size_guidance={
      event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0})
  events.Reload()
  return events


def _scalars(events, tag):
  return [(e.step, e.value) for e in events.Scalars(tag)]


def _hparams(events) -> dict:
  from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=g-import-not-at-top
  content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
  start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
  return {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
          for name, value in start.hparams.items()}


def assert_every_tag_drawn(workdir: str, adversarial: bool = True) -> None:
  """The event files of the two-round run in `workdir` (two epochs a round) hold every
  tag, at the steps and with the values of its results.json."""
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  rounds = results["rounds"]
  assert [len(r["epoch_metrics"]) for r in rounds] == [2, 2]
  events = _read_events(workdir)
  tags = set(events.Tags()["scalars"])
  critic = {"epoch/wasserstein_estimate", "epoch/gradient_penalty"} if adversarial else set()
  expected = (set(tensorboard_writer.EPOCH_SCALARS.values()) | critic
              | set(tensorboard_writer.ROUND_SCALARS.values())
              | {"per_class_accuracy/" + name for name in CLASS_TAGS})
  assert tags == expected
  assert events.Tags()["histograms"] == ["queried_classes"]

  # Per epoch: the run's epochs 1-2 are round 0's, 3-4 round 1's, with its records' values.
  epochs = [e for r in rounds for e in r["epoch_metrics"]]
  assert _scalars(events, "epoch/loss") == [
      (k + 1, pytest.approx(e["loss"], rel=1e-6)) for k, e in enumerate(epochs)]
  if adversarial:
    assert _scalars(events, "epoch/wasserstein_estimate") == [
        (k + 1, pytest.approx(e["adversarial"], rel=1e-6)) for k, e in enumerate(epochs)]
  # The step schedule over 2 epochs: x0.1 from epoch index 1 (50%) on.
  assert [v for _, v in _scalars(events, "epoch/learning_rate")] == pytest.approx(
      [0.01, 0.001, 0.01, 0.001])
  # Per round, at its labels.
  first, second = (r["num_labeled"] for r in rounds)
  assert _scalars(events, "round/test_accuracy") == [
      (first, pytest.approx(rounds[0]["test_accuracy"])),
      (second, pytest.approx(rounds[1]["test_accuracy"]))]
  assert _scalars(events, "round/test_ece") == [
      (r["num_labeled"], pytest.approx(r["test_ece"], rel=1e-6)) for r in rounds]
  assert _scalars(events, "round/stop_set_kappa") == [
      (second, pytest.approx(rounds[1]["stop_set_kappa"], rel=1e-6))]    # none in round 0
  assert _scalars(events, "per_class_accuracy/1") == [
      (r["num_labeled"], pytest.approx(r["test_per_class_accuracy"][1], rel=1e-6))
      for r in rounds if r["test_per_class_accuracy"][1] is not None]
  # The queried batch of round 0, one bucket per class; the last round buys none.
  (histogram,) = events.Histograms("queried_classes")
  assert histogram.step == first
  assert histogram.histogram_value.bucket == rounds[0]["queried_class_counts"]
  assert histogram.histogram_value.num == second - first
  # The config as hyperparameters.
  hparams = _hparams(events)
  assert hparams["query.strategy"] == results["config"]["query"]["strategy"]
  assert hparams["al.query_size"] == float(second - first)
  assert hparams["data.mean"] == "[]"
  assert hparams["tensorboard"] is True


def test_a_two_round_run_draws_every_tag_and_its_results_draw_the_same(cache_dir, tmp_path):
  # (The README's quick command, a two-round WAAL run, is checked the same way in
  # test_docs; this is a baseline's, without a critic.) stable_kappa=1: only identical
  # predictions would stop it; they are not identical.
  workdir = str(tmp_path / "run")
  config = _tiny_config(cache_dir, **{"query.strategy": "margin", "al.stop_when_stable": 1,
                                      "al.stable_kappa": 1.0})
  results = loop.run(config, workdir, log=lambda _: None)
  assert results["rounds"][1]["stop_set_kappa"] < 1.0
  assert "stopped_when_stable" not in results["rounds"][1]
  assert_every_tag_drawn(workdir, adversarial=False)
  # A committed run drawn again from its results.json: the same scalars.
  again = str(tmp_path / "again")
  assert tensorboard_export.export([workdir], again, log=lambda _: None) == 1
  live, drawn = _read_events(workdir), _read_events(again)
  assert set(drawn.Tags()["scalars"]) == set(live.Tags()["scalars"])
  for tag in live.Tags()["scalars"]:
    assert _scalars(drawn, tag) == _scalars(live, tag), tag
  with pytest.raises(ValueError, match="holds event files already"):
    tensorboard_export.export([workdir], again, log=lambda _: None)


def test_no_event_files_with_tensorboard_off(cache_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = _tiny_config(cache_dir, **{"query.strategy": "random"})
  config.tensorboard = False
  loop.run(config, workdir, log=lambda _: None)
  assert not [f for f in os.listdir(workdir) if "tfevents" in f]


def test_a_stable_run_ends_early_and_stays_ended(cache_dir, tmp_path):
  # stable_kappa=-1: every kappa counts, so with K=2 the signal fires at round 2 (rounds
  # 1 and 2 have one; round 0 has none), which buys nothing, though al.rounds=4.
  workdir = str(tmp_path / "run")
  lines = []
  config = _tiny_config(cache_dir, **{"query.strategy": "random", "al.rounds": 4,
                                      "al.stop_when_stable": 2, "al.stable_kappa": -1.0,
                                      "train.epochs": 1})
  results = loop.run(config, workdir, log=lines.append)
  rounds = results["rounds"]
  assert [r["num_labeled"] for r in rounds] == [60, 90, 120]
  assert [len(r["queried_indices"]) for r in rounds] == [30, 30, 0]
  assert [r.get("stopped_when_stable", False) for r in rounds] == [False, False, True]
  assert any("the run ends at round 2 with 120 labels" in line for line in lines)
  # Run again: the run is finished, not continued.
  again = loop.run(config, workdir, log=lambda _: None)
  assert [r["num_labeled"] for r in again["rounds"]] == [60, 90, 120]


def test_vmapped_seeds_stop_as_one_run_does(cache_dir, tmp_path):
  config = _tiny_config(cache_dir, **{"query.strategy": "random", "al.rounds": 3,
                                      "al.stop_when_stable": 1, "al.stable_kappa": -1.0,
                                      "train.epochs": 1})
  config.seeds, config.parallel_seeds, config.parallel_seeds_mode = 2, 2, "vmap"
  everything = seeds.run_seeds(config, str(tmp_path / "tree"), log=lambda _: None)
  for results in everything:
    assert [r["num_labeled"] for r in results["rounds"]] == [60, 90]
    assert results["rounds"][1]["stopped_when_stable"] is True


def test_stopping_needs_a_stop_set(cache_dir, tmp_path):
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  config = _tiny_config(cache_dir, **{"al.stop_when_stable": 2, "al.stop_set_size": 0})
  with pytest.raises(UserError, match="al.stop_when_stable"):
    loop.run(config, str(tmp_path / "run"), log=lambda _: None)
  assert not os.path.exists(str(tmp_path / "run" / "config.json"))
