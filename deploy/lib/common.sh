# shellcheck shell=bash
# Helpers shared by deploy/kafka.sh and deploy/postgres.sh.  Sourced, not run.
#
# Environment (all optional):
#   CRM_VAR_DIR    runtime state (data, logs, pid files); default <repo>/var
#   CRM_CACHE_DIR  downloads kept across checkouts;   default ~/.cache/crm

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
DEPLOY_DIR="${REPO_ROOT}/deploy"
CRM_VAR_DIR="${CRM_VAR_DIR:-${REPO_ROOT}/var}"
CRM_CACHE_DIR="${CRM_CACHE_DIR:-${HOME:-/root}/.cache/crm}"

# Name used as prefix in messages, set by the sourcing script.
LOG_TAG="${LOG_TAG:-deploy}"

log() { printf '[%s] %s\n' "${LOG_TAG}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Milliseconds since the epoch (for the timings we print).
now_ms() { date +%s%3N; }

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# pid_alive PID: true if the process exists (and is not a zombie).
pid_alive() {
  local pid="$1" state
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  kill -0 "${pid}" 2>/dev/null || return 1
  state="$(ps -o stat= -p "${pid}" 2>/dev/null || true)"
  [[ -n "${state}" && "${state}" != Z* ]]
}

# read_pid FILE: print the pid stored in FILE (first line), or nothing.
read_pid() {
  [[ -f "$1" ]] || return 0
  head -n 1 "$1" | tr -dc '0-9'
}

# wait_pid_exit PID SECONDS: wait until PID is gone; false on timeout.
# A killed process stays visible as a zombie until its parent (here usually
# pid 1) reaps it, and a JVM keeps its sockets until its last thread is gone:
# so wait for the pid to vanish, and accept a lingering zombie only at the end.
wait_pid_exit() {
  local pid="$1" deadline=$((SECONDS + $2))
  while kill -0 "${pid}" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      [[ "$(ps -o stat= -p "${pid}" 2>/dev/null)" == Z* ]]
      return
    fi
    sleep 0.1
  done
}

# terminate_pid PID SECONDS: SIGTERM, then SIGKILL if still alive after SECONDS.
terminate_pid() {
  local pid="$1" timeout="$2"
  pid_alive "${pid}" || return 0
  kill -TERM "${pid}" 2>/dev/null || true
  if ! wait_pid_exit "${pid}" "${timeout}"; then
    log "pid ${pid} still alive after ${timeout}s, sending SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
    wait_pid_exit "${pid}" 10 || die "could not kill pid ${pid}"
  fi
}

# with_lock FILE: serialise start/stop of one service between concurrent
# invocations (e.g. two `make` targets).  The lock is released on exit.
# Uses fd 9; anything started in the background must close it (9>&-).
with_lock() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1"
  flock -w 120 9 || die "timed out waiting for lock $1"
}

# apt_install PKG...: install Debian packages (needs root; runs apt-get update
# first because a fresh machine may have no package lists).
apt_install() {
  command -v apt-get >/dev/null || die "need $*, and apt-get is not available: install it by hand"
  [[ ${EUID} -eq 0 ]] || die "need $*: run as root or install it by hand (apt-get install $*)"
  log "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# require_cmd CMD DEBIAN_PACKAGE: make sure CMD is on PATH, installing it if needed.
require_cmd() {
  command -v "$1" >/dev/null && return 0
  apt_install "$2"
  command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}
