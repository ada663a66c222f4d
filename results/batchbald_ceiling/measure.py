r"""How much information a 500-pick BatchBALD batch holds, pick by pick, on real data.

  python results/batchbald_ceiling/measure.py 10,30 > results/batchbald_ceiling/output.txt

Trains LeNet-5 (paper preset, early stopping) on 1,000 labels of real Fashion-MNIST with
a pool of 5,000 (so 4,000 candidates keep the query short), then runs the BatchBALD
greedy selection for a batch of 500 with T consistent MC-dropout draws for each T given,
and prints the estimated joint information I(y_1..y_n; w) after some picks, against
its ceiling H(w) = log T, and the class histogram of the picks.
"""

import dataclasses
import os
import sys
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments.configs import fashion_mnist  # noqa: E402
from waal_jax import loop  # noqa: E402
from waal_jax import sharding  # noqa: E402
from waal_jax import strategies  # noqa: E402
from waal_jax.strategies import batchbald  # noqa: E402

PICKS_SHOWN = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500)


def main(draws):
  config = fashion_mnist.get_config("paper")
  config.data.pool_size = 5000
  config.query.strategy = "batchbald"
  config.al.rounds = 1
  exp = loop.build(config, log=lambda _: None)
  labels = exp.splits.pool_labels
  labeled = loop.initial_labeled(jax.random.key(0), len(labels), 1000)
  start = time.time()
  fit = exp.trainer.fit(jax.random.key(1), exp.device_data, labeled, 500, log=lambda _: None)
  print(f"LeNet-5 on {len(labeled)} labels: {len(fit.epochs)} epochs ({time.time() - start:.0f} s), "
        f"validation accuracy {fit.best_val_accuracy:.4f}; "
        f"{len(labels) - len(labeled)} candidates, batch 500, 1,024 configurations")
  unlabeled = np.ones(len(labels), bool)
  unlabeled[labeled] = False
  for samples in draws:
    query = exp.settings.query
    query = dataclasses.replace(query, options=types.MappingProxyType(
        {**query.options, "mc_samples": samples}))
    strategy = strategies.create(exp.trainer.nets, exp.splits.spec, query, exp.mesh)
    log_probs = sharding.on_one_device(
        strategy.mc_log_probs(fit.variables, exp.pool, jax.random.key(2)))[:len(labels)]
    start = time.time()
    picks, information = batchbald.batchbald_greedy(
        log_probs, unlabeled, jax.random.key(3), k=500,
        configurations=query.options["batchbald_configurations"])
    picks, information = np.asarray(picks), np.asarray(information)
    print(f"\nT = {samples}: ceiling log T = {np.log(samples):.3f} nats "
          f"(greedy selection {time.time() - start:.0f} s)")
    for n in PICKS_SHOWN:
      print(f"  after {n:3d} picks: I = {information[n - 1]:.3f} nats "
            f"({information[n - 1] / np.log(samples):.0%} of the ceiling)")
    for first, last in ((0, 10), (10, 50), (50, 500)):
      counts = np.bincount(labels[picks[first:last]], minlength=10).tolist()
      print(f"  picks {first + 1}-{last} by class: {counts}")
    print("  note: " + (batchbald.saturation_note(information, samples) or "(none)"))


if __name__ == "__main__":
  main([int(t) for t in sys.argv[1].split(",")])
