"""experiments.report on fabricated workdirs whose summary is computed by hand."""

import csv
import json
import os

import pytest

from conftest import run_module
from experiments import report


def _fabricate(path, strategy, seed, accuracies, *, steps_per_epoch="auto", rounds=None,
               epochs=10, adversarial="auto", fields=None):
  """A results.json as the driver writes it, with the given test accuracies (and per
  round, the `fields` given, e.g. calibration)."""
  os.makedirs(path)
  config = {"seed": seed, "data": {"name": "fashion_mnist", "pool_size": -1},
            "al": {"initial_labeled": 1000, "query_size": 500,
                   "rounds": rounds if rounds is not None else len(accuracies) - 1},
            "train": {"epochs": epochs, "variant": "paper", "adversarial": adversarial,
                      "steps_per_epoch": steps_per_epoch},
            "query": {"strategy": strategy}}
  history = [{"round": i, "num_labeled": 1000 + 500 * i, "test_accuracy": a,
              "val_accuracy": a, "train_seconds": 1.0, "query_seconds": 0.5,
              "queried_indices": [], "queried_class_counts": [50] * 10}
             for i, a in enumerate(accuracies)]
  for record, more in zip(history, fields or []):
    record.update(more)
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"config": config, "device": "cpu", "rounds": history}, f)


@pytest.fixture
def workdirs(tmp_path):
  # Two workdirs: a WAAL tree of two seeds, and one Random run (+ its match_pool control).
  _fabricate(tmp_path / "waal" / "seed_0", "waal", 0, [0.70, 0.80, 0.90])
  _fabricate(tmp_path / "waal" / "seed_1", "waal", 1, [0.74, 0.78, 0.86])
  _fabricate(tmp_path / "random", "random", 0, [0.60, 0.65, 0.70])
  _fabricate(tmp_path / "random_matched", "random", 0, [0.62, 0.66, 0.72],
             steps_per_epoch="match_pool")
  return [str(tmp_path / name) for name in ("waal", "random", "random_matched")]


def test_means_stds_and_aubc_by_hand(workdirs):
  summary = report.summarise(report.find_runs(workdirs))["fashion_mnist"]
  assert sorted(summary) == ["random", "random+match_pool", "waal"]
  waal = summary["waal"]
  assert waal.seeds == [0, 1]
  # 1,000 labels: 70 and 74 -> mean 72, sample std |70-74|/sqrt(2) = 2.8284.
  mean, std, n = waal.accuracy[1000]
  assert (mean, n) == (pytest.approx(72.0), 2) and std == pytest.approx(2.828427, abs=1e-5)
  assert waal.accuracy[1500][:2] == (pytest.approx(79.0), pytest.approx(1.414214, abs=1e-5))
  assert waal.accuracy[2000][:2] == (pytest.approx(88.0), pytest.approx(2.828427, abs=1e-5))
  # AUBC per seed: (70+80+90)/3 = 80 and (74+78+86)/3 = 79.333; mean 79.667, std 0.4714.
  assert waal.aubc[0] == pytest.approx(79.666667, abs=1e-5)
  assert waal.aubc[1] == pytest.approx(0.471405, abs=1e-5)
  assert summary["random"].aubc == (pytest.approx(65.0), 0.0)       # one seed: std 0
  assert summary["random+match_pool"].aubc[0] == pytest.approx(66.666667, abs=1e-5)


