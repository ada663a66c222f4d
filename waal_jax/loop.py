"""The active-learning loop: train -> evaluate -> query -> label, round after round.

`run(config, workdir)` is the whole experiment. After every round it rewrites
`results.json` (atomically) and saves a checkpoint; called again on the same workdir
it continues after the last finished round and ends as an uninterrupted run would,
because every random draw of round r comes from fold_in(root key, r).
"""

import dataclasses
import json
import logging
import os
import time
from typing import Callable, List, Optional

import jax
import numpy as np

from waal_jax import checkpoints
from waal_jax import data as data_lib
from waal_jax import models
from waal_jax import provenance
from waal_jax import settings as settings_lib
from waal_jax import sharding
from waal_jax import strategies
from waal_jax import train as train_lib
from waal_jax.errors import UserError

RESULTS_FILE = "results.json"


def _config_dict(config) -> dict:
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def initial_labeled(root_key, pool_count: int, count: int) -> np.ndarray:
  """The random labeled set of round 0 (pool indices), drawn from the run's root key."""
  key = jax.random.fold_in(root_key, 0)
  return np.asarray(jax.random.choice(key, pool_count, (count,), replace=False))


def _format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


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
  """The dataset and Table 2 splits that the data settings and the seed describe,
  normalised as data.mean / data.std say."""
  splits = data_lib.load(
      data.name, seed=seed, data_dir=data.data_dir or None,
      manual_dir=data.manual_dir or None, cache_dir=data.cache_dir or None,
      download=data.download, pool_size=data.pool_size, val_size=data.val_size, log=log)
  return dataclasses.replace(splits, spec=data_lib.with_normalization(splits.spec, data.mean,
                                                                      data.std))


def build(config, log: Callable[[str], None] = logging.info,
          splits: Optional[data_lib.Splits] = None) -> Experiment:
  """Checks the config, loads the data (unless given) onto the devices once and builds
  the step functions."""
  settings = settings_lib.resolve(config)
  if splits is None:
    splits = load_splits(settings.data, settings.seed, log)
  pool_count = len(splits.pool_labels)
  settings_lib.check_budget(settings.al, pool_count)
  mesh = sharding.make_mesh()
  nets = models.build(settings.model, splits.spec.num_classes)
  trainer = train_lib.Trainer(nets, settings.train, splits.spec, mesh, pool_count,
                              settings.al.final_budget)
  pool = strategies.scoring_pool(mesh, splits.pool_images, settings.query.batch_size)
  return Experiment(settings, splits, mesh, trainer,
                    strategies.create(nets, splits.spec, settings.query, mesh),
                    trainer.device_data(splits, pool.images), pool)


def seed_workdir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, f"seed_{seed}")


def run_seeds(config, workdir: str, log: Optional[Callable[[str], None]] = None) -> List[dict]:
  """Runs (or resumes) `config.seeds` repetitions with seeds seed, seed+1, ...

  With one seed the run goes into `workdir` itself; with several, repetition k goes
  into workdir/seed_<seed+k> (each a complete, resumable run, so rerunning with more
  seeds keeps the finished ones): one after another, or `parallel_seeds` at once as
  pinned CPU processes (waal_jax.seed_pool), with the same results.
  Returns each finished repetition's results.json content.
  """
  log = log or logging.info
  settings = settings_lib.resolve(config)
  if settings.seeds == 1:
    return [run(config, workdir, log)]
  if os.path.exists(os.path.join(workdir, checkpoints.OWNER_FILE)):
    raise UserError(f"--workdir={workdir} holds a single run; give the {settings.seeds} "
                    "seeds a new workdir")
  repetitions = {}
  for k in range(settings.seeds):
    one = config.copy_and_resolve_references()
    one.seed = settings.seed + k
    one.seeds = 1     # Each repetition is a plain run: a later, larger `seeds` adds to the tree.
    one.parallel_seeds = 1
    repetitions[one.seed] = one
  if settings.parallel_seeds > 1:
    return _run_seeds_at_once(repetitions, workdir, settings.parallel_seeds, log)
  everything = []
  for k, (seed, one) in enumerate(repetitions.items()):
    log(f"seed {seed} ({k + 1} of {settings.seeds}) in {seed_workdir(workdir, seed)}")
    everything.append(run(one, seed_workdir(workdir, seed), log))
  return everything


def _run_seeds_at_once(repetitions: dict, workdir: str, processes: int, log) -> List[dict]:
  from waal_jax import seed_pool  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "cpu":
    raise UserError(f"parallel_seeds: runs seeds as CPU processes; on "
                    f"{jax.default_backend()} run them in turn (parallel_seeds=1)")
  for seed, one in repetitions.items():   # Refuse a mismatched tree before starting any.
    checkpoints.check_workdir(seed_workdir(workdir, seed), _config_dict(one))
  jobs = {f"seed {seed}": (_config_dict(one), seed_workdir(workdir, seed))
          for seed, one in repetitions.items()}
  failed = seed_pool.run_parallel(jobs, processes, log)
  if failed:
    seeds = ", ".join(label.split()[-1] for label in failed)
    raise UserError(f"seed(s) {seeds} failed (see their lines above); "
                    "the others finished; rerun the same command to resume")
  everything = []
  for seed in repetitions:
    with open(os.path.join(seed_workdir(workdir, seed), RESULTS_FILE)) as f:
      everything.append(json.load(f))
  return everything


