r"""Times the parts of a round and prints one JSON object per line on stdout.

  python -m experiments.benchmark --config=fashion_mnist [--skip=epoch,query] \
      [--strategies=all] [--repeats=5] [--budget_seconds=60]

Each figure is the median of --repeats timings after one warm-up (compilation) run:
  train_step        one WAAL training step (ms);
  train_step_torch  the same step in tight PyTorch (experiments/torch_reference.py),
                    when torch is installed, measured in the same run, and
  train_step_ratio  JAX / PyTorch;
  train_step_loop   the same steps through the training loop (train_epoch, with its
                    progress bar) and through the step function alone, interleaved:
                    ms per step of each and the median ratio of pairs;
  train_step_processes  the same two steps timed in one single-threaded process per core,
                    all at once (how parallel seeds run on CPU): the time per step of
                    the whole machine (a process's time / processes) and the ratio;
  epoch             a full epoch over the unlabeled pool (s), or its estimate from the
                    step time when a real one would exceed the budget ("estimated");
  evaluation        the validation split (images/s);
  query             each strategy's query of `al.query_size` examples from the whole
                    unlabeled pool (s), all with the same network, trained first for
                    --train_epochs WAAL epochs on the initial labels;
  table1            every strategy's query time relative to WAAL's beside the paper's
                    Table 1 (measured on SVHN); also as a table on stderr;
  seeds_per_hour    N seeds of a short run (--seed_rounds rounds of --seed_epochs
                    epochs each, the whole pool, start-up and queries included) through
                    experiments.main, one after another and as parallel_seeds processes
                    (one wall-clock timing each, N from --seed_counts).
Where the dataset is not available (CIFAR-10 here), random images of its Table 2 sizes
stand in ("data": "synthetic"): none of these times depends on the pixel values.
"""

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

from experiments import cli

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timings per figure (the median is printed).")
_QUERY_REPEATS = flags.DEFINE_integer("query_repeats", 3, "Timings per strategy's query.")
_STEPS = flags.DEFINE_integer("steps", 50, "Most training steps per train_step timing.")
_BUDGET = flags.DEFINE_float("budget_seconds", 60.0,
                             "Rough time per figure: fewer steps or an estimate beyond it.")
_TRAIN_EPOCHS = flags.DEFINE_integer("train_epochs", 2,
                                     "WAAL epochs that train the network the queries use "
                                     "(0: untrained).")
_STRATEGIES = flags.DEFINE_list("strategies", ["all"], "Strategies to time, or 'all'.")
_SKIP = flags.DEFINE_list("skip", [], "Parts to skip: train_step, torch, epoch, evaluation, "
                          "query, seeds, processes.")
_PIN_CORE = flags.DEFINE_integer("pin_core", -1, "Run on this core only (how "
                                 "train_step_processes starts its workers); -1 = any.")
_SEED_COUNTS = flags.DEFINE_list("seed_counts", ["1", "2", "5"],
                                 "Seeds per seeds_per_hour timing.")
_SEED_ROUNDS = flags.DEFINE_integer("seed_rounds", 2, "Rounds of each seeds_per_hour seed.")
_SEED_EPOCHS = flags.DEFINE_integer("seed_epochs", 2, "Epochs a round of seeds_per_hour.")

PAPER_QUERY_TIME = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper",
                                "paper_query_time.csv")


def _median_seconds(fn, repeats: int):
  fn()  # Warm-up: compilation and first-touch allocation.
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    samples.append(time.perf_counter() - start)
  return statistics.median(samples), samples


def _paper_relative_times():
  with open(PAPER_QUERY_TIME) as f:
    return {row["method"]: float(row["relative_query_time"]) for row in csv.DictReader(f)}


