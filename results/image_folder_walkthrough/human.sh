#!/bin/sh
# The README's walkthrough with a person as the oracle, on real Fashion-MNIST images:
# train/ 1,000 labeled images, test/ 2,000, unlabeled/ 4,000; the image_folder config
# as it is (+100 labels a round, 5 rounds). answer.py plays the person between runs.
#   sh results/image_folder_walkthrough/human.sh
set -eu
cd "$(dirname "$0")/../.."
FOLDER=${FOLDER:-/tmp/my_images}
WORKDIR=results/image_folder_walkthrough/human
[ -d "$FOLDER" ] || python -m experiments.export_images --dataset=fashion_mnist \
  --out="$FOLDER" --train=1000 --val=0 --test=2000 --unlabeled=4000
RUN="python -m experiments.main --config=image_folder --config.data.path=$FOLDER --config.al.oracle=human --workdir=$WORKDIR"
for n in 0 1 2 3 4; do
  [ -f $WORKDIR/labels/round_$n.csv ] && continue
  $RUN
  PYTHONPATH=. python results/image_folder_walkthrough/answer.py $WORKDIR $n
done
$RUN
