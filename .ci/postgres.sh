#!/usr/bin/env bash
# A throw-away PostgreSQL server on localhost for tests/test_tune_postgres.py (distributed tuning, issue #5).
#
#   eval "$(.ci/postgres.sh)"        # start; exports QBENCH_TEST_POSTGRES_URL (and QBENCH_TEST_POSTGRES_DIR)
#   .ci/postgres.sh stop [DIR]       # stop it and delete its data (DIR defaults to $QBENCH_TEST_POSTGRES_DIR)
#
# Installs the `postgresql` package from apt when its server binaries are missing (with sudo when not root), creates
# a data directory under /tmp, starts the server on a free port of 127.0.0.1 (as the `postgres` user when run as
# root: the server refuses to run as root) and creates the database `qbench_test`. Only the `export` lines go to
# stdout; progress and errors go to stderr. The URL is also written to $DIR/url.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_owner() {  # run a server command as the data directory's owner
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
  else
    "$@"
  fi
}

if [ "${1:-}" = "stop" ]; then
  DIR="${2:-${QBENCH_TEST_POSTGRES_DIR:-}}"
  [ -n "$DIR" ] && [ -d "$DIR" ] || { log "nothing to stop (give the data directory)"; exit 0; }
  BIN="$(bindir)"
  as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
  rm -rf "$DIR"
  log "stopped and removed $DIR"
  exit 0
fi

BIN="$(bindir || true)"
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  log "installing postgresql from apt"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq postgresql >&2
  BIN="$(bindir)"
fi
[ -x "$BIN/initdb" ] || { log "no PostgreSQL server binaries under /usr/lib/postgresql after installing"; exit 1; }

if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

DIR="$(mktemp -d /tmp/qbench-postgres.XXXXXX)"
chmod 755 "$DIR"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR"; fi

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
USER_NAME=qbench
PASSWORD=qbench
DB=qbench_test

as_owner "$BIN/initdb" -D "$DIR/data" --username="$USER_NAME" --auth=trust --encoding=UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; exit 1; }
as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >&2 \
  || { cat "$DIR/server.log" >&2; exit 1; }
"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$USER_NAME" -d postgres -v ON_ERROR_STOP=1 -q \
  -c "ALTER USER $USER_NAME PASSWORD '$PASSWORD'" -c "CREATE DATABASE $DB" >&2

URL="postgresql://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$DB"
echo "$URL" >"$DIR/url"
log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT, data in $DIR"
echo "export QBENCH_TEST_POSTGRES_URL=$URL"
echo "export QBENCH_TEST_POSTGRES_DIR=$DIR"
