"""The scaling benchmark's parts: its pools, its limits, its fit
(experiments/scaling_parts.py, which experiments/scaling.py runs)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import needs_fashion_mnist
from experiments import scaling_parts as scaling


def test_the_fitted_exponent_of_a_power_law():
  """seconds = 0.002 N^1.5 at four sizes: b = 1.5; one size gives no fit."""
  sizes = [40000, 160000, 640000, 2560000]
  assert scaling.fit_exponent(sizes, [0.002 * n ** 1.5 for n in sizes]) == pytest.approx(
      1.5, abs=1e-12)
  # Doubling the time at the largest size only: log 2 / (the spread of log N) more.
  times = [0.002 * n ** 1.5 for n in sizes[:3]] + [2 * 0.002 * sizes[3] ** 1.5]
  x = np.log(sizes)
  expected = 1.5 + np.log(2) * (x[3] - x.mean()) / np.sum((x - x.mean()) ** 2)
  assert scaling.fit_exponent(sizes, times) == pytest.approx(expected, rel=1e-12)
  assert scaling.fit_exponent([40000], [1.0]) is None


@needs_fashion_mnist
def test_pools_repeat_fashion_mnist_with_small_perturbations(tmp_path):
  """Copy 0 is the training images as they are; copy 1 moves every pixel by at most 2
  levels (and some by some); a smaller pool is the start of a larger one."""
  images, labels = scaling.base_images()
  pool, pool_labels = scaling.make_pool("images", 130000, str(tmp_path))
  assert pool.shape == (130000, 28, 28, 1) and pool.dtype == np.uint8
  np.testing.assert_array_equal(pool[:60000], images)
  moved = pool[60000:120000].astype(int) - images.astype(int)
  assert np.abs(moved).max() <= 2 and np.mean(moved != 0) > 0.3
  np.testing.assert_array_equal(pool_labels[60000:120000], labels)
  smaller, _ = scaling.make_pool("images", 70000, str(tmp_path))
  np.testing.assert_array_equal(smaller, pool[:70000])
  mask = scaling.labeled_mask(130000, 1000)
  assert mask.sum() == 1000 and not mask[60000:].any()


def test_a_process_past_its_limits_is_stopped_with_the_reason():
  slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  assert scaling.watch(slow, 0.5, 2**40) == "over the time limit of 0.5 s"
  assert slow.returncode is not None
  hungry = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(400 << 20); "
                             "b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"])
  assert scaling.watch(hungry, 60, 200 * 2**20) == (
      "over the memory limit of 0.195 GiB resident")
  assert hungry.returncode is not None
  quick = subprocess.Popen([sys.executable, "-c", "pass"])
  assert scaling.watch(quick, 60, 2**40) == ""


def test_lower_bounds_count_lenet5s_operations_as_by_hand():
  from experiments import lower_bounds
  net = lower_bounds.network_flops()
  # Multiply-adds by hand: conv1 24*24*10*25 = 144,000; conv2 8*8*20*(10*25) = 320,000;
  # the classifier 320*50 + 50*10 = 16,500. Two operations each: 961,000; biases,
  # ReLUs and pools add ~1-2% more.
  assert 961_000 <= net["forward"] <= 961_000 * 1.03
  # The input's gradient: the same products transposed (conv1's kernel gradient is not
  # needed), about one forward pass.
  assert 0.9 * 961_000 <= net["backward_to_input"] <= 1.1 * 961_000
  # The critic on the 320 features: 320*50 + 50*1 = 16,050 multiply-adds.
  assert 2 * 16_050 <= net["critic"] <= 2 * 16_050 * 1.03


@pytest.mark.parametrize("content, says", [
    ('{"what": "query", "strategy": "waal"}\n', "line 1: a query record without 'pool_size'"),
    ('[1, 2]\n', "line 1 is not a benchmark record"),
    ('{"what": "query", "strategy": "margin", "pool_size": 9, "seconds": 1.0}\n',
     "has no query record of waal"),
    ('{"what"\n', "line 1 is not JSON")])
def test_lower_bounds_refuse_a_bad_benchmark_file_in_one_line(tmp_path, content, says):
  path = tmp_path / "bench.jsonl"
  path.write_text(content)
  proc = subprocess.run([sys.executable, "-m", "experiments.lower_bounds",
                         f"--benchmark={path}"], capture_output=True, text=True,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 1
  line, = proc.stderr.strip().splitlines()        # one line, no traceback
  assert line.startswith(f"error: --benchmark={path}: ") and says in line, line
