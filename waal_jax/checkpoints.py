"""Orbax checkpoints of the round loop, the rule that a workdir belongs to one config,
and the lock that lets one run at a time use it.

A checkpoint is written after every finished round and holds all that the next round
needs: the labeled pool indices in the order they were bought, the root PRNG key, the
round history, and the trained network of that round (for later analysis). Orbax
writes into a temporary folder and renames it, so a run killed at any moment leaves
the previous checkpoint intact; one damaged afterwards (a truncated copy, a full disk)
is reported by `restore` as DamagedCheckpoint, and the loop falls back.

Within a round, `RoundProgress` keeps the training between epochs (one file, replaced
atomically), so that a run killed mid-round loses at most the epochs since it was last
saved, not the whole round.
"""

import contextlib
import fcntl
import gc
import hashlib
import json
import logging
import os
import re
import socket
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

from flax import serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from waal_jax import interrupts
from waal_jax import settings
from waal_jax import strategies
from waal_jax.errors import UserError

# Fields that say where the data are or how the same numbers are computed, not what is
# computed: a rerun may change them and still continue the same run. (Not al.rounds:
# the final budget fixes array shapes that random draws depend on, so a longer run is
# not a continuation of a shorter one.)
NOT_PART_OF_THE_RUN = ("data.data_dir", "data.manual_dir", "data.cache_dir", "data.download",
                       "model.conv", "parallel_seeds", "parallel_seeds_mode", "al.wait",
                       "al.poll_seconds", "al.reimport", "tensorboard")
# Fields added with a default that does not do what runs recorded before them did: the
# value that does. (Every other added field's default does what the older runs did.)
EARLIER_BEHAVIOUR = {"query.typiclust_kmeans": "lloyd"}
OWNER_FILE = "config.json"
LOCK_FILE = "run.lock"
PROGRESS_FILE = "round_progress.msgpack"
# What this process has saved of a round's training: workdir -> (round, epochs saved),
# for the line a stop by a signal ends with (reading the file back would take seconds
# for a large network).
SAVED_PROGRESS: dict = {}


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
  defaults = json.loads(json.dumps({name: o.default for name, o in settings.schema()}))
  unread = _options_the_strategy_does_not_read(new.get("query.strategy"))
  for field in sorted(set(old) | set(new)):
    if field in NOT_PART_OF_THE_RUN or field in unread:
      continue
    was = old.get(field)
    if field not in old and field in defaults:
      # Added after the run was recorded: the run did what this value does.
      was = EARLIER_BEHAVIOUR.get(field, defaults[field])
    if was != new.get(field):
      raise UserError(
          f"--workdir {workdir} holds a run of another config ({field}: "
          f"{was!r} there, {new.get(field)!r} now); use another --workdir "
          "or delete that one")
  return True


def _options_the_strategy_does_not_read(strategy) -> set:
  """query.<option> fields of the other strategies: a run never reads them, so a new
  default of one (query.batchbald_candidates 0 -> 2000) leaves every other run as it
  was. (A run of another strategy differs in query.strategy itself.)"""
  try:
    own = strategies.get(strategy).config_fields
  except UserError:
    return set()
  return {f"query.{name}" for name in strategies.all_options() if name not in own}


def claim_workdir(workdir: str, config_dict: dict) -> None:
  """Records the config as the owner of `workdir` (after check_workdir said it is free)."""
  os.makedirs(workdir, exist_ok=True)
  write_json_atomically(os.path.join(workdir, OWNER_FILE), config_dict)


def write_json_atomically(path: str, payload: Any) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with interrupts.held():         # (a stop would leave the temporary file behind)
    with open(tmp, "w") as f:
      json.dump(payload, f, indent=1)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)


