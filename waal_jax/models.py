"""The networks of appendix G.2 as pure flax.linen modules, equal to the PyTorch ones.

A WAAL network is three modules with separate parameters, because the method updates
them with different objectives: the feature extractor f, the classifier head h (logits)
and the critic head g (a value in [0, 1]).

"Equal to PyTorch's" (the published numbers come from PyTorch networks): PyTorch's
default initialisation (`init="pytorch"`), the authors' LeNet-5 layer order with its
channel dropout, and batch norm with PyTorch's momentum, epsilon and unbiased running
variance. tests/test_torch_parity.py checks a training step against PyTorch.
"""

import contextlib
import dataclasses
import functools
import inspect
import math
from typing import Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from waal_jax import banded
from waal_jax.errors import UserError


def kernel_init(scheme: str):
  """Weights: 'pytorch' = uniform in +-1/sqrt(fan_in) (torch's kaiming_uniform_ with
  a=sqrt(5), the default of Conv2d and Linear); 'lecun' = LeCun normal."""
  if scheme == "pytorch":
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
  return nn.initializers.lecun_normal()


def bias_init(scheme: str, fan_in: int):
  """Biases: 'pytorch' = uniform in +-1/sqrt(fan_in) of the layer's weights; 'lecun' = 0."""
  if scheme == "pytorch":
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound)
  return nn.initializers.zeros


def operand_dtype(matmul_dtype: str):
  """The dtype products cast their operands to; None = keep theirs (float32, or float64
  in the parity tests)."""
  return jnp.bfloat16 if matmul_dtype == "bfloat16" else None


def _cast(x, dtype):
  return x if dtype is None else x.astype(dtype)


def mixed_dot(matmul_dtype: str):
  """lax.dot_general with operands in `matmul_dtype`, accumulated and returned in float32
  (for float32, plain lax.dot_general)."""
  dtype = operand_dtype(matmul_dtype)
  if dtype is None:
    return jax.lax.dot_general

  def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    del preferred_element_type  # Always float32.
    return jax.lax.dot_general(lhs.astype(dtype), rhs.astype(dtype), dimension_numbers,
                               precision=precision, preferred_element_type=jnp.float32)

  return dot_general


def dense(features: int, fan_in: int, init: str, name: Optional[str] = None,
          matmul_dtype: str = "float32") -> nn.Dense:
  return nn.Dense(features, kernel_init=kernel_init(init), bias_init=bias_init(init, fan_in),
                  name=name, dot_general=mixed_dot(matmul_dtype))


def resolve_conv(conv: str, platform: str) -> str:
  """model.conv for a platform: 'auto' is the banded / patch-product kernels on CPU,
  where XLA's small convolutions are slow, and XLA's convolutions on GPU and TPU,
  where they are not (and the banded form would waste its redundant products)."""
  if conv != "auto":
    return conv
  return "banded" if platform == "cpu" else "xla"


def conv2d(x, kernel, padding: str, matmul_dtype: str):
  """lax.conv (NHWC, HWIO, stride 1) with operands in matmul_dtype, float32 result."""
  dtype = operand_dtype(matmul_dtype)
  return jax.lax.conv_general_dilated(
      _cast(x, dtype), _cast(kernel, dtype), (1, 1), padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      preferred_element_type=None if dtype is None else jnp.float32)


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
  init_scheme: str = "pytorch"   # see kernel_init
  matmul_dtype: str = "float32"  # see mixed_dot

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    fan_in = k * k * x.shape[-1]
    kernel = self.param("kernel", kernel_init(self.init_scheme), (k, k, x.shape[-1], self.features))
    bias = self.param("bias", bias_init(self.init_scheme, fan_in), (self.features,))
    if self.conv == "banded":
      return banded.conv_pool(x, kernel, bias, self.block, operand_dtype(self.matmul_dtype))
    y = conv2d(x, kernel, "VALID", self.matmul_dtype)
    return nn.max_pool(y + bias, (2, 2), strides=(2, 2))


