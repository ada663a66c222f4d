"""One query of a peer library's strategy on arrays from a folder; one JSON line out.

Runs in the peers' virtualenv (experiments/peers/install.sh makes .venv-peers/):

  .venv-peers/bin/python experiments/peers/run_peer.py --inputs=DIR \
      --implementation=scikit-activeml|baal \
      --strategy=coreset|badge|typiclust|probcover|bald|batchbald \
      --k=1000 --seed=0 [--out=picks.npy] [--num-classes=C] [--radius=R]

scikit-activeml 1.0.1 runs coreset, badge, typiclust, probcover; baal 2.1.0 runs bald,
batchbald. DIR holds .npy files, one row per pool example in pool order (only those the
strategy reads must exist; labeled.npy always):
  labeled.npy (N,) bool          examples labeled already: never picked
  embeddings.npy (N, D) float32  coreset, typiclust, probcover
  log_probs.npy (N, C) float32   badge (log-softmax of the predictions)
  last_layer_input.npy (N, H)    badge (input of the classifier's last dense layer)
  mc_log_probs.npy (N, T, C)     bald, batchbald (T MC-dropout draws; for batchbald draw t
                                 used one dropout mask for every example)
stdout: one JSON line {"implementation", "strategy", "pool_size", "query_size",
"seconds", "peak_rss_bytes", "picks_file"}; the picks, (k,) int64 pool indices in the
peer's order, go to --out (default DIR/picks_<implementation>_<strategy>.npy). Errors:
one line on stderr, exit status 1.

"seconds" (time.perf_counter) is the peer's query call alone: the call named below per
strategy, with the peer's own input checks and everything it computes inside. Not
included: loading the .npy files, building the peer objects (constructors that only
store settings), and the input preparation listed per strategy (exp of the
log-probabilities, the transpose to baal's axis order, the rows not labeled, the L2
normalisation for ProbCover, the missing-label vector). "peak_rss_bytes" is this
process's ru_maxrss at the end, so it includes the loaded arrays and the imports: only
the requested peer is imported, but scikit-activeml imports torch where it is installed
(as in .venv-peers): ~300 MB after `import skactiveml.pool`, ~330 MB after baal's
heuristics, before any array is loaded.

Will not scale (scikit-activeml 1.0.1, baal 2.1.0 source): every scikit-activeml query
keeps a (k, N) float64 utilities matrix (8 GB at k = 1000, N = 10^6; badge also keeps
k arrays of N float64 in d_2_s, and its (N, C*H) float64 g); ProbCover builds the
N x N float64 distance matrix (pool/_prob_cover.py:200) and N x N bool matrices
(209, 211-212, 228), and each pick sums over the N x N edges (235, 238); baal's
BatchBALD forms an (N, T * num_draw, C) float64 array per pick
(active/heuristics/heuristics.py:434).

What each peer gets, which of its settings are set (all others are its defaults), and
what differs from waal_jax's strategy of the same name:

coreset: skactiveml.pool.CoreSet(random_state=seed).query(X=embeddings, y, batch_size=k),
  y = NaN (skactiveml's MISSING_LABEL) for the unlabeled rows, 0 for the labeled ones
  (their value is never read). Greedy k-center from the labeled set, as ours. Its metric
  stays the default "euclidean" (argmax-equivalent to our squared L2), computed by
  sklearn's pairwise_distances_argmin_min. Differs: exact ties of the farthest distance
  go to a random one (rand_argmax), ours to the lower index.

badge: skactiveml.pool.Badge(clf_embedding_flag_name="return_embeddings",
  random_state=seed).query(X=row index column (N, 1), y, clf, fit_clf=False,
  batch_size=k). clf is a minimal SkactivemlClassifier whose predict_proba(X,
  return_embeddings=True) returns (exp(log_probs)[rows], last_layer_input[rows]) for the
  rows named in X, so the peer forms g = (p - onehot(argmax p)) outer h from our numbers
  (it materialises g, (N, C*H) float64). y: NaN unlabeled, argmax of log_probs for the
  labeled rows (not read: the classifier is not fitted). First pick: the largest ||g||,
  as ours; then D^2 sampling from a numpy RandomState seeded with seed, ours from JAX's key, so
  only the first pick is expected to agree. Labeled rows are not centers on either side.

typiclust: skactiveml.pool.TypiClust(k=20, random_state=seed).query(X=embeddings, y,
  batch_size=k). Set: k=20 neighbours (ours and the paper's; the peer's default is 5).
  Clusters: the peer's own K = #labeled + k (sklearn KMeans(K, random_state=seed), its
  defaults: k-means++, n_init="auto" = 1, up to 300 iterations); ours K = min(#labeled +
  k, 500) (the paper's code caps at 500 too), our own k-means++ start from the JAX key, up
  to 20 iterations. The cap is not imposed on the peer: with fewer clusters than k, once
  its uncovered clusters are used up it sets every typicality to 1 and draws from all
  rows not labeled, picked ones included (pool/_typi_clust.py:180, 190-191), so its
  query repeats examples (k = 600 with 100 labeled at N = 3000, capped: 555 distinct).
  So the two agree in K while #labeled + k <= 500; above it the peer clusters into more
  (slower k-means). Differs also: the clustering itself (another k-means and start);
  the peer visits the uncovered clusters (no labeled point) largest first, ties at
  random; ours the cluster with the fewest labeled-or-picked points, largest first,
  ties to the lower index, and skips clusters of fewer than 5 points. Typicality is the
  same: 1 / mean L2 distance to the min(20, cluster size - 1) nearest points of the
  cluster.

probcover: skactiveml.pool.ProbCover(n_classes=C, random_state=seed).query(X=L2-
  normalised embeddings, y, batch_size=k). Set: n_classes = C (the k-means clusters of
  the purity test; the peer would count the labels of the labeled rows) from
  --num-classes, else from log_probs.npy or mc_log_probs.npy in DIR; the
  normalisation is ours (the peer's radius grid assumes normalised features). alpha =
  0.95 is the peer's default. Differs: the peer takes the largest radius of the grid 0.2,
  0.4, .., 2.0 whose purity >= alpha (ours: the exact largest radius, the (1 - alpha)
  quantile of the distances to another cluster); its k-means is sklearn's KMeans(C,
  random_state=seed); its balls are closed (<=), ours open (<); its ties of coverage go
  to a random candidate, ours to the lower index. --radius=R gives the peer deltas=[R]
  (a fixed radius, no k-means), for a check against ours with probcover_radius=R.

bald: baal.active.heuristics.BALD().get_ranks(p)[0][:k], p = exp(mc_log_probs) of the
  rows not labeled, transposed to baal's (N, C, T). The first k of the ranking, as baal's
  ActiveLearningLoop labels them. Same score as ours (mutual information); ties of the
  score: the peer's reversed argsort, ours the lower index.

batchbald: baal.active.heuristics.BatchBALD(num_samples=k, num_draw=ceil(1024 / T))
  .get_ranks(p)[0][:k], p as for bald, torch.manual_seed(seed) (its configurations are
  drawn by torch.multinomial). Set: num_draw: baal draws num_draw label configurations
  from each of the T draws, T * num_draw in all, so ceil(1024 / T) matches our 1024
  configurations. Differs: baal always samples (ours is exact while C^(n-1) <= 1024);
  its greedy runs num_samples steps after the BALD pick (k + 1 picks) unless the best
  score stays under 0.1 for more than 10 steps, and the ranking baal returns is by each
  pick's score, not in pick order (the first, BALD, pick scores lowest and can fall
  outside the first k); the joint entropy's products of probabilities are not
  renormalised (ours are), so long batches can underflow.

Where the exp of the float32 log-probabilities does not sum to 1 within numpy.allclose
(which baal's to_prob checks, and would otherwise softmax the probabilities a second
time), the rows are divided by their sums.
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

PEERS = {"scikit-activeml": ("coreset", "badge", "typiclust", "probcover"),
         "baal": ("bald", "batchbald")}
NEEDS = {"coreset": ("embeddings",), "badge": ("log_probs", "last_layer_input"),
         "typiclust": ("embeddings",), "probcover": ("embeddings",),
         "bald": ("mc_log_probs",), "batchbald": ("mc_log_probs",)}
NDIM = {"embeddings": 2, "log_probs": 2, "last_layer_input": 2, "mc_log_probs": 3}
TYPICLUST_NEIGHBOURS = 20
BATCHBALD_CONFIGURATIONS = 1024


class InputError(Exception):
  """A problem with the arguments or the input files: one line on stderr, exit 1."""


class Parser(argparse.ArgumentParser):
  """argparse's errors as InputError (one line, exit 1, not argparse's usage and 2)."""

  def error(self, message):
    raise InputError(message)


def load(folder, name, ndim=None):
  path = os.path.join(folder, name + ".npy")
  if not os.path.isfile(path):
    raise InputError(f"{path}: missing")
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise InputError(f"{path}: not a readable .npy array ({e})") from None
  if ndim is not None and (array.ndim != ndim or not np.issubdtype(array.dtype, np.floating)):
    raise InputError(f"{path}: expected floats with {ndim} dimensions, got {array.dtype} "
                     f"of shape {array.shape}")
  return array


def probabilities(log_probs, axis=-1):
  """exp of log-probabilities, rows divided by their sums only where they do not sum to 1
  within numpy.allclose (see the module docstring)."""
  p = np.exp(log_probs)
  if not np.allclose(p.sum(axis), 1.0):
    p /= p.sum(axis, keepdims=True)
  return p


def missing_labels(is_labeled, labels=None):
  """skactiveml's y: MISSING_LABEL (NaN) where not labeled, else labels (default 0)."""
  y = np.full(len(is_labeled), np.nan)
  y[is_labeled] = 0.0 if labels is None else labels[is_labeled]
  return y


