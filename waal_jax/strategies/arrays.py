"""Every strategy on outputs you computed yourself, with any framework.

    import waal_jax
    picks = waal_jax.strategies.query("margin", 100, log_probs=log_probs, labeled=mask)
    picks = waal_jax.strategies.query("bald" ...)  # see waal_jax.strategies.names()

Each strategy reads the outputs it declares (`Strategy.inputs`; their shapes are in
`base.OUTPUTS`): log-probabilities, MC-dropout draws, embeddings, WAAL's critic
values, BADGE's last-layer inputs. The arrays take the same path as a model's outputs
over the pool (`Strategy.choose`), so the picks are those the strategy makes inside a
run given the same outputs. DeepFool steps through the model and needs one.
"""

import functools
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from waal_jax import data as data_lib
from waal_jax import fields
from waal_jax import sharding
from waal_jax.errors import UserError
from waal_jax.strategies import base

# Rows are padded to a multiple of this (as a pool is to whole scoring batches), which
# the blocked distance passes of the diversity strategies expect.
_ROW_MULTIPLE = 256


_DIMS = {"log_probs": 2, "mc_log_probs": 3, "embeddings": 2, "critic": 1,
         "last_layer_input": 2}


def _checked_outputs(name: str, needs, given: dict) -> dict:
  """The outputs as float32 arrays, their names, shapes and dtypes checked."""
  missing = [n for n in needs if n not in given]
  extra = [n for n in given if n not in needs]
  wants = ", ".join(f"{n} {base.OUTPUTS[n]}" for n in needs) or "no model outputs"
  if missing or extra:
    raise UserError(f"query({name!r}): takes {wants}; "
                    + (f"{', '.join(missing)} missing" if missing else
                       f"{', '.join(extra)} not used by it"))
  arrays = {}
  for key, value in given.items():
    array = np.asarray(value)
    if array.ndim != _DIMS[key] or not np.issubdtype(array.dtype, np.floating):
      raise UserError(f"{key}: expected floats of shape {base.OUTPUTS[key].split(' ')[0]}, "
                      f"got {array.dtype} of shape {array.shape}")
    arrays[key] = array.astype(np.float32, copy=False)
  counts = {key: len(array) for key, array in arrays.items()}
  if len(set(counts.values())) > 1:
    raise UserError(f"the outputs disagree on the number of examples: {counts}")
  return arrays


@functools.partial(jax.jit, static_argnames=("kind",))
def _summary(array, *, kind: str):
  """(all the values finite, the largest |log sum exp| of the last axis if kind is
  "log_probs" (0 for log-probabilities), the min and max if kind is "critic"): one
  pass over the array in float32, whose sums are exact to ~1e-6 here (the check
  allows 1e-3)."""
  if kind == "log_probs":   # a value that is not finite makes its row's total NaN
    totals = jnp.sum(jnp.where(jnp.isfinite(array), jnp.exp(array), jnp.nan), axis=-1)
    deviation = jnp.max(jnp.abs(jnp.log(totals)))
    finite = ~jnp.isnan(deviation)
  else:
    deviation, finite = jnp.zeros(()), jnp.all(jnp.isfinite(array))
  low, high = ((jnp.min(array), jnp.max(array)) if kind == "critic" else
               (jnp.zeros(()), jnp.zeros(())))
  return finite, deviation, low, high


def _checked_values(key: str, array: np.ndarray, rows: int) -> jax.Array:
  """The array padded to `rows`, after checking its values: finite, log-probabilities
  where the name says so, the critic's in [0, 1]."""
  kind = {"log_probs": "log_probs", "mc_log_probs": "log_probs"}.get(key, key)
  array = jax.device_put(array)       # onto the device once (the check and the query)
  finite, deviation, low, high = _summary(array, kind=kind)
  if not finite:
    raise UserError(f"{key}: holds a NaN or infinite value")
  if deviation > 1e-3:
    raise UserError(f"{key}: rows must be log-probabilities (log-sum-exp 0, here up to "
                    f"{float(deviation):.3g}); give log_softmax of the logits")
  if key == "critic" and (low < 0 or high > 1):
    raise UserError("critic: values must lie in [0, 1] (the sigmoid of the critic)")
  if rows == len(array):
    return array
  return jnp.pad(array, ((0, rows - len(array)),) + ((0, 0),) * (array.ndim - 1))