LENET_CHANNELS = 20    # conv2's channels; the features are (4, 4, 20) flattened


class LeNet5(nn.Module):
  """The authors' LeNet-5 extractor: (B, 28, 28, 1) -> (B, 320).

  conv1 -> max-pool -> relu; conv2 -> channel dropout -> max-pool -> relu. Dropout
  scales each (example, channel) map by 0 or 1/(1-rate), which commutes with the max
  pool, so it is applied after the fused conv + pool with the same result and gradient.
  """
  conv: str = "banded"          # see ConvPool
  init_scheme: str = "pytorch"   # see kernel_init
  dropout_rate: float = 0.5     # channel dropout (PyTorch's Dropout2d) after conv2
  matmul_dtype: str = "float32"  # see mixed_dot

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    del mask  # No batch statistics here.
    layer = functools.partial(ConvPool, conv=self.conv, init_scheme=self.init_scheme,
                              matmul_dtype=self.matmul_dtype)
    x = nn.relu(layer(10, block=6, name="conv1")(x))
    x = layer(LENET_CHANNELS, block=4, name="conv2")(x)                  # (B, 4, 4, 20)
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    return nn.relu(x).reshape(x.shape[0], -1)                                  # (B, 320)

  @nn.nowrap
  def sample_output_dropout(self, z, key):
    """Features of evaluation mode (..., 320) -> those of one draw of the channel
    dropout (the model contract's fast MC-dropout path). The dropout is the last
    operation but the ReLU, and both commute with a per-channel factor 0 or
    1/(1-rate), so the draw multiplies z."""
    if not self.dropout_rate:
      return z
    channels = z.reshape(*z.shape[:-1], -1, LENET_CHANNELS)                # (..., 16, 20)
    keep = jax.random.bernoulli(key, 1.0 - self.dropout_rate,
                                (*z.shape[:-1], 1, LENET_CHANNELS))
    return (channels * keep / (1.0 - self.dropout_rate)).reshape(z.shape)


def _channel_sum(values, weight=None):
  """Sum over all axes but the last, as a vector-matrix product: XLA:CPU runs these
  column reductions far faster as a product than as a reduce."""
  flat = values.reshape(-1, values.shape[-1])
  w = (jnp.ones(flat.shape[0], values.dtype) if weight is None
       else jnp.broadcast_to(weight, (*values.shape[:-1], 1)).reshape(-1))
  return jnp.dot(w, flat)


def _normalize_forward(x, weight, scale, bias, epsilon):
  """Batch norm in training mode over all axes but the last; weight (..., 1) is 1 for
  the rows that enter the statistics, 0 for padding. Returns ((y, mean, biased var),
  residuals). `_normalize_train` is this with the closed-form gradient below: autodiff
  of the same forward pass runs ~4x slower on XLA:CPU (VGG16-BN's batch norms took
  0.74 s of a 1.75 s step)."""
  count = jnp.maximum(jnp.sum(weight), 1.0)
  mean = _channel_sum(x, weight) / count
  centered = x - mean
  var = _channel_sum(centered * centered, weight) / count
  rstd = jax.lax.rsqrt(var + epsilon)
  xhat = centered * rstd
  return (xhat * scale + bias, mean, var), (xhat, rstd, weight, count, scale, centered)


def _normalize_backward(epsilon, residuals, cotangents):
  del epsilon
  xhat, rstd, weight, count, scale, centered = residuals
  dy, d_mean, d_var = cotangents
  g = dy * scale                                           # d loss / d xhat
  sum_dy, sum_dy_xhat = _channel_sum(dy), _channel_sum(dy * xhat)
  sum_g, sum_g_xhat = sum_dy * scale, sum_dy_xhat * scale
  # Through xhat (the statistics see only weighted rows), then through the returned
  # mean and variance themselves (d mean / dx = w / n, d var / dx = 2 w (x - mean) / n).
  dx = rstd * (g - weight / count * (sum_g + xhat * sum_g_xhat))
  dx = dx + weight / count * (d_mean + 2.0 * centered * d_var)
  return (dx, jnp.zeros_like(weight), sum_dy_xhat, sum_dy)


