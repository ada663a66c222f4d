"""Every strategy selects the same examples on 1 and on 4 (simulated) CPU devices.

Each device count needs its own process: XLA reads the device count at start-up.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from conftest import ROOT, with_device_count

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from experiments.configs import fashion_mnist
    from waal_jax import data, models, settings, sharding, strategies
    devices = int(sys.argv[1])
    assert jax.device_count() == devices, jax.devices()
    spec = data.get_spec("fashion_mnist")
    rng = np.random.default_rng(0)
    # Structured images (per-class means plus noise) so scores spread out.
    n = 1000
    labels = rng.integers(0, 10, n)
    means = rng.integers(0, 256, (10, 28, 28, 1))
    images = np.clip(means[labels] + rng.normal(0, 40, (n, 28, 28, 1)), 0, 255)
    images = images.astype(np.uint8)
    mesh = sharding.make_mesh()
    config = fashion_mnist.get_config()
    config.query.batch_size, config.query.chunk_size = 128, 64
    # Small batches, few iterations, classes and configurations: the sharding, not the
    # search, is under test (with all classes and 512 examples per device, DeepFool took
    # half of the 4-device process's time: it steps 2,048 examples at once there).
    config.query.kmedian_iterations, config.query.deepfool_iterations = 4, 2
    config.query.deepfool_classes, config.query.batchbald_configurations = 3, 64
    nets = models.build(settings.resolve(config).model, 10)
    variables = nets.init(jax.random.key(0), spec.image_shape)
    is_labeled = np.zeros(n, bool)
    is_labeled[rng.choice(n, 100, replace=False)] = True
    pool = strategies.scoring_pool(mesh, images, 128)
    out = {}
    queries = {}
    for name in strategies.names():
      config.query.strategy = name
      queries[name] = settings.resolve(config).query
      strategy = strategies.create(nets, spec, queries[name], mesh)
      chosen = strategy.select(jax.random.key(1), variables, pool, is_labeled, 50)
      out[name] = [int(i) for i in chosen]
      if isinstance(strategy, strategies.base.ScoreStrategy):
        scores = strategy.scorer(variables, pool, jax.random.key(1))
        out["scores_" + name] = np.asarray(scores)[:n].tolist()
    # The scoring batches really are split over the devices.
    waal = strategies.create(nets, spec, queries["waal"], mesh)
    out["score_devices"] = len(waal.scorer(variables, pool).sharding.device_set)
    out["labeled"] = [int(i) for i in np.flatnonzero(is_labeled)]
    # The pool is split, not copied: each device holds a quarter of the rows on 4, and
    # rows read from anywhere in it come back whole and exact.
    out["rows_per_device"] = [int(np.prod(s.data.shape[:2])) for s in pool.blocks.addressable_shards]
    wanted = np.array([0, 999, 127, 128, 500, 31, 32, 0], np.int32)
    rows = jax.jit(lambda b, i: sharding.pool_rows(mesh, b, i))(pool.blocks, wanted)
    out["rows_exact"] = bool(np.array_equal(np.asarray(rows), images[wanted]))
    print("RESULT " + json.dumps(out))
""")


def _start(devices):
  env = with_device_count(os.environ, devices)
  return subprocess.Popen([sys.executable, "-c", SCRIPT, str(devices)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(process):
  stdout, stderr = process.communicate(timeout=900)
  assert process.returncode == 0, stderr
  line = [l for l in stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def test_every_strategy_selects_the_same_on_1_and_4_devices():
  # Both runs at once: most of their time is single-threaded compilation.
  runs = [_start(1), _start(4)]
  one, four = [_result(run) for run in runs]
  assert one["score_devices"] == 1 and four["score_devices"] == 4
  # 1,000 examples padded to 8 blocks of 128: 1,024 rows on the one device, 256 on each of 4.
  assert one["rows_per_device"] == [1024] and four["rows_per_device"] == [256] * 4
  assert one["rows_exact"] and four["rows_exact"]
  labeled = set(one["labeled"])
  from waal_jax import strategies  # pylint: disable=g-import-not-at-top
  assert len(strategies.names()) == 13
  for name in strategies.names():
    chosen = one[name]
    assert len(chosen) == 50 and len(set(chosen)) == 50, name
    assert not set(chosen) & labeled, name
    assert all(0 <= i < 1000 for i in chosen), name
    if "scores_" + name not in one:
      assert four[name] == chosen, name
      continue
    # Scores agree to float rounding (the features are computed in other batch shapes);
    # the selections then agree but where two scores are that close to the cut.
    scores_one, scores_four = (np.asarray(r["scores_" + name]) for r in (one, four))
    np.testing.assert_allclose(scores_four, scores_one, rtol=1e-4, atol=1e-6, err_msg=name)
    cut = np.sort(scores_one[~np.isin(np.arange(1000), one["labeled"])])[49]
    swapped = set(four[name]) ^ set(chosen)
    assert all(abs(scores_one[i] - cut) < 1e-5 for i in swapped), (name, swapped)
    assert len(swapped) <= 4, name
