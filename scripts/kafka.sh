#!/usr/bin/env bash
# Real Apache Kafka (KRaft, combined broker+controller) on 127.0.0.1 for tests and local runs.
#
#   scripts/kafka.sh fetch                      resolve Kafka's jars from Maven Central (cached)
#   scripts/kafka.sh start [--brokers 1|3] [--dir DIR] [--port PORT] [--fresh]
#                                               start one broker (9092) or three (19092..19094),
#                                               wait until they answer, print the export line
#   scripts/kafka.sh stop [--dir DIR]           stop the nodes started in DIR
#   scripts/kafka.sh status [--dir DIR]         say which nodes of DIR run
#   scripts/kafka.sh env [--dir DIR]            print the export line for DIR
#
# The jars come from Maven Central through Maven (scripts/kafka/pom.xml) and are cached in
# $KAFKA_SH_CACHE (default ~/.cache/ferryman)/kafka-<version>/lib. State (configs, data,
# logs, pids) lives in DIR: .kafka/single for one broker, .kafka/cluster3 for three.
# `start` is idempotent: nodes already running are left alone, stopped ones are started again on
# their old data (use --fresh to wipe DIR first).
set -euo pipefail

KAFKA_VERSION="${KAFKA_SH_VERSION:-4.3.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/scripts/kafka"
CACHE="${KAFKA_SH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferryman}/kafka-$KAFKA_VERSION"
LIB="$CACHE/lib"
HEAP="${KAFKA_SH_HEAP:--Xms128m -Xmx512m}"
START_TIMEOUT="${KAFKA_SH_START_TIMEOUT:-180}"
# The knobs are KAFKA_SH_*, not FERRYMAN_KAFKA_*: every FERRYMAN_KAFKA_* variable is a
# librdkafka property to ferryman's clients, and a service started from a shell that exported
# one of these would refuse it ("start.timeout", "version", "cache", "heap").
PYTHON="${PYTHON:-python3}"

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*" >&2; }

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# --- fetch -------------------------------------------------------------------------------------

fetch() {
  if [[ -f "$LIB/.complete" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka's jars: apt-get install maven"
  command -v java >/dev/null || die "Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless"
  say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
  local tmp="$CACHE/lib.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # -B: no colours or progress bars in CI logs; --no-transfer-progress keeps the log short.
  if ! mvn -B -q --no-transfer-progress -f "$HERE/pom.xml" \
      -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >&2; then
    rm -rf "$tmp"
    die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION; check that Maven Central is reachable (mvn -X ... for details)"
  fi
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "kafka_2.13-$KAFKA_VERSION.jar missing after the Maven run"
  touch "$tmp/.complete"
  rm -rf "$LIB"
  mv "$tmp" "$LIB"
  say "cached $(ls "$LIB" | wc -l) jars in $LIB"
}

# --- cluster layout ----------------------------------------------------------------------------

BROKERS=""
DIR=""
PORT=""
FRESH=0

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --brokers) BROKERS="${2:?--brokers needs 1 or 3}"; shift 2 ;;
      --brokers=*) BROKERS="${1#*=}"; shift ;;
      --dir) DIR="${2:?--dir needs a directory}"; shift 2 ;;
      --dir=*) DIR="${1#*=}"; shift ;;
      --port) PORT="${2:?--port needs a number}"; shift 2 ;;
      --port=*) PORT="${1#*=}"; shift ;;
      --fresh) FRESH=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown argument $1 (see scripts/kafka.sh --help)" ;;
    esac
  done
  if [[ -n "$BROKERS" && "$BROKERS" != 1 && "$BROKERS" != 3 ]]; then
    die "--brokers must be 1 or 3, not $BROKERS"
  fi
  if [[ -z "$DIR" ]]; then
    if [[ "${BROKERS:-1}" == 3 ]]; then DIR="$ROOT/.kafka/cluster3"; else DIR="$ROOT/.kafka/single"; fi
  fi
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  # A directory remembers its layout, so stop/status/start need only --dir.
  if [[ -f "$DIR/cluster.env" ]]; then
    local old_brokers old_port
    old_brokers="$(sed -n 's/^BROKERS=//p' "$DIR/cluster.env")"
    old_port="$(sed -n 's/^PORT=//p' "$DIR/cluster.env")"
    if [[ -n "$BROKERS" && "$BROKERS" != "$old_brokers" && "$FRESH" == 0 ]]; then
      die "$DIR holds a $old_brokers-broker cluster; use --fresh to replace it or another --dir"
    fi
    if [[ -n "$PORT" && "$PORT" != "$old_port" && "$FRESH" == 0 ]]; then
      die "$DIR holds a cluster on port $old_port; use --fresh to replace it or another --dir"
    fi
    if [[ "$FRESH" == 0 ]]; then
      BROKERS="$old_brokers"
      PORT="$old_port"
    fi
  fi
  BROKERS="${BROKERS:-1}"
  if [[ -z "$PORT" ]]; then
    if [[ "$BROKERS" == 3 ]]; then PORT=19092; else PORT=9092; fi
  fi
}

