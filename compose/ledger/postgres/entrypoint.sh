#!/bin/bash
# First start: initdb into a temporary directory, create role and database in single-user mode,
# then rename into place, so a kill half-way through init leaves no half-made cluster behind
# (the next start simply redoes it). Later starts go straight to the server.
set -euo pipefail
: "${PGDATA:=/var/lib/chaoskit-pg/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    tmp="$PGDATA.init"
    rm -rf "$tmp" "$PGDATA"
    initdb -D "$tmp" -U postgres -A trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    {
        echo "listen_addresses = '*'"
        echo "max_connections = ${LEDGER_PG_MAX_CONNECTIONS:-100}"
        echo "unix_socket_directories = '/run/postgresql'"
    } >> "$tmp/postgresql.conf"
    echo "host all all 0.0.0.0/0 trust" >> "$tmp/pg_hba.conf"
    echo "host all all ::/0 trust" >> "$tmp/pg_hba.conf"
    postgres --single -D "$tmp" postgres >/dev/null <<'SQL'
create role ledger login password 'ledger';
SQL
    postgres --single -D "$tmp" postgres >/dev/null <<'SQL'
create database ledger owner ledger;
SQL
    mv "$tmp" "$PGDATA"
    echo "ledger-pg: initialized $PGDATA"
fi
exec postgres -D "$PGDATA" ${LEDGER_PG_ARGS:-}
