"""The active-learning loop: train -> evaluate -> query -> label, round after round.

`run(config, workdir)` is the whole experiment. After every round it rewrites
`results.json` (atomically) and saves a checkpoint; called again on the same workdir
it continues after the last finished round and ends as an uninterrupted run would,
because every random draw of round r comes from fold_in(fold_in(key(seed), 1), r)
(ActiveLearner.round_keys). Within a round
the training is saved between epochs (checkpoints.RoundProgress), at most every
`progress_seconds`, and the rerun continues it from there.
"""

import dataclasses
import json
import logging
import os
import time
from typing import Callable, List, Optional, Tuple

import jax
import numpy as np

from waal_jax import checkpoints
from waal_jax import data as data_lib
from waal_jax import label_studio
from waal_jax import learner as learner_lib
from waal_jax import metrics
from waal_jax import models
from waal_jax import oracle
from waal_jax import progress as progress_lib
from waal_jax import provenance
from waal_jax import settings as settings_lib
from waal_jax import sharding
from waal_jax import strategies
from waal_jax import tensorboard_writer
from waal_jax import train as train_lib
from waal_jax import user_data
from waal_jax.errors import UserError

RESULTS_FILE = "results.json"
# How often a round's training is saved between epochs: a kill loses at most about this
# much training plus an epoch. A LeNet-5 round's state (0.5 MB) saves in milliseconds; a
# VGG16-BN round's (177 MB) in 0.6-1.5 s, 1-2.5% of a minute (measured beside other work).
PROGRESS_SECONDS = 60.0


def config_dict(config) -> dict:
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def initial_labeled(root_key, pool_count: int, count: int) -> np.ndarray:
  """The random labeled set of round 0 (pool indices), drawn from the run's root key."""
  key = jax.random.fold_in(root_key, 0)
  return np.asarray(jax.random.choice(key, pool_count, (count,), replace=False))


def stop_set(root_key, pool_count: int, labeled: np.ndarray, size: int) -> np.ndarray:
  """The stop set: `size` pool indices (sorted) drawn from those unlabeled at round 0,
  with a key of their own, fold_in(root, 2), so no other draw changes."""
  unlabeled = np.setdiff1d(np.arange(pool_count), labeled)
  size = min(size, len(unlabeled))
  chosen = jax.random.choice(jax.random.fold_in(root_key, 2), len(unlabeled), (size,),
                             replace=False)
  return np.sort(unlabeled[np.asarray(chosen)])


def stopping_signal(one: "OpenRun", round_index: int, variables) -> dict:
  """The round's predicted classes on the stop set and their Cohen's kappa with the
  previous round's (Bloodgood and Vijay-Shanker, 2009: stop once predictions settle).
  Round 0 draws the stop set and records it."""
  exp, history = one.exp, one.state.history
  if exp.al.stop_set_size == 0:
    return {}
  if round_index == 0:
    indices = stop_set(one.state.root_key, len(exp.splits.pool_labels), one.state.labeled,
                       exp.al.stop_set_size)
  else:
    indices = np.asarray((history[0] if history else {}).get("stop_set_indices", []), np.int64)
  if not len(indices):          # a run begun before stop sets were recorded
    return {}
  predicted = exp.trainer.predicted_classes(variables, exp.splits.pool_images[indices])
  previous = history[-1].get("stop_set_predictions") if history else None
  record = {"stop_set_predictions": predicted.tolist(),
            "stop_set_kappa": (None if previous is None else metrics.cohen_kappa(
                previous, predicted, exp.splits.spec.num_classes))}
  if round_index == 0:
    record["stop_set_indices"] = indices.tolist()
  return record


def seconds_left(history: list, rounds_left: int) -> float:
  """The recorded rounds' mean seconds (training, test, query), times the rounds left.

  It reads the records, not this process's clock: a round resumed after a stop records
  the seconds it trained before the stop too, which the clock of the resumed process
  misses (its estimate would be far too low). Records older than `eval_seconds` lack it."""
  per_round = [r["train_seconds"] + r.get("eval_seconds", 0.0) + r["query_seconds"]
               for r in history]
  return float(np.mean(per_round)) * rounds_left if per_round else 0.0


