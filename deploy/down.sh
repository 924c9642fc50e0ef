#!/usr/bin/env bash
# Stop what deploy/up.sh started: the service processes, then Kafka and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${CRM_VAR_DIR:-$PWD/var}
for pidfile in "$VAR"/run/*.pid; do
  [[ -f "$pidfile" ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    echo "[down] stopped $(basename "$pidfile" .pid)"
  fi
  rm -f "$pidfile"
done
deploy/kafka.sh stop || true
deploy/postgres.sh stop || true
