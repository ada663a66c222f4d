r"""Reruns the first rounds of a committed run with today's code and compares them.

  python -m experiments.rerun_check --run=results/fashion_mnist_full/waal/seed_0 \
      --rounds=2 --workdir=/tmp/rerun_waal_0

The run's config.json is run again from round 0 in --workdir (a new folder) for
--rounds rounds; each round's queried indices must equal the committed ones, and the
test accuracies are printed side by side. Exit status 1 when a selection differs.
"""

import json
import os
import sys

from absl import app
from absl import flags

from experiments import cli

_RUN = flags.DEFINE_string("run", None, "A committed run's folder (config.json, results.json).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds to rerun, from round 0.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A new folder for the rerun.")


def main(argv):
  del argv
  from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
  xla_tuning.tune_cpu_flags()
  import ml_collections  # pylint: disable=g-import-not-at-top
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  with open(os.path.join(_RUN.value, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(_RUN.value, "results.json")) as f:
    committed = json.load(f)["rounds"]
  if os.path.exists(os.path.join(_WORKDIR.value, "results.json")):
    cli.fail(f"--workdir={_WORKDIR.value}: holds a run; give a new folder")
  rerun = loop.run(config, _WORKDIR.value, cli.log, max_rounds=_ROUNDS.value)["rounds"]
  differ = 0
  for record, old in zip(rerun, committed):
    round_index = record["round"]
    same = record["queried_indices"] == old["queried_indices"]
    differ += not same
    cli.log(f"round {round_index}: queried indices {'equal' if same else 'DIFFER'} "
            f"({len(old['queried_indices'])}); test accuracy {record['test_accuracy']:.4f} "
            f"now, {old['test_accuracy']:.4f} committed; epochs {record['epochs_trained']} "
            f"now, {old['epochs_trained']} committed")
  sys.exit(1 if differ else 0)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.make_flags_parser("run", "workdir", config=False))
