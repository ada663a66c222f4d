"""A VALID convolution + bias + 2x2 max pool as one matrix product, fast on XLA:CPU.

XLA:CPU runs the small convolutions of LeNet-5, and above all their gradients, far
below the machine's arithmetic speed (docs/design.md section 5). Here each layer is a
product of two well-shaped matrices instead:

  bands  bands  (2 * B * Ho/2 * nb, kh * (block + kw - 1) * Cin)  every kh-row window of the
         input cut into nb column blocks that each give `block` output columns, the
         windows of even output rows first;
  T      (kh * (block + kw - 1) * Cin, block * Cout) the kernel laid out as a banded
         (Toeplitz) matrix; its columns are ordered (column parity, column / 2,
         channel), so the 2x2 pool is a max over four contiguous quarters.

The result equals lax.conv_general_dilated + bias + reduce_window max pooling, its
gradient included (to float rounding): the pool's gradient goes to the first maximum
of each window in row-major order, as reduce_window's does; the constant background
of the images makes ties common, so this matters. Three custom VJPs keep the
backward pass in shapes XLA:CPU runs well: the kernel's gradient is a sum of static
slices of T's (not the serial scatter a gather's gradient is), the input's gradient
adds each window back in place (not a scatter, nor one loop fusion over every
window's pad), and the pool's gradient is assembled by stacking (not by adding
strided pads).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def _toeplitz_index(kh: int, kw: int, c_in: int, c_out: int, block: int) -> np.ndarray:
  """T[r, col] = flat_kernel[index[r, col]]; index == kernel size means 0.

  Rows (di, jj, ci) cover kh input rows x (block + kw - 1) input columns x Cin;
  columns (j % 2, j // 2, c) cover `block` output columns x Cout.
  """
  w_in = block + kw - 1
  zero = kh * kw * c_in * c_out
  index = np.full((kh, w_in, c_in, 2, block // 2, c_out), zero, np.int32)
  for di in range(kh):
    for dj in range(kw):
      for j in range(block):
        for ci in range(c_in):
          index[di, j + dj, ci, j % 2, j // 2, :] = (
              ((di * kw + dj) * c_in + ci) * c_out + np.arange(c_out))
  return index.reshape(kh * w_in * c_in, block * c_out)


@functools.lru_cache(maxsize=None)
def _toeplitz(kh: int, kw: int, c_in: int, c_out: int, block: int):
  """kernel (kh, kw, Cin, Cout) -> T, with the kernel's gradient as a sum of slices."""
  index = _toeplitz_index(kh, kw, c_in, c_out, block)
  w_in = block + kw - 1

  @jax.custom_vjp
  def toeplitz(kernel):
    return jnp.concatenate([kernel.reshape(-1), jnp.zeros(1, kernel.dtype)])[index]

  def forward(kernel):
    return toeplitz(kernel), None

  def backward(_, d_t):
    d_t = d_t.reshape(kh, w_in, c_in, 2, block // 2, c_out)
    d_kernel = jnp.stack([sum(d_t[:, j + dj, :, j % 2, j // 2, :] for j in range(block))
                          for dj in range(kw)], axis=1)              # (kh, kw, Cin, Cout)
    return (d_kernel,)

  toeplitz.defvjp(forward, backward)
  return toeplitz


@functools.lru_cache(maxsize=None)
def _bands(kh: int, w_in: int, block: int, h_out: int, blocks: int):
  """x (B, H, W, C) -> (2, B, h_out/2 * blocks, kh, w_in, C): every kh-row window of
  every column block, with the output row's parity first, so that the rows of the
  product for even and odd output rows form two contiguous halves."""

  def window(x, i, jb):
    return x[:, i:i + kh, jb * block:jb * block + w_in]

  @jax.custom_vjp
  def bands(x):
    return jnp.stack([jnp.stack([window(x, 2 * p + parity, jb)
                                 for p in range(h_out // 2) for jb in range(blocks)], axis=1)
                      for parity in (0, 1)])

  def forward(x):
    return bands(x), x.shape

  def backward(shape, d_bands):
    d_x = jnp.zeros(shape, d_bands.dtype)
    for parity in (0, 1):
      n = 0
      for p in range(h_out // 2):
        for jb in range(blocks):
          i = 2 * p + parity
          d_x = d_x.at[:, i:i + kh, jb * block:jb * block + w_in].add(d_bands[parity, :, n])
          n += 1
    return (d_x,)

  bands.defvjp(forward, backward)
  return bands


@jax.custom_vjp
def _pool_windows(y):
  """(2, R, 2, Q) -> (R, Q): max over the row-parity (0) and column-parity (2) axes."""
  return jnp.max(y, axis=(0, 2))


def max_of_four(parts):
  """The elementwise max of four window positions given in row-major order, and what
  first_max_gradients needs: where each of the first three equals it."""
  top = jnp.maximum(jnp.maximum(parts[0], parts[1]), jnp.maximum(parts[2], parts[3]))
  return top, tuple(p == top for p in parts[:3])


def first_max_gradients(is_max, g):
  """The gradient g of a 2x2 max, sent to the FIRST maximum of each window only (as
  reduce_window and PyTorch do; ties are common on constant backgrounds): the four
  positions' gradients in row-major order."""
  e0, e1, e2 = is_max
  first = [e0, e1 & ~e0, e2 & ~(e0 | e1), ~(e0 | e1 | e2)]
  zero = jnp.zeros_like(g)
  return [jnp.where(f, g, zero) for f in first]


def _pool_forward(y):
  return max_of_four([y[a, :, b] for a in (0, 1) for b in (0, 1)])


def _pool_backward(is_max, g):
  d = first_max_gradients(is_max, g)
  return (jnp.stack([jnp.stack(d[0:2], axis=1), jnp.stack(d[2:4], axis=1)]),)


_pool_windows.defvjp(_pool_forward, _pool_backward)


def conv_pool(x, kernel, bias, block: int, dtype=None):
  """max_pool_2x2(conv_valid(x, kernel) + bias) for x (B, H, W, Cin), kernel
  (kh, kw, Cin, Cout); `block` (even, dividing the output width) trades redundant
  multiply-adds (wider blocks) against smaller matrix products (narrower). With a
  `dtype` (e.g. bfloat16) the product's operands are cast to it, its result float32."""
  b, h, w, c_in = x.shape
  kh, kw, _, c_out = kernel.shape
  h_out, w_out = h - kh + 1, w - kw + 1
  if block % 2 or w_out % block or h_out % 2:
    raise ValueError(f"block {block} must be even and divide the output width {w_out}; "
                     f"the output height {h_out} must be even")
  blocks, w_in = w_out // block, block + kw - 1
  t = _toeplitz(kh, kw, c_in, c_out, block)(kernel)
  rows = _bands(kh, w_in, block, h_out, blocks)(x)              # (2, B, P*nb, kh, w_in, Cin)
  rows = rows.reshape(-1, kh * w_in * c_in)
  if dtype is None:
    y = rows @ t                                                # (2*B*P*nb, block*Cout)
  else:
    y = jnp.matmul(rows.astype(dtype), t.astype(dtype), preferred_element_type=jnp.float32)
  pooled = _pool_windows(y.reshape(2, -1, 2, block // 2 * c_out))   # (B*P*nb, block/2*Cout)
  # The bias is the same at the four window positions, so it can follow the max.
  return pooled.reshape(b, h_out // 2, w_out // 2, c_out) + bias
