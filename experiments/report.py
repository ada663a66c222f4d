r"""Our results beside the paper's: tables, budget curves, query times, provenance.

  python -m experiments.report --workdirs=[LABEL=]DIR[,...] --out=OUT [--benchmark=FILE]
      [--seeds=0,1,2] [--stop_kappa=0.99] [--stop_rounds=2]

Each workdir is a run (it holds results.json) or a tree of runs (e.g. the seed_<k>
folders of --config.seeds); every results.json below it is read. Runs are grouped by
dataset and by "arm": the query strategy, plus "+h_div" for the H-divergence
ablation and "+match_pool" for baselines trained with WAAL's number of steps, plus
"/LABEL" for a tree given as LABEL=DIR: that is how one report shows the same
strategy trained two ways (e.g. the campaign's Random and
inferred=results/deepal_training_check/10_plus_5_epochs's "random/inferred"), each
beside the paper's number for the strategy. Writes

  OUT/report.md       per dataset: each arm's protocol; a table at a glance (per arm:
                      the first, middle and last budgets, the area under the budget
                      curve (AUBC: mean accuracy over the rounds), the budgets within
                      the combined std of the paper's, hours); accuracy
                      per number of labels and arm, each cell "ours mean ± std (paper
                      mean ± std)" in %, with the difference marked where it exceeds
                      the combined std (sqrt(s_ours^2 + s_paper^2)); per
                      budget a paired t-test of WAAL against each arm over their
                      common seeds; where Table 4's controls are there, WAAL's lead
                      over Random split into training length, adversarial loss and
                      query (DECOMPOSITION); the pairwise penalty matrix (budgets where one
                      arm is significantly better); the labels each arm needs to
                      reach Random's final accuracy; the seconds each arm spent; and
                      Table 1 from --benchmark. Where the rounds record them: test ECE,
                      NLL and Brier per budget and arm; accuracy per class at each
                      arm's first and last budget; the stopping signal per arm (the
                      budget where each seed's stop-set kappa first stayed >=
                      --stop_kappa for --stop_rounds rounds, the test accuracy there,
                      the accuracy given up against the last round) and the mean
                      kappa per budget
  OUT/<dataset>.png   test accuracy vs labels: ours (one line per arm, ±std band, a star
                      at the mean stop budget where every seed's signal fired) and,
                      beside it on the same axes, the paper's curves in the same colours
  OUT/<dataset>_calibration.png
                      ECE, NLL and Brier vs labels, a panel each, in the same colours
                      (only where the rounds record them)
  OUT/provenance.md   per run and round: accuracy, seconds per phase, and the class
                      histogram of the queried batch
  OUT/summary.json    the numbers of report.md

Only finished runs (every round of their protocol in results.json) are counted; the
others are listed at the end of report.md. Means are over seeds; std is the sample
standard deviation (ddof=1; 0 for one seed).
"""

import collections
import csv
import dataclasses
import json
import math
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

from absl import app
from absl import flags
import numpy as np

from experiments.class_names import CLASS_NAMES

_FLAGS = {}  # Defined only when run as a program, so that tests can import this.

PAPER_ACCURACY = os.path.join(os.path.dirname(__file__), "paper", "paper_accuracy.csv")
# The tables' names for our dataset names.
PAPER_DATASETS = {"fashion_mnist": "fashion_mnist", "svhn_cropped": "svhn", "cifar10": "cifar10",
                  "stl10": "stl10"}
# A round's calibration fields (test_<key>) and their names in tables and plots.
CALIBRATION_METRICS = {"ece": "ECE", "nll": "NLL", "brier": "Brier"}
# The stopping signal's defaults: stop-set kappa >= STOP_KAPPA for STOP_ROUNDS rounds.
STOP_KAPPA = 0.99
STOP_ROUNDS = 2


class ReportError(Exception):
  """Bad input: reported as one line."""


@dataclasses.dataclass
class Run:
  path: str
  dataset: str
  arm: str
  seed: int
  protocol: str                       # what must be equal for runs to be averaged
  rounds: List[dict]
  rounds_planned: int = 0             # al.rounds + 1

  @property
  def finished(self) -> bool:
    """Whether every round of its protocol is in (a run still going, or cut short and
    committed to be resumed, is not)."""
    return len(self.rounds) == self.rounds_planned


def arm_name(config: dict) -> str:
  """The strategy, plus what sets the run apart from the paper's arm of that strategy:
  +h_div (the H-divergence ablation), +wasserstein (a baseline's queries with WAAL's
  adversarial training), +match_pool (a baseline with WAAL's steps per epoch),
  +reference (the authors' released code's settings), +last_class (DeepFool as DeepAL
  ran it before 2022)."""
  name = config["query"]["strategy"]
  adversarial = config["train"].get("adversarial")
  if adversarial == "h_divergence":
    name += "+h_div"
  elif adversarial == "wasserstein" and name != "waal":
    name += "+wasserstein"
  if config["train"].get("steps_per_epoch") == "match_pool":
    name += "+match_pool"
  if config["train"].get("variant", "paper") != "paper":
    name += "+" + config["train"]["variant"]
  if name == "deepfool" and config["query"].get("deepfool_boundary") == "last_class":
    name += "+last_class"
  return name


def strategy_arm(arm: str) -> str:
  """The arm without its workdir's label: 'random/inferred' -> 'random'."""
  return arm.split("/")[0]


def _protocol(config: dict) -> str:
  al, train, data = config["al"], config["train"], config["data"]
  pool = data.get("pool_size") if (data.get("pool_size") or 0) > 0 else "full"
  growth = train.get("epochs_added_per_round", 0)
  return (f"pool {pool}, {al['initial_labeled']} labels +{al['query_size']} x "
          f"{al['rounds']} rounds, at most {train['epochs']} epochs"
          + (f" (+{growth} a round)" if growth else "") + f", preset {train['variant']}")


def labelled_workdir(entry: str) -> Tuple[str, str]:
  """'LABEL=DIR' -> (LABEL, DIR); a plain DIR (also one whose name has a '=') -> ('', DIR)."""
  label, sep, workdir = entry.partition("=")
  if not sep or os.path.isdir(entry):
    return "", entry
  if not re.fullmatch(r"[A-Za-z0-9_-]+", label):
    raise ReportError(f"--workdirs: label {label!r} of {entry}: use letters, digits, _ and -")
  return label, workdir


