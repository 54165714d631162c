#!/bin/sh
# The stand-in postgres image's entrypoint (see postgres.Dockerfile).
set -eu
data=/var/lib/postgresql/data
socket=/var/run/postgresql
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
mkdir -p "$data" "$socket"
chown postgres:postgres "$data" "$socket"
chmod 0700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options
    as_postgres initdb -D "$data" --username=postgres --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$data/pg_hba.conf"
    as_postgres pg_ctl -D "$data" -o "-c listen_addresses='' -k $socket" -w start
    for script in /docker-entrypoint-initdb.d/*.sh; do
        [ -f "$script" ] || continue
        echo "postgres-entrypoint: running $script"
        PGHOST="$socket" POSTGRES_USER=postgres sh "$script"
    done
    as_postgres pg_ctl -D "$data" -m fast -w stop
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
    postgres -D "$data" -c listen_addresses='*' -k "$socket"