def test_every_budget_in_table_4_s_layout_with_the_paper_s_rows(workdirs, tmp_path):
  out = tmp_path / "report"
  report.write_report(workdirs, str(out))
  text = (out / "report.md").read_text()
  lines = text.splitlines()
  start = lines.index("| arm | n | 1,000 | 1,500 | 2,000 | AUBC |")
  # Table 4's layout: each strategy's paper row follows ours. WAAL 79.00 ± 1.41 against
  # 76.99 ± 1.05 differs by 2.01 > hypot(1.41, 1.05) = 1.76: above; 72.00 ± 2.83 against
  # 72.29 ± 1.16 does not. Random's 65 against 66.81 ± 1.02: below. The paper's AUBC over
  # these three budgets: (72.29 + 76.99 + 79.85) / 3 = 76.38, (58.03 + 66.81 + 71.21) / 3
  # = 65.35. The control has no paper row.
  assert lines[start + 2:start + 7] == [
      "| waal | 2 | 72.00 ± 2.83 | **79.00 ± 1.41 ▲** | **88.00 ± 2.83 ▲** | 79.67 ± 0.47 |",
      "| waal (paper) | | 72.29 ± 1.16 | 76.99 ± 1.05 | 79.85 ± 0.49 | 76.38 |",
      "| random | 1 | 60.00 ± 0.00 | **65.00 ± 0.00 ▼** | 70.00 ± 0.00 | 65.00 ± 0.00 |",
      "| random (paper) | | 58.03 ± 2.81 | 66.81 ± 1.02 | 71.21 ± 2.35 | 65.35 |",
      "| random+match_pool | 1 | 62.00 ± 0.00 | 66.00 ± 0.00 | 72.00 ± 0.00 | 66.67 ± 0.00 |"]
  with open(report.PAPER_ACCURACY) as f:      # the paper's Table 4, copied as data
    rows = {(r["table"], r["method"], int(r["num_labeled"])): r for r in csv.DictReader(f)}
  assert (rows[("table4", "waal", 1000)]["mean_accuracy_percent"],
          rows[("table4", "random", 1500)]["std_percent"]) == ("72.29", "1.02")
  assert (out / "fashion_mnist.png").stat().st_size > 10_000
  assert "50 50 50" in (out / "provenance.md").read_text()
  summary = json.loads((out / "summary.json").read_text())
  assert summary["fashion_mnist"]["waal"]["aubc"][0] == pytest.approx(79.666667, abs=1e-5)


def test_the_table_at_a_glance(workdirs, tmp_path):
  """WAAL: seeds [70, 80, 90] and [74, 78, 86]: 72.00 ± 2.83, 79.00 ± 1.41, 88.00 ± 2.83;
  AUBC 80.00 and 79.33 -> 79.67 ± 0.47, the paper's over 1,000-2,000 labels (72.29,
  76.99, 79.85) 76.38; as the paper only at 1,000 (|72.00 - 72.29| < hypot(2.83, 1.16));
  hours 2 seeds x 3 rounds x 1.5 s = 0.0025. Random (one seed, std 0): 60, 65, 70 against
  58.03 ± 2.81, 66.81 ± 1.02, 71.21 ± 2.35: within at 1,000 and 2,000, not at 1,500."""
  out = tmp_path / "r"
  report.write_report(workdirs, str(out))
  lines = (out / "report.md").read_text().splitlines()
  start = lines.index("| arm | n | 1,000 labels | 1,500 labels | 2,000 labels | AUBC (paper) "
                      "| as the paper | hours |")
  assert lines[start + 1] == "|" + " --- |" * 8
  rows = lines[start + 2:start + 5]
  # Best AUBC first: waal 79.67, random+match_pool 66.67, random 65.00.
  assert [r.split(" | ")[0] for r in rows] == ["| waal", "| random+match_pool", "| random"]
  # 79.00 - 76.99 = 2.01 exceeds hypot(1.41, 1.05) = 1.76: marked; 72.00 is not.
  assert rows[0].startswith("| waal | 2 | 72.00 ± 2.83 (72.29 ± 1.16) | **79.00 ± 1.41 "
                            "(76.99 ± 1.05) ▲** | **88.00 ± 2.83 (79.85 ± 0.49) ▲** |")
  assert rows[0].endswith("| 79.67 ± 0.47 (76.38) | 1 of 3 | 0.00 |")
  assert rows[1].endswith("| 66.67 ± 0.00 | - | 0.00 |")    # no paper figure for the control
  assert rows[2].endswith("| 2 of 3 | 0.00 |")
  assert report.glance_budgets(report.summarise(report.find_runs(workdirs))["fashion_mnist"]) \
      == [1000, 1500, 2000]


def test_every_arm_of_the_full_campaign_has_its_own_colour_and_marker():
  # 12 Table 4 arms and 4 newer strategies: matplotlib's default cycle repeats after 10.
  names = [f"arm{i}" for i in range(16)]
  styles = report.arm_styles(names)
  assert len({color for color, _ in styles.values()}) == 16
  assert [styles[n][1] for n in names] == ["o"] * 10 + ["s"] * 6
  # The first ten are tab10's colours in order (tab20's even entries).
  import matplotlib  # pylint: disable=g-import-not-at-top
  assert styles["arm1"][0] == matplotlib.colormaps["tab10"](1)


