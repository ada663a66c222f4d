"""Datasets as uint8 arrays with the paper's splits (Table 2), and their cache.

Sources, tried in this order for a dataset's raw train/test arrays:
  1. the cache file `<cache_dir>/<name>.npz` written by an earlier load;
  2. `manual_dir`: the dataset's original distribution files (IDX for Fashion-MNIST,
     the binary archives of CIFAR-10 and STL-10, the .mat files of SVHN);
  3. Fashion-MNIST only: the Debian package `dataset-fashion-mnist`;
  4. tensorflow-datasets: data already prepared in `data_dir`, else downloaded and
     prepared there (this needs TensorFlow and the network).
TensorFlow is never imported unless step 4 has to prepare data. The cache holds the
raw splits, so the Table 2 split below is recomputed (cheaply) on every load.
"""

import dataclasses
import gzip
import logging
import os
import socket
import tarfile
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from waal_jax.errors import UserError

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What we need to know about one dataset."""
  name: str                      # tfds name
  image_shape: tuple             # (H, W, C) of images; (D,) (or any shape) of vectors
  num_classes: int
  mean: tuple = ()               # per-channel mean of [0, 1] pixels (training split);
  #                                of float inputs, subtracted as given; () = none
  std: tuple = ()                # per-channel std of [0, 1] pixels; () = 1
  # Table 2. For the "train_val" kind the pool is `pool_count` examples of the
  # `train_count` in the train split, the rest is validation. For the "stl10" kind the
  # labeled train and test images are merged and split per class. "" for arrays that
  # come split (the library's own data).
  split_kind: str = ""
  train_count: int = 0
  pool_count: int = 0
  per_class: tuple = ()          # stl10: (pool, val, test) examples per class
  test_count: int = 0            # test examples (Table 2)
  manual_files: str = ""         # what manual_dir must hold (for error messages)
  class_names: tuple = ()        # the labels a person gives (al.oracle=human); () = 0..K-1

  @property
  def label_names(self) -> tuple:
    return self.class_names or tuple(str(c) for c in range(self.num_classes))


SPECS = {
    "fashion_mnist": DatasetSpec(
        "fashion_mnist", (28, 28, 1), 10, (0.2860,), (0.3530,), "train_val",
        train_count=60_000, pool_count=40_000, test_count=10_000,
        manual_files="train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"),
    "svhn_cropped": DatasetSpec(
        "svhn_cropped", (32, 32, 3), 10, (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970), "train_val", train_count=73_257, pool_count=40_000,
        test_count=26_032, manual_files="train_32x32.mat, test_32x32.mat"),
    "cifar10": DatasetSpec(
        "cifar10", (32, 32, 3), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        "train_val", train_count=50_000, pool_count=45_000, test_count=10_000,
        manual_files="cifar-10-binary.tar.gz or cifar-10-batches-bin/"),
    "stl10": DatasetSpec(
        "stl10", (96, 96, 3), 10, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713),
        "stl10", per_class=(800, 100, 400), test_count=4_000,
        manual_files="stl10_binary.tar.gz or stl10_binary/{train,test}_{X,y}.bin"),
}


@dataclasses.dataclass(frozen=True)
class RawData:
  """A dataset's original train and test splits."""
  train_images: np.ndarray   # (N, H, W, C) uint8
  train_labels: np.ndarray   # (N,) int32
  test_images: np.ndarray
  test_labels: np.ndarray
  source: str                # where the arrays came from, for the log


@dataclasses.dataclass(frozen=True)
class Splits:
  """The active-learning view of a dataset: pool (to label from), validation, test."""
  spec: DatasetSpec
  pool_images: np.ndarray    # (N, H, W, C) uint8
  pool_labels: np.ndarray    # (N,) int32
  val_images: np.ndarray
  val_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  source: str
  # Each pool example's position among the dataset's examples (its train split, for
  # STL-10 its train then test split): the same example has the same position in every
  # seed's pool, so precomputed per-example data (query.embeddings_file) can be indexed.
  pool_source: Optional[np.ndarray] = None
  # The user's own data (waal_jax/user_data.py): each pool image's file, shown to the
  # person who labels it; and the pool indices labeled at round 0 when the dataset says
  # which (its unlabeled images are the rest of the pool), else None: drawn at random.
  pool_files: Optional[np.ndarray] = None
  initial_labeled: Optional[np.ndarray] = None


