r"""How much arithmetic DeepFool's query cannot do without, against WAAL's, and how fast
it would have to run on this CPU to take at most 5x WAAL's query.

  python -m experiments.benchmark --config=fashion_mnist --strategies=waal,deepfool \
      --skip=train_step,torch,epoch,evaluation,seeds,processes > /tmp/queries.jsonl
  python -m experiments.lower_bounds --benchmark=/tmp/queries.jsonl

Run both on the same quiet machine: the query seconds and the rate are compared. The
counts are floating-point operations only (no memory traffic, no selection, no host
work), as XLA's cost analysis counts them for the networks with lax.conv kernels (the
direct convolutions' operations):

  waal       per unlabeled example, one forward pass of the extractor and classifier
             and the critic on the features;
  deepfool   per unlabeled example and DeepFool step: a forward pass, K-1 gradients
             of a logit difference with respect to the input (each a backward pass to
             the input, no weight gradients) and the forward pass that tests the new
             point; --deepfool_steps steps per example (1.8 on Fashion-MNIST:
             waal_jax/strategies/deepfool.py);
  rate       the fastest of --repeats float32 products of 2,048 x 2,048 matrices
             (all cores), FLOP/s: the most favourable work XLA does here.

Prints the rate and WAAL's share of it, then per strategy: its operations and their
multiple of WAAL's (the multiple of WAAL's query it would take at WAAL's own rate),
its floor (seconds at the full rate, and that as a multiple of WAAL's query), the
rate it would need for 5x WAAL's query as a share of the full rate, and the
benchmark's measured seconds where it has them.
"""

import json
import time

from absl import app
from absl import flags

from experiments import cli

_BENCHMARK = flags.DEFINE_string(
    "benchmark", None,
    "A benchmark's JSONL (python -m experiments.benchmark) measured on this machine: "
    "its WAAL query record gives the pool and the seconds to compare with.")
_DEEPFOOL_STEPS = flags.DEFINE_float("deepfool_steps", 1.8,
                                     "DeepFool steps per example (measured on the pool).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timings of the rate (the fastest is used).")
CLASSES = 10   # Fashion-MNIST's, the benchmark's dataset


def matmul_rate(repeats: int) -> float:
  """FLOP/s of XLA's float32 product of two 2,048 x 2,048 matrices, the fastest run."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = 2048
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  product = jax.jit(lambda a: a @ a)
  product(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    product(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


def network_flops() -> dict:
  """Per example: FLOP of the forward pass to the logits, of the critic on the
  features, and of one backward pass from a logit cotangent to the input."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from waal_jax import models  # pylint: disable=g-import-not-at-top
  from waal_jax import settings as settings_lib  # pylint: disable=g-import-not-at-top
  nets = models.build(settings_lib.ModelSettings(conv="xla"), CLASSES)
  x = jnp.zeros((1, 28, 28, 1), jnp.float32)
  variables = nets.init(jax.random.key(0), x.shape[1:])
  params, stats = variables["params"], variables.get("batch_stats", {})

  def logits(x):
    z, _ = nets.embed(params, stats, x)
    return nets.logits(params, z)

  def critic(z):
    return nets.critic_value(params["critic"], z)

  def input_gradient(x, cotangent):
    _, vjp = jax.vjp(logits, x)
    return vjp(cotangent)[0]

  def flops(fn, *args):
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
      analysis = analysis[0]
    return float(analysis["flops"])

  z, _ = nets.embed(params, stats, x)
  forward = flops(logits, x)
  return {"forward": forward, "critic": flops(critic, z),
          "backward_to_input": flops(input_gradient, x, jnp.ones((1, CLASSES))) - forward}


def main(argv):
  del argv
  records = {}
  try:
    with open(_BENCHMARK.value) as f:
      for number, line in enumerate(f, 1):
        record = json.loads(line)
        if not isinstance(record, dict):
          cli.fail(f"--benchmark={_BENCHMARK.value}: line {number} is not a benchmark "
                   "record (a JSON object)")
        if record.get("what") == "query":
          for field, kinds, what in (("strategy", str, "name"), ("pool_size", int, "count"),
                                     ("seconds", (int, float), "number")):
            if not isinstance(record.get(field), kinds):
              cli.fail(f"--benchmark={_BENCHMARK.value}: line {number}: a query record "
                       f"without {field!r} (a {what})")
          records[record["strategy"]] = record
  except OSError as e:
    cli.fail(f"--benchmark={_BENCHMARK.value}: {e.strerror}")
  except json.JSONDecodeError as e:
    cli.fail(f"--benchmark={_BENCHMARK.value}: line {number} is not JSON ({e.msg})")
  if "waal" not in records:
    cli.fail(f"--benchmark={_BENCHMARK.value}: has no query record of waal")
  from waal_jax import provenance  # pylint: disable=g-import-not-at-top
  here = provenance.cpu_model()
  if records["waal"].get("cpu_model") not in (None, here):
    cli.fail(f"--benchmark={_BENCHMARK.value}: measured on {records['waal']['cpu_model']!r}, "
             f"this machine is {here!r}: the rate must be measured on the same CPU kind")
  from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
  xla_tuning.tune_cpu_flags()
  rate = matmul_rate(_REPEATS.value)
  net = network_flops()
  n = records["waal"]["pool_size"]                   # unlabeled examples
  waal_seconds = records["waal"]["seconds"]
  operations = {
      "waal": n * (net["forward"] + net["critic"]),
      "deepfool": n * _DEEPFOOL_STEPS.value * (
          2 * net["forward"] + (CLASSES - 1) * net["backward_to_input"]),
  }
  print(json.dumps({"what": "rate", "flop_per_second": rate, "cpu_model": here,
                    "waal_share_of_rate": round(operations["waal"] / waal_seconds / rate, 3),
                    "network_flops_per_example": net}))
  for name, count in operations.items():
    floor = count / rate
    record = {"what": "floor", "strategy": name, "pool_size": n, "operations": count,
              "operations_x_waal": round(count / operations["waal"], 2),
              "floor_seconds": round(floor, 3),
              "floor_x_waal": round(floor / waal_seconds, 2),
              "share_of_rate_for_5x_waal": round(count / (5 * waal_seconds) / rate, 3)}
    if name in records:
      record["measured_seconds"] = round(records[name]["seconds"], 3)
      record["measured_x_waal"] = round(records[name]["seconds"] / waal_seconds, 2)
    print(json.dumps(record))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.make_flags_parser("benchmark", config=False))