_normalize_train = jax.custom_vjp(
    lambda x, weight, scale, bias, epsilon: _normalize_forward(x, weight, scale, bias, epsilon)[0],
    nondiff_argnums=(4,))
_normalize_train.defvjp(_normalize_forward, _normalize_backward)


class BatchNorm(nn.Module):
  """Batch norm over (B, H, W) as PyTorch's BatchNorm2d computes it.

  Training normalises with the batch's mean and biased variance and moves the running
  averages by `momentum` towards the batch mean and the UNBIASED variance (PyTorch's
  momentum 0.1 is flax's 0.9). `mask` (B,) leaves padding rows out of the statistics.
  """
  momentum: float = 0.1
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,))
    running_var = self.variable("batch_stats", "var", jnp.ones, (c,))
    if not train:
      return ((x - running_mean.value) * jax.lax.rsqrt(running_var.value + self.epsilon)
              * scale + bias)
    weight = jnp.ones(x.shape[:1], x.dtype) if mask is None else mask.astype(x.dtype)
    weight = jnp.broadcast_to(weight[:, None, None, None], (*x.shape[:-1], 1))
    y, mean, var = _normalize_train(x, weight, scale, bias, self.epsilon)
    if not self.is_initializing():
      count = jnp.sum(weight)
      unbiased = jax.lax.stop_gradient(var) * count / jnp.maximum(count - 1.0, 1.0)
      mean = jax.lax.stop_gradient(mean)
      running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
      running_var.value = (1 - self.momentum) * running_var.value + self.momentum * unbiased
    return y


def conv_same(x, kernel, conv: str = "banded", matmul_dtype: str = "float32"):
  """A stride-1 SAME convolution, NHWC input and HWIO kernel.

  On 2x2 feature maps (VGG's last block at 32x32 input) XLA:CPU runs the convolution
  and its input gradient ~80x below its normal speed (1.1 s for a batch of 128 with
  512 channels, benchmarked against 14 ms). With conv='banded' (the CPU choice) it is
  computed there as one matrix product with the input's patches, which autodiff
  differentiates into matrix products too.
  """
  kh, kw, c_in, c_out = kernel.shape
  b, h, w, _ = x.shape
  if h * w > 4 or conv != "banded":
    return conv2d(x, kernel, "SAME", matmul_dtype)
  top, left = (kh - 1) // 2, (kw - 1) // 2
  padded = jnp.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
  patches = jnp.stack([padded[:, i:i + h, j:j + w] for i in range(kh) for j in range(kw)],
                      axis=3)                                        # (B, H, W, kh*kw, C)
  out = mixed_dot(matmul_dtype)(patches.reshape(b * h * w, kh * kw * c_in),
                                kernel.reshape(kh * kw * c_in, c_out), (((1,), (0,)), ((), ())))
  return out.reshape(b, h, w, c_out)


class Conv3x3(nn.Module):
  """3x3 stride-1 SAME convolution without bias (the batch norm after it would cancel
  a bias: the authors' VGG has one, with no effect on any output or gradient)."""
  features: int
  init_scheme: str = "pytorch"   # see kernel_init
  conv: str = "banded"           # see conv_same
  matmul_dtype: str = "float32"  # see mixed_dot

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", kernel_init(self.init_scheme), (3, 3, x.shape[-1], self.features))
    return conv_same(x, kernel, self.conv, self.matmul_dtype)