def test_a_strategy_trained_two_ways_is_drawn_as_a_pair():
  styles = report.line_styles(["waal", "random", "random/inferred", "margin/inferred"])
  own = report.arm_styles(["waal", "random", "margin/inferred"])
  assert styles["random/inferred"] == (*own["random"], "--")       # Random's colour, dashed
  assert styles["random"] == (*own["random"], "-")
  assert styles["margin/inferred"] == (*own["margin/inferred"], "-")  # no margin: its own
  assert len({styles[a][0] for a in ("waal", "random", "margin/inferred")}) == 3


def test_mixed_protocols_and_bad_folders_are_one_line(workdirs, tmp_path):
  _fabricate(tmp_path / "waal" / "seed_2", "waal", 2, [0.7, 0.8], rounds=1)
  done = run_module("experiments.report", f"--workdirs={workdirs[0]}",
                    f"--out={tmp_path / 'r'}")
  assert done.returncode == 1 and "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: fashion_mnist waal: runs of different protocols cannot be averaged")
  done = run_module("experiments.report", f"--workdirs={tmp_path / 'nothing'}",
                    f"--out={tmp_path / 'r'}")
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == f"error: --workdirs: {tmp_path / 'nothing'} is not a folder"


def test_a_labelled_tree_is_the_same_strategy_trained_another_way(workdirs, tmp_path):
  """Random trained 5 epochs (seeds 0, 1) beside the workdirs' Random trained 10: unlabelled
  they cannot be averaged; as short=DIR they are the arm random/short, beside the paper's
  Random, and paired with WAAL over seeds 0 and 1."""
  _fabricate(tmp_path / "short" / "seed_0", "random", 0, [0.58, 0.62, 0.66], epochs=5)
  _fabricate(tmp_path / "short" / "seed_1", "random", 1, [0.56, 0.60, 0.64], epochs=5)
  with pytest.raises(report.ReportError, match=r"fashion_mnist random: runs of different "
                     r"protocols .* \(to show both, label one tree: --workdirs=LABEL=DIR\)"):
    report.summarise(report.find_runs(workdirs + [str(tmp_path / "short")]))
  out = tmp_path / "r"
  content = report.write_report(workdirs + [f"short={tmp_path / 'short'}"], str(out))
  assert sorted(content["fashion_mnist"]) == ["random", "random+match_pool", "random/short",
                                              "waal"]
  assert content["fashion_mnist"]["random/short"]["accuracy"]["1000"][:2] == [
      pytest.approx(57.0), pytest.approx(1.414214, abs=1e-5)]
  lines = (out / "report.md").read_text().splitlines()
  # Both Random arms above the one paper row of Random: 61 and 65 (± 1.41) are below
  # 66.81 ± 1.02 and 71.21 ± 2.35 by more than the combined std; AUBC 62 and 60.
  start = lines.index("| random | 1 | 60.00 ± 0.00 | **65.00 ± 0.00 ▼** | 70.00 ± 0.00 "
                      "| 65.00 ± 0.00 |")
  assert lines[start + 1:start + 4] == [
      "| random/short | 2 | 57.00 ± 1.41 | **61.00 ± 1.41 ▼** | **65.00 ± 1.41 ▼** "
      "| 61.00 ± 1.41 |",
      "| random (paper) | | 58.03 ± 2.81 | 66.81 ± 1.02 | 71.21 ± 2.35 | 65.35 |",
      "| random+match_pool | 1 | 62.00 ± 0.00 | 66.00 ± 0.00 | 72.00 ± 0.00 | 66.67 ± 0.00 |"]
  # WAAL - random/short at 1,000 labels: 70-58 = 12 and 74-56 = 18; mean 15, sd 4.243,
  # t = 15 / (4.243 / sqrt 2) = 5.0 on 1 degree of freedom, p = 1 - 2 atan(5) / pi = 0.126.
  paired = [l for l in lines if l.startswith("| labels | waal - random")][0]
  row = lines[lines.index(paired) + 2]
  assert [c.strip() for c in paired.strip("|").split("|")][3] == "waal - random/short"
  assert [c.strip() for c in row.strip("|").split("|")][3] == "+15.00 (p=0.126, n=2)"
  with pytest.raises(report.ReportError, match="label 'a b' of a b=x: use letters"):
    report.find_runs(["a b=x"])


