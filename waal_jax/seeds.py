"""Several seeds of one experiment: one after another, as pinned CPU processes, or
vmapped in one program. Orchestration over the one-run harness (`loop.run`); the
core (training, strategies) knows nothing of seeds or workdirs.
"""

import contextlib
import json
import logging
import os
from typing import Callable, List, Optional

import jax

from waal_jax import checkpoints
from waal_jax import loop
from waal_jax import progress as progress_lib
from waal_jax import seed_pool
from waal_jax import settings as settings_lib
from waal_jax import train as train_lib
from waal_jax.errors import UserError


def seed_workdir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, f"seed_{seed}")


def run_seeds(config, workdir: str, log: Optional[Callable[[str], None]] = None) -> List[dict]:
  """Runs (or resumes) `config.seeds` repetitions with seeds seed, seed+1, ...

  With one seed the run goes into `workdir` itself; with several, repetition k goes
  into workdir/seed_<seed+k> (each a complete, resumable run, so rerunning with more
  seeds keeps the finished ones): one after another, or `parallel_seeds` at once, as
  `parallel_seeds_mode` says: pinned CPU processes (waal_jax.seed_pool) or one program
  with the seed axis vmapped (run_vmapped); the results are the same either way.
  Returns each finished repetition's results.json content.
  """
  log = log or logging.info
  settings = settings_lib.resolve(config)
  if settings.seeds == 1:
    return [loop.run(config, workdir, log)]
  if os.path.exists(os.path.join(workdir, checkpoints.OWNER_FILE)):
    raise UserError(f"--workdir={workdir} holds a single run; give the {settings.seeds} "
                    "seeds a new workdir")
  repetitions = {}
  for k in range(settings.seeds):
    one = config.copy_and_resolve_references()
    one.seed = settings.seed + k
    one.seeds = 1     # Each repetition is a plain run: a later, larger `seeds` adds to the tree.
    one.parallel_seeds, one.parallel_seeds_mode = 1, "auto"   # (trees of either way agree)
    repetitions[one.seed] = one
  if settings.parallel_seeds > 1:
    for seed, one in repetitions.items():   # Refuse a mismatched tree before starting any.
      checkpoints.check_workdir(seed_workdir(workdir, seed), loop.config_dict(one))
    mode = settings.parallel_seeds_mode
    if mode == "auto":
      mode = "processes" if jax.default_backend() == "cpu" else "vmap"
    if mode == "processes":
      return _run_seeds_at_once(repetitions, workdir, settings.parallel_seeds, log)
    seeds, shared = list(repetitions), {}
    everything = []
    for start in range(0, len(seeds), settings.parallel_seeds):
      group = seeds[start:start + settings.parallel_seeds]
      log(f"seeds {', '.join(map(str, group))} vmapped in one program")
      everything += run_vmapped([repetitions[s] for s in group],
                                [seed_workdir(workdir, s) for s in group], log, shared)
    return everything
  everything, shared = [], {}
  for k, (seed, one) in enumerate(repetitions.items()):
    log(f"seed {seed} ({k + 1} of {settings.seeds}) in {seed_workdir(workdir, seed)}")
    everything.append(loop.run(one, seed_workdir(workdir, seed), log, shared))
  return everything


def _run_seeds_at_once(repetitions: dict, workdir: str, processes: int, log) -> List[dict]:
  jobs = {f"seed {seed}": (loop.config_dict(one), seed_workdir(workdir, seed))
          for seed, one in repetitions.items()}
  failed = seed_pool.run_parallel(jobs, processes, log)
  if failed:
    seeds = ", ".join(label.split()[-1] for label in failed)
    raise UserError(f"seed(s) {seeds} failed (see their lines above); "
                    "the others finished; rerun the same command to resume")
  everything = []
  for seed in repetitions:
    with open(os.path.join(seed_workdir(workdir, seed), loop.RESULTS_FILE)) as f:
      everything.append(json.load(f))
  return everything


def run_vmapped(configs: List, workdirs: List[str], log: Callable[[str], None],
                shared: Optional[dict] = None,
                progress_seconds: float = loop.PROGRESS_SECONDS) -> List[dict]:
  """Runs (or resumes) several seeds in one program, their training `vmap`ped over a
  seed axis (train.SeedBatchTrainer); queries and evaluation run seed by seed. Seeds
  that stand at different rounds (an interrupted mixed tree) run one after another.
  Each seed's part of the batch's training is saved in its workdir as `run` saves it."""
  shared = {} if shared is None else shared    # One compilation serves every seed.
  with contextlib.ExitStack() as opened:
    opened.enter_context(progress_lib.lines_to(log))
    runs = [opened.enter_context(loop.OpenRun(config, workdir, _prefixed(log, config.seed),
                                              shared))
            for config, workdir in zip(configs, workdirs)]
    if len({tuple(one.rounds_left) for one in runs}) > 1:
      log("the seeds stand at different rounds: running them one after another")
      opened.close()
      return [loop.run(config, workdir, _prefixed(log, config.seed), shared, progress_seconds)
              for config, workdir in zip(configs, workdirs)]
    trainer = runs[0].exp.trainer                  # (the same object for every seed)
    batch = shared.setdefault(("seed batch", id(trainer)), train_lib.SeedBatchTrainer(trainer))
    data = batch.stack_data([one.exp.device_data for one in runs])
    for round_index in runs[0].rounds_left:
      keys = [one.learner.round_keys(round_index) for one in runs]
      for one in runs:
        one.learner.log_round_start()
      progress = None
      if progress_seconds >= 0 and jax.process_count() == 1:
        seeds = ", ".join(str(config.seed) for config in configs)
        progress = [checkpoints.RoundProgress(one.workdir, round_index, one.state.labeled,
                                              one.learner.round_key(round_index), progress_seconds,
                                              one.log, seed_batch=seeds) for one in runs]
      try:
        fits = batch.fit([k[0] for k in keys], data, [one.state.labeled for one in runs],
                         runs[0].exp.al.query_size, [one.log for one in runs], progress,
                         round_index)
      except train_lib.Diverged as e:
        raise loop.diverged_error(runs[e.seed_index].exp, round_index, e,
                        f"seed {configs[e.seed_index].seed}: ") from None
      for one, fit in zip(runs, fits):
        one.learner.adopt(fit)
        record, variables = loop.test_and_query(one, round_index, fit)
        # Its train_seconds are the whole batch's: a report divides them among these seeds.
        record["trained_with_seeds"] = [config.seed for config in configs]
        one.finish_round(round_index, record, variables)
      for saver in progress or []:
        saver.discard()
      ended = [not one.rounds_left for one in runs]   # by al.stop_when_stable
      if all(ended):
        break
      if any(ended):
        log("the stopping signal ended some seeds: the others go on one after another")
        opened.close()
        return [loop.run(config, workdir, _prefixed(log, config.seed), shared,
                         progress_seconds) for config, workdir in zip(configs, workdirs)]
    return [one.results for one in runs]


def _prefixed(log, seed: int):
  return lambda message: log(f"seed {seed}: {message}")
