#!/bin/sh
# Installs everything waal_jax, its experiments and tests need (requirements.txt, pinned)
# and the library itself into the python3 on PATH (use a virtualenv where the
# system Python is externally managed), and real Fashion-MNIST from Debian where apt-get
# is available. Safe to run again.
#
#   ./install.sh --label-studio   also Label Studio (al.oracle=label_studio) in its own
#                                 virtualenv, .venv-label-studio/, so that its pins never
#                                 touch the project's, and Debian's Chromium for the
#                                 browser check of its tests
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
LABEL_STUDIO=0
for argument in "$@"; do
  case "$argument" in
    --label-studio) LABEL_STUDIO=1 ;;
    *) echo "install.sh: unknown option $argument (known: --label-studio)" >&2; exit 2 ;;
  esac
done

if [ "$LABEL_STUDIO" = 1 ]; then
  if [ ! -x .venv-label-studio/bin/python ]; then
    "$PYTHON" -m venv .venv-label-studio
  fi
  .venv-label-studio/bin/python -m pip install --quiet --disable-pip-version-check \
    -r experiments/label_studio_requirements.txt
  # A database with Label Studio's migrations applied, which experiments/label_studio.sh
  # copies for a new server: its first start then takes seconds, not half a minute.
  if [ ! -f .venv-label-studio/template.sqlite3 ]; then
    TEMPLATE_DIR=$(mktemp -d)
    LABEL_STUDIO_SENTRY_DSN="" .venv-label-studio/bin/label-studio version \
      --data-dir "$TEMPLATE_DIR" > "$TEMPLATE_DIR/version.txt" 2>&1
    cp "$TEMPLATE_DIR/label_studio.sqlite3" .venv-label-studio/template.sqlite3
    rm -rf "$TEMPLATE_DIR"
  fi
  echo "install.sh: Label Studio in .venv-label-studio (start: sh experiments/label_studio.sh)"
fi
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements.txt
# The library itself, so that `import waal_jax` works from any folder (editable: the
# checkout's code is what runs).
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps -e .

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "install.sh: not root and no sudo: skipping apt-get install dataset-fashion-mnist" >&2
      exit 0
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  PACKAGES="dataset-fashion-mnist"
  if [ "$LABEL_STUDIO" = 1 ]; then PACKAGES="$PACKAGES chromium chromium-driver"; fi
  $SUDO apt-get install -y -q $PACKAGES >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $PACKAGES >/dev/null
  }
  echo "install.sh: Fashion-MNIST in /usr/share/datasets/fashion-mnist"
else
  echo "install.sh: no apt-get: give Fashion-MNIST with --config.data.manual_dir or let tfds download it"
fi
echo "install.sh: done"
