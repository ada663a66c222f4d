"""Plays the person of the Label Studio walkthrough: annotates round <n>'s tasks in Label
Studio, through its REST API as the browser's Submit does, with Fashion-MNIST's own
labels (the exported file names are the images' indices in its train split).

  LABEL_STUDIO_URL=... LABEL_STUDIO_API_KEY=... PYTHONPATH=. \
      python results/label_studio_walkthrough/annotate.py WORKDIR N
"""

import json
import os
import sys

from experiments import export_images
from waal_jax import data
from waal_jax import label_studio

workdir, round_index = sys.argv[1], int(sys.argv[2])
labels = data.load_raw("fashion_mnist").train_labels
names = export_images.CLASS_NAMES["fashion_mnist"]
with open(os.path.join(workdir, "results.json")) as f:
  files = json.load(f)["rounds"][round_index]["queried_files"]
with open(os.path.join(workdir, label_studio.FOLDER, f"round_{round_index}.json")) as f:
  pushed = label_studio.PushedRound.from_json(json.load(f))
client = label_studio.Client.from_environment()
for task_id, name in zip(pushed.task_ids, files):
  index = int(os.path.basename(name)[:-len(".png")])
  client.request("POST", f"/api/tasks/{task_id}/annotations/", {
      "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                  "value": {"choices": [names[labels[index]]]}}],
      "was_cancelled": False})
print(f"annotated {len(files)} tasks of round {round_index} in Label Studio project "
      f"{pushed.project}")
