#!/usr/bin/env bash
# Distributed mode on this machine: Kafka, PostgreSQL (one database per service), and each service
# and the gateway as its own process. Logs in var/log/, pids in var/run/.
#   deploy/up.sh [start|status]
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${CRM_VAR_DIR:-$PWD/var}
PG_PORT=${PG_PORT:-55432}
KAFKA_PORT=${KAFKA_PORT:-9092}
SERVICES=(identity interactions segmentation loyalty)
declare -A PORTS=([gateway]=8000 [identity]=8001 [interactions]=8002 [segmentation]=8003 [loyalty]=8004)
mkdir -p "$VAR/log" "$VAR/run"

running() { [[ -f "$VAR/run/$1.pid" ]] && kill -0 "$(cat "$VAR/run/$1.pid")" 2>/dev/null; }

if [[ "${1:-start}" == "status" ]]; then
  for name in "${SERVICES[@]}" gateway; do
    if running "$name"; then echo "$name: running (pid $(cat "$VAR/run/$name.pid"), port ${PORTS[$name]})"; else echo "$name: stopped"; fi
  done
  exit 0
fi

deploy/kafka.sh start
deploy/postgres.sh start

export CRM_BUS=kafka CRM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" CRM_VAR_DIR="$VAR"
for name in "${SERVICES[@]}"; do
  deploy/postgres.sh createdb "crm_$name" >/dev/null
  upper=${name^^}
  export "CRM_${upper}_DATABASE_URL=postgresql+asyncpg://crm:crm@127.0.0.1:$PG_PORT/crm_$name"
  export "CRM_GATEWAY_${upper}_URL=http://127.0.0.1:${PORTS[$name]}"
done
export CRM_INTERACTIONS_IDENTITY_URL="http://127.0.0.1:${PORTS[identity]}"

for name in "${SERVICES[@]}" gateway; do
  if running "$name"; then
    echo "[up] $name already running"
    continue
  fi
  setsid .venv/bin/crm serve "$name" --port "${PORTS[$name]}" >>"$VAR/log/$name.log" 2>&1 < /dev/null &
  echo $! > "$VAR/run/$name.pid"
  echo "[up] $name on :${PORTS[$name]} (pid $!, log var/log/$name.log)"
done

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:${PORTS[gateway]}/ready" >/dev/null 2>&1; then
    echo "[up] ready: http://127.0.0.1:${PORTS[gateway]}/docs"
    exit 0
  fi
  sleep 0.5
done
echo "[up] not ready after 60 s; see var/log/" >&2
exit 1
