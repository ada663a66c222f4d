"""A one-axis device mesh for data parallelism: batches split, everything else replicated.

The same code runs on one CPU, on 8 GPUs and (after jax.distributed.initialize()) on
several hosts: jit propagates the shardings and XLA inserts the reductions.
"""

from typing import Optional, Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

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
  return jax.device_put(tree, replicated(mesh))


def constrain_batch(mesh, x):
  """Inside jit: split x's leading axis over the devices (if it divides evenly)."""
  if mesh.size == 1 or x.shape[0] % mesh.size:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))


def describe_devices() -> str:
  """E.g. 'cpu' or '8x NVIDIA H100 80GB HBM3', for results.json."""
  devices = jax.devices()
  kind = devices[0].device_kind if devices[0].platform != "cpu" else "cpu"
  return kind if len(devices) == 1 else f"{len(devices)}x {kind}"
