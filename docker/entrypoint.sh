#!/bin/sh
# The bridge image's entrypoint. Everything lives in /data (BRIDGE_DATA moves it):
#   1. no config.yaml: write the example config there and stop, saying what to edit;
#   2. no registration.yaml: write it (with new tokens in config.yaml) and stop, saying what
#      to add to the homeserver's homeserver.yaml;
#   3. otherwise run the bridge (or the subcommand given as arguments).
# Started as root, it gives /data to UID:GID (default 1337:1337) and runs the bridge as that
# user; started as another user (docker run --user), it runs as that user and needs a
# writable /data. Exit codes are the bridge's (0 ok, 1 failure, 2 config error).
set -eu
data="${BRIDGE_DATA:-/data}"
uid="${UID:-1337}"
gid="${GID:-1337}"
config="$data/config.yaml"
registration="$data/registration.yaml"
say() { printf '%s\n' "$*"; }

if ! command -v bridge >/dev/null 2>&1; then
    say "error: this image has no bridge binary (built with --target prebuilt without prebuilt/bridge-<name>?)" >&2
    exit 1
fi
# Databases and logs the bridge writes are its own business: nobody else reads them.
umask 077

# Runs the bridge binary as the unprivileged user.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$data"
    chown -R "$uid:$gid" "$data"
    as_bridge() { setpriv --reuid="$uid" --regid="$gid" --clear-groups -- bridge "$@"; }
else
    if [ ! -w "$data" ]; then
        say "error: $data is not writable by uid $(id -u); start the container as root (it then runs the bridge as UID:GID) or give $data to uid $(id -u)" >&2
        exit 1
    fi
    as_bridge() { bridge "$@"; }
fi

if [ ! -f "$config" ]; then
    as_bridge -c "$config" generate-config >/dev/null
    say "Wrote $config (on the host: the directory mounted at $data)."
    say "Edit it before the next start:"
    say "  homeserver.domain    your homeserver's server name (the part after ':' in user IDs)"
    say "  bridge.permissions   who may use the bridge: replace every example.com"
    say "  homeserver.address, appservice.address, database.uri   unless the environment sets"
    say "                       them (docker-compose.yml does: environment wins over the file)"
    say "Then start the container again: it writes the registration for the homeserver."
    exit 0
fi

if [ ! -f "$registration" ]; then
    as_bridge -c "$config" -r "$registration" generate-registration >/dev/null
    say "Wrote $registration and new tokens into $config."
    say "Add the registration to the homeserver, in homeserver.yaml:"
    say "  app_service_config_files:"
    say "    - /path/to/registration.yaml    (this file, where the homeserver can read it)"
    say "and restart the homeserver; then start this container again. With this project's"
    say "docker-compose.yml, restarting synapse is enough: it loads every bridge's registration."
    exit 0
fi

if [ "$#" -eq 0 ]; then
    set -- run
fi
if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- bridge -c "$config" -r "$registration" "$@"
fi
exec bridge -c "$config" -r "$registration" "$@"
