"""The query-strategy plugin interface and the sharded pool scorer they share.

A strategy is a class registered under a name; the driver picks it with
`query.strategy=NAME`. Adding one is one module that calls `register`: the class
declares its options (`config_fields`: name -> fields.Option, a default, a check and a
line of help), which become `query.<name>` config fields, and receives their checked
values in `self.options`. Strategies work on the pool padded to
whole scoring batches (M >= N examples); the padding is never selectable.
"""

import dataclasses
import functools
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type

import jax
import jax.numpy as jnp
import numpy as np

from waal_jax import data as data_lib
from waal_jax import fields
from waal_jax import progress
from waal_jax import sharding
from waal_jax.errors import UserError
from waal_jax.models import Networks


@dataclasses.dataclass(frozen=True)
class ScoringPool:
  """The pool on the devices, split over them in blocks of one scoring call each."""
  blocks: jax.Array    # (M / batch_size, batch_size, ...), rows split over the devices
  count: int           # real examples N <= M; rows N.. are zeros
  mesh: jax.sharding.Mesh
  source: Optional[np.ndarray] = None   # (N,) data.Splits.pool_source, where known

  @property
  def batch_size(self) -> int:
    """Examples per scoring call, over all devices."""
    return self.blocks.shape[1]

  @property
  def padded_count(self) -> int:
    """M: the rows on the devices, real examples and padding."""
    return self.blocks.shape[0] * self.blocks.shape[1]

  @property
  def example_shape(self) -> Tuple[int, ...]:
    """One example's shape, e.g. (28, 28, 1)."""
    return self.blocks.shape[2:]

  def selectable(self, is_labeled: np.ndarray) -> jax.Array:
    """(M,) bool on the devices: True for unlabeled real examples."""
    return selectable_rows(self.mesh, self.padded_count, is_labeled)


def selectable_rows(mesh, rows: int, is_labeled: np.ndarray) -> jax.Array:
  """(rows,) bool on the devices: True for the unlabeled examples of is_labeled (N,);
  rows N.. are padding, never selectable."""
  mask = np.zeros(rows, bool)
  mask[:len(is_labeled)] = ~np.asarray(is_labeled, bool)
  return sharding.replicate(mesh, mask)


# What a strategy may read of a model (`Strategy.inputs`), as arrays with one row per
# pool example; `waal_jax.strategies.query` takes them precomputed.
OUTPUTS = {
    "log_probs": "(N, classes) log-probabilities",
    "mc_log_probs": "(N, T, classes) log-probabilities of T MC-dropout passes",
    "embeddings": "(N, D) features",
    "critic": "(N,) WAAL critic values g(x) in [0, 1]",
    "last_layer_input": "(N, H) the input of the classifier's last dense layer",
}


def scoring_pool(mesh, images: np.ndarray, batch_per_device: int,
                 source: Optional[np.ndarray] = None) -> ScoringPool:
  """The pool padded to whole batches of batch_per_device examples on every device,
  split over the devices (sharding.pool_blocks).

  Fixing the batch per device (not in all) gives each device the same computation
  whatever their number, so scores, and selections, are identical on 1 and 8 devices.
  """
  return ScoringPool(sharding.pool_blocks(mesh, images, batch_per_device), len(images), mesh,
                     source)


