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

from waal_jax.errors import UserError


class LeNet5(nn.Module):
  """LeNet-5 feature extractor as in the authors' code: (B, 28, 28, 1) -> (B, 320)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No batch norm or dropout in the extractor.
    x = nn.Conv(10, (5, 5), padding="VALID")(x)                      # (B, 24, 24, 10)
    x = nn.relu(nn.max_pool(x, (2, 2), strides=(2, 2)))              # (B, 12, 12, 10)
    x = nn.Conv(20, (5, 5), padding="VALID")(x)                      # (B, 8, 8, 20)
    x = nn.relu(nn.max_pool(x, (2, 2), strides=(2, 2)))              # (B, 4, 4, 20)
    return x.reshape(x.shape[0], -1)                                 # (B, 320)


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
        x = nn.Conv(layer, (3, 3), padding=1, use_bias=False)(x)    # Bias is in the BN.
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
          dropout_rate: float = 0.5) -> Networks:
  """The networks for `model.name` ('lenet5' or 'vgg16')."""
  if name == "lenet5":
    features = LeNet5()
  elif name == "vgg16":
    features = VGG16BN(feature_dim=feature_dim)
  else:
    raise UserError(f"model.name: unknown model {name!r}; choose lenet5 or vgg16")
  return Networks(features, MLPHead(head_hidden, num_classes, dropout_rate),
                  Critic(head_hidden, dropout_rate))