class WorkdirLock:
  """One run per workdir: an exclusive flock on WORKDIR/run.lock, taken before anything
  in the workdir is read or written and held until `release`.

  The kernel drops a flock when its process ends, however it ends, so the lock of a
  run killed with kill -9 is simply taken by the rerun; the process and host written
  into the file only name the holder in a refusal (and, left behind by a killed run,
  show that it was taken over). A refused run changes nothing in the workdir.
  """

  def __init__(self, workdir: str, log: Callable[[str], None]):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._made_workdir = not os.path.isdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _read_lock(fd) or "another process"
        os.close(fd)
        raise UserError(f"--workdir {workdir} is in use by {holder} ({self.path}); wait "
                        "for that run to end or stop it, or use another --workdir") from None
      try:
        if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
          break
      except FileNotFoundError:
        pass
      os.close(fd)   # Its holder removed the file as it released it: lock the new one.
    previous = _read_lock(fd)
    if previous:
      log(f"{workdir}: taking over the lock of {previous}, which ended without releasing it")
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    self._fd = fd

  def release(self) -> None:
    """Removes the file (a run that ended normally leaves none) and unlocks."""
    if self._fd is None:
      return
    try:
      os.unlink(self.path)   # Before unlocking: a run that opened it meanwhile sees it gone.
    except FileNotFoundError:
      pass
    os.close(self._fd)
    self._fd = None
    if self._made_workdir:   # A run refused before writing anything leaves no folder.
      try:
        os.rmdir(os.path.dirname(self.path))
      except OSError:
        pass


def _read_lock(fd: int) -> str:
  return os.pread(fd, 500, 0).decode(errors="replace").strip()


class DamagedCheckpoint(Exception):
  """A checkpoint that cannot be read; the message names its file and the reason."""


def _damage(error: Exception, item_dir: str) -> str:
  """'FILE: reason' in one line from an Orbax or TensorStore error (which names the file
  it failed on, or not: then the item's folder)."""
  text = " ".join(str(error).split()).split(" [tensorstore_spec=")[0].strip("'")
  files = re.findall(r'local file "([^"]+)"', text)
  if files:
    return f"{files[-1]}: {text.rsplit(': ', 1)[-1]}"
  return f"{getattr(error, 'filename', None) or item_dir}: {text}"


_ABANDONED_READ_REPORTS = ("Task exception was never retrieved", "Event loop is closed")


@contextlib.contextmanager
def _abandoned_reads_unreported():
  """Orbax reads an item's arrays as concurrent asyncio tasks. When one fails on a
  damaged file the others are abandoned, and within milliseconds asyncio reports them,
  tracebacks and all: "Task exception was never retrieved" (logged once collected) and
  "Event loop is closed" (unraisable, from TensorStore's callbacks). DamagedCheckpoint
  says what failed in one line, so those two reports are dropped here."""
  asyncio_log, unraisable_hook = logging.getLogger("asyncio"), sys.unraisablehook

  def keep(record) -> bool:
    return _ABANDONED_READ_REPORTS[0] not in record.getMessage()

  def hook(unraisable) -> None:
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == _ABANDONED_READ_REPORTS[1]):
      unraisable_hook(unraisable)

  asyncio_log.addFilter(keep)
  sys.unraisablehook = hook
  try:
    yield
  finally:
    sys.unraisablehook = unraisable_hook
    asyncio_log.removeFilter(keep)


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
    with interrupts.held():
      # A run that fell back past a damaged checkpoint replaces it (Orbax would not save
      # a step at or below its latest); the rerun recomputes it exactly.
      for step in self.steps():
        if step >= finished_rounds:
          self._manager.delete(step)
      self._manager.save(finished_rounds, args=ocp.args.Composite(
          loop=ocp.args.StandardSave(loop),
          history=ocp.args.JsonSave(history),
          model=ocp.args.StandardSave(jax.device_get(variables))))
      self._manager.wait_until_finished()

  def steps(self) -> List[int]:
    """The saved steps (finished rounds), oldest first."""
    return sorted(self._manager.all_steps())

  def restore(self, step: int) -> Tuple[np.ndarray, Any, list]:
    """(labeled indices, root key, history) after `step` finished rounds. Raises
    DamagedCheckpoint if what the loop needs of it cannot be read (the network, not
    needed to resume, is not read)."""
    loop = self._restore_item(step, "loop", ocp.args.StandardRestore())
    history = self._restore_item(step, "history", ocp.args.JsonRestore())
    root_key = jax.random.wrap_key_data(np.asarray(loop["rng"], np.uint32))
    return np.asarray(loop["labeled"], np.int64), root_key, list(history)

  def _restore_item(self, step: int, item: str, args) -> Any:
    with _abandoned_reads_unreported():
      try:   # Item by item, to say which one failed.
        return self._manager.restore(step, args=ocp.args.Composite(**{item: args}))[item]
      # What Orbax and TensorStore raise for a truncated, missing or garbled file.
      except (OSError, ValueError, KeyError) as e:
        damage = _damage(e, os.path.join(self._manager.directory, str(step), item))
      time.sleep(0.2)   # (the abandoned reads end and report meanwhile)
      gc.collect()
    raise DamagedCheckpoint(f"checkpoint {step} cannot be read ({damage})")

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


