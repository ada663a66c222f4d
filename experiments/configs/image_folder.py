r"""Your own images: a folder of class folders (or an .npz), see waal_jax/user_data.py.

Run (simulated oracle: the labels of train/ are known):
  python -m experiments.main --config=image_folder --config.data.path=DIR --workdir=W
A person as the oracle (queries come from DIR/unlabeled/ when it exists):
  python -m experiments.main --config=image_folder --config.data.path=DIR --workdir=W \
      --config.al.oracle=human
then label W/to_label/round_<n>.csv into W/labels/round_<n>.csv and rerun the same command.
The network follows the images (model.name=auto): LeNet-5 for 28x28 grayscale, else
VGG16-BN (sides a multiple of 32; data.image_size resizes). The training fields are the
paper's for LeNet-5 on Fashion-MNIST; the budget fields below suit a few thousand images.
"""

from experiments.configs import base


def get_config(preset: str = "paper"):
  config = base.get_base_config()
  config.data.name = "image_folder"
  config.model.name = "auto"
  config.al.initial_labeled = 100       # Random labels at round 0 (ignored with unlabeled/:
  #                                       then the labeled images of train/ are round 0's).
  config.al.query_size = 100
  config.al.rounds = 5
  return base.finish(config, preset)
