#!/bin/sh
# Random on the full Table 4 protocol (the whole 40K pool, 1,000 labels +500 a round to
# 6,000), trained two shorter ways, to see which training the paper's baselines had
# (its Random is 14 points below ours at 1,000 labels and level at 6,000):
# - random_10_epochs: as DeepAL (github.com/ej0cl6/deep-active-learning, the toolkit
#   the authors' released code is built on) trains by default on Fashion-MNIST: 10
#   epochs a round at a constant learning rate of 0.01 (momentum 0.5), no early
#   stopping, the last epoch's network;
# - random_10_plus_5_epochs: the same, but 5 more epochs each round (10, 15, ... 60),
#   as the line `epoch += 5`, commented out in the round loop of the authors' Test.py,
#   would do; and Margin trained that way (seeds 0-2), to see whether its lead over
#   Random is then the paper's.
# Seeds 0-4 share each seed's split, initial labels and queries with
# results/fashion_mnist_full/random (Random's picks do not depend on the network).
# Rerunning resumes; then it prints each arm beside the full protocol's Random (seeds
# both have) and writes the reports beside the paper's Table 4: $OUT/report_10_epochs
# and $OUT/report_10_plus_5_epochs (Random and Margin, with their paired tests).
#   sh results/deepal_training_check/run.sh
set -eu
cd "$(dirname "$0")/../.."
OUT=results/deepal_training_check
DEEPAL="--config=fashion_mnist --config.train.epochs=10 --config.train.patience=0
  --config.train.lr_schedule=constant --config.train.model_selection=last"
python -m experiments.main $DEEPAL --workdir=$OUT/random_10_epochs \
  --config.query.strategy=random --config.seeds=5
python -m experiments.main $DEEPAL --workdir=$OUT/random_10_plus_5_epochs \
  --config.query.strategy=random --config.seeds=5 --config.train.epochs_added_per_round=5
python -m experiments.main $DEEPAL --workdir=$OUT/margin_10_plus_5_epochs \
  --config.query.strategy=margin --config.seeds=3 --config.train.epochs_added_per_round=5
for arm in random_10_epochs random_10_plus_5_epochs; do
  python -m experiments.compare_runs $OUT/$arm results/fashion_mnist_full/random
done
python -m experiments.compare_runs $OUT/margin_10_plus_5_epochs results/fashion_mnist_full/margin
python -m experiments.report --workdirs=$OUT/random_10_epochs --out=$OUT/report_10_epochs
python -m experiments.report --workdirs=$OUT/random_10_plus_5_epochs,$OUT/margin_10_plus_5_epochs \
  --out=$OUT/report_10_plus_5_epochs
