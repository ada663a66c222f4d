r"""Writes a built-in dataset as an image folder (`--config=image_folder`), to try it on.

  python -m experiments.export_images --dataset=fashion_mnist --out=DIR \
      [--train=5000] [--val=1000] [--test=10000] [--unlabeled=0] [--seed=0]

DIR gets train/<class>/, val/<class>/ (if --val), test/<class>/ (if --test) and
unlabeled/ (if --unlabeled) of PNGs named <index>.png, drawn at random without
overlap: train, val and unlabeled from the dataset's train split, test from its test
split. Class folders take the dataset's class names where this file knows them.
"""

import os

from absl import app
from absl import flags
import numpy as np

from experiments import cli
from experiments.class_names import CLASS_NAMES

_FLAGS = {}  # Defined only when run as a program, so that tests can import this.


def _define_flags():
  _FLAGS["dataset"] = flags.DEFINE_string("dataset", "fashion_mnist",
                                          "Built-in dataset (data.name).")
  _FLAGS["out"] = flags.DEFINE_string("out", None, "Folder to write; must not exist yet.")
  _FLAGS["train"] = flags.DEFINE_integer("train", 5000, "Labeled images in train/.")
  _FLAGS["val"] = flags.DEFINE_integer("val", 1000,
                                       "Images in val/ (0: none, the run draws them).")
  _FLAGS["test"] = flags.DEFINE_integer("test", 10000,
                                        "Images in test/ (0: none, the run draws them).")
  _FLAGS["unlabeled"] = flags.DEFINE_integer("unlabeled", 0,
                                             "Images in unlabeled/, without class.")
  _FLAGS["seed"] = flags.DEFINE_integer("seed", 0, "Seeds the draw.")


def export(raw, class_names, out: str, counts: dict, seed: int) -> None:
  """Writes the folder; counts: {"train", "val", "test", "unlabeled"} -> images."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(raw.train_labels))
  drawn, start = {}, 0
  for part in ("train", "val", "unlabeled"):
    drawn[part] = order[start:start + counts[part]]
    start += counts[part]
  if start > len(order) or counts["test"] > len(raw.test_labels):
    raise ValueError(f"asked for more images than the dataset has ({len(order)} train, "
                     f"{len(raw.test_labels)} test)")
  drawn["test"] = rng.permutation(len(raw.test_labels))[:counts["test"]]
  for part, indices in drawn.items():
    images, labels = ((raw.test_images, raw.test_labels) if part == "test"
                      else (raw.train_images, raw.train_labels))
    for index in indices:
      folder = (os.path.join(out, part) if part == "unlabeled"
                else os.path.join(out, part, class_names[labels[index]]))
      os.makedirs(folder, exist_ok=True)
      image = images[index]
      Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
          os.path.join(folder, f"{index}.png"))


def main(argv):
  del argv
  value = {name: flag.value for name, flag in _FLAGS.items()}
  if os.path.exists(value["out"]):
    cli.fail(f"--out: {value['out']} exists already; give a new folder")
  from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    spec = data_lib.get_spec(value["dataset"])
    raw = data_lib.load_raw(value["dataset"])
    names = CLASS_NAMES.get(value["dataset"]) or spec.label_names
    counts = {part: value[part] for part in ("train", "val", "test", "unlabeled")}
    export(raw, names, value["out"], counts, value["seed"])
  except (UserError, ValueError) as e:
    cli.fail(str(e))
  cli.log(f"wrote {sum(counts.values())} images "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())}) of {value['dataset']} to "
          f"{value['out']}")


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=cli.make_flags_parser("out", config=False))
