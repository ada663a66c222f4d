r"""Runs the Table 4 protocol on Fashion-MNIST: every arm, several seeds, K runs at once.

  python -m experiments.table4 --out=results/fashion_mnist_full [--seeds=5] \
      [--parallel=2] [--arms=waal,random,...] [--set=train.epochs=2 ...] [--status]

The arms (ARMS below): the nine strategies of Table 4 with the paper preset, two
controls that the paper lacks, and WAAL with the authors' released code (`reference`);
on request (--arms) also the newer strategies of NEWER_ARMS and the check of CHECK_ARMS.
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

# arm -> (preset, config overrides)
ARMS = {
    "waal": ("paper", {}),
    "random": ("paper", {"query.strategy": "random"}),
    "least_confidence": ("paper", {"query.strategy": "least_confidence"}),
    "margin": ("paper", {"query.strategy": "margin"}),
    "entropy": ("paper", {"query.strategy": "entropy"}),
    "kmedian": ("paper", {"query.strategy": "kmedian"}),
    "coreset": ("paper", {"query.strategy": "coreset"}),
    "dbal": ("paper", {"query.strategy": "dbal"}),
    "deepfool": ("paper", {"query.strategy": "deepfool"}),
    # Control for training length: Random with WAAL's steps per epoch.
    "random_match_pool": ("paper", {"query.strategy": "random",
                                    "train.steps_per_epoch": "match_pool"}),
    # Control for the adversarial loss: Random queries, WAAL's training.
    "random_wasserstein": ("paper", {"query.strategy": "random",
                                     "train.adversarial": "wasserstein"}),
    "waal_reference": ("reference", {}),
}
# Strategies newer than the paper (issue 12's comparison), run the same way on request.
NEWER_ARMS = {name: ("paper", {"query.strategy": name})
              for name in ("badge", "batchbald", "typiclust", "probcover")}
# DeepFool as DeepAL ran it until its 2022 fix (towards the last class other than the
# prediction, no overshoot), which the paper's DeepFool most likely was; on request.
CHECK_ARMS = {"deepfool_last_class": ("paper", {"query.strategy": "deepfool",
                                                "query.deepfool_boundary": "last_class",
                                                "query.deepfool_overshoot": 0.0})}
_ALL_ARMS = {**ARMS, **NEWER_ARMS, **CHECK_ARMS}

_OUT = flags.DEFINE_string("out", None, "Folder of the arms' trees.")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds 0 .. seeds-1 of every arm.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at once (CPU processes).")
_ARMS = flags.DEFINE_list("arms", list(ARMS), "Arms to run, in this order within a seed "
                          f"(default: Table 4's; also {', '.join([*NEWER_ARMS, *CHECK_ARMS])}).")
_SET = flags.DEFINE_multi_string("set", [], "group.field=value applied to every arm (e.g. a "
                                 "smaller protocol); the value is parsed as the field's type.")
_STATUS = flags.DEFINE_bool("status", False, "Print where the campaign stands (rounds, hours "
                            "spent, hours left) and run nothing.")


def _parse_value(old, text: str):
  if isinstance(old, bool):
    if text.lower() not in ("true", "false"):
      raise ValueError(f"expected true or false, not {text!r}")
    return text.lower() == "true"
  if isinstance(old, tuple):
    return tuple(float(v) for v in text.strip("()").split(",") if v.strip())
  return type(old)(text)


def arm_config(arm: str, seed: int, settings: list):
  """The config of one (arm, seed) run: the arm's preset and overrides, then --set."""
  from experiments.configs import base  # pylint: disable=g-import-not-at-top
  from experiments.configs import fashion_mnist  # pylint: disable=g-import-not-at-top
  preset, overrides = _ALL_ARMS[arm]
  config = base.apply(fashion_mnist.get_config(preset), overrides)
  for item in settings:
    name, sep, text = item.partition("=")
    group, _, field = name.partition(".")
    if not sep or group not in config or field not in config[group]:
      raise ValueError(f"--set {item}: expected group.field=value with a field of the config")
    try:
      config[group][field] = _parse_value(config[group][field], text)
    except ValueError as e:
      raise ValueError(f"--set {item}: {e}") from e
  config.seed, config.seeds, config.parallel_seeds = seed, 1, 1
  return config


def main(argv):
  del argv
  unknown = [a for a in _ARMS.value if a not in _ALL_ARMS]
  if unknown:
    cli.fail(f"--arms: unknown arm(s) {', '.join(unknown)}; choose from "
             f"{', '.join(_ALL_ARMS)}")
  from waal_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from waal_jax import seed_pool  # pylint: disable=g-import-not-at-top
  from waal_jax import settings as settings_lib  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  jobs, rounds = {}, {}
  try:
    for seed in range(_SEEDS.value):
      for arm in _ARMS.value:
        config = arm_config(arm, seed, _SET.value)
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
