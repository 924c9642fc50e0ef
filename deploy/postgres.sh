#!/usr/bin/env bash
# Run a local PostgreSQL server for development and tests, without Docker:
# Debian's PostgreSQL binaries (installed with apt-get when missing) and a
# data directory of our own under var/postgres.
#
# Usage: deploy/postgres.sh start | stop [--if-started-by-us] | status
#                           | restart | kill9 | createdb NAME
#
#   start     initdb once, then start the server unless one already answers
#             on the port (then it does nothing); waits for pg_isready.
#   stop      fast shutdown of the server started by this script.  With
#             --if-started-by-us only if the last `start` actually launched it
#             (var/postgres/started-by-us).
#   status    exit 0 if the server accepts connections.
#   restart   stop, then start.
#   kill9     SIGKILL the postmaster and its backends (crash test); `start`
#             then runs crash recovery.
#   createdb  create database NAME owned by crm, unless it exists.
#   dropdb    drop database NAME if it exists (connections to it are closed).
#
# Superuser role crm / password crm; trust auth on the socket and 127.0.0.1.
# Environment: PG_PORT (55432), PG_START_TIMEOUT (60), PG_STOP_TIMEOUT (60),
#   PG_BIN (directory with initdb/pg_ctl; default: newest Debian install),
#   CRM_VAR_DIR (<repo>/var).
set -euo pipefail

LOG_TAG=postgres
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PG_HOST=127.0.0.1
PG_PORT="${PG_PORT:-55432}"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"
PG_STOP_TIMEOUT="${PG_STOP_TIMEOUT:-60}"
PG_ROLE=crm
PG_PASSWORD=crm

STATE_DIR="${CRM_VAR_DIR}/postgres"
DATA_DIR="${STATE_DIR}/data"
SOCKET_DIR="${STATE_DIR}/run"
LOG_FILE="${STATE_DIR}/postgres.log"
MARKER_FILE="${STATE_DIR}/started-by-us"
LOCK_FILE="${STATE_DIR}/.lock"

