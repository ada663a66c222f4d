r"""How each strategy's query grows with the pool: time and peak memory at N examples.

  python -m experiments.scaling --kinds=embeddings,images \
      --sizes=40000,160000,640000,2560000 --strategies=all \
      --out=results/scaling/scaling.jsonl [--time_limit=1800] [--memory_limit_gib=20]
  python -m experiments.scaling --plot --out=results/scaling/scaling.jsonl

Two kinds of pool, both from Fashion-MNIST's 60,000 training images (the Debian package
`dataset-fashion-mnist`), repeated to N with small perturbations, so that large pools
are full of near-duplicates as real ones are:
  embeddings  128-d float vectors: the images' first 128 principal components (scaled
              to unit variance), each copy after the first plus Gaussian noise of 0.05
              per dimension; the network is an MLP (128 -> 128 hidden) with the default
              heads, as `waal_jax.MLPExtractor` serves vectors.
  images      28x28 uint8: each copy after the first with every pixel moved by an
              integer in -2..2 (clipped); the network is LeNet-5.
The network is trained once per kind (WAAL, 2 epochs, 1,000 labels of the first 60,000
examples) and cached; every size queries with it. The first 1,000 examples of a fixed
permutation of the pool are labeled; each query takes --query_size (1,000).

Every record runs in its own process, so its peak memory is its own, stopped at
--time_limit seconds or --memory_limit_gib of resident memory (the record then says
why). Times are of one query after a warm-up query (compilation), or of the first when
that took over --warm_up_limit seconds ("warm": false). Three series per strategy:
  waal_jax, inputs "pool"      the strategy's query from the pool on the devices,
                               through the network (what a run's round costs);
  waal_jax, inputs "arrays"    `waal_jax.strategies.query` on the model outputs the
                               strategy reads, computed once by the same network and
                               written to --scratch_dir;
  the peer, inputs "arrays"    scikit-activeml's Core-set, BADGE, TypiClust and
                               ProbCover, baal's BALD (our dbal) and BatchBALD on the
                               same files (experiments/peers/run_peer.py, in the
                               peers' own environment: sh experiments/peers/install.sh),
                               with "picks_in_both" (of the query) and
                               "same_first_picks" (how many of the first picks agree in
                               order) against ours.
The JSONL records hold `implementation`, `inputs`, `kind`, `strategy`, `pool_size`,
`query_size`, `seconds`, `peak_host_bytes` (the process's peak resident memory during
the timed query: Linux VmHWM after resetting it; for the peers, their process's
ru_maxrss, imports and loaded arrays included), `baseline_host_bytes` (resident before
the query: the pool or the arrays, and the network), `peak_device_bytes`
(accelerators), or `reason` where it did not finish, the machine (`cpu_model`,
`device`) and the code (`commit`, "-dirty" with uncommitted changes to it). A rerun skips the records already in --out, so the command resumes; a
series that did not finish at some N is not tried at larger N.

--plot reads --out and writes, beside it, a log-log plot of seconds against N per kind
(plot_<kind>.png: ours from the pool; ours and the peers on the same arrays), fit.json
(per series the exponent b of seconds = a N^b, least squares on log-log over the sizes
that finished) and summary.md (the tables: seconds, exponents, peak memory, where a
series stopped, the peers' time over ours and the picks both made).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags
import numpy as np

from experiments import cli
from experiments.scaling_parts import (BASE_COUNT, SEED, fit_exponent, labeled_mask, make_pool,
                                        watch)

_KINDS = flags.DEFINE_list("kinds", ["embeddings", "images"], "Pools: embeddings, images.")
_SIZES = flags.DEFINE_list("sizes", ["40000", "160000", "640000", "2560000"],
                           "Pool sizes N.")
_STRATEGIES = flags.DEFINE_list("strategies", ["all"], "Strategies, or 'all'.")
_QUERY_SIZE = flags.DEFINE_integer("query_size", 1000, "Examples per query.")
_LABELED = flags.DEFINE_integer("labeled", 1000, "Labeled examples in every pool.")
_OUT = flags.DEFINE_string("out", "results/scaling/scaling.jsonl", "The JSONL of records "
                           "(appended to; records already there are not rerun).")
_TIME_LIMIT = flags.DEFINE_float("time_limit", 1800.0, "Seconds a query may take (its "
                                 "process's whole life: pool, network, warm-up, query).")
_MEMORY_LIMIT = flags.DEFINE_float("memory_limit_gib", 20.0, "Resident memory a process "
                                   "may hold.")
_WARM_UP_LIMIT = flags.DEFINE_float("warm_up_limit", 60.0, "A first query slower than this "
                                    "is the timing itself (no second query).")
_CACHE = flags.DEFINE_string("cache_dir", "", "Trained networks and principal components "
                             "(default: ~/.cache/waal_jax/scaling).")
_PEERS = flags.DEFINE_bool("peers", True, "Also run the peers' strategies (scikit-activeml, "
                           "baal; installed by experiments/peers/install.sh into "
                           ".venv-peers) and ours on the same arrays.")
_SCRATCH = flags.DEFINE_string("scratch_dir", "/tmp/waal_scaling", "Where the arrays given "
                               "to the peers are written (deleted after each size).")
_PLOT = flags.DEFINE_bool("plot", False, "Plot --out and fit the exponents; run nothing.")
# One record's process (the orchestrator starts these).
_CHILD = flags.DEFINE_string("child", "", "Internal: kind,strategy,size of one record.")
_CHILD_MODE = flags.DEFINE_enum("child_mode", "pool", ["pool", "dump", "arrays"],
                                "Internal: pool (from the pool through the network), dump "
                                "(write the strategy's inputs), arrays (query the dump).")

# Our strategy -> (peer library, its name for it in experiments/peers/run_peer.py).
PEERS = {"coreset": ("scikit-activeml", "coreset"), "badge": ("scikit-activeml", "badge"),
         "typiclust": ("scikit-activeml", "typiclust"),
         "probcover": ("scikit-activeml", "probcover"),
         "dbal": ("baal", "bald"), "batchbald": ("baal", "batchbald")}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PYTHON = os.path.join(ROOT, ".venv-peers", "bin", "python")
def cache_dir() -> str:
  if _CACHE.value:
    return _CACHE.value
  from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return os.path.join(data_lib.default_cache_dir(), "scaling")


def code_version() -> str:
  """The commit measured, e.g. 'f2d9a13', with '-dirty' if the code (waal_jax/,
  experiments/) differs from it; the results this run appends to do not count."""
  def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)
  commit = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
  changed = git("diff", "--quiet", "HEAD", "--", "waal_jax", "experiments").returncode
  return commit + ("-dirty" if changed else "")


def cpu_model() -> str:
  from waal_jax import provenance  # pylint: disable=g-import-not-at-top
  return provenance.cpu_model() or "unknown"


# --- The pools ----------------------------------------------------------------------


def build_model(kind: str):
  import waal_jax  # pylint: disable=g-import-not-at-top
  from waal_jax import models  # pylint: disable=g-import-not-at-top
  from waal_jax import settings as settings_lib  # pylint: disable=g-import-not-at-top
  if kind == "images":
    return models.build(settings_lib.ModelSettings(), 10)
  return waal_jax.Model(waal_jax.MLPExtractor(hidden=(128,)), num_classes=10)


def trained_network(kind: str, log):
  """(variables, mean, std): the network every size of `kind` queries with, trained on
  the first BASE_COUNT examples (cached as msgpack with its normalisation)."""
  import flax.serialization  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import waal_jax  # pylint: disable=g-import-not-at-top
  path = os.path.join(cache_dir(), f"network_{kind}.msgpack")
  if not os.path.exists(path):
    model = build_model(kind)
    pool, labels = make_pool(kind, BASE_COUNT, cache_dir())
    mask = labeled_mask(BASE_COUNT, _LABELED.value)
    known = np.where(mask, labels, -1)
    learner = waal_jax.ActiveLearner(model, pool, labels=known, strategy="waal",
                                     query_size=_QUERY_SIZE.value, seed=SEED,
                                     train=waal_jax.TrainSettings(epochs=2), log=log)
    learner.fit()
    spec = learner.spec
    state = {"variables": jax.device_get(learner.variables), "mean": np.asarray(spec.mean),
             "std": np.asarray(spec.std)}
    os.makedirs(cache_dir(), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
      f.write(flax.serialization.msgpack_serialize(state))
    os.replace(path + ".tmp", path)
  with open(path, "rb") as f:
    state = flax.serialization.msgpack_restore(f.read())
  return state["variables"], tuple(state["mean"].tolist()), tuple(state["std"].tolist())


# --- One record (a process of its own) ---------------------------------------------------


def _status_bytes(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  return 0


def _reset_peak() -> None:
  """Resets VmHWM to the current resident memory (Linux >= 4.0)."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def _timed(select):
  """(record, picks) of select() -> picks: a warm-up call (compilation) and the timed
  one, or the first alone past --warm_up_limit; peak resident memory during the timed
  call."""
  baseline = _status_bytes("VmRSS")
  _reset_peak()
  start = time.perf_counter()
  picks = np.asarray(select())
  seconds = time.perf_counter() - start
  warm = seconds <= _WARM_UP_LIMIT.value
  if warm:
    baseline = _status_bytes("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    again = np.asarray(select())
    seconds = time.perf_counter() - start
    if not np.array_equal(again, picks):
      raise RuntimeError("two queries with one key picked differently")
  record = {"seconds": seconds, "warm": warm, "peak_host_bytes": _status_bytes("VmHWM"),
            "baseline_host_bytes": baseline, "picks_head": [int(p) for p in picks[:10]]}
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    record["peak_device_bytes"] = stats["peak_bytes_in_use"]
  return record, picks


def inputs_dir(kind: str, strategy_name: str, size: int) -> str:
  return os.path.join(_SCRATCH.value, f"{kind}_{size}_{strategy_name}")


def run_child(kind: str, strategy_name: str, size: int, mode: str) -> dict:
  """One record's work in this process. pool: times the strategy's `checked_select`
  from the pool on the devices to the picks, network passes included. dump: writes the
  model outputs the strategy reads (as it computes them) for the peers. arrays: times
  `waal_jax.strategies.query` on the dumped outputs, as a user with their own outputs
  calls it."""
  import jax  # pylint: disable=g-import-not-at-top
  from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from waal_jax import settings as settings_lib  # pylint: disable=g-import-not-at-top
  from waal_jax import sharding  # pylint: disable=g-import-not-at-top
  from waal_jax import strategies  # pylint: disable=g-import-not-at-top
  is_labeled = labeled_mask(size, _LABELED.value)
  key = jax.random.key(SEED)
  folder = inputs_dir(kind, strategy_name, size)
  if mode == "arrays":
    arrays = {name: np.load(os.path.join(folder, f"{name}.npy"))
              for name in strategies.get(strategy_name).inputs}
    record, picks = _timed(lambda: strategies.query(
        strategy_name, _QUERY_SIZE.value, labeled=is_labeled, seed=SEED, num_classes=10,
        **arrays))
    np.save(os.path.join(folder, "picks_waal_jax.npy"), picks)
    return record
  variables, mean, std = trained_network(kind, log=lambda _: None)
  pool_x, _ = make_pool(kind, size, cache_dir())
  mesh = sharding.make_mesh()
  spec = data_lib.DatasetSpec("arrays", pool_x.shape[1:], 10, mean, std)
  query = settings_lib.QuerySettings.of(strategy_name)
  strategy = strategies.create(build_model(kind), spec, query, mesh)
  pool = strategies.scoring_pool(mesh, pool_x, query.batch_size)
  del pool_x
  variables = sharding.replicate(mesh, variables)
  if mode == "pool":
    record, _ = _timed(lambda: strategy.checked_select(key, variables, pool, is_labeled,
                                                       _QUERY_SIZE.value))
    return record
  if strategy_name == "batchbald":   # one set of dropout masks for the whole pool
    outputs = {"mc_log_probs": strategy.mc_log_probs(variables, pool,
                                                     jax.random.split(key)[0])}
  else:
    outputs = strategies.PoolScorer(strategy.batch_outputs, spec, mesh,
                                    query.batch_size)(variables, pool, key)
  os.makedirs(folder, exist_ok=True)
  np.save(os.path.join(folder, "labeled.npy"), is_labeled)
  for name, values in outputs.items():
    np.save(os.path.join(folder, f"{name}.npy"), np.asarray(sharding.to_host(values))[:size])
  return {"dumped": sorted(outputs)}


# --- The orchestrator ----------------------------------------------------------------------


def run_process(args) -> dict:
  """Runs a record's process under the time and memory limits: its last stdout line
  (JSON), or {"reason": why it did not finish}."""
  process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT)
  output = {}
  readers = [threading.Thread(target=lambda n=n, s=s: output.__setitem__(n, s.read()))
             for n, s in (("out", process.stdout), ("err", process.stderr))]
  for reader in readers:
    reader.start()
  reason = watch(process, _TIME_LIMIT.value, _MEMORY_LIMIT.value * 2**30)
  for reader in readers:
    reader.join()
  if reason:
    return {"reason": reason}
  if process.returncode != 0:
    last = (output.get("err") or "").strip().splitlines()[-1:] or ["no output"]
    return {"reason": f"failed (exit {process.returncode}): {last[0][:300]}"}
  return json.loads(output["out"].strip().splitlines()[-1])


