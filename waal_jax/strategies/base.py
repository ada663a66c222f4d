"""The query-strategy plugin interface and the sharded pool scorer they share.

A strategy is a class registered under a name (DESIGN.md section 2); the driver picks
it with `query.strategy=NAME`. Adding one is one module that calls `register`.
"""

import dataclasses
import functools
from typing import Callable, Dict, Type

import jax
import jax.numpy as jnp
import numpy as np

from waal_jax import data as data_lib
from waal_jax import sharding
from waal_jax.errors import UserError
from waal_jax.models import Networks


@dataclasses.dataclass(frozen=True)
class QuerySettings:
  """The query.* config fields a strategy may read."""
  strategy: str
  selection: float       # WAAL: weight of the critic (diversity) term
  mixture: float         # WAAL: weight of the first uncertainty bound in the mixture
  variant: str           # 'paper' or 'reference'
  batch_size: int        # pool examples scored per call, over all devices


class Strategy:
  """Chooses `query_size` unlabeled pool examples. Subclasses implement `select`."""
  name = ""
  needs_critic = False   # True if the strategy reads the WAAL critic

  def __init__(self, nets: Networks, spec: data_lib.DatasetSpec, settings: QuerySettings,
               mesh):
    self.nets, self.spec, self.settings, self.mesh = nets, spec, settings, mesh

  def select(self, key, variables: dict, pool: "ScoringPool", is_labeled: jax.Array,
             query_size: int) -> np.ndarray:
    """Pool indices (query_size,), none of them labeled; is_labeled is (N,) bool."""
    raise NotImplementedError


_REGISTRY: Dict[str, Type[Strategy]] = {}


def register(cls: Type[Strategy]) -> Type[Strategy]:
  _REGISTRY[cls.name] = cls
  return cls


def names():
  return sorted(_REGISTRY)


def create(nets: Networks, spec: data_lib.DatasetSpec, settings: QuerySettings,
           mesh) -> Strategy:
  if settings.strategy not in _REGISTRY:
    raise UserError(f"query.strategy: unknown strategy {settings.strategy!r}; "
                    f"choose one of {', '.join(names())}")
  return _REGISTRY[settings.strategy](nets, spec, settings, mesh)


@dataclasses.dataclass(frozen=True)
class ScoringPool:
  """The pool on the devices, padded to whole scoring batches."""
  images: jax.Array    # (M, H, W, C) uint8, M a multiple of batch_size
  count: int           # real examples N <= M
  batch_size: int


def scoring_pool(mesh, images: np.ndarray, batch_size: int) -> ScoringPool:
  if batch_size % mesh.size:
    raise UserError(f"query.batch_size={batch_size}: must be a multiple of the "
                    f"{mesh.size} devices")
  count = len(images)
  padded = -(-count // batch_size) * batch_size
  filler = np.zeros((padded - count, *images.shape[1:]), images.dtype)
  return ScoringPool(sharding.replicate(mesh, np.concatenate([images, filler])), count,
                     batch_size)


class PoolScorer:
  """Applies a per-example function to the whole pool, batch by batch, on all devices.

  `fn(variables, x)` maps normalised images (B, H, W, C) to an array or a dict of
  arrays with leading axis B. Each batch is split over the devices, so a pool of N
  takes N / (batch_size) calls whatever the number of devices.
  """

  def __init__(self, fn: Callable, spec: data_lib.DatasetSpec, mesh, batch_size: int):
    self.batch_size = batch_size

    def score_batch(variables, images, start):
      x = jax.lax.dynamic_slice_in_dim(images, start, batch_size)
      x = sharding.constrain_batch(mesh, data_lib.normalize(x, spec))
      return fn(variables, x)

    self._score_batch = jax.jit(score_batch)

  def __call__(self, variables, pool: ScoringPool):
    """fn over the pool: outputs with leading axis pool.count, on the devices."""
    outputs = [self._score_batch(variables, pool.images, np.int32(start))
               for start in range(0, pool.images.shape[0], self.batch_size)]
    joined = jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)
    return jax.tree.map(lambda a: a[:pool.count], joined)


@functools.partial(jax.jit, static_argnames=("k",))
def smallest_unlabeled(scores, is_labeled, *, k: int):
  """Indices of the k smallest scores among unlabeled examples (ties: lower index)."""
  masked = jnp.where(is_labeled, jnp.inf, scores)
  _, indices = jax.lax.top_k(-masked, k)
  return indices
