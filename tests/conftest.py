"""Shared helpers: the repository root, real Fashion-MNIST, running the driver."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

# Many tests compile the same steps (each run builds a fresh trainer, each subprocess
# starts cold): JAX's persistent compilation cache, shared with the subprocesses
# through the environment, compiles each of them once per test session.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="waal_jax_test_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The suite compiles hundreds of small programs and runs each briefly: LLVM's
# optimisation passes cost more time than they save (on the 2-core CI machine the
# suite's CPU time fell 1.3x without them, tests/test_rounds.py's 1.6x). The operations
# are the same, but float rounding can differ in the last bits (the PyTorch parity
# test's adversarial term moved by 1.2e-7); experiments and benchmarks compile at the
# default level.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
      f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip())

# Under pytest-xdist one worker runs per core, so PyTorch's OpenMP threads (one per core
# by default) would compete with the other workers' for the same cores: the torch
# reference's short run took 37 and 72 s in two suites, 6 s alone, and beside a busy
# XLA process 17.6 s with its default threads against 11.7 s with one. Set before the
# tests import torch; the subprocesses they start inherit it (and so does their
# OpenBLAS, which this process may have loaded already).
if os.environ.get("PYTEST_XDIST_WORKER"):
  os.environ.setdefault("OMP_NUM_THREADS", "1")

from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
HAVE_FASHION_MNIST = os.path.exists(
    os.path.join(data_lib.DEBIAN_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))
needs_fashion_mnist = pytest.mark.skipif(
    not HAVE_FASHION_MNIST,
    reason="real Fashion-MNIST needs `apt-get install dataset-fashion-mnist`")

# A run that takes seconds: a few hundred real images, two short rounds.
TINY = ["--config.data.pool_size=400", "--config.data.val_size=200",
        "--config.al.initial_labeled=40", "--config.al.query_size=20", "--config.al.rounds=2",
        "--config.train.epochs=2", "--config.train.batch_size=16",
        "--config.train.eval_batch_size=100", "--config.query.batch_size=128"]


def with_overrides(config, args):
  """`config` with command-line overrides such as TINY's ("--config.al.rounds=2") set,
  values read as Python literals (else as strings), as --config.* flags would set them."""
  import ast  # pylint: disable=g-import-not-at-top
  for arg in args:
    name, _, text = arg[len("--config."):].partition("=")
    try:
      value = {"true": True, "false": False}.get(text.lower(), None)
      value = ast.literal_eval(text) if value is None else value
    except (ValueError, SyntaxError):
      value = text
    *groups, field = name.split(".")
    node = config
    for group in groups:
      node = node[group]
    if field not in node:        # as the command line: a misspelled field is an error
      raise KeyError(f"--config.{name}: no such config field")
    node[field] = value
  return config


def run_in_process(*args):
  """What `python -m experiments.main *args` runs, run in this process: seeds.run_seeds
  on the config those flags make, without a process start. Returns (its log lines as
  one text, the UserError's line or None). The command line's own part (parsing flags,
  the error's line and exit status, signals) is tested through run_module. The
  command turns XLA's YNNPACK fusions off (waal_jax/xla_tuning.py) and this process
  does not (with them off the VGG16 tests take 2.7x as long), so a round trained here
  may differ in its last bits from the command's: compare such rounds with rounds
  trained here."""
  import importlib  # pylint: disable=g-import-not-at-top
  from waal_jax import seeds  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  value = lambda flag: next(a.split("=", 1)[1] for a in args if a.startswith(flag + "="))
  name, _, preset = value("--config").partition(":")
  config = importlib.import_module(f"experiments.configs.{name}").get_config(
      *([preset] if preset else []))
  with_overrides(config, [a for a in args if a.startswith("--config.")])
  lines = []
  try:
    seeds.run_seeds(config, str(value("--workdir")), log=lines.append)
  except UserError as e:
    return "\n".join(lines) + "\n", str(e)
  return "\n".join(lines) + "\n", None


def with_device_count(env: dict, devices: int) -> dict:
  """`env` (e.g. os.environ) with XLA simulating `devices` CPU devices; the XLA_FLAGS
  already set (the suite's optimisation level above) are kept."""
  flags = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
  return dict(env, XLA_FLAGS=flags.strip())


def run_module(module, *args, env=None, timeout=600):
  """Runs `python -m module args` from the repository root; returns the CompletedProcess."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cache_dir(tmp_path):
  return str(tmp_path / "cache")


def make_config(name: str = "fashion_mnist", preset: str = "paper", **fields):
  """A dataset config (experiments/configs) with fields overridden, given as
  group__field=value (e.g. model__name="vgg16")."""
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{name}").get_config(preset)
  for key, value in fields.items():
    group, field = key.split("__")
    config[group][field] = value
  return config


def make_settings(name: str = "fashion_mnist", preset: str = "paper", **fields):
  """The checked settings (waal_jax.settings.Settings) of make_config(...)."""
  from waal_jax import settings  # pylint: disable=g-import-not-at-top
  return settings.resolve(make_config(name, preset, **fields))


def make_nets(name: str = "fashion_mnist", **fields):
  """The networks of make_config(...): models.build on its model settings."""
  from waal_jax import models  # pylint: disable=g-import-not-at-top
  return models.build(make_settings(name, **fields).model, 10)


def write_synthetic_fashion_mnist(cache_dir: str, train: int = 1200, test: int = 300) -> str:
  """A Fashion-MNIST-shaped cache file of synthetic images in `cache_dir` (class means
  plus noise, so a network can learn them), read as `data.name=fashion_mnist` with
  `data.cache_dir=cache_dir`. For the plumbing tests (driver, resume, rounds,
  compilation), which need no real pixels. Returns cache_dir."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  means = rng.integers(0, 256, (10, 28, 28, 1))

  def images(labels):
    noisy = means[labels] + rng.normal(0, 60, (len(labels), 28, 28, 1))
    return np.clip(noisy, 0, 255).astype(np.uint8)

  train_labels = rng.integers(0, 10, train).astype(np.int32)
  test_labels = rng.integers(0, 10, test).astype(np.int32)
  raw = data_lib.RawData(images(train_labels), train_labels, images(test_labels), test_labels,
                         source="synthetic test images")
  data_lib._write_cache(os.path.join(cache_dir, "fashion_mnist.npz"), raw)  # pylint: disable=protected-access
  return cache_dir


def tiny_loop_config(cache_dir: str, **overrides):
  """A Fashion-MNIST config of seconds a round for loop.run on the synthetic images of
  `cache_dir` (write_synthetic_fashion_mnist): a 600-example pool, 60 labels + 30 a
  round, one round of queries, one epoch; overrides as {"group.field": value}."""
  from experiments.configs import fashion_mnist  # pylint: disable=g-import-not-at-top
  config = fashion_mnist.get_config()
  config.data.cache_dir = cache_dir
  config.data.pool_size, config.data.val_size = 600, 200
  config.al.initial_labeled, config.al.query_size, config.al.rounds = 60, 30, 1
  config.train.epochs, config.train.batch_size, config.train.eval_batch_size = 1, 32, 100
  config.query.batch_size, config.query.kmedian_iterations = 128, 3
  config.query.deepfool_iterations = 5
  for field, value in overrides.items():
    group, name = field.split(".")
    config[group][name] = value
  return config


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
  """A data.cache_dir holding synthetic Fashion-MNIST (see write_synthetic_fashion_mnist)."""
  return write_synthetic_fashion_mnist(str(tmp_path_factory.mktemp("synthetic_cache")))