def run_record(kind: str, strategy_name: str, size: int, mode: str = "pool") -> dict:
  args = [sys.executable, "-m", "experiments.scaling", f"--child={kind},{strategy_name},{size}",
          f"--child_mode={mode}", f"--query_size={_QUERY_SIZE.value}",
          f"--labeled={_LABELED.value}", f"--warm_up_limit={_WARM_UP_LIMIT.value}",
          f"--scratch_dir={_SCRATCH.value}"]
  if _CACHE.value:
    args.append(f"--cache_dir={_CACHE.value}")
  return run_process(args)


def run_peer(kind: str, strategy_name: str, size: int) -> dict:
  """The peer's query on the dumped arrays, and how many of its picks ours share."""
  library, peer_name = PEERS[strategy_name]
  folder = inputs_dir(kind, strategy_name, size)
  picks_file = os.path.join(folder, "picks_peer.npy")
  result = run_process([PEER_PYTHON, os.path.join(ROOT, "experiments", "peers", "run_peer.py"),
                        f"--inputs={folder}", f"--implementation={library}",
                        f"--strategy={peer_name}", f"--k={_QUERY_SIZE.value}",
                        f"--seed={SEED}", "--num-classes=10", f"--out={picks_file}"])
  if "reason" in result:
    return result
  record = {"seconds": result["seconds"], "peak_host_bytes": result["peak_rss_bytes"]}
  ours = os.path.join(folder, "picks_waal_jax.npy")
  if os.path.exists(ours):
    theirs, mine = np.load(picks_file), np.load(ours)
    record["picks_in_both"] = len(set(theirs.tolist()) & set(mine.tolist()))
    record["same_first_picks"] = int(np.argmax(np.append(theirs != mine, True)))
  return record