def run_skactiveml(strategy, arrays, is_labeled, k, seed, num_classes, radius):
  """(picks, seconds) from scikit-activeml."""
  from skactiveml.base import SkactivemlClassifier
  from skactiveml.pool import Badge, CoreSet, ProbCover, TypiClust

  if strategy == "coreset":
    X, y = arrays["embeddings"], missing_labels(is_labeled)
    qs = CoreSet(random_state=seed)
    call = lambda: qs.query(X=X, y=y, batch_size=k)
  elif strategy == "badge":
    probs = probabilities(arrays["log_probs"])
    hidden = arrays["last_layer_input"]

    class GivenOutputs(SkactivemlClassifier):
      """predict_proba of the rows whose indices X (n, 1) holds: the given probabilities
      and, with return_embeddings=True, the given last-layer inputs. Never fitted."""

      def fit(self, X, y, sample_weight=None):
        return self

      def predict_proba(self, X, return_embeddings=False):
        rows = np.asarray(X)[:, 0].astype(np.int64)
        return (probs[rows], hidden[rows]) if return_embeddings else probs[rows]

    clf = GivenOutputs(classes=np.arange(probs.shape[1]))
    X = np.arange(len(is_labeled), dtype=np.float64)[:, None]
    y = missing_labels(is_labeled, np.argmax(probs, axis=1).astype(np.float64))
    qs = Badge(clf_embedding_flag_name="return_embeddings", random_state=seed)
    call = lambda: qs.query(X=X, y=y, clf=clf, fit_clf=False, batch_size=k)
  elif strategy == "typiclust":
    X, y = arrays["embeddings"], missing_labels(is_labeled)
    qs = TypiClust(k=TYPICLUST_NEIGHBOURS, random_state=seed)
    call = lambda: qs.query(X=X, y=y, batch_size=k)
  elif strategy == "probcover":
    X = arrays["embeddings"]
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    y = missing_labels(is_labeled)
    extra = {} if radius is None else {"deltas": [radius]}
    qs = ProbCover(n_classes=num_classes, random_state=seed, **extra)
    call = lambda: qs.query(X=X, y=y, batch_size=k)
  start = time.perf_counter()
  picks = call()
  return np.asarray(picks), time.perf_counter() - start