@jax.custom_vjp
def max_pool_2x2(x):
  """2x2 max pool, stride 2, of (B, H, W, C) with even H and W.

  nn.max_pool's gradient is a select-and-scatter that XLA:CPU runs slowly; this one
  sends each window's gradient to its first maximum in row-major order, as PyTorch's
  and reduce_window's do.
  """
  b, h, w, c = x.shape
  return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def _pool_forward(x):
  b, h, w, c = x.shape
  windows = x.reshape(b, h // 2, 2, w // 2, 2, c)
  top, is_max = banded.max_of_four([windows[:, :, i, :, j] for i in (0, 1) for j in (0, 1)])
  return top, (is_max, x.shape)


def _pool_backward(residuals, g):
  is_max, shape = residuals
  d = banded.first_max_gradients(is_max, g)
  rows = [jnp.stack(d[0:2], axis=3), jnp.stack(d[2:4], axis=3)]      # (B, H/2, W/2, 2, C)
  return (jnp.stack(rows, axis=2).reshape(shape),)


max_pool_2x2.defvjp(_pool_forward, _pool_backward)


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
  init_scheme: str = "pytorch"   # see kernel_init
  conv: str = "banded"           # see conv_same
  matmul_dtype: str = "float32"  # see mixed_dot

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    for layer in VGG16_LAYERS:
      if layer == "M":
        x = max_pool_2x2(x)
      else:
        x = Conv3x3(layer, init_scheme=self.init_scheme, conv=self.conv,
                    matmul_dtype=self.matmul_dtype)(x)
        x = nn.relu(BatchNorm()(x, train, mask))
    x = x.reshape(x.shape[0], -1)
    if self.feature_dim is not None and x.shape[-1] != self.feature_dim:
      x = nn.relu(dense(self.feature_dim, x.shape[-1], self.init_scheme,
                        matmul_dtype=self.matmul_dtype)(x))
    return x


class MLPHead(nn.Module):
  """features - hidden - ReLU - dropout - outputs (appendix G.2)."""
  hidden: int
  outputs: int
  dropout_rate: float = 0.5
  init_scheme: str = "pytorch"   # see kernel_init
  matmul_dtype: str = "float32"  # see mixed_dot

  @nn.compact
  def __call__(self, z, train: bool = False):
    h = nn.relu(dense(self.hidden, z.shape[-1], self.init_scheme, "Dense_0",
                      self.matmul_dtype)(z))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return dense(self.outputs, self.hidden, self.init_scheme, "Dense_1", self.matmul_dtype)(h)


class Critic(nn.Module):
  """The WAAL critic g before its sigmoid: an MLP head, (B, D) -> (B,) logits.

  `Networks.critic_value` applies the sigmoid; the H-divergence ablation's binary
  cross-entropy uses the logit itself, which is numerically safer.
  """
  hidden: int
  dropout_rate: float = 0.5
  init_scheme: str = "pytorch"   # see kernel_init
  matmul_dtype: str = "float32"  # see mixed_dot

  @nn.compact
  def __call__(self, z, train: bool = False):
    return MLPHead(self.hidden, 1, self.dropout_rate, self.init_scheme,
                   self.matmul_dtype)(z, train)[:, 0]


class MLPExtractor(nn.Module):
  """A feature extractor for vectors (e.g. frozen text or tabular embeddings):
  (B, ..., D) -> (B, hidden[-1]), dense + ReLU (+ dropout) per layer; inputs of more
  than one axis are flattened first."""
  hidden: Sequence[int] = (256, 128)
  dropout_rate: float = 0.0
  init_scheme: str = "pytorch"   # see kernel_init

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = nn.relu(dense(width, x.shape[-1], self.init_scheme)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x


# --- The model contract -----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _call_arguments(module_type: type) -> Tuple[str, ...]:
  """Which of train / deterministic / mask a module's __call__ takes."""
  parameters = inspect.signature(module_type.__call__).parameters
  return tuple(name for name in ("train", "deterministic", "mask") if name in parameters)


def _mode_kwargs(module: nn.Module, train: bool, mask=None) -> dict:
  """The keyword arguments that put `module` in training or evaluation mode, in the
  convention it follows (Flax's `train`, or `deterministic`), and pass the padding
  mask where it takes one."""
  takes = _call_arguments(type(module))
  kwargs = {}
  if "train" in takes:
    kwargs["train"] = train
  elif "deterministic" in takes:
    kwargs["deterministic"] = not train
  if mask is not None and "mask" in takes:
    kwargs["mask"] = mask
  return kwargs


def _batch_norm_mask(mask):
  """An interceptor that hands `mask` (B,) to every flax.linen.BatchNorm of a batch of
  B rows, so padding rows stay out of its statistics in a module that does not pass a
  mask on itself."""
  def interceptor(next_fun, args, kwargs, context):
    if (isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__"
        and kwargs.get("mask") is None and args and args[0].shape[:1] == mask.shape):
      x = args[0]
      kwargs = {**kwargs, "mask": mask.reshape(mask.shape + (1,) * (x.ndim - 1))}
    return next_fun(*args, **kwargs)
  return interceptor


def _dropout_always_on(seen: list):
  """An interceptor that runs every flax.linen.Dropout as in training, whatever mode
  the module is in (MC dropout with batch norm at its running statistics); `seen` gets
  an entry per dropout layer run. The mask is drawn from the key the layer would draw
  in training, so a draw equals the training-mode one."""
  inside = []     # (the training-mode layer below is a Dropout call too: let it through)

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if inside or not (isinstance(module, nn.Dropout) and context.method_name == "__call__"):
      return next_fun(*args, **kwargs)
    seen.append(module.rate)
    rng = kwargs.get("rng")
    if rng is None and module.rate > 0:
      rng = module.make_rng(module.rng_collection)
    inside.append(True)
    try:
      return module.clone(parent=None, deterministic=False).apply({}, args[0], rng=rng)
    finally:
      inside.pop()
  return interceptor


def _dense_inputs(inputs: list):
  """An interceptor that appends the input of every flax.linen.Dense call to `inputs`."""
  def interceptor(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
      inputs.append(args[0])
    return next_fun(*args, **kwargs)
  return interceptor


def _name(module) -> str:
  return type(module).__name__


@dataclasses.dataclass(frozen=True)
class Model:
  """Your network as waal_jax trains and queries it: three Flax modules.

  - `extractor`: any `nn.Module` from inputs (B, ...) to features (B, D), with or
    without batch norm and dropout. If its `__call__` takes `train` (Flax's
    convention) or `deterministic`, it gets it; if it takes `mask` (B,), it gets the
    padding rows of a batch, and every `nn.BatchNorm` inside gets that mask anyway.
  - `classifier`: features (B, D) -> logits (B, classes); by default an MLP head
    (features - `head_hidden` - ReLU - dropout - classes, appendix G.2). BADGE embeds
    with the input of its last `nn.Dense`.
  - `critic`: features (B, D) -> (B,) pre-sigmoid values, WAAL's critic g; by
    default an MLP head like the classifier's with one output.

  MC-dropout draws (DBAL, BatchBALD) run the extractor and classifier with every
  `nn.Dropout` on and batch norm at its running statistics. An extractor whose only
  dropout acts on its output may say so with a method `sample_output_dropout(z, key)`
  (nn.nowrap): the draws then reuse one pass (LeNet-5 does). Frozen and hashable, so
  jit takes it as a static argument.
  """
  extractor: nn.Module
  classifier: Optional[nn.Module] = None
  critic: Optional[nn.Module] = None
  num_classes: int = 0            # needed when `classifier` is the default head
  head_hidden: int = 50           # the default heads' hidden units
  head_dropout: float = 0.5       # the default heads' dropout rate

  def __post_init__(self):
    if not isinstance(self.extractor, nn.Module):
      raise UserError(f"Model.extractor: {self.extractor!r} is not a flax.linen.Module")
    for part in ("classifier", "critic"):
      value = getattr(self, part)
      if value is not None and not isinstance(value, nn.Module):
        raise UserError(f"Model.{part}: {value!r} is not a flax.linen.Module (or None for "
                        "the default head)")
    if self.classifier is None:
      if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or (
          self.num_classes < 2):
        raise UserError(f"Model.num_classes={self.num_classes!r}: give the number of classes "
                        "(>= 2) or a classifier module")
      object.__setattr__(self, "classifier",
                         MLPHead(self.head_hidden, self.num_classes, self.head_dropout))
    if self.critic is None:
      object.__setattr__(self, "critic", Critic(self.head_hidden, self.head_dropout))

  def init(self, key, input_shape) -> dict:
    """Variables {'params': {features, classifier, critic}, 'batch_stats': {...}} for
    inputs of shape `input_shape` (one example's). A module that fails on such inputs,
    or outputs of the wrong shape, raise UserError."""
    f_key, h_key, g_key = jax.random.split(key, 3)
    x = jnp.zeros((2, *input_shape), jnp.float32)
    shape = tuple(input_shape)
    f_vars = self._init_part("extractor", f_key, x, shape)
    z = self.extractor.apply(f_vars, x, **_mode_kwargs(self.extractor, False))
    if z.ndim != 2:
      raise UserError(f"Model.extractor: {_name(self.extractor)} maps inputs {shape} to "
                      f"features {z.shape[1:]}; it must return (batch, features): flatten "
                      "them at its end")
    params = {"features": f_vars["params"],
              "classifier": self._init_part("classifier", h_key, z, z.shape[1:])["params"],
              "critic": self._init_part("critic", g_key, z, z.shape[1:])["params"]}
    logits = self.classifier.apply({"params": params["classifier"]}, z,
                                   **_mode_kwargs(self.classifier, False))
    if logits.ndim != 2 or logits.shape[1] < 2:
      raise UserError(f"Model.classifier: {_name(self.classifier)} returns {logits.shape[1:]}"
                      " per example; it must return one logit per class (batch, classes)")
    critic = self.critic.apply({"params": params["critic"]}, z,
                               **_mode_kwargs(self.critic, False))
    if critic.shape != (2,):
      raise UserError(f"Model.critic: {_name(self.critic)} returns {critic.shape[1:]} per "
                      "example; it must return one value (batch,)")
    return {"params": params, "batch_stats": dict(f_vars.get("batch_stats", {}))}

  def _init_part(self, part: str, key, x, shape) -> dict:
    module = getattr(self, part)
    try:
      variables = module.init(key, x, **_mode_kwargs(module, False))
    except (TypeError, ValueError) as e:
      raise UserError(f"Model.{part}: {_name(module)} fails on inputs of shape {shape}: "
                      f"{' '.join(str(e).split())[:300]}") from None
    return dict(variables)

  def num_outputs(self, input_shape) -> int:
    """The number of classes the classifier predicts for inputs of `input_shape`
    (traced, not computed; the contract's checks of `init` run on the way)."""
    def logits(key):
      variables = self.init(key, input_shape)
      z, _ = self.embed(variables["params"], variables["batch_stats"],
                        jnp.zeros((2, *input_shape), jnp.float32))
      return self.logits(variables["params"], z)
    return jax.eval_shape(logits, jax.random.key(0)).shape[-1]

  def embed(self, params, batch_stats, images, *, train: bool = False, dropout_key=None,
            mask=None):
    """Features z = f(x) (B, D) and the batch stats (updated when training with BN).

    `mask` (B,) marks the real rows of a padded training batch: only those enter the
    batch-norm statistics.
    """
    variables = {"params": params["features"]}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    rngs = {"dropout": dropout_key} if train and dropout_key is not None else None
    kwargs = _mode_kwargs(self.extractor, train, mask if train else None)
    if train and batch_stats:
      masked = (nn.intercept_methods(_batch_norm_mask(mask)) if mask is not None else
                contextlib.nullcontext())
      with masked:
        z, updates = self.extractor.apply(variables, images, rngs=rngs,
                                          mutable=["batch_stats"], **kwargs)
      return z, updates["batch_stats"]
    return self.extractor.apply(variables, images, rngs=rngs, **kwargs), batch_stats

  def dropout_features(self, params, batch_stats, x, z, key):
    """The features of one MC-dropout draw for one example: x its input (unbatched),
    z (D,) its evaluation-mode features. With no dropout in the extractor, z."""
    draw = getattr(self.extractor, "sample_output_dropout", None)
    if draw is not None:
      return draw(z, key)
    variables = {"params": params["features"]}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    seen = []
    with nn.intercept_methods(_dropout_always_on(seen)):
      drawn = self.extractor.apply(variables, x[None], rngs={"dropout": key},
                                   **_mode_kwargs(self.extractor, False))[0]
    return drawn if any(seen) else z   # (an unused pass is dropped by XLA)

  def logits(self, params, z, *, train: bool = False, dropout_key=None, mc: bool = False):
    """Classifier logits (B, classes). mc=True: evaluation mode with every dropout
    layer drawing from `dropout_key` (an MC-dropout pass)."""
    rngs = {"dropout": dropout_key} if train or mc else None
    apply = functools.partial(self.classifier.apply, {"params": params["classifier"]}, z,
                              rngs=rngs, **_mode_kwargs(self.classifier, train))
    if not mc:
      return apply()
    with nn.intercept_methods(_dropout_always_on([])):
      return apply()

  def last_layer_input(self, params, z):
    """h (B, hidden): what the classifier's last nn.Dense multiplies in evaluation
    mode, so that logits = h @ kernel + bias. BADGE's gradient embeddings are outer
    products with it."""
    inputs = []
    with nn.intercept_methods(_dense_inputs(inputs)):
      self.classifier.apply({"params": params["classifier"]}, z,
                            **_mode_kwargs(self.classifier, False))
    if not inputs:
      raise UserError(f"Model.classifier: {_name(self.classifier)} has no nn.Dense layer, "
                      "whose input BADGE needs")
    return inputs[-1]

  def critic_logit(self, critic_params, z, *, train: bool = False, dropout_key=None):
    """The critic's pre-sigmoid output (B,); takes the critic's own parameters so that
    jax.grad can target them."""
    rngs = {"dropout": dropout_key} if train else None
    return self.critic.apply({"params": critic_params}, z, rngs=rngs,
                             **_mode_kwargs(self.critic, train))

  def critic_value(self, critic_params, z, *, train: bool = False, dropout_key=None):
    """g(z) = sigmoid(critic logit) in [0, 1] (B,): near 1 = unlike the labeled set."""
    return jax.nn.sigmoid(self.critic_logit(critic_params, z, train=train,
                                            dropout_key=dropout_key))


Networks = Model   # (the name inside the library before the contract was public)


def build(model, num_classes: int, platform: Optional[str] = None) -> Model:
  """The networks that `model` (settings.ModelSettings: name, init, dropouts, ...) names,
  with the kernels `model.conv` chooses for `platform` (default: JAX's backend)."""
  conv = resolve_conv(model.conv, platform or jax.default_backend())
  dtype = model.matmul_dtype
  if model.name == "lenet5":
    features = LeNet5(conv=conv, init_scheme=model.init, dropout_rate=model.extractor_dropout,
                      matmul_dtype=dtype)
  elif model.name == "vgg16":
    features = VGG16BN(feature_dim=model.feature_dim or None, init_scheme=model.init,
                       conv=conv, matmul_dtype=dtype)
  else:
    raise UserError(f"model.name: unknown model {model.name!r}; choose lenet5 or vgg16")
  return Model(features,
               MLPHead(model.head_hidden, num_classes, model.dropout, model.init, dtype),
               Critic(model.head_hidden, model.dropout, model.init, dtype))