@dataclasses.dataclass
class Experiment:
  """Everything a run needs, built once from the config."""
  settings: settings_lib.Settings
  splits: data_lib.Splits
  mesh: jax.sharding.Mesh
  trainer: train_lib.Trainer
  strategy: strategies.Strategy
  device_data: train_lib.DeviceData
  pool: strategies.ScoringPool

  @property
  def al(self) -> settings_lib.ALSettings:
    return self.settings.al


def load_splits(data: settings_lib.DataSettings, seed: int,
                log: Callable[[str], None] = logging.info) -> data_lib.Splits:
  """The dataset and Table 2 splits (or the user's images and their splits) that the
  data settings and the seed describe, normalised as data.mean / data.std say."""
  if data.name == data_lib.USER_DATASET:
    images = user_data.load(data.path, data.image_size,
                            data.cache_dir or data_lib.default_cache_dir(), log)
    splits = data_lib.user_splits(images, seed=seed, val_fraction=data.val_fraction,
                                  test_fraction=data.test_fraction, pool_size=data.pool_size,
                                  val_size=data.val_size)
    log(f"{data.path}: {splits.spec.num_classes} classes, "
        f"{'x'.join(map(str, splits.spec.image_shape))} images: pool {len(splits.pool_labels)}"
        f" ({int((splits.pool_labels == data_lib.UNKNOWN_LABEL).sum())} unlabeled), "
        f"validation {len(splits.val_labels)}, test {len(splits.test_labels)}")
  else:
    splits = data_lib.load(
        data.name, seed=seed, data_dir=data.data_dir or None,
        manual_dir=data.manual_dir or None, cache_dir=data.cache_dir or None,
        download=data.download, pool_size=data.pool_size, val_size=data.val_size, log=log)
  return dataclasses.replace(splits, spec=data_lib.with_normalization(splits.spec, data.mean,
                                                                      data.std))


@dataclasses.dataclass(frozen=True)
class _Compiled:
  """The parts of an experiment that do not depend on its seed: the device mesh, the
  trainer and the strategy, whose jitted functions compile on first use. Seeds of one
  experiment share them (through `build`'s `shared`), so each compiles once."""
  mesh: jax.sharding.Mesh
  trainer: train_lib.Trainer
  strategy: strategies.Strategy


def build(config, log: Callable[[str], None] = logging.info,
          splits: Optional[data_lib.Splits] = None,
          shared: Optional[dict] = None) -> Experiment:
  """Checks the config, loads the data (unless given) onto the devices once and builds
  the step functions (or takes them from `shared`, a dict that runs differing only in
  their seed pass to each other's `build`)."""
  settings = settings_lib.resolve(config)
  if splits is None:
    splits = load_splits(settings.data, settings.seed, log)
  settings = settings_lib.for_data(settings, splits.spec)
  unknown = int((splits.pool_labels == data_lib.UNKNOWN_LABEL).sum())
  if unknown and not settings.al.by_a_person:
    raise UserError(f"data.path={settings.data.path} has {unknown} unlabeled images: only a "
                    "person can label them; set al.oracle=human or al.oracle=label_studio")
  if splits.initial_labeled is not None:   # The dataset says which images are labeled.
    log(f"the {len(splits.initial_labeled)} labeled images of train/ are round 0's labeled set "
        f"(al.initial_labeled={settings.al.initial_labeled} does not apply)")
    settings = dataclasses.replace(settings, al=dataclasses.replace(
        settings.al, initial_labeled=len(splits.initial_labeled)))
  pool_count = len(splits.pool_labels)
  settings_lib.check_budget(settings.al, pool_count)
  # Everything the trainer and the strategy are built from; the seed is not in it.
  recipe = repr((settings.model, settings.train, settings.query, settings.al, pool_count,
                 splits.spec))
  parts = (shared or {}).get(recipe)
  if parts is None:
    mesh = sharding.make_mesh()
    nets = models.build(settings.model, splits.spec.num_classes)
    parts = _Compiled(mesh,
                      train_lib.Trainer(nets, settings.train, splits.spec, mesh, pool_count,
                                        settings.al.final_budget),
                      strategies.create(nets, splits.spec, settings.query, mesh))
    if shared is not None:
      shared[recipe] = parts
  pool = strategies.scoring_pool(parts.mesh, splits.pool_images, settings.query.batch_size,
                                 splits.pool_source)
  parts.strategy.check_pool(pool)
  return Experiment(settings, splits, parts.mesh, parts.trainer, parts.strategy,
                    parts.trainer.device_data(splits, pool.blocks), pool)


