r"""Which early-stopping rule to use, decided on the validation split only.

  python -m experiments.stopping_study --config=fashion_mnist --out=FILE.jsonl \
      --labeled_from=TREE [--seeds=0,1] [--budgets=1000,3500,6000] [--config.FIELD=...]
  python -m experiments.stopping_study --summarize=FILE.jsonl[,FILE.jsonl...]

For each seed and budget it trains one network for the whole schedule
(`train.epochs`, no early stop) on the labeled set an active-learning run had at that
budget (`TREE/seed_<seed>/results.json`: its initial set plus the batches it bought),
and evaluates every epoch's network on two fixed halves of the validation split. A
rule picks an epoch with half A; its score is half B's accuracy at that epoch, so the
comparison is not biased towards the rule that looks at more epochs. Early stopping
only truncates a run (every epoch's draws depend on the epoch and step alone), so one
run per seed and budget answers for every rule:
  patience P  stop P epochs after the best half-A accuracy; keep that epoch's network;
  best        train every epoch, keep the best half-A epoch;
  last        train every epoch, keep the last.
The test split is never read. One JSON line per (strategy, seed, budget) is appended to
--out; rerunning skips those already there.
"""

import collections
import json
import os
import statistics
import time

from absl import app
from absl import flags
from absl import logging

from experiments import cli

_OUT = flags.DEFINE_string("out", None, "JSON-lines file the runs are appended to.")
_LABELED_FROM = flags.DEFINE_string("labeled_from", None,
                                    "Tree of runs (seed_<n>/results.json) giving the labeled "
                                    "set at each budget.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds.")
_BUDGETS = flags.DEFINE_list("budgets", ["1000", "3500", "6000"], "Labeled-set sizes.")
_SUMMARIZE = flags.DEFINE_list("summarize", [], "Only print the table of these files.")
PATIENCES = (5, 10, 20)


def labeled_at(results: dict, initial, budget: int):
  """The labeled pool indices of a run when it held `budget` labels."""
  labeled = list(initial)
  for record in results["rounds"]:
    if record["num_labeled"] == budget:
      assert len(labeled) == budget
      return labeled
    labeled += record["queried_indices"]
  raise ValueError(f"the run never held {budget} labels")


def rule_outcomes(selection_accuracy, held_out_accuracy, seconds):
  """{rule: (held-out accuracy of the chosen epoch, epochs trained, seconds)}."""
  epochs = len(selection_accuracy)
  outcomes = {}

  def chosen(upto):
    best = max(range(upto), key=lambda e: (selection_accuracy[e], -e))   # first best
    return held_out_accuracy[best]

  for patience in PATIENCES:
    best_epoch, stop = 0, epochs
    for e in range(epochs):
      if selection_accuracy[e] > selection_accuracy[best_epoch]:
        best_epoch = e
      if e - best_epoch >= patience:
        stop = e + 1
        break
    outcomes[f"patience {patience}"] = (chosen(stop), stop, sum(seconds[:stop]))
  outcomes["best of all epochs"] = (chosen(epochs), epochs, sum(seconds))
  outcomes["last epoch"] = (held_out_accuracy[-1], epochs, sum(seconds))
  return outcomes


