"""The library from Python: the model contract on user modules, ActiveLearner, misuse."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import waal_jax
from waal_jax import loop
from waal_jax import models
from waal_jax import settings as settings_lib
from waal_jax.errors import UserError

from conftest import TINY, make_config, with_overrides


class BatchNormOnly(nn.Module):
  """Flax's own BatchNorm, no mask argument: the contract must still keep padding out.
  momentum 0: the running statistics become the last batch's."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.BatchNorm(use_running_average=not train, momentum=0.0)(x)


def test_flax_batch_norm_in_a_user_module_sees_real_rows_only():
  model = waal_jax.Model(BatchNormOnly(), num_classes=2)
  variables = model.init(jax.random.key(0), (2,))
  x = jnp.array([[1.0, 2.0], [3.0, 6.0], [1000.0, -1000.0]])       # the last row: padding
  mask = jnp.array([True, True, False])
  _, stats = model.embed(variables["params"], variables["batch_stats"], x, train=True,
                         mask=mask)
  # Hand-computed over the two real rows: mean (2, 4), biased variance (1, 4).
  np.testing.assert_allclose(stats["BatchNorm_0"]["mean"], [2.0, 4.0], rtol=1e-6)
  np.testing.assert_allclose(stats["BatchNorm_0"]["var"], [1.0, 4.0], rtol=1e-5)
  _, unmasked = model.embed(variables["params"], variables["batch_stats"], x, train=True)
  assert abs(float(unmasked["BatchNorm_0"]["mean"][0]) - 1004.0 / 3) < 1e-3


def test_an_mc_draw_of_the_head_is_its_training_mode_pass():
  """Dropout switched on by the contract draws the masks training would draw."""
  model = waal_jax.Model(waal_jax.MLPExtractor(hidden=(8,)), num_classes=3)
  variables = model.init(jax.random.key(0), (5,))
  z = jax.random.normal(jax.random.key(1), (4, 8))
  key = jax.random.key(2)
  mc = model.logits(variables["params"], z, mc=True, dropout_key=key)
  trained = model.logits(variables["params"], z, train=True, dropout_key=key)
  np.testing.assert_array_equal(mc, trained)
  assert not np.allclose(mc, model.logits(variables["params"], z))


class DropoutThenBatchNorm(nn.Module):
  """`deterministic` instead of `train`, and batch norm after the dropout."""

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    x = nn.Dropout(0.5)(nn.Dense(6)(x), deterministic=deterministic)
    return nn.BatchNorm(use_running_average=deterministic)(x)


def test_mc_features_of_a_user_extractor_drop_units_and_keep_running_statistics():
  model = waal_jax.Model(DropoutThenBatchNorm(), num_classes=2)
  variables = model.init(jax.random.key(0), (4,))
  x = jax.random.normal(jax.random.key(1), (4,))
  z, _ = model.embed(variables["params"], variables["batch_stats"], x[None])
  drawn = model.dropout_features(variables["params"], variables["batch_stats"], x, z[0],
                                 jax.random.key(3))
  # Batch norm at its initial running statistics (mean 0, var 1) is about the identity,
  # so a draw is the dense layer's output with about half the units 0 and the rest x2.
  dense = variables["params"]["features"]["Dense_0"]
  h = np.asarray(x @ dense["kernel"] + dense["bias"])
  drawn = np.asarray(drawn) * np.sqrt(1 + 1e-5)
  dropped = np.isclose(drawn, 0.0, atol=1e-6)
  assert 0 < dropped.sum() < 6
  np.testing.assert_allclose(drawn[~dropped], 2 * h[~dropped], rtol=1e-5)