def test_a_report_of_chosen_seeds(workdirs, tmp_path):
  """--seeds=1 keeps WAAL's seed 1 (74, 78, 86: AUBC 79.33) and drops Random and its
  control, which ran seed 0 only; a seed no run has, or one that is not a number, is one
  line."""
  content = report.write_report(workdirs, str(tmp_path / "r"), seeds=[1])
  assert sorted(content["fashion_mnist"]) == ["waal"]
  assert content["fashion_mnist"]["waal"]["seeds"] == [1]
  assert content["fashion_mnist"]["waal"]["aubc"][0] == pytest.approx(79.333333, abs=1e-5)
  with pytest.raises(report.ReportError, match="--seeds: no run in --workdirs has seed 7"):
    report.write_report(workdirs, str(tmp_path / "r"), seeds=[7])
  done = run_module("experiments.report", f"--workdirs={workdirs[0]}", "--seeds=0,x",
                    f"--out={tmp_path / 'r'}")
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      "error: --seeds: 0,x is not a list of whole numbers")


def test_what_the_queries_bought_per_class(tmp_path):
  """Two seeds of one arm, three classes. Seed 0 bought [40, 10, 0] then [20, 30, 0],
  seed 1 [0, 0, 50]; its last round bought nothing and a person's round has no histogram
  yet: both are left out. Totals [60, 40, 50] of 150: 40.0, 26.7, 33.3 %. The largest
  class of each batch: 40/50, 30/50, 50/50 -> (0.8 + 0.6 + 1.0) / 3 = 80.0 %."""
  for seed, batches in ((0, [[40, 10, 0], [20, 30, 0], [0, 0, 0]]), (1, [[0, 0, 50], None])):
    path = tmp_path / "margin" / f"seed_{seed}"
    _fabricate(path, "margin", seed, [0.5] * len(batches))
    results = json.loads((path / "results.json").read_text())
    for record, counts in zip(results["rounds"], batches):
      record["queried_class_counts"] = counts
    (path / "results.json").write_text(json.dumps(results))
  shares = report.class_shares(report.find_runs([str(tmp_path)]))["fashion_mnist"]
  share, largest = shares["margin"]
  assert share == pytest.approx([40.0, 26.666667, 33.333333])
  assert largest == pytest.approx(80.0)
  assert report.class_share_table(shares) == [
      "| arm | class 0 | class 1 | class 2 | largest class of a batch |",
      "| --- | --- | --- | --- | --- |",
      "| margin | 40.0 | 26.7 | 33.3 | 80.0 |"]


def test_unfinished_runs_are_listed_not_counted(workdirs, tmp_path):
  # A third WAAL seed with 2 of its 3 rounds: it would move the 1,000-label mean.
  _fabricate(tmp_path / "waal" / "seed_2", "waal", 2, [0.10, 0.20], rounds=2)
  out = tmp_path / "report"
  content = report.write_report(workdirs, str(out))
  assert content["fashion_mnist"]["waal"]["seeds"] == [0, 1]
  assert content["fashion_mnist"]["waal"]["accuracy"]["1000"][0] == pytest.approx(72.0)
  assert "- fashion_mnist / waal / seed 2: 2 of 3" in (out / "report.md").read_text()


def test_paired_t_by_hand():
  # Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641 with 2 degrees of
  # freedom, whose two-sided p has the closed form 1 - t / sqrt(2 + t^2) = 0.074180.
  mean, t, p = report.paired_t([1.0, 2.0, 3.0])
  assert (mean, t) == (pytest.approx(2.0), pytest.approx(3.464102, abs=1e-6))
  assert p == pytest.approx(1 - 3.464102 / (2 + 3.464102**2) ** 0.5, abs=1e-6)
  assert report.paired_t([0.5]) is None                      # one seed: no test
  assert report.paired_t([2.0, 2.0, 2.0])[2] == 0.0          # no spread, a real difference
  assert report.paired_t([0.0, 0.0])[2] == 1.0
  # Only common seeds are paired: seed 2 of `a` has no partner.
  test, n = report.compare_paired({0: 80.0, 1: 82.0, 2: 99.0}, {0: 79.0, 1: 79.0})
  assert n == 2 and test[0] == pytest.approx(2.0)


def _three_arms(tmp_path):
  # WAAL beats Random by 10.0 +- ~0.1 points at every budget on 3 seeds (significant);
  # Margin is Random + (1, -1, 0.5): not significantly different from Random.
  for seed, noise in enumerate((0.0, 0.001, -0.001)):
    _fabricate(tmp_path / "waal" / f"seed_{seed}", "waal", seed,
               [0.80 + noise, 0.85 + noise, 0.90 + noise])
    _fabricate(tmp_path / "random" / f"seed_{seed}", "random", seed, [0.70, 0.75, 0.80])
    bump = (0.01, -0.01, 0.005)[seed]
    _fabricate(tmp_path / "margin" / f"seed_{seed}", "margin", seed,
               [0.70 + bump, 0.75 + bump, 0.80 + bump])
  return [str(tmp_path / name) for name in ("waal", "random", "margin")]


