r"""Reruns the first rounds of a committed run with today's code and compares them.

  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 \
  python -m experiments.rerun_check --run=results/fashion_mnist_full/margin/seed_4 \
      --rounds=2 --workdir=/tmp/rerun_margin_4

The run's config.json is run again from round 0 in --workdir (a new folder) for
--rounds rounds; each round's queried indices must equal the committed ones, and the
test accuracies are printed side by side. Exit status 1 when a selection differs.

Float results differ in their last bits with the CPU model and the thread count, and
early stopping and the queries follow them: rerun as the run was made. The campaigns
of results/ ran one single-threaded process per core (the flags above; the CPU model
is in results.json from December 2026 on, see provenance.cpu_model).
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from experiments import cli

_RUN = flags.DEFINE_string("run", None, "A committed run's folder (config.json, results.json).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds to rerun, from round 0.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A new folder for the rerun.")


def compare(run: str, rounds: int, workdir: str, log) -> int:
  """Reruns `rounds` rounds of the run in folder `run` into `workdir` (new); logs each
  round beside the committed one and returns how many rounds picked differently."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    with open(os.path.join(run, "config.json")) as f:
      config = ml_collections.ConfigDict(json.load(f))
    with open(os.path.join(run, "results.json")) as f:
      committed = json.load(f)["rounds"]
  except (OSError, ValueError, KeyError) as e:
    raise UserError(f"--run={run}: needs a readable config.json and results.json ({e})") from None
  if os.path.exists(os.path.join(workdir, "results.json")):
    raise UserError(f"--workdir={workdir}: holds a run; give a new folder")
  rerun = loop.run(config, workdir, log, max_rounds=rounds)["rounds"]
  differ = 0
  for record, old in zip(rerun, committed):
    same = record["queried_indices"] == old["queried_indices"]
    differ += not same
    log(f"round {record['round']}: queried indices {'equal' if same else 'DIFFER'} "
        f"({len(old['queried_indices'])}); test accuracy {record['test_accuracy']:.4f} now, "
        f"{old['test_accuracy']:.4f} committed; epochs {record['epochs_trained']} now, "
        f"{old['epochs_trained']} committed")
  return differ


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Our own lines, not orbax chatter.
  from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
  xla_tuning.tune_cpu_flags()
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    differ = compare(_RUN.value, _ROUNDS.value, _WORKDIR.value, cli.log)
  except UserError as e:
    cli.fail(str(e))
  sys.exit(1 if differ else 0)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.make_flags_parser("run", "workdir", config=False))
