"""The networks of appendix G.2: shapes, parameter counts, heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_nets
from waal_jax import models


@pytest.mark.parametrize("config,image_shape,features,hidden", [
    ("fashion_mnist", (28, 28, 1), 320, 50),
    ("cifar10", (32, 32, 3), 512, 50),
    ("stl10", (96, 96, 3), 4096, 100),
])
def test_feature_and_head_shapes(config, image_shape, features, hidden):
  nets = make_nets(config)
  name = "lenet5" if config == "fashion_mnist" else "vgg16"
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
  nets = make_nets()
  params = nets.init(jax.random.key(0), (28, 28, 1))["params"]
  count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
  assert count(params["features"]) == (5 * 5 * 1 * 10 + 10) + (5 * 5 * 10 * 20 + 20)
  assert count(params["classifier"]) == 320 * 50 + 50 + 50 * 10 + 10
  assert count(params["critic"]) == 320 * 50 + 50 + 50 + 1


def test_dropout_only_in_training():
  nets = make_nets()
  params = nets.init(jax.random.key(0), (28, 28, 1))["params"]
  z = jnp.ones((4, 320))
  np.testing.assert_array_equal(nets.logits(params, z), nets.logits(params, z))
  a = nets.logits(params, z, train=True, dropout_key=jax.random.key(1))
  b = nets.logits(params, z, train=True, dropout_key=jax.random.key(2))
  assert not np.allclose(a, b)


def test_batch_norm_statistics_update_in_training():
  nets = make_nets("cifar10")
  variables = nets.init(jax.random.key(0), (32, 32, 3))
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3)) + 3.0
  _, stats = nets.embed(variables["params"], variables["batch_stats"], x, train=True)
  before = jax.tree.leaves(variables["batch_stats"])[0]
  after = jax.tree.leaves(stats)[0]
  assert not np.allclose(before, after)


@pytest.mark.parametrize("conv_shape", [((8, 28, 28, 1), 10, 6), ((8, 12, 12, 10), 20, 4)])
def test_banded_conv_pool_equals_xla_with_gradients(conv_shape):
  (shape, features, block) = conv_shape
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape).astype(np.float32)
  x[:, :8, :8] = 0.0                       # a constant patch: ties in the pooling windows
  layer = models.ConvPool(features, block=block)
  variables = layer.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda v: v + 0.1, variables)     # a nonzero bias too
  banded = lambda v, x: layer.apply(v, x)
  xla = lambda v, x: models.ConvPool(features, conv="xla").apply(v, x)
  np.testing.assert_allclose(banded(variables, x), xla(variables, x), atol=2e-5)
  cotangent = rng.normal(size=banded(variables, x).shape).astype(np.float32)
  grads = [jax.grad(lambda v, x: jnp.sum(f(v, x) * cotangent), argnums=(0, 1))(variables, x)
           for f in (banded, xla)]
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4 * np.abs(b).max())


def test_banded_lenet_equals_xla_lenet_on_real_images():
  from waal_jax import data  # pylint: disable=g-import-not-at-top
  raw = data._read_fashion_mnist_idx(data.DEBIAN_FASHION_MNIST_DIR)   # pylint: disable=protected-access
  if raw is None:
    pytest.skip("needs `apt-get install dataset-fashion-mnist`")
  x = data.normalize(jnp.asarray(raw.test_images[:64]), data.get_spec("fashion_mnist"))
  nets = {conv: make_nets(model__conv=conv) for conv in ("banded", "xla")}
  params = nets["banded"].init(jax.random.key(3), (28, 28, 1))["params"]

  def loss(conv, params, x):
    z, _ = nets[conv].embed(params, {}, x)
    return jnp.sum(jax.nn.log_softmax(nets[conv].logits(params, z))[:, 3])

  assert loss("banded", params, x) == pytest.approx(float(loss("xla", params, x)), rel=1e-5)
  for argnum in (1, 2):                    # parameters, and the input (DeepFool)
    a = jax.grad(loss, argnums=argnum)("banded", params, x)
    b = jax.grad(loss, argnums=argnum)("xla", params, x)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4 * np.abs(v).max())


# Every map of at most 4 positions takes the patch-matmul path (larger ones are XLA's).
@pytest.mark.parametrize("h,w", [(1, 1), (2, 2), (1, 4), (2, 1)])
def test_conv_same_patch_path_equals_xla_with_gradients(h, w):
  rng = np.random.default_rng(h * 10 + w)
  x = jnp.asarray(rng.normal(size=(3, h, w, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 5, 7)), jnp.float32)
  d_y = jnp.asarray(rng.normal(size=(3, h, w, 7)), jnp.float32)
  xla = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(models.conv_same(x, kernel), xla(x, kernel), rtol=1e-5, atol=1e-5)
  ours = jax.vjp(models.conv_same, x, kernel)[1](d_y)
  theirs = jax.vjp(xla, x, kernel)[1](d_y)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _layers(params, path=()):
  """(path, kernel, bias or None) of every conv / dense layer."""
  if "kernel" in params:
    yield path, np.asarray(params["kernel"]), params.get("bias")
    return
  for name, child in params.items():
    if isinstance(child, dict):
      yield from _layers(child, path + (name,))


@pytest.mark.parametrize("config,image_shape", [("fashion_mnist", (28, 28, 1)),
                                                ("cifar10", (32, 32, 3))])
def test_initial_weights_follow_pytorchs_rule_layer_by_layer(config, image_shape):
  """PyTorch's Conv2d / Linear: weights and biases uniform in +-1/sqrt(fan_in), so the
  weights' standard deviation is 1/sqrt(3 fan_in) (LeCun normal: 1/sqrt(fan_in))."""
  params = make_nets(config).init(jax.random.key(0), image_shape)["params"]
  layers = list(_layers(params))
  assert len(layers) == (2 + 4 if config == "fashion_mnist" else 13 + 4)
  for path, kernel, bias in layers:
    fan_in = int(np.prod(kernel.shape[:-1]))
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(kernel).max() <= bound * (1 + 1e-6), path
    # Sampling error of the std of n uniform draws: about 0.45 / sqrt(n) relative.
    tolerance = 4 * 0.45 / np.sqrt(kernel.size)
    assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=tolerance), path
    if bias is not None:
      bias = np.asarray(bias)
      assert 0.3 * bound < np.abs(bias).max() <= bound * (1 + 1e-6), path
  lecun = make_nets(config, model__init="lecun").init(jax.random.key(0), image_shape)["params"]
  for (path, kernel, _), (_, pytorch_kernel, _) in zip(_layers(lecun), layers):
    if kernel.size > 1000:
      assert kernel.var() / pytorch_kernel.var() == pytest.approx(3.0, rel=0.15), path


