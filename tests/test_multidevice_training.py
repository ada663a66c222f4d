"""Data-parallel training: 4 (simulated) CPU devices compute what 1 device computes.

Each device count needs its own process: XLA reads the device count at start-up.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, TINY, with_device_count, write_synthetic_fashion_mnist

STEP_SCRIPT = textwrap.dedent("""
    import sys
    import jax, numpy as np
    from experiments.configs import fashion_mnist
    from waal_jax import data, models, settings, sharding, train
    devices, preset, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    assert jax.device_count() == devices
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (512, 28, 28, 1)).astype(np.uint8)
    labels = rng.integers(0, 10, 512).astype(np.int32)
    splits = data.Splits(data.get_spec("fashion_mnist"), images, labels, images[:64],
                         labels[:64], images[:64], labels[:64], "synthetic")
    config = fashion_mnist.get_config(preset)
    config.train.epochs, config.train.batch_size, config.train.eval_batch_size = 1, 32, 64
    config.train.learning_rate, config.train.mu = 0.05, 0.5
    resolved = settings.resolve(config)
    nets = models.build(resolved.model, 10)
    mesh = sharding.make_mesh()
    trainer = train.Trainer(nets, resolved.train, splits.spec, mesh, 512, 128)
    device_data = trainer.device_data(splits, sharding.pool_blocks(mesh, images, 32))
    inputs = trainer.round_inputs(np.arange(100), 28)
    plan = trainer.epoch_plan(jax.random.key(1), inputs)
    state = trainer.init_state(jax.random.key(0))
    state, sums = trainer.train_epoch(state, device_data, plan, inputs.weights,
                                      jax.random.key(2), 3)
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.params))
    # Data parallel, not replicated work: the compiled step sums gradients over devices.
    step_hlo = trainer.step_fn.lower(state, device_data.pool_images, device_data.pool_labels,
                                     plan, np.int32(0), sharding.replicate(mesh, inputs.weights),
                                     sums, jax.random.key(2)).compile().as_text()
    np.savez(out, **{jax.tree_util.keystr(k): v for k, v in leaves},
             loss=np.asarray(sums["loss"]), devices=len(state.step.sharding.device_set),
             all_reduce=("all-reduce" in step_hlo))
""")


def _run(script, devices, *args, timeout=900):
  env = with_device_count(os.environ, devices)
  done = subprocess.run([sys.executable, "-c", script, str(devices), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_training_steps_on_4_devices_equal_1_device(tmp_path, preset):
  """Both presets: joint and separate domain batches (with batch statistics), shared and
  recomputed critic features, the extractor's channel dropout."""
  one, four = str(tmp_path / "one.npz"), str(tmp_path / "four.npz")
  _run(STEP_SCRIPT, 1, preset, one)
  _run(STEP_SCRIPT, 4, preset, four)
  a, b = np.load(one), np.load(four)
  assert int(a["devices"]) == 1 and int(b["devices"]) == 4
  assert not a["all_reduce"] and b["all_reduce"]
  assert set(a.files) == set(b.files) and len(a.files) > 10
  for name in set(a.files) - {"devices", "all_reduce"}:
    np.testing.assert_allclose(a[name], b[name], rtol=2e-5, atol=2e-6, err_msg=name)


def _start_main(workdir, devices, args, **env):
  env = dict(with_device_count(os.environ, devices), **env)
  return subprocess.Popen([sys.executable, "-m", "experiments.main", "--config=fashion_mnist",
                           f"--workdir={workdir}", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process):
  _, err = process.communicate(timeout=900)
  assert process.returncode == 0, err[-3000:]
  return err


def test_a_tiny_round_is_the_same_on_1_device_and_on_2_hosts_of_2_devices(tmp_path):
  """One tiny round through the driver on 1 device, and with --config.distributed=True
  over 2 processes (hosts) of 2 CPU devices each: a 4-device mesh across processes. (One
  process with 4 devices runs the same programs: the training step above, every query
  in test_multidevice.py.)"""
  cache = write_synthetic_fashion_mnist(str(tmp_path / "cache"))
  args = [f"--config.data.cache_dir={cache}", *TINY, "--config.al.rounds=1",
          "--config.query.batch_size=32"]
  single = _start_main(tmp_path / "d1", 1, args)
  hosts = [_start_main(tmp_path / "hosts", 2, [*args, "--config.distributed=True"],
                       JAX_COORDINATOR_ADDRESS="localhost:12391", WAAL_NUM_PROCESSES="2",
                       WAAL_PROCESS_ID=str(i)) for i in (0, 1)]
  _finish(single)
  logs = [_finish(p) for p in hosts]
  assert "done: seed 0: test accuracy" in logs[0] and "done:" not in logs[1]
  results = {}
  for name in ("d1", "hosts"):
    with open(tmp_path / name / "results.json") as f:
      results[name] = json.load(f)
  assert [results[n]["device"] for n in ("d1", "hosts")] == ["cpu", "4x cpu"]
  for name in ("d1", "hosts"):
    assert [r["num_labeled"] for r in results[name]["rounds"]] == [40, 60], name
  for a, b in zip(results["d1"]["rounds"], results["hosts"]["rounds"]):
    assert a["queried_indices"] == b["queried_indices"]
    assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=0.002)