def query(strategy: str, k: int, *, labeled: Optional[np.ndarray] = None, seed: int = 0,
          options: Optional[Mapping] = None, num_classes: int = 0,
          **outputs: np.ndarray) -> np.ndarray:
  """k distinct indices of examples not labeled, chosen by `strategy` from `outputs`.

  Args:
    strategy: a name of `waal_jax.strategies.names()` (not deepfool).
    k: how many to pick.
    labeled: (N,) bool, True for the examples labeled already (default: none).
    seed: the random draws of the strategy (Random, BADGE, K-median, ...).
    options: the strategy's options (e.g. {"mc_samples": 20}); the rest keep their
      defaults (waal_jax.settings.schema()).
    num_classes: the classes (ProbCover's clusters), where no log_probs give them.
    **outputs: the model outputs the strategy reads, by name (base.OUTPUTS), e.g.
      log_probs=(N, C) for margin, mc_log_probs=(N, T, C) for dbal.

  Returns:
    (k,) int64 indices into the N examples.
  """
  cls = base.get(strategy)
  if cls.inputs is None:
    raise UserError(f"query({strategy!r}): needs the model itself; use "
                    "waal_jax.ActiveLearner")
  query_settings = base.QuerySettings.of(strategy, **dict(options or {}))
  arrays = _checked_outputs(strategy, cls.inputs, outputs)
  if arrays:
    count = len(next(iter(arrays.values())))
  elif labeled is not None:
    count = len(np.asarray(labeled))
  else:
    raise UserError(f"query({strategy!r}): give labeled=(N,) bool to say how many examples")
  is_labeled = (np.zeros(count, bool) if labeled is None else np.asarray(labeled))
  if is_labeled.shape != (count,) or is_labeled.dtype != bool:
    raise UserError(f"labeled: expected {count} booleans, got {is_labeled.dtype} of shape "
                    f"{is_labeled.shape}")
  free = int((~is_labeled).sum())
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k <= free:
    raise UserError(f"k={k!r}: must be an integer in 1..{free} (the examples not labeled)")
  classes = num_classes
  if "log_probs" in arrays:
    classes = arrays["log_probs"].shape[-1]
  elif "mc_log_probs" in arrays:
    classes = arrays["mc_log_probs"].shape[-1]
  if strategy == "probcover" and classes < 2:
    raise UserError("num_classes: ProbCover needs the number of classes (>= 2)")
  fields.Int(0).check("num_classes", classes)
  mesh = sharding.make_mesh()
  rows = -(-count // (_ROW_MULTIPLE * mesh.size)) * _ROW_MULTIPLE * mesh.size
  padded = {key: sharding.replicate(mesh, _checked_values(key, array, rows))
            for key, array in arrays.items()}
  chooser = _chooser(cls, tuple(sorted(query_settings.options.items())), classes, mesh)
  picks = np.asarray(chooser.choose(padded, is_labeled, jax.random.key(seed), int(k)),
                     np.int64)
  chooser.take_notes()   # (a run logs them; here they would pile up on the shared object)
  return picks


@functools.lru_cache(maxsize=32)
def _chooser(cls, options: tuple, classes: int, mesh) -> base.Strategy:
  """One strategy object per strategy class, options, classes and mesh, so that
  repeated queries reuse what it compiled (its jitted functions belong to it)."""
  spec = data_lib.DatasetSpec("arrays", (), classes)
  return cls(None, spec, base.QuerySettings.of(cls.name, **dict(options)), mesh)
