r"""Test accuracy per budget of two trees of runs, side by side.

  python -m experiments.compare_runs TREE_A TREE_B

Each tree holds runs as seed_<n>/results.json (the layout of --config.seeds, and of
experiments/torch_reference.py). Prints a Markdown table: per number of labels, each
seed's test accuracy and the mean +- std (in %) of both trees, and mean(A) - mean(B);
then the same over all budgets. Only seeds present in both trees count.
"""

import glob
import json
import os
import statistics
import sys


def load_tree(tree: str) -> dict:
  """{seed: {num_labeled: test accuracy}} of the finished rounds in tree/seed_*/."""
  runs = {}
  for path in sorted(glob.glob(os.path.join(tree, "seed_*", "results.json"))):
    with open(path) as f:
      results = json.load(f)
    seed = int(os.path.basename(os.path.dirname(path))[len("seed_"):])
    runs[seed] = {r["num_labeled"]: r["test_accuracy"] for r in results["rounds"]}
  return runs


def _mean_std(values) -> str:
  std = statistics.stdev(values) if len(values) > 1 else 0.0
  return f"{100 * statistics.mean(values):.2f} +- {100 * std:.2f}"


def column_names(tree_a: str, tree_b: str) -> tuple:
  """Short names for the two trees' columns: their last folders, or where those are
  the same (one arm on two platforms), their paths after the folders they share."""
  a = os.path.normpath(tree_a).split(os.sep)
  b = os.path.normpath(tree_b).split(os.sep)
  if a[-1] != b[-1]:
    return a[-1], b[-1]
  shared = 0
  while shared < min(len(a), len(b)) - 1 and a[shared] == b[shared]:
    shared += 1
  name_a, name_b = "/".join(a[shared:]), "/".join(b[shared:])
  return (name_a, name_b) if name_a != name_b else ("A", "B")


def compare(tree_a: str, tree_b: str) -> str:
  a, b = load_tree(tree_a), load_tree(tree_b)
  seeds = sorted(set(a) & set(b))
  if not seeds:
    raise ValueError(f"no seed_<n>/results.json common to {tree_a} and {tree_b}")
  budgets = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)))
  name_a, name_b = column_names(tree_a, tree_b)
  lines = [f"seeds {', '.join(map(str, seeds))}; test accuracy in %",
           "", f"| labels | {name_a} per seed | {name_b} per seed | {name_a} | {name_b} | "
           "difference |", "| --- | --- | --- | --- | --- | --- |"]
  all_a, all_b = [], []
  for n in budgets:
    va, vb = [a[s][n] for s in seeds], [b[s][n] for s in seeds]
    all_a += va
    all_b += vb
    lines.append(f"| {n} | {', '.join(f'{100 * v:.2f}' for v in va)} | "
                 f"{', '.join(f'{100 * v:.2f}' for v in vb)} | {_mean_std(va)} | "
                 f"{_mean_std(vb)} | {100 * (statistics.mean(va) - statistics.mean(vb)):+.2f} |")
  lines.append(f"| all | | | {_mean_std(all_a)} | {_mean_std(all_b)} | "
               f"{100 * (statistics.mean(all_a) - statistics.mean(all_b)):+.2f} |")
  return "\n".join(lines)


def main(argv) -> int:
  if len(argv) != 3:
    print("usage: python -m experiments.compare_runs TREE_A TREE_B", file=sys.stderr)
    return 2
  try:
    print(compare(argv[1], argv[2]))
  except (OSError, ValueError, KeyError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
