#!/usr/bin/env python3
"""The Matrix side of scripts/container-test: log in, open a DM with each bridge bot (or
reuse the one opened before, --reuse), send `help` there without any command prefix, and
wait for the bot's answer, which lists the `login` command. Exits 1 if a bot stays silent.
Standard library only."""

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 90


def call(base, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")


def quote(value):
    return urllib.parse.quote(value, safe="")


def wait_for(what, check):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise SystemExit(f"timed out after {TIMEOUT} s waiting for {what}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--homeserver", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--state", required=True, help="JSON file: bot -> DM room")
    parser.add_argument("--reuse", action="store_true", help="use the DMs in --state")
    parser.add_argument("bots", nargs="+")
    args = parser.parse_args()
    base = args.homeserver.rstrip("/")

    token = call(base, "POST", "/_matrix/client/v3/login", body={
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": args.user},
        "password": args.password,
    })["access_token"]
    rooms = {}
    if args.reuse:
        with open(args.state) as f:
            rooms = json.load(f)

    for bot in args.bots:
        if args.reuse:
            room = rooms[bot]
        else:
            room = call(base, "POST", "/_matrix/client/v3/createRoom", token, {
                "invite": [bot], "is_direct": True, "preset": "trusted_private_chat",
            })["room_id"]
            rooms[bot] = room
            wait_for(f"{bot} to join {room}", lambda: bot in call(
                base, "GET", f"/_matrix/client/v3/rooms/{quote(room)}/joined_members", token
            )["joined"])
        started = time.monotonic()
        txn = f"help-{time.time_ns()}"
        sent = call(base, "PUT", f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{txn}",
                    token, {"msgtype": "m.text", "body": "help"})["event_id"]

        def answer():
            events = call(base, "GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages?dir=b&limit=30",
                          token)["chunk"]
            for event in events:  # newest first: the bot's answer comes before our `help`
                if event["event_id"] == sent:
                    return None
                body = event.get("content", {}).get("body", "")
                if event.get("sender") == bot and event["type"] == "m.room.message" and "login" in body:
                    return body
            return None

        body = wait_for(f"{bot} to answer help in {room}", answer)
        first_line = body.strip().splitlines()[0] if body.strip() else ""
        print(f"dm_bots: {bot} answered help in {time.monotonic() - started:.1f} s in {room}: {first_line[:70]}")

    with open(args.state, "w") as f:
        json.dump(rooms, f)


if __name__ == "__main__":
    sys.exit(main())
