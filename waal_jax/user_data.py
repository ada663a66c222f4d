"""The user's own images as a dataset (`data.name=image_folder`, `data.path=...`).

`data.path` is either a folder

  train/<class>/*.png|jpg    labeled images, one folder per class (its name is the label)
  val/<class>/...            optional; else drawn from train/ per class (data.val_fraction)
  test/<class>/...           optional; else drawn from train/ per class (data.test_fraction)
  unlabeled/*.png|jpg        optional images without a label

or an .npz file with the arrays x_train, y_train, x_test, y_test (uint8 images (N, H, W)
or (N, H, W, C), integer labels 0..K-1) and optionally x_val, y_val, x_unlabeled and
class_names.

Without unlabeled images, the rest of train/ is the pool and its labels are known: the
run simulates the oracle as for the paper's datasets. With them, the labeled images of
train/ are the round-0 labeled set and the queries come from the unlabeled images, whose
labels only a person can give (al.oracle=human, waal_jax/oracle.py).

Every image of a dataset must have one size, unless `data.image_size` resizes them all;
they are grayscale if every file is, else RGB. Decoded images are kept in the array
cache (`data.cache_dir`) under a fingerprint of the files' names, sizes and times, so
they are decoded once and again only when a file changes.
"""

import dataclasses
import hashlib
import logging
import os
import time
from typing import List, Optional, Tuple

import numpy as np

from waal_jax import data as data_lib
from waal_jax.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_PARTS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class UserImages:
  """The decoded dataset, before any split. `*_files` name each image's source (a path,
  or the array and row of an .npz), for the person who labels it and for error lines."""
  class_names: Tuple[str, ...]
  train_images: np.ndarray          # (N, H, W, C) uint8
  train_labels: np.ndarray          # (N,) int32
  train_files: np.ndarray           # (N,) str
  val: Optional[Tuple[np.ndarray, np.ndarray]]    # given validation split, or None
  test: Optional[Tuple[np.ndarray, np.ndarray]]   # given test split, or None
  unlabeled_images: np.ndarray      # (U, H, W, C) uint8; U may be 0
  unlabeled_files: np.ndarray       # (U,) str
  source: str


_NAMED_SKIPS = 5   # skipped files named in the log line; the rest are counted


def load(path: str, image_size: int, cache_dir: str, log=logging.info) -> UserImages:
  """Reads `path` (folder or .npz), through the cache."""
  if not os.path.exists(path):
    raise UserError(f"data.path: {path} does not exist")
  start = time.time()
  if os.path.isdir(path):
    files = _list_folder(path)
    if files.ignored:
      shown = ", ".join(files.ignored[:_NAMED_SKIPS])
      more = len(files.ignored) - _NAMED_SKIPS
      log(f"data.path: skipping {len(files.ignored)} file(s) of {path} that are not .png or "
          f".jpg: {shown}" + (f" and {more} more" if more > 0 else ""))
    cache_file = os.path.join(cache_dir, f"image_folder-{_fingerprint(path, files, image_size)}.npz")
    if os.path.exists(cache_file):
      return _read_cache(cache_file)
    images = _read_folder(path, files, image_size)
  elif path.endswith(".npz"):
    images = _read_npz(path, image_size)
    cache_file = None
  else:
    raise UserError(f"data.path: {path} is neither a folder nor an .npz file")
  count = (len(images.train_labels) + len(images.unlabeled_files)
           + sum(len(part[1]) for part in (images.val, images.test) if part is not None))
  log(f"read {count} images of {path} in {time.time() - start:.1f}s")
  if cache_file:
    _write_cache(cache_file, images)
  return images


# --- Folders ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Listing:
  classes: Tuple[str, ...]
  labeled: dict                     # part -> [(relative path, class index)]
  unlabeled: List[str]              # relative paths
  ignored: List[str]                # relative paths of the files that are not images


def _images_in(folder: str) -> Tuple[List[str], List[str]]:
  """The image files of `folder` and the other files (hidden ones aside), by name."""
  names, ignored = [], []
  for name in sorted(os.listdir(folder)):
    if os.path.isfile(os.path.join(folder, name)):
      if name.lower().endswith(IMAGE_SUFFIXES):
        names.append(name)
      elif not name.startswith("."):
        ignored.append(name)
  return names, ignored


