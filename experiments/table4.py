r"""Runs the Table 4 protocol on Fashion-MNIST: every arm, several seeds, K runs at once.

  python -m experiments.table4 --out=results/fashion_mnist_full [--seeds=5] \
      [--parallel=2] [--arms=waal,random,...] [--set=train.epochs=2 ...] [--status]

The arms (ARMS in experiments/table4_arms.py): the nine strategies of Table 4 with the
paper preset, two controls that the paper lacks, and WAAL with the authors' released
code (`reference`); on request (--arms) also the newer strategies of NEWER_ARMS and the
check of CHECK_ARMS there.
Each (arm, seed) is a plain experiments.main run in OUT/<arm>/seed_<seed> (the tree
`--config.seeds` makes), so rerunning the same command resumes every unfinished run
and leaves finished ones alone. Runs are started seed by seed (seed 0 of every arm
first), so a campaign cut short leaves the arms with the same seeds. With --parallel=K
they run as K pinned one-thread CPU processes (waal_jax/seed_pool.py).
With --status it runs nothing and prints where the campaign stands: per arm and seed
the rounds recorded, the hours spent and an estimate of the hours left.
"""

import os

from absl import app
from absl import flags

from experiments import campaign_status
from experiments import cli
from experiments import table4_arms

_OUT = flags.DEFINE_string("out", None, "Folder of the arms' trees.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds 0 .. seeds-1 of every arm.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at once (CPU processes).")
_ON_REQUEST = [*table4_arms.NEWER_ARMS, *table4_arms.CHECK_ARMS]
_ARMS = flags.DEFINE_list("arms", list(table4_arms.ARMS), "Arms to run, in this order within a "
                          f"seed (default: Table 4's; also {', '.join(_ON_REQUEST)}).")
_SET = flags.DEFINE_multi_string("set", [], "group.field=value applied to every arm (e.g. a "
                                 "smaller protocol); the value is parsed as the field's type.")
_STATUS = flags.DEFINE_bool("status", False, "Print where the campaign stands (rounds, hours "
                            "spent, hours left) and run nothing.")


def main(argv):
  del argv
  unknown = [a for a in _ARMS.value if a not in table4_arms.ALL_ARMS]
  if unknown:
    cli.fail(f"--arms: unknown arm(s) {', '.join(unknown)}; choose from "
             f"{', '.join(table4_arms.ALL_ARMS)}")
  from waal_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from waal_jax import seed_pool  # pylint: disable=g-import-not-at-top
  from waal_jax import settings as settings_lib  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  jobs, rounds = {}, {}
  try:
    for seed in range(_SEEDS.value):
      for arm in _ARMS.value:
        config = table4_arms.arm_config(arm, seed, _SET.value)
        settings_lib.resolve(config)
        rounds[arm] = config.al.rounds + 1
        workdir = os.path.join(_OUT.value, arm, f"seed_{seed}")
        # Refuse a tree of another protocol before anything starts.
        checkpoints.check_workdir(workdir, config.to_dict())
        jobs[f"{arm} seed {seed}"] = (config.to_dict(), workdir)
    if _STATUS.value:
      rows = campaign_status.status(_OUT.value, _ARMS.value, _SEEDS.value, rounds)
      print(campaign_status.table(rows, rounds, _SEEDS.value, _PARALLEL.value))
      return
    failed = seed_pool.run_parallel(jobs, _PARALLEL.value, cli.log, field="--parallel")
  except (UserError, ValueError) as e:
    cli.fail(str(e))
  if failed:
    cli.fail(f"{len(failed)} of {len(jobs)} runs failed ({', '.join(failed)}; see their lines "
             "above); rerun the same command to resume them")
  cli.log(f"all {len(jobs)} runs finished in {_OUT.value}")


if __name__ == "__main__":
  app.run(cli.stoppable(main), flags_parser=cli.make_flags_parser("out", config=False))
