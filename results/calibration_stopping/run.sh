#!/bin/sh
# Calibration and the stopping signal on the full Fashion-MNIST protocol (paper Tables
# 2/3: the 40K pool, 1,000 labels +500 a round to 6,000, up to 80 epochs a round with
# early stopping): WAAL, Random trained as long as WAAL (steps_per_epoch=match_pool:
# does WAAL's adversarial training change its calibration, or its training length?),
# Margin and Random, seeds 0-2. Every round records test_ece, test_nll, test_brier,
# test_per_class_accuracy and stop_set_kappa. Two runs at once as pinned one-thread
# processes (2 cores); rerunning resumes from the checkpoints.
#   sh results/calibration_stopping/run.sh
set -eu
cd "$(dirname "$0")/../.."
python -m experiments.table4 --out=results/calibration_stopping --seeds=3 --parallel=2 \
  --arms=waal,random_match_pool,margin,random