def _steps_within_budget(seconds_per_step: float, repeats: int, limit: int) -> int:
  return max(1, min(limit, int(_BUDGET.value / max(repeats, 1) / seconds_per_step)))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if _PIN_CORE.value >= 0:
    os.sched_setaffinity(0, [_PIN_CORE.value])
  from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
  xla_tuning.tune_cpu_flags()
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  from waal_jax import provenance  # pylint: disable=g-import-not-at-top
  from waal_jax import settings as settings_lib  # pylint: disable=g-import-not-at-top
  from waal_jax import sharding  # pylint: disable=g-import-not-at-top
  from waal_jax import strategies  # pylint: disable=g-import-not-at-top
  from waal_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top

  config = cli.CONFIG.value
  names = strategies.names() if _STRATEGIES.value == ["all"] else _STRATEGIES.value
  source = "real"
  try:
    for name in names:
      strategies.get(name)
    with config.unlocked():
      config.query.strategy = "waal"      # The network all strategies query: WAAL's,
      config.train.adversarial = "wasserstein"
      config.train.epochs = max(_TRAIN_EPOCHS.value, 1)   # trained this many epochs.
    resolved = settings_lib.resolve(config)
    try:
      splits = loop.load_splits(resolved.data, resolved.seed, log=cli.log)
    except UserError as e:
      if "no data found" not in str(e):
        raise
      cli.log(f"{config.data.name} is not available here: timing random images of its "
              "Table 2 sizes instead")
      spec = data_lib.with_normalization(data_lib.get_spec(config.data.name),
                                         resolved.data.mean, resolved.data.std)
      splits = data_lib.synthetic_splits(spec, seed=config.seed,
                                         pool_size=config.data.pool_size)
      source = "synthetic"
    exp = loop.build(config, log=cli.log, splits=splits)
  except UserError as e:
    cli.fail(str(e))
  trainer = exp.trainer
  pool_count = len(exp.splits.pool_labels)
  labeled = loop.initial_labeled(jax.random.key(config.seed), pool_count,
                                 exp.al.initial_labeled)
  inputs = trainer.round_inputs(labeled, exp.al.query_size)
  keys = jax.random.split(jax.random.key(1), 3)
  plan = trainer.epoch_plan(keys[0], inputs)
  common = {"config": config.data.name, "data": source, "model": config.model.name,
            "device": sharding.describe_devices(), "jax": jax.__version__,
            "cpu_model": provenance.cpu_model()}

  def emit(record):
    print(json.dumps({**record, **common}), flush=True)

  state = [trainer.init_state(keys[1])]

  def steps(count):
    def run():
      state[0], sums = trainer.train_epoch(state[0], exp.device_data, plan, inputs.weights,
                                           keys[2], count)
      jax.block_until_ready(sums)
    return run

  step_seconds = None
  if "train_step" not in _SKIP.value:
    steps(1)()                                     # compiles
    start = time.perf_counter()
    steps(3)()
    rough = (time.perf_counter() - start) / 3      # a first estimate, to fit the budget
    n = _steps_within_budget(rough, _REPEATS.value, min(_STEPS.value, inputs.steps))
    step_seconds, samples = _median_seconds(steps(n), _REPEATS.value)
    step_seconds /= n
    emit({"what": "train_step", "adversarial": trainer.settings.adversarial,
          "batch_size": trainer.settings.batch_size, "steps_per_timing": n,
          "ms_per_step": 1000 * step_seconds,
          "samples_ms": [round(1000 * s / n, 3) for s in samples]})

  if "train_step" not in _SKIP.value:
    # The loop around the step (train_epoch, with its progress bar) against the step
    # function called alone, interleaved in this process: what the loop costs a step.
    def bare_steps(count):
      def run():
        sums = sharding.replicate(trainer.mesh,
                                  {k: np.float32(0) for k in train_lib.METRIC_NAMES})
        weights = sharding.replicate(trainer.mesh, inputs.weights)
        for i in range(count):
          state[0], sums = trainer.step_fn(state[0], exp.device_data.pool_images,
                                           exp.device_data.pool_labels, plan, np.int32(i),
                                           weights, sums, keys[2])
        jax.block_until_ready(sums)
      return run

    in_loop, bare = [], []
    for _ in range(_REPEATS.value):
      for times, run in ((in_loop, steps(n)), (bare, bare_steps(n))):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    emit({"what": "train_step_loop", "steps_per_timing": n,
          "ms_per_step_in_loop": 1000 * statistics.median(in_loop) / n,
          "ms_per_step_bare": 1000 * statistics.median(bare) / n,
          "loop_over_bare": statistics.median(a / b for a, b in zip(in_loop, bare))})

  if "torch" not in _SKIP.value and "train_step" not in _SKIP.value:
    try:
      import torch  # pylint: disable=g-import-not-at-top
      from experiments import torch_reference  # pylint: disable=g-import-not-at-top
    except ImportError:
      cli.log("torch is not installed: no PyTorch comparison (pip install torch)")
    else:
      torch.set_num_threads(len(os.sched_getaffinity(0)))
      spec = exp.splits.spec
      torch_step = torch_reference.WAALStep(
          config.model.name, spec.image_shape, 4096, trainer.settings.batch_size,
          feature_dim=config.model.feature_dim or None, hidden=config.model.head_hidden)
      torch_step.step()
      start = time.perf_counter()
      torch_step.step()
      torch_step.step()
      n = _steps_within_budget((time.perf_counter() - start) / 2, _REPEATS.value,
                               _STEPS.value)

      def torch_steps():
        for _ in range(n):
          torch_step.step()

      torch_seconds, samples = _median_seconds(torch_steps, _REPEATS.value)
      torch_seconds /= n
      emit({"what": "train_step_torch", "torch": torch.__version__, "steps_per_timing": n,
            "ms_per_step": 1000 * torch_seconds,
            "samples_ms": [round(1000 * s / n, 3) for s in samples]})
      emit({"what": "train_step_ratio", "jax_over_torch": step_seconds / torch_seconds})

  if "processes" not in _SKIP.value and "train_step" not in _SKIP.value:
    record = _steps_in_processes(len(os.sched_getaffinity(0)))
    if record:
      emit(record)

  if "epoch" not in _SKIP.value:
    if step_seconds is not None and step_seconds * inputs.steps > _BUDGET.value:
      emit({"what": "epoch", "steps": inputs.steps, "seconds": step_seconds * inputs.steps,
            "estimated": True})
    else:
      seconds, samples = _median_seconds(steps(inputs.steps), 2)
      emit({"what": "epoch", "steps": inputs.steps, "seconds": seconds,
            "samples": [round(s, 3) for s in samples]})

  variables = {"params": state[0].params, "batch_stats": state[0].batch_stats}
  if "evaluation" not in _SKIP.value:
    seconds, _ = _median_seconds(lambda: trainer.accuracy(variables, exp.device_data.val),
                                 _REPEATS.value)
    emit({"what": "evaluation", "examples": exp.device_data.val.count, "seconds": seconds,
          "images_per_second": exp.device_data.val.count / seconds})

  if "seeds" not in _SKIP.value:
    if source == "synthetic":
      cli.log("seeds_per_hour needs the real dataset: skipped")
    else:
      for record in _seeds_per_hour(len(os.sched_getaffinity(0))):
        emit(record)

  if "query" in _SKIP.value:
    return
  if _TRAIN_EPOCHS.value > 0:
    start = time.time()
    fit = trainer.fit(keys[1], exp.device_data, labeled, exp.al.query_size,
                      log=lambda _: None)
    cli.log(f"trained the query network for {len(fit.epochs)} epoch(s) in "
            f"{time.time() - start:.0f}s (validation accuracy {fit.best_val_accuracy:.4f})")
    variables = fit.variables
  is_labeled = np.zeros(pool_count, bool)
  is_labeled[labeled] = True
  timings = {}
  for name in names:
    with config.unlocked():
      config.query.strategy = name   # (trained as WAAL: train.adversarial stays set)
    strategy = strategies.create(exp.trainer.nets, exp.splits.spec,
                                 settings_lib.resolve(config).query, exp.mesh)
    seconds, samples = _median_seconds(
        lambda: strategy.select(keys[0], variables, exp.pool, is_labeled, exp.al.query_size),
        _QUERY_REPEATS.value)
    timings[name] = seconds
    emit({"what": "query", "strategy": name, "pool_size": pool_count - len(labeled),
          "query_size": exp.al.query_size, "seconds": seconds,
          "samples": [round(s, 3) for s in samples]})

  if "waal" in timings:
    paper = _paper_relative_times()
    relative = {name: {"ours": timings[name] / timings["waal"], "paper": paper.get(name)}
                for name in names}
    emit({"what": "table1", "relative_to_waal": relative,
          "paper_dataset": "svhn", "ours_dataset": config.data.name})
    lines = ["| strategy | query (s) | ours / WAAL | paper / WAAL (SVHN) |",
             "| --- | --- | --- | --- |"]
    for name in names:
      p = relative[name]["paper"]
      lines.append(f"| {name} | {timings[name]:.2f} | {relative[name]['ours']:.2f} | "
                   f"{'-' if p is None else f'{p:.2f}'} |")
    cli.log("Table 1 (query time relative to WAAL):\n" + "\n".join(lines))