# A unix socket path is limited to 107 bytes; in a deep checkout fall back to
# a short directory in /tmp.
if ((${#SOCKET_DIR} + 16 > 100)); then
  SOCKET_DIR="/tmp/crm-pg-$(id -u)-${PG_PORT}"
fi

# --------------------------------------------------------------------------
# Binaries and the OS user
# --------------------------------------------------------------------------

# Find the server binaries (initdb, pg_ctl, postgres), installing Debian's
# postgresql package if there are none.  Sets PG_BIN.
find_pg_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    [[ -x "${PG_BIN}/pg_ctl" ]] || die "PG_BIN=${PG_BIN} has no pg_ctl"
    return 0
  fi
  local candidate
  candidate="$(find_newest_pg_bin)"
  if [[ -z "${candidate}" ]]; then
    # Stop the package from creating and starting its own 'main' cluster on
    # port 5432: we only want the binaries.  A drop-in file avoids touching
    # the package's conffile createcluster.conf.
    if [[ ${EUID} -eq 0 ]]; then
      mkdir -p /etc/postgresql-common/createcluster.d
      echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/50-crm-no-main-cluster.conf
    fi
    apt_install postgresql postgresql-client
    candidate="$(find_newest_pg_bin)"
    [[ -n "${candidate}" ]] || die "postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl found"
  fi
  PG_BIN="${candidate}"
}

find_newest_pg_bin() {
  local dir
  dir="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/pg_ctl' 2>/dev/null |
    sort -V | tail -n 1 || true)"
  [[ -n "${dir}" ]] && dirname "${dir}"
  return 0
}

# PostgreSQL refuses to run as root.  As root we run the server as the
# 'postgres' OS user (created by the Debian package; created here if missing);
# as anyone else, as that user.
RUN_AS=""
setup_os_user() {
  [[ ${EUID} -eq 0 ]] || return 0
  RUN_AS=postgres
  if ! id -u "${RUN_AS}" >/dev/null 2>&1; then
    log "creating system user ${RUN_AS}"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "${RUN_AS}"
  fi
}

# as_pg CMD...: run CMD as the server's OS user, from / (its home and our
# cwd may be unreadable to it).
as_pg() {
  if [[ -n "${RUN_AS}" ]]; then
    (cd / && runuser -u "${RUN_AS}" -- "$@")
  else
    "$@"
  fi
}

# Make var/postgres owned by the server user, and every directory above it
# traversable by that user (e.g. a checkout under /root is mode 700).
prepare_dirs() {
  mkdir -p "${STATE_DIR}" "${SOCKET_DIR}"
  [[ -n "${RUN_AS}" ]] || return 0
  chown "${RUN_AS}:" "${STATE_DIR}" "${SOCKET_DIR}"
  [[ -d "${DATA_DIR}" ]] && chown -R "${RUN_AS}:" "${DATA_DIR}"
  touch "${LOG_FILE}" && chown "${RUN_AS}:" "${LOG_FILE}"
  local target dir ancestors
  for target in "${STATE_DIR}" "${SOCKET_DIR}"; do
    # Ancestors from / downwards, so that only the blocking ones are changed.
    ancestors=()
    dir="${target}"
    while [[ "${dir}" != "/" ]]; do
      dir="$(dirname "${dir}")"
      ancestors=("${dir}" "${ancestors[@]}")
    done
    for dir in "${ancestors[@]}"; do
      if ! runuser -u "${RUN_AS}" -- test -x "${dir}"; then
        log "making ${dir} traversable (o+x) for the ${RUN_AS} user"
        chmod o+x "${dir}"
      fi
    done
  done
}

# --------------------------------------------------------------------------
# Cluster setup
# --------------------------------------------------------------------------

init_cluster() {
  [[ -f "${DATA_DIR}/PG_VERSION" ]] && return 0
  log "initdb ${DATA_DIR}"
  rm -rf "${DATA_DIR}"
  mkdir -p "${DATA_DIR}"
  [[ -n "${RUN_AS}" ]] && chown "${RUN_AS}:" "${DATA_DIR}"
  as_pg "${PG_BIN}/initdb" --pgdata="${DATA_DIR}" --username=postgres \
    --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"${STATE_DIR}/initdb.log" 2>&1 ||
    { tail -n 20 "${STATE_DIR}/initdb.log" >&2; die "initdb failed"; }
  # Our settings live in crm.conf, rewritten on every start.
  echo "include_if_exists = 'crm.conf'" >>"${DATA_DIR}/postgresql.conf"
}

write_config() {
  cat >"${DATA_DIR}/crm.conf" <<EOF
# Generated by deploy/postgres.sh on every start: edit the script, not this file.
listen_addresses = '${PG_HOST}'
port = ${PG_PORT}
unix_socket_directories = '${SOCKET_DIR}'
# Dev box: many service pools and test workers, a modest cache.
max_connections = 300
shared_buffers = 256MB
# An import of 100,000 customers writes ~1 GB of WAL (measured): with the default max_wal_size (1 GB)
# that was 2 checkpoints per import, after each of which every page changed is logged whole again.
# Room for a few imports between checkpoints; the price is a longer crash recovery.
max_wal_size = 8GB
checkpoint_timeout = 15min
# Durability stays on: fsync and synchronous_commit keep their defaults.
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  [[ -n "${RUN_AS}" ]] && chown "${RUN_AS}:" "${DATA_DIR}/crm.conf"
  return 0
}

# psql_as USER DB ARGS...: psql over the unix socket, quietly, failing on error.
psql_as() {
  local user="$1" db="$2"
  shift 2
  "${PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 -h "${SOCKET_DIR}" -p "${PG_PORT}" \
    -U "${user}" -d "${db}" "$@"
}

ensure_role() {
  psql_as postgres postgres <<EOF
SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', '${PG_ROLE}', '${PG_PASSWORD}')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${PG_ROLE}') \gexec
EOF
}

