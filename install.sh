#!/bin/sh
# Installs everything waal_jax, its experiments and tests need (requirements.txt, pinned)
# and the library itself into the python3 on PATH (use a virtualenv where the
# system Python is externally managed), and real Fashion-MNIST from Debian where apt-get
# is available. Safe to run again.
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
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
  $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
  }
  echo "install.sh: Fashion-MNIST in /usr/share/datasets/fashion-mnist"
else
  echo "install.sh: no apt-get: give Fashion-MNIST with --config.data.manual_dir or let tfds download it"
fi
echo "install.sh: done"