def test_badge_reads_the_input_of_a_user_classifier_s_last_dense():
  class Head(nn.Module):
    @nn.compact
    def __call__(self, z):            # no train argument at all
      hidden = jnp.tanh(nn.Dense(4, name="hidden")(z))
      return nn.Dense(3, name="out")(hidden)

  model = waal_jax.Model(waal_jax.MLPExtractor(hidden=(5,)), classifier=Head())
  params = model.init(jax.random.key(0), (2,))["params"]
  z = jax.random.normal(jax.random.key(1), (3, 5))
  first = params["classifier"]["hidden"]
  np.testing.assert_allclose(model.last_layer_input(params, z),
                             np.tanh(z @ first["kernel"] + first["bias"]), rtol=1e-5)


class Unflattened(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Conv(2, (3, 3))(x)


def _learner(**kwargs):
  rng = np.random.default_rng(0)
  pool = kwargs.pop("pool", rng.normal(size=(60, 5)).astype(np.float32))
  model = kwargs.pop("model", waal_jax.Model(waal_jax.MLPExtractor(hidden=(8,)), num_classes=3))
  labels = np.full(len(pool), -1)
  labels[:6] = [0, 1, 2, 0, 1, 2]
  kwargs.setdefault("labels", labels)
  return waal_jax.ActiveLearner(model, pool, train=waal_jax.TrainSettings(epochs=1), **kwargs)


@pytest.mark.parametrize("make, message", [
    (lambda: waal_jax.Model("not a module", num_classes=3), r"Model.extractor: 'not a module'"),
    (lambda: waal_jax.Model(waal_jax.MLPExtractor()), r"Model.num_classes=0: give the number"),
    (lambda: _learner(model=waal_jax.Model(Unflattened(), num_classes=3),
                      pool=np.zeros((10, 8, 8, 1), np.uint8)),
     r"Model.extractor: Unflattened maps inputs \(8, 8, 1\) to features \(8, 8, 2\)"),
    (lambda: _learner(model=waal_jax.Model(models.LeNet5(), num_classes=3)),
     r"Model.extractor: LeNet5 fails on inputs of shape \(5,\)"),
    (lambda: _learner(pool=np.zeros((60,), np.float32)), r"pool: expected examples of shape"),
    (lambda: _learner(labels=np.full(60, 3)), r"labels: label 3 at position 0 is out of range"),
    (lambda: _learner().add_labels([0], [1]), r"indices: 0 is already labeled"),
    (lambda: _learner().add_labels([7, 7], [1, 1]), r"indices: 7 is given twice"),
    (lambda: _learner().add_labels([60], [1]), r"indices: 60 is not in the pool of 60"),
    (lambda: _learner().query(5), r"query: no trained network yet; call fit\(\) first"),
    (lambda: _learner().predict(np.zeros((2, 5), np.float32)),
     r"predict: no trained network yet; call fit\(\) first"),
    (lambda: _learner(strategy="bogus"), r"query.strategy='bogus': unknown strategy"),
    (lambda: _learner(query_options={"selection": -1.0}), r"query.selection=-1.0: must be >= 0"),
    (lambda: _learner(strategy="margin", query_options={"selection": 1.0}),
     r"query.selection: not an option of query.strategy=margin"),
    (lambda: _learner(validation=(np.zeros((4, 6), np.float32), np.zeros(4, int))),
     r"validation x: float32 of shape \(6,\) per example; the pool's is float32 of shape \(5,\)"),
])
def test_misuse_is_one_user_error_naming_what_is_wrong(make, message):
  with pytest.raises(UserError, match=message) as raised:
    make()
  assert "\n" not in str(raised.value)


@pytest.mark.parametrize("strategy", waal_jax.strategies.names())
def test_every_strategy_queries_a_user_model_on_vectors(strategy):
  learner = _learner(strategy=strategy)
  learner.fit()
  picks = learner.query(7)
  assert len(set(picks.tolist())) == 7 and not np.isin(picks, np.arange(6)).any()
  assert picks.min() >= 0 and picks.max() < 60


def test_predict_gives_the_classes_accuracy_counts():
  learner = _learner()
  learner.fit()
  x = np.random.default_rng(1).normal(size=(23, 5)).astype(np.float32)   # not a batch multiple
  y = np.arange(23) % 3
  classes = learner.predict(x)
  assert classes.shape == (23,) and set(classes.tolist()) <= {0, 1, 2}
  assert np.mean(classes == y) == pytest.approx(learner.accuracy(x, y))


def test_save_and_restore_continue_with_the_same_picks(tmp_path):
  learner = _learner(query_size=4)
  learner.fit()
  first = learner.query()
  learner.add_labels(first, np.arange(4) % 3)
  learner.save(str(tmp_path))
  learner.fit()
  expected = learner.query()
  restored = _learner(query_size=4, labels=None).restore(str(tmp_path))
  assert restored.labeled.tolist() == list(range(6)) + first.tolist()
  restored.fit()
  np.testing.assert_array_equal(restored.query(), expected)


def test_max_labels_bounds_the_labels_a_learner_holds():
  learner = _learner(max_labels=10, query_size=4)     # 6 labels given
  learner.fit()
  picks = learner.query()
  learner.add_labels(picks, np.zeros(4, int))         # 10: at the bound
  with pytest.raises(UserError, match=r"indices: 10 \+ 1 labels exceed max_labels=10"):
    learner.add_labels(learner.unlabeled[:1], [0])
  with pytest.raises(UserError, match=r"max_labels=61: must be an integer in 1..60"):
    _learner(max_labels=61)


@pytest.mark.parametrize("strategy", ["waal", "margin"])
def test_the_public_learner_buys_what_the_command_line_buys(tmp_path, synthetic_cache,
                                                            strategy):
  """The command line's rounds, repeated through the public API alone on the same
  arrays: the same picks and test accuracy in every round."""
  config = with_overrides(make_config(), [f"--config.data.cache_dir={synthetic_cache}",
                                          *TINY, f"--config.query.strategy={strategy}"])
  results = loop.run(config, str(tmp_path / "w"), log=lambda _: None)
  settings = settings_lib.resolve(config)
  splits = loop.load_splits(settings.data, settings.seed)
  al = settings.al
  learner = waal_jax.ActiveLearner(
      models.build(settings.model, 10), splits.pool_images, strategy=strategy,
      train=settings.train, validation=(splits.val_images, splits.val_labels),
      query_size=al.query_size, mean=splits.spec.mean, std=splits.spec.std,
      seed=settings.seed, query_batch_size=settings.query.batch_size,
      max_labels=al.final_budget, log=lambda _: None)
  first = loop.initial_labeled(jax.random.key(settings.seed), len(splits.pool_labels),
                               al.initial_labeled)
  learner.add_labels(first, splits.pool_labels[first])
  for record in results["rounds"]:
    learner.fit()
    assert learner.accuracy(splits.test_images, splits.test_labels) == record["test_accuracy"]
    if record["round"] < al.rounds:
      picks = learner.query()
      assert picks.tolist() == record["queried_indices"]
      learner.add_labels(picks, splits.pool_labels[picks])
  assert len(learner.labeled) == results["rounds"][-1]["num_labeled"]


def test_margin_on_plain_log_probabilities_picks_the_closest_calls():
  probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.55, 0.45], [0.7, 0.3]])
  labeled = np.array([False, False, True, False, False])
  # Margins 0.8, 0.0, (0.2, labeled), 0.1, 0.4: the two smallest unlabeled are 1 and 3.
  picks = waal_jax.strategies.query("margin", 2, log_probs=np.log(probs), labeled=labeled)
  assert picks.tolist() == [1, 3]


