"""The epoch plan (redundancy trick), the step functions and learning on real data."""

import jax
import numpy as np
import pytest

from conftest import make_settings, needs_fashion_mnist
from waal_jax import data as data_lib
from waal_jax import models
from waal_jax import sharding
from waal_jax import train


def _plan(walk, labeled, unlabeled, capacity, pool, batch_size, seed=0,
          sampling="with_replacement"):
  labeled_padded = np.zeros(capacity, np.int32)
  labeled_padded[:len(labeled)] = labeled
  unlabeled_padded = np.zeros(pool, np.int32)
  unlabeled_padded[:len(unlabeled)] = unlabeled
  plan = train.make_epoch_plan(jax.random.key(seed), labeled_padded, len(labeled),
                               unlabeled_padded, len(unlabeled), batch_size=batch_size,
                               walk_labeled=walk == "labeled", labeled_sampling=sampling)
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


def test_cycled_labeled_batches_pair_position_p_with_labeled_p_mod_l():
  """The authors' data handler: positions p of a shuffled epoch over max(L, U) take
  labeled p mod L and unlabeled p mod U."""
  rng = np.random.default_rng(0)
  pool = 1000
  labeled = rng.choice(pool, 130, replace=False)
  unlabeled = np.setdiff1d(np.arange(pool), labeled)                   # 870
  plan = _plan("unlabeled", labeled, unlabeled, 300, pool, 64, sampling="cycle")
  assert (plan.labeled_mask == plan.unlabeled_mask).all()
  assert plan.unlabeled_mask.sum() == 870                              # the last batch: 38
  visited = plan.unlabeled[plan.unlabeled_mask]
  assert sorted(visited.tolist()) == sorted(unlabeled.tolist())        # each exactly once
  # Each pair is (labeled[p % 130], unlabeled[p]) for one position p < 870.
  position = {u: p for p, u in enumerate(unlabeled)}
  pairs = zip(plan.labeled[plan.labeled_mask], visited)
  assert all(l == labeled[position[u] % 130] for l, u in pairs)
  # So each labeled example comes 870 // 130 = 6 or 7 times, none more (with
  # replacement would give anything from 0 to ~15).
  counts = np.bincount(plan.labeled[plan.labeled_mask], minlength=pool)[labeled]
  assert set(counts.tolist()) == {6, 7} and counts.sum() == 870


def test_cycled_batches_walk_the_labeled_set_when_it_is_larger():
  labeled, unlabeled = np.arange(300), np.arange(300, 400)
  plan = _plan("unlabeled", labeled, unlabeled, 300, 400, 32, sampling="cycle")
  assert plan.labeled_mask.sum() == 300
  assert sorted(plan.labeled[plan.labeled_mask].tolist()) == list(range(300))
  assert set(plan.unlabeled[plan.unlabeled_mask].tolist()) == set(range(300, 400))


