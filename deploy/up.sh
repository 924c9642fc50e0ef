#!/usr/bin/env bash
# Distributed mode on this machine: Kafka, PostgreSQL (one database per service), and each service
# and the gateway as its own process. Logs in var/log/, pids in var/run/.
#   deploy/up.sh [start|status|service NAME]
#     service NAME  (re)start just that process if it is not running, exactly as `start` does,
#                   without touching Kafka or PostgreSQL (used after a crash, e.g. by `make chaos`)
# Environment: CRM_VAR_DIR, PG_PORT, KAFKA_PORT (see deploy/kafka.sh, deploy/postgres.sh) and
#   CRM_PORT_BASE (8000): the gateway listens on it, identity .. loyalty on the next four ports;
#   CRM_DB_PREFIX (crm_): the databases are <prefix>identity .. <prefix>gateway (`make bench` uses
#   crm_bench_, recreated empty for each run, so it never touches the databases you work with).
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${CRM_VAR_DIR:-$PWD/var}
PG_PORT=${PG_PORT:-55432}
KAFKA_PORT=${KAFKA_PORT:-9092}
SERVICES=(identity interactions segmentation loyalty)
BASE=${CRM_PORT_BASE:-8000}
DB_PREFIX=${CRM_DB_PREFIX:-crm_}
declare -A PORTS=([gateway]=$BASE [identity]=$((BASE + 1)) [interactions]=$((BASE + 2)) [segmentation]=$((BASE + 3)) [loyalty]=$((BASE + 4)))
mkdir -p "$VAR/log" "$VAR/run"

# A process killed with -9 stays a zombie until it is reaped: that is not running (nor is a pid that
# vanishes while we look).
running() {
  local pid state
  [[ -f "$VAR/run/$1.pid" ]] && pid=$(cat "$VAR/run/$1.pid") && [[ -n "$pid" ]] || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z* ]]
}

if [[ "${1:-start}" == "status" ]]; then
  for name in "${SERVICES[@]}" gateway; do
    if running "$name"; then echo "$name: running (pid $(cat "$VAR/run/$name.pid"), port ${PORTS[$name]})"; else echo "$name: stopped"; fi
  done
  exit 0
fi

MODE=${1:-start}
START=("${SERVICES[@]}" gateway)
if [[ "$MODE" == "service" ]]; then
  [[ -n "${2:-}" && -n "${PORTS[$2]:-}" ]] || { echo "usage: $0 service identity|interactions|segmentation|loyalty|gateway" >&2; exit 2; }
  START=("$2")
else
  deploy/kafka.sh start
  deploy/postgres.sh start
  for name in "${SERVICES[@]}" gateway; do deploy/postgres.sh createdb "$DB_PREFIX$name" >/dev/null; done
fi

export CRM_BUS=kafka CRM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" CRM_VAR_DIR="$VAR"
for name in "${SERVICES[@]}"; do
  upper=${name^^}
  export "CRM_${upper}_DATABASE_URL=postgresql+asyncpg://crm:crm@127.0.0.1:$PG_PORT/$DB_PREFIX$name"
  export "CRM_GATEWAY_${upper}_URL=http://127.0.0.1:${PORTS[$name]}"
done
export CRM_INTERACTIONS_IDENTITY_URL="http://127.0.0.1:${PORTS[identity]}"
# Authentication: the gateway keeps users, API keys, signing keys and the audit log in crm_gateway;
# the services verify tokens with its JWKS. `crm keys create` (and `crm users ...`) find the database
# through var/run/gateway.database_url. The first admin password is in var/log/gateway.log (or set
# CRM_ADMIN_PASSWORD before the first start).
export CRM_GATEWAY_DATABASE_URL="postgresql+asyncpg://crm:crm@127.0.0.1:$PG_PORT/${DB_PREFIX}gateway"
echo "$CRM_GATEWAY_DATABASE_URL" > "$VAR/run/gateway.database_url"
export CRM_AUTH_JWKS_URL=${CRM_AUTH_JWKS_URL:-http://127.0.0.1:${PORTS[gateway]}/auth/jwks.json}
export CRM_AUTH_TOKEN_URL=${CRM_AUTH_TOKEN_URL:-http://127.0.0.1:${PORTS[gateway]}/auth/token}

for name in "${START[@]}"; do
  if running "$name"; then
    echo "[up] $name already running"
    continue
  fi
  setsid .venv/bin/crm serve "$name" --port "${PORTS[$name]}" >>"$VAR/log/$name.log" 2>&1 < /dev/null &
  echo $! > "$VAR/run/$name.pid"
  echo "[up] $name on :${PORTS[$name]} (pid $!, log $VAR/log/$name.log)"
done
if [[ "$MODE" == "service" ]]; then
  port=${PORTS[$2]}
  for _ in $(seq 1 240); do
    curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && { echo "[up] $2 ready on :$port"; exit 0; }
    sleep 0.25
  done
  echo "[up] $2 not ready after 60 s; see $VAR/log/$2.log" >&2
  exit 1
fi

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:${PORTS[gateway]}/ready" >/dev/null 2>&1; then
    echo "[up] ready: http://127.0.0.1:${PORTS[gateway]}/docs"
    if [[ "${CRM_AUTH_ENABLED:-true}" != false && ! -s "$VAR/run/api-key" ]]; then
      # An integration API key for local tools and benchmarks (X-API-Key: $(cat var/run/api-key)).
      (umask 077 && .venv/bin/crm keys create --name local-tools 2>/dev/null | tail -n 1 | awk '{print $NF}' \
        > "$VAR/run/api-key") && echo "[up] API key for local tools in $VAR/run/api-key"
    fi
    exit 0
  fi
  sleep 0.5
done
echo "[up] not ready after 60 s; see var/log/" >&2
exit 1