@dataclasses.dataclass
class LoopState:
  """Where a run stands: the next round, the labels bought so far, the history."""
  first_round: int
  labeled: np.ndarray          # pool indices in the order bought
  root_key: jax.Array
  history: List[dict]


def _start_or_resume(store: checkpoints.LoopCheckpoints, seed: int, splits: data_lib.Splits,
                     al: settings_lib.ALSettings, workdir: str, log) -> LoopState:
  """The state after the last finished round that the newest usable checkpoint or
  results.json records, whichever is further; round 0 when neither records any. A
  damaged checkpoint is passed over (and said so); when it leaves nothing to resume
  from, the run is refused rather than restarted over it."""
  recorded, results_damage = _recorded_rounds(workdir)
  damaged, steps = [], store.steps()
  for step in reversed(steps):
    if step < len(recorded):
      break                      # results.json records more rounds (and the same state)
    try:
      labeled, root_key, history = store.restore(step)
    except checkpoints.DamagedCheckpoint as e:
      damaged.append(str(e))
      continue
    log(f"resuming {workdir} after round {step - 1} ({len(labeled)} labels)"
        + (f" from checkpoint {step}: {'; '.join(damaged)}" if damaged else "")
        + (f"; {results_damage}, so it is rewritten" if results_damage else ""))
    return LoopState(step, labeled, root_key, history)
  damage = "; ".join(damaged)
  root_key = jax.random.key(seed)
  labeled = (splits.initial_labeled if splits.initial_labeled is not None else
             initial_labeled(root_key, len(splits.pool_labels), al.initial_labeled))
  if recorded:
    # Every round trains from scratch, so the seed and the batches that results.json
    # records are all the next round needs: a run whose checkpoints stayed on another
    # machine (only results.json and config.json are committed) continues, not restarts.
    labeled = np.concatenate([labeled] + [np.asarray(r["queried_indices"], np.int64)
                                          for r in recorded]).astype(labeled.dtype)
    log(f"resuming {workdir} after round {len(recorded) - 1} ({len(labeled)} labels) from "
        f"its {RESULTS_FILE} ({damage or ('older checkpoints' if steps else 'no checkpoint')})")
  elif results_damage:
    raise UserError(f"{results_damage} and " + (
        f"no checkpoint is usable ({damage})" if damaged else
        "no checkpoint is left to resume from") + "; restore it or use another --workdir")
  elif damaged:
    raise UserError(f"{damage}, and {RESULTS_FILE} records no finished round: nothing to "
                    "resume from; use another --workdir, or delete "
                    f"{os.path.join(workdir, 'checkpoints')} to start again from round 0")
  return LoopState(len(recorded), labeled, root_key, recorded)


def _recorded_rounds(workdir: str) -> Tuple[List[dict], str]:
  """The rounds results.json holds (none when it is absent), and what is wrong with it
  when it is damaged (else "")."""
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return [], ""
  try:
    with open(path) as f:
      rounds = json.load(f)["rounds"]
    if any(r["round"] != i for i, r in enumerate(rounds)):
      raise ValueError("its rounds are not 0, 1, 2, ... in order")
  except (OSError, ValueError, KeyError, TypeError) as e:
    return [], f"{path} is damaged ({e})"
  return rounds, ""


def _rounds_phrase(count: int) -> str:
  return "round 0" if count == 1 else f"rounds 0-{count - 1}"