def _list_folder(root: str) -> _Listing:
  train = os.path.join(root, "train")
  if not os.path.isdir(train):
    raise UserError(f"data.path: {root} has no train/ folder (train/<class>/*.png|jpg)")
  classes = tuple(sorted(d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d))
                         and not d.startswith(".")))
  if len(classes) < 2:
    raise UserError(f"data.path: {train} must hold a folder per class, at least two "
                    f"(found {len(classes)})")
  labeled, ignored = {}, []
  for part in FOLDER_PARTS:
    folder = os.path.join(root, part)
    if not os.path.isdir(folder):
      continue
    entries = []
    for name in sorted(os.listdir(folder)):
      if name.startswith(".") or not os.path.isdir(os.path.join(folder, name)):
        continue
      if name not in classes:
        raise UserError(f"data.path: {os.path.join(folder, name)} is not a class of train/ "
                        f"({', '.join(classes)})")
      images, skipped = _images_in(os.path.join(folder, name))
      ignored += [os.path.join(part, name, f) for f in skipped]
      entries += [(os.path.join(part, name, f), classes.index(name)) for f in images]
    if not entries:
      raise UserError(f"data.path: {folder} holds no .png or .jpg images in class folders")
    labeled[part] = entries
  unlabeled = []
  if os.path.isdir(os.path.join(root, "unlabeled")):
    names, skipped = _images_in(os.path.join(root, "unlabeled"))
    ignored += [os.path.join("unlabeled", f) for f in skipped]
    unlabeled = [os.path.join("unlabeled", f) for f in names]
  return _Listing(classes, labeled, unlabeled, ignored)


def _fingerprint(root: str, listing: _Listing, image_size: int) -> str:
  digest = hashlib.sha256(f"{os.path.abspath(root)}|{image_size}".encode())
  for relative in ([p for entries in listing.labeled.values() for p, _ in entries]
                   + listing.unlabeled):
    stat = os.stat(os.path.join(root, relative))
    digest.update(f"|{relative}|{stat.st_size}|{stat.st_mtime_ns}".encode())
  return digest.hexdigest()[:16]


def _read_folder(root: str, listing: _Listing, image_size: int) -> UserImages:
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only for image folders)
  relatives = ([p for part in FOLDER_PARTS for p, _ in listing.labeled.get(part, [])]
               + listing.unlabeled)
  opened = []
  for relative in relatives:
    path = os.path.join(root, relative)
    try:
      with Image.open(path) as image:
        image.load()
        opened.append(image.copy())
    except (OSError, ValueError, Image.DecompressionBombError) as e:
      raise UserError(f"data.path: {path} does not decode as an image ({e})") from e
  gray = all(image.mode in ("1", "L", "LA") for image in opened)
  arrays = _to_arrays([image.convert("L" if gray else "RGB") for image in opened],
                      [os.path.join(root, r) for r in relatives], image_size)
  parts, start = {}, 0
  for part in FOLDER_PARTS:
    entries = listing.labeled.get(part, [])
    chunk = arrays[start:start + len(entries)]
    start += len(entries)
    parts[part] = (chunk, np.asarray([c for _, c in entries], np.int32),
                   np.asarray([os.path.join(root, p) for p, _ in entries], dtype=str))
  return UserImages(
      listing.classes, *parts["train"],
      val=parts["val"][:2] if "val" in listing.labeled else None,
      test=parts["test"][:2] if "test" in listing.labeled else None,
      unlabeled_images=arrays[start:],
      unlabeled_files=np.asarray([os.path.join(root, p) for p in listing.unlabeled], dtype=str),
      source=f"image folder {root}")