def run_baal(strategy, arrays, is_labeled, k, seed):
  """(picks, seconds) from baal, on the rows not labeled."""
  import torch
  from baal.active.heuristics import BALD, BatchBALD

  free = np.flatnonzero(~is_labeled)
  mc = arrays["mc_log_probs"]
  p = np.ascontiguousarray(probabilities(mc[free]).transpose(0, 2, 1))  # (N, C, T)
  draws = mc.shape[1]
  if strategy == "bald":
    heuristic = BALD()
  else:
    heuristic = BatchBALD(num_samples=k,
                          num_draw=-(-BATCHBALD_CONFIGURATIONS // draws))
  torch.manual_seed(seed)
  np.random.seed(seed)
  start = time.perf_counter()
  ranks, _ = heuristic.get_ranks(p)
  seconds = time.perf_counter() - start
  return free[np.asarray(ranks)[:k]], seconds


def main(argv=None):
  parser = Parser(description=__doc__.split("\n")[0])
  parser.add_argument("--inputs", required=True, help="folder of the .npy inputs")
  parser.add_argument("--implementation", required=True, help="scikit-activeml or baal")
  parser.add_argument("--strategy", required=True,
                      help="coreset, badge, typiclust, probcover (scikit-activeml); "
                      "bald, batchbald (baal)")
  parser.add_argument("--k", type=int, required=True, help="query size")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="where the picks (.npy) go")
  parser.add_argument("--num-classes", type=int, default=None,
                      help="probcover: classes C (default: from log_probs.npy or "
                      "mc_log_probs.npy in --inputs)")
  parser.add_argument("--radius", type=float, default=None,
                      help="probcover: a fixed ball radius (the peer's deltas=[R]) instead "
                      "of its purity search; for checks")
  args = parser.parse_args(argv)

  if args.implementation not in PEERS:
    raise InputError(f"--implementation={args.implementation!r}: unknown; choose one of "
                     f"{', '.join(PEERS)}")
  if args.strategy not in PEERS[args.implementation]:
    owner = [impl for impl, names in PEERS.items() if args.strategy in names]
    raise InputError(f"--strategy={args.strategy!r}: not run with {args.implementation}"
                     + (f" (use --implementation={owner[0]})" if owner else
                        "; choose one of " + ", ".join(sum(PEERS.values(), ()))))
  if not os.path.isdir(args.inputs):
    raise InputError(f"--inputs={args.inputs!r}: not a folder")
  if args.radius is not None and (args.strategy != "probcover" or not args.radius > 0):
    raise InputError("--radius: a positive radius, for --strategy=probcover only")

  is_labeled = load(args.inputs, "labeled")
  if is_labeled.ndim != 1 or is_labeled.dtype != bool:
    raise InputError(f"labeled.npy: expected (N,) bool, got {is_labeled.dtype} of shape "
                     f"{is_labeled.shape}")
  count = len(is_labeled)
  arrays = {}
  for name in NEEDS[args.strategy]:
    arrays[name] = load(args.inputs, name, NDIM[name])
    if len(arrays[name]) != count:
      raise InputError(f"{name}.npy: {len(arrays[name])} rows, labeled.npy {count}")
    if not np.all(np.isfinite(arrays[name])):
      raise InputError(f"{name}.npy: holds a NaN or infinite value")
  free = int(count - is_labeled.sum())
  if not 0 < args.k <= free:
    raise InputError(f"--k={args.k}: must be in 1..{free} (the examples not labeled)")

  num_classes = args.num_classes
  if args.strategy == "probcover" and num_classes is None:
    for name in ("log_probs", "mc_log_probs"):
      path = os.path.join(args.inputs, name + ".npy")
      if os.path.isfile(path):
        num_classes = int(np.load(path, mmap_mode="r").shape[-1])
        break
    else:
      raise InputError("probcover: give --num-classes (or log_probs.npy in --inputs)")
  if num_classes is not None and num_classes < 2:
    raise InputError(f"--num-classes={num_classes}: must be >= 2")

  out = args.out or os.path.join(args.inputs,
                                 f"picks_{args.implementation}_{args.strategy}.npy")
  # Peers may print; stdout carries the JSON line only.
  stdout, sys.stdout = sys.stdout, sys.stderr
  try:
    if args.implementation == "scikit-activeml":
      picks, seconds = run_skactiveml(args.strategy, arrays, is_labeled, args.k, args.seed,
                                      num_classes, args.radius)
    else:
      picks, seconds = run_baal(args.strategy, arrays, is_labeled, args.k, args.seed)
  finally:
    sys.stdout = stdout
  picks = picks.astype(np.int64)
  np.save(out, picks)
  print(json.dumps({
      "implementation": args.implementation, "strategy": args.strategy,
      "pool_size": count, "query_size": args.k, "seconds": seconds,
      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      "picks_file": os.path.abspath(out)}))


if __name__ == "__main__":
  try:
    main()
  except InputError as e:
    print(f"run_peer: {e}", file=sys.stderr)
    sys.exit(1)
  except Exception as e:  # a peer's failure (e.g. out of memory): one line, no traceback
    first_line = (str(e).splitlines() or [""])[0]
    print(f"run_peer: the peer failed: {type(e).__name__}: {first_line}", file=sys.stderr)
    sys.exit(1)