def find_runs(workdirs: List[str]) -> List[Run]:
  runs = []
  for entry in workdirs:
    label, workdir = labelled_workdir(entry)
    if not os.path.isdir(workdir):
      raise ReportError(f"--workdirs: {entry} is not a folder")
    found = sorted(os.path.join(root, "results.json") for root, _, files in os.walk(workdir)
                   if "results.json" in files)
    if not found:
      raise ReportError(f"--workdirs: no results.json in or below {entry}")
    for path in found:
      try:
        with open(path) as f:
          results = json.load(f)
        config = results["config"]
        arm = arm_name(config) + (f"/{label}" if label else "")
        runs.append(Run(path, config["data"]["name"], arm, int(config["seed"]),
                        _protocol(config), results["rounds"],
                        rounds_planned=int(config["al"]["rounds"]) + 1))
      except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReportError(f"{path}: not a waal_jax results.json ({e})") from e
  return runs


def load_paper(path: str = PAPER_ACCURACY) -> Dict[Tuple[str, str, str, int], Tuple[float, float]]:
  """(dataset, setting, method, labels) -> (mean %, std %) from Tables 4-9."""
  table = {}
  with open(path) as f:
    for row in csv.DictReader(f):
      key = (row["dataset"], row["setting"], row["method"], int(row["num_labeled"]))
      table[key] = (float(row["mean_accuracy_percent"]), float(row["std_percent"]))
  return table


def paper_cell(paper, dataset: str, arm: str, labels: int) -> Optional[Tuple[float, float]]:
  """The paper's number for an arm, where the paper has one (only the paper preset's
  strategies and the H-divergence ablation, whatever their workdir's label; DeepFool
  either way, since which of the two the paper ran is what is in question)."""
  method, _, ablation = strategy_arm(arm).partition("+")
  if ablation not in ("", "h_div", "last_class"):
    return None
  setting = "h_divergence_ablation" if ablation == "h_div" else "standard"
  return paper.get((PAPER_DATASETS.get(dataset, dataset), setting, method, labels))


def mean_std(values) -> Tuple[float, float]:
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


@dataclasses.dataclass
class ArmSummary:
  seeds: List[int]
  protocol: str
  accuracy: Dict[int, Tuple[float, float, int]]   # labels -> (mean %, std %, runs)
  aubc: Tuple[float, float]                         # mean % over rounds: mean, std over seeds
  # The fields older results lack: empty where no round records them.
  calibration: Dict[int, Dict[str, Tuple[float, float, int]]] = dataclasses.field(
      default_factory=dict)                         # labels -> ece/nll/brier -> (mean, std, runs)
  per_class: Dict[int, Tuple[List[Optional[float]], int]] = dataclasses.field(
      default_factory=dict)                         # first, last labels -> (% per class, runs)
  stop_set_kappa: Dict[int, float] = dataclasses.field(default_factory=dict)  # labels -> mean


def recorded(group: List[Run], field: str) -> Dict[int, list]:
  """labels -> the field's values over the runs' rounds that record it (not None)."""
  values = collections.defaultdict(list)
  for run in group:
    for r in run.rounds:
      if r.get(field) is not None:
        values[r["num_labeled"]].append(r[field])
  return dict(sorted(values.items()))


def class_means(per_run: List[List[Optional[float]]]) -> List[Optional[float]]:
  """Per class, the mean % over the runs that had test examples of it (None if none did)."""
  means = []
  for c in range(max(len(v) for v in per_run)):
    values = [v[c] for v in per_run if c < len(v) and v[c] is not None]
    means.append(100.0 * float(np.mean(values)) if values else None)
  return means


def summarise(runs: List[Run]) -> Dict[str, Dict[str, ArmSummary]]:
  """dataset -> arm -> ArmSummary."""
  grouped = collections.defaultdict(list)
  for run in runs:
    grouped[(run.dataset, run.arm)].append(run)
  out = collections.defaultdict(dict)
  for (dataset, arm), group in sorted(grouped.items()):
    protocols = sorted({r.protocol for r in group})
    if len(protocols) > 1:
      raise ReportError(f"{dataset} {arm}: runs of different protocols cannot be averaged: "
                        + " | ".join(protocols) + " (to show both, label one tree: "
                        "--workdirs=LABEL=DIR)")
    seeds = [r.seed for r in group]
    if len(set(seeds)) < len(seeds):
      raise ReportError(f"{dataset} {arm}: seed given twice among "
                        + ", ".join(r.path for r in group))
    by_labels = collections.defaultdict(list)
    for run in group:
      for r in run.rounds:
        by_labels[r["num_labeled"]].append(100.0 * r["test_accuracy"])
    accuracy = {n: (*mean_std(v), len(v)) for n, v in sorted(by_labels.items())}
    # AUBC per run: the mean accuracy over its rounds (equal label steps, so this is
    # the area under the budget curve over its width). Only complete runs count.
    longest = max(len(r.rounds) for r in group)
    aubcs = [100.0 * np.mean([r["test_accuracy"] for r in run.rounds])
             for run in group if len(run.rounds) == longest]
    calibration = collections.defaultdict(dict)
    for metric in CALIBRATION_METRICS:
      for n, values in recorded(group, f"test_{metric}").items():
        calibration[n][metric] = (*mean_std(values), len(values))
    per_class = recorded(group, "test_per_class_accuracy")
    kappas = recorded(group, "stop_set_kappa")
    out[dataset][arm] = ArmSummary(
        sorted(seeds), protocols[0], accuracy, mean_std(aubcs), dict(calibration),
        {n: (class_means(per_class[n]), len(per_class[n])) for n in sorted(
            {min(per_class), max(per_class)})} if per_class else {},
        {n: float(np.mean(v)) for n, v in kappas.items()})
  return dict(out)


def differs(ours: Tuple[float, float, int], paper: Tuple[float, float]) -> bool:
  """Whether our mean and the paper's differ by more than the combined std."""
  return abs(ours[0] - paper[0]) > math.hypot(ours[1], paper[1])


def _cell(ours: Tuple[float, float, int], paper: Optional[Tuple[float, float]],
          beside: bool = True) -> str:
  """Ours (with the paper's beside it unless `beside` is False), bold ▲/▼ if they differ."""
  mean, std, _ = ours
  text = f"{mean:.2f} ± {std:.2f}"
  if paper is None:
    return text
  p_mean, p_std = paper
  if beside:
    text += f" ({p_mean:.2f} ± {p_std:.2f})"
  if differs(ours, paper):
    text = f"**{text} {'▲' if mean > p_mean else '▼'}**"
  return text