def kept(workdir: str) -> str:
  """What a run in `workdir` (or each seed of a tree of seeds there) keeps if it stops
  now, in words: its finished rounds and what this process saved of a round's training
  (checkpoints.SAVED_PROGRESS). For the line that a stop by a signal ends with."""
  seeds = sorted(name for name in (os.listdir(workdir) if os.path.isdir(workdir) else [])
                 if name.startswith("seed_") and os.path.isdir(os.path.join(workdir, name)))
  runs = [(name + ": ", os.path.join(workdir, name)) for name in seeds] or [("", workdir)]
  parts = []
  for prefix, run in runs:
    rounds = len(_recorded_rounds(run)[0])
    saved = next((epochs for path, (round_index, epochs) in checkpoints.SAVED_PROGRESS.items()
                  if os.path.normpath(path) == os.path.normpath(run) and round_index == rounds
                  and epochs), 0)
    training = f"round {rounds}'s training to epoch {saved}" if saved else ""
    if rounds and training:
      parts.append(f"{prefix}{_rounds_phrase(rounds)} and {training}")
    elif rounds:
      parts.append(prefix + _rounds_phrase(rounds))
    elif training:
      parts.append(f"{prefix}{training} (no round had finished)")
    else:
      parts.append(f"{prefix}nothing yet (no round had finished, no epoch was saved)")
  return "; ".join(parts)


def _run_round(one: "OpenRun", round_index: int,
               progress: Optional[checkpoints.RoundProgress] = None) -> tuple:
  """Trains (continuing what `progress` saved of this round), tests and (but in the
  last round) queries; returns (record, network)."""
  try:
    fit = one.learner.fit(progress, on_epoch=one.on_epoch)
  except learner_lib.TrainingDiverged as e:
    raise diverged_error(one.exp, round_index, e) from None
  return test_and_query(one, round_index, fit)


def diverged_error(exp: Experiment, round_index: int, error, which: str = "") -> UserError:
  """A config whose training diverges is refused in one line. Nothing of the round was
  written; the run is deterministic, so the same command would diverge again."""
  kept = ("this one belongs to this config" if round_index == 0 else
          f"this one keeps round {round_index - 1}" if round_index == 1 else
          f"this one keeps rounds 0-{round_index - 1}")
  return UserError(
      f"{which}training diverged at round {round_index}, epoch {error.epoch}: loss "
      f"{error.loss}; lower train.learning_rate ({exp.settings.train.learning_rate:g} now) "
      f"and use another --workdir ({kept}; the same command would diverge again)")


def test_and_query(one: "OpenRun", round_index: int, fit: train_lib.FitResult) -> tuple:
  """Tests the round's network (which the run's learner holds) and (but in the last
  round) queries with it; returns (record, network)."""
  exp, labeled = one.exp, one.state.labeled
  eval_start = time.time()
  test = exp.trainer.evaluate(fit.variables, exp.device_data.test)
  eval_seconds = time.time() - eval_start
  signal = stopping_signal(one, round_index, fit.variables)
  stops = one.stable_after(signal.get("stop_set_kappa"))
  queried, query_seconds, notes = np.zeros(0, np.int64), 0.0, []
  if round_index < exp.al.rounds and not stops:   # (the last round buys nothing)
    query_start = time.time()
    queried = one.learner.query(exp.al.query_size)
    query_seconds = time.time() - query_start
    notes = one.learner.query_notes
  record = {
      "round": round_index,
      "num_labeled": int(len(labeled)),
      "test_accuracy": test["accuracy"],
      # Calibration of the test predictions (15 confidence bins) and accuracy per class.
      "test_ece": test["ece"],
      "test_nll": test["nll"],
      "test_brier": test["brier"],
      "test_per_class_accuracy": test["per_class_accuracy"],
      **signal,
      "val_accuracy": fit.best_val_accuracy,
      "train_seconds": fit.seconds,
      "query_seconds": query_seconds,
      "queried_indices": queried.tolist(),
      # Provenance: how the bought batch spreads over the classes (a person's labels:
      # filled in once they come, see OpenRun.take_human_labels).
      "queried_class_counts": (None if exp.al.by_a_person else np.bincount(
          exp.splits.pool_labels[queried], minlength=exp.splits.spec.num_classes).tolist()),
      "eval_seconds": eval_seconds,
      "epochs_trained": len(fit.epochs),
      "best_epoch": fit.best_epoch,
      "epoch_metrics": fit.epochs,
      "commit": provenance.software()["commit"],   # a resumed run may span commits
      "cpu": provenance.cpu_model() or None,         # ... and machines
  }
  if exp.al.by_a_person and len(queried):   # what the network says they are, for the person
    record["queried_predictions"] = exp.trainer.predicted_classes(
        fit.variables, exp.splits.pool_images[queried]).tolist()
  if stops:
    record["stopped_when_stable"] = True
  if notes:   # what the strategy found worth saying about this query
    record["query_notes"] = notes
  if exp.splits.pool_files is not None:   # the user's own images: which files were bought
    record["queried_files"] = _relative_files(exp.splits.pool_files[queried],
                                              exp.settings.data.path)
  return record, fit.variables