def read_records(path: str) -> list:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def record_key(record: dict):
  return (record["kind"], record["implementation"], record.get("inputs", "pool"),
          record["strategy"], record["pool_size"])


def main(argv):
  del argv
  if _CHILD.value:
    from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
    xla_tuning.tune_cpu_flags()
    kind, strategy_name, size = _CHILD.value.split(",")
    print(json.dumps(run_child(kind, strategy_name, int(size), _CHILD_MODE.value)),
          flush=True)
    return
  if _PLOT.value:
    plot(_OUT.value)
    return
  from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
  xla_tuning.tune_cpu_flags()
  import jax  # pylint: disable=g-import-not-at-top
  from waal_jax import sharding  # pylint: disable=g-import-not-at-top
  from waal_jax import strategies  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  names = strategies.names() if _STRATEGIES.value == ["all"] else _STRATEGIES.value
  for name in names:
    if name not in strategies.names():
      cli.fail(f"--strategies: unknown strategy {name!r}; choose from "
               f"{', '.join(strategies.names())}")
  for kind in _KINDS.value:
    if kind not in ("embeddings", "images"):
      cli.fail(f"--kinds: unknown kind {kind!r}; choose embeddings or images")
  try:
    sizes = sorted(int(s) for s in _SIZES.value)
  except ValueError:
    cli.fail(f"--sizes: expected integers, got {','.join(_SIZES.value)}")
  if sizes[0] <= _LABELED.value + _QUERY_SIZE.value:
    cli.fail(f"--sizes: {sizes[0]} leaves too few unlabeled examples for a query of "
             f"{_QUERY_SIZE.value}")
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  done = {record_key(r): r for r in read_records(_OUT.value)}
  common = {"query_size": _QUERY_SIZE.value, "labeled": _LABELED.value,
            "cpu_model": cpu_model(), "cores": len(os.sched_getaffinity(0)),
            "device": sharding.describe_devices(), "jax": jax.__version__,
            "commit": code_version()}
  peers = _PEERS.value and os.path.exists(PEER_PYTHON)
  if _PEERS.value and not peers:
    cli.log(f"no {PEER_PYTHON}: the peers are skipped (sh experiments/peers/install.sh)")

  def measure(kind, implementation, inputs, name, size, work):
    """Runs `work` unless its record is in --out, or the same series did not finish at
    a smaller size; appends the record."""
    key = (kind, implementation, inputs, name, size)
    if key in done:
      return done[key]
    smaller = [done.get((kind, implementation, inputs, name, s)) for s in sizes if s < size]
    failed = next((r for r in smaller if r and "reason" in r), None)
    if failed:
      result = {"reason": f"not tried: did not finish at N={failed['pool_size']}"}
    else:
      cli.log(f"{kind} {implementation} ({inputs}) {name} N={size}")
      result = work()
    record = {"implementation": implementation, "inputs": inputs, "kind": kind,
              "strategy": name, "pool_size": size, **result, **common}
    cli.log(f"  {record['seconds']:.2f} s" if "seconds" in record else f"  {record['reason']}")
    with open(_OUT.value, "a") as f:
      f.write(json.dumps(record) + "\n")
    done[key] = record
    return record

  for kind in _KINDS.value:
    cli.log(f"{kind}: the network (trained once, then cached in {cache_dir()})")
    try:
      trained_network(kind, log=cli.log)
    except UserError as e:     # no Fashion-MNIST here, as a rule
      cli.fail(str(e))
    for size in sizes:
      for name in names:
        measure(kind, "waal_jax", "pool", name, size,
                lambda: run_record(kind, name, size))
        if not peers or name not in PEERS:
          continue
        library = PEERS[name][0]
        if all((kind, impl, "arrays", name, size) in done for impl in ("waal_jax", library)):
          continue
        dumped = run_record(kind, name, size, mode="dump")
        if "reason" in dumped:
          cli.log(f"  the inputs of {name} at N={size} were not written: {dumped['reason']}")
          continue
        measure(kind, "waal_jax", "arrays", name, size,
                lambda: run_record(kind, name, size, mode="arrays"))
        measure(kind, library, "arrays", name, size, lambda: run_peer(kind, name, size))
        shutil.rmtree(inputs_dir(kind, name, size), ignore_errors=True)


