"""A one-axis device mesh for data parallelism: batches and the pool split, the rest
replicated.

The same code runs on one CPU, on 8 GPUs and (after jax.distributed.initialize()) on
several hosts: jit propagates the shardings and XLA inserts the reductions.

The pool is the one array that grows with the data, so it is split, never copied: it
lies on the devices as blocks (M / B, B, ...) of B = batch_per_device x devices examples,
each block's B rows split over the devices (`pool_blocks`). A scoring call takes one block,
already laid out as a data-parallel batch, and a device holds only 1 / devices of the
pool. Rows anywhere in it are read with `pool_rows`.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXIS = "data"


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> jax.sharding.Mesh:
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh((len(devices),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  """Leading (batch) axis split over the devices."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(mesh, tree):
  """Every leaf (host or device array) as a copy on every device of the mesh.

  With several processes (hosts) each process gives its own copy, which must be equal
  on all of them (the same data, seeds and computations make it so).
  """
  return put(tree, replicated(mesh))


def put(tree, sharding: NamedSharding):
  """Every leaf (host or device array) on the mesh's devices as `sharding` lays it out.
  With several processes each gives the whole array (equal on all of them) and each
  device takes its part."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put_leaf(leaf):
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put_leaf, tree)


def block_sharded(mesh) -> NamedSharding:
  """(blocks, B, ...) with each block's B rows split over the devices."""
  return NamedSharding(mesh, P(None, DATA_AXIS))


def pool_blocks(mesh, examples: np.ndarray, batch_per_device: int) -> jax.Array:
  """The pool (N, ...) on the devices as (M / B, B, ...) blocks, B = batch_per_device x
  devices, padded with zeros to M >= N rows; row r is block r // B, place r % B."""
  block = batch_per_device * mesh.size
  count = len(examples)
  padded = max(1, -(-count // block)) * block
  blocks = np.zeros((padded, *examples.shape[1:]), examples.dtype)
  blocks[:count] = examples
  return put(blocks.reshape(padded // block, block, *examples.shape[1:]), block_sharded(mesh))


def pool_rows(mesh, blocks: jax.Array, indices: jax.Array) -> jax.Array:
  """Inside jit: rows `indices` (K,) of the blocked pool, whole on every device.

  Each device reads the rows it holds, zeros elsewhere, and one sum over the devices
  assembles them (a sum of one value and zeros: exact for any dtype), so no device ever
  holds more of the pool than its own part and the K rows.
  """
  block = blocks.shape[1]
  if mesh.size == 1:
    return blocks[indices // block, indices % block]
  per_device = block // mesh.size

  def local(part, indices):                      # part: (M / B, B / devices, ...)
    place = indices % block - jax.lax.axis_index(DATA_AXIS) * per_device
    mine = (place >= 0) & (place < per_device)
    rows = part[indices // block, jnp.clip(place, 0, per_device - 1)]
    rows = jnp.where(mine.reshape(-1, *([1] * (rows.ndim - 1))), rows, jnp.zeros_like(rows))
    return jax.lax.psum(rows, DATA_AXIS)

  return jax.shard_map(local, mesh=mesh, in_specs=(P(None, DATA_AXIS), P()), out_specs=P(),
                       check_vma=False)(blocks, indices)


def to_host(tree):
  """Device arrays -> numpy arrays on this host, whole, whatever their sharding."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def constrain_batch(mesh, x):
  """Inside jit: split x's leading axis over the devices (if it divides evenly)."""
  if mesh.size == 1 or x.shape[0] % mesh.size:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))


def wait_each_call(mesh) -> bool:
  """Whether host loops must wait for each call before issuing the next.

  On simulated CPU devices (--xla_force_host_platform_device_count, more devices than
  cores) XLA:CPU deadlocks when two calls with cross-device reductions overlap: the
  devices that reach the second call's reduction first hold the threads that the late
  device needs to finish the first. Real accelerators queue calls per device.
  """
  return mesh.size > 1 and mesh.devices.flat[0].platform == "cpu"


def describe_devices() -> str:
  """E.g. 'cpu' or '8x NVIDIA H100 80GB HBM3', for results.json."""
  devices = jax.devices()
  kind = devices[0].device_kind if devices[0].platform != "cpu" else "cpu"
  return kind if len(devices) == 1 else f"{len(devices)}x {kind}"


def on_one_device(tree):
  """The arrays, whole, on this process's first device: for sequential (greedy) work,
  where copies on the other devices would add nothing (simulated CPU devices would
  share the cores for them) and one device computes the same whatever the mesh."""
  return jax.device_put(to_host(tree), jax.local_devices()[0])