def summarize(paths) -> str:
  rows = []
  for path in paths:
    with open(path) as f:
      rows += [json.loads(line) for line in f if line.strip()]
  table = collections.defaultdict(list)
  overall = collections.defaultdict(list)       # rule -> [(accuracy, epochs)] of all runs
  for row in rows:
    for rule, (accuracy, epochs, seconds) in rule_outcomes(
        row["val_a"], row["val_b"], row["seconds"]).items():
      table[row["strategy"], row["budget"], rule].append((accuracy, epochs, seconds))
      overall[rule].append((accuracy, epochs))
  lines = ["| strategy | labels | rule | held-out val. accuracy (%) | epochs | s per round |",
           "| --- | --- | --- | --- | --- | --- |"]
  for (strategy, budget, rule), values in sorted(table.items()):
    accuracy = [100 * v[0] for v in values]
    lines.append(f"| {strategy} | {budget} | {rule} | "
                 f"{statistics.mean(accuracy):.2f} ({', '.join(f'{a:.2f}' for a in accuracy)}) | "
                 f"{statistics.mean(v[1] for v in values):.0f} | "
                 f"{statistics.mean(v[2] for v in values):.0f} |")
  # Over every run: each rule's mean, and its paired difference to the best rule
  # (the runs are the same networks, so the difference has a small spread).
  best = max(overall, key=lambda r: statistics.mean(a for a, _ in overall[r]))
  lines += ["", f"All {len(rows)} runs (paired against the best rule, {best}):", "",
            "| rule | held-out val. accuracy (%) | difference to the best (mean +- s.e.) | "
            "epochs |", "| --- | --- | --- | --- |"]
  for rule in sorted(overall):
    accuracy = [100 * a for a, _ in overall[rule]]
    diff = [x - 100 * b for x, (b, _) in zip(accuracy, overall[best])]
    error = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else 0.0
    lines.append(f"| {rule} | {statistics.mean(accuracy):.2f} | "
                 f"{statistics.mean(diff):+.2f} +- {error:.2f} | "
                 f"{statistics.mean(e for _, e in overall[rule]):.1f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if _SUMMARIZE.value:
    print(summarize(_SUMMARIZE.value))
    return
  if not (_OUT.value and _LABELED_FROM.value):
    cli.fail("--out and --labeled_from are required (or --summarize)")
  logging.set_verbosity(logging.WARNING)
  from waal_jax import xla_tuning  # pylint: disable=g-import-not-at-top
  xla_tuning.tune_cpu_flags()
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top

  config = cli.CONFIG.value
  done = set()
  if os.path.exists(_OUT.value):
    with open(_OUT.value) as f:
      done = {(r["strategy"], r["seed"], r["budget"]) for r in map(json.loads, f) if r}
  for seed in map(int, _SEEDS.value):
    with config.unlocked():
      config.seed = seed
      config.train.patience = 0                 # every epoch: the rules truncate later
      config.train.model_selection = "last"
    try:
      exp = loop.build(config, log=cli.log)
      with open(os.path.join(_LABELED_FROM.value, f"seed_{seed}", "results.json")) as f:
        source = json.load(f)
    except (UserError, OSError) as e:
      cli.fail(str(e))
    if source["config"]["seed"] != seed or source["config"]["data"]["pool_size"] != -1:
      cli.fail(f"{_LABELED_FROM.value}/seed_{seed}: not a whole-pool run of seed {seed}")
    trainer = exp.trainer
    val = exp.splits.val_images, exp.splits.val_labels
    order = np.random.default_rng([seed, 0xA11]).permutation(len(val[1]))
    halves = [trainer.eval_set(val[0][part], val[1][part])
              for part in np.array_split(order, 2)]
    initial = loop.initial_labeled(jax.random.key(seed), len(exp.splits.pool_labels),
                                   exp.al.initial_labeled)
    strategy = config.query.strategy
    for budget in map(int, _BUDGETS.value):
      if (strategy, seed, budget) in done:
        continue
      labeled = np.asarray(labeled_at(source, initial, budget))
      accuracy = {"val_a": [], "val_b": []}

      def on_epoch(record, variables):
        del record
        for name, half in zip(("val_a", "val_b"), halves):
          accuracy[name].append(trainer.accuracy(variables, half))

      cli.log(f"{strategy}, seed {seed}, {budget} labels: {exp.settings.train.epochs} epochs")
      start = time.time()
      fit = trainer.fit(jax.random.fold_in(jax.random.key(seed), budget), exp.device_data,
                        labeled, exp.al.query_size, log=lambda _: None, on_epoch=on_epoch)
      row = {"strategy": strategy, "seed": seed, "budget": budget,
             "adversarial": exp.settings.train.adversarial, **accuracy,
             "seconds": [e["seconds"] for e in fit.epochs], "wall_seconds": time.time() - start,
             "labeled_from": _LABELED_FROM.value}
      with open(_OUT.value, "a") as f:
        f.write(json.dumps(row) + "\n")
      cli.log(f"  best half-A epoch {int(np.argmax(accuracy['val_a'])) + 1}, "
              f"{time.time() - start:.0f}s")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.make_flags_parser())
