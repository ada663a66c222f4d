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


def run_module(module, *args, env=None, timeout=600):
  """Runs `python -m module args` from the repository root; returns the CompletedProcess."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cache_dir(tmp_path):
  return str(tmp_path / "cache")
