"""The user's own images (data.name=image_folder) and a person as the oracle.

The folders are PNGs the tests write: three classes of 28x28 grayscale images (class
means plus noise, so a network can tell them apart), each file named after its class so
the tests can play the person who labels them.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_in_process, run_module
from waal_jax import data as data_lib
from waal_jax import oracle
from waal_jax import user_data
from waal_jax.errors import UserError

CLASSES = ("boot", "coat", "shirt")
_MEANS = np.random.default_rng(1).integers(0, 256, (3, 28, 28))


def _image(label: int, rng, size=(28, 28), mode="L") -> Image.Image:
  pixels = np.clip(_MEANS[label] + rng.normal(0, 50, (28, 28)), 0, 255).astype(np.uint8)
  return Image.fromarray(pixels, "L").resize(size).convert(mode)


def write_folder(root, train_per_class=20, test_per_class=0, unlabeled=0, seed=0) -> str:
  """train/<class>/ (and test/<class>/) PNGs, and unlabeled/ PNGs named <class>_<k>.png
  (the name tells the test's "person" the label)."""
  rng = np.random.default_rng(seed)
  for part, count in (("train", train_per_class), ("test", test_per_class)):
    for c, name in enumerate(CLASSES if count else ()):
      os.makedirs(os.path.join(root, part, name), exist_ok=True)
      for k in range(count):
        _image(c, rng).save(os.path.join(root, part, name, f"{k}.png"))
  if unlabeled:
    os.makedirs(os.path.join(root, "unlabeled"))
    for k in range(unlabeled):
      c = k % len(CLASSES)
      _image(c, rng).save(os.path.join(root, "unlabeled", f"{CLASSES[c]}_{k}.png"))
  return str(root)


# A run of seconds: one query round, two epochs.
def _args(folder, workdir, cache, *extra):
  return ["--config=image_folder", f"--config.data.path={folder}", f"--workdir={workdir}",
          f"--config.data.cache_dir={cache}", "--config.al.initial_labeled=12",
          "--config.al.query_size=6", "--config.al.rounds=1", "--config.train.epochs=2",
          "--config.train.batch_size=8", "--config.train.eval_batch_size=50",
          "--config.query.batch_size=64", *extra]


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def _answer(workdir, round_index, edit=None):
  """Labels round_index's queries as the file names say; `edit(rows)` spoils them."""
  with open(oracle.request_path(workdir, round_index)) as f:
    requests = [line.strip().split(",") for line in f][1:]
  rows = [[index, os.path.basename(path).split("_")[0]] for index, path in requests]
  if edit:
    rows = edit(rows)
  os.makedirs(os.path.join(workdir, oracle.ANSWERS_DIR), exist_ok=True)
  with open(oracle.answers_path(workdir, round_index), "w") as f:
    f.write("id,label\n" + "".join(f"{i},{label}\n" for i, label in rows))


def _snapshot(workdir):
  """Every file under workdir and its bytes."""
  found = {}
  for folder, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, workdir)] = f.read()
  return found


# --- Reading folders and arrays (no training) -----------------------------------------


def test_folder_without_val_and_test_draws_them_per_class(tmp_path):
  folder = write_folder(tmp_path / "d", train_per_class=20)
  images = user_data.load(folder, 0, str(tmp_path / "cache"))
  assert images.class_names == CLASSES and images.train_images.shape == (60, 28, 28, 1)
  splits = data_lib.user_splits(images, seed=0, val_fraction=0.1, test_fraction=0.2)
  # Per class of 20: round(20 x 0.2) = 4 test, round(20 x 0.1) = 2 validation, 14 pool.
  assert (len(splits.pool_labels), len(splits.val_labels), len(splits.test_labels)) == (42, 6, 12)
  assert np.bincount(splits.test_labels).tolist() == [4, 4, 4]
  assert splits.initial_labeled is None and splits.spec.label_names == CLASSES
  # Every pool file is a train/ image of the class the pool label says.
  for path, label in zip(splits.pool_files, splits.pool_labels):
    assert os.sep + os.path.join("train", CLASSES[label]) + os.sep in path
  # The second load comes from the cache, equal; a changed file is decoded again.
  again = user_data.load(folder, 0, str(tmp_path / "cache"))
  assert again.source.startswith("cache") and np.array_equal(again.train_images,
                                                             images.train_images)
  _image(0, np.random.default_rng(9)).save(os.path.join(folder, "train", "boot", "0.png"))
  assert not user_data.load(folder, 0, str(tmp_path / "cache")).source.startswith("cache")


