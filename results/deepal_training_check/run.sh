#!/bin/sh
# The Table 4 baselines on the full protocol (the whole 40K pool, 1,000 labels +500 a
# round to 6,000), trained shorter, to see which training the paper's baselines had
# (its Random is 14 points below ours at 1,000 labels and level at 6,000):
# - 10_epochs/random: as DeepAL (github.com/ej0cl6/deep-active-learning, the toolkit
#   the authors' released code is built on) trains by default on Fashion-MNIST: 10
#   epochs a round at a constant learning rate of 0.01 (momentum 0.5), no early
#   stopping, the last epoch's network;
# - 10_plus_5_epochs/<arm>: the same with 5 more epochs each round (10, 15, ... 60), as
#   the line `epoch += 5`, commented out in the round loop of the authors' Test.py,
#   would do; every baseline of Table 4, and deepfool_last_class: DeepFool as DeepAL
#   ran it until its fix of October 2022 (each step towards the last class other than
#   the prediction, no overshoot; experiments/table4_arms.py CHECK_ARMS).
# Each seed shares its split and initial labels with results/fashion_mnist_full (and
# Random its picks, which do not depend on the network). Two pinned one-thread runs at
# a time (experiments/table4.py); rerunning resumes. Then it prints Random and Margin
# beside the full protocol's (seeds both have) and writes the reports beside the
# paper's Table 4: $OUT/report_10_epochs, $OUT/report_10_plus_5_epochs, and
# $OUT/report_beside_table4: the Table 4 arms of results/fashion_mnist_full (the
# paper's stated training) with these baselines as <arm>/inferred, so WAAL is paired
# seed by seed with the baselines trained both ways.
#   sh results/deepal_training_check/run.sh [SEEDS]     (seeds 0 .. SEEDS-1; default 5)
set -eu
cd "$(dirname "$0")/../.."
OUT=results/deepal_training_check
SEEDS=${1:-5}
SHORT="--set=train.epochs=10 --set=train.patience=0 --set=train.lr_schedule=constant
  --set=train.model_selection=last"
python -m experiments.table4 --out=$OUT/10_epochs --seeds=5 --parallel=2 --arms=random $SHORT
python -m experiments.table4 --out=$OUT/10_plus_5_epochs --seeds="$SEEDS" --parallel=2 \
  --arms=random,margin,least_confidence,entropy,kmedian,coreset,dbal,deepfool,deepfool_last_class \
  $SHORT \
  --set=train.epochs_added_per_round=5
python -m experiments.compare_runs $OUT/10_epochs/random results/fashion_mnist_full/random
for arm in random margin; do
  python -m experiments.compare_runs $OUT/10_plus_5_epochs/$arm results/fashion_mnist_full/$arm
done
python -m experiments.report --workdirs=$OUT/10_epochs --out=$OUT/report_10_epochs
python -m experiments.report --workdirs=$OUT/10_plus_5_epochs --out=$OUT/report_10_plus_5_epochs
TABLE4=results/fashion_mnist_full
python -m experiments.report --out=$OUT/report_beside_table4 --workdirs=$TABLE4/waal,\
$TABLE4/waal_reference,$TABLE4/random,$TABLE4/least_confidence,$TABLE4/margin,\
$TABLE4/entropy,$TABLE4/kmedian,$TABLE4/coreset,$TABLE4/dbal,$TABLE4/deepfool,\
$TABLE4/random_match_pool,$TABLE4/random_wasserstein,inferred=$OUT/10_plus_5_epochs
