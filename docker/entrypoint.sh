#!/bin/sh
# First start: write an example config and stop, so the operator can edit it.
# Later starts: run the given subcommand (default: run) with /data/config.yaml.
set -eu
cd /data
if [ ! -f config.yaml ]; then
    bridge -c config.yaml generate-config
    echo "Wrote /data/config.yaml. Edit homeserver.address, homeserver.domain, appservice.address,"
    echo "database and bridge.permissions, then run: generate-registration"
    exit 0
fi
if [ "$#" -eq 0 ]; then
    set -- run
fi
exec bridge -c config.yaml -r registration.yaml "$@"
