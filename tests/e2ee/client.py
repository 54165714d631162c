"""A Matrix user with a real Olm/Megolm device (matrix-nio), driven by the Rust tests.

Reads one JSON command per line on stdin and answers each with one JSON line on stdout:
{"ok": ...} or {"error": "..."}. Commands:

  {"cmd": "login", "homeserver": URL, "user": ID, "password": PW, "store": DIR}
  {"cmd": "create_dm", "invite": USER}          -> room ID; encrypted from the start, is_direct,
                                                   trusted_private_chat, as Element X creates DMs
  {"cmd": "wait_joined", "room": ID, "user": USER, "timeout": S}
  {"cmd": "send", "room": ID, "body": TEXT}     -> event ID (encrypted when the room is)
  {"cmd": "wait_message", "room": ID, "sender": USER, "contains": TEXT, "timeout": S}
      -> {"body", "event_id", "encrypted", "undecryptable_before"}: the first message from
         SENDER whose body contains TEXT, seen since the previous wait in that room
  {"cmd": "send_image", "room": ID, "data": BASE64, "filename": NAME, "mime": TYPE}
      -> event ID; the file is encrypted (an m.image with `file`) as Element sends it
  {"cmd": "wait_image", "room": ID, "sender": USER, "timeout": S}
      -> {"body", "data" (BASE64, downloaded and decrypted), "encrypted", "file_encrypted"}
  {"cmd": "count", "room": ID, "sender": USER, "contains": TEXT}
      -> how many messages from SENDER containing TEXT were seen in the room so far
  {"cmd": "stop"}
"""

import asyncio
import base64
import io
import json
import os
import sys
import time

from nio.crypto.attachments import decrypt_attachment
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomEncryptedImage,
    RoomMessageImage,
    RoomMessageNotice,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
)


