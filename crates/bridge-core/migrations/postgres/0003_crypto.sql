-- The bridge bot's end-to-end encryption state (PostgreSQL dialect; keep in step with
-- ../sqlite/): the Olm account, Olm and Megolm sessions, other users' devices and
-- identities, as serialized by matrix-sdk-crypto, one row per item. `kind` names what the row
-- holds (account, session, inbound_group_session, device, identity, tracked_user,
-- message_hash, room_settings, custom), `name` identifies it within its kind.
CREATE TABLE crypto_store (
    kind  TEXT NOT NULL,
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