def _to_arrays(images, names: List[str], image_size: int) -> np.ndarray:
  """PIL images of one mode -> (N, H, W, C) uint8, resized to image_size x image_size if
  image_size > 0, else all of one size."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if image_size > 0:
    images = [image.resize((image_size, image_size), Image.Resampling.BILINEAR)
              if image.size != (image_size, image_size) else image for image in images]
  else:
    first = images[0].size
    for image, name in zip(images, names):
      if image.size != first:
        raise UserError(f"data.path: {name} is {image.size[0]}x{image.size[1]} but "
                        f"{names[0]} is {first[0]}x{first[1]}; set data.image_size to "
                        "resize them all to one size")
  stacked = np.stack([np.asarray(image, np.uint8) for image in images])
  return stacked[..., None] if stacked.ndim == 3 else stacked


# --- .npz --------------------------------------------------------------------------------


def _npz_images(path: str, arrays, key: str, image_size: int) -> np.ndarray:
  images = arrays[key]
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise UserError(f"data.path: {path}: {key} has shape {images.shape}; expected (N, H, W) "
                    "or (N, H, W, C) with C = 1 or 3")
  if images.dtype != np.uint8:
    raise UserError(f"data.path: {path}: {key} is {images.dtype}; expected uint8 pixels")
  if image_size > 0 and images.shape[1:3] != (image_size, image_size):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    mode = "L" if images.shape[-1] == 1 else "RGB"
    images = _to_arrays([Image.fromarray(i.squeeze(-1) if mode == "L" else i, mode)
                         for i in images], [key] * len(images), image_size)
  return images


def _npz_labels(path: str, arrays, key: str, count: int, num_classes: int) -> np.ndarray:
  labels = arrays[key]
  if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
    raise UserError(f"data.path: {path}: {key} must be {count} integer labels, not "
                    f"{labels.dtype} of shape {labels.shape}")
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if len(bad):
    raise UserError(f"data.path: {path}: {key}[{bad[0]}] = {labels[bad[0]]} is not a class "
                    f"(0..{num_classes - 1})")
  return labels.astype(np.int32)


def _read_npz(path: str, image_size: int) -> UserImages:
  try:
    arrays = dict(np.load(path, allow_pickle=False))
  except (OSError, ValueError) as e:
    raise UserError(f"data.path: {path} is not a readable .npz ({e})") from e
  missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
  if missing:
    raise UserError(f"data.path: {path} lacks {', '.join(missing)}")
  if "class_names" in arrays:
    class_names = tuple(str(c) for c in arrays["class_names"])
  else:
    class_names = tuple(str(c) for c in range(int(arrays["y_train"].max()) + 1))
  parts = {}
  for part in ("train", "val", "test", "unlabeled"):
    if f"x_{part}" not in arrays:
      continue
    images = _npz_images(path, arrays, f"x_{part}", image_size)
    labels = (_npz_labels(path, arrays, f"y_{part}", len(images), len(class_names))
              if part != "unlabeled" else None)
    parts[part] = (images, labels)
  shapes = {part: images.shape[1:] for part, (images, _) in parts.items()}
  if len(set(shapes.values())) > 1:
    raise UserError(f"data.path: {path}: the arrays' images differ in size ({shapes}); set "
                    "data.image_size to resize them all to one size")
  channels = parts["train"][0].shape[1:]
  unlabeled = parts.get("unlabeled", (np.zeros((0, *channels), np.uint8), None))[0]
  name = os.path.basename(path)
  return UserImages(
      class_names, *parts["train"],
      np.asarray([f"{name}:x_train[{i}]" for i in range(len(parts["train"][1]))], dtype=str),
      val=parts.get("val"), test=parts["test"], unlabeled_images=unlabeled,
      unlabeled_files=np.asarray([f"{name}:x_unlabeled[{i}]" for i in range(len(unlabeled))],
                                 dtype=str),
      source=f"arrays in {path}")


# --- Cache -------------------------------------------------------------------------------


def _write_cache(path: str, images: UserImages) -> None:
  extra = {}
  for part in ("val", "test"):
    if getattr(images, part) is not None:
      extra[f"{part}_images"], extra[f"{part}_labels"] = getattr(images, part)
  data_lib.write_cache_file(
      path, class_names=np.asarray(images.class_names, dtype=str),
      train_images=images.train_images, train_labels=images.train_labels,
      train_files=images.train_files, unlabeled_images=images.unlabeled_images,
      unlabeled_files=images.unlabeled_files, source=np.asarray(images.source), **extra)


def _read_cache(path: str) -> UserImages:
  try:
    with np.load(path) as f:
      parts = {part: (f[f"{part}_images"], f[f"{part}_labels"]) if f"{part}_images" in f
               else None for part in ("val", "test")}
      return UserImages(tuple(str(c) for c in f["class_names"]), f["train_images"],
                        f["train_labels"], f["train_files"], parts["val"], parts["test"],
                        f["unlabeled_images"], f["unlabeled_files"],
                        source=f"cache {path} ({f['source']})")
  except (OSError, ValueError, KeyError) as e:
    raise UserError(f"data cache file {path} is unreadable ({e}); delete it to reload") from e
