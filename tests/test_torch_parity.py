"""Our networks and training step against PyTorch ones loaded with the same weights.

The published numbers come from PyTorch networks; these tests check that ours compute
the same: LeNet-5 + heads through one whole WAAL step (both presets, dropout off), and
VGG16-BN through one training-mode forward and backward. The PyTorch networks are our
re-creation of the authors' (experiments/torch_reference.py). Needs `pip install
torch==2.13.0` (CI installs it); skipped without torch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import make_nets, make_settings  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import torch_reference  # pylint: disable=g-import-not-at-top,wrong-import-position
from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from waal_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from waal_jax import objectives  # pylint: disable=g-import-not-at-top,wrong-import-position
from waal_jax import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from waal_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position

S = 16   # labeled and unlabeled examples in the step


def _t(array):
  """A torch tensor of the array's float precision (float32 unless it is float64)."""
  array = np.asarray(array)
  return torch.from_numpy(np.array(array, np.float64 if array.dtype == np.float64
                                   else np.float32))


def _conv(kernel):            # flax HWIO -> torch OIHW
  return _t(np.transpose(np.asarray(kernel), (3, 2, 0, 1)))


def _fc1_rows_to_torch(kernel, spatial: int):
  """A flax Dense kernel (H*W*C, out) on NHWC-flattened features -> torch (out, C*H*W)."""
  kernel = np.asarray(kernel)
  channels = kernel.shape[0] // spatial
  torch_to_flax = np.arange(kernel.shape[0]).reshape(spatial, channels).T.ravel()
  return _t(kernel[torch_to_flax].T)


def _load_head(torch_head, flax_head, spatial: int = 1):
  with torch.no_grad():
    torch_head.fc1.weight.copy_(_fc1_rows_to_torch(flax_head["Dense_0"]["kernel"], spatial))
    torch_head.fc1.bias.copy_(_t(flax_head["Dense_0"]["bias"]))
    torch_head.fc2.weight.copy_(_t(np.asarray(flax_head["Dense_1"]["kernel"]).T))
    torch_head.fc2.bias.copy_(_t(flax_head["Dense_1"]["bias"]))


def _load_lenet(params):
  """torch (extractor, classifier, critic) holding `params` (ours), dropout off."""
  extractor = torch_reference.LeNet5(channel_dropout=0.0)
  classifier = torch_reference.Head(320, 50, 10, dropout=0.0)
  critic = torch_reference.Critic(320, 50, dropout=0.0)
  with torch.no_grad():
    for name in ("conv1", "conv2"):
      getattr(extractor, name).weight.copy_(_conv(params["features"][name]["kernel"]))
      getattr(extractor, name).bias.copy_(_t(params["features"][name]["bias"]))
  _load_head(classifier, params["classifier"], spatial=16)
  _load_head(critic, params["critic"]["MLPHead_0"], spatial=16)
  return extractor, classifier, critic


def _torch_params_as_ours(extractor, classifier, critic):
  """The torch parameters laid out as ours (for comparison)."""
  def head(module):
    w1 = module.fc1.weight.detach().numpy()              # (50, C*H*W)
    channels_first = w1.reshape(50, 20, 16)              # (out, C, H*W)
    return {"Dense_0": {"kernel": channels_first.transpose(2, 1, 0).reshape(320, 50),
                        "bias": module.fc1.bias.detach().numpy()},
            "Dense_1": {"kernel": module.fc2.weight.detach().numpy().T,
                        "bias": module.fc2.bias.detach().numpy()}}
  features = {name: {"kernel": getattr(extractor, name).weight.detach().numpy().transpose(
      2, 3, 1, 0), "bias": getattr(extractor, name).bias.detach().numpy()}
              for name in ("conv1", "conv2")}
  return {"features": features, "classifier": head(classifier),
          "critic": {"MLPHead_0": head(critic)}}


