#!/bin/sh
# The early-stopping study (experiments/stopping_study.py) of the README: WAAL and Random,
# paper preset, seeds 0 and 1, at 1,000, 3,500 and 6,000 labels, each network trained
# for the whole 80-epoch schedule and evaluated after every epoch on two halves of the
# validation split. The labeled sets are those the committed reduced-protocol runs
# held at these budgets (results/fashion_mnist_reduced/{waal,random}/seed_N). Resumable.
#   sh results/stopping_study/run.sh
set -eu
cd "$(dirname "$0")/../.."
OUT=results/stopping_study
python -m experiments.stopping_study --config=fashion_mnist --config.query.strategy=random \
  --labeled_from=results/fashion_mnist_reduced/random --out=$OUT/random.jsonl
python -m experiments.stopping_study --config=fashion_mnist \
  --labeled_from=results/fashion_mnist_reduced/waal --out=$OUT/waal.jsonl
python -m experiments.stopping_study --config=fashion_mnist \
  --summarize=$OUT/random.jsonl,$OUT/waal.jsonl > $OUT/table.md
