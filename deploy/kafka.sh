#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft, broker+controller in one
# JVM) on this machine, without Docker and without the Kafka tarball: the jars
# come from Maven Central through deploy/kafka/pom.xml.
#
# Usage: deploy/kafka.sh start | stop [--if-started-by-us] | status | wait
#                        | restart | kill9
#
#   start    fetch the jars once per machine, then start the broker unless one
#            already answers on the port (then it does nothing); waits until
#            the broker answers a metadata request.
#   stop     stop the broker started by this script (SIGTERM, SIGKILL after
#            KAFKA_STOP_TIMEOUT).  With --if-started-by-us it only does so if
#            the last `start` actually launched it (var/kafka/started-by-us).
#   status   exit 0 if a broker accepts connections on the port.
#   wait     wait (up to KAFKA_START_TIMEOUT) until the broker answers.
#   restart  stop, then start.
#   kill9    SIGKILL the broker (crash test); `start` brings it back.
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
#   KAFKA_VERSION (4.1.1), KAFKA_NUM_PARTITIONS (3), KAFKA_HEAP_OPTS
#   ("-Xms256m -Xmx512m"), KAFKA_START_TIMEOUT (90), KAFKA_STOP_TIMEOUT (30),
#   CRM_VAR_DIR (<repo>/var), CRM_CACHE_DIR (~/.cache/crm).
set -euo pipefail

LOG_TAG=kafka
# shellcheck source=lib/common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_NUM_PARTITIONS="${KAFKA_NUM_PARTITIONS:-3}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

POM_FILE="${DEPLOY_DIR}/kafka/pom.xml"
PROBE_SRC="${DEPLOY_DIR}/kafka/KafkaProbe.java"
LOG4J_CONFIG="${DEPLOY_DIR}/kafka/log4j2.properties"

KAFKA_HOME="${CRM_CACHE_DIR}/kafka-${KAFKA_VERSION}"
LIBS_DIR="${KAFKA_HOME}/libs"
STATE_DIR="${CRM_VAR_DIR}/kafka"
DATA_DIR="${STATE_DIR}/data"
CONFIG_FILE="${STATE_DIR}/server.properties"
LOG_FILE="${STATE_DIR}/kafka.log"
PID_FILE="${STATE_DIR}/kafka.pid"
MARKER_FILE="${STATE_DIR}/started-by-us"
LOCK_FILE="${STATE_DIR}/.lock"
BOOTSTRAP="${KAFKA_HOST}:${KAFKA_PORT}"

# --------------------------------------------------------------------------
# Jars
# --------------------------------------------------------------------------

# Download the broker's jars into the per-machine cache unless they are there
# already for this Kafka version and this pom.xml (its hash is remembered, so
# editing the pom refreshes the cache).
fetch_jars() {
  local pom_hash tmp
  pom_hash="$(sha256sum "${POM_FILE}" | cut -c1-16)"
  if [[ -d "${LIBS_DIR}" && "$(cat "${KAFKA_HOME}/pom.sha" 2>/dev/null)" == "${pom_hash}" ]]; then
    return 0
  fi
  require_cmd javac default-jdk-headless  # the probe is compiled from source
  require_cmd mvn maven
  log "fetching Kafka ${KAFKA_VERSION} jars from Maven Central into ${LIBS_DIR}"
  mkdir -p "${KAFKA_HOME}"
  tmp="$(mktemp -d "${KAFKA_HOME}/libs.tmp.XXXXXX")"
  if ! mvn -B -f "${POM_FILE}" -Dkafka.version="${KAFKA_VERSION}" \
      dependency:copy-dependencies -DoutputDirectory="${tmp}" >"${tmp}.log" 2>&1; then
    tail -n 30 "${tmp}.log" >&2
    rm -rf "${tmp}" "${tmp}.log"
    die "could not fetch the Kafka ${KAFKA_VERSION} jars (Maven output above)"
  fi
  rm -f "${tmp}.log"
  # Swap in the complete directory only, so an interrupted download is never
  # mistaken for a usable cache.
  rm -rf "${LIBS_DIR}"
  mv "${tmp}" "${LIBS_DIR}"
  echo "${pom_hash}" >"${KAFKA_HOME}/pom.sha"
}

# kafka_java ARGS...: run java with the broker's class path and log4j2 config.
kafka_java() {
  java -Dlog4j2.configurationFile="${LOG4J_CONFIG}" -cp "${LIBS_DIR}/*" "$@"
}

# --------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------

# probe TIMEOUT_MS: true if the broker answers a metadata request.
probe() {
  # Single-file source mode: no build step, the class path is the broker's.
  java -Dlog4j2.level=OFF -cp "${LIBS_DIR}/*" "${PROBE_SRC}" "${BOOTSTRAP}" "$1" >/dev/null 2>&1
}