# The user's own images (data.path): their spec is known only once they are read.
USER_DATASET = "image_folder"
DATASET_NAMES = tuple(sorted(SPECS)) + (USER_DATASET,)
UNKNOWN_LABEL = -1              # pool labels of images nobody has labeled yet


def get_spec(name: str) -> DatasetSpec:
  if name not in SPECS:
    raise UserError(f"data.name: unknown dataset {name!r}; choose one of "
                    f"{', '.join(DATASET_NAMES)}")
  return SPECS[name]


def with_normalization(spec: DatasetSpec, mean=(), std=()) -> DatasetSpec:
  """The spec normalising with `mean` / `std` (per channel, [0, 1] pixels) where given
  (config fields data.mean, data.std), else with the dataset's own statistics."""
  return dataclasses.replace(spec, mean=tuple(mean) or spec.mean, std=tuple(std) or spec.std)


def default_cache_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "waal_jax")


# ----------------------------------------------------------------------------------
# Loading the raw arrays.


def load_raw(name: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
             cache_dir: Optional[str] = None, download: bool = True) -> RawData:
  """Returns the dataset's train/test arrays from the first source that has them."""
  spec = get_spec(name)
  cache_dir = cache_dir or default_cache_dir()
  cache_file = os.path.join(cache_dir, f"{name}.npz")
  if os.path.exists(cache_file):
    return _read_cache(cache_file)

  tried = []
  raw = None
  if manual_dir:
    if not os.path.isdir(manual_dir):
      raise UserError(f"data.manual_dir: {manual_dir} is not a directory")
    raw = _MANUAL_READERS[name](manual_dir)
    if raw is None:
      raise UserError(f"data.manual_dir: {manual_dir} does not hold the {name} files "
                      f"({spec.manual_files})")
  if raw is None and name == "fashion_mnist":
    raw = _read_fashion_mnist_idx(DEBIAN_FASHION_MNIST_DIR)
    if raw is None:
      tried.append(f"Debian package files in {DEBIAN_FASHION_MNIST_DIR}")
  if raw is None:
    raw = _load_tfds(name, data_dir, download, tried)
  _write_cache(cache_file, raw)
  return raw


def _read_cache(path: str) -> RawData:
  try:
    with np.load(path) as f:
      return RawData(f["train_images"], f["train_labels"], f["test_images"],
                     f["test_labels"], source=f"cache {path} ({f['source']})")
  except (OSError, ValueError, KeyError) as e:
    raise UserError(f"data cache file {path} is unreadable ({e}); delete it to reload") from e


def _write_cache(path: str, raw: RawData) -> None:
  write_cache_file(path, train_images=raw.train_images, train_labels=raw.train_labels,
                   test_images=raw.test_images, test_labels=raw.test_labels,
                   source=np.asarray(raw.source))


