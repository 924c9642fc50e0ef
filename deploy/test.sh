#!/usr/bin/env bash
# Run the test suite against real servers: start Kafka and PostgreSQL if they are not running,
# run pytest (arguments are passed on), and stop afterwards only what this run started.
set -euo pipefail
cd "$(dirname "$0")/.."

started=()
cleanup() {
  local code=$?
  for server in "${started[@]}"; do
    "deploy/${server}.sh" stop || true
  done
  exit "$code"
}
trap cleanup EXIT

for server in kafka postgres; do
  if ! "deploy/${server}.sh" status >/dev/null 2>&1; then
    "deploy/${server}.sh" start
    started+=("$server")
  else
    echo "[test] ${server} already running: using it and leaving it running"
  fi
done

started_at=$(date +%s)
.venv/bin/pytest "$@"
echo "[test] pytest took $(( $(date +%s) - started_at )) s"