def accuracy_table(dataset: str, arms: Dict[str, ArmSummary], paper) -> List[str]:
  """Table 4's layout: a row per arm, a column per budget and the AUBC. The paper's row
  follows the arms of its strategy (one row, also for a strategy trained two ways,
  'random' and 'random/inferred'); a cell of ours that differs from the paper's by more
  than the combined std is bold, ▲ above it, ▼ below."""
  labels = sorted({n for arm in arms.values() for n in arm.accuracy})
  lines = ["| arm | n | " + " | ".join(f"{n:,}" for n in labels) + " | AUBC |",
           "| --- |" + " --- |" * (len(labels) + 2)]
  groups: Dict[str, List[str]] = {}
  for a in _ordered(arms):
    groups.setdefault(strategy_arm(a), []).append(a)
  for strategy, group in groups.items():
    theirs = {n: paper_cell(paper, dataset, strategy, n) for n in labels}
    for a in group:
      cells = [_cell(arms[a].accuracy[n], theirs[n], beside=False)
               if n in arms[a].accuracy else "-" for n in labels]
      mean, std = arms[a].aubc
      lines.append(f"| {a} | {len(arms[a].seeds)} | " + " | ".join(cells)
                   + f" | {mean:.2f} ± {std:.2f} |")
    if any(cell is not None for cell in theirs.values()):
      aubc = paper_aubc(dataset, strategy, arms[group[0]], paper)
      lines.append(f"| {strategy} (paper) | | " + " | ".join(
          "-" if theirs[n] is None else f"{theirs[n][0]:.2f} ± {theirs[n][1]:.2f}"
          for n in labels) + f" | {'-' if aubc is None else f'{aubc:.2f}'} |")
  return lines