class Driver:
    def __init__(self):
        self.client = None
        # Events seen per room, in order: (kind, sender, body, event_id, decrypted)
        self.seen = {}
        self.cursor = {}

    async def sync(self, timeout_ms=500):
        response = await self.client.sync(timeout=timeout_ms, full_state=False)
        if hasattr(response, "rooms"):
            for room_id, room in response.rooms.join.items():
                for event in room.timeline.events:
                    self.record(room_id, event)
        await self.flush_keys()

    def record(self, room_id, event):
        events = self.seen.setdefault(room_id, [])
        if isinstance(event, (RoomMessageText, RoomMessageNotice)):
            events.append(("text", event.sender, event.body, event.event_id, event.decrypted))
        elif isinstance(event, RoomEncryptedImage):
            media = {"url": event.url, "key": event.key["k"], "hash": event.hashes["sha256"], "iv": event.iv}
            events.append(("image", event.sender, event.body, event.event_id, event.decrypted, media))
        elif isinstance(event, RoomMessageImage):
            events.append(("image", event.sender, event.body, event.event_id, event.decrypted, {"url": event.url}))
        elif isinstance(event, MegolmEvent):
            events.append(("undecryptable", event.sender, "", event.event_id, False))

    async def flush_keys(self):
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()
        if self.client.should_claim_keys:
            await self.client.keys_claim(self.client.get_users_for_key_claiming())
        await self.client.send_to_device_messages()

    async def login(self, homeserver, user, password, store):
        os.makedirs(store, exist_ok=True)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.client = AsyncClient(homeserver, user, store_path=store, config=config)
        response = await self.client.login(password, device_name="e2ee test client")
        if not isinstance(response, LoginResponse):
            raise RuntimeError(f"login failed: {response}")
        await self.sync(0)
        return self.client.device_id

    async def create_dm(self, invite):
        response = await self.client.room_create(
            is_direct=True,
            preset=RoomPreset.trusted_private_chat,
            invite=[invite],
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        if not isinstance(response, RoomCreateResponse):
            raise RuntimeError(f"createRoom failed: {response}")
        await self.sync(0)
        return response.room_id

    async def wait_joined(self, room, user, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.sync()
            joined = self.client.rooms.get(room)
            if joined is not None and user in joined.users:
                return True
        raise RuntimeError(f"{user} did not join {room} within {timeout} s")

    async def send(self, room, body):
        await self.sync(0)
        response = await self.client.room_send(
            room,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")
        return response.event_id

    async def undecryptable_content(self, room, body):
        """The content of an m.room.encrypted event of a Megolm session nobody else ever
        gets the key of (as when a client fails to share it): well-formed, undecryptable."""
        import vodozemac

        session = vodozemac.GroupSession()
        plaintext = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}, "room_id": room}
        message = session.encrypt(json.dumps(plaintext).encode())
        return {
            "algorithm": "m.megolm.v1.aes-sha2",
            "sender_key": self.client.olm.account.identity_keys["curve25519"],
            "session_id": session.session_id,
            "device_id": self.client.device_id,
            "ciphertext": message.to_base64(),
        }

    async def send_image(self, room, data, filename, mime):
        await self.sync(0)
        plain = base64.b64decode(data)
        upload, keys = await self.client.upload(
            lambda *_: io.BytesIO(plain), content_type="application/octet-stream", filename=filename, encrypt=True, filesize=len(plain)
        )
        if not hasattr(upload, "content_uri"):
            raise RuntimeError(f"upload failed: {upload}")
        content = {
            "msgtype": "m.image",
            "body": filename,
            "info": {"mimetype": mime, "size": len(plain)},
            "file": {"url": upload.content_uri, **keys},
        }
        response = await self.client.room_send(room, "m.room.message", content, ignore_unverified_devices=True)
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")
        return response.event_id

    async def wait_image(self, room, sender, timeout):
        deadline = time.monotonic() + timeout
        while True:
            events = self.seen.get(room, [])
            start = self.cursor.get(room, 0)
            for index in range(start, len(events)):
                entry = events[index]
                if entry[0] != "image" or entry[1] != sender:
                    continue
                self.cursor[room] = index + 1
                media = entry[5]
                download = await self.client.download(mxc=media["url"])
                body = getattr(download, "body", None)
                if body is None:
                    raise RuntimeError(f"download failed: {download}")
                file_encrypted = "key" in media
                if file_encrypted:
                    body = decrypt_attachment(body, media["key"], media["hash"], media["iv"])
                return {
                    "body": entry[2],
                    "data": base64.b64encode(body).decode(),
                    "encrypted": entry[4],
                    "file_encrypted": file_encrypted,
                }
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no image from {sender} within {timeout} s")
            await self.sync()

    async def count(self, room, sender, contains):
        await self.sync(0)
        return sum(
            1 for e in self.seen.get(room, []) if e[0] == "text" and e[1] == sender and contains in e[2]
        )

    async def wait_message(self, room, sender, contains, timeout):
        deadline = time.monotonic() + timeout
        undecryptable = 0
        while True:
            events = self.seen.get(room, [])
            start = self.cursor.get(room, 0)
            for index in range(start, len(events)):
                kind, who, body, event_id, decrypted = events[index][:5]
                if who != sender or kind == "image":
                    continue
                if kind == "undecryptable":
                    undecryptable += 1
                    continue
                if contains in body:
                    self.cursor[room] = index + 1
                    return {
                        "body": body,
                        "event_id": event_id,
                        "encrypted": decrypted,
                        "undecryptable_before": undecryptable,
                    }
            if time.monotonic() >= deadline:
                seen = [e for e in events[start:] if e[1] == sender]
                raise RuntimeError(f"no message from {sender} containing {contains!r} within {timeout} s; saw {seen}")
            await self.sync()


async def main():
    driver = Driver()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        try:
            command = json.loads(line)
            cmd = command.pop("cmd")
            if cmd == "stop":
                break
            result = await getattr(driver, cmd)(**command)
            answer = {"ok": result}
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    if driver.client is not None:
        await driver.client.close()


if __name__ == "__main__":
    asyncio.run(main())
