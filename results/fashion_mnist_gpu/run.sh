#!/bin/bash
# The full Table 4 protocol (the paper preset, as results/fashion_mnist_full/run.sh) on one
# GPU, seeds 0-4 of an arm trained in one program with the seed axis vmapped (the
# platform's default for --config.seeds on GPU). Made for the lent H200 machine, whose
# image has jax/flax/optax/orbax but no ml_collections, tensorflow-datasets or network:
#   carry .gpu (the Fashion-MNIST IDX .gz files in .gpu/fashion-mnist, the ml_collections
#   wheel in .gpu/whl) and run: bash results/fashion_mnist_gpu/run.sh
# Every run stops cleanly (SIGTERM: the finished rounds are kept) at BUDGET seconds from
# the start, and the results.json/config.json files come back in $OUT/results.tgz;
# unpack them over results/fashion_mnist_gpu/ and rerun to continue.
set -u
BUDGET=${BUDGET:-480}
START=$(date +%s)
W=${WORK:-/tmp/fashion_mnist_gpu}
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --upgrade --no-index --no-deps --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import jax, flax, optax, orbax.checkpoint as o, ml_collections; \
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
DATA="--config.data.manual_dir=.gpu/fashion-mnist"
for arm in ${ARMS:-waal random}; do
  left=$((START + BUDGET - $(date +%s)))
  [ "$left" -gt 30 ] || break
  case $arm in
    waal) extra="" ;;
    waal_reference) extra="" ;;
    *) extra="--config.query.strategy=$arm" ;;
  esac
  preset=fashion_mnist; [ "$arm" = waal_reference ] && preset=fashion_mnist:reference
  s=$(date +%s)
  timeout -s TERM -k 30 "$left" python3 -m experiments.main --config=$preset \
    --workdir="$W/$arm" $DATA $extra --config.seeds=5 --config.parallel_seeds=5 \
    --config.parallel_seeds_mode=vmap
  rc=$?
  echo "$arm: exit $rc, $(( $(date +%s) - s )) s wall"
  [ $rc = 0 ] || [ $rc = 143 ] || [ $rc = 124 ] || break   # a broken setup: stop early
done
tar czf "$OUT/results.tgz" -C "$W" --exclude=checkpoints --exclude=run.lock .
echo "total $(( $(date +%s) - START )) s"
