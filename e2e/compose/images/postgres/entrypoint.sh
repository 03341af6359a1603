#!/bin/bash
# Initialise $PGDATA once (superuser `postgres`, password from POSTGRES_PASSWORD_FILE,
# scram-sha-256 over TCP), run /docker-entrypoint-initdb.d/*.sql on a socket-only server,
# then run PostgreSQL in the foreground on all addresses.
set -euo pipefail
: "${POSTGRES_PASSWORD_FILE:?set POSTGRES_PASSWORD_FILE to a file holding the superuser password}"
sock=/tmp
if [[ ! -s $PGDATA/PG_VERSION ]]; then
  initdb -D "$PGDATA" -U postgres --pwfile="$POSTGRES_PASSWORD_FILE" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses='' -k $sock" start
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [[ -e $f ]] || continue
    echo "pg-entrypoint: running $f"
    psql -q -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d postgres -f "$f"
  done
  pg_ctl -D "$PGDATA" -w -s -m fast stop
  echo "pg-entrypoint: initialised $PGDATA"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k "$sock"
