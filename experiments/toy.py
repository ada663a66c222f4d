r"""The paper's one-dimensional examples (section 2.3 / appendix C, and Fig. 1).

  python -m experiments.toy --out=DIR

1. Why Wasserstein rather than H-divergence (Fig. 2, Eq. 3). D1 = U([-2a,-a] U [a,2a])
   is the data; D2 = U([-x0-b/2, -x0+b/2] U [x0-b/2, x0+b/2]) (a query spread over
   both modes) and D3 = U([x0-b, x0+b]) (a query on one mode) are two query
   distributions inside it. For threshold classifiers the H-divergence cannot tell D2
   from D3; W1 can. Both are computed in closed form and from samples (W1 with the
   1-D quantile formula, the optimal threshold's risk by scanning thresholds), for
   every x0, checked against each other and plotted. D3 fits inside [a, 2a] only
   when 0 < b <= a/2 (its x0 range is [a + b, 2a - b]); other b are refused.

   Appendix C's closed form for W1(D1, D2) has a sign error in its first integral
   (it subtracts F2^{-1} with the wrong sign); it gives 3a/2 + b/2 as the maximum
   over x0 (at x0 = 2a - b/2), where the distance is at most (a - b)/2. `w1_d1_d2` is the corrected form
   (the samples agree with it, not with the printed one); Eq. 3 holds either way.

2. Sampling bias (Fig. 1, after Dasgupta 2011). Four uniform intervals on a line,
   labelled red, green, red, green with 45%, 10%, 5% and 40% of the mass. The best
   threshold (between the first two) errs on the 5% interval; the one between the
   last two errs on the 10% one. Uncertainty sampling that starts from one point at
   each extreme queries the point nearest its current threshold, bisects towards the
   last boundary and never looks at the 10% interval: it ends at 10% risk on every
   pool. Random sampling with the empirical-risk threshold usually finds the 5% one
   (when its sample holds more of the 10% interval than of the 5% one).

Writes DIR/toy.md (tables and checks), DIR/toy_divergences.png,
DIR/toy_sampling_bias.png and DIR/toy.json; exits 1 if a check fails.
"""

import dataclasses
import json
import os
import sys
from typing import Callable, Dict, List

from absl import app
from absl import flags
import numpy as np

_FLAGS = {}  # Defined only when run as a program, so that tests can import this.

# ----------------------------------------------------------------------------------------
# Part 1: H-divergence and Wasserstein-1 distance of D1 with D2 and D3.


def valid_widths(a: float, b: float) -> bool:
  """Whether D2 and D3 fit inside D1's intervals for some x0: 0 < b <= a/2. For a/2 < b
  D3's x0 range [a + b, 2a - b] is empty, and its closed form is no longer W1."""
  return 0 < b <= a / 2


def x0_range(a: float, b: float, query: str):
  """Where the query's support lies inside D1's: D2 needs x0 in [a+b/2, 2a-b/2], D3 in
  [a+b, 2a-b]."""
  half = b / 2 if query == "d2" else b
  return a + half, 2 * a - half


def w1_d1_d2(a: float, b: float, x0):
  """W1(D1, D2), corrected closed form. By symmetry twice the positive half's integral
  of |F1^{-1} - F2^{-1}|, a linear function crossing zero:
  (u^2 + v^2) / (2 (a - b)) with u = x0 - a - b/2, v = 2a - b/2 - x0 (u + v = a - b).
  Largest, (a - b)/2, with D2 at either end of D1's intervals; smallest, (a - b)/4,
  in their middle."""
  u, v = x0 - a - b / 2, 2 * a - b / 2 - x0
  return (u ** 2 + v ** 2) / (2 * (a - b))


def w1_d1_d2_as_printed(a: float, b: float, x0):
  """Appendix C's printed W1(D1, D2) (wrong; kept to show the difference)."""
  return (x0 - 1.5 * b) ** 2 / (2 * (a - b)) - x0 + 2 * b + 1.5 * a


