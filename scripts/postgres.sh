#!/usr/bin/env bash
# A throw-away PostgreSQL on 127.0.0.1 for tests and local runs.
#
#   scripts/postgres.sh fetch       install Debian's postgresql when its server is missing (root)
#   scripts/postgres.sh start       initdb + start on a free loopback port, create the database,
#                                   print the export line (idempotent: a running one is reused)
#   scripts/postgres.sh stop        stop it and remove its data directory
#   scripts/postgres.sh status      say whether it runs
#   scripts/postgres.sh env         print the export line of the running server
#
# State (data, log, port) lives in $FERRYMAN_POSTGRES_DIR, by default a directory under /tmp named
# after this checkout, so that two checkouts on one machine get two servers. The server runs as
# the `postgres` system user when started by root (PostgreSQL refuses to run as root), with trust
# authentication on 127.0.0.1 only: it is for tests, never for data that matters.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FERRYMAN_POSTGRES_DIR:-/tmp/ferryman-postgres-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)}"
DB_USER="${FERRYMAN_POSTGRES_USER:-ferryman}"
DB_NAME="${FERRYMAN_POSTGRES_DB:-ferryman}"
RUN_AS="${FERRYMAN_POSTGRES_RUN_AS:-postgres}"
START_TIMEOUT="${FERRYMAN_POSTGRES_START_TIMEOUT:-60}"

die() { echo "postgres.sh: $*" >&2; exit 1; }
say() { echo "postgres.sh: $*" >&2; }

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# The newest installed server's bin directory (Debian keeps them under /usr/lib/postgresql/N/bin).
pg_bin() {
  local v
  v="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)"
  if [[ -n "$v" && -x "/usr/lib/postgresql/$v/bin/postgres" ]]; then
    echo "/usr/lib/postgresql/$v/bin"
    return 0
  fi
  local initdb
  initdb="$(command -v initdb 2>/dev/null)" || return 1
  dirname "$(readlink -f "$initdb")"
}

# --- fetch -------------------------------------------------------------------------------------

fetch() {
  if pg_bin >/dev/null; then
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL's server is not installed; as root run: apt-get install postgresql"
  say "installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale on a fresh machine: refresh them once on failure.
  if ! apt-get install -y -q --no-install-recommends postgresql >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends postgresql >&2
  fi
  pg_bin >/dev/null || die "postgresql was installed but no server binary was found under /usr/lib/postgresql"
}

# --- run as the server's user ------------------------------------------------------------------

# PostgreSQL refuses to run as root; root hands the server to the `postgres` system user.
as_server() {
  if [[ "$(id -u)" == 0 ]]; then
    id "$RUN_AS" >/dev/null 2>&1 || die "user $RUN_AS does not exist; install postgresql (scripts/postgres.sh fetch) or set FERRYMAN_POSTGRES_RUN_AS"
    # From /: the server's user may not be allowed into the caller's directory.
    (cd / && runuser -u "$RUN_AS" -- "$@")
  else
    "$@"
  fi
}

export_line() {
  echo "export FERRYMAN_TEST_POSTGRES=postgresql+psycopg://$DB_USER@127.0.0.1:$(cat "$DIR/port")/$DB_NAME"
}

running() {
  [[ -f "$DIR/port" && -f "$DIR/data/postmaster.pid" ]] || return 1
  local bin
  bin="$(pg_bin)" || return 1
  as_server "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- start / stop ------------------------------------------------------------------------------

start() {
  fetch
  if running; then
    say "already running on 127.0.0.1:$(cat "$DIR/port"); data in $DIR"
    export_line
    return 0
  fi
  local bin port
  bin="$(pg_bin)"
  # A directory left by a crashed server is wiped: its data is test data.
  rm -rf "$DIR"
  mkdir -p "$DIR"
  if [[ "$(id -u)" == 0 ]]; then
    chown "$RUN_AS" "$DIR"
  fi
  chmod 700 "$DIR"
  as_server "$bin/initdb" -D "$DIR/data" -U "$DB_USER" --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed (see above)"; }
  port="$(free_port)"
  echo "$port" >"$DIR/port"
  # 127.0.0.1 only, the socket in DIR (not /var/run, which may not exist); fsync off: test data.
  as_server "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t "$START_TIMEOUT" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB -c max_connections=200" \
    start >&2 || { tail -n 30 "$DIR/server.log" >&2 || true; die "PostgreSQL did not start (log above, full log in $DIR/server.log)"; }
  as_server "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME" ||
    die "could not create database $DB_NAME on 127.0.0.1:$port"
  say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') answers on 127.0.0.1:$port; data in $DIR"
  export_line
}

stop() {
  if [[ -d "$DIR/data" ]]; then
    local bin
    if bin="$(pg_bin)" && running; then
      as_server "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
    fi
  fi
  rm -rf "$DIR"
  say "stopped the PostgreSQL of $DIR and removed its data"
}

status() {
  if running; then
    echo "running on 127.0.0.1:$(cat "$DIR/port"); data in $DIR"
  else
    echo "stopped"
    return 1
  fi
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
[[ $# -eq 0 ]] || die "$cmd takes no arguments (settings come from FERRYMAN_POSTGRES_* variables)"
case "$cmd" in
  fetch) fetch; pg_bin ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) running || die "not running; start it with scripts/postgres.sh start"; export_line ;;
  -h|--help|help|"") usage ;;
  *) die "unknown command $cmd (fetch, start, stop, status, env)" ;;
esac
