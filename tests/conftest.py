"""Shared helpers: the repository root, real Fashion-MNIST, running the driver."""

import os
import subprocess
import sys

import pytest

from waal_jax import data as data_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
