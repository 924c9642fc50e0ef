#!/usr/bin/env bash
# Run the test suite against real servers: start Kafka and PostgreSQL if they are not running,
# run pytest (arguments are passed on), and stop afterwards only what this run started.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG_TAG=test
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source deploy/lib/common.sh

# The staff console's browser tests (tests/e2e/test_console*.py) drive Debian's Chromium through its
# driver: installed here when missing, as CI does, so that `make test` runs on a fresh machine.
if [[ -z "${CRM_CHROMIUM:-}" ]] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
  if [[ ${EUID} -eq 0 ]] && command -v apt-get >/dev/null; then
    apt_install chromium chromium-driver
  else
    log "Chromium or its driver is missing: the console's browser tests will fail (apt-get install chromium chromium-driver)"
  fi
fi

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
