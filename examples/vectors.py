"""Vectors, not images: WAAL against Margin and Random on 64-d feature vectors.

Frozen text or tabular embeddings are handled the same way: float arrays (N, D), an
MLP extractor (`waal_jax.MLPExtractor`), the default classifier and critic heads. The
vectors here are scikit-learn's handwritten digits as 64 pixel values in [0, 1]. The
numbers it prints are one seed on a small pool: a demonstration, not a benchmark.

    python examples/vectors.py          # a few minutes on a laptop CPU
"""

import numpy as np
from sklearn.datasets import load_digits

import waal_jax


def main(strategies=("waal", "margin", "random"), epochs: int = 40, rounds: int = 4,
         initial: int = 50, query_size: int = 50, seed: int = 0, log=print) -> dict:
  digits = load_digits()
  vectors = (digits.data / 16.0).astype(np.float32)                       # (1797, 64)
  order = np.random.default_rng(seed).permutation(len(vectors))
  test, val, pool = order[:400], order[400:600], order[600:]
  curves = {}
  for strategy in strategies:
    labels = np.full(len(pool), -1)
    labels[:initial] = digits.target[pool[:initial]]
    learner = waal_jax.ActiveLearner(
        waal_jax.Model(waal_jax.MLPExtractor(hidden=(128, 64)), num_classes=10),
        vectors[pool], labels=labels, strategy=strategy, query_size=query_size, seed=seed,
        validation=(vectors[val], digits.target[val]),
        # Every arm takes as many steps an epoch as WAAL (which walks the unlabeled pool):
        # the project's controls found WAAL's lead on Fashion-MNIST to be its longer
        # training, so a fair comparison gives the baselines the same.
        train=waal_jax.TrainSettings(epochs=epochs, learning_rate=0.05, patience=10,
                                     steps_per_epoch="match_pool"))
    curve = []
    for round_index in range(rounds + 1):
      learner.fit()
      curve.append(learner.accuracy(vectors[test], digits.target[test]))
      if round_index < rounds:
        picks = learner.query()
        learner.add_labels(picks, digits.target[pool[picks]])
    curves[strategy] = curve
    log(f"{strategy:>8}: " + " ".join(f"{a:.3f}" for a in curve)
        + f"  (test accuracy at {initial}, {initial + query_size}, ... labels)")
  return curves


if __name__ == "__main__":
  main()