broker_port() { echo $((PORT + $1 - 1)); }
# Controllers listen 100 ports above the brokers (9192, or 19192..19194).
controller_port() { echo $((PORT + 100 + $1 - 1)); }

bootstrap() {
  local n out=""
  for ((n = 1; n <= BROKERS; n++)); do
    out+="${out:+,}127.0.0.1:$(broker_port "$n")"
  done
  echo "$out"
}

# The pid recorded when node $1 was started (whatever runs under it now).
recorded_pid() {
  local f="$DIR/node-$1/pid"
  [[ -f "$f" ]] && cat "$f"
}

node_pid() {
  local pid
  pid="$(recorded_pid "$1")" || return 1
  # The pid must still be a Kafka of this node (pids are reused).
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$DIR/node-$1/server.properties"; then
    echo "$pid"
    return 0
  fi
  return 1
}

# Alive = the pid this script started is still running (or a zombie not yet reaped). Right after
# start_node the pid can still be the forked shell that has not exec'd java yet, whose command
# line does not name the node's server.properties: node_pid would call that "not running".
node_alive() {
  local pid state
  pid="$(recorded_pid "$1")" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null)"
  [[ "$state" != Z ]]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  local n="$1" rf min_isr voters="" m
  for ((m = 1; m <= BROKERS; m++)); do
    voters+="${voters:+,}$m@127.0.0.1:$(controller_port "$m")"
  done
  if [[ "$BROKERS" == 3 ]]; then rf=3; min_isr=2; else rf=1; min_isr=1; fi
  mkdir -p "$DIR/node-$n/data"
  cat >"$DIR/node-$n/server.properties" <<EOF
# Written by scripts/kafka.sh: a KRaft node (broker + controller) for tests, 127.0.0.1 only.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/node-$n/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
# Internal topics fit the cluster size.
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
# Fast groups and cleaning, so tests of rebalancing, compaction and retention finish quickly.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.initial.task.delay.ms=0
log.retention.check.interval.ms=1000
log.segment.delete.delay.ms=1000
log.cleaner.backoff.ms=500
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
file.delete.delay.ms=1000
# A killed node is fenced, and its partitions led elsewhere, within seconds (fault tests).
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=6000
# Two cores for the whole machine: few threads.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF
}

format_node() {
  local n="$1"
  [[ -f "$DIR/node-$n/data/meta.properties" ]] && return 0
  java $HEAP -cp "$LIB/*" -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -Dkafka.log.file="$DIR/node-$n/format.log" \
    kafka.tools.StorageTool format --ignore-formatted \
    -t "$(cat "$DIR/cluster.id")" -c "$DIR/node-$n/server.properties" >"$DIR/node-$n/format.out" 2>&1 ||
    { cat "$DIR/node-$n/format.out" >&2; die "formatting the storage of node $n failed (see above)"; }
}

start_node() {
  local n="$1"
  if node_pid "$n" >/dev/null; then
    return 0
  fi
  for p in "$(broker_port "$n")" "$(controller_port "$n")"; do
    if port_in_use "$p"; then
      die "port $p is taken by another process; stop it, or choose other ports with --port (and another --dir)"
    fi
  done
  # setsid: the node outlives this script and is not hit by the caller's Ctrl-C.
  setsid java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -Dkafka.log.file="$DIR/node-$n/server.log" \
    -cp "$LIB/*" kafka.Kafka "$DIR/node-$n/server.properties" \
    >"$DIR/node-$n/stdout.log" 2>&1 </dev/null &
  echo $! >"$DIR/node-$n/pid"
}

