#!/bin/sh
# The whole-loop check of the reference preset against our PyTorch re-creation of the
# authors' training and query loop (experiments/torch_reference.py), on the same
# splits and initial labels: the whole 40K pool, 1,000 labels +500 x 3 rounds, 3 epochs
# a round, seeds 0-5. Rerunning resumes; then it prints the comparison.
#   sh results/fashion_mnist_reference_check/run.sh
set -eu
cd "$(dirname "$0")/../.."
OUT=results/fashion_mnist_reference_check
for seed in 0 1 2 3 4 5; do
  python -m experiments.main --config=fashion_mnist:reference --config.seed="$seed" \
    --config.train.epochs=3 --config.al.rounds=3 --workdir=$OUT/jax/seed_$seed
  [ -f $OUT/torch/seed_$seed/results.json ] && \
    [ "$(python -c "import json;print(len(json.load(open('$OUT/torch/seed_$seed/results.json'))['rounds']))")" = 4 ] || \
    python -m experiments.torch_reference --seed="$seed" --epochs=3 --rounds=3 \
      --out=$OUT/torch/seed_$seed
done
python -m experiments.compare_runs $OUT/jax $OUT/torch