def write_cache_file(path: str, **arrays) -> None:
  """Writes an .npz of the array cache atomically, so a killed run never leaves half a
  cache file behind; a cache folder that cannot be written costs time, not correctness."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    logging.info("cached %s arrays in %s", arrays.get("source", ""), path)
  except OSError as e:
    logging.warning("could not write the data cache %s: %s", path, e)


# --- Original distribution files ---------------------------------------------------


def _find(folder: str, *names: str) -> Optional[str]:
  for name in names:
    path = os.path.join(folder, name)
    if os.path.exists(path):
      return path
  return None


def _read_idx(path: str) -> np.ndarray:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  magic, = np.frombuffer(data[:4], ">i4")
  ndim = magic & 0xFF
  if magic >> 8 != 0x08 or ndim not in (1, 3):
    raise UserError(f"{path} is not an IDX file of uint8 (magic {magic:#x})")
  shape = tuple(np.frombuffer(data[4:4 + 4 * ndim], ">i4"))
  return np.frombuffer(data[4 + 4 * ndim:], np.uint8).reshape(shape)


def _read_fashion_mnist_idx(folder: str) -> Optional[RawData]:
  paths = {}
  for key, stem in [("train_images", "train-images-idx3-ubyte"),
                    ("train_labels", "train-labels-idx1-ubyte"),
                    ("test_images", "t10k-images-idx3-ubyte"),
                    ("test_labels", "t10k-labels-idx1-ubyte")]:
    paths[key] = _find(folder, stem + ".gz", stem)
    if paths[key] is None:
      return None
  arrays = {k: _read_idx(p) for k, p in paths.items()}
  return RawData(arrays["train_images"][..., None], arrays["train_labels"].astype(np.int32),
                 arrays["test_images"][..., None], arrays["test_labels"].astype(np.int32),
                 source=f"IDX files in {folder}")


def _read_named_files(folder: str, archive: str, subfolder: str, names) -> Optional[dict]:
  """{name: bytes} of the files `names`, from `folder/archive` (a .tar.gz) or from
  `folder/subfolder/` or `folder/` itself; None unless all are found."""
  blobs = {}
  archive_path = _find(folder, archive)
  if archive_path:
    with tarfile.open(archive_path) as tar:
      for member in tar.getmembers():
        base = os.path.basename(member.name)
        if base in names and member.isfile():
          blobs[base] = tar.extractfile(member).read()
  else:
    sub = _find(folder, subfolder) or folder
    for base in names:
      path = os.path.join(sub, base)
      if os.path.exists(path):
        with open(path, "rb") as f:
          blobs[base] = f.read()
  return blobs if set(blobs) == set(names) else None


def _read_cifar10_binary(folder: str) -> Optional[RawData]:
  """The 'binary version': records of 1 label byte + 3072 bytes in (C, H, W) order."""
  names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
  blobs = _read_named_files(folder, "cifar-10-binary.tar.gz", "cifar-10-batches-bin", names)
  if blobs is None:
    return None

  def decode(blob):
    records = np.frombuffer(blob, np.uint8).reshape(-1, 1 + 3072)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int32)

  train = [decode(blobs[n]) for n in names[:5]]
  test_images, test_labels = decode(blobs["test_batch.bin"])
  return RawData(np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
                 test_images, test_labels, source=f"CIFAR-10 binary files in {folder}")


def _read_svhn_mat(folder: str) -> Optional[RawData]:
  train_path = _find(folder, "train_32x32.mat")
  test_path = _find(folder, "test_32x32.mat")
  if not (train_path and test_path):
    return None
  import scipy.io  # pylint: disable=g-import-not-at-top  (scipy comes with jax)

  def decode(path):
    mat = scipy.io.loadmat(path)
    images = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2))  # (32,32,3,N) -> NHWC
    labels = mat["y"].reshape(-1).astype(np.int32) % 10            # digit 0 is stored as 10
    return images, labels

  return RawData(*decode(train_path), *decode(test_path), source=f"SVHN .mat files in {folder}")


def _read_stl10_binary(folder: str) -> Optional[RawData]:
  """Images are stored column-major as (N, C, W, H) uint8, labels 1..10."""
  names = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
  blobs = _read_named_files(folder, "stl10_binary.tar.gz", "stl10_binary", names)
  if blobs is None:
    return None

  def images(blob):
    return np.ascontiguousarray(
        np.frombuffer(blob, np.uint8).reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))

  def labels(blob):
    return np.frombuffer(blob, np.uint8).astype(np.int32) - 1

  return RawData(images(blobs["train_X.bin"]), labels(blobs["train_y.bin"]),
                 images(blobs["test_X.bin"]), labels(blobs["test_y.bin"]),
                 source=f"STL-10 binary files in {folder}")


_MANUAL_READERS: dict = {
    "fashion_mnist": _read_fashion_mnist_idx,
    "cifar10": _read_cifar10_binary,
    "svhn_cropped": _read_svhn_mat,
    "stl10": _read_stl10_binary,
}


# --- tensorflow-datasets -------------------------------------------------------------


def _network_reachable(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  """tfds retries a failed download for minutes; this says in seconds that it would fail."""
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def _load_tfds(name: str, data_dir: Optional[str], download: bool, tried: list) -> RawData:
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    tfds = None
  where = data_dir or "the tfds default data_dir"
  if tfds is None:
    tried.append("tensorflow-datasets (not installed)")
  else:
    builder = tfds.builder(name, data_dir=data_dir)
    raw = _read_tfds_builder(builder, name, where)
    if raw is not None:
      return raw
    tried.append(f"tfds data prepared in {where} (none)")
    if not download:
      tried.append("tfds download (data.download=False)")
    elif not _network_reachable():
      tried.append("tfds download (no network)")
    else:
      _hide_gpus_from_tensorflow()
      try:
        builder.download_and_prepare(file_format="array_record")
      except Exception as e:  # pylint: disable=broad-except  (any failure: say it in one line)
        tried.append(f"tfds download ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
      else:
        raw = _read_tfds_builder(builder, name, where)
        if raw is not None:
          return raw
  raise UserError(
      f"data.name={name}: no data found; tried " + "; ".join(tried) +
      f". Provide it with --config.data.manual_dir=DIR holding {get_spec(name).manual_files}"
      + (" (or `apt-get install dataset-fashion-mnist`)" if name == "fashion_mnist" else "")
      + ", or prepare it with tfds on a machine with network access and point "
      "--config.data.data_dir at it")


def _hide_gpus_from_tensorflow() -> None:
  """TensorFlow only decodes files here; it must not grab the GPU memory JAX needs."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")
  except Exception:  # pylint: disable=broad-except  (no TF, or already initialised)
    pass