def _torch_waal_step(nets_torch, x, y, t, *, preset, weight, coefficient, penalty_weight,
                     lr, momentum):
  """One WAAL step in PyTorch as the preset describes it (dropout off); returns the
  losses (ce, adversarial term, penalty)."""
  extractor, classifier, critic = nets_torch
  main = list(extractor.parameters()) + list(classifier.parameters())
  opt_main = torch.optim.SGD(main, lr=lr, momentum=momentum)
  opt_critic = torch.optim.SGD(critic.parameters(), lr=lr, momentum=momentum)
  x_l, x_u = x[:S], x[S:]
  if preset == "paper":                         # one extractor call on [labeled; unlabeled]
    z = extractor(x)
    z_l, z_u = z[:S], z[S:]
  else:                                         # separate calls
    z_l, z_u = extractor(x_l), extractor(x_u)
  ce = torch.nn.functional.cross_entropy(classifier(z_l), y)
  wasserstein = critic(z_u).mean() - coefficient * critic(z_l).mean()
  opt_main.zero_grad()
  (ce + weight * wasserstein).backward()
  opt_main.step()

  if preset == "reference":                     # the updated extractor's features
    with torch.no_grad():
      z_l, z_u = extractor(x_l), extractor(x_u)
  z_l, z_u = z_l.detach(), z_u.detach()
  points = z_l + t * (z_u - z_l)
  if preset == "reference":
    points = torch.cat([points, z_u, z_l])
  points.requires_grad_(True)
  grads, = torch.autograd.grad(critic(points).sum(), points, create_graph=True)
  penalty = ((grads.norm(dim=1) - 1.0) ** 2).mean()
  critic_w = critic(z_u).mean() - coefficient * critic(z_l).mean()
  sign = -1.0 if preset == "paper" else 1.0
  opt_critic.zero_grad()
  (-weight * (critic_w + sign * penalty_weight * penalty)).backward()
  opt_critic.step()
  return ce.item(), wasserstein.item(), penalty.item()


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_one_waal_step_equals_pytorch(preset):
  """Same weights, same batch: the same losses and the same parameters after a step.
  mu = 1 so that the adversarial terms move the parameters visibly."""
  settings = make_settings(preset=preset, model__dropout=0.0, model__extractor_dropout=0.0,
                           train__batch_size=S, train__mu=1.0)
  nets = models.build(settings.model, 10)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 2 * S).astype(np.int32)
  means = rng.integers(0, 256, (10, 28, 28, 1))        # class-dependent images
  images = np.clip(means[labels] + rng.normal(0, 50, (2 * S, 28, 28, 1)), 0, 255)
  images = images.astype(np.uint8)
  spec = data_lib.with_normalization(data_lib.get_spec("fashion_mnist"),
                                     settings.data.mean, settings.data.std)
  mesh = sharding.make_mesh()
  trainer = train.Trainer(nets, settings.train, spec, mesh, 2 * S, S)
  state = trainer.init_state(jax.random.key(0))
  initial = jax.device_get(state.params)
  weight, coefficient = objectives.adversarial_weights(settings.train.adversarial_weights, 1.0,
                                                       S, S, S // 2)
  weights = train.RoundWeights(*(np.float32(v) for v in (weight, coefficient, 0.5)))
  ones = np.ones((1, S), bool)
  plan = train.EpochPlan(np.arange(S, dtype=np.int32)[None], ones,
                         np.arange(S, 2 * S, dtype=np.int32)[None], ones)
  sums = {k: np.float32(0) for k in train.METRIC_NAMES}
  key = jax.random.key(7)
  state, sums = trainer.step_fn(state, sharding.pool_blocks(mesh, images, 32),
                                sharding.replicate(mesh, labels), plan, np.int32(0),
                                weights, sums, key)
  ours = jax.device_get(state.params)

  t = _t(objectives.interpolation_weights(train.step_keys(key, 0).interpolation, S))
  x = torch.from_numpy(np.asarray(data_lib.normalize(jnp.asarray(images), spec)).transpose(
      0, 3, 1, 2).copy())
  nets_torch = _load_lenet(initial)
  ce, wasserstein, penalty = _torch_waal_step(
      nets_torch, x, torch.from_numpy(labels[:S].astype(np.int64)), t, preset=preset,
      weight=weight, coefficient=coefficient, penalty_weight=2.0, lr=0.01, momentum=0.5)
  # The adversarial term is a difference of two means of order 1 (here about -6e-4):
  # float rounding moves it by about 1e-7, so its tolerance is absolute.
  np.testing.assert_allclose([sums["cross_entropy"], sums["adversarial"],
                              sums["gradient_penalty"]], [ce, wasserstein, penalty],
                             rtol=1e-4, atol=1e-6)
  theirs = _torch_params_as_ours(*nets_torch)
  flat = lambda tree: dict(jax.tree_util.tree_leaves_with_path(tree))
  ours_flat, theirs_flat, initial_flat = flat(ours), flat(theirs), flat(initial)
  assert set(ours_flat) == set(theirs_flat) and len(ours_flat) == 12
  for path, value in ours_flat.items():
    name = jax.tree_util.keystr(path)
    np.testing.assert_allclose(value, theirs_flat[path], rtol=1e-4, atol=1e-7, err_msg=name)
    # The step itself (not only the unchanged bulk) agrees: updates within 0.1%.
    update, their_update = value - initial_flat[path], theirs_flat[path] - initial_flat[path]
    assert np.abs(update).max() > 0, name
    np.testing.assert_allclose(update, their_update, rtol=1e-3,
                               atol=1e-4 * np.abs(their_update).max(), err_msg=name)


def test_vgg16_training_forward_and_backward_equal_pytorch():
  """VGG16-BN in training mode (batch statistics): the same features, loss, gradients
  and running statistics. In float64 on both sides: in float32 the two agree on the
  features to 1e-4, but batch norm over the few positions of the deep layers divides
  by standard deviations near sqrt(eps) in some channels, which magnifies rounding in
  the gradients of the early layers to ~1%; in float64 they agree to ~1e-14."""
  nets = make_nets("cifar10", model__dropout=0.0)
  variables = nets.init(jax.random.key(0), (32, 32, 3))
  rng = np.random.default_rng(1)
  x = rng.normal(size=(8, 32, 32, 3))
  y = rng.integers(0, 10, 8)
  with jax.enable_x64(True):
    params, stats = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                 (variables["params"], variables["batch_stats"]))

    def loss_fn(params):
      z, new_stats = nets.embed(params, stats, x, train=True)
      logits = nets.logits(params, z)
      return objectives.cross_entropy(logits, jnp.asarray(y)), (z, new_stats)

    (loss, (z, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    loss, z, new_stats, grads = jax.device_get((loss, z, new_stats, grads))

  extractor = torch_reference.VGG16BN().double()
  classifier = torch_reference.Head(512, 50, 10, dropout=0.0).double()
  layers = [params["features"][f"Conv3x3_{i}"] for i in range(13)]
  norms = [params["features"][f"BatchNorm_{i}"] for i in range(13)]
  with torch.no_grad():
    for (conv, bn), layer, norm in zip(extractor.conv_bn_pairs(), layers, norms):
      conv.weight.copy_(_conv(layer["kernel"]))
      bn.weight.copy_(_t(norm["scale"]))
      bn.bias.copy_(_t(norm["bias"]))
  _load_head(classifier, params["classifier"])
  extractor.train()
  classifier.train()
  z_torch = extractor(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
  loss_torch = torch.nn.functional.cross_entropy(classifier(z_torch), torch.from_numpy(y))
  loss_torch.backward()

  assert z.dtype == np.float64
  np.testing.assert_allclose(z, z_torch.detach().numpy(), rtol=1e-9, atol=1e-12)
  assert float(loss) == pytest.approx(loss_torch.item(), rel=1e-10)
  for i, ((conv, bn), norm) in enumerate(zip(extractor.conv_bn_pairs(), norms)):
    ours = np.transpose(grads["features"][f"Conv3x3_{i}"]["kernel"], (3, 2, 0, 1))
    theirs = conv.weight.grad.numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9 * np.abs(theirs).max(),
                               err_msg=f"conv {i}")
    for ours, theirs in ((grads["features"][f"BatchNorm_{i}"]["scale"], bn.weight.grad),
                         (grads["features"][f"BatchNorm_{i}"]["bias"], bn.bias.grad),
                         (new_stats[f"BatchNorm_{i}"]["mean"], bn.running_mean),
                         (new_stats[f"BatchNorm_{i}"]["var"], bn.running_var)):
      theirs = theirs.detach().numpy()
      np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9 * np.abs(theirs).max(),
                                 err_msg=f"batch norm {i}")
  np.testing.assert_allclose(grads["classifier"]["Dense_0"]["kernel"],
                             classifier.fc1.weight.grad.numpy().T, rtol=1e-7, atol=1e-12)