def test_penalty_matrix_labels_to_reach_and_time_by_hand(tmp_path):
  runs = report.find_runs(_three_arms(tmp_path))
  per_seed = report.seed_values(runs)["fashion_mnist"]
  wins = report.penalty_matrix(per_seed)
  assert wins["waal"] == {"random": 3, "margin": 3}       # every one of the 3 budgets
  assert wins["random"] == {"waal": 0, "margin": 0}
  assert wins["margin"] == {"waal": 0, "random": 0}       # mean +0.17, p = 0.81
  summary = report.summarise(runs)["fashion_mnist"]
  # Random ends at 80.00%; WAAL's mean is 80.00 at 1,000 labels already, Margin's
  # (81.0 + 79.0 + 80.5) / 3 = 80.17 at 2,000.
  target, reached = report.labels_to_reach(summary)
  assert target == pytest.approx(80.0)
  assert reached == {"waal": 1000, "random": 2000, "margin": 2000}
  # Each fabricated round: 1.0 s training, 0.5 s query, no eval time; 3 rounds, 3 seeds.
  timing = report.time_spent(runs)["fashion_mnist"]["waal"]
  assert (timing["train"], timing["query"], timing["eval"]) == (3.0, 1.5, 0.0)
  assert timing["hours"] == pytest.approx(3 * 4.5 / 3600)


def test_waals_lead_over_random_split_along_the_controls(tmp_path):
  """Seeds 0 and 1 at 1,000 and 1,500 labels (%): random 60/62 and 70/70, match_pool
  70/74 and 80/80, wasserstein 71/73 and 82/82, waal 72/76 and 84/86. Per-seed differences
  at 1,000: length 10, 12 (mean 11, sd 1.414, t 11 on 1 df, p = 2 atan(1/11) / pi =
  0.058); adversarial 1, -1 (t 0, p 1); query 1, 3 (t 2, p = 1 - 2 atan(2) / pi = 0.295);
  all 12, 14 (t 13, p = 2 atan(1/13) / pi = 0.049). At 1,500: 10, 10 and 2, 2 (sd 0:
  p 0); query 2, 4 (t 3, p 0.205); all 14, 16 (t 15, p 0.042)."""
  arms = {"random": ({}, ([0.60, 0.70], [0.62, 0.70])),
          "random_match_pool": ({"steps_per_epoch": "match_pool"},
                                ([0.70, 0.80], [0.74, 0.80])),
          "random_wasserstein": ({"adversarial": "wasserstein"}, ([0.71, 0.82], [0.73, 0.82])),
          "waal": ({}, ([0.72, 0.84], [0.76, 0.86]))}
  for name, (options, seeds) in arms.items():
    for seed, accuracies in enumerate(seeds):
      _fabricate(tmp_path / name / f"seed_{seed}", name.split("_")[0], seed, accuracies,
                 **options)
  per_seed = report.seed_values(report.find_runs([str(tmp_path)]))["fashion_mnist"]
  table = report.decomposition_table(per_seed)
  assert table[0] == ("| labels | training length: random+match_pool - random | adversarial "
                      "loss: random+wasserstein - random+match_pool | WAAL's query: waal - "
                      "random+wasserstein | all three: waal - random |")
  assert table[2:] == [
      "| 1,000 | +11.00 (p=0.058, n=2) | +0.00 (p=1.000, n=2) | +2.00 (p=0.295, n=2) | "
      "**+13.00 (p=0.049, n=2)** |",
      "| 1,500 | **+10.00 (p=0.000, n=2)** | **+2.00 (p=0.000, n=2)** | +3.00 (p=0.205, n=2) "
      "| **+15.00 (p=0.042, n=2)** |"]
  del per_seed["random+wasserstein"]          # without every control: no table
  assert report.decomposition_table(per_seed) == []