def test_unlabeled_images_extend_the_pool_and_train_is_round_zero(tmp_path):
  folder = write_folder(tmp_path / "d", train_per_class=5, test_per_class=3, unlabeled=7)
  images = user_data.load(folder, 0, str(tmp_path / "cache"))
  splits = data_lib.user_splits(images, seed=0, val_fraction=0.2, test_fraction=0.5)
  # test/ is given, so only validation is drawn: round(5 x 0.2) = 1 a class.
  assert (len(splits.val_labels), len(splits.test_labels)) == (3, 9)
  assert len(splits.pool_labels) == 12 + 7
  assert splits.initial_labeled.tolist() == list(range(12))
  assert (splits.pool_labels[12:] == data_lib.UNKNOWN_LABEL).all()
  assert all("unlabeled" in f for f in splits.pool_files[12:])


def test_rgb_images_resized_and_mixed_sizes_refused(tmp_path):
  folder = write_folder(tmp_path / "d", train_per_class=3)
  _image(1, np.random.default_rng(0), size=(40, 30), mode="RGB").save(
      os.path.join(folder, "train", "coat", "big.png"))
  with pytest.raises(UserError, match=r"big.png is 40x30 but .* set data.image_size"):
    user_data.load(folder, 0, str(tmp_path / "cache"))
  images = user_data.load(folder, 32, str(tmp_path / "cache"))
  # One RGB file makes every image RGB.
  assert images.train_images.shape == (10, 32, 32, 3)


def test_an_image_that_does_not_decode_is_named(tmp_path):
  folder = write_folder(tmp_path / "d", train_per_class=3)
  bad = os.path.join(folder, "train", "shirt", "broken.png")
  with open(bad, "wb") as f:
    f.write(b"\x89PNG not really")
  with pytest.raises(UserError, match="broken.png does not decode"):
    user_data.load(folder, 0, str(tmp_path / "cache"))


