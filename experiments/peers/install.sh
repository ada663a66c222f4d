#!/bin/sh
# Creates .venv-peers/ at the repository root and installs the peer libraries of the
# scaling benchmark (scikit-activeml, baal; requirements.txt beside this file, pinned) into
# it. Safe to run again: an existing .venv-peers is reused and pip skips what is installed.
# Run: sh experiments/peers/install.sh   (PYTHON=python3.11 to pick the interpreter)
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$ROOT/.venv-peers"
PYTHON="${PYTHON:-python3}"
REQ="$HERE/requirements.txt"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
pip_() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
# Everything except baal, with dependency resolution (the pins make it deterministic).
TMPREQ="$(mktemp)"
trap 'rm -f "$TMPREQ"' EXIT
grep -v -i '^baal==' "$REQ" > "$TMPREQ"
pip_ install --quiet -r "$TMPREQ"
# baal without its declared dependencies (it lists jupyter, which it never imports); its
# run-time dependencies are in requirements.txt.
pip_ install --quiet --no-deps "$(grep -i '^baal==' "$REQ")"
"$VENV/bin/python" -c "
import baal.active.heuristics, numpy, skactiveml.pool, torch
print('install.sh: .venv-peers ready: scikit-activeml', skactiveml.__version__,
      '| baal 2.1.0 | torch', torch.__version__, '| numpy', numpy.__version__)"
