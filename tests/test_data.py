"""Data: the real Fashion-MNIST files, tfds (mocked), original-format files, errors."""

import gzip
import io
import os
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import needs_fashion_mnist
from waal_jax import data as data_lib
from waal_jax.errors import UserError


@needs_fashion_mnist
def test_fashion_mnist_from_debian_files_has_table2_splits(cache_dir):
  splits = data_lib.load("fashion_mnist", seed=0, cache_dir=cache_dir, log=lambda _: None)
  assert splits.pool_images.shape == (40_000, 28, 28, 1)
  assert splits.val_images.shape == (20_000, 28, 28, 1)
  assert splits.test_images.shape == (10_000, 28, 28, 1)
  assert splits.pool_images.dtype == np.uint8 and splits.pool_labels.dtype == np.int32
  assert "IDX files" in splits.source
  # The test split is the original one: 1,000 images of each class.
  np.testing.assert_array_equal(np.bincount(splits.test_labels), np.full(10, 1000))
  # Pool and validation partition the 60K training images.
  assert np.bincount(splits.pool_labels).sum() + np.bincount(splits.val_labels).sum() == 60_000
  # The cache gives the same arrays, now without touching the original files.
  again = data_lib.load("fashion_mnist", seed=0, cache_dir=cache_dir, log=lambda _: None)
  assert again.source.startswith("cache ")
  np.testing.assert_array_equal(again.pool_images, splits.pool_images)
  np.testing.assert_array_equal(again.val_labels, splits.val_labels)


@needs_fashion_mnist
def test_seeds_and_subsets(cache_dir):
  a = data_lib.load("fashion_mnist", seed=0, cache_dir=cache_dir, pool_size=500, val_size=100,
                    log=lambda _: None)
  b = data_lib.load("fashion_mnist", seed=1, cache_dir=cache_dir, pool_size=500, val_size=100,
                    log=lambda _: None)
  assert a.pool_images.shape == (500, 28, 28, 1) and a.val_images.shape == (100, 28, 28, 1)
  assert not np.array_equal(a.pool_labels, b.pool_labels)
  # Each pool example says where it sits in the train split (precomputed embeddings).
  raw = data_lib.load_raw("fashion_mnist", cache_dir=cache_dir)
  for splits in (a, b):
    np.testing.assert_array_equal(raw.train_images[splits.pool_source], splits.pool_images)
    np.testing.assert_array_equal(raw.train_labels[splits.pool_source], splits.pool_labels)
  with pytest.raises(UserError, match="data.pool_size=50000"):
    data_lib.load("fashion_mnist", seed=0, cache_dir=cache_dir, pool_size=50_000,
                  log=lambda _: None)


@pytest.mark.parametrize("name,shape,examples", [
    ("svhn_cropped", (32, 32, 3), 733),
    ("cifar10", (32, 32, 3), 500),
    ("stl10", (96, 96, 3), 130),
])
def test_tfds_datasets_through_mock_data(tmp_path, name, shape, examples):
  # tfds' mock generates random examples of the dataset's features, `examples` per split;
  # the Table 2 split is then applied proportionally.
  with tfds.testing.mock_data(num_examples=examples):
    raw = data_lib.load_raw(name, data_dir=str(tmp_path / "tfds"),
                            cache_dir=str(tmp_path / "cache"), download=False)
  assert raw.train_images.shape[1:] == shape and raw.train_images.dtype == np.uint8
  assert raw.train_labels.min() >= 0 and raw.train_labels.max() < 10
  splits = data_lib.make_splits(raw, data_lib.get_spec(name), seed=0)
  assert splits.pool_images.shape[1:] == shape
  n = len(raw.train_labels)
  if name == "svhn_cropped":
    assert len(splits.pool_labels) == round(n * 40_000 / 73_257)
    assert len(splits.val_labels) == n - len(splits.pool_labels)
  if name == "cifar10":
    assert len(splits.pool_labels) == 450 and len(splits.val_labels) == 50
  # Loaded once, the arrays come from the cache (no tfds needed).
  cached = data_lib.load_raw(name, cache_dir=str(tmp_path / "cache"), download=False)
  assert cached.source.startswith("cache ")
  np.testing.assert_array_equal(cached.train_images, raw.train_images)


def test_stl10_variant_split_is_per_class():
  # 1,300 labeled images a class -> 800 pool / 100 validation / 400 test (Table 2).
  labels = np.repeat(np.arange(10), 1300).astype(np.int32)
  images = np.zeros((13_000, 96, 96, 3), np.uint8)
  # The real STL-10 has 500 train + 800 test images a class, in no particular order.
  order = np.random.default_rng(0).permutation(13_000)
  raw = data_lib.RawData(images[:5000], labels[order[:5000]], images[5000:],
                         labels[order[5000:]], "test")
  splits = data_lib.make_splits(raw, data_lib.get_spec("stl10"), seed=0)
  np.testing.assert_array_equal(np.bincount(splits.pool_labels), np.full(10, 800))
  np.testing.assert_array_equal(np.bincount(splits.val_labels), np.full(10, 100))
  np.testing.assert_array_equal(np.bincount(splits.test_labels), np.full(10, 400))
  # pool_source counts the train split, then the test split.
  merged = np.concatenate([raw.train_labels, raw.test_labels])
  np.testing.assert_array_equal(merged[splits.pool_source], splits.pool_labels)
  assert splits.pool_source.max() >= 5000