def test_npz_arrays_work_the_same_way(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
  y = np.arange(30) % 3
  path = str(tmp_path / "mine.npz")
  np.savez(path, x_train=x, y_train=y, x_test=x[:9], y_test=y[:9], x_unlabeled=x[:4],
           class_names=np.asarray(CLASSES))
  images = user_data.load(path, 0, str(tmp_path / "cache"))
  assert images.class_names == CLASSES and images.test[0].shape == (9, 28, 28, 1)
  splits = data_lib.user_splits(images, seed=0, val_fraction=0.1, test_fraction=0.2)
  assert len(splits.val_labels) == 3 and len(splits.pool_labels) == 27 + 4
  assert splits.pool_files[-1] == "mine.npz:x_unlabeled[3]"
  np.savez(path, x_train=x, y_train=y + 5, x_test=x, y_test=y, class_names=np.asarray(CLASSES))
  with pytest.raises(UserError, match=r"y_train\[0\] = 5 is not a class"):
    user_data.load(path, 0, str(tmp_path / "cache"))


def test_the_model_follows_the_images():
  from conftest import make_settings  # pylint: disable=g-import-not-at-top
  from waal_jax import settings as settings_lib  # pylint: disable=g-import-not-at-top
  settings = make_settings("image_folder", data__path="/somewhere")
  assert settings.model.name == "auto"

  def spec(shape):
    return data_lib.DatasetSpec("image_folder", shape, 3, (0.5,) * shape[-1],
                                (0.2,) * shape[-1], "user")
  assert settings_lib.for_data(settings, spec((28, 28, 1))).model.name == "lenet5"
  assert settings_lib.for_data(settings, spec((64, 64, 3))).model.name == "vgg16"
  with pytest.raises(UserError, match="multiples of 32; image_folder has 40x40x3"):
    settings_lib.for_data(settings, spec((40, 40, 3)))


# --- The answers file --------------------------------------------------------------------


@pytest.mark.parametrize("rows, message", [
    ("id,label\n7,boot\n3,cat\n", r"row 3: label 'cat' is not a class \(one of boot, coat"),
    ("id,label\n7,boot\n5,coat\n", r"row 3: id 5 was not queried in round 2"),
    ("id,label\n7,boot\n7,coat\n", r"row 3: id 7 appears again \(first in row 2\)"),
    ("id,label\n7,boot\n", r"round_2.csv: 1 queried id\(s\) have no row \(3\)"),
    ("index,class\n7,boot\n", r"row 1: expected the header id,label"),
    ("id,label\nseven,boot\n", r"row 2: id 'seven' is not a number"),
])
def test_bad_answers_name_the_file_and_row(tmp_path, rows, message):
  os.makedirs(tmp_path / oracle.ANSWERS_DIR)
  (tmp_path / oracle.ANSWERS_DIR / "round_2.csv").write_text(rows)
  with pytest.raises(UserError, match=message):
    oracle.read_answers(str(tmp_path), 2, [7, 3], CLASSES)


def test_answers_in_any_order_give_labels_in_query_order(tmp_path):
  os.makedirs(tmp_path / oracle.ANSWERS_DIR)
  (tmp_path / oracle.ANSWERS_DIR / "round_0.csv").write_text(
      "label,id\n shirt , 3\n\nboot,7\n")
  assert oracle.read_answers(str(tmp_path), 0, [7, 3], CLASSES).tolist() == [0, 2]


# --- Whole runs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def human_run(tmp_path_factory):
  """A human-oracle run paused after round 0's query (a copy kept), then labeled and
  finished."""
  base = tmp_path_factory.mktemp("human")
  folder = write_folder(base / "d", train_per_class=6, test_per_class=4, unlabeled=30)
  workdir, cache = str(base / "w"), str(base / "cache")
  first = run_module("experiments.main", *_args(folder, workdir, cache,
                                                "--config.al.oracle=human"))
  paused = str(base / "paused")
  shutil.copytree(workdir, paused)
  _answer(workdir, 0)
  second = run_module("experiments.main", *_args(folder, workdir, cache,
                                                 "--config.al.oracle=human"))
  return folder, cache, paused, workdir, first, second


def test_human_oracle_round_trip(human_run):
  folder, _, paused, workdir, first, second = human_run
  assert first.returncode == 0, first.stderr
  assert "6 images to label in" in first.stderr and "done:" not in first.stderr
  with open(oracle.request_path(paused, 0)) as f:
    lines = f.read().splitlines()
  assert lines[0] == "id,path" and len(lines) == 7
  ids = [int(line.split(",")[0]) for line in lines[1:]]
  paths = [line.split(",")[1] for line in lines[1:]]
  # 6 a class in train/, round(6 x 0.1) = 1 of them drawn for validation: a pool of 15
  # labeled images, then the 30 unlabeled ones, which the queries come from.
  assert len(set(ids)) == 6 and all(15 <= i < 45 for i in ids)
  assert all(p.startswith(os.path.join(folder, "unlabeled")) for p in paths)
  waiting = _results(paused)["rounds"]
  assert len(waiting) == 1 and waiting[0]["num_labeled"] == 15
  assert waiting[0]["queried_indices"] == ids and waiting[0]["queried_class_counts"] is None
  assert waiting[0]["queried_files"] == [os.path.relpath(p, folder) for p in paths]

  assert second.returncode == 0, second.stderr
  assert "6 labels of round 0 read from" in second.stderr and "done:" in second.stderr
  rounds = _results(workdir)["rounds"]
  assert [r["num_labeled"] for r in rounds] == [15, 21]
  truth = [CLASSES.index(os.path.basename(p).split("_")[0]) for p in paths]
  assert rounds[0]["queried_labels"] == truth
  assert rounds[0]["queried_class_counts"] == np.bincount(truth, minlength=3).tolist()


def test_a_rerun_without_answers_and_bad_answers_touch_nothing(human_run, tmp_path):
  folder, cache, paused, *_ = human_run
  args = ("--config.al.oracle=human",)
  workdir = str(tmp_path / "w")
  shutil.copytree(paused, workdir)
  before = _snapshot(workdir)
  _, error = run_in_process(*_args(folder, workdir, cache, *args))
  assert f"{oracle.answers_path(workdir, 0)} does not exist yet" in error
  assert _snapshot(workdir) == before
  _answer(workdir, 0, edit=lambda rows: rows[:-1] + [[rows[0][0], "coat"]])
  before = _snapshot(workdir)
  _, error = run_in_process(*_args(folder, workdir, cache, *args))
  assert "round_0.csv row 7: id" in error and "appears again (first in row 2)" in error
  assert _snapshot(workdir) == before


def test_a_killed_human_oracle_run_resumes(human_run, tmp_path):
  folder, cache, paused, finished, *_ = human_run
  workdir = str(tmp_path / "w")
  shutil.copytree(paused, workdir)
  _answer(workdir, 0)
  args = _args(folder, workdir, cache, "--config.al.oracle=human")
  process = subprocess.Popen([sys.executable, "-m", "experiments.main", *args], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  for line in process.stderr:               # killed once round 1 trains
    if "round 1/1: training" in line:
      process.send_signal(signal.SIGKILL)
      break
  process.wait()
  assert len(_results(workdir)["rounds"]) == 1
  resumed = run_module("experiments.main", *args)
  assert resumed.returncode == 0, resumed.stderr
  essentials = lambda w: [(r["num_labeled"], r["test_accuracy"], r["queried_indices"],
                           r.get("queried_labels")) for r in _results(w)["rounds"]]
  assert essentials(workdir) == essentials(finished)


def test_simulated_round_on_a_folder_and_its_bad_inputs(tmp_path):
  folder = write_folder(tmp_path / "d", train_per_class=20)
  with open(os.path.join(folder, "train", "coat", "notes.txt"), "w") as f:
    f.write("not an image")
  cache = str(tmp_path / "cache")
  done = run_module("experiments.main", *_args(folder, str(tmp_path / "w"), cache))
  assert done.returncode == 0, done.stderr
  assert "pool 42 (0 unlabeled), validation 6, test 12" in done.stderr
  assert (f"data.path: skipping 1 file(s) of {folder} that are not .png or .jpg: "
          "train/coat/notes.txt\n") in done.stderr
  rounds = _results(str(tmp_path / "w"))["rounds"]
  assert [r["num_labeled"] for r in rounds] == [12, 18]
  assert sum(rounds[0]["queried_class_counts"]) == 6
  # Which files were bought, relative to data.path, with the classes their folders say.
  files = rounds[0]["queried_files"]
  assert len(set(files)) == 6 and all(f.startswith("train/") for f in files)
  assert all(os.path.isfile(os.path.join(folder, f)) for f in files)
  assert np.bincount([CLASSES.index(f.split("/")[1]) for f in files], minlength=3).tolist() \
      == rounds[0]["queried_class_counts"]
  assert rounds[1]["queried_files"] == []
  # Unlabeled images need a person; an image that does not decode is named.
  os.makedirs(os.path.join(folder, "unlabeled"))
  _image(0, np.random.default_rng(0)).save(os.path.join(folder, "unlabeled", "u.png"))
  _, error = run_in_process(*_args(folder, str(tmp_path / "w2"), cache))
  assert "has 1 unlabeled images: only a person" in error
  with open(os.path.join(folder, "unlabeled", "v.jpg"), "wb") as f:
    f.write(b"not a jpeg")
  _, error = run_in_process(*_args(folder, str(tmp_path / "w3"), cache,
                                   "--config.al.oracle=human"))
  assert "v.jpg does not decode as an image" in error and not os.path.exists(tmp_path / "w3")


def test_export_images_writes_a_folder_that_loads_back(tmp_path):
  from experiments import export_images  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  raw = data_lib.RawData(rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8),
                         np.arange(40, dtype=np.int32) % 3,
                         rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8),
                         np.arange(10, dtype=np.int32) % 3, source="test arrays")
  out = str(tmp_path / "exported")
  export_images.export(raw, CLASSES, out, {"train": 12, "val": 6, "test": 9, "unlabeled": 5},
                       seed=0)
  images = user_data.load(out, 0, str(tmp_path / "cache"))
  assert (len(images.train_labels), len(images.val[1]), len(images.test[1]),
          len(images.unlabeled_files)) == (12, 6, 9, 5)
  # Each file is named after its index in the dataset and holds that image, in the
  # class folder of its label; train and unlabeled never share an image.
  for path, image, label in zip(images.train_files, images.train_images, images.train_labels):
    index = int(os.path.basename(path)[:-4])
    assert np.array_equal(image, raw.train_images[index]) and label == raw.train_labels[index]
  names = [os.path.basename(p) for p in images.train_files] + [
      os.path.basename(p) for p in images.unlabeled_files]
  assert len(set(names)) == 17