# --- The plot ----------------------------------------------------------------------------


def _series(records, kind, implementation, inputs, strategy):
  mine = [r for r in records if r["kind"] == kind and r["strategy"] == strategy
          and r["implementation"] == implementation and r.get("inputs", "pool") == inputs]
  finished = sorted((r for r in mine if "seconds" in r), key=lambda r: r["pool_size"])
  return finished, [r for r in mine if "reason" in r]


def _gib(count) -> str:
  return f"{count / 2**30:.2f}"


def _seconds(value) -> str:
  return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _commits_line(records, kind: str) -> str:
  """Which code measured the records of `kind`, per series kind."""
  parts = []
  for label, pool in (("from the pool", True), ("on arrays, ours and the peers'", False)):
    commits = sorted({r.get("commit", "before commits were recorded") for r in records
                      if r["kind"] == kind and (r.get("inputs", "pool") == "pool") == pool})
    if commits:
      parts.append(f"{label}: {', '.join(commits)}")
  return "Code measured (commit): " + "; ".join(parts) + "."


def summary_tables(records, fits) -> str:
  """summary.md: per kind, our strategies from the pool (seconds at each N, exponent,
  peak memory, where they stopped), and the peers beside ours on the same arrays."""
  lines = []
  for kind in sorted({r["kind"] for r in records}):
    machine = next(r for r in records if r["kind"] == kind)
    sizes = sorted({r["pool_size"] for r in records if r["kind"] == kind})
    head = " | ".join(f"N={n:,}" for n in sizes)
    lines += [f"## {kind}", "",
              f"Query of {machine['query_size']:,} with {machine['labeled']:,} labeled; "
              f"{machine['cpu_model']} ({machine['cores']} cores), {machine['device']}, "
              f"jax {machine['jax']}. Seconds of one query; b: the fitted exponent of "
              "seconds = a N^b; peak: resident GiB during the query at the largest N it "
              "finished.", "", _commits_line(records, kind), "",
              f"| strategy (waal_jax, from the pool) | {head} | b | peak | did not finish |",
              "| --- | " + " | ".join("---" for _ in sizes) + " | --- | --- | --- |"]
    fit_of = {(f["kind"], f["implementation"], f["inputs"], f["strategy"]): f for f in fits}
    for strategy in sorted({r["strategy"] for r in records if r["kind"] == kind}):
      finished, unfinished = _series(records, kind, "waal_jax", "pool", strategy)
      if not finished and not unfinished:
        continue
      by_size = {r["pool_size"]: r for r in finished}
      cells = [_seconds(by_size[n]["seconds"]) if n in by_size else "-" for n in sizes]
      exponent = fit_of[(kind, "waal_jax", "pool", strategy)]["exponent"]
      stops = "; ".join(f"N={r['pool_size']:,}: {r['reason']}" for r in unfinished)
      lines.append(f"| {strategy} | {' | '.join(cells)} | "
                   f"{'-' if exponent is None else f'{exponent:.2f}'} | "
                   f"{_gib(finished[-1]['peak_host_bytes']) if finished else '-'} | "
                   f"{stops or '-'} |")
    peers = sorted({(r["strategy"], r["implementation"]) for r in records
                    if r["kind"] == kind and r["implementation"] != "waal_jax"})
    if peers:
      lines += ["", "The peers on the same arrays (the model outputs each strategy reads, "
                "computed once by our network): their seconds / ours (`waal_jax."
                "strategies.query` on the same files), and of the query's picks how many "
                "both made.", "",
                f"| strategy | peer | {head} | largest N the peer finished |",
                "| --- | --- | " + " | ".join("---" for _ in sizes) + " | --- |"]
      for strategy, peer in peers:
        theirs, stopped = _series(records, kind, peer, "arrays", strategy)
        ours, _ = _series(records, kind, "waal_jax", "arrays", strategy)
        ours = {r["pool_size"]: r for r in ours}
        cells = []
        for n in sizes:
          record = next((r for r in theirs if r["pool_size"] == n), None)
          stop = next((r for r in stopped if r["pool_size"] == n), None)
          if record and n in ours:
            cells.append(f"{_seconds(record['seconds'])} s / {_seconds(ours[n]['seconds'])} s "
                         f"= {record['seconds'] / ours[n]['seconds']:.1f}x, "
                         f"{record.get('picks_in_both', '-')} in both")
          else:
            cells.append(stop["reason"] if stop else "-")
        largest = f"{theirs[-1]['pool_size']:,}" if theirs else "none"
        lines.append(f"| {strategy} | {peer} | {' | '.join(cells)} | {largest} |")
    lines.append("")
  return "\n".join(lines)


