"""The epoch plan (redundancy trick), the step functions and learning on real data."""

import dataclasses

import jax
import numpy as np
import pytest

from conftest import needs_fashion_mnist
from waal_jax import data as data_lib
from waal_jax import models
from waal_jax import sharding
from waal_jax import train


def _plan(walk, labeled, unlabeled, capacity, pool, batch_size, seed=0):
  labeled_padded = np.zeros(capacity, np.int32)
  labeled_padded[:len(labeled)] = labeled
  unlabeled_padded = np.zeros(pool, np.int32)
  unlabeled_padded[:len(unlabeled)] = unlabeled
  plan = train.make_epoch_plan(jax.random.key(seed), labeled_padded, len(labeled),
                               unlabeled_padded, len(unlabeled), batch_size=batch_size,
                               walk=walk)
  return jax.device_get(plan)


def test_epoch_visits_every_unlabeled_example_once():
  rng = np.random.default_rng(0)
  pool = 1000
  labeled = rng.choice(pool, 130, replace=False)
  unlabeled = np.setdiff1d(np.arange(pool), labeled)         # 870: not a multiple of 64
  plan = _plan("unlabeled", labeled, unlabeled, 300, pool, 64)
  steps = -(-len(unlabeled) // 64)
  visited = plan.unlabeled[plan.unlabeled_mask]
  assert sorted(visited.tolist()) == sorted(unlabeled.tolist())   # each exactly once
  assert plan.unlabeled_mask[:steps].sum() == len(unlabeled)
  assert not plan.unlabeled_mask[steps:].any()               # padding steps are empty
  # Every step pairs a full batch of 64 labeled examples, drawn from the labeled set.
  assert plan.labeled.shape == plan.unlabeled.shape == (pool // 64 + 1, 64)
  assert plan.labeled_mask.all()
  assert set(plan.labeled[:steps].ravel().tolist()) <= set(labeled.tolist())
  # ... with replacement: 14 x 64 draws from 130 examples must repeat some.
  assert len(set(plan.labeled[:steps].ravel().tolist())) < steps * 64


def test_epoch_order_is_random_and_keyed():
  labeled, unlabeled = np.arange(10), np.arange(10, 200)
  a = _plan("unlabeled", labeled, unlabeled, 20, 200, 16, seed=0)
  b = _plan("unlabeled", labeled, unlabeled, 20, 200, 16, seed=0)
  c = _plan("unlabeled", labeled, unlabeled, 20, 200, 16, seed=1)
  np.testing.assert_array_equal(a.unlabeled, b.unlabeled)
  assert not np.array_equal(a.unlabeled, c.unlabeled)
  assert not np.array_equal(a.unlabeled[a.unlabeled_mask], unlabeled)   # shuffled


def test_labeled_walk_for_supervised_training():
  labeled, unlabeled = np.arange(50), np.arange(50, 300)
  plan = _plan("labeled", labeled, unlabeled, 100, 300, 16)
  assert sorted(plan.labeled[plan.labeled_mask].tolist()) == list(range(50))
  assert not plan.unlabeled_mask.any()


def test_learning_rate_schedule():
  base = dict(adversarial="wasserstein", epochs=80, batch_size=64, learning_rate=0.01,
              momentum=0.5, mu=0.01, gradient_penalty=2.0, patience=10, augment=False,
              eval_batch_size=100)
  paper = train.TrainSettings(variant="paper", **base)
  assert [paper.learning_rate_at(e) for e in (0, 39, 40, 59, 60, 79)] == pytest.approx(
      [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
  reference = train.TrainSettings(variant="reference", **base)
  assert {reference.learning_rate_at(e) for e in range(80)} == {0.01}
  assert paper.early_stopping and not reference.early_stopping


def _tiny_trainer(splits, variant="paper", adversarial="wasserstein", epochs=3):
  nets = models.build("lenet5", num_classes=10, head_hidden=50)
  settings = train.TrainSettings(
      adversarial=adversarial, variant=variant, epochs=epochs, batch_size=32,
      learning_rate=0.01, momentum=0.5, mu=0.01, gradient_penalty=2.0, patience=10,
      augment=False, eval_batch_size=250)
  return train.Trainer(nets, settings, splits.spec, sharding.make_mesh(),
                       len(splits.pool_labels), 600)


@pytest.fixture(scope="module")
def small_fashion(tmp_path_factory):
  cache = str(tmp_path_factory.mktemp("cache"))
  return data_lib.load("fashion_mnist", seed=0, cache_dir=cache, pool_size=2000, val_size=500,
                       log=lambda _: None)


@needs_fashion_mnist
@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_waal_training_learns_real_fashion_mnist(small_fashion, variant):
  trainer = _tiny_trainer(small_fashion, variant=variant)
  data = trainer.device_data(small_fashion)
  labeled = np.arange(300)
  fit = trainer.fit(jax.random.key(0), data, labeled, 100, log=lambda _: None)
  assert len(fit.epochs) == 3
  # 300 labels, 3 short epochs: far above the 10% of chance on the 10K test images.
  assert trainer.accuracy(fit.variables, data.test) > 0.6
  assert all(np.isfinite(e["loss"]) for e in fit.epochs)
  assert fit.epochs[-1]["cross_entropy"] < fit.epochs[0]["cross_entropy"]
  assert fit.epochs[0]["gradient_penalty"] > 0


@needs_fashion_mnist
def test_rounds_reuse_one_compilation(small_fashion):
  trainer = _tiny_trainer(small_fashion, epochs=1)
  data = trainer.device_data(small_fashion)
  for labeled_count in (100, 150, 200):       # three rounds of different sizes
    trainer.fit(jax.random.key(labeled_count), data, np.arange(labeled_count), 50,
                log=lambda _: None)
  assert trainer.step_fn._cache_size() == 1   # pylint: disable=protected-access


@needs_fashion_mnist
def test_supervised_training_ignores_the_unlabeled_pool(small_fashion):
  trainer = _tiny_trainer(small_fashion, adversarial="none", epochs=20)
  data = trainer.device_data(small_fashion)
  fit = trainer.fit(jax.random.key(0), data, np.arange(300), 100, log=lambda _: None)
  assert fit.epochs[0]["steps"] == 10              # 300 labels / 32 per batch
  assert fit.epochs[0]["adversarial"] == 0.0 and fit.epochs[0]["gradient_penalty"] == 0.0
  # 200 steps on 300 labels: 61-67% over four seeds, chance is 10%.
  assert trainer.accuracy(fit.variables, data.test) > 0.55


@needs_fashion_mnist
def test_match_pool_gives_supervised_training_as_many_steps_as_waal(small_fashion):
  settings = dict(adversarial="none", epochs=1)
  plain = _tiny_trainer(small_fashion, **settings)
  matched = train.Trainer(plain.nets, dataclasses.replace(plain.settings,
                                                          steps_per_epoch="match_pool"),
                          plain.spec, plain.mesh, plain.num_pool, plain.labeled_capacity)
  data = plain.device_data(small_fashion)
  runs = [t.fit(jax.random.key(0), data, np.arange(300), 100, log=lambda _: None)
          for t in (plain, matched)]
  # 300 labels / 32 = 10 steps; the 1,700 unlabeled / 32 = 54 steps of a WAAL epoch.
  assert [r.epochs[0]["steps"] for r in runs] == [10, 54]
  assert runs[1].epochs[0]["adversarial"] == 0.0
