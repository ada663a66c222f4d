"""A person as the oracle (`al.oracle=human`): the queries go out as a CSV, labels come back.

After round n's query the run writes WORKDIR/to_label/round_<n>.csv (columns id,path:
the pool index and the image to look at) and stops. The person writes
WORKDIR/labels/round_<n>.csv (columns id,label, the label a class name) and reruns the
same command, which checks every row before anything in the workdir changes. Images
that have no file of their own (an .npz, a built-in dataset) are written as PNGs into
WORKDIR/to_label/round_<n>/ for the person to see.
"""

import csv
import io
import os
from typing import Dict, Sequence

import numpy as np

from waal_jax.errors import UserError

REQUESTS_DIR = "to_label"
ANSWERS_DIR = "labels"


def request_path(workdir: str, round_index: int) -> str:
  return os.path.join(workdir, REQUESTS_DIR, f"round_{round_index}.csv")


def answers_path(workdir: str, round_index: int) -> str:
  return os.path.join(workdir, ANSWERS_DIR, f"round_{round_index}.csv")


def _write_atomically(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", newline="") as f:
    f.write(text)
  os.replace(tmp, path)


def write_request(workdir: str, round_index: int, queried: Sequence[int], splits) -> str:
  """Writes round `round_index`'s to-label CSV (unless it is there already); returns its
  path."""
  path = request_path(workdir, round_index)
  if os.path.exists(path):
    return path
  files = splits.pool_files
  if files is None:
    files = _write_images(os.path.join(workdir, REQUESTS_DIR, f"round_{round_index}"),
                          queried, splits.pool_images)
  else:
    files = {int(i): os.path.abspath(str(files[i])) if os.path.exists(str(files[i]))
             else str(files[i]) for i in queried}
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["id", "path"])
  for index in queried:
    writer.writerow([int(index), files[int(index)]])
  _write_atomically(path, out.getvalue())
  return path


def _write_images(folder: str, queried: Sequence[int], images: np.ndarray) -> Dict[int, str]:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  paths = {}
  for index in queried:
    image = images[int(index)]
    path = os.path.abspath(os.path.join(folder, f"{int(index)}.png"))
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
    paths[int(index)] = path
  return paths


def instructions(workdir: str, round_index: int, count: int, class_names: Sequence[str]) -> str:
  """The one line that tells the person what to do next."""
  return (f"{count} images to label in {request_path(workdir, round_index)}: write "
          f"{answers_path(workdir, round_index)} with columns id,label (label one of "
          f"{', '.join(class_names)}) and rerun this command")


def read_answers(workdir: str, round_index: int, queried: Sequence[int],
                 class_names: Sequence[str]) -> np.ndarray:
  """The labels (class indices, in the order of `queried`) of round `round_index`'s
  answers file; any bad row is a UserError naming the file and the row (the header is
  row 1, as a spreadsheet shows it)."""
  path = answers_path(workdir, round_index)
  if not os.path.exists(path):
    raise UserError(f"{path} does not exist yet: label the images of "
                    f"{request_path(workdir, round_index)} there (columns id,label) and "
                    "rerun this command")
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise UserError(f"{path}: unreadable ({e})") from e
  header = [cell.strip().lower() for cell in rows[0]] if rows else []
  if "id" not in header or "label" not in header:
    raise UserError(f"{path} row 1: expected the header id,label, found {','.join(header)!r}")
  id_column, label_column = header.index("id"), header.index("label")
  position = {int(index): k for k, index in enumerate(queried)}
  classes = {name: c for c, name in enumerate(class_names)}
  labels = np.full(len(queried), -1, np.int32)
  first_row = {}
  for row_number, row in enumerate(rows[1:], start=2):
    if not any(cell.strip() for cell in row):
      continue                                      # blank lines are no rows
    where = f"{path} row {row_number}"
    cells = row + [""] * (max(id_column, label_column) + 1 - len(row))
    text_id, label = cells[id_column].strip(), cells[label_column].strip()
    try:
      index = int(text_id)
    except ValueError:
      raise UserError(f"{where}: id {text_id!r} is not a number") from None
    if index not in position:
      raise UserError(f"{where}: id {index} was not queried in round {round_index} (see "
                      f"{request_path(workdir, round_index)})")
    if index in first_row:
      raise UserError(f"{where}: id {index} appears again (first in row {first_row[index]})")
    first_row[index] = row_number
    if label not in classes:
      raise UserError(f"{where}: label {label!r} is not a class (one of "
                      f"{', '.join(class_names)})")
    labels[position[index]] = classes[label]
  missing = [int(queried[k]) for k in np.flatnonzero(labels < 0)]
  if missing:
    shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
    raise UserError(f"{path}: {len(missing)} queried id(s) have no row ({shown})")
  return labels
