"""The query gives the same selection on 1 and on 4 (simulated) CPU devices.

Each device count needs its own process: XLA reads the device count at start-up.
"""

import json
import os
import subprocess
import sys
import textwrap

from conftest import ROOT

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from waal_jax import data, models, sharding, strategies
    devices = int(sys.argv[1])
    assert jax.device_count() == devices, jax.devices()
    spec = data.get_spec("fashion_mnist")
    rng = np.random.default_rng(0)
    # Structured images (per-class means plus noise) so scores spread out.
    labels = rng.integers(0, 10, 3000)
    means = rng.integers(0, 256, (10, 28, 28, 1))
    images = np.clip(means[labels] + rng.normal(0, 40, (3000, 28, 28, 1)), 0, 255)
    images = images.astype(np.uint8)
    mesh = sharding.make_mesh()
    nets = models.build("lenet5", num_classes=10, head_hidden=50)
    variables = nets.init(jax.random.key(0), spec.image_shape)
    is_labeled = np.zeros(3000, bool)
    is_labeled[rng.choice(3000, 300, replace=False)] = True
    out = {}
    for name in ("waal", "random"):
      settings = strategies.QuerySettings(name, selection=5.0, mixture=0.5, variant="paper",
                                          batch_size=512)
      strategy = strategies.create(nets, spec, settings, mesh)
      pool = strategies.scoring_pool(mesh, images, 512)
      chosen = strategy.select(jax.random.key(1), variables, pool,
                               sharding.replicate(mesh, is_labeled), 100)
      out[name] = [int(i) for i in chosen]
    # The scoring batches really are split over the devices.
    waal = strategies.create(nets, spec, strategies.QuerySettings(
        "waal", 5.0, 0.5, "paper", 512), mesh)
    out["score_devices"] = len(waal._scorer(variables, pool).sharding.device_set)
    print("RESULT " + json.dumps(out))
""")


def _select(devices):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  done = subprocess.run([sys.executable, "-c", SCRIPT, str(devices)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr
  line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def test_query_selection_is_the_same_on_1_and_4_devices():
  one, four = _select(1), _select(4)
  assert len(set(one["waal"])) == 100
  assert one["waal"] == four["waal"]
  assert one["random"] == four["random"]
  assert one["score_devices"] == 1 and four["score_devices"] == 4
