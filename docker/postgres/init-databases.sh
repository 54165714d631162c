#!/bin/sh
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d):
# one role and one database per service, each role owning its database, all with the
# password POSTGRES_PASSWORD. The cluster is created with the C collation
# (POSTGRES_INITDB_ARGS in docker-compose.yml), which Synapse requires.
set -eu
for name in ${DATABASES:-synapse discord telegram whatsapp wechat}; do
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        -v name="$name" -v password="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
SQL
done