def test_batch_norm_is_pytorchs_and_ignores_masked_rows():
  """Training mode: normalise with the batch's biased variance; the running averages
  move by 0.1 towards the mean and the UNBIASED variance; padding rows count nowhere."""
  rng = np.random.default_rng(0)
  x = rng.normal(2.0, 3.0, (5, 2, 2, 3)).astype(np.float32)
  padded = np.concatenate([x, np.full((3, 2, 2, 3), 100.0, np.float32)])
  mask = np.arange(8) < 5
  layer = models.BatchNorm()
  variables = layer.init(jax.random.key(0), x, train=False)
  y, updates = layer.apply(variables, padded, True, mask, mutable=["batch_stats"])
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  np.testing.assert_allclose(y[:5], (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
  n = 5 * 2 * 2
  stats = updates["batch_stats"]
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
  # Evaluation mode uses the running averages.
  y_eval = layer.apply({"params": variables["params"], "batch_stats": stats}, x, False)
  np.testing.assert_allclose(y_eval, (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5),
                             rtol=1e-4, atol=1e-5)


def _equations(fn, *args, name: str) -> list:
  """Every equation of primitive `name` in fn's jaxpr, sub-jaxprs included."""
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == name:
        found.append(eqn)
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          if hasattr(sub, "eqns"):
            walk(sub)
          elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
            walk(sub.jaxpr)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def _primitive_count(fn, *args, name: str) -> int:
  return len(_equations(fn, *args, name=name))


@pytest.mark.parametrize("platform,lenet_convs,vgg_convs", [
    ("cpu", 0, 10),   # banded LeNet kernels; VGG's three 2x2-map layers as patch products
    ("gpu", 2, 13),   # XLA's convolutions everywhere
    ("tpu", 2, 13),
])
def test_auto_kernels_follow_the_platform(platform, lenet_convs, vgg_convs):
  from conftest import make_settings  # pylint: disable=g-import-not-at-top
  for config, image_shape, expected in (("fashion_mnist", (28, 28, 1), lenet_convs),
                                        ("cifar10", (32, 32, 3), vgg_convs)):
    model = make_settings(config).model
    assert model.conv == "auto"                                   # the default
    nets = models.build(model, 10, platform=platform)
    variables = nets.init(jax.random.key(0), image_shape)
    x = jnp.zeros((2, *image_shape))
    embed = lambda v, x: nets.embed(v["params"], v["batch_stats"], x)[0]
    assert _primitive_count(embed, variables, x, name="conv_general_dilated") == expected
  # An explicit choice holds on any platform.
  assert models.resolve_conv("xla", "cpu") == "xla"
  assert models.resolve_conv("banded", "gpu") == "banded"


def test_bfloat16_products_accumulate_in_float32_close_to_float32():
  f32 = make_nets()
  bf16 = make_nets(model__matmul_dtype="bfloat16")
  variables = f32.init(jax.random.key(0), (28, 28, 1))
  x = jax.random.normal(jax.random.key(1), (64, 28, 28, 1))

  def logits(nets, params):
    z, _ = nets.embed(params, variables["batch_stats"], x)
    return nets.logits(params, z)

  products = _equations(lambda p: logits(bf16, p), variables["params"], name="dot_general")
  assert len(products) == 4   # two banded convs, two dense layers
  for eqn in products:
    assert [v.aval.dtype for v in eqn.invars] == [jnp.bfloat16, jnp.bfloat16]
    assert eqn.params["preferred_element_type"] == jnp.float32
  exact, mixed = logits(f32, variables["params"]), logits(bf16, variables["params"])
  assert mixed.dtype == jnp.float32
  # bfloat16 keeps 8 bits of mantissa: logits agree to ~0.4% (measured), not to float32
  # precision.
  scale = float(jnp.max(jnp.abs(exact)))
  assert 1e-5 * scale < float(jnp.max(jnp.abs(mixed - exact))) < 3e-2 * scale
  grads = jax.grad(lambda p: jnp.sum(logits(bf16, p) ** 2))(variables["params"])
  assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree.leaves(grads))


def test_max_pool_sends_the_gradient_to_the_first_maximum():
  # One 2x2 window with a tie between positions 0 and 3 (row-major): PyTorch and
  # reduce_window give the whole gradient to position 0.
  x = jnp.array([[5.0, 1.0], [2.0, 5.0]]).reshape(1, 2, 2, 1)
  assert float(models.max_pool_2x2(x)[0, 0, 0, 0]) == 5.0
  grad = jax.grad(lambda x: 3.0 * models.max_pool_2x2(x).sum())(x)
  np.testing.assert_array_equal(grad.reshape(2, 2), [[3.0, 0.0], [0.0, 0.0]])
  # Without ties, values and gradients equal flax's max_pool on a larger map.
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  y = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
  np.testing.assert_array_equal(models.max_pool_2x2(y), nn.max_pool(y, (2, 2), strides=(2, 2)))
  ours = jax.grad(lambda y: jnp.sum(models.max_pool_2x2(y) ** 2))(y)
  flax_grad = jax.grad(lambda y: jnp.sum(nn.max_pool(y, (2, 2), strides=(2, 2)) ** 2))(y)
  np.testing.assert_array_equal(ours, flax_grad)