class Strategy:
  """Chooses `query_size` unlabeled pool examples.

  A strategy declares the model outputs it reads (`inputs`, names of OUTPUTS) and
  implements `choose` on them; `select` computes them over the pool with the model
  contract and calls `choose`, and `waal_jax.strategies.query` calls `choose` on
  arrays the user computed. A strategy that needs the model itself (DeepFool) has
  `inputs = None` and implements `select`.
  """
  name = ""
  needs_critic = False   # True if the strategy reads the adversarially trained critic
  config_fields: Mapping[str, fields.Option] = {}   # query.<name> -> default, check, help
  inputs: Optional[Tuple[str, ...]] = ()            # the OUTPUTS `choose` reads

  def __init__(self, nets: Networks, spec: data_lib.DatasetSpec, query, mesh):
    """`query`: settings.QuerySettings (batch_size, and this strategy's options)."""
    self.nets, self.spec, self.mesh = nets, spec, mesh
    self.options = query.options
    self._notes: List[str] = []

  def note(self, message: str) -> None:
    """Keeps a line for the user about the current query (see `take_notes`)."""
    self._notes.append(message)

  def take_notes(self) -> List[str]:
    """The lines the last `select` kept, emptied: the loop logs them and records them
    in the round's `query_notes`."""
    notes, self._notes = self._notes, []
    return notes

  def select(self, key, variables: dict, pool: ScoringPool, is_labeled: np.ndarray,
             query_size: int) -> np.ndarray:
    """Pool indices (query_size,), distinct, none labeled; is_labeled is (N,) bool."""
    raise NotImplementedError

  def checked_select(self, key, variables: dict, pool: ScoringPool, is_labeled: np.ndarray,
                     query_size: int) -> np.ndarray:
    """`select`, its picks checked (distinct, none labeled) as int64 pool indices."""
    picks = np.asarray(self.select(key, variables, pool, is_labeled, query_size), np.int64)
    if len(set(picks.tolist())) != query_size or np.asarray(is_labeled)[picks].any():
      raise RuntimeError(f"strategy {self.name} returned an invalid batch")
    return picks

  def choose(self, outputs: Dict[str, jax.Array], is_labeled: np.ndarray, key,
             query_size: int) -> np.ndarray:
    """The picks from the model outputs `inputs` names, each with M >= N rows on the
    devices (rows N.. are padding and never chosen); is_labeled is (N,) bool."""
    raise NotImplementedError

  def batch_outputs(self, variables, x, keys) -> Dict[str, jax.Array]:
    """The outputs `inputs` names for a batch of normalised inputs x (B, ...), through
    the model contract; `keys` (B,) draw each example's MC-dropout masks."""
    nets, params = self.nets, variables["params"]
    z, _ = nets.embed(params, variables["batch_stats"], x)
    outputs = {}
    for name in self.inputs:
      if name == "log_probs":
        outputs[name] = jax.nn.log_softmax(nets.logits(params, z))
      elif name == "critic":
        outputs[name] = nets.critic_value(params["critic"], z)
      elif name == "embeddings":
        outputs[name] = z
      elif name == "last_layer_input":
        outputs[name] = nets.last_layer_input(params, z)
      elif name == "mc_log_probs":
        outputs[name] = self._mc_log_probs(params, variables["batch_stats"], x, z, keys)
      else:
        raise ValueError(f"unknown model output {name!r}")
    return outputs

  def _mc_log_probs(self, params, batch_stats, x, z, keys):
    """(B, T, C): T passes with every dropout layer on, the masks of each example drawn
    from its own key (the same on any device count)."""
    def one_pass(t):
      def one_example(x_i, z_i, key_i):
        extractor_key, head_key = jax.random.split(jax.random.fold_in(key_i, t))
        z_i = self.nets.dropout_features(params, batch_stats, x_i, z_i, extractor_key)
        logits = self.nets.logits(params, z_i[None], mc=True, dropout_key=head_key)
        return jax.nn.log_softmax(logits[0])
      return jax.vmap(one_example)(x, z, keys)                         # (B, C)
    samples = jax.vmap(one_pass)(jnp.arange(self.options["mc_samples"]))   # (T, B, C)
    return jnp.swapaxes(samples, 0, 1)

  def check_pool(self, pool: ScoringPool) -> None:
    """Raises errors.UserError if this strategy cannot query `pool` (checked when a run
    is built, before any training)."""


_REGISTRY: Dict[str, Type[Strategy]] = {}