def test_learning_rate_schedule():
  step = make_settings(train__epochs=80).train
  assert [step.learning_rate_at(e) for e in (0, 39, 40, 59, 60, 79)] == pytest.approx(
      [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
  constant = make_settings(train__lr_schedule="constant").train
  assert {constant.learning_rate_at(e) for e in range(80)} == {0.01}


def test_epochs_that_grow_from_round_to_round():
  """10 epochs +5 a round: round 2 trains 20, and the step schedule's x0.1 comes at
  its epoch 10 (50% of 20), x0.01 at epoch 15. Without growth every round is round 0."""
  growing = make_settings(train__epochs=10, train__epochs_added_per_round=5).train
  assert [growing.for_round(r).epochs for r in (0, 1, 2, 10)] == [10, 15, 20, 60]
  assert [growing.for_round(2).learning_rate_at(e) for e in (9, 10, 14, 15)] == pytest.approx(
      [0.01, 0.001, 0.001, 0.0001])
  fixed = make_settings(train__epochs=80).train
  assert fixed.for_round(7) is fixed


def _tiny_trainer(splits, preset="paper", epochs=3, **fields):
  settings = make_settings(preset=preset, train__epochs=epochs, train__batch_size=32, **fields)
  nets = models.build(settings.model, 10)
  return train.Trainer(nets, settings.train, splits.spec, sharding.make_mesh(),
                       len(splits.pool_labels), 600)


def _device_data(trainer, splits):
  return trainer.device_data(splits, sharding.pool_blocks(trainer.mesh, splits.pool_images, 256))


@pytest.fixture(scope="module")
def small_fashion(tmp_path_factory):
  cache = str(tmp_path_factory.mktemp("cache"))
  return data_lib.load("fashion_mnist", seed=0, cache_dir=cache, pool_size=2000, val_size=500,
                       log=lambda _: None)


@needs_fashion_mnist
@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_waal_training_learns_real_fashion_mnist(small_fashion, preset):
  trainer = _tiny_trainer(small_fashion, preset=preset, epochs=5,
                          train__lr_schedule="constant")
  data = _device_data(trainer, small_fashion)
  labeled = np.arange(300)
  fit = trainer.fit(jax.random.key(0), data, labeled, 100, log=lambda _: None)
  assert len(fit.epochs) == 5
  # 300 labels, 5 short epochs of 54 steps: 52-62% over four keys for each preset, far
  # above the 10% of chance on the 10K test images.
  assert trainer.accuracy(fit.variables, data.test) > 0.45
  assert all(np.isfinite(e["loss"]) for e in fit.epochs)
  assert fit.epochs[-1]["cross_entropy"] < fit.epochs[0]["cross_entropy"]
  assert fit.epochs[0]["gradient_penalty"] > 0


@pytest.fixture(scope="module")
def small_synthetic(synthetic_cache):
  """800 synthetic pool images (conftest), for tests that need no real pixels."""
  return data_lib.load("fashion_mnist", seed=0, cache_dir=synthetic_cache, log=lambda _: None)


def test_rounds_reuse_one_compilation(small_synthetic):
  trainer = _tiny_trainer(small_synthetic, epochs=2)
  data = _device_data(trainer, small_synthetic)
  for labeled_count in (100, 150, 200):       # three rounds of different sizes
    trainer.fit(jax.random.key(labeled_count), data, np.arange(labeled_count), 50,
                log=lambda _: None)
  assert trainer.step_fn._cache_size() == 1   # pylint: disable=protected-access


@needs_fashion_mnist
def test_supervised_training_ignores_the_unlabeled_pool(small_fashion):
  trainer = _tiny_trainer(small_fashion, train__adversarial="none", epochs=20,
                          query__strategy="random", train__lr_schedule="constant",
                          train__patience=0)
  data = _device_data(trainer, small_fashion)
  fit = trainer.fit(jax.random.key(0), data, np.arange(300), 100, log=lambda _: None)
  assert fit.epochs[0]["steps"] == 10              # 300 labels / 32 per batch
  assert fit.epochs[0]["adversarial"] == 0.0 and fit.epochs[0]["gradient_penalty"] == 0.0
  # 200 steps on 300 labels: 52-56% over four keys, chance is 10%.
  assert trainer.accuracy(fit.variables, data.test) > 0.42


def test_match_pool_gives_supervised_training_as_many_steps_as_waal(small_synthetic):
  plain, matched = (_tiny_trainer(small_synthetic, epochs=1, query__strategy="random",
                                  train__steps_per_epoch=steps) for steps in ("auto", "match_pool"))
  data = _device_data(plain, small_synthetic)
  runs = [t.fit(jax.random.key(0), data, np.arange(300), 100, log=lambda _: None)
          for t in (plain, matched)]
  # 300 labels / 32 = 10 steps; the 500 unlabeled / 32 = 16 steps of a WAAL epoch.
  assert [r.epochs[0]["steps"] for r in runs] == [10, 16]
  assert runs[1].epochs[0]["adversarial"] == 0.0