def _relative_files(paths, root: str) -> List[str]:
  """Images' paths relative to data.path, a folder (an .npz's examples are named as
  they are)."""
  if not (root and os.path.isdir(root)):
    return [str(p) for p in paths]
  root = os.path.abspath(root)
  return [os.path.relpath(str(p), root) if os.path.isabs(str(p)) else str(p) for p in paths]


class OpenRun:
  """One run's workdir, experiment and progress: locked, claimed, resumed, and advanced
  round by round (each finished round is checkpointed and written to results.json);
  `close` (or the end of a `with`) releases it."""

  def __init__(self, config, workdir: str, log, shared: Optional[dict] = None):
    # With several processes (hosts), all compute; the first one writes and reports.
    self.lead = jax.process_index() == 0
    self.log = log if self.lead else (lambda _: None)
    al = settings_lib.resolve(config).al   # A bad field is refused before the workdir is read.
    self.workdir, self.config_dict = workdir, config_dict(config)
    # One run at a time per workdir, from before anything in it is read to the end.
    self.lock = checkpoints.WorkdirLock(workdir, self.log) if self.lead else None
    self.store = None
    try:
      self.log(f"{workdir}: round 0 trains on the first labels, then al.rounds={al.rounds} "
               f"query round(s) of {al.query_size} labels each train again "
               f"({al.rounds + 1} trainings)")
      self._open(config, shared)
    except BaseException:
      self.close()
      raise

  def _open(self, config, shared: Optional[dict]) -> None:
    workdir = self.workdir
    owned = checkpoints.check_workdir(workdir, self.config_dict)
    self.exp = build(config, self.log, shared=shared)
    if not owned and self.lead:  # Only a config that has passed every check claims it.
      checkpoints.claim_workdir(workdir, self.config_dict)
    self.store = checkpoints.LoopCheckpoints(workdir)
    self.state = _start_or_resume(self.store, self.exp.settings.seed, self.exp.splits,
                                  self.exp.al, workdir, self.log)
    self.labeling = None
    if self.exp.al.oracle == "label_studio":   # the server and the project, before training
      self.labeling = label_studio.RunRounds(workdir, self.exp.settings, self.exp.splits,
                                             self.log)
    if self.exp.al.by_a_person:   # Checked before anything in the workdir changes.
      self.take_human_labels()
    self.learner = self._learner()
    self.board = self._tensorboard()
    self.device, self.software = sharding.describe_devices(), provenance.software()
    self.rounds_finished_here = 0
    results_path = os.path.join(workdir, RESULTS_FILE)
    if not self.rounds_left and os.path.exists(results_path):
      # A finished run is left as it is (its results.json names the code that made it).
      self.log(f"{workdir} holds a finished run ({len(self.state.history)} rounds)")
      with open(results_path) as f:
        self.results = json.load(f)
    else:
      self.results = self.write_results()

  def _learner(self) -> learner_lib.ActiveLearner:
    """The in-memory learner that trains and queries this run's rounds, holding the
    labels bought so far."""
    exp, state = self.exp, self.state
    learner = learner_lib.ActiveLearner.from_parts(
        exp.trainer, exp.strategy, exp.pool, exp.device_data, strategy_name=exp.settings.query.strategy, seed=exp.settings.seed,
        root_key=state.root_key, query_size=exp.al.query_size, round_index=state.first_round,
        planned_rounds=exp.al.rounds, log=self.log)
    learner.add_labels(state.labeled, exp.splits.pool_labels[state.labeled])
    return learner

  def _tensorboard(self) -> Optional[tensorboard_writer.TensorBoardWriter]:
    """The run's TensorBoard writer (the lead process's, with settings.tensorboard)."""
    if not (self.lead and self.exp.settings.tensorboard):
      return None
    board = tensorboard_writer.TensorBoardWriter(
        self.workdir, self.exp.splits.spec.label_names, self.exp.settings.train.adversarial)
    board.hparams(self.config_dict)
    return board

  def on_epoch(self, record: dict, variables=None) -> None:
    """Draws a finished epoch of the round in training (train.Trainer.fit's on_epoch)."""
    del variables
    if self.board is not None:
      self.board.epoch(record, tensorboard_writer.epochs_before(self.state.history)
                       + record["epoch"])

  @property
  def rounds_left(self) -> range:
    if self.stable_after():     # the stopping signal ended the run
      return range(0)
    return range(self.state.first_round + self.rounds_finished_here, self.exp.al.rounds + 1)

  def stable_after(self, *next_kappa) -> bool:
    """Whether al.stop_when_stable ends the run after the recorded rounds (and, if
    given, one more round with this stop_set_kappa)."""
    al = self.exp.al
    if not al.stop_when_stable:
      return False
    kappas = [record.get("stop_set_kappa") for record in self.state.history] + list(next_kappa)
    fired = metrics.stable_round(kappas, al.stable_kappa, al.stop_when_stable)
    return fired is not None

  def take_human_labels(self) -> None:
    """Puts the labels a person gave (earlier rounds' as recorded, the last round's from
    its answers file) into the pool labels the next round trains with."""
    exp, indices, labels = self.exp, [], []
    for record in self.state.history:
      if not record["queried_indices"]:
        continue
      if record.get("queried_labels") is None:
        if record is not self.state.history[-1]:
          raise UserError(f"{self.workdir}: round {record['round']}'s labels are missing "
                          "from its records")
        self.record_labels(record, self.read_labels(record))
      indices += record["queried_indices"]
      labels += record["queried_labels"]
    if indices:
      pool_labels = exp.splits.pool_labels.copy()
      pool_labels[np.asarray(indices)] = labels
      exp.splits = dataclasses.replace(exp.splits, pool_labels=pool_labels)
      exp.device_data = dataclasses.replace(exp.device_data, pool_labels=sharding.replicate(
          exp.mesh, pool_labels.astype(np.int32)))

  def read_labels(self, record: dict, wait: bool = False) -> np.ndarray:
    """The person's labels of a round's queries (a UserError while they are not all
    there or not usable); with `wait`, Label Studio is polled until they are."""
    exp = self.exp
    if self.labeling is not None:
      labels, provenance_of_labels = self.labeling.read(record, wait)
      record["label_studio"] = provenance_of_labels
      return labels
    if not os.path.exists(oracle.answers_path(self.workdir, record["round"])):
      self.ask_for_labels(record)    # (again, if a kill cut its writing short)
    answers = oracle.read_answers(self.workdir, record["round"], record["queried_indices"],
                                  exp.splits.spec.label_names)
    self.log(f"{len(answers)} labels of round {record['round']} read from "
             f"{oracle.answers_path(self.workdir, record['round'])}")
    return answers

  def record_labels(self, record: dict, labels: np.ndarray) -> None:
    record["queried_labels"] = labels.tolist()
    record["queried_class_counts"] = np.bincount(
        labels, minlength=self.exp.splits.spec.num_classes).tolist()

  def wait_for_labels(self, record: dict) -> None:
    """Waits for the person's labels of the round just queried and takes them in this
    process (al.wait=true): the next round trains on them."""
    labels = self.read_labels(record, wait=True)
    self.record_labels(record, labels)
    self.take_human_labels()
    queried = np.asarray(record["queried_indices"], np.int64)
    self.learner.add_labels(queried, labels)
    self.results = self.write_results()

  def ask_for_labels(self, record: dict) -> str:
    """Sends the round's queries to the person (unless sent already): the to-label file,
    or Label Studio's tasks; returns the line to show."""
    if self.labeling is not None:
      return self.labeling.ask(record)
    oracle.write_request(self.workdir, record["round"], record["queried_indices"],
                         self.exp.splits)
    return oracle.instructions(self.workdir, record["round"], len(record["queried_indices"]),
                               self.exp.splits.spec.label_names)

  @property
  def waits_for_labels(self) -> bool:
    """Whether the last round's query waits for a person's labels."""
    last = self.state.history[-1] if self.state.history else None
    return (self.exp.al.by_a_person and last is not None
            and bool(last["queried_indices"]) and last.get("queried_labels") is None)

  def write_results(self) -> dict:
    results = {"config": self.config_dict, "device": self.device, "software": self.software,
               "rounds": self.state.history}
    if self.lead:
      checkpoints.write_json_atomically(os.path.join(self.workdir, RESULTS_FILE), results)
    return results

  def finish_round(self, round_index: int, record: dict, variables) -> None:
    state = self.state
    state.history.append(record)
    queried = np.asarray(record["queried_indices"], np.int64)
    state.labeled = np.concatenate([state.labeled, queried])
    if not self.exp.al.by_a_person:   # (a person's labels come later)
      self.learner.add_labels(queried, self.exp.splits.pool_labels[queried])
    self.store.save(round_index + 1, state.labeled, state.root_key, state.history, variables)
    self.results = self.write_results()
    if self.board is not None:
      self.board.round(record, tensorboard_writer.epochs_before(state.history[:-1]))
    self.rounds_finished_here += 1
    left = 0 if record.get("stopped_when_stable") else self.exp.al.rounds - round_index
    eta = (f", about {train_lib.format_duration(seconds_left(state.history, left))} left"
           if left else "")
    self.log(f"round {round_index}/{self.exp.al.rounds}: test accuracy "
             f"{record['test_accuracy']:.4f} with {record['num_labeled']} labels (validation "
             f"{record['val_accuracy']:.4f}, epoch {record['best_epoch']}); train "
             f"{record['train_seconds']:.1f}s, query {record['query_seconds']:.2f}s{eta}")
    if record.get("stopped_when_stable"):
      al = self.exp.al
      self.log(f"the run ends at round {round_index} with {record['num_labeled']} labels: "
               f"stop_set_kappa >= {al.stable_kappa:g} in {al.stop_when_stable} round(s) in "
               "a row (al.stop_when_stable)")

  def close(self) -> None:
    """Closes the checkpoints and releases the workdir (also after an error or a stop)."""
    try:
      if getattr(self, "board", None) is not None:
        self.board.close()
        self.board = None
      if self.store is not None:
        self.store.close()
        self.store = None
    finally:
      if self.lock is not None:
        self.lock.release()

  def __enter__(self) -> "OpenRun":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def run(config, workdir: str, log: Optional[Callable[[str], None]] = None,
        shared: Optional[dict] = None, progress_seconds: float = PROGRESS_SECONDS,
        max_rounds: Optional[int] = None) -> dict:
  """Runs (or resumes) the experiment described by `config` in `workdir`.

  Returns the content of results.json. Bad input raises errors.UserError. `shared`:
  see `build`. `progress_seconds`: how often a round's training is saved between
  epochs (0: after every epoch; negative: never, so a rerun trains the round again).
  `max_rounds`: stop (resumable) after this many rounds in this call; None = to the end.
  """
  with OpenRun(config, workdir, log or logging.info, shared) as one, \
      progress_lib.lines_to(one.log):
    for round_index in one.rounds_left:
      key = one.learner.round_key(round_index)
      progress = None
      # (One process only: with several, each would need the same file.)
      if progress_seconds >= 0 and jax.process_count() == 1:
        progress = checkpoints.RoundProgress(one.workdir, round_index, one.state.labeled, key,
                                             progress_seconds, one.log)
      record, variables = _run_round(one, round_index, progress)
      one.finish_round(round_index, record, variables)
      if progress is not None:
        progress.discard()          # (the round is written: its training is not needed)
      if one.waits_for_labels:      # A person labels this round's query.
        one.log(one.ask_for_labels(record))
        if not one.exp.al.wait:     # The run stops; the same command goes on.
          break
        one.wait_for_labels(record)
      if record.get("stopped_when_stable") or (
          max_rounds is not None and one.rounds_finished_here >= max_rounds):
        break
    return one.results
