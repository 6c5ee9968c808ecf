#!/usr/bin/env bash
# A throwaway PostgreSQL for the feedback-store tests, on a random port of 127.0.0.1 in a temp dir.
#   eval "$(.ci/postgres.sh start)"   installs Debian's postgresql when missing, starts a cluster and prints
#                                     `export PIXIU_TEST_POSTGRES=postgresql://... PIXIU_PG_DIR=...`
#   .ci/postgres.sh stop "$PIXIU_PG_DIR"   stops it and removes its files
set -euo pipefail

as_pg() {  # initdb refuses to run as root: root runs the server as the postgres user
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ "${1:-}" = stop ]; then
  [ -d "${2:-}/data" ] && as_pg "$(pg_bin)/pg_ctl -D $2/data -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "${2:?}"
  exit 0
fi
if [ -z "$(pg_bin)" ]; then
  export DEBIAN_FRONTEND=noninteractive  # CI has no terminal to answer a configuration question
  { apt-get install -y -q postgresql || { apt-get update -q && apt-get install -y -q postgresql; }; } >&2
fi
bin=$(pg_bin)
dir=$(mktemp -d /tmp/pixiu-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$bin/initdb -D $dir/data -A trust -U postgres" >"$dir/initdb.log"
as_pg "$bin/pg_ctl -D $dir/data -l $dir/server.log -w -o '-p $port -k $dir -c listen_addresses=127.0.0.1' start" >&2
as_pg "$bin/createdb -h 127.0.0.1 -p $port -U postgres pixiu_test"
echo "export PIXIU_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$port/pixiu_test PIXIU_PG_DIR=$dir"
