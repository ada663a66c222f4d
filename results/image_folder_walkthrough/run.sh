#!/bin/sh
# The user's-own-images path checked against the built-in loader on real Fashion-MNIST:
# a folder of PNGs (train/ 5,000, val/ 1,000, test/ the 10,000 test images, written by
# experiments.export_images) run with --config=image_folder, beside --config=fashion_mnist
# with the same split sizes; both with the image_folder budget (100 labels, +100 a round
# to 600) and the paper's training (up to 80 epochs, early stopping), WAAL, seeds 0-2.
# Rerunning resumes.
#   sh results/image_folder_walkthrough/run.sh
set -eu
cd "$(dirname "$0")/../.."
OUT=results/image_folder_walkthrough
FOLDER=${FOLDER:-/tmp/fashion_mnist_folder}
[ -d "$FOLDER" ] || python -m experiments.export_images --dataset=fashion_mnist \
  --out="$FOLDER" --train=5000 --val=1000 --test=10000
BUDGET="--config.al.initial_labeled=100 --config.al.query_size=100 --config.al.rounds=5"
python -m experiments.main --config=image_folder --config.data.path="$FOLDER" \
  --workdir=$OUT/image_folder --config.seeds=3 $BUDGET
python -m experiments.main --config=fashion_mnist --config.data.pool_size=5000 \
  --config.data.val_size=1000 --workdir=$OUT/fashion_mnist --config.seeds=3 $BUDGET
python -m experiments.report --workdirs=$OUT/image_folder,$OUT/fashion_mnist --out=$OUT/report