def _read_tfds_builder(builder, name: str, where: str) -> Optional[RawData]:
  """Reads prepared (or mocked) data, without TensorFlow where the format allows."""
  arrays = {}
  for split in ("train", "test"):
    try:
      source = builder.as_data_source(split=split)
      images, labels = _read_data_source(source)
    except Exception:  # pylint: disable=broad-except  (not prepared, or not array_record)
      if not builder.is_prepared():
        return None
      _hide_gpus_from_tensorflow()
      images, labels = _read_tf_dataset(builder, split)
    arrays[split] = (images, labels)
  return RawData(*arrays["train"], *arrays["test"], source=f"tfds {name} in {where}")


def _read_data_source(source, chunk: int = 1024):
  images, labels = [], []
  for start in range(0, len(source), chunk):
    keys = list(range(start, min(start + chunk, len(source))))
    try:
      records = source.__getitems__(keys)
    except TypeError:  # tfds' mock data source only serves one record at a time
      records = [source[k] for k in keys]
    images.extend(np.asarray(r["image"], np.uint8) for r in records)
    labels.extend(int(r["label"]) for r in records)
  return np.stack(images), np.asarray(labels, np.int32)


def _read_tf_dataset(builder, split: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  images, labels = [], []
  # A fixed batch size: batch_size=-1 crashes under tfds' mock data.
  for x, y in tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True).batch(1024)):
    images.append(x)
    labels.append(y.astype(np.int32))
  return np.concatenate(images), np.concatenate(labels)


# ----------------------------------------------------------------------------------
# The paper's splits.


