#!/bin/sh
# The reduced-protocol Fashion-MNIST runs of results/fashion_mnist_reduced, as run on
# the project's CPU machine (2 cores, AVX-512, no GPU): the whole 40K pool, 1,000
# initial labels, +500 a round for 10 rounds (to 6,000, as Table 2), but at most 10
# epochs a round instead of 80. Seed by seed, so that an interrupted session leaves
# every strategy with the same seeds; rerunning resumes. The tree is the one
# `--config.seeds=3 --workdir=$OUT/NAME` makes (NAME/seed_0, seed_1, seed_2).
#   sh results/fashion_mnist_reduced/run.sh [SEEDS]
set -eu
cd "$(dirname "$0")/../.."
OUT=results/fashion_mnist_reduced
PROTOCOL="--config=fashion_mnist --config.train.epochs=10 --config.al.rounds=10"
for seed in $(seq 0 $((${1:-3} - 1))); do
  python -m experiments.main $PROTOCOL --config.seed="$seed" --workdir=$OUT/waal/seed_$seed
  python -m experiments.main $PROTOCOL --config.seed="$seed" --workdir=$OUT/random/seed_$seed \
    --config.query.strategy=random
  python -m experiments.main $PROTOCOL --config.seed="$seed" --workdir=$OUT/margin/seed_$seed \
    --config.query.strategy=margin
  # The control: Random trained with as many steps per epoch as WAAL.
  python -m experiments.main $PROTOCOL --config.seed="$seed" \
    --workdir=$OUT/random_match_pool/seed_$seed \
    --config.query.strategy=random --config.train.steps_per_epoch=match_pool
done
python -m experiments.benchmark --config=fashion_mnist > $OUT/benchmark.jsonl
python -m experiments.report --workdirs=$OUT/waal,$OUT/random,$OUT/margin,$OUT/random_match_pool \
  --benchmark=$OUT/benchmark.jsonl --out=$OUT/report