def _idx_bytes(array):
  header = np.array([0x0800 | array.ndim, *array.shape], ">i4").tobytes()
  return header + array.astype(np.uint8).tobytes()


def test_manual_dir_fashion_mnist_idx(tmp_path):
  rng = np.random.default_rng(0)
  arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)),
            "train-labels-idx1-ubyte": rng.integers(0, 10, 30),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28)),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, 7)}
  for stem, array in arrays.items():   # one gzipped, the others plain
    if stem.startswith("train-images"):
      with gzip.open(tmp_path / (stem + ".gz"), "wb") as f:
        f.write(_idx_bytes(array))
    else:
      (tmp_path / stem).write_bytes(_idx_bytes(array))
  raw = data_lib.load_raw("fashion_mnist", manual_dir=str(tmp_path),
                          cache_dir=str(tmp_path / "cache"))
  np.testing.assert_array_equal(raw.train_images[..., 0], arrays["train-images-idx3-ubyte"])
  np.testing.assert_array_equal(raw.test_labels, arrays["t10k-labels-idx1-ubyte"])
  assert raw.train_images.shape == (30, 28, 28, 1)


def test_manual_dir_cifar10_binary_archive(tmp_path):
  rng = np.random.default_rng(0)
  expected = {}
  with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as tar:
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
      labels = rng.integers(0, 10, 4).astype(np.uint8)
      chw = rng.integers(0, 256, (4, 3, 32, 32)).astype(np.uint8)
      blob = np.concatenate([labels[:, None], chw.reshape(4, -1)], axis=1).tobytes()
      info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
      expected[name] = (chw.transpose(0, 2, 3, 1), labels)
  raw = data_lib.load_raw("cifar10", manual_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
  assert raw.train_images.shape == (20, 32, 32, 3)
  np.testing.assert_array_equal(raw.test_images, expected["test_batch.bin"][0])
  np.testing.assert_array_equal(raw.train_labels[:4], expected["data_batch_1.bin"][1])


def test_manual_dir_svhn_mat(tmp_path):
  import scipy.io  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, n in (("train", 6), ("test", 3)):
    x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
    y = np.array([[10], [1], [2], [3], [4], [5]][:n], np.uint8)   # 10 stands for digit 0
    scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
  raw = data_lib.load_raw("svhn_cropped", manual_dir=str(tmp_path),
                          cache_dir=str(tmp_path / "c"))
  assert raw.train_images.shape == (6, 32, 32, 3)
  assert raw.train_labels.tolist() == [0, 1, 2, 3, 4, 5]
  x = scipy.io.loadmat(tmp_path / "train_32x32.mat")["X"]
  np.testing.assert_array_equal(raw.train_images[2], x[..., 2])


def test_manual_dir_stl10_binary(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "stl10_binary"
  folder.mkdir()
  images = {}
  for split, n in (("train", 3), ("test", 2)):
    hwc = rng.integers(0, 256, (n, 96, 96, 3)).astype(np.uint8)
    # Stored column-major: (N, C, W, H).
    (folder / f"{split}_X.bin").write_bytes(hwc.transpose(0, 3, 2, 1).tobytes())
    (folder / f"{split}_y.bin").write_bytes(np.arange(1, n + 1, dtype=np.uint8).tobytes())
    images[split] = hwc
  raw = data_lib.load_raw("stl10", manual_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
  np.testing.assert_array_equal(raw.train_images, images["train"])
  assert raw.test_labels.tolist() == [0, 1]


def test_manual_dir_without_the_files_names_them(tmp_path):
  with pytest.raises(UserError, match=r"data.manual_dir: .* does not hold the cifar10 files"):
    data_lib.load_raw("cifar10", manual_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
  with pytest.raises(UserError, match="is not a directory"):
    data_lib.load_raw("cifar10", manual_dir=str(tmp_path / "missing"),
                      cache_dir=str(tmp_path / "c"))


def test_missing_dataset_says_what_was_tried(tmp_path, monkeypatch):
  monkeypatch.setattr(data_lib, "_network_reachable", lambda *a, **k: False)
  with pytest.raises(UserError) as error:
    data_lib.load_raw("cifar10", data_dir=str(tmp_path / "tfds"), cache_dir=str(tmp_path / "c"))
  message = str(error.value)
  assert "tfds data prepared in" in message and "no network" in message
  assert "--config.data.manual_dir" in message and "\n" not in message
  assert not os.path.exists(tmp_path / "c" / "cifar10.npz")


def test_crop_flip_keeps_shape_and_content():
  import jax  # pylint: disable=g-import-not-at-top
  images = np.arange(2 * 8 * 8 * 1, dtype=np.uint8).reshape(2, 8, 8, 1)
  out = np.asarray(data_lib.random_crop_flip(jax.random.key(0), images, pad=2))
  assert out.shape == images.shape and out.dtype == np.uint8
  # Each output is a shifted window of the zero-padded image, maybe mirrored.
  for original, augmented in zip(images, out):
    padded = np.pad(original, ((2, 2), (2, 2), (0, 0)))
    windows = [padded[i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
    assert any(np.array_equal(augmented, w) or np.array_equal(augmented, w[:, ::-1])
               for w in windows)
