"""Flags shared by the driver and the benchmark: --config (name or file) and its parsing.

Every bad flag ends in one line on stderr and exit status 2, never a usage dump.
"""

import functools
import importlib.util
import os
import signal
import sys
import time

from absl import flags
from ml_collections import config_flags

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config name (fashion_mnist, svhn, cifar10, stl10[:reference], or "
    "image_folder) or file.",
    lock_config=True)


def config_names():
  return sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                if f.endswith(".py") and f not in ("__init__.py", "base.py"))


def resolve_config_argument(value: str) -> str:
  """'fashion_mnist[:arg]' -> '<configs>/fashion_mnist.py[:arg]'; paths stay as they are."""
  path, _, arg = value.partition(":")
  if os.path.exists(path):
    return value
  if os.sep in path or path.endswith(".py"):
    raise flags.Error(f"--config: no config file {path}")
  if path not in config_names():
    raise flags.Error(f"--config: unknown config {path!r}; choose one of "
                      f"{', '.join(config_names())} or give a path to a config file")
  resolved = os.path.join(CONFIG_DIR, path + ".py")
  return f"{resolved}:{arg}" if arg else resolved


def _rewrite_config_flag(argv):
  argv = list(argv)
  for index, arg in enumerate(argv):
    if arg.startswith("--config="):
      argv[index] = "--config=" + resolve_config_argument(arg[len("--config="):])
    elif arg == "--config" and index + 1 < len(argv):
      argv[index + 1] = resolve_config_argument(argv[index + 1])
  return argv


def make_flags_parser(*required: str, config: bool = True):
  """A flags_parser for absl.app.run that also insists on the named flags (and on
  --config, unless config=False)."""

  def parse(argv):
    if any(arg in _HELP for arg in argv[1:]):
      print_help(argv[0], config)
      sys.exit(0)
    try:
      remaining = flags.FLAGS(_rewrite_config_flag(argv))
      for name in ("config",) * config + required:
        if flags.FLAGS[name].value in (None, ""):
          raise flags.Error(f"--{name} is required")
    except (flags.Error, AttributeError, KeyError) as e:
      fail(_unknown_override(argv) or _one_line(e), status=2)
    except Exception as e:  # pylint: disable=broad-except  (a config file that fails to load)
      fail(f"--config: {type(e).__name__}: {_one_line(e)}", status=2)
    if len(remaining) > 1:
      fail(f"unexpected arguments {' '.join(remaining[1:])}", status=2)
    return remaining

  return parse


_HELP = ("--help", "-h", "-help", "--helpshort", "--helpfull", "-?")


def print_help(program: str, config: bool) -> None:
  """The script's docstring, its flags and (for scripts that take --config) every config
  field with its default, what it accepts and its help, from the library's schema."""
  main = sys.modules.get("__main__")
  print((getattr(main, "__doc__", None) or "").strip() or os.path.basename(program))
  print("\nflags:")
  for flag in flags.FLAGS.get_key_flags_for_module(main) if main else []:
    print(f"  --{flag.name}: {flag.help}")
  if not config:
    return
  print(f"  --config: {flags.FLAGS[CONFIG.name].help}")
  from waal_jax import settings  # pylint: disable=g-import-not-at-top  (loads JAX)
  print("\nconfig fields: --config.FIELD=VALUE; the schema's defaults (a dataset's config "
        "sets data.name and may set others, e.g. STL-10's model.name)")
  group = None
  for name, option in settings.schema():
    this = name.rpartition(".")[0] or "the run"
    if this != group:
      group = this
      print(f"\n  {group}:")
    print(f"    --config.{name}={option.default!r}  [{option.describe()}]")
    print(f"        {option.help}")


def _one_line(error: Exception) -> str:
  message = str(error)
  if "Traceback" in message:  # config_flags embeds the config file's traceback: keep its end.
    return "--config: " + message.strip().splitlines()[-1]
  parts = [message]
  if error.__cause__ is not None:
    parts.append(str(error.__cause__))
  return " ".join(" ".join(p.split()) for p in parts if p)


def _unknown_override(argv) -> str:
  """'--config.a.b: no such field' for the first override the config lacks, else ''."""
  try:
    config_arg = next(a[len("--config="):] for a in argv if a.startswith("--config="))
    path, _, arg = resolve_config_argument(config_arg).partition(":")
    spec = importlib.util.spec_from_file_location("_config_for_error", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception:  # pylint: disable=broad-except  (then absl's own message will do)
    return ""
  for a in argv:
    if not a.startswith("--config."):
      continue
    field = a[len("--config."):].partition("=")[0]
    node = config
    for part in field.split("."):
      if not hasattr(node, "keys") or part not in node.keys():
        return f"--config.{field}: no such config field"
      node = node[part]
  return ""


def fail(message: str, status: int = 1) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def stoppable(main, kept=None):
  """`main` for absl.app.run, ended by SIGINT (Ctrl-C) or SIGTERM with one line saying
  what was kept (`kept()`, in words, when given) and how to resume, and the
  conventional exit status 128 + the signal (130, 143)."""

  @functools.wraps(main)
  def wrapped(argv):
    from waal_jax import interrupts  # pylint: disable=g-import-not-at-top
    interrupts.stop_on_signals()
    try:
      return main(argv)
    except KeyboardInterrupt as e:
      signum = getattr(e, "signum", signal.SIGINT)
      what = f"kept {kept()}" if kept is not None else "the finished rounds are kept"
      print(f"stopped by {signal.Signals(signum).name}: {what}; rerun the same command to "
            "resume", file=sys.stderr, flush=True)
      sys.exit(128 + signum)

  return wrapped


def start_distributed() -> None:
  """jax.distributed.initialize() for a run over several processes (hosts).

  The coordinator, process count and process index come from the cluster (SLURM,
  Open MPI, TPU pods, ...), or from JAX_COORDINATOR_ADDRESS=host:port plus
  WAAL_NUM_PROCESSES and WAAL_PROCESS_ID when starting the processes by hand.
  """
  import jax  # pylint: disable=g-import-not-at-top
  # Cross-process collectives between CPU devices (GPUs use NCCL whatever this says).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  count, index = os.environ.get("WAAL_NUM_PROCESSES"), os.environ.get("WAAL_PROCESS_ID")
  try:
    jax.distributed.initialize(num_processes=int(count) if count else None,
                               process_id=int(index) if index else None)
  except (ValueError, RuntimeError) as e:
    fail(f"--config.distributed: jax.distributed.initialize() failed: {_one_line(e)}")


def log(message: str) -> None:
  """Progress lines on stderr with the wall-clock time."""
  print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)
