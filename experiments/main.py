r"""Runs one active-learning experiment.

  python -m experiments.main --config=fashion_mnist --workdir=/tmp/run \
      [--config.al.rounds=2 --config.train.epochs=3 ...]

--config takes a name from experiments/configs (fashion_mnist, svhn, cifar10, stl10,
optionally with `:reference` for the authors' released code; image_folder for your own
images), or a path to a config file. Rerunning the same command on the same workdir
resumes the run (also after Ctrl-C, SIGTERM, kill -9 or a damaged checkpoint); one run
at a time may use a workdir. With --config.al.oracle=human the run stops after each
query until a person has labeled it (waal_jax/oracle.py), and the same command
continues it.
`--config.seeds=N` runs N repetitions into WORKDIR/seed_<seed>, one after another.
"""


from absl import app
from absl import flags
from absl import logging

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for results.json and checkpoints.")


def main(argv):
  del argv  # Checked by the flags parser.
  logging.set_verbosity(logging.WARNING)  # Our own progress lines, not jax/orbax chatter.
  # Imported here so that --help and flag errors come back without loading JAX.
  from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
  xla_tuning.tune_cpu_flags()
  if cli.CONFIG.value.distributed:
    cli.start_distributed()
  from waal_jax import seeds  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    repetitions = seeds.run_seeds(cli.CONFIG.value, _WORKDIR.value, log=cli.log)
  except UserError as e:
    cli.fail(str(e))
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    return
  for results in repetitions:
    # (A run waiting for a person's labels has said what to do; it is not done.)
    if len(results["rounds"]) == results["config"]["al"]["rounds"] + 1:
      final = results["rounds"][-1]
      cli.log(f"done: seed {results['config']['seed']}: test accuracy "
              f"{final['test_accuracy']:.4f} with {final['num_labeled']} labels")
  cli.log(f"results in {_WORKDIR.value}")


def _kept() -> str:
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  return loop.kept(_WORKDIR.value)


if __name__ == "__main__":
  app.run(cli.stoppable(main, _kept), flags_parser=cli.make_flags_parser("workdir"))