@dataclasses.dataclass
class LoopState:
  """Where a run stands: the next round, the labels bought so far, the history."""
  first_round: int
  labeled: np.ndarray          # pool indices in the order bought
  root_key: jax.Array
  history: List[dict]


def _start_or_resume(store: checkpoints.LoopCheckpoints, seed: int, pool_count: int,
                     al: settings_lib.ALSettings, workdir: str, log) -> LoopState:
  restored = store.restore_latest()
  if restored is None:
    root_key = jax.random.key(seed)
    return LoopState(0, initial_labeled(root_key, pool_count, al.initial_labeled), root_key, [])
  first_round, labeled, root_key, history = restored
  log(f"resuming {workdir} after round {first_round - 1} ({len(labeled)} labels)")
  return LoopState(first_round, labeled, root_key, history)


def _query(exp: Experiment, key, variables, labeled: np.ndarray) -> np.ndarray:
  """The strategy's batch for the next round, checked: distinct, none labeled."""
  is_labeled = np.zeros(len(exp.splits.pool_labels), bool)
  is_labeled[labeled] = True
  queried = np.asarray(exp.strategy.select(key, variables, exp.pool, is_labeled,
                                           exp.al.query_size), np.int64)
  if len(set(queried.tolist())) != exp.al.query_size or is_labeled[queried].any():
    raise RuntimeError(f"strategy {exp.strategy.name} returned an invalid batch")
  return queried


def _run_round(exp: Experiment, round_index: int, key, labeled: np.ndarray, log) -> tuple:
  """Trains, tests and (but in the last round) queries; returns (record, network)."""
  train_key, query_key = jax.random.split(key)
  pool_count = len(exp.splits.pool_labels)
  log(f"round {round_index}/{exp.al.rounds}: training on {len(labeled)} labels "
      f"({pool_count - len(labeled)} unlabeled)")
  fit = exp.trainer.fit(train_key, exp.device_data, labeled, exp.al.query_size, log=log)
  eval_start = time.time()
  test_accuracy = exp.trainer.accuracy(fit.variables, exp.device_data.test)
  eval_seconds = time.time() - eval_start
  queried, query_seconds = np.zeros(0, np.int64), 0.0
  if round_index < exp.al.rounds:
    query_start = time.time()
    queried = _query(exp, query_key, fit.variables, labeled)
    query_seconds = time.time() - query_start
  record = {
      "round": round_index,
      "num_labeled": int(len(labeled)),
      "test_accuracy": test_accuracy,
      "val_accuracy": fit.best_val_accuracy,
      "train_seconds": fit.seconds,
      "query_seconds": query_seconds,
      "queried_indices": queried.tolist(),
      # Provenance: how the bought batch spreads over the classes.
      "queried_class_counts": np.bincount(exp.splits.pool_labels[queried],
                                          minlength=exp.splits.spec.num_classes).tolist(),
      "eval_seconds": eval_seconds,
      "epochs_trained": len(fit.epochs),
      "best_epoch": fit.best_epoch,
      "epoch_metrics": fit.epochs,
      "commit": provenance.software()["commit"],   # a resumed run may span commits
  }
  return record, fit.variables


def run(config, workdir: str, log: Optional[Callable[[str], None]] = None) -> dict:
  """Runs (or resumes) the experiment described by `config` in `workdir`.

  Returns the content of results.json. Bad input raises errors.UserError.
  """
  log = log or logging.info
  # With several processes (hosts), all compute; the first one writes and reports.
  lead = jax.process_index() == 0
  if not lead:
    log = lambda _: None
  settings_lib.resolve(config)     # A bad field is refused before the workdir is read.
  config_dict = _config_dict(config)
  owned = checkpoints.check_workdir(workdir, config_dict)
  exp = build(config, log)
  if not owned and lead:  # Only a config that has passed every check claims the workdir.
    checkpoints.claim_workdir(workdir, config_dict)
  store = checkpoints.LoopCheckpoints(workdir)
  state = _start_or_resume(store, exp.settings.seed, len(exp.splits.pool_labels), exp.al,
                           workdir, log)
  rounds_key = jax.random.fold_in(state.root_key, 1)
  device = sharding.describe_devices()
  software = provenance.software()

  def write_results():
    results = {"config": config_dict, "device": device, "software": software,
               "rounds": state.history}
    if lead:
      checkpoints.write_json_atomically(os.path.join(workdir, RESULTS_FILE), results)
    return results

  results = write_results()
  session_seconds = []
  for round_index in range(state.first_round, exp.al.rounds + 1):
    round_start = time.time()
    record, variables = _run_round(exp, round_index, jax.random.fold_in(rounds_key, round_index),
                                   state.labeled, log)
    state.history.append(record)
    state.labeled = np.concatenate([state.labeled, np.asarray(record["queried_indices"],
                                                              np.int64)])
    store.save(round_index + 1, state.labeled, state.root_key, state.history, variables)
    results = write_results()
    session_seconds.append(time.time() - round_start)
    left = exp.al.rounds - round_index
    eta = f", about {_format_duration(np.mean(session_seconds) * left)} left" if left else ""
    log(f"round {round_index}/{exp.al.rounds}: test accuracy {record['test_accuracy']:.4f} "
        f"with {record['num_labeled']} labels (validation {record['val_accuracy']:.4f}, "
        f"epoch {record['best_epoch']}); train {record['train_seconds']:.1f}s, query "
        f"{record['query_seconds']:.2f}s{eta}")
  store.close()
  return results
