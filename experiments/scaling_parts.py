"""The scaling benchmark's pools, its process limits and its fit (experiments/scaling.py
runs them). No flags here, so that tests import it beside the other tools."""

import math
import os
import time

import numpy as np

BASE_COUNT = 60000      # Fashion-MNIST's training images: copy 0 of every pool
EMBEDDING_DIM = 128
SEED = 0


def base_images():
  """Fashion-MNIST's training images (60000, 28, 28, 1) uint8 and labels."""
  from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  raw = data_lib.load_raw("fashion_mnist", download=False)
  return raw.train_images, raw.train_labels


def base_vectors(images, cache_dir: str):
  """The images' first EMBEDDING_DIM principal components, unit variance: (60000, 128)
  float32, cached (the SVD takes a few seconds)."""
  path = os.path.join(cache_dir, "vectors.npy")
  if os.path.exists(path):
    return np.load(path)
  x = images.reshape(len(images), -1).astype(np.float64) / 255.0
  x -= x.mean(axis=0)
  _, _, vt = np.linalg.svd(x[::6], full_matrices=False)   # 10,000 rows fix the axes
  vectors = x @ vt[:EMBEDDING_DIM].T
  vectors /= vectors.std(axis=0)
  os.makedirs(cache_dir, exist_ok=True)
  np.save(path, vectors.astype(np.float32))
  return np.load(path)


def make_pool(kind: str, size: int, cache_dir: str):
  """The pool of `size` examples (`cache_dir` keeps the principal components): copy c of the base (rows c * 60000 ..) perturbed with
  its own generator (copy 0 as it is), so a pool's first rows are every smaller pool."""
  images, labels = base_images()
  base = images if kind == "images" else base_vectors(images, cache_dir)
  pool = np.empty((size, *base.shape[1:]), base.dtype)
  for copy, start in enumerate(range(0, size, BASE_COUNT)):
    rows = min(BASE_COUNT, size - start)
    part = base[:rows]
    if copy:
      rng = np.random.default_rng([SEED, copy])
      if kind == "images":
        noise = rng.integers(-2, 3, size=part.shape, dtype=np.int16)
        part = np.clip(part.astype(np.int16) + noise, 0, 255).astype(np.uint8)
      else:
        part = part + rng.normal(0.0, 0.05, size=part.shape).astype(np.float32)
    pool[start:start + rows] = part
  return pool, np.resize(labels, size)


def labeled_mask(size: int, count: int):
  mask = np.zeros(size, bool)
  mask[np.random.default_rng(SEED).permutation(min(size, BASE_COUNT))[:count]] = True
  return mask


def watch(process, limit_seconds: float, limit_bytes: float):
  """Waits for `process`; kills it past the time or resident-memory limit. Returns the
  reason it was killed, or ''."""
  start, reason = time.monotonic(), ""
  while process.poll() is None:
    if time.monotonic() - start > limit_seconds:
      reason = f"over the time limit of {limit_seconds:g} s"
    else:
      try:
        with open(f"/proc/{process.pid}/status") as f:
          rss = next((int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:")), 0)
      except OSError:
        rss = 0
      if rss > limit_bytes:
        reason = f"over the memory limit of {limit_bytes / 2**30:.3g} GiB resident"
    if reason:
      process.kill()
      process.wait()
      return reason
    time.sleep(0.2)
  return ""


def fit_exponent(sizes, seconds):
  """b of seconds = a N^b by least squares on (log N, log seconds), or None below two
  sizes."""
  if len(sizes) < 2:
    return None
  xs, ys = [math.log(n) for n in sizes], [math.log(s) for s in seconds]
  mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
  return (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
          / sum((x - mx) ** 2 for x in xs))