# is_kafka_pid PID: true if PID is alive and is a kafka.Kafka JVM (guards
# against a stale pid file whose pid was reused by another process).
is_kafka_pid() {
  pid_alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'
}

# wait_ready SECONDS [PID]: wait until the port accepts connections and the
# broker answers a metadata request.  If PID is given and dies, give up early.
wait_ready() {
  local deadline=$((SECONDS + $1)) pid="${2:-}" left
  while ((SECONDS < deadline)); do
    if [[ -n "${pid}" ]] && ! pid_alive "${pid}"; then
      log "broker process ${pid} exited during startup"
      return 1
    fi
    if port_open "${KAFKA_HOST}" "${KAFKA_PORT}"; then
      left=$((deadline - SECONDS))
      ((left > 15)) && left=15
      ((left < 2)) && left=2
      probe "$((left * 1000))" && return 0
    fi
    sleep 0.5
  done
  return 1
}

# --------------------------------------------------------------------------
# Configuration and storage
# --------------------------------------------------------------------------

# (Re)write the broker configuration.  It is rewritten on every start so that
# port changes apply; the data directory keeps the cluster id.
write_config() {
  mkdir -p "${DATA_DIR}"
  cat >"${CONFIG_FILE}" <<EOF
# Generated by deploy/kafka.sh on every start: edit the script, not this file.
# Single node acting as both KRaft controller and broker.
process.roles=broker,controller
node.id=1
# Static quorum of one voter.  (A dynamic quorum, the 4.x default set up with
# 'kafka-storage format --standalone', would store the controller endpoint in
# the metadata log at format time, so KAFKA_CONTROLLER_PORT could never change.)
controller.quorum.voters=1@${KAFKA_HOST}:${KAFKA_CONTROLLER_PORT}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://${KAFKA_HOST}:${KAFKA_PORT},CONTROLLER://${KAFKA_HOST}:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://${KAFKA_HOST}:${KAFKA_PORT}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT

log.dirs=${DATA_DIR}

# One broker: every internal topic gets replication factor 1.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1

# Tests and services create their topics explicitly.
auto.create.topics.enable=false
num.partitions=${KAFKA_NUM_PARTITIONS}
# Consumer groups form at once instead of after 3 s.
group.initial.rebalance.delay.ms=0
# After a crash (kill9) the restarted node must wait for its previous broker
# session to expire before it can register again: 9 s by default, 4 s here.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
EOF
}

# Format the log directory once (KRaft needs a cluster id and the initial
# metadata written before the first start).  Later starts keep the data.
# This is what `kafka-storage.sh random-uuid` + `kafka-storage.sh format`
# do in the binary distribution: both are kafka.tools.StorageTool.
format_storage() {
  [[ -f "${DATA_DIR}/meta.properties" ]] && return 0
  local cluster_id tool_log="${STATE_DIR}/storage-tool.log"
  # The tool logs its whole KafkaConfig on stdout: keep only the id line.
  cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null \
    | grep -E '^[A-Za-z0-9_-]{22}$' | tail -n 1 || true)"
  [[ -n "${cluster_id}" ]] || die "kafka.tools.StorageTool random-uuid gave no cluster id"
  log "formatting ${DATA_DIR} (cluster id ${cluster_id})"
  if ! kafka_java kafka.tools.StorageTool format \
      --config "${CONFIG_FILE}" --cluster-id "${cluster_id}" --ignore-formatted \
      >"${tool_log}" 2>&1; then
    tail -n 20 "${tool_log}" >&2
    die "formatting ${DATA_DIR} failed (full output in ${tool_log})"
  fi
}

# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