def test_seeds_trained_together_share_their_training_seconds(tmp_path):
  """Vmapped seeds record the batch's training seconds in each seed's rounds."""
  workdirs = _three_arms(tmp_path)
  for seed in range(3):
    path = tmp_path / "waal" / f"seed_{seed}" / "results.json"
    results = json.loads(path.read_text())
    for record in results["rounds"]:
      record["trained_with_seeds"] = [0, 1, 2]
    path.write_text(json.dumps(results))
  timing = report.time_spent(report.find_runs(workdirs))["fashion_mnist"]
  # Per seed and round: 1.0 s of training shared by 3 seeds, plus its own 0.5 s query.
  assert timing["waal"]["train"] == 3.0                      # as each seed recorded it
  assert timing["waal"]["hours"] == pytest.approx(3 * 3 * (1.0 / 3 + 0.5) / 3600)
  assert timing["random"]["hours"] == pytest.approx(3 * 4.5 / 3600)   # trained alone


def test_control_arms_have_names_of_their_own():
  base = {"query": {"strategy": "random"}, "train": {"adversarial": "auto", "variant": "paper"}}
  assert report.arm_name(base) == "random"
  control = {**base, "train": {"adversarial": "wasserstein", "variant": "paper"}}
  assert report.arm_name(control) == "random+wasserstein"
  reference = {"query": {"strategy": "waal"},
               "train": {"adversarial": "wasserstein", "variant": "reference"}}
  assert report.arm_name(reference) == "waal+reference"
  paper = report.load_paper()
  assert report.paper_cell(paper, "fashion_mnist", "random+wasserstein", 1000) is None
  assert report.paper_cell(paper, "fashion_mnist", "random", 1000) == (58.03, 2.81)
  deepal_2018 = {"query": {"strategy": "deepfool", "deepfool_boundary": "last_class"},
                 "train": {"adversarial": "auto", "variant": "paper"}}
  assert report.arm_name(deepal_2018) == "deepfool+last_class"
  assert report.paper_cell(paper, "fashion_mnist", "deepfool+last_class/inferred",
                           6000) == (78.99, 0.33)


def _calibrated(path, strategy, seed, accuracies, ece, nll, brier, per_class, kappas):
  """A run whose rounds record calibration, accuracy per class and the stop-set kappa:
  per_class is (first round's, every later round's)."""
  _fabricate(path, strategy, seed, accuracies, fields=[
      {"test_ece": e, "test_nll": n, "test_brier": b, "stop_set_kappa": k,
       "test_per_class_accuracy": per_class[0] if i == 0 else per_class[1]}
      for i, (e, n, b, k) in enumerate(zip(ece, nll, brier, kappas))])


@pytest.fixture(scope="module")
def calibrated_report(tmp_path_factory):
  """Six rounds (1,000 to 3,500 labels) of WAAL and Random, two seeds each, with the new
  fields, beside an older Margin run without them; the report with the default signal
  (kappa >= 0.99 for 2 rounds). Returns (report.md's lines, summary.json, OUT).

  WAAL seed 0's kappas 0.99, 0.98, 0.99, 0.995, 0.999 fire at round 4 (3,000 labels):
  not at round 1 (one round is not two), not at round 5 (0.99 counts, >= not >).
  Seed 1's (0.5, 0.99, 0.98, 0.99, 0.97) never hold for two rounds."""
  root = tmp_path_factory.mktemp("calibrated")
  steps = range(6)
  tail = [0.9] * 7 + [None]                   # classes 2-8, and class 9 without examples
  _calibrated(root / "waal" / "seed_0", "waal", 0, [0.70, 0.75, 0.78, 0.80, 0.82, 0.85],
              [0.10 - 0.01 * i for i in steps], [0.9 - 0.05 * i for i in steps],
              [0.30 - 0.02 * i for i in steps], ([0.6, 0.8] + tail, [0.7, 1.0] + tail),
              [None, 0.99, 0.98, 0.99, 0.995, 0.999])
  _calibrated(root / "waal" / "seed_1", "waal", 1, [0.72, 0.74, 0.76, 0.78, 0.80, 0.81],
              [0.14 - 0.01 * i for i in steps], [0.7 - 0.05 * i for i in steps],
              [0.36 - 0.02 * i for i in steps], ([0.8, 0.8] + tail, [0.9, 0.9] + tail),
              [None, 0.5, 0.99, 0.98, 0.99, 0.97])
  # Random seed 0 fires at round 2 (2,000 labels, 66%) and ends lower (63%); seed 1 at
  # round 3 (2,500, 64%) and ends higher (68%).
  _calibrated(root / "random" / "seed_0", "random", 0, [0.60, 0.62, 0.66, 0.65, 0.64, 0.63],
              [0.05] * 6, [0.5] * 6, [0.2] * 6, ([0.6] * 9 + [None],) * 2,
              [None, 1.0, 1.0, 0.9, 1.0, 1.0])
  _calibrated(root / "random" / "seed_1", "random", 1, [0.60, 0.61, 0.62, 0.64, 0.66, 0.68],
              [0.05] * 6, [0.5] * 6, [0.2] * 6, ([0.6] * 9 + [None],) * 2,
              [None, 0.9, 1.0, 1.0, 1.0, 1.0])
  _fabricate(root / "margin", "margin", 0, [0.65, 0.70, 0.72, 0.74, 0.76, 0.78])
  out = root / "report"
  report.write_report([str(root)], str(out))
  return ((out / "report.md").read_text().splitlines(),
          json.loads((out / "summary.json").read_text())["fashion_mnist"], out)


