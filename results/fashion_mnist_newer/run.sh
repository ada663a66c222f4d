#!/bin/sh
# The newer strategies (BADGE, BatchBALD, TypiClust, ProbCover) beside WAAL, Random and
# Margin on real Fashion-MNIST: the paper preset and the Table 2/3 protocol (the whole
# 40K pool, up to 80 epochs a round, the early-stopping rule) cut to the low budgets
# where TypiClust and ProbCover are meant to help: 1,000 labels +500 a round to 3,000
# (4 rounds), seeds 0-2, two runs at once as pinned one-thread processes. Rerunning
# resumes.
#   sh results/fashion_mnist_newer/run.sh
set -eu
cd "$(dirname "$0")/../.."
python -m experiments.table4 --out=results/fashion_mnist_newer --seeds=3 --parallel=2 \
    --arms=waal,random,margin,badge,batchbald,typiclust,probcover --set=al.rounds=4