@pytest.mark.parametrize("strategy", ["margin", "waal", "coreset", "entropy"])
def test_a_strategy_picks_the_same_from_arrays_as_from_the_model(strategy):
  """The outputs a user computes and passes in take the model's path: same picks."""
  learner = _learner(strategy=strategy)
  learner.fit()
  picks = learner.query(7)
  keys = jax.random.split(jax.random.key(0), len(learner.pool))
  outputs = learner.strategy.batch_outputs(learner.variables, jnp.asarray(learner.pool), keys)
  is_labeled = learner.labels >= 0
  from_arrays = waal_jax.strategies.query(
      strategy, 7, labeled=is_labeled, **{k: np.asarray(v) for k, v in outputs.items()})
  np.testing.assert_array_equal(from_arrays, picks)


@pytest.mark.parametrize("call, message", [
    (lambda lp: waal_jax.strategies.query("margin", 2, log_probs=np.exp(lp)),
     r"log_probs: rows must be log-probabilities"),
    (lambda lp: waal_jax.strategies.query("waal", 2, log_probs=lp),
     r"query\('waal'\): takes log_probs .* critic .*; critic missing"),
    (lambda lp: waal_jax.strategies.query("deepfool", 2, log_probs=lp),
     r"query\('deepfool'\): needs the model itself"),
    (lambda lp: waal_jax.strategies.query("margin", 9, log_probs=lp),
     r"k=9: must be an integer in 1..6"),
    (lambda lp: waal_jax.strategies.query("margin", 2, log_probs=lp, labeled=np.ones(5, bool)),
     r"labeled: expected 6 booleans"),
    (lambda lp: waal_jax.strategies.query("margin", 2, log_probs=lp * [1, 1, np.nan]),
     r"log_probs: holds a NaN or infinite value"),
    (lambda lp: waal_jax.strategies.query("dbal", 2, mc_log_probs=np.stack([lp, lp + 0.01], 1)),
     r"mc_log_probs: rows must be log-probabilities \(log-sum-exp 0, here up to 0.01\)"),
    (lambda lp: waal_jax.strategies.query("waal", 2, log_probs=lp, critic=np.full(6, 1.5)),
     r"critic: values must lie in \[0, 1\]"),
])
def test_misused_array_queries_are_one_user_error(call, message):
  log_probs = np.log(np.full((6, 3), 1 / 3))
  with pytest.raises(UserError, match=message):
    call(log_probs)


