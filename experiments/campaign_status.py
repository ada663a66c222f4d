"""Where a campaign of runs (OUT/<arm>/seed_<k>, as experiments.table4 makes it) stands:
per arm and seed the rounds recorded, the hours spent, and an estimate of the hours
left from the times the runs recorded. Used by `experiments.table4 --status`.
"""

import json
import os

from experiments import report


def status(out: str, arms: list, seeds: int, rounds: dict) -> list:
  """Per arm: the runs' rounds recorded (seed order), hours spent and hours left.

  `rounds[arm]` is the arm's number of rounds (al.rounds + 1). A round not yet recorded
  is estimated at the mean time of that round in the arm's seeds that recorded it (else
  at the mean of all the arm's recorded rounds; unknown, None, if it has none). Times
  are what the runs recorded (report.own_seconds), so they hold for the machine and load
  they ran under.
  Returns [{"arm", "rounds": [per seed: count, or None if its results.json cannot be
  read], "hours", "hours_left"}].
  """
  rows = []
  for arm in arms:
    recorded = []
    for seed in range(seeds):
      path = os.path.join(out, arm, f"seed_{seed}", "results.json")
      try:
        with open(path) as f:
          recorded.append([report.own_seconds(r) for r in json.load(f)["rounds"]])
      except FileNotFoundError:
        recorded.append([])
      except (OSError, ValueError, KeyError, TypeError):
        recorded.append(None)
    readable = [r for r in recorded if r is not None]
    every = [t for r in readable for t in r]
    missing = [index for run in readable for index in range(len(run), rounds[arm])]
    if not missing:
      left = 0.0
    elif not every:
      left = None                                  # nothing recorded to estimate from
    else:
      left = sum(_mean([r[index] for r in readable if len(r) > index] or every)
                 for index in missing)
    rows.append({"arm": arm, "rounds": [None if r is None else len(r) for r in recorded],
                 "hours": sum(every) / 3600,
                 "hours_left": None if left is None else left / 3600})
  return rows


def _mean(values: list) -> float:
  return sum(values) / len(values)


def table(rows: list, rounds: dict, seeds: int, parallel: int) -> str:
  """`status` rows as a Markdown table, then a line of totals."""
  def cell(count, total):
    return "?" if count is None else "done" if count == total else f"{count}/{total}"
  lines = ["| arm | " + " | ".join(f"seed {s}" for s in range(seeds)) + " | hours | hours left |",
           "| --- " * (seeds + 3) + "|"]
  for row in rows:
    left = "?" if row["hours_left"] is None else f"{row['hours_left']:.1f}"
    lines.append(f"| {row['arm']} | "
                 + " | ".join(cell(c, rounds[row["arm"]]) for c in row["rounds"])
                 + f" | {row['hours']:.1f} | {left} |")
  known = [r["hours_left"] for r in rows if r["hours_left"] is not None]
  unknown = [r["arm"] for r in rows if r["hours_left"] is None]
  damaged = any(None in r["rounds"] for r in rows)
  lines += ["", f"{sum(r['hours'] for r in rows):.1f} process-hours spent; {sum(known):.1f} left"
            + (f" besides {', '.join(unknown)} (no round recorded)" if unknown else "")
            + f", about {sum(known) / parallel:.1f} hours at --parallel={parallel}"
            + (" ('?': a results.json that cannot be read)." if damaged else ".")]
  return "\n".join(lines)
