"""Seeds run at once as CPU processes, each pinned to its own cores.

On CPU a LeNet-5 step is too small for XLA to keep two cores busy: two threads make it
only ~1.4x faster than one. Two single-threaded processes on their own cores do not slow
each other, so on two cores they train ~1.4x more steps per hour than one two-thread
process (`train_step_processes` in experiments/benchmark.py); in short runs the slower
one-thread start-up eats the gain (`seeds_per_hour`).

`run_parallel` starts up to K processes (multiprocessing, spawn: JAX must not be forked),
one per run, splitting the cores given to this process evenly among them; each runs
`loop.run` on its own workdir (for seeds, WORKDIR/seed_<seed>), exactly as it would run
alone, so the results are the same and a rerun resumes each. A run that fails loses
nothing of the others; they go on and the failure is reported at the end. SIGINT or
SIGTERM to the parent stops the runs in progress too (each ends as a stopped run does,
resumable), then reaches the caller as interrupts.Stopped.
"""

import multiprocessing
import os
import sys
import time
import traceback
from multiprocessing import connection
from typing import Callable, Dict, List, Sequence

from waal_jax import interrupts
from waal_jax.errors import UserError

# XLA:CPU's flag for one thread in Eigen's kernels; XLA sizes its own pool to the cores
# the process may run on (its affinity). Every flag must start with "--": XLA stops
# reading XLA_FLAGS at the first word that does not, and silently ignores the rest.
_ONE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false"
# How long stopped runs may take to unwind (write nothing new, release their workdirs)
# before they are killed; either way they resume.
_STOP_GRACE_SECONDS = 30


def core_groups(cores: Sequence[int], processes: int,
                field: str = "parallel_seeds") -> List[List[int]]:
  """`processes` disjoint, equal groups of the given cores (the remainder unused);
  `field` names the setting that asked for them in the error."""
  cores = sorted(cores)
  if processes > len(cores):
    raise UserError(f"{field}: {processes} processes but this run may use only "
                    f"{len(cores)} core(s) (taskset / cgroup); use at most {len(cores)}")
  per = len(cores) // processes
  return [cores[i * per:(i + 1) * per] for i in range(processes)]


def thread_flags(num_cores: int) -> str:
  """XLA_FLAGS for a process pinned to `num_cores` cores (XLA's own thread pool already
  follows the pinning; Eigen's kernels need telling when there is one core)."""
  return _ONE_THREAD_FLAGS if num_cores == 1 else ""


def _log(message: str) -> None:
  """A child's progress line on stderr (the lines of all seeds interleave)."""
  print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _run_one(label: str, config_dict: dict, workdir: str, cores: List[int]):
  """A child process: pin, size XLA's threads, run one run. Exit status 1 on failure,
  128 + the signal when stopped (the parent says so)."""
  interrupts.stop_on_signals()
  prefixed = lambda message: _log(f"{label}: {message}")
  try:   # (from the start: a stop may come while JAX is imported)
    os.sched_setaffinity(0, cores)
    # Before JAX creates its CPU client, which reads these once.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {thread_flags(len(cores))}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import ml_collections  # pylint: disable=g-import-not-at-top
    from waal_jax import loop  # pylint: disable=g-import-not-at-top
    from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
    xla_tuning.tune_cpu_flags()
    loop.run(ml_collections.ConfigDict(config_dict), workdir, prefixed)
  except UserError as e:
    prefixed(f"error: {e}")
    sys.exit(1)
  except interrupts.Stopped as e:
    sys.exit(128 + e.signum)
  except BaseException:  # pylint: disable=broad-except  (a bug: show it, fail this seed only)
    prefixed("failed:\n" + traceback.format_exc())
    sys.exit(1)


def run_parallel(jobs: Dict[str, tuple], processes: int, log: Callable[[str], None],
                 field: str = "parallel_seeds") -> List[str]:
  """Runs jobs {label: (config_dict, workdir)}, at most `processes` at once, in the
  order given. Returns the labels whose process failed (empty when all finished)."""
  groups = core_groups(os.sched_getaffinity(0), min(processes, len(jobs)), field)
  context = multiprocessing.get_context("spawn")
  waiting = list(jobs)
  running = {}                        # sentinel -> (seed, process, group index)
  free = list(range(len(groups)))
  failed = []
  try:
    while waiting or running:
      while waiting and free:
        with interrupts.held():     # (a stop must find every started process in `running`)
          label, group = waiting.pop(0), free.pop(0)
          config_dict, workdir = jobs[label]
          process = context.Process(target=_run_one, name=label,
                                    args=(label, config_dict, workdir, groups[group]))
          process.start()
          running[process.sentinel] = (label, process, group)
        log(f"{label} started on core(s) {','.join(map(str, groups[group]))} in {workdir}")
      for sentinel in connection.wait(list(running)):
        label, process, group = running.pop(sentinel)
        process.join()
        free.append(group)
        if process.exitcode != 0:
          failed.append(label)
          log(f"{label} failed (exit status {process.exitcode})")
  except KeyboardInterrupt:
    _stop([process for _, process, _ in running.values()])
    raise
  return failed


def _stop(processes: List[multiprocessing.Process]) -> None:
  """SIGTERM to each, then SIGKILL to those still running after the grace period."""
  for process in processes:
    process.terminate()
  deadline = time.time() + _STOP_GRACE_SECONDS
  for process in processes:
    process.join(max(0.0, deadline - time.time()))
    if process.is_alive():
      process.kill()
      process.join()
