"""The active-learning loop: train -> evaluate -> query -> label, round after round.

`run(config, workdir)` is the whole experiment. After every round it rewrites
`results.json` (atomically) and saves a checkpoint; called again on the same workdir
it continues after the last finished round and ends as an uninterrupted run would,
because every random draw of round r comes from fold_in(root key, r).
"""

import dataclasses
import logging
import os
import time
from typing import Callable, List, Optional

import jax
import numpy as np

from waal_jax import checkpoints
from waal_jax import data as data_lib
from waal_jax import models
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
  al: settings_lib.ALSettings
  query: strategies.QuerySettings
  splits: data_lib.Splits
  mesh: jax.sharding.Mesh
  trainer: train_lib.Trainer
  strategy: strategies.Strategy
  device_data: train_lib.DeviceData
  pool: strategies.ScoringPool


def load_splits(config, log: Callable[[str], None] = logging.info) -> data_lib.Splits:
  """The dataset and Table 2 splits that `config.data` and `config.seed` describe."""
  return data_lib.load(
      config.data.name, seed=config.seed, data_dir=config.data.data_dir or None,
      manual_dir=config.data.manual_dir or None, cache_dir=config.data.cache_dir or None,
      download=config.data.download, pool_size=config.data.pool_size,
      val_size=config.data.val_size, log=log)


def build(config, log: Callable[[str], None] = logging.info,
          splits: Optional[data_lib.Splits] = None) -> Experiment:
  """Checks the config, loads the data (unless given) onto the devices and builds the
  step functions."""
  settings_lib.check(config)
  al = settings_lib.al_settings(config)
  train_settings = settings_lib.train_settings(config)
  query_settings = settings_lib.query_settings(config)
  if splits is None:
    splits = load_splits(config, log)
  pool_count = len(splits.pool_labels)
  settings_lib.check_budget(al, pool_count)
  mesh = sharding.make_mesh()
  nets = models.build(config.model.name, num_classes=splits.spec.num_classes,
                      head_hidden=config.model.head_hidden,
                      feature_dim=config.model.feature_dim or None,
                      dropout_rate=config.model.dropout, conv=config.model.conv)
  trainer = train_lib.Trainer(nets, train_settings, splits.spec, mesh, pool_count,
                              al.final_budget)
  return Experiment(
      al, query_settings, splits, mesh, trainer,
      strategies.create(nets, splits.spec, query_settings, mesh), trainer.device_data(splits),
      strategies.scoring_pool(mesh, splits.pool_images, query_settings.batch_size))


def seed_workdir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, f"seed_{seed}")


def run_seeds(config, workdir: str, log: Optional[Callable[[str], None]] = None) -> List[dict]:
  """Runs (or resumes) `config.seeds` repetitions with seeds seed, seed+1, ...

  With one seed the run goes into `workdir` itself; with several, repetition k goes
  into workdir/seed_<seed+k>, one after another (each a complete, resumable run, so
  rerunning with more seeds keeps the finished ones).
  Returns each repetition's results.json content.
  """
  log = log or logging.info
  settings_lib.check(config)
  if config.seeds == 1:
    return [run(config, workdir, log)]
  if os.path.exists(os.path.join(workdir, checkpoints.OWNER_FILE)):
    raise UserError(f"--workdir={workdir} holds a single run; give the {config.seeds} "
                    "seeds a new workdir")
  everything = []
  for k in range(config.seeds):
    one = config.copy_and_resolve_references()
    one.seed = config.seed + k
    one.seeds = 1     # Each repetition is a plain run: a later, larger `seeds` adds to the tree.
    log(f"seed {one.seed} ({k + 1} of {config.seeds}) in {seed_workdir(workdir, one.seed)}")
    everything.append(run(one, seed_workdir(workdir, one.seed), log))
  return everything


def run(config, workdir: str, log: Optional[Callable[[str], None]] = None) -> dict:
  """Runs (or resumes) the experiment described by `config` in `workdir`.

  Returns the content of results.json. Bad input raises errors.UserError.
  """
  log = log or logging.info
  # With several processes (hosts), all compute; the first one writes and reports.
  lead = jax.process_index() == 0
  if not lead:
    log = lambda _: None
  settings_lib.check(config)
  config_dict = _config_dict(config)
  owned = checkpoints.check_workdir(workdir, config_dict)
  exp = build(config, log)
  if not owned and lead:  # Only a config that has passed every check claims the workdir.
    checkpoints.claim_workdir(workdir, config_dict)
  al, trainer, strategy = exp.al, exp.trainer, exp.strategy
  pool_count = len(exp.splits.pool_labels)
  device = sharding.describe_devices()

  store = checkpoints.LoopCheckpoints(workdir)
  restored = store.restore_latest()
  if restored is None:
    root_key = jax.random.key(config.seed)
    labeled = initial_labeled(root_key, pool_count, al.initial_labeled)
    history, first_round = [], 0
  else:
    first_round, labeled, root_key, history = restored
    log(f"resuming {workdir} after round {first_round - 1} ({len(labeled)} labels)")
  rounds_key = jax.random.fold_in(root_key, 1)

  def write_results():
    results = {"config": config_dict, "device": device, "rounds": history}
    if lead:
      checkpoints.write_json_atomically(os.path.join(workdir, RESULTS_FILE), results)
    return results

  results = write_results()
  session_seconds = []
  for round_index in range(first_round, al.rounds + 1):
    round_start = time.time()
    train_key, query_key = jax.random.split(jax.random.fold_in(rounds_key, round_index))
    log(f"round {round_index}/{al.rounds}: training on {len(labeled)} labels "
        f"({pool_count - len(labeled)} unlabeled)")
    fit = trainer.fit(train_key, exp.device_data, labeled, al.query_size, log=log)
    eval_start = time.time()
    test_accuracy = trainer.accuracy(fit.variables, exp.device_data.test)
    eval_seconds = time.time() - eval_start

    queried = np.zeros(0, np.int64)
    query_seconds = 0.0
    if round_index < al.rounds:
      query_start = time.time()
      is_labeled = np.zeros(pool_count, bool)
      is_labeled[labeled] = True
      queried = np.asarray(strategy.select(query_key, fit.variables, exp.pool, is_labeled,
                                           al.query_size), np.int64)
      query_seconds = time.time() - query_start
      if len(set(queried.tolist())) != al.query_size or is_labeled[queried].any():
        raise RuntimeError(f"strategy {exp.query.strategy} returned an invalid batch")

    history.append({
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
    })
    labeled = np.concatenate([labeled, queried])
    store.save(round_index + 1, labeled, root_key, history, fit.variables)
    results = write_results()

    session_seconds.append(time.time() - round_start)
    left = al.rounds - round_index
    eta = f", about {_format_duration(np.mean(session_seconds) * left)} left" if left else ""
    log(f"round {round_index}/{al.rounds}: test accuracy {test_accuracy:.4f} with "
        f"{history[-1]['num_labeled']} labels (validation {fit.best_val_accuracy:.4f}, "
        f"epoch {fit.best_epoch}); train {fit.seconds:.1f}s, query {query_seconds:.2f}s"
        f"{eta}")
  store.close()
  return results
