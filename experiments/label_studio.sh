#!/bin/sh
# Starts Label Studio (./install.sh --label-studio) on this machine, for al.oracle=label_studio.
# The first start makes the account and its API token; later starts keep them.
#
#   LABEL_STUDIO_PORT      port (8080)
#   LABEL_STUDIO_BIND      the address it listens on (localhost: this machine only)
#   LABEL_STUDIO_DATA      its database and uploads (~/.local/share/waal_jax/label-studio)
#   LABEL_STUDIO_USERNAME  the account's e-mail (labeler@localhost)
#   LABEL_STUDIO_PASSWORD  its password (required at the first start)
#   LABEL_STUDIO_API_KEY   its API token, 6 characters or more (required at the first start);
#                          the run reads the same variable, with LABEL_STUDIO_URL
#
# Example:
#   export LABEL_STUDIO_PASSWORD=... LABEL_STUDIO_API_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
#   sh experiments/label_studio.sh &
#   export LABEL_STUDIO_URL=http://localhost:8080
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERVER="$ROOT/.venv-label-studio/bin/label-studio"
if [ ! -x "$SERVER" ]; then
  echo "label_studio.sh: no $SERVER: run ./install.sh --label-studio first" >&2
  exit 1
fi
PORT="${LABEL_STUDIO_PORT:-8080}"
DATA="${LABEL_STUDIO_DATA:-$HOME/.local/share/waal_jax/label-studio}"
USERNAME="${LABEL_STUDIO_USERNAME:-labeler@localhost}"
PASSWORD="${LABEL_STUDIO_PASSWORD:-}"
TOKEN="${LABEL_STUDIO_API_KEY:-}"
if [ ! -e "$DATA/label_studio.sqlite3" ]; then
  if [ -z "$PASSWORD" ] || [ "${#TOKEN}" -lt 6 ]; then
    echo "label_studio.sh: the first start needs LABEL_STUDIO_PASSWORD and LABEL_STUDIO_API_KEY" \
      "(6 characters or more) in the environment" >&2
    exit 1
  fi
fi
mkdir -p "$DATA"
if [ ! -e "$DATA/label_studio.sqlite3" ] && [ -f "$ROOT/.venv-label-studio/template.sqlite3" ]; then
  # A new database from the one install.sh migrated (the account is made at the start).
  cp "$ROOT/.venv-label-studio/template.sqlite3" "$DATA/label_studio.sqlite3"
fi
# Nothing leaves this machine: no error reports to Label Studio's Sentry, no analytics.
export LABEL_STUDIO_SENTRY_DSN="" LABEL_STUDIO_FRONTEND_SENTRY_DSN="" \
  LABEL_STUDIO_COLLECT_ANALYTICS=false
# --enable-legacy-api-token: the token given here authenticates as "Token <key>", the
# form the run uses for a key that is not a personal access token (a JWT).
exec "$SERVER" start --no-browser --internal-host "${LABEL_STUDIO_BIND:-localhost}" \
  --port "$PORT" --data-dir "$DATA" \
  --username "$USERNAME" --password "$PASSWORD" --user-token "$TOKEN" \
  --enable-legacy-api-token