def test_calibration_per_budget_and_arm_by_hand(calibrated_report):
  """WAAL at 1,000 labels: ECE 0.10 and 0.14 -> 0.120 ± |0.10 - 0.14| / sqrt 2 = 0.028;
  NLL 0.9 and 0.7 -> 0.800 ± 0.141; Brier 0.30 and 0.36 -> 0.330 ± 0.042. Random's seeds
  agree: std 0. Margin's rounds record none: no row."""
  lines, summary, out = calibrated_report
  start = lines.index("| labels | arm | n | ECE | NLL | Brier |")
  assert lines[start + 2:start + 5] == [
      "| 1,000 | waal | 2 | 0.120 ± 0.028 | 0.800 ± 0.141 | 0.330 ± 0.042 |",
      "| 1,000 | random | 2 | 0.050 ± 0.000 | 0.500 ± 0.000 | 0.200 ± 0.000 |",
      "| 1,500 | waal | 2 | 0.110 ± 0.028 | 0.750 ± 0.141 | 0.310 ± 0.042 |"]
  assert not any("| margin |" in line for line in lines[start:start + 14])
  assert summary["waal"]["calibration"]["1000"]["ece"] == [
      pytest.approx(0.12), pytest.approx(0.028284, abs=1e-6), 2]
  assert summary["waal"]["calibration"]["3500"]["nll"][:2] == [
      pytest.approx(0.55), pytest.approx(0.141421, abs=1e-6)]
  assert "calibration" not in summary["margin"]
  assert (out / "fashion_mnist_calibration.png").stat().st_size > 10_000


def test_waal_calibration_against_each_arm_paired_by_seed(calibrated_report):
  """ECE at 1,000 labels, WAAL minus Random per seed: 0.10 - 0.05 = 0.05 and 0.14 - 0.05
  = 0.09: mean +0.070, sd 0.0283, t = 0.070 / (0.0283 / sqrt 2) = 3.5 on 1 degree of
  freedom, p = 2 (1/2 - atan(3.5) / pi) = 0.177. NLL: 0.4 and 0.2, t = 3, p = 0.205.
  Margin records no calibration: no column."""
  lines, _, _ = calibrated_report
  start = lines.index("WAAL's ECE against each arm: mean of the per-seed differences "
                      "(negative: WAAL's is lower), paired t-test over the seeds both have.")
  assert lines[start + 2:start + 5] == [
      "| labels | waal - random |", "| --- | --- |", "| 1,000 | +0.070 (p=0.177, n=2) |"]
  start = lines.index("WAAL's NLL against each arm: mean of the per-seed differences "
                      "(negative: WAAL's is lower), paired t-test over the seeds both have.")
  assert lines[start + 4] == "| 1,000 | +0.300 (p=0.205, n=2) |"


def test_accuracy_per_class_at_the_first_and_last_budget(calibrated_report):
  """WAAL's classes 0 and 1: (60, 80) and (80, 80) at 1,000 labels -> 70.0, 80.0; (70,
  100) and (90, 90) at 3,500 -> 80.0, 95.0. Class 9 has no test example: -."""
  lines, summary, _ = calibrated_report
  header = ("| arm | labels | n | t-shirt_top | trouser | pullover | dress | coat | sandal | "
            "shirt | sneaker | bag | ankle_boot |")
  start = lines.index(header)
  assert lines[start + 2:start + 6] == [
      "| waal | 1,000 | 2 | 70.0 | 80.0" + " | 90.0" * 7 + " | - |",
      "| waal | 3,500 | 2 | 80.0 | 95.0" + " | 90.0" * 7 + " | - |",
      "| random | 1,000 | 2" + " | 60.0" * 9 + " | - |",
      "| random | 3,500 | 2" + " | 60.0" * 9 + " | - |"]
  assert summary["waal"]["per_class_accuracy"]["3500"][:2] == [pytest.approx(80.0),
                                                               pytest.approx(95.0)]
  assert summary["waal"]["per_class_accuracy"]["3500"][9] is None
  # Names only where they fit the classes recorded.
  assert report.class_labels("svhn_cropped", 3) == ["0", "1", "2"]
  assert report.class_labels("fashion_mnist", 3) == ["0", "1", "2"]