class RoundProgress:
  """The training of one round between its epochs, in WORKDIR/round_progress.msgpack.

  `train.Trainer.fit` saves its state here (the networks, both optimisers, the model
  selection and the epochs' records) when `due()`, and a rerun of the round continues
  after the saved epoch, ending exactly as the uninterrupted round. The file names the
  round, its labeled set and its key, so a file from any other round is never used;
  the loop discards it once the round is written. A damaged file is only a lost
  shortcut: the round trains again from its first epoch.
  """

  def __init__(self, workdir: str, round_index: int, labeled: np.ndarray, round_key,
               every_seconds: float, log: Callable[[str], None], seed_batch: str = ""):
    """`seed_batch` names the seeds of a vmapped batch that trains this round with
    others: what a batch saved is used only by the same batch, and a seed's own only
    by itself (a seed that stopped early goes on training inside the batch)."""
    self.path, self.round_index = os.path.join(workdir, PROGRESS_FILE), round_index
    digest = hashlib.sha256(np.asarray(labeled, np.int64).tobytes()
                            + np.asarray(jax.random.key_data(round_key)).tobytes())
    self.identity = f"round {round_index} {digest.hexdigest()}" + (
        f" with seeds {seed_batch}" if seed_batch else "")
    self.every_seconds, self.log = every_seconds, log
    self._last_save = time.monotonic()

  def load(self) -> Optional[dict]:
    """What `save` wrote for this round, or None (no file, another round's, damaged)."""
    if not os.path.exists(self.path):
      return None
    try:
      with open(self.path, "rb") as f:
        payload = serialization.msgpack_restore(f.read())
      identity = payload["identity"]
    # Whatever a truncated or garbled file raises: the file is only a shortcut.
    except Exception as e:  # pylint: disable=broad-except
      self.log(f"  {self.path} cannot be read ({type(e).__name__}: {e}); the round "
               "trains from its first epoch")
      return None
    return payload if identity == self.identity else None

  def due(self) -> bool:
    return time.monotonic() - self._last_save >= self.every_seconds

  def save(self, payload: dict) -> None:
    """Replaces the file with `payload` (host arrays and plain values), atomically."""
    data = serialization.msgpack_serialize({**payload, "identity": self.identity})
    temporary = self.path + ".tmp"
    with interrupts.held():
      with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.replace(temporary, self.path)
    self._last_save = time.monotonic()
    SAVED_PROGRESS[os.path.dirname(self.path)] = (self.round_index,
                                                   int(payload.get("epochs_run", 0)))

  def discard(self) -> None:
    SAVED_PROGRESS.pop(os.path.dirname(self.path), None)
    with interrupts.held():
      for path in (self.path, self.path + ".tmp"):
        if os.path.exists(path):
          os.remove(path)
