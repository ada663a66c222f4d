#!/bin/sh
# The full Table 4 protocol on Fashion-MNIST (paper Tables 2/3: the whole 40K pool,
# 1,000 labels +500 a round to 6,000, up to 80 epochs a round with the early-stopping
# rule), every arm of experiments/table4.py, seeds 0-4, and the four strategies newer
# than the paper (BADGE, BatchBALD, TypiClust, ProbCover) with seeds 0-2, and the check
# of how the paper's baselines were trained. Two runs at once as pinned one-thread
# processes (this project's CPU machine has 2 cores).
# First the comparison of the newer strategies with WAAL, Margin and Random (seeds 0-2,
# about a third of the CPU hours: BatchBALD's whole-pool queries alone take 5 h or more
# a seed), then the rest of Table 4. Each step goes seed by seed; within a seed the
# arms start longest first (seed 0's hours: waal_reference 4+, waal 1.2,
# random_wasserstein 1.2, ... dbal 0.2), so the runs still going when a machine is
# taken away are short ones. Rerunning resumes: from the checkpoints, or from
# results.json where only it was committed.
#   sh results/fashion_mnist_full/run.sh
set -eu
cd "$(dirname "$0")/../.."
OUT=results/fashion_mnist_full
ARMS=waal_reference,waal,random_wasserstein,random_match_pool,deepfool,kmedian,entropy,\
coreset,least_confidence,margin,random,dbal
NEWER=batchbald,probcover,typiclust,badge
python -m experiments.table4 --out=$OUT --seeds=3 --parallel=2 --arms=batchbald,waal,\
probcover,typiclust,badge,margin,random
python -m experiments.table4 --out=$OUT --seeds=3 --parallel=2 --arms=$ARMS,$NEWER
# The Table 4 baselines trained as the paper's seem to have been (10 epochs a round,
# +5 each round: results/deepal_training_check), seeds 0-2; seeds 3-4 come last.
sh results/deepal_training_check/run.sh 3
python -m experiments.table4 --out=$OUT --seeds=5 --parallel=2 --arms=$ARMS
# The reports: Table 4 (its twelve arms, seeds 0-4), and the newer strategies beside
# WAAL, Margin and Random on their common seeds 0-2.
TABLE4_REPORT=""
for arm in $(echo $ARMS | tr , ' '); do TABLE4_REPORT="$TABLE4_REPORT,$OUT/$arm"; done
python -m experiments.report --workdirs="${TABLE4_REPORT#,}" --out=$OUT/report
NEWER_REPORT=""
for arm in waal margin random batchbald probcover typiclust badge; do
  for seed in 0 1 2; do NEWER_REPORT="$NEWER_REPORT,$OUT/$arm/seed_$seed"; done
done
python -m experiments.report --workdirs="${NEWER_REPORT#,}" --out=$OUT/report_newer
# Last, the check's seeds 3-4 (16 runs, about 3 process-hours), after Table 4's reports.
sh results/deepal_training_check/run.sh 5