def _steps_in_processes(cores: int):
  """train_step (and train_step_torch) timed in one pinned one-thread process per core."""
  if cores < 2:
    return None
  from waal_jax import seed_pool  # pylint: disable=g-import-not-at-top
  args = [sys.executable, "-m", "experiments.benchmark",
          *[a for a in sys.argv[1:] if a.startswith(("--config", "--repeats", "--steps",
                                                     "--budget_seconds"))],
          "--skip=epoch,evaluation,query,seeds,processes"]
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
             f"{seed_pool.thread_flags(1)}")
  workers = [subprocess.Popen([*args, f"--pin_core={core}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
             for core in sorted(os.sched_getaffinity(0))]
  rows = [[json.loads(line) for line in w.communicate()[0].splitlines()] for w in workers]
  ms = {what: [row["ms_per_step"] for one in rows for row in one if row["what"] == what]
        for what in ("train_step", "train_step_torch")}
  if len(ms["train_step"]) != cores:
    cli.log("train_step_processes: a worker failed")
    return None
  record = {"what": "train_step_processes", "processes": cores,
            "ms_per_step_each": ms["train_step"],
            "ms_per_step": statistics.mean(ms["train_step"]) / cores}
  if len(ms["train_step_torch"]) == cores:
    record.update(torch_ms_per_step_each=ms["train_step_torch"],
                  torch_ms_per_step=statistics.mean(ms["train_step_torch"]) / cores,
                  jax_over_torch=statistics.mean(ms["train_step"]) /
                  statistics.mean(ms["train_step_torch"]))
  return record


def _seeds_per_hour(cores: int):
  """Times N seeds of a short run through the driver, in turn and at once."""
  config_args = [a for a in sys.argv[1:] if a.startswith("--config")]
  workload = [f"--config.al.rounds={_SEED_ROUNDS.value - 1}",
              f"--config.train.epochs={_SEED_EPOCHS.value}", "--config.train.patience=0"]
  for count in map(int, _SEED_COUNTS.value):
    ways = [("in_turn", 1)]
    if count > 1 and cores > 1:
      ways.append(("processes", min(count, cores)))
    for way, processes in ways:
      with tempfile.TemporaryDirectory() as workdir:
        args = [sys.executable, "-m", "experiments.main", *config_args, *workload,
                f"--config.seeds={count}", f"--config.parallel_seeds={processes}",
                f"--workdir={os.path.join(workdir, 'run')}"]
        start = time.perf_counter()
        done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False)
        seconds = time.perf_counter() - start
      if done.returncode != 0:
        cli.log(f"seeds_per_hour: {count} seed(s) {way} failed: "
                f"{done.stderr.strip().splitlines()[-1:]}")
        continue
      yield {"what": "seeds_per_hour", "seeds": count, "way": way, "processes": processes,
             "rounds": _SEED_ROUNDS.value, "epochs_per_round": _SEED_EPOCHS.value,
             "seconds": seconds, "seeds_per_hour": count * 3600 / seconds}


if __name__ == "__main__":
  app.run(main, flags_parser=cli.make_flags_parser())