def register(cls: Type[Strategy]) -> Type[Strategy]:
  """Adds a strategy. Strategies may share an option (one config field), and then
  must declare it alike."""
  if cls.name in _REGISTRY:
    raise ValueError(f"strategy {cls.name!r} is registered twice")
  known = all_options()
  for name, option in cls.config_fields.items():
    if name in known and known[name] != option:
      raise ValueError(f"strategy {cls.name!r} declares query.{name} unlike another "
                       "strategy: a shared option must be the same fields.Option")
  _REGISTRY[cls.name] = cls
  return cls


def all_options() -> Dict[str, fields.Option]:
  """Every registered strategy's options, each shared one once."""
  return {name: option for cls in _REGISTRY.values()
          for name, option in cls.config_fields.items()}


def names() -> List[str]:
  """The registered strategies' names, sorted."""
  return sorted(_REGISTRY)


def get(name: str) -> Type[Strategy]:
  """The strategy class registered as `name`; an unknown name is a UserError."""
  if not isinstance(name, str) or name not in _REGISTRY:
    raise UserError(f"query.strategy={name!r}: unknown strategy; choose one of "
                    f"{', '.join(names())}")
  return _REGISTRY[name]


@dataclasses.dataclass(frozen=True)
class QuerySettings:
  """The strategy and its options (each strategy declares its own: `config_fields`);
  part of the settings schema (waal_jax.settings)."""
  strategy: str = fields.setting("waal", fields.Text(), "the query strategy: waal, random, "
                                 "least_confidence, margin, entropy, kmedian, coreset, dbal, "
                                 "deepfool, badge, batchbald, typiclust, probcover")
  batch_size: int = fields.setting(256, fields.Int(1), "pool examples scored per call and "
                                   "device (on CPU 256 stays in cache)")
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)   # the strategy's own

  @classmethod
  def of(cls, strategy: str, batch_size: int = 256, **options) -> "QuerySettings":
    """The settings of `strategy`: its options checked, the ones not given at their
    defaults; an option it does not have is refused."""
    known = get(strategy).config_fields
    for name in options:
      if name not in known:
        raise UserError(f"query.{name}: not an option of query.strategy={strategy} (it has "
                        f"{', '.join(known) or 'none'})")
    checked = {name: option.check.check(f"query.{name}", options.get(name, option.default))
               for name, option in known.items()}
    return cls(strategy, fields.Int(1).check("query.batch_size", batch_size),
               types.MappingProxyType(checked))


def create(nets: Networks, spec: data_lib.DatasetSpec, query, mesh) -> Strategy:
  """The strategy `query.strategy` names (query: settings.QuerySettings)."""
  return get(query.strategy)(nets, spec, query, mesh)