# Ready = every node's process is alive and a metadata request sees every broker.
wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) n
  while :; do
    for ((n = 1; n <= BROKERS; n++)); do
      if ! node_alive "$n"; then
        tail -n 30 "$DIR/node-$n/server.log" "$DIR/node-$n/stdout.log" >&2 2>/dev/null || true
        die "node $n of $DIR exited while starting (its log is above, full log in $DIR/node-$n/server.log)"
      fi
    done
    if cluster_answers; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      die "Kafka in $DIR did not answer within ${START_TIMEOUT}s; see $DIR/node-*/server.log"
    fi
    sleep 0.5
  done
}

cluster_answers() {
  if "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
    "$PYTHON" - "$(bootstrap)" "$BROKERS" <<'EOF' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
bootstrap, expected = sys.argv[1], int(sys.argv[2])
try:
    md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=3)
except Exception:
    sys.exit(1)
sys.exit(0 if len(md.brokers) >= expected and md.controller_id >= 0 else 1)
EOF
  else
    # Without the Python client: every node has logged that it started.
    local n
    for ((n = 1; n <= BROKERS; n++)); do
      grep -q "Kafka Server started" "$DIR/node-$n/server.log" 2>/dev/null || return 1
    done
  fi
}

save_layout() {
  printf 'BROKERS=%s\nPORT=%s\nKAFKA_VERSION=%s\n' "$BROKERS" "$PORT" "$KAFKA_VERSION" >"$DIR/cluster.env"
}

start() {
  parse_args "$@"
  fetch
  if [[ "$FRESH" == 1 ]]; then
    stop_nodes
    rm -rf "${DIR:?}"/node-* "$DIR/cluster.id" "$DIR/cluster.env"
  fi
  save_layout
  if [[ ! -f "$DIR/cluster.id" ]]; then
    # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding. One that starts
    # with '-' reads as an option to kafka-storage (1 in 64 starts failed so): draw again, as
    # Kafka's own Uuid.randomUuid does.
    local id="-"
    while [[ "$id" == -* ]]; do
      id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    printf '%s' "$id" >"$DIR/cluster.id"
  fi
  local n pids=()
  for ((n = 1; n <= BROKERS; n++)); do
    write_config "$n"
  done
  # Formatting starts a JVM per node: do the nodes side by side.
  for ((n = 1; n <= BROKERS; n++)); do
    format_node "$n" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || die "formatting the storage in $DIR failed (see above)"
  done
  for ((n = 1; n <= BROKERS; n++)); do
    start_node "$n"
  done
  wait_ready
  say "Kafka $KAFKA_VERSION ($BROKERS broker$([[ $BROKERS == 1 ]] || echo s)) answers on $(bootstrap); state in $DIR"
  echo "export FERRYMAN_TEST_KAFKA=$(bootstrap)"
}

stop_nodes() {
  local n pid pids=()
  for d in "$DIR"/node-*; do
    [[ -d "$d" ]] || continue
    n="${d##*/node-}"
    if pid="$(node_pid "$n")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  # A controlled shutdown takes a few seconds; a node that loses its quorum may wait longer.
  local deadline=$((SECONDS + 30)) alive
  while :; do
    alive=()
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive+=("$pid")
    done
    ((${#alive[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      say "killing ${alive[*]} after 30s of controlled shutdown"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
}

stop() {
  parse_args "$@"
  stop_nodes
  say "stopped the Kafka nodes of $DIR"
}

status() {
  parse_args "$@"
  local n pid rc=0
  for ((n = 1; n <= BROKERS; n++)); do
    if pid="$(node_pid "$n")"; then
      echo "node $n: running (pid $pid) on 127.0.0.1:$(broker_port "$n")"
    else
      echo "node $n: stopped"
      rc=1
    fi
  done
  return $rc
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  fetch) fetch; echo "$LIB" ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status "$@" ;;
  env) parse_args "$@"; echo "export FERRYMAN_TEST_KAFKA=$(bootstrap)" ;;
  -h|--help|help|"") usage ;;
  *) die "unknown command $cmd (fetch, start, stop, status, env)" ;;
esac