def w1_d1_d3(a: float, b: float, x0):
  """W1(D1, D3), appendix C: (x0 - b)^2 / (2 (a - b)) - x0 + 2a; smallest at x0 = a + b:
  a^2 / (2 (a - b)) + a - b."""
  return (x0 - b) ** 2 / (2 * (a - b)) - x0 + 2 * a


def threshold_risk(a: float, b: float) -> float:
  """Appendix C's H-divergence: the risk of the best threshold f(x) = 1{x >= p}
  separating D1 from the query, where a misclassified stretch of either support costs
  its length over the total length 2a + 2b (the two supports weighted by length).
  The best p >= 2a calls everything D1 and misses the query's whole support, 2b:
  b / (a + b), the same for D2 and D3 and for every x0."""
  return b / (a + b)


def sample(rng, a: float, b: float, x0: float, which: str, n: int) -> np.ndarray:
  """n samples; the two-interval distributions get exactly n/2 in each interval so that
  the quantile estimate does not pick up a binomial imbalance between the halves."""
  if which == "d1":
    return np.concatenate([-rng.uniform(a, 2 * a, n - n // 2), rng.uniform(a, 2 * a, n // 2)])
  if which == "d2":
    return np.concatenate([rng.uniform(-x0 - b / 2, -x0 + b / 2, n - n // 2),
                           rng.uniform(x0 - b / 2, x0 + b / 2, n // 2)])
  if which == "d3":
    return rng.uniform(x0 - b, x0 + b, n)
  raise ValueError(which)


def empirical_w1(x: np.ndarray, y: np.ndarray) -> float:
  """W1 of two equal-size samples: the mean gap between their sorted values (the 1-D
  quantile formula W1 = integral over z of |F^{-1}(z) - G^{-1}(z)|)."""
  if x.shape != y.shape:
    raise ValueError("equal sample sizes")
  return float(np.mean(np.abs(np.sort(x) - np.sort(y))))


def empirical_threshold_risk(d1: np.ndarray, query: np.ndarray, d1_weight: float) -> float:
  """The smallest weighted error of f(x) = 1{x >= p} ("query") over all thresholds p:
  d1_weight * P_D1(x >= p) + (1 - d1_weight) * P_Q(x < p), scanned at every sample."""
  points = np.concatenate([d1, query])
  is_query = np.concatenate([np.zeros(len(d1), bool), np.ones(len(query), bool)])
  order = np.argsort(points, kind="stable")
  is_query = is_query[order]
  # Threshold just above the first k sorted points, k = 0..n: those k are called D1.
  query_below = np.concatenate([[0], np.cumsum(is_query)]) / len(query)
  d1_below = np.concatenate([[0], np.cumsum(~is_query)]) / len(d1)
  risk = d1_weight * (1.0 - d1_below) + (1.0 - d1_weight) * query_below
  return float(risk.min())


@dataclasses.dataclass
class DivergenceRow:
  query: str
  x0: float
  w1_closed: float
  w1_samples: float
  risk_closed: float
  risk_samples: float


def divergences(a: float, b: float, samples: int, seed: int, points: int = 13):
  """Closed-form and sampled W1 and threshold risk for D2 and D3 over their x0 ranges."""
  if not valid_widths(a, b):
    raise ValueError(f"need 0 < b <= a/2, got a={a}, b={b}")
  rng = np.random.default_rng(seed)
  rows: List[DivergenceRow] = []
  closed: Dict[str, Callable] = {"d2": w1_d1_d2, "d3": w1_d1_d3}
  for query in ("d2", "d3"):
    for x0 in np.linspace(*x0_range(a, b, query), points):
      d1 = sample(rng, a, b, x0, "d1", samples)
      q = sample(rng, a, b, x0, query, samples)
      # The risk weighs the two supports by their lengths: 2a for D1, 2b for the query.
      d1_weight = a / (a + b)
      rows.append(DivergenceRow(query, float(x0), float(closed[query](a, b, x0)),
                                empirical_w1(d1, q), threshold_risk(a, b),
                                empirical_threshold_risk(d1, q, d1_weight)))
  return rows


# ----------------------------------------------------------------------------------------
# Part 2: sampling bias of uncertainty sampling (Fig. 1).

# (start, end, label, mass): red = 0, green = 1.
BIAS_INTERVALS = ((0.0, 2.0, 0, 0.45), (2.0, 2.5, 1, 0.10), (2.5, 3.5, 0, 0.05),
                  (3.5, 12.0, 1, 0.40))


def true_risk(threshold: float) -> float:
  """Risk of 'red below the threshold, green above' under BIAS_INTERVALS."""
  risk = 0.0
  for start, end, label, mass in BIAS_INTERVALS:
    below = np.clip((threshold - start) / (end - start), 0.0, 1.0)   # share called red
    risk += mass * (below if label == 1 else 1.0 - below)
  return float(risk)


def draw_bias_pool(rng, n: int):
  masses = np.array([m for *_, m in BIAS_INTERVALS])
  which = rng.choice(len(BIAS_INTERVALS), n, p=masses / masses.sum())
  starts = np.array([s for s, *_ in BIAS_INTERVALS])[which]
  ends = np.array([e for _, e, *_ in BIAS_INTERVALS])[which]
  labels = np.array([l for *_, l, _ in BIAS_INTERVALS])[which]
  return rng.uniform(starts, ends), labels


def erm_threshold(x: np.ndarray, y: np.ndarray) -> float:
  """The threshold with the fewest labeled errors (red below, green above); ties go to
  the widest gap's middle, which for separable data is the max-margin threshold."""
  order = np.argsort(x)
  x, y = x[order], y[order]
  cuts = np.concatenate([[x[0] - 1.0], (x[:-1] + x[1:]) / 2, [x[-1] + 1.0]])
  errors = np.array([np.sum(y[:k] == 1) + np.sum(y[k:] == 0) for k in range(len(x) + 1)])
  best = np.flatnonzero(errors == errors.min())
  gaps = np.array([(x[k] if k < len(x) else np.inf) - (x[k - 1] if k > 0 else -np.inf)
                   for k in best])
  return float(cuts[best[np.argmax(gaps)]])


def sampling_bias_once(queries: int = 100, pool: int = 2000, seed: int = 0):
  """Risk after each query: uncertainty sampling (nearest to the current threshold)
  and random sampling, both from the leftmost red and the rightmost green point."""
  rng = np.random.default_rng(seed)
  x, y = draw_bias_pool(rng, pool)
  start = [int(np.argmin(x)), int(np.argmax(x))]
  curves = {}
  for strategy in ("uncertainty", "random"):
    labeled = list(start)
    order = rng.permutation(pool)
    thresholds = []
    for _ in range(queries + 1):
      t = erm_threshold(x[labeled], y[labeled])
      thresholds.append(t)
      free = np.setdiff1d(np.arange(pool), labeled)
      if strategy == "uncertainty":
        pick = free[np.argmin(np.abs(x[free] - t))]
      else:
        pick = next(i for i in order if i not in labeled)
      labeled.append(int(pick))
    curves[strategy] = {"thresholds": thresholds,
                        "risk": [true_risk(t) for t in thresholds],
                        "queried": [float(v) for v in x[labeled[2:]]]}
  return curves


def sampling_bias(repetitions: int = 20, seed: int = 0):
  """sampling_bias_once on `repetitions` pools: the first one's queries, every risk
  curve, and the final risks."""
  runs = [sampling_bias_once(seed=seed + k) for k in range(repetitions)]
  return {strategy: {"queried_first_pool": runs[0][strategy]["queried"],
                     "final_threshold_first_pool": runs[0][strategy]["thresholds"][-1],
                     "risk": [run[strategy]["risk"] for run in runs],
                     "final_risk": [run[strategy]["risk"][-1] for run in runs]}
          for strategy in ("uncertainty", "random")}


# ----------------------------------------------------------------------------------------
# Output.


def checks(rows: List[DivergenceRow], a: float, b: float, samples: int) -> List[tuple]:
  """(what, holds) for every claim the report makes."""
  # Sampling error: each sorted sample's quantile is off by about width / sqrt(n), so
  # W1's estimate by a / sqrt(n); the risk's by 1 / sqrt(n). Five of those is a margin.
  tol_w1 = 5 * a / np.sqrt(samples)
  tol_risk = 5 / np.sqrt(samples)
  w1_ok = max(abs(r.w1_samples - r.w1_closed) for r in rows)
  risk_ok = max(abs(r.risk_samples - r.risk_closed) for r in rows)
  d2 = [r for r in rows if r.query == "d2"]
  d3 = [r for r in rows if r.query == "d3"]
  printed = [abs(w1_d1_d2_as_printed(a, b, r.x0) - r.w1_samples) for r in d2]
  return [
      (f"sampled W1 within {tol_w1:.3f} of the closed forms (largest gap {w1_ok:.4f})",
       w1_ok <= tol_w1),
      (f"sampled threshold risk within {tol_risk:.4f} of b/(a+b) = {b / (a + b):.4f} "
       f"(largest gap {risk_ok:.4f})", risk_ok <= tol_risk),
      (f"Eq. 3: min over x0 of W1(D1,D3) = {min(r.w1_closed for r in d3):.4f} > max over x0 "
       f"of W1(D1,D2) = {max(r.w1_closed for r in d2):.4f}",
       min(r.w1_closed for r in d3) > max(r.w1_closed for r in d2)),
      ("Eq. 3: dH(D1,D2) = dH(D1,D3) for every x0 (sampled risks differ by "
       f"{abs(np.mean([r.risk_samples for r in d2]) - np.mean([r.risk_samples for r in d3])):.4f})",
       all(abs(r.risk_samples - b / (a + b)) <= tol_risk for r in rows)),
      (f"appendix C's printed W1(D1,D2) disagrees with the samples (by at least "
       f"{min(printed):.3f})", min(printed) > tol_w1),
  ]


def sampling_bias_check(curves) -> tuple:
  """Uncertainty sampling ends at the 10% boundary on every pool; random sampling ends
  within 1% of the 5% optimum on most."""
  uncertain, random = (np.array(curves[s]["final_risk"]) for s in ("uncertainty", "random"))
  near_optimum = np.mean(random < 0.06)
  return (f"Fig. 1: uncertainty sampling ends at risk {uncertain.min():.3f}-{uncertain.max():.3f}"
          f" on all {len(uncertain)} pools (the 10% boundary); random sampling ends below 6% "
          f"on {near_optimum:.0%} of them (median {np.median(random):.3f}; optimum 5%)",
          bool(np.all(np.abs(uncertain - 0.10) < 0.005) and near_optimum > 0.5))


def _plot_divergences(rows, a, b, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
  for query, color in (("d2", "tab:blue"), ("d3", "tab:red")):
    part = [r for r in rows if r.query == query]
    x0 = [r.x0 for r in part]
    name = {"d2": "D2 (both modes)", "d3": "D3 (one mode)"}[query]
    left.plot(x0, [r.w1_closed for r in part], color=color, label=f"W1(D1, {name[:2]}) closed")
    left.plot(x0, [r.w1_samples for r in part], "o", color=color, ms=4, label="from samples")
    right.plot(x0, [r.risk_closed for r in part], color=color, label=f"{name} closed")
    right.plot(x0, [r.risk_samples for r in part], "o", color=color, ms=4, label="from samples")
  d2 = [r for r in rows if r.query == "d2"]
  left.plot([r.x0 for r in d2], [w1_d1_d2_as_printed(a, b, r.x0) for r in d2], ":",
            color="tab:blue", label="W1(D1, D2) as printed (App. C)")
  left.set(xlabel="x0", ylabel="Wasserstein-1", title=f"W1 separates them (a={a}, b={b})")
  right.set(xlabel="x0", ylabel="best threshold's risk", ylim=(0, 0.5),
            title="H-divergence does not")
  left.legend(fontsize=7)
  right.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _plot_sampling_bias(curves, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5))
  for start, end, label, mass in BIAS_INTERVALS:
    top.axvspan(start, end, color=("tab:red", "tab:green")[label], alpha=0.25)
    top.text((start + end) / 2, 0.9, f"{mass:.0%}", ha="center",
             transform=top.get_xaxis_transform())
  for row, (strategy, marker) in enumerate((("uncertainty", "^"), ("random", "o"))):
    q = curves[strategy]["queried_first_pool"]
    top.plot(q, np.full(len(q), 0.25 + 0.3 * row), marker, ms=4, ls="none", label=strategy)
  top.axvline(curves["uncertainty"]["final_threshold_first_pool"], ls="--", color="k")
  top.set(yticks=[], ylim=(0, 1), xlabel="x",
          title="one pool's queries and uncertainty sampling's final threshold (dashed)")
  top.legend(fontsize=7, loc="center right")
  for strategy in ("uncertainty", "random"):
    risk = np.array(curves[strategy]["risk"])
    line, = bottom.plot(np.median(risk, axis=0), label=f"{strategy} (median)")
    bottom.fill_between(np.arange(risk.shape[1]), np.percentile(risk, 25, axis=0),
                        np.percentile(risk, 75, axis=0), color=line.get_color(), alpha=0.2)
  bottom.axhline(0.05, ls=":", color="k")
  bottom.set(xlabel=f"queries ({len(curves['random']['risk'])} pools; band: quartiles)",
             ylabel="true risk", ylim=(0, 0.3))
  bottom.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _define_flags():
  _FLAGS["out"] = flags.DEFINE_string("out", None, "Folder for the tables and plots.",
                                      required=True)
  _FLAGS["a"] = flags.DEFINE_float("a", 2.0, "D1's intervals are [-2a, -a] and [a, 2a].")
  _FLAGS["b"] = flags.DEFINE_float("b", 0.5, "Half-width of D3; width of each interval of "
                                   "D2. 0 < b <= a/2.")
  _FLAGS["samples"] = flags.DEFINE_integer("samples", 200_000, "Samples per distribution.")
  _FLAGS["seed"] = flags.DEFINE_integer("seed", 0, "Seed of the samples.")


def main(argv):
  del argv
  out, a, b, samples, seed = (_FLAGS[k].value for k in ("out", "a", "b", "samples", "seed"))
  if not valid_widths(a, b):
    print(f"error: --a={a} --b={b}: need 0 < b <= a/2 (D3 = U([x0-b, x0+b]) must fit "
          "inside [a, 2a])", file=sys.stderr)
    sys.exit(1)
  os.makedirs(out, exist_ok=True)
  rows = divergences(a, b, samples, seed)
  results = checks(rows, a, b, samples)
  curves = sampling_bias(seed=seed)
  results.append(sampling_bias_check(curves))
  _plot_divergences(rows, a, b, os.path.join(out, "toy_divergences.png"))
  _plot_sampling_bias(curves, os.path.join(out, "toy_sampling_bias.png"))

  lines = [f"# The paper's 1-D examples (a = {a}, b = {b}, {samples} samples)", "",
           "| query | x0 | W1 closed | W1 samples | risk closed | risk samples |",
           "| --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {r.query.upper()} | {r.x0:.3f} | {r.w1_closed:.4f} | {r.w1_samples:.4f} | "
            f"{r.risk_closed:.4f} | {r.risk_samples:.4f} |" for r in rows]
  lines += ["", "Checks:", ""] + [f"- [{'x' if ok else ' '}] {what}" for what, ok in results]
  lines += ["", "![divergences](toy_divergences.png)", "",
            "![sampling bias](toy_sampling_bias.png)", ""]
  with open(os.path.join(out, "toy.md"), "w") as f:
    f.write("\n".join(lines))
  with open(os.path.join(out, "toy.json"), "w") as f:
    json.dump({"a": a, "b": b, "rows": [dataclasses.asdict(r) for r in rows],
               "checks": [{"what": w, "holds": bool(ok)} for w, ok in results],
               "sampling_bias": curves}, f, indent=1)
  for what, ok in results:
    print(f"{'ok  ' if ok else 'FAIL'} {what}", file=sys.stderr)
  print(f"wrote {out}/toy.md, toy_divergences.png, toy_sampling_bias.png",
        file=sys.stderr)
  if not all(ok for _, ok in results):
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