def test_where_the_stopping_signal_fires_and_the_accuracy_given_up(calibrated_report):
  """WAAL seed 0 stops at 3,000 labels with 82%, its last round has 85%: 3 points given
  up by stopping (last minus stop: positive). Seed 1 never stops: WAAL is not starred.
  Random: 2,000 (66%, ends at 63: -3) and 2,500 (64%, ends at 68: +4): mean 2,250,
  65.00 ± 1.41 %, +0.50 ± 7 / sqrt 2 = 4.95 points."""
  lines, summary, _ = calibrated_report
  start = lines.index("| arm | stopped at, per seed | mean labels | test % at the stop | "
                      "given up (points) |")
  assert lines[start + 2:start + 5] == [
      "| waal | seed 0: 3,000, seed 1: not within the budget | 3,000 (1 of 2 seeds; not "
      "marked on the plot) | 82.00 ± 0.00 | +3.00 ± 0.00 |",
      "| random | seed 0: 2,000, seed 1: 2,500 | 2,250 | 65.00 ± 1.41 | +0.50 ± 4.95 |", ""]
  waal = summary["waal"]["stopping"]
  assert (waal["threshold"], waal["rounds"], waal["seeds_fired"], waal["marked"]) == (
      0.99, 2, 1, False)
  assert waal["per_seed"]["0"] == {"labels": 3000, "round": 4,
                                   "test_accuracy": pytest.approx(82.0),
                                   "given_up": pytest.approx(3.0)}
  assert waal["per_seed"]["1"] is None
  random = summary["random"]["stopping"]
  assert random["marked"] and random["mean_labels"] == 2250
  assert random["per_seed"]["0"]["given_up"] == pytest.approx(-3.0)
  assert random["given_up"] == [pytest.approx(0.5), pytest.approx(4.949747, abs=1e-6)]
  assert "stopping" not in summary["margin"]
  # How close the seeds came: WAAL's mean kappa at 1,500 labels (0.99 + 0.5) / 2.
  start = lines.index("| arm | 1,500 | 2,000 | 2,500 | 3,000 | 3,500 |")
  assert lines[start + 2:start + 4] == [
      "| waal | 0.7450 | 0.9850 | 0.9850 | 0.9925 | 0.9845 |",
      "| random | 0.9500 | 1.0000 | 0.9500 | 1.0000 | 1.0000 |"]
  assert summary["waal"]["stop_set_kappa"]["3000"] == pytest.approx(0.9925)


def test_the_signal_s_threshold_and_rounds_are_flags(calibrated_report, tmp_path):
  """One round >= 0.99 suffices with --stop_rounds=1: WAAL seed 0 at round 1 (1,500
  labels), seed 1 at round 2 (2,000). Out of range: one line."""
  points = report.stop_points(report.find_runs([str(calibrated_report[2].parent)]), 0.99, 1)
  assert {seed: p.labels for seed, p in points["fashion_mnist"]["waal"].items()} == {
      0: 1500, 1: 2000}
  with pytest.raises(report.ReportError, match=r"--stop_kappa: 1\.5 is not a kappa"):
    report.write_report([str(tmp_path)], str(tmp_path / "r"), stop_kappa=1.5)
  done = run_module("experiments.report", f"--workdirs={tmp_path}", "--stop_rounds=0",
                    f"--out={tmp_path / 'r'}")
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      "error: --stop_rounds: 0; the signal needs at least 1 round")


def test_older_results_give_the_report_as_before(workdirs, tmp_path):
  """Rounds without calibration, per-class accuracy or kappa: no new section, plot or
  summary key."""
  out = tmp_path / "r"
  content = report.write_report(workdirs, str(out))
  assert not any(line.startswith("### ") for line in (out / "report.md").read_text().splitlines())
  assert sorted(os.listdir(out)) == ["fashion_mnist.png", "provenance.md", "report.md",
                                     "summary.json"]
  assert {key for arm in content["fashion_mnist"].values() for key in arm} == {
      "seeds", "protocol", "accuracy", "aubc", "seconds"}