def glance_budgets(arms: Dict[str, ArmSummary]) -> List[int]:
  """The smallest, middle and largest label counts (1,000, 3,500 and 6,000 in Table 4)."""
  labels = sorted({n for arm in arms.values() for n in arm.accuracy})
  return sorted({labels[0], labels[(len(labels) - 1) // 2], labels[-1]})


def paper_aubc(dataset: str, arm: str, summary: ArmSummary, paper) -> Optional[float]:
  """The paper's mean accuracy over the label counts we ran, if it has them all."""
  cells = [paper_cell(paper, dataset, arm, n) for n in summary.accuracy]
  return None if any(c is None for c in cells) else float(np.mean([c[0] for c in cells]))


def glance_table(dataset: str, arms: Dict[str, ArmSummary], paper,
                 timing: Dict[str, Dict[str, float]]) -> List[str]:
  """One row per arm, best AUBC first: the first, middle and last budgets' cells, the
  AUBC beside the paper's, at how many budgets ours is within the combined std of the
  paper's, the seeds and the arm's hours."""
  budgets = glance_budgets(arms)
  lines = ["| arm | n | " + " | ".join(f"{n:,} labels" for n in budgets)
           + " | AUBC (paper) | as the paper | hours |",
           "| --- |" + " --- |" * (len(budgets) + 4)]
  for a in sorted(arms, key=lambda a: -arms[a].aubc[0]):
    cells = [_cell(arms[a].accuracy[n], paper_cell(paper, dataset, a, n))
             if n in arms[a].accuracy else "-" for n in budgets]
    mean, std = arms[a].aubc
    theirs = paper_aubc(dataset, a, arms[a], paper)
    aubc = f"{mean:.2f} ± {std:.2f}" + ("" if theirs is None else f" ({theirs:.2f})")
    pairs = [(ours, paper_cell(paper, dataset, a, n)) for n, ours in arms[a].accuracy.items()]
    pairs = [(ours, theirs) for ours, theirs in pairs if theirs is not None]
    alike = (f"{sum(not differs(*pair) for pair in pairs)} of {len(pairs)}" if pairs else "-")
    lines.append(f"| {a} | {len(arms[a].seeds)} | " + " | ".join(cells)
                 + f" | {aubc} | {alike} | {timing[a]['hours']:.2f} |")
  return lines


def query_time_table(path: str) -> List[str]:
  """Table 1 from the benchmark's JSON lines (its last 'table1' line)."""
  table, queries = None, {}
  try:
    with open(path) as f:
      for line in f:
        if not line.strip().startswith("{"):
          continue
        record = json.loads(line)
        if record.get("what") == "table1":
          table = record
        elif record.get("what") == "query":
          queries[record["strategy"]] = record["seconds"]
  except (OSError, ValueError) as e:
    raise ReportError(f"--benchmark={path}: {e}") from e
  if table is None:
    raise ReportError(f"--benchmark={path}: no 'table1' line (run experiments.benchmark "
                      "with the query timings)")
  lines = [f"Query time relative to WAAL's ({table.get('ours_dataset')}, "
           f"{table.get('device')}, jax {table.get('jax')}); the paper's is SVHN on a GPU.", "",
           "| strategy | query (s) | ours / WAAL | paper / WAAL |", "| --- | --- | --- | --- |"]
  for name, cell in table["relative_to_waal"].items():
    paper = "-" if cell["paper"] is None else f"{cell['paper']:.2f}"
    seconds = f"{queries[name]:.2f}" if name in queries else "-"
    lines.append(f"| {name} | {seconds} | {cell['ours']:.2f} | {paper} |")
  return lines


def provenance(runs: List[Run]) -> List[str]:
  lines = ["# Provenance: every round of every run", ""]
  for run in sorted(runs, key=lambda r: (r.dataset, r.arm, r.seed)):
    lines += [f"## {run.dataset} / {run.arm} / seed {run.seed}", "",
              f"`{run.path}`: {run.protocol}", "",
              "| round | labels | test % | epochs (best) | train s | eval s | query s | "
              "queried per class |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in run.rounds:
      counts = r.get("queried_class_counts")
      hist = "-" if not counts or not sum(counts) else " ".join(str(c) for c in counts)
      eval_s = r.get("eval_seconds")
      lines.append(
          f"| {r['round']} | {r['num_labeled']} | {100 * r['test_accuracy']:.2f} | "
          f"{r.get('epochs_trained', '-')} ({r.get('best_epoch', '-')}) | "
          f"{r['train_seconds']:.1f} | {'-' if eval_s is None else f'{eval_s:.2f}'} | "
          f"{r['query_seconds']:.2f} | {hist} |")
    lines.append("")
  return lines


def class_shares(runs: List[Run]) -> Dict[str, Dict[str, Tuple[np.ndarray, float]]]:
  """Per dataset and arm: each class's share (%) of all that the arm's queries bought,
  over its seeds and rounds, and the largest class's share of a batch (%), averaged over
  the batches. Rounds without a class histogram (a person's labels not yet given, or
  the last round, which buys nothing) are left out."""
  totals, largest = {}, {}
  for run in runs:
    for r in run.rounds:
      counts = np.asarray(r.get("queried_class_counts") or [], np.float64)
      if not counts.sum():
        continue
      key = (run.dataset, run.arm)
      totals[key] = totals.get(key, 0) + counts
      largest.setdefault(key, []).append(counts.max() / counts.sum())
  shares: Dict[str, Dict[str, Tuple[np.ndarray, float]]] = {}
  for (dataset, arm), total in totals.items():
    shares.setdefault(dataset, {})[arm] = (100 * total / total.sum(),
                                           100 * float(np.mean(largest[(dataset, arm)])))
  return shares


def class_share_table(shares: Dict[str, Tuple[np.ndarray, float]]) -> List[str]:
  num_classes = max(len(share) for share, _ in shares.values())
  lines = ["| arm | " + " | ".join(f"class {c}" for c in range(num_classes))
           + " | largest class of a batch |", "| --- |" + " --- |" * (num_classes + 1)]
  for a in _ordered(shares):
    share, largest = shares[a]
    lines.append(f"| {a} | " + " | ".join(f"{v:.1f}" for v in share) + f" | {largest:.1f} |")
  return lines


def arm_styles(names: List[str]) -> Dict[str, Tuple[tuple, str]]:
  """A colour and marker per arm, all distinct for up to 20 arms: tab10's ten colours
  with round markers, then tab20's lighter shades of them with square ones (the default
  cycle repeats after ten, which drew WAAL and a control in the same blue)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  tab20 = matplotlib.colormaps["tab20"]
  return {a: (tab20((2 * i) % 20 + (2 * i) // 20 % 2), "o" if i < 10 else "s")
          for i, a in enumerate(names)}


def line_styles(names: List[str]) -> Dict[str, Tuple[tuple, str, str]]:
  """Colour, marker and line style per arm: a labelled arm (ARM/LABEL) whose ARM is
  drawn too is drawn dashed in ARM's colour, so the two trainings of a strategy read as a
  pair; every other arm has its own colour (arm_styles), solid."""
  paired = {a: strategy_arm(a) for a in names if strategy_arm(a) != a and strategy_arm(a) in names}
  styles = {a: (*style, "-") for a, style in
            arm_styles([a for a in names if a not in paired]).items()}
  styles.update({a: (*styles[base][:2], "--") for a, base in paired.items()})
  return styles


def _pyplot():
  """matplotlib.pyplot drawing to files only (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot(dataset: str, arms: Dict[str, ArmSummary], paper, path: str,
         stops: Optional[Dict[str, float]] = None, stop_label: str = "") -> None:
  """Ours (mean with a ±std band over seeds) on the left and the paper's curves on the
  right, on the same axes and in the same colour per arm: one panel of 2 x 16 curves
  cannot be read. `stops`: arm -> the mean budget where its stopping signal fired,
  starred on its curve and named `stop_label` in the legend."""
  plt = _pyplot()
  stops = stops or {}
  names = _ordered(arms)
  styles = line_styles(names)
  paper_curves = {}
  for a in names:
    if styles[a][2] == "--":   # the paper's curve of its strategy is drawn already
      continue
    cells = [(n, paper_cell(paper, dataset, a, n)) for n in sorted(arms[a].accuracy)]
    cells = [(n, c[0]) for n, c in cells if c is not None]
    if cells:
      paper_curves[a] = cells
  fig, axes = plt.subplots(1, 2 if paper_curves else 1, figsize=(11 if paper_curves else 7, 4.5),
                           sharex=True, sharey=True, squeeze=False)
  ours_ax = axes[0][0]
  for a in names:
    color, marker, linestyle = styles[a]
    labels = np.array(sorted(arms[a].accuracy))
    mean = np.array([arms[a].accuracy[n][0] for n in labels])
    std = np.array([arms[a].accuracy[n][1] for n in labels])
    ours_ax.plot(labels, mean, color=color, marker=marker, ms=3,
                 linestyle=linestyle, label=f"{a} (n={len(arms[a].seeds)})")
    ours_ax.fill_between(labels, mean - std, mean + std, color=color, alpha=0.2)
    if a in stops:
      ours_ax.plot([stops[a]], [np.interp(stops[a], labels, mean)], linestyle="none",
                   marker="*", ms=14, color=color, markeredgecolor="black", zorder=3)
    if a in paper_curves:
      axes[0][1].plot(*zip(*paper_curves[a]), color=color, marker=marker, ms=3)
  if stops:   # one legend entry for all the stars
    ours_ax.plot([], [], linestyle="none", marker="*", ms=10, color="white",
                 markeredgecolor="black", label=stop_label)
  ours_ax.set(xlabel="labeled examples", ylabel="test accuracy (%)",
              title=f"{dataset}: ours, mean ± std over seeds")
  if paper_curves:
    axes[0][1].set(xlabel="labeled examples", title=f"{dataset}: the paper's tables")
  for ax in axes[0]:
    ax.grid(alpha=0.3)
  fig.legend(*ours_ax.get_legend_handles_labels(), loc="center left",
             bbox_to_anchor=(1.0, 0.5), fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


def plot_calibration(dataset: str, arms: Dict[str, ArmSummary], path: str) -> None:
  """ECE, NLL and Brier against labels, a panel each: mean with a ±std band over seeds,
  each arm in its colour of the accuracy plot."""
  plt = _pyplot()
  names = _ordered(arms)
  styles = line_styles(names)   # of every arm, so that colours match the accuracy plot
  fig, axes = plt.subplots(1, len(CALIBRATION_METRICS), figsize=(15, 4.2), sharex=True)
  for ax, (metric, title) in zip(axes, CALIBRATION_METRICS.items()):
    for a in names:
      cells = [(n, cell[metric]) for n, cell in sorted(arms[a].calibration.items())
               if metric in cell]
      if not cells:
        continue
      color, marker, linestyle = styles[a]
      labels = np.array([n for n, _ in cells])
      mean = np.array([c[0] for _, c in cells])
      std = np.array([c[1] for _, c in cells])
      ax.plot(labels, mean, color=color, marker=marker, ms=3, linestyle=linestyle,
              label=f"{a} (n={len(arms[a].seeds)})")
      ax.fill_between(labels, mean - std, mean + std, color=color, alpha=0.2)
    ax.set(xlabel="labeled examples", title=f"{dataset}: test {title} (lower is better)")
    ax.grid(alpha=0.3)
  fig.legend(*axes[0].get_legend_handles_labels(), loc="center left",
             bbox_to_anchor=(1.0, 0.5), fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


# --- Statistics across seeds ---------------------------------------------------------

SIGNIFICANCE = 0.05   # two-sided level of the paired tests


def seed_values(runs: List[Run], field: str = "test_accuracy", scale: float = 100.0
                ) -> Dict[str, Dict[str, Dict[int, Dict[int, float]]]]:
  """dataset -> arm -> labels -> {seed: test accuracy in %} (or another round field
  times `scale`, from the rounds that record it)."""
  out = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(dict)))
  for run in runs:
    for r in run.rounds:
      if r.get(field) is not None:
        out[run.dataset][run.arm][r["num_labeled"]][run.seed] = scale * r[field]
  return out


def paired_t(differences) -> Optional[Tuple[float, float, float]]:
  """Paired t-test of per-seed differences: (mean, t, two-sided p), None below 2 seeds.

  All differences equal: t is infinite (p 0) unless they are all 0 (t 0, p 1).
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  d = np.asarray(differences, float)
  if len(d) < 2:
    return None
  mean, sd = float(d.mean()), float(d.std(ddof=1))
  if sd == 0.0:
    return (mean, 0.0, 1.0) if mean == 0.0 else (mean, math.copysign(math.inf, mean), 0.0)
  t = mean / (sd / math.sqrt(len(d)))
  return mean, t, float(2.0 * stats.t.sf(abs(t), len(d) - 1))


def compare_paired(a: Dict[int, float], b: Dict[int, float]):
  """paired_t of a - b over the seeds both have, and that number of seeds."""
  seeds = sorted(set(a) & set(b))
  return paired_t([a[s] - b[s] for s in seeds]), len(seeds)


def penalty_matrix(arms: Dict[str, Dict[int, Dict[int, float]]],
                   alpha: float = SIGNIFICANCE) -> Dict[str, Dict[str, int]]:
  """wins[i][j]: the budgets at which arm i is significantly better than arm j (paired
  t-test over their common seeds, p < alpha, mean difference > 0)."""
  wins = {i: {j: 0 for j in arms if j != i} for i in arms}
  for i in arms:
    for j in arms:
      if i == j:
        continue
      for labels in sorted(set(arms[i]) & set(arms[j])):
        test, _ = compare_paired(arms[i][labels], arms[j][labels])
        if test is not None and test[2] < alpha and test[0] > 0:
          wins[i][j] += 1
  return wins


def labels_to_reach(summary: Dict[str, ArmSummary], target_arm: str = "random"):
  """(target accuracy: the target arm's mean at its largest budget,
      arm -> the smallest budget whose mean accuracy reaches it, or None)."""
  if target_arm not in summary:
    return None, {}
  target = summary[target_arm].accuracy[max(summary[target_arm].accuracy)][0]
  reached = {}
  for arm, s in summary.items():
    budgets = [n for n in sorted(s.accuracy) if s.accuracy[n][0] >= target]
    reached[arm] = budgets[0] if budgets else None
  return target, reached


def own_seconds(record: dict) -> float:
  """A round's training, evaluation and query seconds, its share only of a training that
  several seeds shared (`trained_with_seeds`, vmapped: each seed records the batch's)."""
  return ((record.get("train_seconds") or 0.0) / len(record.get("trained_with_seeds") or [None])
          + (record.get("eval_seconds") or 0.0) + (record.get("query_seconds") or 0.0))


def time_spent(runs: List[Run]) -> Dict[str, Dict[str, Dict[str, float]]]:
  """dataset -> arm -> {train, eval, query: mean seconds per seed (all rounds),
  hours: the arm's total over its seeds}. A round trained for several seeds at once
  (`trained_with_seeds`, vmapped) records the batch's seconds in each seed's round: the
  hours count them once, shared among those seeds."""
  grouped = collections.defaultdict(list)
  for run in runs:
    seconds = {part: sum(r.get(f"{part}_seconds") or 0.0 for r in run.rounds)
               for part in ("train", "eval", "query")}
    seconds["own"] = sum(own_seconds(r) for r in run.rounds)
    grouped[(run.dataset, run.arm)].append(seconds)
  out = collections.defaultdict(dict)
  for (dataset, arm), seeds in grouped.items():
    parts = {part: float(np.mean([s[part] for s in seeds])) for part in ("train", "eval", "query")}
    parts["hours"] = sum(s["own"] for s in seeds) / 3600.0
    out[dataset][arm] = parts
  return dict(out)


def _ordered(names):
  return sorted(names, key=lambda a: (a != "waal", a))


def _paired_cell(a: Dict[int, float], b: Dict[int, float], digits: int = 2) -> str:
  """'+d.dd (p=..., n=...)' for a - b over their common seeds, bold where p < SIGNIFICANCE."""
  test, n = compare_paired(a, b)
  if test is None:
    return "-"
  text = f"{test[0]:+.{digits}f} (p={test[2]:.3f}, n={n})"
  return f"**{text}**" if test[2] < SIGNIFICANCE else text


def paired_table(arms: Dict[str, Dict[int, Dict[int, float]]], reference: str = "waal",
                 digits: int = 2):
  """Per budget, `reference` minus each other arm: mean difference (points) and p."""
  others = [a for a in _ordered(arms) if a != reference]
  lines = [f"| labels | " + " | ".join(f"{reference} - {a}" for a in others) + " |",
           "| --- |" + " --- |" * len(others)]
  for labels in sorted(arms[reference]):
    cells = [_paired_cell(arms[reference][labels], arms[a].get(labels, {}), digits)
             for a in others]
    lines.append(f"| {labels:,} | " + " | ".join(cells) + " |")
  return lines


# WAAL's lead over Random, one change at a time along Table 4's controls: Random with
# WAAL's steps per epoch, then with its adversarial loss too (WAAL's whole training),
# then WAAL's query instead of Random's. (what changes, arm with it, arm without it)
DECOMPOSITION = (("training length", "random+match_pool", "random"),
                 ("adversarial loss", "random+wasserstein", "random+match_pool"),
                 ("WAAL's query", "waal", "random+wasserstein"),
                 ("all three", "waal", "random"))


def decomposition_table(arms: Dict[str, Dict[int, Dict[int, float]]]) -> List[str]:
  """Per budget, each step of DECOMPOSITION: mean per-seed difference (points) and p.
  Empty unless all four arms are there."""
  if any(a not in arms for _, with_it, without in DECOMPOSITION for a in (with_it, without)):
    return []
  lines = ["| labels | " + " | ".join(f"{what}: {a} - {b}" for what, a, b in DECOMPOSITION)
           + " |", "| --- |" + " --- |" * len(DECOMPOSITION)]
  for labels in sorted(arms["random"]):
    cells = [_paired_cell(arms[a].get(labels, {}), arms[b].get(labels, {}))
             for _, a, b in DECOMPOSITION]
    lines.append(f"| {labels:,} | " + " | ".join(cells) + " |")
  return lines


def penalty_table(wins: Dict[str, Dict[str, int]]) -> List[str]:
  names = _ordered(wins)
  lines = ["| row better than column | " + " | ".join(names) + " | total |",
           "| --- |" + " --- |" * (len(names) + 1)]
  for i in names:
    cells = ["-" if i == j else str(wins[i][j]) for j in names]
    lines.append(f"| {i} | " + " | ".join(cells) + f" | {sum(wins[i].values())} |")
  lost = [sum(wins[i].get(j, 0) for i in names) for j in names]
  lines.append("| lost | " + " | ".join(map(str, lost)) + " | |")
  return lines


# --- Calibration, accuracy per class and the stopping signal -------------------------


def class_labels(dataset: str, num_classes: int) -> List[str]:
  """The dataset's class names where they are known and fit, else the class indices."""
  names = CLASS_NAMES.get(dataset, ())
  return list(names) if len(names) == num_classes else [str(c) for c in range(num_classes)]


def calibration_table(arms: Dict[str, ArmSummary]) -> List[str]:
  """Per budget, a row per arm that records calibration: ECE, NLL and Brier, mean ± std."""
  names = [a for a in _ordered(arms) if arms[a].calibration]
  lines = ["| labels | arm | n | " + " | ".join(CALIBRATION_METRICS.values()) + " |",
           "| --- |" + " --- |" * (len(CALIBRATION_METRICS) + 2)]
  for labels in sorted({n for a in names for n in arms[a].calibration}):
    for a in names:
      cell = arms[a].calibration.get(labels)
      if cell is None:
        continue
      runs = max(runs for _, _, runs in cell.values())
      lines.append(f"| {labels:,} | {a} | {runs} | " + " | ".join(
          f"{cell[m][0]:.3f} ± {cell[m][1]:.3f}" if m in cell else "-"
          for m in CALIBRATION_METRICS) + " |")
  return lines


def per_class_table(dataset: str, arms: Dict[str, ArmSummary]) -> List[str]:
  """A row per arm and its first and last budget: test accuracy per class (%, mean)."""
  names = [a for a in _ordered(arms) if arms[a].per_class]
  num_classes = max(len(means) for a in names for means, _ in arms[a].per_class.values())
  lines = ["| arm | labels | n | " + " | ".join(class_labels(dataset, num_classes)) + " |",
           "| --- |" + " --- |" * (num_classes + 2)]
  for a in names:
    for labels, (means, runs) in arms[a].per_class.items():
      cells = ["-" if v is None else f"{v:.1f}" for v in means] + ["-"] * (num_classes - len(means))
      lines.append(f"| {a} | {labels:,} | {runs} | " + " | ".join(cells) + " |")
  return lines


def kappa_table(arms: Dict[str, ArmSummary]) -> List[str]:
  """A row per arm, a column per budget: the mean stop-set kappa over the seeds."""
  names = [a for a in _ordered(arms) if arms[a].stop_set_kappa]
  labels = sorted({n for a in names for n in arms[a].stop_set_kappa})
  lines = ["| arm | " + " | ".join(f"{n:,}" for n in labels) + " |",
           "| --- |" + " --- |" * len(labels)]
  for a in names:
    kappas = arms[a].stop_set_kappa
    lines.append(f"| {a} | " + " | ".join(
        f"{kappas[n]:.4f}" if n in kappas else "-" for n in labels) + " |")
  return lines


@dataclasses.dataclass
class StopPoint:
  labels: int
  round: int
  test_accuracy: float      # %, at the stop round
  given_up: float           # the last round's test % minus test_accuracy, in points


def stop_points(runs: List[Run], threshold: float,
                rounds: int) -> Dict[str, Dict[str, Dict[int, Optional[StopPoint]]]]:
  """dataset -> arm -> seed -> where the run's stopping signal fires (metrics.stable_round
  on its stop_set_kappa), None where it never does; runs that record no kappa are left
  out."""
  # Imported here: jax's import costs seconds, and results without kappas never need it.
  from waal_jax.metrics import stable_round  # pylint: disable=g-import-not-at-top
  points = {}
  for run in runs:
    if not any("stop_set_kappa" in r for r in run.rounds):
      continue
    fired = stable_round([r.get("stop_set_kappa") for r in run.rounds], threshold, rounds)
    point = None
    if fired is not None:
      record, last = run.rounds[fired], run.rounds[-1]
      accuracy = 100.0 * record["test_accuracy"]
      point = StopPoint(record["num_labeled"], record["round"], accuracy,
                        100.0 * last["test_accuracy"] - accuracy)
    points.setdefault(run.dataset, {}).setdefault(run.arm, {})[run.seed] = point
  return points


def stop_summary(points: Dict[int, Optional[StopPoint]]) -> dict:
  """An arm's stopping signal as summary.json holds it: per seed (null: it never fired),
  and over the seeds that fired the mean budget, the test accuracy at the stop and the
  accuracy given up (mean, std); `marked` where every seed fired (the plot's star)."""
  fired = [p for p in points.values() if p is not None]
  over_fired = lambda values: list(mean_std(values)) if fired else None
  return {"per_seed": {str(seed): None if p is None else dataclasses.asdict(p)
                       for seed, p in sorted(points.items())},
          "seeds_fired": len(fired), "seeds": len(points),
          "mean_labels": float(np.mean([p.labels for p in fired])) if fired else None,
          "test_accuracy_at_stop": over_fired([p.test_accuracy for p in fired]),
          "given_up": over_fired([p.given_up for p in fired]),
          "marked": len(fired) == len(points)}


def stop_table(stops: Dict[str, dict]) -> List[str]:
  """A row per arm: the budget where each seed's signal fired, their mean, the test
  accuracy at the stop and the accuracy given up (mean ± std over the seeds that fired)."""
  lines = ["| arm | stopped at, per seed | mean labels | test % at the stop | "
           "given up (points) |", "| --- |" + " --- |" * 4]
  for a in _ordered(stops):
    stop = stops[a]
    per_seed = ", ".join(f"seed {seed}: " + ("not within the budget" if p is None
                                             else f"{p['labels']:,}")
                         for seed, p in stop["per_seed"].items())
    if not stop["seeds_fired"]:
      mean = "not within the budget"
    elif stop["marked"]:
      mean = f"{stop['mean_labels']:,.0f}"
    else:
      mean = (f"{stop['mean_labels']:,.0f} ({stop['seeds_fired']} of {stop['seeds']} seeds; "
              "not marked on the plot)")
    accuracy, given_up = stop["test_accuracy_at_stop"], stop["given_up"]
    lines.append(f"| {a} | {per_seed} | {mean} | "
                 + ("- | - |" if accuracy is None else
                    f"{accuracy[0]:.2f} ± {accuracy[1]:.2f} | "
                    f"{given_up[0]:+.2f} ± {given_up[1]:.2f} |"))
  return lines


def calibration_section(dataset: str, arms: Dict[str, ArmSummary], out: str,
                        by_seed: Optional[Dict[str, Dict[str, Dict[int, Dict[int, float]]]]] = None
                        ) -> List[str]:
  """The calibration table and plot, and where WAAL is there with another arm, the
  paired differences of each measure (by_seed: measure -> seed_values' arm
  mapping); nothing where no round records calibration."""
  if not any(arm.calibration for arm in arms.values()):
    return []
  plot_calibration(dataset, arms, os.path.join(out, f"{dataset}_calibration.png"))
  lines = (["### Calibration", "", "Test ECE (15 bins), NLL and Brier score per budget "
            "(lower is better), mean ± std over n seeds:", ""] + calibration_table(arms)
           + ["", f"![{dataset} calibration]({dataset}_calibration.png)", ""])
  for metric, name in CALIBRATION_METRICS.items():
    per_seed = (by_seed or {}).get(metric, {})
    if "waal" in per_seed and len(per_seed) > 1:
      lines += [f"WAAL's {name} against each arm: mean of the per-seed differences "
                "(negative: WAAL's is lower), paired t-test over the seeds both have.", ""]
      lines += paired_table(per_seed, digits=3) + [""]
  return lines


def per_class_section(dataset: str, arms: Dict[str, ArmSummary]) -> List[str]:
  if not any(arm.per_class for arm in arms.values()):
    return []
  return (["### Accuracy per class", "", "Test accuracy per class (%, mean over n seeds) at "
           "each arm's first and last budget; - where the test split has no example of the "
           "class.", ""] + per_class_table(dataset, arms) + [""])


def stopping_section(arms: Dict[str, ArmSummary], stops: Dict[str, dict], threshold: float,
                     rounds: int) -> List[str]:
  if not stops:
    return []
  lines = ["### Stopping signal", "", "Where the stopping signal (Bloodgood and "
           "Vijay-Shanker, 2009) fires: the first round at which the stop-set kappa (a "
           "round's predicted classes on the stop set against the previous round's) has "
           f"been >= {threshold:g} for {rounds} rounds in a row. Test accuracy at "
           "that round, and the accuracy given up: the last round's minus it (points; "
           "positive where going on to the last budget paid), mean ± std over the seeds "
           "that fired. The accuracy plot stars the mean budget of the arms where every "
           "seed fired.", ""] + stop_table(stops) + [""]
  if any(arm.stop_set_kappa for arm in arms.values()):
    lines += ["Mean stop-set kappa per budget (over the seeds; round 0 has none):", ""]
    lines += kappa_table(arms) + [""]
  return lines


def write_report(workdirs: List[str], out: str, benchmark: Optional[str] = None,
                 seeds: Optional[List[int]] = None, stop_kappa: float = STOP_KAPPA,
                 stop_rounds: int = STOP_ROUNDS) -> dict:
  """Reads the runs (of `seeds` only, if given) and writes the report into `out`; returns
  summary.json's content. Only finished runs count; unfinished ones are listed. The
  stopping signal fires where the stop-set kappa is >= stop_kappa for stop_rounds rounds."""
  if not -1.0 <= stop_kappa <= 1.0:
    raise ReportError(f"--stop_kappa: {stop_kappa:g} is not a kappa (-1 to 1)")
  if stop_rounds < 1:
    raise ReportError(f"--stop_rounds: {stop_rounds}; the signal needs at least 1 round")
  found = find_runs(workdirs)
  if seeds is not None:
    found = [run for run in found if run.seed in seeds]
    if not found:
      raise ReportError(f"--seeds: no run in --workdirs has seed {', '.join(map(str, seeds))}")
  runs = [run for run in found if run.finished]
  if not runs:
    raise ReportError(f"--workdirs: none of the {len(found)} runs has finished")
  summary = summarise(runs)
  accuracies_by_seed = seed_values(runs)
  calibration_by_seed = {metric: seed_values(runs, f"test_{metric}", scale=1.0)
                         for metric in CALIBRATION_METRICS}
  timing = time_spent(runs)
  bought = class_shares(runs)
  stops = {dataset: {arm: stop_summary(points) for arm, points in by_arm.items()}
           for dataset, by_arm in stop_points(runs, stop_kappa, stop_rounds).items()}
  paper = load_paper()
  os.makedirs(out, exist_ok=True)
  lines = ["# waal_jax results beside the paper's", "",
           "Cells: ours mean ± std (paper mean ± std), test accuracy in %. **Bold ▲/▼**: "
           "the difference exceeds the combined std. n = seeds. AUBC: mean accuracy "
           "over the rounds.", ""]
  for dataset, arms in summary.items():
    lines += [f"## {dataset}", "", "Protocols:", ""]
    lines += [f"- {a}: {arms[a].protocol}; seeds {arms[a].seeds}" for a in sorted(arms)]
    lines += ["", "At a glance (AUBC: the mean accuracy over the rounds, the paper's over the "
              "same label counts; best first; as the paper: the budgets where ours is within "
              "the combined std of the paper's; hours: the arm's total over its seeds):", ""]
    lines += glance_table(dataset, arms, paper, timing[dataset]) + [""]
    lines += ["Every budget, as the paper's Table 4 lays it out (ours, then the paper's "
              "row for that strategy; test accuracy in %, mean ± std over n seeds):", ""]
    lines += accuracy_table(dataset, arms, paper) + [""]
    plot(dataset, arms, paper, os.path.join(out, f"{dataset}.png"),
         {a: s["mean_labels"] for a, s in stops.get(dataset, {}).items() if s["marked"]},
         f"stopping signal (kappa >= {stop_kappa:g}, {stop_rounds} rounds), mean over seeds")
    lines += [f"![{dataset}]({dataset}.png)", ""]
    per_seed = accuracies_by_seed[dataset]
    if "waal" in per_seed and len(per_seed) > 1:
      lines += ["WAAL against each arm: mean of the per-seed differences in points, paired "
                f"t-test over the seeds both have (arms share each seed's split and initial "
                f"labels); **bold**: p < {SIGNIFICANCE}.", ""] + paired_table(per_seed) + [""]
    decomposition = decomposition_table(per_seed)
    if decomposition:
      lines += ["What WAAL's lead over Random is made of: the controls change one thing at a "
                "time (Random with WAAL's steps per epoch; then with WAAL's adversarial loss "
                "too, i.e. WAAL's whole training; then WAAL's query instead of Random's). Mean "
                "per-seed difference in points, paired t-test; the first three add up to the "
                "last where the arms have the same seeds.", ""] + decomposition + [""]
    if len(per_seed) > 1:
      lines += ["Penalty matrix: the budgets at which the row's arm is significantly better "
                f"than the column's (paired t-test, p < {SIGNIFICANCE}).", ""]
      lines += penalty_table(penalty_matrix(per_seed)) + [""]
    target, reached = labels_to_reach(arms)
    if target is not None:
      lines += [f"Labels needed to reach Random's final accuracy ({target:.2f}%, mean over "
                "seeds): the smallest budget whose mean accuracy reaches it.", "",
                "| arm | labels |", "| --- | --- |"]
      lines += [f"| {a} | {'not reached' if reached[a] is None else f'{reached[a]:,}'} |"
                for a in _ordered(reached)] + [""]
    if dataset in bought:
      lines += ["What the queries bought: each class's share (%) of the queried examples "
                "over all rounds and seeds, and the largest class's share of a batch (%, "
                "mean over the batches; Random's row shows what chance gives).", ""]
      lines += class_share_table(bought[dataset]) + [""]
    lines += calibration_section(dataset, arms, out, {
        metric: calibration_by_seed[metric][dataset] for metric in CALIBRATION_METRICS})
    lines += per_class_section(dataset, arms)
    lines += stopping_section(arms, stops.get(dataset, {}), stop_kappa, stop_rounds)
    lines += ["Seconds per seed (all rounds; training includes the per-epoch validation) and "
              "the arm's total hours over its seeds:", "",
              "| arm | train s | eval s | query s | total hours |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {a} | {t['train']:.0f} | {t['eval']:.0f} | {t['query']:.0f} | {t['hours']:.2f} |"
              for a, t in ((a, timing[dataset][a]) for a in _ordered(timing[dataset]))] + [""]
  if benchmark:
    lines += ["## Query time (Table 1)", ""] + query_time_table(benchmark) + [""]
  unfinished = [run for run in found if not run.finished]
  if unfinished:
    lines += ["Not counted: runs still going or stopped to be resumed (rounds done of "
              "rounds planned):", ""]
    lines += [f"- {run.dataset} / {run.arm} / seed {run.seed}: {len(run.rounds)} of "
              f"{run.rounds_planned}" for run in sorted(unfinished, key=lambda r: (
                  r.dataset, r.arm, r.seed))] + [""]
  lines += ["Per round: [provenance.md](provenance.md).", ""]
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write("\n".join(lines))
  with open(os.path.join(out, "provenance.md"), "w") as f:
    f.write("\n".join(provenance(runs)))
  content = {dataset: {arm: arm_content(s, timing[dataset][arm], stops.get(dataset, {}).get(arm),
                                        stop_kappa, stop_rounds)
                       for arm, s in arms.items()}
             for dataset, arms in summary.items()}
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(content, f, indent=1)
  return content


def arm_content(s: ArmSummary, seconds: Dict[str, float], stop: Optional[dict],
                threshold: float, rounds: int) -> dict:
  """An arm's entry of summary.json; the keys of fields older results lack only where
  the rounds record them."""
  content = {"seeds": s.seeds, "protocol": s.protocol,
             "accuracy": {str(n): list(v) for n, v in s.accuracy.items()},
             "aubc": list(s.aubc), "seconds": seconds}
  if s.calibration:
    content["calibration"] = {str(n): {m: list(v) for m, v in cell.items()}
                              for n, cell in s.calibration.items()}
  if s.per_class:
    content["per_class_accuracy"] = {str(n): means for n, (means, _) in s.per_class.items()}
  if s.stop_set_kappa:
    content["stop_set_kappa"] = {str(n): k for n, k in s.stop_set_kappa.items()}
  if stop is not None:
    content["stopping"] = {"threshold": threshold, "rounds": rounds, **stop}
  return content


def _define_flags():
  _FLAGS["workdirs"] = flags.DEFINE_list(
      "workdirs", None, "Runs or trees of runs; LABEL=DIR names that tree's arms ARM/LABEL.",
      required=True)
  _FLAGS["out"] = flags.DEFINE_string("out", None, "Folder for the report.", required=True)
  _FLAGS["benchmark"] = flags.DEFINE_string(
      "benchmark", None, "JSON lines of experiments.benchmark, for the query-time table.")
  _FLAGS["seeds"] = flags.DEFINE_list(
      "seeds", None, "Only these seeds (e.g. 0,1,2: the seeds every arm has finished).")
  _FLAGS["stop_kappa"] = flags.DEFINE_float(
      "stop_kappa", STOP_KAPPA, "The stopping signal fires once the stop-set kappa is at "
      "least this for --stop_rounds rounds in a row.")
  _FLAGS["stop_rounds"] = flags.DEFINE_integer(
      "stop_rounds", STOP_ROUNDS, "Consecutive rounds the kappa must stay at --stop_kappa.")


def _parse_seeds(values: Optional[List[str]]) -> Optional[List[int]]:
  try:
    return None if values is None else [int(v) for v in values]
  except ValueError:
    raise ReportError(f"--seeds: {','.join(values)} is not a list of whole numbers") from None


def main(argv):
  del argv
  try:
    out = _FLAGS["out"].value
    write_report(_FLAGS["workdirs"].value, out, _FLAGS["benchmark"].value,
                 _parse_seeds(_FLAGS["seeds"].value), _FLAGS["stop_kappa"].value,
                 _FLAGS["stop_rounds"].value)
  except ReportError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"wrote {os.path.join(out, 'report.md')}", file=sys.stderr)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