def test_repeated_array_queries_compile_nothing_new():
  """A user querying round after round reuses what the first query compiled."""
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(300, 4, 5))
  mc_log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  compiled = []

  def count(event, duration, **_):
    del duration
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      compiled.append(event)

  first = waal_jax.strategies.query("dbal", 10, mc_log_probs=mc_log_probs)
  jax.monitoring.register_event_duration_secs_listener(count)
  try:
    again = waal_jax.strategies.query("dbal", 10, mc_log_probs=mc_log_probs)
  finally:
    jax.monitoring.unregister_event_duration_listener(count)
  assert again.tolist() == first.tolist() and not compiled


def test_a_strategy_of_one_class_is_a_config_field_an_array_query_and_a_learner_query():
  """A plugin: its options join the settings schema, and both paths reach its choose."""
  from waal_jax import fields, settings  # pylint: disable=g-import-not-at-top
  from waal_jax.strategies import base  # pylint: disable=g-import-not-at-top

  class LowestCritic(base.ScoreStrategy):
    name = "lowest_critic_test"
    needs_critic = True
    inputs = ("critic",)
    config_fields = {"critic_sign": fields.Option(1.0, fields.Float(-1.0, 1.0), "test: sign")}

    def scores(self, outputs):
      return self.options["critic_sign"] * outputs["critic"]

  base.register(LowestCritic)
  try:
    assert settings.default("query.critic_sign") == 1.0
    picks = waal_jax.strategies.query("lowest_critic_test", 2,
                                      critic=np.array([0.9, 0.1, 0.5, 0.2]),
                                      options={"critic_sign": -1.0})
    assert picks.tolist() == [0, 2]
    learner = _learner(strategy="lowest_critic_test")
    learner.fit()
    assert len(set(learner.query(3).tolist())) == 3
  finally:
    del base._REGISTRY["lowest_critic_test"]  # pylint: disable=protected-access
