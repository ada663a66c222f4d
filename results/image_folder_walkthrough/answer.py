"""Plays the person of the README's walkthrough: labels WORKDIR/to_label/round_<n>.csv
into WORKDIR/labels/round_<n>.csv from Fashion-MNIST's own labels (the exported file
names are the images' indices in its train split).

  PYTHONPATH=. python results/image_folder_walkthrough/answer.py WORKDIR N
"""

import csv
import os
import sys

from experiments import export_images
from waal_jax import data

workdir, round_index = sys.argv[1], int(sys.argv[2])
labels = data.load_raw("fashion_mnist").train_labels
names = export_images.CLASS_NAMES["fashion_mnist"]
with open(os.path.join(workdir, "to_label", f"round_{round_index}.csv")) as f:
  rows = list(csv.DictReader(f))
os.makedirs(os.path.join(workdir, "labels"), exist_ok=True)
with open(os.path.join(workdir, "labels", f"round_{round_index}.csv"), "w") as f:
  f.write("id,label\n")
  for row in rows:
    index = int(os.path.basename(row["path"])[:-len(".png")])
    f.write(f"{row['id']},{names[labels[index]]}\n")
print(f"labeled {len(rows)} images into {workdir}/labels/round_{round_index}.csv")
