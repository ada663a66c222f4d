"""Orbax checkpoints of the round loop, and the rule that a workdir belongs to one config.

A checkpoint is written after every finished round and holds all that the next round
needs: the labeled pool indices in the order they were bought, the root PRNG key, the
round history, and the trained network of that round (for later analysis). Orbax
writes into a temporary folder and renames it, so a run killed at any moment leaves
the previous checkpoint intact.
"""

import json
import os
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from waal_jax.errors import UserError

# Fields that say where the data are or how the same numbers are computed, not what is
# computed: a rerun may change them and still continue the same run. (Not al.rounds:
# the final budget fixes array shapes that random draws depend on, so a longer run is
# not a continuation of a shorter one.)
NOT_PART_OF_THE_RUN = ("data.data_dir", "data.manual_dir", "data.cache_dir", "data.download",
                       "model.conv", "parallel_seeds", "parallel_seeds_mode")
# Fields added after runs were recorded, with the value that does what those runs did:
# a recorded config without the field belongs to a config with that value.
ADDED_FIELDS = {
    "model.matmul_dtype": "float32",
    # The strategies of issue 12: older runs used none of them.
    "query.batchbald_configurations": 1024, "query.batchbald_candidates": 0,
    "query.typiclust_max_clusters": 500, "query.typiclust_neighbors": 20,
    "query.kmeans_iterations": 20, "query.probcover_radius": 0.0,
    "query.probcover_purity": 0.95, "query.embeddings_file": "",
    # The user's own data and the human oracle (issue 13).
    "data.path": "", "data.image_size": 0, "data.val_fraction": 0.1,
    "data.test_fraction": 0.2, "al.oracle": "simulated",
}
OWNER_FILE = "config.json"


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def check_workdir(workdir: str, config_dict: dict) -> bool:
  """True if `workdir` already belongs to this config, False if it is free.

  Raises UserError naming the first differing field when it holds a run of another
  config; nothing in it is touched then.
  """
  path = os.path.join(workdir, OWNER_FILE)
  if not os.path.exists(path):
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    if os.path.isdir(checkpoint_dir) and os.listdir(checkpoint_dir):
      raise UserError(f"--workdir {workdir} holds checkpoints but no {OWNER_FILE}; "
                      "use another --workdir")
    return False
  try:
    with open(path) as f:
      recorded = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path} is unreadable ({e}); use another --workdir") from e
  old, new = _flatten(recorded), _flatten(json.loads(json.dumps(config_dict)))
  for field in sorted(set(old) | set(new)):
    if field in NOT_PART_OF_THE_RUN:
      continue
    if field not in old and field in ADDED_FIELDS and new.get(field) == ADDED_FIELDS[field]:
      continue
    if old.get(field) != new.get(field):
      raise UserError(
          f"--workdir {workdir} holds a run of another config ({field}: "
          f"{old.get(field)!r} there, {new.get(field)!r} now); use another --workdir "
          "or delete that one")
  return True


def claim_workdir(workdir: str, config_dict: dict) -> None:
  """Records the config as the owner of `workdir` (after check_workdir said it is free)."""
  os.makedirs(workdir, exist_ok=True)
  write_json_atomically(os.path.join(workdir, OWNER_FILE), config_dict)


def write_json_atomically(path: str, payload: Any) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class LoopCheckpoints:
  """Save after each round; restore the latest."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))

  def save(self, finished_rounds: int, labeled: np.ndarray, root_key, history: list,
           variables: dict) -> None:
    loop = {"labeled": np.asarray(labeled, np.int32),
            "rng": np.asarray(jax.random.key_data(root_key))}
    self._manager.save(finished_rounds, args=ocp.args.Composite(
        loop=ocp.args.StandardSave(loop),
        history=ocp.args.JsonSave(history),
        model=ocp.args.StandardSave(jax.device_get(variables))))
    self._manager.wait_until_finished()

  def restore_latest(self) -> Optional[Tuple[int, np.ndarray, Any, list]]:
    """(finished rounds, labeled indices, root key, history), or None if there is none."""
    step = self._manager.latest_step()
    if step is None:
      return None
    restored = self._manager.restore(step, args=ocp.args.Composite(
        loop=ocp.args.StandardRestore(), history=ocp.args.JsonRestore()))
    loop = restored["loop"]
    root_key = jax.random.wrap_key_data(np.asarray(loop["rng"], np.uint32))
    return step, np.asarray(loop["labeled"], np.int64), root_key, list(restored["history"])

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