cmd_start() {
  local t0 pid jvm_opts
  t0="$(now_ms)"
  with_lock "${LOCK_FILE}"
  fetch_jars

  pid="$(read_pid "${PID_FILE}")"
  if [[ -n "${pid}" ]] && is_kafka_pid "${pid}"; then
    # Ours, running or still starting (launched by another invocation).
    wait_ready "${KAFKA_START_TIMEOUT}" "${pid}" || die "broker pid ${pid} does not answer; see ${LOG_FILE}"
    log "already running on ${BOOTSTRAP} (pid ${pid}): nothing to do"
    return 0
  fi
  if port_open "${KAFKA_HOST}" "${KAFKA_PORT}"; then
    probe 15000 || die "port ${KAFKA_PORT} is taken by something that is not a Kafka broker"
    log "already running on ${BOOTSTRAP} (not started by this script): nothing to do"
    return 0
  fi
  rm -f "${PID_FILE}" "${MARKER_FILE}"

  write_config
  format_storage

  # Keep the previous run's log next to the new one.
  if [[ -f "${LOG_FILE}" ]]; then mv -f "${LOG_FILE}" "${LOG_FILE}.1"; fi
  read -r -a jvm_opts <<<"${KAFKA_HEAP_OPTS}"
  jvm_opts+=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true)

  log "starting Kafka ${KAFKA_VERSION} on ${BOOTSTRAP} (controller ${KAFKA_CONTROLLER_PORT}), log ${LOG_FILE}"
  # setsid: own session, so Ctrl-C in the calling terminal or make does not
  # reach the broker.  The inner shell records its pid, then becomes java.
  # shellcheck disable=SC2016  # $$ and $@ are expanded by the inner shell
  setsid -f bash -c 'echo $$ >"$0"; exec "$@"' "${PID_FILE}" \
    java "${jvm_opts[@]}" -Dlog4j2.configurationFile="${LOG4J_CONFIG}" \
    -cp "${LIBS_DIR}/*" kafka.Kafka "${CONFIG_FILE}" \
    </dev/null >>"${LOG_FILE}" 2>&1 9>&-

  for _ in {1..50}; do
    pid="$(read_pid "${PID_FILE}")"
    [[ -n "${pid}" ]] && break
    sleep 0.1
  done
  [[ -n "${pid}" ]] || die "broker did not start (no pid file); see ${LOG_FILE}"

  if ! wait_ready "${KAFKA_START_TIMEOUT}" "${pid}"; then
    log "broker not ready after ${KAFKA_START_TIMEOUT}s; last lines of ${LOG_FILE}:"
    tail -n 40 "${LOG_FILE}" >&2 || true
    terminate_pid "${pid}" 10
    rm -f "${PID_FILE}"
    die "Kafka failed to start"
  fi
  date -u +%Y-%m-%dT%H:%M:%SZ >"${MARKER_FILE}"
  log "ready on ${BOOTSTRAP} (pid ${pid}) after $(($(now_ms) - t0)) ms"
}

cmd_stop() {
  local only_ours="${1:-}" pid
  if [[ -n "${only_ours}" && "${only_ours}" != "--if-started-by-us" ]]; then
    die "unknown option for stop: ${only_ours}"
  fi
  with_lock "${LOCK_FILE}"
  if [[ -n "${only_ours}" && ! -f "${MARKER_FILE}" ]]; then
    log "not started by us: leaving it alone"
    return 0
  fi
  pid="$(read_pid "${PID_FILE}")"
  if [[ -n "${pid}" ]] && is_kafka_pid "${pid}"; then
    log "stopping broker pid ${pid}"
    terminate_pid "${pid}" "${KAFKA_STOP_TIMEOUT}"
    log "stopped"
  elif port_open "${KAFKA_HOST}" "${KAFKA_PORT}"; then
    log "a broker answers on ${BOOTSTRAP} but was not started by this script: not stopping it"
  else
    log "not running"
  fi
  rm -f "${PID_FILE}" "${MARKER_FILE}"
}

cmd_kill9() {
  local pid
  pid="$(read_pid "${PID_FILE}")"
  if [[ -z "${pid}" ]] || ! is_kafka_pid "${pid}"; then
    die "no broker started by this script is running"
  fi
  log "kill -9 broker pid ${pid}"
  kill -KILL "${pid}"
  wait_pid_exit "${pid}" 10 || die "pid ${pid} survived SIGKILL"
  rm -f "${PID_FILE}"
}

cmd_status() {
  local pid
  pid="$(read_pid "${PID_FILE}")"
  if port_open "${KAFKA_HOST}" "${KAFKA_PORT}"; then
    if [[ -n "${pid}" ]] && is_kafka_pid "${pid}"; then
      echo "kafka: running on ${BOOTSTRAP} (pid ${pid})"
    else
      echo "kafka: something listens on ${BOOTSTRAP} (not started by this script)"
    fi
    return 0
  fi
  echo "kafka: not running"
  return 1
}

cmd_wait() {
  [[ -d "${LIBS_DIR}" ]] || die "jars not fetched yet: run '$0 start' first"
  wait_ready "${KAFKA_START_TIMEOUT}" || die "no broker answered on ${BOOTSTRAP} within ${KAFKA_START_TIMEOUT}s"
  log "ready on ${BOOTSTRAP}"
}

usage() {
  echo "usage: $0 {start|stop [--if-started-by-us]|status|wait|restart|kill9}" >&2
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
    wait) cmd_wait ;;
    restart) cmd_stop && cmd_start ;;
    kill9) cmd_kill9 ;;
    *) usage ;;
  esac
}

main "$@"
