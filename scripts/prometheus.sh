#!/usr/bin/env bash
# A throw-away Prometheus server on 127.0.0.1 for tests and local runs.
#
#   scripts/prometheus.sh fetch     install Debian's prometheus when it is missing (root)
#   scripts/prometheus.sh start     start on a free loopback port, print the export lines
#                                   (idempotent: a running one is reused)
#   scripts/prometheus.sh stop      stop it and remove its directory
#   scripts/prometheus.sh status    say whether it runs
#   scripts/prometheus.sh env       print the export lines of the running server
#
# It scrapes every second the targets that tests write as JSON files into
# $FERRYMAN_TEST_PROMETHEUS_TARGETS (file-based service discovery), so a test adds and removes
# its own service without a restart. State lives in $FERRYMAN_PROMETHEUS_DIR, by default a
# directory under /tmp named after this checkout. Started by root it runs as `nobody`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FERRYMAN_PROMETHEUS_DIR:-/tmp/ferryman-prometheus-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)}"
RUN_AS="${FERRYMAN_PROMETHEUS_RUN_AS:-nobody}"
START_TIMEOUT="${FERRYMAN_PROMETHEUS_START_TIMEOUT:-60}"

die() { echo "prometheus.sh: $*" >&2; exit 1; }
say() { echo "prometheus.sh: $*" >&2; }
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

bin() { command -v prometheus 2>/dev/null || { [[ -x /usr/bin/prometheus ]] && echo /usr/bin/prometheus; }; }

fetch() {
  if bin >/dev/null; then
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "Prometheus is not installed; as root run: apt-get install prometheus"
  say "installing Debian's prometheus"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends prometheus >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends prometheus >&2
  fi
  bin >/dev/null || die "prometheus was installed but no prometheus binary was found"
}

as_server() {
  if [[ "$(id -u)" == 0 ]]; then
    (cd / && runuser -u "$RUN_AS" -- "$@")
  else
    "$@"
  fi
}

export_line() {
  echo "export FERRYMAN_TEST_PROMETHEUS=http://127.0.0.1:$(cat "$DIR/port") FERRYMAN_TEST_PROMETHEUS_TARGETS=$DIR/targets"
}

running() {
  [[ -f "$DIR/pid" && -f "$DIR/port" ]] || return 1
  kill -0 "$(cat "$DIR/pid")" 2>/dev/null
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  fetch
  if running; then
    say "already running on 127.0.0.1:$(cat "$DIR/port"); files in $DIR"
    export_line
    return 0
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR/data" "$DIR/targets"
  # Tests write target files as themselves; the server (nobody under root) only reads them.
  chmod 755 "$DIR" "$DIR/targets"
  local port
  port="$(free_port)"
  echo "$port" >"$DIR/port"
  cat >"$DIR/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ferryman
    file_sd_configs:
      - files: ["$DIR/targets/*.json"]
        refresh_interval: 1s
YAML
  if [[ "$(id -u)" == 0 ]]; then
    chown -R "$RUN_AS" "$DIR/data"
  fi
  # The shell writes its own pid, then becomes the server: stop signals the server itself,
  # not runuser or a subshell.
  as_server sh -c 'echo $$ >"$1/data/pid"; shift; exec "$@"' sh "$DIR" "$(bin)" \
    --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
    --web.listen-address="127.0.0.1:$port" --storage.tsdb.retention.time=1h \
    >"$DIR/server.log" 2>&1 &
  local waited_pid=0
  until [[ -s "$DIR/data/pid" ]]; do
    sleep 0.1
    waited_pid=$((waited_pid + 1))
    [[ $waited_pid -lt 100 ]] || die "Prometheus did not start (log: $DIR/server.log)"
  done
  cp "$DIR/data/pid" "$DIR/pid"
  local waited=0
  until python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/-/ready', timeout=1)" 2>/dev/null; do
    if ! running; then
      tail -n 30 "$DIR/server.log" >&2 || true
      die "Prometheus exited at start (log above, full log in $DIR/server.log)"
    fi
    sleep 0.5
    waited=$((waited + 1))
    [[ $waited -lt $((START_TIMEOUT * 2)) ]] || die "Prometheus did not answer within ${START_TIMEOUT}s (log: $DIR/server.log)"
  done
  say "Prometheus $("$(bin)" --version 2>&1 | awk 'NR==1{print $3}') answers on 127.0.0.1:$port; files in $DIR"
  export_line
}

stop() {
  if running; then
    local pid
    pid="$(cat "$DIR/pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 80); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$DIR"
  say "stopped the Prometheus of $DIR and removed its files"
}

status() {
  if running; then
    echo "running on 127.0.0.1:$(cat "$DIR/port"); files in $DIR"
  else
    echo "stopped"
    return 1
  fi
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
[[ $# -eq 0 ]] || die "$cmd takes no arguments (settings come from FERRYMAN_PROMETHEUS_* variables)"
case "$cmd" in
  fetch) fetch; bin ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) running || die "not running; start it with scripts/prometheus.sh start"; export_line ;;
  -h|--help|help|"") usage ;;
  *) die "unknown command $cmd (fetch, start, stop, status, env)" ;;
esac
