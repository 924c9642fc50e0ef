#!/usr/bin/env bash
# `make bench`: every benchmark, then bench/report.md + bench/out/report.json + charts.
#
# 1. PostgreSQL for the in-process benchmarks (fresh databases each), which run first;
# 2. the distributed topology (deploy/up.sh: Kafka KRaft, PostgreSQL, each service its own process and
#    the gateway) unless a gateway already answers on CRM_PORT_BASE — then it is used as it is;
# 3. bulk contact ingestion and the end-to-end workload (bench.e2e) through the gateway;
# 4. the report (bench.report). Whatever this script started is stopped on exit (trap).
#
# Environment: BENCH_SIZE (small|medium|full; tiny for smoke tests), CRM_VAR_DIR, PG_PORT, KAFKA_PORT,
#   KAFKA_CONTROLLER_PORT, CRM_PORT_BASE (8000), BENCH_AUTH_HEADER ("Name: value" sent on every call),
#   BENCH_ONLY=e2e (only the end-to-end workload and the report), BENCH_SKIP (modules to skip),
#   BENCH_OUT (bench/out),
#   BENCH_REPORT (bench/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_SIZE=${BENCH_SIZE:-small}
export PG_PORT=${PG_PORT:-55432} KAFKA_PORT=${KAFKA_PORT:-9092} KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
export CRM_PORT_BASE=${CRM_PORT_BASE:-8000}
if [[ -n "${CRM_VAR_DIR:-}" ]]; then
  mkdir -p "$CRM_VAR_DIR"
  CRM_VAR_DIR=$(cd "$CRM_VAR_DIR" && pwd)
  export CRM_VAR_DIR
fi
OUT=${BENCH_OUT:-bench/out}
REPORT=${BENCH_REPORT:-bench/report.md}
PY=.venv/bin/python
SERVER="postgresql+asyncpg://crm:crm@127.0.0.1:$PG_PORT/postgres"
GATEWAY="http://127.0.0.1:$CRM_PORT_BASE"
mkdir -p "$OUT"

