"""Your own Flax CNN on your own uint8 images: WAAL for two query rounds.

The images are scikit-learn's handwritten digits (1,797 images of 8x8 pixels), held as
uint8 arrays as your own would be. Batch norm and dropout in your module just work:
padding rows stay out of the batch statistics, and MC-dropout strategies find the
dropout layers themselves.

    python examples/own_cnn.py          # about a minute on a laptop CPU
"""

import flax.linen as nn
import numpy as np
from sklearn.datasets import load_digits

import waal_jax


class SmallCNN(nn.Module):
  """Any module from inputs to (batch, features) fits the model contract."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Conv(32, (3, 3))(x))
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.Dropout(0.25, deterministic=not train)(x)
    x = nn.max_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
    return x.reshape(x.shape[0], -1)                                   # (B, 512)


def digit_images():
  digits = load_digits()
  images = (digits.images[..., None] * 255 / 16).round().astype(np.uint8)   # (N, 8, 8, 1)
  return images, digits.target


def main(epochs: int = 20, rounds: int = 2, query_size: int = 100, log=print) -> list:
  images, targets = digit_images()
  order = np.random.default_rng(0).permutation(len(images))
  test, pool = order[:400], order[400:]                      # a test split, and the pool
  labels = np.full(len(pool), -1)                            # -1: nobody labeled it yet
  labels[:100] = targets[pool[:100]]
  learner = waal_jax.ActiveLearner(
      waal_jax.Model(SmallCNN(), num_classes=10), images[pool], labels=labels,
      strategy="waal", query_size=query_size, train=waal_jax.TrainSettings(epochs=epochs))
  accuracies = []
  for round_index in range(rounds + 1):
    learner.fit()
    accuracies.append(learner.accuracy(images[test], targets[test]))
    log(f"round {round_index}: {len(learner.labeled)} labels, test accuracy "
        f"{accuracies[-1]:.3f}")
    if round_index < rounds:
      picks = learner.query()                   # the indices a person would label
      learner.add_labels(picks, targets[pool[picks]])
  return accuracies


if __name__ == "__main__":
  main()
