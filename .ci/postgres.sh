#!/usr/bin/env bash
# Start a throw-away PostgreSQL on 127.0.0.1 for the tests and export SYNTH2_TEST_DATABASE_URL.
# Source it: `source .ci/postgres.sh`; the server stops when the sourcing shell exits.
set -euo pipefail
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=${PGPORT:-55432}
PGDATA=$(mktemp -d /tmp/synth2-pg.XXXXXX)
RUNAS=()
if [ "$(id -u)" = 0 ]; then  # postgres refuses to run as root
  chown postgres:postgres "$PGDATA"
  RUNAS=(runuser -u postgres --)
fi
"${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U synth2 --auth=trust -E UTF8 >/dev/null
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$PGDATA" start >/dev/null
"${RUNAS[@]}" "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U synth2 synth2_test
export SYNTH2_TEST_DATABASE_URL="postgresql+psycopg://synth2@127.0.0.1:$PGPORT/synth2_test"
trap '"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true; rm -rf "$PGDATA"' EXIT
echo "PostgreSQL for the tests: $SYNTH2_TEST_DATABASE_URL"