class PoolScorer:
  """Applies a per-example function to the whole pool, block by block, on all devices.

  `fn(variables, x, keys)` maps normalised inputs (B, ...) to an array or a dict of
  arrays with leading axis B; `keys` (B,) are the query key folded with each example's
  pool position, so random draws do not depend on how the pool is batched. Each call
  takes one block of the pool: batch_per_device examples on every device. The outputs
  go into one buffer, block by block, split over the devices as the pool is.
  """

  def __init__(self, fn: Callable, spec: data_lib.DatasetSpec, mesh, batch_per_device: int):
    self.batch_size = batch_size = batch_per_device * mesh.size
    self.mesh = mesh

    def score_block(variables, blocks, i, key, buffers):
      x = data_lib.normalize(jax.lax.dynamic_index_in_dim(blocks, i, keepdims=False), spec)
      x = sharding.constrain_batch(mesh, x)
      positions = i * batch_size + jnp.arange(batch_size)
      keys = jax.vmap(lambda p: jax.random.fold_in(key, p))(positions)
      return jax.tree.map(lambda buffer, out: jax.lax.dynamic_update_index_in_dim(
          buffer, out.astype(buffer.dtype), i, 0), buffers, fn(variables, x, keys))

    self._score_block = jax.jit(score_block, donate_argnums=4)
    # One compiled allocation per output layout: the buffers' shapes and dtypes (static).
    self._zeros = jax.jit(
        lambda layouts: {name: jnp.zeros(shape, dtype) for name, (shape, dtype) in layouts},
        static_argnums=0, out_shardings=sharding.block_sharded(mesh))
    self._fn = fn
    self._wait = sharding.wait_each_call(mesh)

  def __call__(self, variables, pool: ScoringPool, key=None):
    """fn over the padded pool: outputs with leading axis M, on the devices."""
    key = jax.random.key(0) if key is None else key
    if pool.batch_size != self.batch_size:
      raise ValueError(f"the pool's blocks hold {pool.batch_size} examples, the scorer's "
                       f"calls {self.batch_size}")
    blocks = pool.blocks.shape[0]
    shapes = jax.eval_shape(self._fn, variables,
                            jax.ShapeDtypeStruct((self.batch_size, *pool.example_shape),
                                                 jnp.float32),
                            jax.ShapeDtypeStruct((self.batch_size,), jax.random.key(0).dtype))
    leaves, tree = jax.tree.flatten(shapes)
    layouts = tuple((i, ((blocks, *s.shape), jnp.dtype(s.dtype))) for i, s in enumerate(leaves))
    zeros = self._zeros(layouts)
    buffers = jax.tree.unflatten(tree, [zeros[i] for i in range(len(leaves))])
    rows = blocks * pool.blocks.shape[1]
    with progress.Progress(rows, "scoring the pool", "examples") as bar:
      for i in range(blocks):
        buffers = self._score_block(variables, pool.blocks, np.int32(i), key, buffers)
        due = bar.due()
        if self._wait or due:
          jax.block_until_ready(buffers)
        if due:
          bar.update((i + 1) * pool.blocks.shape[1])
    return jax.tree.map(_rows, buffers)


@jax.jit
def _rows(blocks):
  """(M / B, B, ...) -> (M, ...): the block layout read as rows."""
  return blocks.reshape(-1, *blocks.shape[2:])


@functools.partial(jax.jit, static_argnames=("k",))
def smallest_selectable(scores, selectable, *, k: int):
  """Indices of the k smallest scores among selectable examples (ties: lower index)."""
  _, indices = jax.lax.top_k(-jnp.where(selectable, scores, jnp.inf), k)
  return indices


def smallest_unlabeled(scores, is_labeled, *, k: int):
  """The k smallest scores among examples that are not labeled."""
  return smallest_selectable(scores, ~jnp.asarray(is_labeled), k=k)


class ScoreStrategy(Strategy):
  """A strategy that scores every example on its own and takes the smallest scores.

  Subclasses define `scores(outputs) -> (B,)` on their `inputs`: smaller = query
  first. Over the pool the scores are computed batch by batch, so the outputs of the
  whole pool (e.g. T MC-dropout draws) never need to be held at once.
  """

  def __init__(self, nets, spec, query, mesh):
    super().__init__(nets, spec, query, mesh)
    self.scorer = PoolScorer(self.example_scores, spec, mesh, query.batch_size)
    # On arrays: one fused pass, as inside the scorer (op by op, each step would
    # write and read an array the size of the outputs).
    self._scores = jax.jit(self.scores)

  def scores(self, outputs: Dict[str, jax.Array]) -> jax.Array:
    raise NotImplementedError

  def example_scores(self, variables, x, keys):
    return self.scores(self.batch_outputs(variables, x, keys))

  def select(self, key, variables, pool, is_labeled, query_size):
    scores = self.scorer(variables, pool, key)
    chosen = smallest_selectable(scores, pool.selectable(is_labeled), k=query_size)
    return sharding.to_host(chosen)

  def choose(self, outputs, is_labeled, key, query_size):
    scores = self._scores(outputs)
    selectable = selectable_rows(self.mesh, scores.shape[0], is_labeled)
    return sharding.to_host(smallest_selectable(scores, selectable, k=query_size))