started_pg=0 started_up=0
cleanup() {
  local rc=$?
  if ((started_up)); then deploy/down.sh || true
  elif ((started_pg)); then deploy/postgres.sh stop --if-started-by-us || true
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

small() { [[ "$BENCH_SIZE" == small || "$BENCH_SIZE" == tiny ]]; }
failed=()
# step CMD...: run one benchmark; a failure is reported at the end, the others still run.
# BENCH_SKIP="bench.identity …" skips those modules (keeping their earlier results in $OUT).
step() {
  if [[ " ${BENCH_SKIP:-} " == *" $3 "* ]]; then echo "[bench] skipped $3"; return 0; fi
  "$@" || { echo "[bench] FAILED: $*" >&2; failed+=("$3"); }
}

if [[ "${BENCH_ONLY:-}" != e2e ]]; then
  # The in-process benchmarks measure a service's own work, called without tokens (development mode).
  export CRM_AUTH_ENABLED=false
  deploy/postgres.sh status >/dev/null 2>&1 || started_pg=1
  deploy/postgres.sh start
  identity_size=$BENCH_SIZE; [[ "$identity_size" == tiny ]] && identity_size=small
  step $PY -m bench.identity --size "$identity_size" --out "$OUT" --postgres "$SERVER" --quiet
  # shellcheck disable=SC2046
  step $PY -m bench.interactions.timeline --out "$OUT" --postgres "$SERVER" \
    $(small && echo --events 20000 --others 20000 --requests 300)
  # shellcheck disable=SC2046
  step $PY -m bench.segmentation.features --out "$OUT" --postgres "$SERVER" \
    $(small && echo --customers 10000 --purchases 100000 --events 300) \
    $([[ "$BENCH_SIZE" == full ]] && echo --customers 1000000 --purchases 20000000)
  # shellcheck disable=SC2046
  step $PY -m bench.segmentation.batch_rule --out "$OUT" --postgres "$SERVER" \
    $(small && echo --customers 10000 --purchases 100000) \
    $([[ "$BENCH_SIZE" == full ]] && echo --customers 1000000 --purchases 20000000)
  # shellcheck disable=SC2046
  step $PY -m bench.loyalty.ledger --out "$OUT" --postgres "$SERVER" \
    $(small && echo --members 2000 --seconds 5 --hot 500 --redemptions 100)
  # shellcheck disable=SC2046
  step $PY -m bench.loyalty.redemption --out "$OUT" --postgres "$SERVER" $(small && echo --redemptions 100)
  # shellcheck disable=SC2046
  step $PY -m bench.consume --out "$OUT" --postgres "$SERVER" $(small && echo --customers 300 --events 1000)
fi

unset CRM_AUTH_ENABLED
# The distributed topology.
if curl -fsS "$GATEWAY/ready" >/dev/null 2>&1; then
  echo "[bench] using the topology already running at $GATEWAY"
else
  # Capacity is measured, not the front door's per-client limits: the load comes from one address.
  export CRM_GATEWAY_RATE_LIMIT_ENABLED=false
  if ! .venv/bin/crm keys --help >/dev/null 2>&1; then
    # No way to issue an API key from the command line: this private topology runs without tokens.
    echo "[bench] no 'crm keys' command: the bench topology runs with CRM_AUTH_ENABLED=false"
    export CRM_AUTH_ENABLED=false
  fi
  started_up=1
  ((started_pg)) && started_pg=0  # deploy/down.sh stops it with the rest
  # Databases of its own, empty at each run: figures must not depend on what earlier runs left behind
  # (their segments, say, are evaluated on every purchase), nor may a bench touch your crm_* data.
  export CRM_DB_PREFIX=crm_bench_
  deploy/postgres.sh start
  for name in identity interactions segmentation loyalty gateway; do
    deploy/postgres.sh dropdb "$CRM_DB_PREFIX$name" >/dev/null
  done
  rm -f "${CRM_VAR_DIR:-$PWD/var}/run/api-key"
  deploy/up.sh
fi
# Authentication on: one admin access token (a JWT signed with the gateway's key) for the workload —
# accepted by the gateway and by each service called directly; it also creates rewards and segments and
# grants points. Minted in the topology's gateway database; an admin API key if that fails.
run_dir="${CRM_VAR_DIR:-$PWD/var}/run"
if [[ -z "${BENCH_AUTH_HEADER:-}" && -s "$run_dir/gateway.database_url" ]]; then
  gateway_db=$(cat "$run_dir/gateway.database_url")
  token=$(CRM_GATEWAY_DATABASE_URL=$gateway_db .venv/bin/crm auth token --role admin --subject bench \
    --ttl-seconds 43200 2>/dev/null | tail -n 1 | awk '{print $NF}' || true)
  if [[ "$token" == *.*.* ]]; then
    export BENCH_AUTH_HEADER="Authorization: Bearer $token"
  else
    key=$(CRM_GATEWAY_DATABASE_URL=$gateway_db .venv/bin/crm keys create --name "bench-$(date +%s)" \
      --role admin 2>/dev/null | tail -n 1 | awk '{print $NF}' || true)
    [[ -n "$key" ]] && export BENCH_AUTH_HEADER="X-API-Key: $key"
  fi
fi

INTERACTIONS_DSN="postgresql://crm:crm@127.0.0.1:$PG_PORT/${CRM_DB_PREFIX:-crm_}interactions"
if [[ "${BENCH_ONLY:-}" != e2e ]]; then
  # shellcheck disable=SC2046
  step $PY -m bench.interactions.ingest --out "$OUT" --gateway "$GATEWAY" --interactions-dsn "$INTERACTIONS_DSN" \
    $(small && echo --items 20000)
fi
step $PY -m bench.e2e --size "$BENCH_SIZE" --out "$OUT" --port-base "$CRM_PORT_BASE" --pg-port "$PG_PORT" \
  --kafka-port "$KAFKA_PORT"
$PY -m bench.report --out "$OUT" --report "$REPORT"
if ((${#failed[@]})); then
  echo "[bench] failed: ${failed[*]}" >&2
  exit 1
fi
