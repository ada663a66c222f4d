r"""Times the parts of a round and prints one JSON object per line.

  python -m experiments.benchmark --config=fashion_mnist [--repeats=5] [--steps=50]

Each figure is the median of --repeats timings after one warm-up (compilation)
run: a WAAL training step (ms), a full epoch over the unlabeled pool (s), the
evaluation of the validation split (images/s) and the WAAL query over the whole
unlabeled pool (s). The network is untrained: none of these times depends on the
weights. The labeled set is the config's initial one.
"""

import json
import statistics
import time

from absl import app
from absl import flags
from absl import logging

from experiments import cli

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timings per figure (the median is printed).")
_STEPS = flags.DEFINE_integer("steps", 50, "Training steps per train_step timing.")
_EPOCH_REPEATS = flags.DEFINE_integer("epoch_repeats", 2, "Timings of a full epoch.")


def _median_seconds(fn, repeats: int):
  fn()  # Warm-up: compilation and first-touch allocation.
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    samples.append(time.perf_counter() - start)
  return statistics.median(samples), samples


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
  xla_tuning.tune_cpu_flags()
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  from waal_jax import sharding  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top

  config = cli.CONFIG.value
  try:
    exp = loop.build(config, log=cli.log)
  except UserError as e:
    cli.fail(str(e))
  trainer = exp.trainer
  pool_count = len(exp.splits.pool_labels)
  labeled = loop.initial_labeled(jax.random.key(config.seed), pool_count,
                                 exp.al.initial_labeled)
  inputs = trainer.round_inputs(labeled, exp.al.query_size)
  keys = jax.random.split(jax.random.key(1), 3)
  plan = trainer.epoch_plan(keys[0], inputs)
  hyper = trainer.hyper(inputs, 0)
  common = {"config": config.data.name, "model": config.model.name,
            "device": sharding.describe_devices(), "jax": jax.__version__}

  def emit(record):
    print(json.dumps({**record, **common}), flush=True)

  state = [trainer.init_state(keys[1])]

  def steps(count):
    def run():
      state[0], sums = trainer.train_epoch(state[0], exp.device_data, plan, hyper, keys[2],
                                           count)
      jax.block_until_ready(sums)
    return run

  n = min(_STEPS.value, inputs.steps)
  seconds, samples = _median_seconds(steps(n), _REPEATS.value)
  emit({"what": "train_step", "adversarial": trainer.settings.adversarial,
        "batch_size": trainer.settings.batch_size, "ms_per_step": 1000 * seconds / n,
        "samples_ms": [round(1000 * s / n, 3) for s in samples]})

  seconds, samples = _median_seconds(steps(inputs.steps), _EPOCH_REPEATS.value)
  emit({"what": "epoch", "steps": inputs.steps, "seconds": seconds,
        "samples": [round(s, 3) for s in samples]})

  variables = {"params": state[0].params, "batch_stats": state[0].batch_stats}
  seconds, _ = _median_seconds(lambda: trainer.accuracy(variables, exp.device_data.val),
                               _REPEATS.value)
  emit({"what": "evaluation", "examples": exp.device_data.val.count, "seconds": seconds,
        "images_per_second": exp.device_data.val.count / seconds})

  is_labeled = np.zeros(pool_count, bool)
  is_labeled[labeled] = True
  seconds, samples = _median_seconds(
      lambda: exp.strategy.select(keys[0], variables, exp.pool, is_labeled,
                                  exp.al.query_size), _REPEATS.value)
  emit({"what": "query", "strategy": exp.query.strategy, "pool_size": pool_count - len(labeled),
        "seconds": seconds, "samples": [round(s, 3) for s in samples]})


if __name__ == "__main__":
  app.run(main, flags_parser=cli.make_flags_parser())
