#!/bin/sh
# The Label Studio walkthrough (docs/label-studio.md) on real Fashion-MNIST images:
# train/ 1,000 labeled images, test/ 2,000, unlabeled/ 4,000; the image_folder config
# with two query rounds of 100. A Label Studio of its own is started on port 8093 with a
# fresh database; annotate.py plays the person between runs, and the browser check
# takes the screenshot of round 0's first task.
#   ./install.sh --label-studio && sh results/label_studio_walkthrough/run.sh
set -eu
cd "$(dirname "$0")/../.."
FOLDER=${FOLDER:-/tmp/my_images}
WORKDIR=results/label_studio_walkthrough/run
SERVER_DATA=$(mktemp -d)
[ -d "$FOLDER" ] || python -m experiments.export_images --dataset=fashion_mnist \
  --out="$FOLDER" --train=1000 --val=0 --test=2000 --unlabeled=4000
export LABEL_STUDIO_PORT=8093 LABEL_STUDIO_DATA="$SERVER_DATA" \
  LABEL_STUDIO_USERNAME=labeler@localhost \
  LABEL_STUDIO_PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(8))')" \
  LABEL_STUDIO_API_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(20))')" \
  LABEL_STUDIO_URL=http://localhost:8093
sh experiments/label_studio.sh > "$SERVER_DATA/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; pkill -f "label-studio start.*--port 8093" || true' EXIT
until curl -sf "$LABEL_STUDIO_URL/health" > /dev/null; do sleep 1; done
RUN="python -m experiments.main --config=image_folder --config.data.path=$FOLDER --config.al.oracle=label_studio --config.al.rounds=2 --workdir=$WORKDIR"
for n in 0 1; do
  $RUN 2>&1 | tee -a $WORKDIR.log
  if [ $n = 0 ]; then
    PROJECT=$(python3 -c "import json; print(json.load(open('$WORKDIR/label_studio/project.json'))['project'])")
    TASK=$(python3 -c "import json; print(json.load(open('$WORKDIR/label_studio/round_0.json'))['task_ids'][0])")
    .venv-label-studio/bin/python experiments/label_studio_browser.py --url "$LABEL_STUDIO_URL" \
      --username "$LABEL_STUDIO_USERNAME" --project "$PROJECT" --task "$TASK" \
      --screenshot docs/images/label_studio_task.png
  fi
  PYTHONPATH=. python results/label_studio_walkthrough/annotate.py $WORKDIR $n
done
$RUN 2>&1 | tee -a $WORKDIR.log