# --------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------

is_ready() {
  "${PG_BIN}/pg_isready" -q -h "${PG_HOST}" -p "${PG_PORT}" -t 2
}

wait_ready() {
  local deadline=$((SECONDS + $1))
  until is_ready; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Pid of the postmaster running on our data directory, or nothing.
postmaster_pid() {
  local pid
  pid="$(read_pid "${DATA_DIR}/postmaster.pid")"
  if [[ -n "${pid}" ]] && pid_alive "${pid}"; then
    echo "${pid}"
  fi
}

# A postmaster.pid left by a crash names a pid that, after a reboot, may
# belong to another process; the server would then refuse to start.
remove_stale_pid_file() {
  local pid
  pid="$(read_pid "${DATA_DIR}/postmaster.pid")"
  [[ -n "${pid}" ]] || return 0
  if ! kill -0 "${pid}" 2>/dev/null || [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" != postgres ]]; then
    log "removing stale ${DATA_DIR}/postmaster.pid (pid ${pid})"
    rm -f "${DATA_DIR}/postmaster.pid"
  fi
}

# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

cmd_start() {
  local t0
  t0="$(now_ms)"
  find_pg_bin
  setup_os_user
  with_lock "${LOCK_FILE}"

  if is_ready; then
    log "already running on ${PG_HOST}:${PG_PORT}: nothing to do"
    return 0
  fi
  if port_open "${PG_HOST}" "${PG_PORT}"; then
    # Listening but not accepting yet (starting, or in crash recovery).
    if [[ -n "$(postmaster_pid)" ]]; then
      wait_ready "${PG_START_TIMEOUT}" || die "server on port ${PG_PORT} did not become ready"
      log "already running on ${PG_HOST}:${PG_PORT}: nothing to do"
      return 0
    fi
    die "port ${PG_PORT} is taken by something that does not answer as PostgreSQL"
  fi
  rm -f "${MARKER_FILE}"
  remove_stale_pid_file

  prepare_dirs
  init_cluster
  write_config

  log "starting PostgreSQL ($("${PG_BIN}/postgres" --version | awk '{print $3}')) on ${PG_HOST}:${PG_PORT}, log ${LOG_FILE}"
  # setsid: own session, so Ctrl-C in the calling terminal does not reach the
  # server.  9>&- : the server must not inherit our lock.
  local pg_ctl=("${PG_BIN}/pg_ctl" --pgdata="${DATA_DIR}" --log="${LOG_FILE}"
    --wait --timeout="${PG_START_TIMEOUT}" --silent start)
  [[ -n "${RUN_AS}" ]] && pg_ctl=(runuser -u "${RUN_AS}" -- "${pg_ctl[@]}")
  if ! (cd / && setsid -w "${pg_ctl[@]}" 9>&-); then
    log "last lines of ${LOG_FILE}:"
    tail -n 30 "${LOG_FILE}" >&2 || true
    die "PostgreSQL failed to start"
  fi
  wait_ready "${PG_START_TIMEOUT}" || die "pg_isready still fails after ${PG_START_TIMEOUT}s"
  ensure_role
  date -u +%Y-%m-%dT%H:%M:%SZ >"${MARKER_FILE}"
  log "ready on ${PG_HOST}:${PG_PORT} (pid $(postmaster_pid)) after $(($(now_ms) - t0)) ms"
}

cmd_stop() {
  local only_ours="${1:-}" pid
  if [[ -n "${only_ours}" && "${only_ours}" != "--if-started-by-us" ]]; then
    die "unknown option for stop: ${only_ours}"
  fi
  find_pg_bin
  setup_os_user
  with_lock "${LOCK_FILE}"
  if [[ -n "${only_ours}" && ! -f "${MARKER_FILE}" ]]; then
    log "not started by us: leaving it alone"
    return 0
  fi
  pid="$(postmaster_pid)"
  if [[ -n "${pid}" ]]; then
    log "stopping postmaster pid ${pid}"
    if ! as_pg "${PG_BIN}/pg_ctl" --pgdata="${DATA_DIR}" --mode=fast --wait \
        --timeout="${PG_STOP_TIMEOUT}" --silent stop; then
      log "pg_ctl stop failed; sending SIGKILL"
      kill_tree "${pid}"
    fi
    log "stopped"
  elif is_ready; then
    log "a server answers on ${PG_HOST}:${PG_PORT} but it does not use ${DATA_DIR}: not stopping it"
  else
    log "not running"
  fi
  rm -f "${MARKER_FILE}"
}

# kill_tree PID: SIGKILL the postmaster and its backends together, as a
# machine crash would (backends left behind would hold the shared memory).
kill_tree() {
  local pid="$1" children
  children="$(pgrep -P "${pid}" | tr '\n' ' ' || true)"
  # shellcheck disable=SC2086  # word splitting of the pid list is intended
  kill -KILL "${pid}" ${children} 2>/dev/null || true
  wait_pid_exit "${pid}" 10 || die "pid ${pid} survived SIGKILL"
  local child
  for child in ${children}; do
    wait_pid_exit "${child}" 10 || true
  done
}

cmd_kill9() {
  find_pg_bin
  local pid
  pid="$(postmaster_pid)"
  [[ -n "${pid}" ]] || die "no server is running on ${DATA_DIR}"
  log "kill -9 postmaster pid ${pid} and its backends"
  kill_tree "${pid}"
}

cmd_status() {
  find_pg_bin
  local pid
  pid="$(postmaster_pid)"
  if is_ready; then
    echo "postgres: running on ${PG_HOST}:${PG_PORT}${pid:+ (pid ${pid})}"
    return 0
  fi
  echo "postgres: not running"
  return 1
}

cmd_createdb() {
  local name="${1:-}"
  [[ "${name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "usage: $0 createdb NAME (letters, digits, _)"
  find_pg_bin
  is_ready || die "server not running on ${PG_HOST}:${PG_PORT}: run '$0 start' first"
  local sql="SELECT format('CREATE DATABASE %I OWNER ${PG_ROLE}', '${name}')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '${name}') \\gexec"
  # Two concurrent callers may race: if CREATE fails, accept it when the
  # database exists now.
  if ! psql_as "${PG_ROLE}" postgres <<<"${sql}" 2>/dev/null; then
    [[ "$(psql_as "${PG_ROLE}" postgres -At -c "SELECT 1 FROM pg_database WHERE datname = '${name}'")" == 1 ]] ||
      die "could not create database ${name}"
  fi
  log "database ${name} ready (owner ${PG_ROLE})"
}

cmd_dropdb() {
  local name="${1:-}"
  [[ "${name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "usage: $0 dropdb NAME (letters, digits, _)"
  find_pg_bin
  is_ready || die "server not running on ${PG_HOST}:${PG_PORT}: run '$0 start' first"
  psql_as "${PG_ROLE}" postgres -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS \"${name}\" WITH (FORCE)" ||
    die "could not drop database ${name}"
  log "database ${name} dropped"
}

usage() {
  echo "usage: $0 {start|stop [--if-started-by-us]|status|restart|kill9|createdb NAME|dropdb NAME}" >&2
  exit 2
}

main() {
  (($# >= 1)) || usage
  local cmd="$1"
  shift
  case "${cmd}" in
    start) cmd_start ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status ;;
    restart) cmd_stop && cmd_start ;;
    kill9) cmd_kill9 ;;
    createdb) cmd_createdb "$@" ;;
    dropdb) cmd_dropdb "$@" ;;
    *) usage ;;
  esac
}

main "$@"
