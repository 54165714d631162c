#!/bin/sh
# Starts Synapse for docker-compose.yml (run as root in the Synapse image):
#   1. on the first start, Synapse's own --generate-config writes /data/homeserver.yaml
#      (server name SYNAPSE_SERVER_NAME; signing key, secrets) — yours to edit afterwards;
#   2. at every start, /data/compose.yaml is rewritten with what the compose file decides:
#      the listener on 0.0.0.0:8008, PostgreSQL (host postgres, database and role synapse,
#      password POSTGRES_PASSWORD) and app_service_config_files: a copy of each bridge's
#      /bridges/<bridge>/registration.yaml that exists, readable by Synapse only;
#   3. Synapse runs as UID:GID (default 991:991) on both files, compose.yaml winning.
# So after a bridge wrote its registration, restarting this container loads it.
set -eu
data=/data
uid="${UID:-991}"
gid="${GID:-991}"
: "${SYNAPSE_SERVER_NAME:?set MATRIX_DOMAIN in .env (your server name)}"
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}"
python="$(command -v python3 || command -v python)"

if [ ! -f "$data/homeserver.yaml" ]; then
    "$python" -m synapse.app.homeserver --generate-config \
        --server-name "$SYNAPSE_SERVER_NAME" --report-stats=no \
        --config-path "$data/homeserver.yaml" --data-directory "$data"
    # The generated logging config writes to a file; log to the console (`docker logs`).
    cat >"$data/$SYNAPSE_SERVER_NAME.log.config" <<'YAML'
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
loggers:
  synapse.storage.SQL:
    level: INFO
root:
  level: INFO
  handlers: [console]
disable_existing_loggers: false
YAML
    echo "start.sh: wrote $data/homeserver.yaml for $SYNAPSE_SERVER_NAME"
fi

rm -rf "$data/appservices"
mkdir -p "$data/appservices"
registrations=""
for file in /bridges/*/registration.yaml; do
    [ -f "$file" ] || continue
    bridge="$(basename "$(dirname "$file")")"
    install -m 0600 -o "$uid" -g "$gid" "$file" "$data/appservices/$bridge.yaml"
    registrations="$registrations \"$data/appservices/$bridge.yaml\","
    echo "start.sh: loading the $bridge bridge's registration"
done

umask 077
cat > "$data/compose.yaml" <<YAML
# Rewritten by docker/synapse/start.sh at every start; put your own settings in
# homeserver.yaml (the keys here win over it).
listeners:
  - port: 8008
    bind_addresses: ["0.0.0.0"]
    type: http
    tls: false
    x_forwarded: true
    resources: [{names: [client, federation], compress: false}]
database:
  name: psycopg2
  args:
    host: postgres
    port: 5432
    user: synapse
    password: "$POSTGRES_PASSWORD"
    dbname: synapse
    cp_min: 5
    cp_max: 10
app_service_config_files: [${registrations%,} ]
# End-to-bridge encryption: to-device events, device-list changes and key counts for the
# bridges' bot devices (README, "Encryption").
experimental_features:
  msc2409_to_device_messages_enabled: true
  msc3202_transaction_extensions: true
YAML
chown -R "$uid:$gid" "$data"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
    "$python" -m synapse.app.homeserver -c "$data/homeserver.yaml" -c "$data/compose.yaml"
