"""The README's Python snippet and examples/ run as a user runs them."""

import csv
import os
import re
import subprocess
import sys

from sklearn.datasets import load_digits

from conftest import ROOT

EXAMPLES = os.path.join(ROOT, "examples")


def _outside_the_repository(args, cwd, timeout=600):
  """Runs python with `args` in `cwd`, with no path into the repository: waal_jax must
  come from the installed package, as it does for a user."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


def test_the_readme_s_first_python_block_runs_from_any_folder(tmp_path):
  with open(os.path.join(ROOT, "README.md")) as f:
    snippet = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
  script = tmp_path / "snippet.py"
  script.write_text(snippet + "\nassert len(set(to_label.tolist())) == 500\n"
                    "assert not (labels[to_label] >= 0).any()\n")
  done = _outside_the_repository([str(script)], tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  assert len(done.stdout.split()) >= 10


def test_own_cnn_learns_the_digits_in_two_rounds():
  sys.path.insert(0, EXAMPLES)
  try:
    import own_cnn  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  finally:
    sys.path.remove(EXAMPLES)
  accuracies = own_cnn.main(epochs=3, rounds=2, query_size=50, log=lambda _: None)
  assert len(accuracies) == 3
  assert min(accuracies) > 0.5      # ten classes: chance is 0.1


def test_vectors_compares_the_strategies_on_one_pool():
  sys.path.insert(0, EXAMPLES)
  try:
    import vectors  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  finally:
    sys.path.remove(EXAMPLES)
  curves = vectors.main(epochs=40, rounds=1, log=lambda _: None)
  assert set(curves) == {"waal", "margin", "random"}
  assert all(len(curve) == 2 and min(curve) > 0.5 for curve in curves.values())
  # One seed, one pool: the arms start from the same labels with the same training.
  assert curves["margin"][0] == curves["random"][0]


def test_no_oracle_queries_exits_and_a_second_process_adds_the_labels(tmp_path):
  state = tmp_path / "state"
  script = os.path.join(EXAMPLES, "no_oracle.py")
  first = _outside_the_repository([script, "query", str(state)], tmp_path)
  assert first.returncode == 0, first.stderr[-3000:]
  with open(state / "to_label.csv") as f:
    asked = [int(row["index"]) for row in csv.DictReader(f)]
  assert len(set(asked)) == 50 and min(asked) >= 100       # the first 100 were labeled
  targets = load_digits().target
  answers = tmp_path / "answers.csv"
  answers.write_text("index,label\n" + "".join(f"{i},{targets[i]}\n" for i in asked))
  second = _outside_the_repository([script, "label", str(state), str(answers)], tmp_path)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "50 labels added (150 in all)" in second.stdout
  with open(state / "to_label.csv") as f:
    again = [int(row["index"]) for row in csv.DictReader(f)]
  assert len(set(again)) == 50 and not set(again) & set(asked) and min(again) >= 100
  # A person's mistake: an index already labeled is one line and exit status 1.
  answers.write_text("index,label\n0,3\n")
  third = _outside_the_repository([script, "label", str(state), str(answers)], tmp_path)
  assert third.returncode == 1
  assert third.stderr.strip() == "error: indices: 0 is already labeled"
