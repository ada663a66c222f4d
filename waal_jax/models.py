"""The networks of appendix G.2 as pure flax.linen modules.

A WAAL network is three modules with separate parameters, because the method updates
them with different objectives: the feature extractor f, the classifier head h (logits)
and the critic head g (a value in [0, 1]).
"""

import dataclasses
from typing import Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from waal_jax import banded
from waal_jax.errors import UserError


class ConvPool(nn.Module):
  """5x5 VALID convolution + bias, then a 2x2 max pool (stride 2).

  conv='banded' computes it as one matrix product (waal_jax.banded; several times
  faster on XLA:CPU, same result); 'xla' with lax.conv and reduce_window. Both have
  the same parameters, so one checkpoint serves either.
  """
  features: int
  kernel_size: int = 5
  conv: str = "banded"
  block: int = 4            # banded: output columns per matrix-product block

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    if self.conv == "banded":
      return banded.conv_pool(x, kernel, bias, self.block)
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return nn.max_pool(y + bias, (2, 2), strides=(2, 2))


class LeNet5(nn.Module):
  """LeNet-5 feature extractor as in the authors' code: (B, 28, 28, 1) -> (B, 320)."""
  conv: str = "banded"      # see ConvPool

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No batch norm or dropout in the extractor.
    x = nn.relu(ConvPool(10, conv=self.conv, block=6, name="conv1")(x))   # (B, 12, 12, 10)
    x = nn.relu(ConvPool(20, conv=self.conv, block=4, name="conv2")(x))   # (B, 4, 4, 20)
    return x.reshape(x.shape[0], -1)                                      # (B, 320)


def conv_same(x, kernel):
  """A stride-1 SAME convolution, NHWC input and HWIO kernel.

  On 2x2 feature maps (VGG's last block at 32x32 input) XLA:CPU runs the convolution
  and its input gradient ~80x below its normal speed (1.1 s for a batch of 128 with
  512 channels, benchmarked against 14 ms). There it is computed as one matrix product
  with the input's patches, which autodiff differentiates into matrix products too.
  """
  kh, kw, c_in, c_out = kernel.shape
  b, h, w, _ = x.shape
  if h * w > 4:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  top, left = (kh - 1) // 2, (kw - 1) // 2
  padded = jnp.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
  patches = jnp.stack([padded[:, i:i + h, j:j + w] for i in range(kh) for j in range(kw)],
                      axis=3)                                        # (B, H, W, kh*kw, C)
  out = patches.reshape(b * h * w, kh * kw * c_in) @ kernel.reshape(kh * kw * c_in, c_out)
  return out.reshape(b, h, w, c_out)


class Conv3x3(nn.Module):
  """3x3 stride-1 SAME convolution without bias (batch norm follows)."""
  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features))
    return conv_same(x, kernel)


# Channels per 3x3 conv layer; "M" is a 2x2 max pool. Configuration D of Simonyan &
# Zisserman (2014).
VGG16_LAYERS: Sequence[Union[int, str]] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16BN(nn.Module):
  """VGG16 with batch norm: (B, 32, 32, 3) -> (B, 512); (B, 96, 96, 3) -> (B, 4096).

  At 96x96 the last pool leaves 3x3x512 = 4608 values; `feature_dim` adds a dense +
  ReLU layer to reach the 4096 features of appendix G.2.
  """
  feature_dim: Optional[int] = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    for layer in VGG16_LAYERS:
      if layer == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        x = Conv3x3(layer)(x)                                          # Bias is in the BN.
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        x = nn.relu(x)
    x = x.reshape(x.shape[0], -1)
    if self.feature_dim is not None and x.shape[-1] != self.feature_dim:
      x = nn.relu(nn.Dense(self.feature_dim)(x))
    return x


class MLPHead(nn.Module):
  """features - hidden - ReLU - dropout - outputs (appendix G.2)."""
  hidden: int
  outputs: int
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, z, train: bool = False):
    h = nn.relu(nn.Dense(self.hidden)(z))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.outputs)(h)


class Critic(nn.Module):
  """The WAAL critic g before its sigmoid: an MLP head, (B, D) -> (B,) logits.

  `Networks.critic_value` applies the sigmoid; the H-divergence ablation's binary
  cross-entropy uses the logit itself, which is numerically safer.
  """
  hidden: int
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, z, train: bool = False):
    return MLPHead(self.hidden, 1, self.dropout_rate)(z, train)[:, 0]


@dataclasses.dataclass(frozen=True)
class Networks:
  """The three modules of one WAAL network; hashable, so jit can take it as static."""
  features: nn.Module
  classifier: nn.Module
  critic: nn.Module

  def init(self, key, image_shape) -> dict:
    """Variables {'params': {features, classifier, critic}, 'batch_stats': {...}}."""
    f_key, h_key, g_key = jax.random.split(key, 3)
    x = jnp.zeros((2, *image_shape), jnp.float32)
    f_vars = self.features.init(f_key, x, train=False)
    z = self.features.apply(f_vars, x, train=False)
    params = {
        "features": f_vars["params"],
        "classifier": self.classifier.init(h_key, z, train=False)["params"],
        "critic": self.critic.init(g_key, z, train=False)["params"],
    }
    return {"params": params, "batch_stats": dict(f_vars.get("batch_stats", {}))}

  def embed(self, params, batch_stats, images, *, train: bool = False):
    """Features z = f(x) (B, D) and the batch stats, updated when training with BN."""
    variables = {"params": params["features"]}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    if train and batch_stats:
      z, updates = self.features.apply(variables, images, train=True, mutable=["batch_stats"])
      return z, updates["batch_stats"]
    return self.features.apply(variables, images, train=train), batch_stats

  def logits(self, params, z, *, train: bool = False, dropout_key=None):
    rngs = {"dropout": dropout_key} if train else None
    return self.classifier.apply({"params": params["classifier"]}, z, train=train, rngs=rngs)

  def critic_logit(self, critic_params, z, *, train: bool = False, dropout_key=None):
    """The critic's pre-sigmoid output (B,); takes the critic's own parameters so that
    jax.grad can target them."""
    rngs = {"dropout": dropout_key} if train else None
    return self.critic.apply({"params": critic_params}, z, train=train, rngs=rngs)

  def critic_value(self, critic_params, z, *, train: bool = False, dropout_key=None):
    """g(z) = sigmoid(critic logit) in [0, 1] (B,): near 1 = unlike the labeled set."""
    return jax.nn.sigmoid(self.critic_logit(critic_params, z, train=train,
                                            dropout_key=dropout_key))


def build(name: str, *, num_classes: int, head_hidden: int, feature_dim: Optional[int] = None,
          dropout_rate: float = 0.5, conv: str = "banded") -> Networks:
  """The networks for `model.name` ('lenet5' or 'vgg16'); `conv` picks LeNet-5's kernels."""
  if name == "lenet5":
    features = LeNet5(conv=conv)
  elif name == "vgg16":
    features = VGG16BN(feature_dim=feature_dim)
  else:
    raise UserError(f"model.name: unknown model {name!r}; choose lenet5 or vgg16")
  return Networks(features, MLPHead(head_hidden, num_classes, dropout_rate),
                  Critic(head_hidden, dropout_rate))