def make_splits(raw: RawData, spec: DatasetSpec, *, seed: int, pool_size: int = -1,
                val_size: int = -1) -> Splits:
  """Table 2's pool / validation / test split, then the optional quick-run subsets.

  Args:
    raw: the dataset's original splits.
    spec: the dataset's description.
    seed: seeds the random split, so repeated runs with one seed share it.
    pool_size: -1 for the whole Table 2 pool, else a random subset of that size.
    val_size: -1 for the whole validation split, else a random subset of that size.
  """
  rng = np.random.default_rng([seed, 0x5EED])
  if spec.split_kind == "train_val":
    n = len(raw.train_labels)
    # Proportional, so the exact Table 2 sizes on real data and a sensible split of
    # the small mock datasets used in tests.
    num_pool = int(round(n * spec.pool_count / spec.train_count))
    order = rng.permutation(n)
    pool_idx, val_idx = order[:num_pool], order[num_pool:]
    pool = (raw.train_images[pool_idx], raw.train_labels[pool_idx])
    val = (raw.train_images[val_idx], raw.train_labels[val_idx])
    test = (raw.test_images, raw.test_labels)
  elif spec.split_kind == "stl10":
    images = np.concatenate([raw.train_images, raw.test_images])
    labels = np.concatenate([raw.train_labels, raw.test_labels])
    parts = ([], [], [])
    total = sum(spec.per_class)
    for c in range(spec.num_classes):
      members = rng.permutation(np.flatnonzero(labels == c))
      # Per class 800 / 100 / 400 of its 1,300 labeled images (scaled for mock data).
      n_pool = int(round(len(members) * spec.per_class[0] / total))
      n_val = int(round(len(members) * spec.per_class[1] / total))
      parts[0].append(members[:n_pool])
      parts[1].append(members[n_pool:n_pool + n_val])
      parts[2].append(members[n_pool + n_val:])
    pool_idx, val_idx, test_idx = (rng.permutation(np.concatenate(p)) for p in parts)
    pool = (images[pool_idx], labels[pool_idx])
    val = (images[val_idx], labels[val_idx])
    test = (images[test_idx], labels[test_idx])
  else:
    raise ValueError(spec.split_kind)

  kept = _subset_indices(len(pool_idx), pool_size, rng, "data.pool_size")
  pool = (pool[0][kept], pool[1][kept])
  val = _subset(val, val_size, rng, "data.val_size")
  for what, (images, _) in (("pool", pool), ("validation", val), ("test", test)):
    if images.shape[1:] != spec.image_shape:
      raise UserError(f"data: {spec.name} {what} images have shape {images.shape[1:]}, "
                      f"expected {spec.image_shape}")
  return Splits(spec, *pool, *val, *test, source=raw.source, pool_source=pool_idx[kept])


def _subset_indices(count: int, size: int, rng: np.random.Generator, field: str) -> np.ndarray:
  """Positions of a random subset of `size` of `count` examples, in order (-1: all)."""
  if size == -1:
    return np.arange(count)
  if size <= 0 or size > count:
    raise UserError(f"{field}={size}: must be -1 (all) or between 1 and {count}")
  return np.sort(rng.choice(count, size, replace=False))


def _subset(arrays, size: int, rng: np.random.Generator, field: str):
  images, labels = arrays
  kept = _subset_indices(len(labels), size, rng, field)
  return images[kept], labels[kept]


def synthetic_splits(spec: DatasetSpec, *, seed: int, pool_size: int = -1) -> Splits:
  """Random images and labels of the dataset's Table 2 sizes: for timings where the real
  data are not available (no result computed from them means anything)."""
  rng = np.random.default_rng(seed)
  if spec.split_kind == "train_val":
    sizes = (spec.pool_count, spec.train_count - spec.pool_count, spec.test_count)
  else:
    sizes = tuple(n * spec.num_classes for n in spec.per_class)
  if pool_size != -1:
    sizes = (pool_size,) + sizes[1:]
  parts = []
  for n in sizes:
    parts += [rng.integers(0, 256, (n, *spec.image_shape), dtype=np.uint8),
              rng.integers(0, spec.num_classes, n).astype(np.int32)]
  return Splits(spec, *parts, source="synthetic random images")


