#!/bin/sh
# The full Table 4 protocol on Fashion-MNIST (paper Tables 2/3: the whole 40K pool,
# 1,000 labels +500 a round to 6,000, up to 80 epochs a round with the early-stopping
# rule), every arm of experiments/table4.py, seeds 0-4, two runs at once as pinned
# one-thread processes (this project's CPU machine has 2 cores). Rerunning resumes.
#   sh results/fashion_mnist_full/run.sh
set -eu
cd "$(dirname "$0")/../.."
OUT=results/fashion_mnist_full
python -m experiments.table4 --out=$OUT --seeds=5 --parallel=2
