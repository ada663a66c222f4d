"""Do the peers pick what waal_jax picks on the same small inputs? A table.

  python3 experiments/peers/check_agreement.py [--n=3000 --k=100 --strategies=coreset,bald]

Runs in the main environment (waal_jax importable) and calls run_peer.py beside this
file with .venv-peers/bin/python (experiments/peers/install.sh makes it). The inputs,
written as .npy to a temporary folder (--workdir to keep them), are synthetic:
  embeddings (N, 32): a mixture of 50 Gaussians (unit-normal centers, noise 0.4), so
    that ProbCover's purity radius covers a few dozen points per ball (with 10
    well-separated components the labeled set covers every ball, and the query is
    random fill);
  log_probs (N, C): log-softmax of N(0, 2^2) logits; last_layer_input (N, 64): ReLU of
    N(0, 1);
  mc_log_probs (N, T, C): log-softmax of those logits plus N(0, 1) noise per draw;
  labeled: `--labeled` rows drawn at random.
Per strategy: ours = waal_jax.strategies.query(name, k, labeled=..., seed, **its inputs)
(BALD is our "dbal"; ProbCover gets num_classes=C), with default options; the peer =
run_peer.py with the same seed (its picks in its order: for baal's BatchBALD that is
its ranking by score, not the order of its greedy picks). Columns: |set ∩|: picks in
both; same pos: positions i where both picked the same example; prefix: how many first
picks agree in order;
seconds: the peer's query call (run_peer.py's "seconds"), ours for the first call
(compiling included) and a second one. The row "probcover r=R" fixes the radius on both
sides (ours probcover_radius=R, the peer's deltas=[R]), which takes k-means out; the
lines under the table replay both greedy runs (N x N) to say whether each pick held the
most uncovered points at its step and at how many steps that most was tied (the peer
breaks ties at random, ours to the lower index).
With all six strategies at the defaults this takes about 1.5 minutes on 2 cores, most
of it baal's BatchBALD.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER_PYTHON = os.path.join(ROOT, ".venv-peers", "bin", "python")
RUN_PEER = os.path.join(HERE, "run_peer.py")
PEER = {"coreset": "scikit-activeml", "badge": "scikit-activeml",
        "typiclust": "scikit-activeml", "probcover": "scikit-activeml",
        "bald": "baal", "batchbald": "baal"}
OURS = {"bald": "dbal"}   # our names where they differ


def log_softmax(x, axis=-1):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def make_inputs(folder, n, labeled, classes, draws, seed):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(50, 32))
  embeddings = centers[rng.integers(0, 50, n)] + 0.4 * rng.normal(size=(n, 32))
  logits = 2.0 * rng.normal(size=(n, classes))
  arrays = {
      "embeddings": embeddings,
      "log_probs": log_softmax(logits),
      "last_layer_input": np.maximum(rng.normal(size=(n, 64)), 0.0),
      "mc_log_probs": log_softmax(logits[:, None, :] + rng.normal(size=(n, draws, classes))),
  }
  arrays = {key: value.astype(np.float32) for key, value in arrays.items()}
  is_labeled = np.zeros(n, bool)
  is_labeled[rng.choice(n, labeled, replace=False)] = True
  for key, value in arrays.items():
    np.save(os.path.join(folder, key + ".npy"), value)
  np.save(os.path.join(folder, "labeled.npy"), is_labeled)
  return arrays, is_labeled


def run_peer(folder, strategy, k, seed, radius=None):
  out = os.path.join(folder, f"picks_peer_{strategy}{'' if radius is None else '_r'}.npy")
  command = [PEER_PYTHON, RUN_PEER, f"--inputs={folder}", f"--implementation={PEER[strategy]}",
             f"--strategy={strategy}", f"--k={k}", f"--seed={seed}", f"--out={out}"]
  if radius is not None:
    command.append(f"--radius={radius}")
  done = subprocess.run(command, capture_output=True, text=True)
  if done.returncode != 0:
    sys.exit(f"check_agreement: {' '.join(command)} failed: {done.stderr.strip()}")
  result = json.loads(done.stdout)
  return np.load(result["picks_file"]), result["seconds"]


def run_ours(strategy, arrays, is_labeled, k, seed, options=None):
  import waal_jax
  name = OURS.get(strategy, strategy)
  inputs = {key: arrays[key] for key in waal_jax.strategies.get(name).inputs}
  extra = {"num_classes": arrays["log_probs"].shape[1]} if strategy == "probcover" else {}
  seconds = []
  for _ in range(2):
    start = time.perf_counter()
    picks = waal_jax.strategies.query(name, k, labeled=is_labeled, seed=seed,
                                      options=options, **inputs, **extra)
    seconds.append(time.perf_counter() - start)
  return np.asarray(picks), seconds


def greedy_ties(embeddings, is_labeled, radius, picks):
  """Replays a ProbCover query of fixed radius (closed balls, the peer's; N x N, for
  this check only): (picks whose ball held the most uncovered points then, steps where
  more than one candidate held that most)."""
  x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  sq = np.sum(x * x, axis=1)
  edges = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T) <= radius * radius
  covered, candidate = edges[is_labeled].any(axis=0), ~is_labeled.copy()
  at_max = tied = 0
  for pick in picks:
    counts = np.where(candidate, edges[:, ~covered].sum(axis=1), -1)
    at_max += int(counts[pick] == counts.max())
    tied += int(np.sum(counts == counts.max()) > 1)
    covered |= edges[pick]
    candidate[pick] = False
  return at_max, tied


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=3000)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--labeled", type=int, default=100)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--draws", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--strategies", default="coreset,badge,typiclust,probcover,bald,"
                      "batchbald", help="comma-separated")
  parser.add_argument("--probcover-radius", type=float, default=0.6,
                      help="the fixed radius of the extra ProbCover row (0: no such row)")
  parser.add_argument("--workdir", default=None, help="keep the inputs and picks here")
  args = parser.parse_args()
  strategies = args.strategies.split(",")
  unknown = [s for s in strategies if s not in PEER]
  if unknown:
    sys.exit(f"check_agreement: unknown strategies {unknown}; choose from {list(PEER)}")
  if not os.path.exists(PEER_PYTHON):
    sys.exit(f"check_agreement: {PEER_PYTHON} missing: run experiments/peers/install.sh")
  folder = args.workdir or tempfile.mkdtemp(prefix="peers_check_")
  os.makedirs(folder, exist_ok=True)
  try:
    arrays, is_labeled = make_inputs(folder, args.n, args.labeled, args.classes,
                                     args.draws, args.seed)
    rows, notes = [], []
    for strategy in strategies:
      runs = [(strategy, None)]
      if strategy == "probcover" and args.probcover_radius > 0:
        runs.append((f"probcover r={args.probcover_radius:g}", args.probcover_radius))
      for label, radius in runs:
        theirs, peer_seconds = run_peer(folder, strategy, args.k, args.seed, radius)
        options = None if radius is None else {"probcover_radius": radius}
        ours, our_seconds = run_ours(strategy, arrays, is_labeled, args.k, args.seed,
                                     options)
        same = theirs == ours
        prefix = len(same) if same.all() else int(np.argmin(same))
        if radius is not None:
          for name, picks in (("peer", theirs), ("ours", ours)):
            at_max, tied = greedy_ties(arrays["embeddings"], is_labeled, radius, picks)
            notes.append(f"{label}: {name}: {at_max}/{args.k} picks hold the most uncovered "
                         f"points at their step; {tied} steps had a tie for the most")
        rows.append((label, PEER[strategy], len(np.intersect1d(theirs, ours)),
                     int(same.sum()), prefix, peer_seconds, *our_seconds))
        for name, picks in (("peer", theirs), ("ours", ours)):
          if len(np.unique(picks)) != args.k or is_labeled[picks].any():
            print(f"check_agreement: {label}: {name} picks repeat or include labeled rows",
                  file=sys.stderr)
  finally:
    if args.workdir is None:
      shutil.rmtree(folder, ignore_errors=True)
  print(f"N={args.n} k={args.k} labeled={args.labeled} C={args.classes} T={args.draws} "
        f"seed={args.seed}")
  header = ("strategy", "peer", "|set ∩|", "same pos", "prefix", "peer s",
            "ours s (1st)", "ours s (2nd)")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for label, peer, both, position, prefix, peer_s, first, second in rows:
    print(f"| {label} | {peer} | {both}/{args.k} | {position} | {prefix} | {peer_s:.3f} | "
          f"{first:.3f} | {second:.3f} |")
  for note in notes:
    print(note)


if __name__ == "__main__":
  main()
