#!/bin/sh
# The docs' TensorBoard screenshot, from scratch: two-round runs of WAAL and of Random
# trained as long (train.steps_per_epoch=match_pool) on real Fashion-MNIST (the README's
# quick command, two seeds each), TensorBoard over the tree, and headless Chromium
# checking that every tag has its card and every run is listed before the picture.
# Needs ./install.sh --label-studio (Selenium lives in that virtualenv) and Debian's
# chromium and chromedriver.
#   sh experiments/tensorboard_screenshot.sh [OUT_PNG] [WORKDIR]
set -eu
cd "$(dirname "$0")/.."
OUT="${1:-docs/images/tensorboard.png}"
TREE="${2:-/tmp/waal_tensorboard_demo}"
PORT="${TENSORBOARD_PORT:-6106}"
python -m experiments.main --config=fashion_mnist --workdir="$TREE/waal" \
  --config.al.rounds=1 --config.train.epochs=2 --config.seeds=2
python -m experiments.main --config=fashion_mnist --workdir="$TREE/random_match_pool" \
  --config.query.strategy=random --config.train.steps_per_epoch=match_pool \
  --config.al.rounds=1 --config.train.epochs=2 --config.seeds=2
tensorboard --logdir "$TREE" --port "$PORT" > "$TREE/tensorboard.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
TAGS=$(python3 -c 'from waal_jax import tensorboard_writer as t
print(",".join([*t.EPOCH_SCALARS.values(), "epoch/wasserstein_estimate", "epoch/gradient_penalty",
                *t.ROUND_SCALARS.values(), t.QUERIED_CLASSES_TAG]
               + [t.PER_CLASS_PREFIX + str(c) for c in range(10)]))')
.venv-label-studio/bin/python experiments/tensorboard_browser.py \
  --url "http://localhost:$PORT" --tags "$TAGS" \
  --runs waal/seed_0,waal/seed_1,random_match_pool/seed_0,random_match_pool/seed_1 \
  --filter 'round/(test_accuracy|test_ece|stop_set_kappa)|epoch/(wasserstein_estimate|val_accuracy)' --screenshot "$OUT"
