#!/bin/bash
# The full Table 4 protocol (the paper preset, as results/fashion_mnist_full/run.sh) on one
# GPU, seeds 0-4 of an arm trained in one program with the seed axis vmapped. Made for the
# lent H200 machine, whose image has jax/flax/optax/orbax but no ml_collections,
# tensorflow-datasets or network. Prepare here, once:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/fashion-mnist
#   cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion-mnist/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .gpu/whl ml-collections==1.1.0
# then carry .gpu and run there: [ARMS="waal random"] [BUDGET=480] bash results/fashion_mnist_gpu/run.sh
# ARMS: waal, waal_reference or any query strategy's name (run with the paper preset).
# Every run stops cleanly (SIGTERM: the finished rounds are kept) at BUDGET seconds from
# the start. The runs live in results/fashion_mnist_gpu/<arm>/seed_<k> (checkpoints are
# git-ignored), and their results.json/config.json come back in $OUT/results.tgz: unpack
# it in results/fashion_mnist_gpu/ and rerun on any machine to continue from there.
# The committed runs: waal (log_rounds_0-7.txt, then log_rounds_8-10.txt), and
#   ARMS="random margin entropy least_confidence kmedian coreset dbal" BUDGET=505
# (log_baselines.txt: three arms whole, least_confidence to round 7 when the budget
# ran out), then ARMS=least_confidence BUDGET=170 (log_least_confidence_rounds_8-10.txt).
# The report, on any machine:
#   python -m experiments.report --workdirs=results/fashion_mnist_gpu \
#     --out=results/fashion_mnist_gpu/report
set -u
BUDGET=${BUDGET:-480}
START=$(date +%s)
W=${WORK:-results/fashion_mnist_gpu}
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
(cd "$W" && find . -path "./*/seed_*/*" \( -name results.json -o -name config.json \) |
  tar czf "$OUT/results.tgz" -T -)
echo "total $(( $(date +%s) - START )) s"
