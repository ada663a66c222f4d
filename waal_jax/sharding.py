"""A one-axis device mesh for data parallelism: batches split, everything else replicated.

The same code runs on one CPU, on 8 GPUs and (after jax.distributed.initialize()) on
several hosts: jit propagates the shardings and XLA inserts the reductions.
"""

from typing import Optional, Sequence

import jax
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
  if jax.process_count() == 1:
    return jax.device_put(tree, replicated(mesh))
  sharding = replicated(mesh)

  def put(leaf):
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


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
