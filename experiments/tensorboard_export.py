r"""TensorBoard event files drawn from committed runs' results.json, side by side.

  python -m experiments.tensorboard_export --workdirs=results/calibration_stopping \
      --out=/tmp/tensorboard
  tensorboard --logdir=/tmp/tensorboard

A run writes its event files as it trains (`tensorboard=true`); committed runs keep only
results.json, which holds every number drawn, so this draws them again: each
results.json found in or below a workdir becomes a run of the same relative path under
--out (e.g. waal/seed_0), with the tags a live run has (docs/outputs.md). An --out that
holds event files already is refused (TensorBoard would show both).
"""

import json
import os

from absl import app
from absl import flags

from experiments import cli

_FLAGS = {}  # Defined only when run as a program, so that tests can import this.


def _define_flags():
  _FLAGS["workdirs"] = flags.DEFINE_list("workdirs", None,
                                         "Runs or trees of runs (results.json).")
  _FLAGS["out"] = flags.DEFINE_string("out", None, "Folder for the event files.")


def _adversarial(config: dict) -> str:
  """The run's train.adversarial, with auto resolved as the run resolved it."""
  from waal_jax import strategies  # pylint: disable=g-import-not-at-top
  chosen = config.get("train", {}).get("adversarial", "auto")
  if chosen != "auto":
    return chosen
  return "wasserstein" if strategies.get(config["query"]["strategy"]).needs_critic else "none"


def export(workdirs, out: str, log=cli.log) -> int:
  """Draws every run below `workdirs` into `out`; returns how many. Raises ValueError
  with one line on bad input."""
  from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from waal_jax import tensorboard_writer  # pylint: disable=g-import-not-at-top
  if os.path.isdir(out) and any("tfevents" in name for _, _, names in os.walk(out)
                                for name in names):
    raise ValueError(f"--out={out} holds event files already; give an empty folder")
  count = 0
  for workdir in workdirs:
    if not os.path.isdir(workdir):
      raise ValueError(f"--workdirs: {workdir} is not a folder")
    for root, _, names in sorted(os.walk(workdir)):
      if "results.json" not in names:
        continue
      path = os.path.join(root, "results.json")
      try:
        with open(path) as f:
          results = json.load(f)
        config = results["config"]
        # The class names a live run of the dataset draws (0..K-1 where its spec has none).
        spec = data_lib.SPECS.get(config["data"]["name"])
        names_of = spec.label_names if spec is not None else None
        # Below --out as below the workdir (under its own name when there are several).
        base = os.path.dirname(os.path.normpath(workdir)) if len(workdirs) > 1 else workdir
        logdir = os.path.normpath(os.path.join(out, os.path.relpath(root, base)))
        tensorboard_writer.write_results(results, logdir, class_names=names_of,
                                         adversarial=_adversarial(config))
      except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a waal_jax results.json ({e})") from e
      log(f"{path}: {len(results['rounds'])} rounds drawn in {logdir}")
      count += 1
  if not count:
    raise ValueError(f"--workdirs: no results.json in or below {', '.join(workdirs)}")
  return count


def main(argv):
  del argv
  try:
    count = export(_FLAGS["workdirs"].value, _FLAGS["out"].value)
  except ValueError as e:
    cli.fail(str(e))
  cli.log(f"{count} runs drawn: tensorboard --logdir={_FLAGS['out'].value}")


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=cli.make_flags_parser("workdirs", "out", config=False))