def plot(path: str) -> None:
  """plot_<kind>.png, fit.json and summary.md beside `path` (see the module docstring)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  records = read_records(path)
  if not records:
    cli.fail(f"--out: {path} holds no records")
  fits = []
  folder = os.path.dirname(os.path.abspath(path))
  for kind in sorted({r["kind"] for r in records}):
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6), sharey=True)
    series = sorted({(r["implementation"], r.get("inputs", "pool"), r["strategy"])
                     for r in records if r["kind"] == kind})
    names = sorted({strategy for _, _, strategy in series})
    colors = {name: plt.get_cmap("tab20")(i % 20) for i, name in enumerate(names)}
    for implementation, inputs, strategy in series:
      rows, unfinished = _series(records, kind, implementation, inputs, strategy)
      exponent = fit_exponent([r["pool_size"] for r in rows], [r["seconds"] for r in rows])
      fits.append({"kind": kind, "implementation": implementation, "inputs": inputs,
                   "strategy": strategy, "exponent": exponent,
                   "sizes": [r["pool_size"] for r in rows],
                   "seconds": [r["seconds"] for r in rows],
                   "did_not_finish": [{"pool_size": r["pool_size"], "reason": r["reason"]}
                                      for r in unfinished]})
      if not rows:
        continue
      label = strategy if inputs == "pool" else f"{strategy} ({implementation})"
      if exponent is not None:
        label += f"  b={exponent:.2f}"
      axes = left if inputs == "pool" else right
      axes.plot([r["pool_size"] for r in rows], [r["seconds"] for r in rows],
                "o-" if implementation == "waal_jax" else "x:", color=colors[strategy],
                label=label)
    machine = next(r for r in records if r["kind"] == kind)
    left.set_title(f"{kind}: waal_jax, from the pool through the network", fontsize=9)
    right.set_title("on the same arrays: waal_jax (o) and the peers (x)", fontsize=9)
    for axes in (left, right):
      axes.set_xscale("log")
      axes.set_yscale("log")
      axes.set_xlabel("pool size N")
      axes.legend(fontsize=7, ncol=2)
      axes.grid(True, which="both", alpha=0.3)
    left.set_ylabel(f"seconds for a query of {machine['query_size']} "
                    f"({machine['cpu_model']}, {machine['device']})")
    figure.tight_layout()
    figure.savefig(os.path.join(folder, f"plot_{kind}.png"), dpi=100)
    plt.close(figure)
  with open(os.path.join(folder, "fit.json"), "w") as f:
    json.dump(fits, f, indent=1)
  with open(os.path.join(folder, "summary.md"), "w") as f:
    f.write("# Query time as the pool grows\n\nMade by `python -m experiments.scaling "
            "--plot` from scaling.jsonl (see README.md for the command that measured it)."
            "\n\n" + summary_tables(records, fits))
  for fit in fits:
    b = "-" if fit["exponent"] is None else f"{fit['exponent']:.2f}"
    stops = "; ".join(f"N={d['pool_size']}: {d['reason']}" for d in fit["did_not_finish"])
    print(f"{fit['kind']:>10} {fit['implementation']:>15} {fit['inputs']:>6} "
          f"{fit['strategy']:>16}  b={b:>5}  {stops}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.make_flags_parser(config=False))
