"""No oracle at hand: query, save, exit; later, another process adds the labels.

    python examples/no_oracle.py query STATE_DIR        # writes STATE_DIR/to_label.csv
    # ... a person fills in the label column, days later ...
    python examples/no_oracle.py label STATE_DIR FILE    # adds them, trains, queries again

FILE is a CSV `index,label`; STATE_DIR keeps the learner (its labels and network, saved
with Orbax). The data are scikit-learn's digits as 64-d vectors.
"""

import csv
import os
import sys

import numpy as np
from sklearn.datasets import load_digits

import waal_jax


def make_learner(epochs: int):
  digits = load_digits()
  vectors = (digits.data / 16.0).astype(np.float32)
  labels = np.full(len(vectors), -1)
  labels[:100] = digits.target[:100]
  return waal_jax.ActiveLearner(
      waal_jax.Model(waal_jax.MLPExtractor(hidden=(64,)), num_classes=10), vectors,
      labels=labels, strategy="waal", query_size=50,
      train=waal_jax.TrainSettings(epochs=epochs))


def write_request(learner, state_dir: str) -> str:
  picks = learner.query()
  learner.save(state_dir)
  path = os.path.join(state_dir, "to_label.csv")
  with open(path, "w", newline="") as f:
    csv.writer(f).writerows([("index", "label")] + [(int(i), "") for i in picks])
  return path


def query(state_dir: str, epochs: int = 20) -> str:
  learner = make_learner(epochs)
  learner.fit()
  path = write_request(learner, state_dir)
  print(f"label the examples of {path} (fill in the label column), then run "
        f"`python {sys.argv[0]} label {state_dir} FILE`")
  return path


def label(state_dir: str, answers: str, epochs: int = 20) -> str:
  learner = make_learner(epochs).restore(state_dir)
  with open(answers, newline="") as f:
    rows = list(csv.DictReader(f))
  try:
    indices = [int(row["index"]) for row in rows]
    labels = [int(row["label"]) for row in rows]
  except (KeyError, ValueError) as e:
    raise waal_jax.UserError(f"{answers}: every row needs an integer index and label ({e})")
  learner.add_labels(indices, labels)
  learner.fit()
  path = write_request(learner, state_dir)
  print(f"{len(indices)} labels added ({len(learner.labeled)} in all); the next batch is "
        f"in {path}")
  return path


if __name__ == "__main__":
  try:
    if sys.argv[1:2] == ["query"] and len(sys.argv) == 3:
      query(sys.argv[2])
    elif sys.argv[1:2] == ["label"] and len(sys.argv) == 4:
      label(sys.argv[2], sys.argv[3])
    else:
      sys.exit(__doc__)
  except waal_jax.UserError as e:
    sys.exit(f"error: {e}")
