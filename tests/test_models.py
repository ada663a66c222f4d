"""The networks of appendix G.2: shapes, parameter counts, heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from waal_jax import models
from waal_jax.errors import UserError


@pytest.mark.parametrize("name,image_shape,feature_dim,features,hidden", [
    ("lenet5", (28, 28, 1), None, 320, 50),
    ("vgg16", (32, 32, 3), None, 512, 50),
    ("vgg16", (96, 96, 3), 4096, 4096, 100),
])
def test_feature_and_head_shapes(name, image_shape, feature_dim, features, hidden):
  nets = models.build(name, num_classes=10, head_hidden=hidden, feature_dim=feature_dim)
  variables = nets.init(jax.random.key(0), image_shape)
  params = variables["params"]
  x = jax.random.normal(jax.random.key(1), (3, *image_shape))
  z, _ = nets.embed(params, variables["batch_stats"], x)
  assert z.shape == (3, features)
  assert nets.logits(params, z).shape == (3, 10)
  g = nets.critic_value(params["critic"], z)
  assert g.shape == (3,) and np.all((g >= 0) & (g <= 1))
  # Heads: features - hidden - 10 and features - hidden - 1 (G.2).
  assert params["classifier"]["Dense_0"]["kernel"].shape == (features, hidden)
  assert params["critic"]["MLPHead_0"]["Dense_1"]["kernel"].shape == (hidden, 1)
  assert bool(variables["batch_stats"]) == (name == "vgg16")


def test_lenet5_parameter_count():
  nets = models.build("lenet5", num_classes=10, head_hidden=50)
  params = nets.init(jax.random.key(0), (28, 28, 1))["params"]
  count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
  assert count(params["features"]) == (5 * 5 * 1 * 10 + 10) + (5 * 5 * 10 * 20 + 20)
  assert count(params["classifier"]) == 320 * 50 + 50 + 50 * 10 + 10
  assert count(params["critic"]) == 320 * 50 + 50 + 50 + 1


def test_dropout_only_in_training():
  nets = models.build("lenet5", num_classes=10, head_hidden=50)
  params = nets.init(jax.random.key(0), (28, 28, 1))["params"]
  z = jnp.ones((4, 320))
  np.testing.assert_array_equal(nets.logits(params, z), nets.logits(params, z))
  a = nets.logits(params, z, train=True, dropout_key=jax.random.key(1))
  b = nets.logits(params, z, train=True, dropout_key=jax.random.key(2))
  assert not np.allclose(a, b)


def test_batch_norm_statistics_update_in_training():
  nets = models.build("vgg16", num_classes=10, head_hidden=50)
  variables = nets.init(jax.random.key(0), (32, 32, 3))
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3)) + 3.0
  _, stats = nets.embed(variables["params"], variables["batch_stats"], x, train=True)
  before = jax.tree.leaves(variables["batch_stats"])[0]
  after = jax.tree.leaves(stats)[0]
  assert not np.allclose(before, after)


def test_unknown_model_is_a_user_error():
  with pytest.raises(UserError, match="model.name"):
    models.build("resnet", num_classes=10, head_hidden=50)