def user_splits(images, *, seed: int, val_fraction: float, test_fraction: float,
                pool_size: int = -1, val_size: int = -1) -> Splits:
  """The splits of the user's own images (waal_jax.user_data.UserImages).

  Validation and test are the given ones, else drawn from train/ per class with the
  fractions; the rest of train/ is the pool, then the unlabeled images. With unlabeled
  images, the train/ part of the pool is the round-0 labeled set.
  """
  rng = np.random.default_rng([seed, 0x5EED])
  labels = images.train_labels
  drawn = {"val": [], "test": []}
  pool_idx = []
  for c in range(len(images.class_names)):
    members = rng.permutation(np.flatnonzero(labels == c))
    start = 0
    for part, fraction in (("test", test_fraction), ("val", val_fraction)):
      if getattr(images, part) is None:
        count = int(round(len(members) * fraction))
        drawn[part].append(members[start:start + count])
        start += count
    pool_idx.append(members[start:])
  pool_idx = rng.permutation(np.concatenate(pool_idx))

  def part(name):
    given = getattr(images, name)
    if given is not None:
      return given
    idx = np.sort(np.concatenate(drawn[name])).astype(np.int64)
    return images.train_images[idx], labels[idx]

  val, test = part("val"), part("test")
  for name, split in (("validation", val), ("test", test)):
    if len(split[1]) == 0:
      raise UserError(f"data.path: no {name} images: give a {name[:4]}/ folder or raise "
                      f"data.{name[:4]}_fraction")
  count = len(images.unlabeled_files)
  if count and pool_size != -1:
    raise UserError(f"data.pool_size={pool_size}: must be -1 with unlabeled images (the pool "
                    "is all of them)")
  kept = _subset_indices(len(pool_idx), pool_size, rng, "data.pool_size")
  pool_idx = pool_idx[kept]
  pool_images = np.concatenate([images.train_images[pool_idx], images.unlabeled_images])
  pool_labels = np.concatenate([labels[pool_idx], np.full(count, UNKNOWN_LABEL, np.int32)])
  val = _subset(val, val_size, rng, "data.val_size")
  pixels = pool_images.reshape(-1, pool_images.shape[-1]).astype(np.float64) / 255.0
  spec = DatasetSpec(USER_DATASET, pool_images.shape[1:], len(images.class_names),
                     tuple(pixels.mean(0)), tuple(np.maximum(pixels.std(0), 1e-3)), "user",
                     class_names=tuple(images.class_names))
  return Splits(spec, pool_images, pool_labels, *val, *test, source=images.source,
                pool_source=np.concatenate([pool_idx, len(labels) + np.arange(count)]),
                pool_files=np.concatenate([images.train_files[pool_idx],
                                           images.unlabeled_files]),
                initial_labeled=np.arange(len(pool_idx)) if count else None)


def load(name: str, *, seed: int, data_dir: Optional[str] = None,
         manual_dir: Optional[str] = None, cache_dir: Optional[str] = None,
         download: bool = True, pool_size: int = -1, val_size: int = -1,
         log=logging.info) -> Splits:
  """The dataset `name` as pool / validation / test arrays (see the module docstring)."""
  start = time.time()
  spec = get_spec(name)
  raw = load_raw(name, data_dir=data_dir, manual_dir=manual_dir, cache_dir=cache_dir,
                 download=download)
  splits = make_splits(raw, spec, seed=seed, pool_size=pool_size, val_size=val_size)
  log(f"{name} from {raw.source} in {time.time() - start:.1f}s: pool "
      f"{len(splits.pool_labels)}, validation {len(splits.val_labels)}, test "
      f"{len(splits.test_labels)}")
  return splits


# ----------------------------------------------------------------------------------
# On-device preprocessing.


def normalize(images, spec: DatasetSpec):
  """uint8 (B, H, W, C) -> float32 standardised per channel (spec.mean and std are of
  [0, 1] pixels); float inputs (vectors) -> float32, less spec.mean and over spec.std
  where given. Runs under jit."""
  x = images.astype(jnp.float32)
  scale = 255.0 if images.dtype == jnp.uint8 else 1.0
  if spec.mean:
    x = x - jnp.asarray(spec.mean, jnp.float32) * scale
  if spec.std:
    x = x / (jnp.asarray(spec.std, jnp.float32) * scale)
  return x


def random_crop_flip(key, images, pad: int = 4):
  """Random crop after zero padding by `pad` + random horizontal flip, per example.

  What the authors' code does on SVHN and CIFAR-10 (`train.augment=crop_flip`). Runs on the
  device on the uint8 images (B, H, W, C) before `normalize`, so the border is black
  as in torchvision's RandomCrop(padding=4).
  """
  b, h, w, _ = images.shape
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (b, 2), 0, 2 * pad + 1)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(flip_key, 0.5, (b, 1, 1, 1))
  return jnp.where(flip, cropped[:, :, ::-1, :], cropped)

