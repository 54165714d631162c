-- Initial schema (SQLite dialect). Timestamps are milliseconds since the Unix epoch;
-- flags are INTEGER 0/1; JSON values are TEXT. Keep in step with ../postgres/0001_initial.sql.

CREATE TABLE users (
    mxid            TEXT PRIMARY KEY,
    management_room TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX users_management_room ON users (management_room);

CREATE TABLE user_logins (
    id          TEXT PRIMARY KEY,
    user_mxid   TEXT NOT NULL REFERENCES users (mxid) ON DELETE CASCADE,
    remote_id   TEXT NOT NULL,
    remote_name TEXT NOT NULL,
    session     TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (user_mxid, remote_id)
);

CREATE TABLE portals (
    remote_id      TEXT NOT NULL,
    receiver       TEXT NOT NULL,
    mxid           TEXT UNIQUE,
    kind           TEXT NOT NULL,
    name           TEXT,
    topic          TEXT,
    avatar_url     TEXT,
    avatar_hash    TEXT,
    parent_space   TEXT,
    relay_login_id TEXT REFERENCES user_logins (id) ON DELETE SET NULL,
    metadata       TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (remote_id, receiver)
);
CREATE INDEX portals_receiver ON portals (receiver);

CREATE TABLE ghosts (
    remote_id   TEXT PRIMARY KEY,
    name        TEXT,
    name_set    INTEGER NOT NULL DEFAULT 0,
    avatar_mxc  TEXT,
    avatar_hash TEXT,
    metadata    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE messages (
    portal_remote_id TEXT NOT NULL,
    portal_receiver  TEXT NOT NULL,
    remote_id        TEXT NOT NULL,
    part_id          TEXT NOT NULL,
    mxid             TEXT NOT NULL UNIQUE,
    room_mxid        TEXT NOT NULL,
    sender_remote_id TEXT NOT NULL,
    sender_mxid      TEXT NOT NULL,
    sent_at          INTEGER NOT NULL,
    thread_root      TEXT,
    metadata         TEXT NOT NULL,
    PRIMARY KEY (portal_remote_id, portal_receiver, remote_id, part_id),
    FOREIGN KEY (portal_remote_id, portal_receiver)
        REFERENCES portals (remote_id, receiver) ON DELETE CASCADE
);
CREATE INDEX messages_portal_time ON messages (portal_remote_id, portal_receiver, sent_at);

CREATE TABLE reactions (
    portal_remote_id  TEXT NOT NULL,
    portal_receiver   TEXT NOT NULL,
    message_remote_id TEXT NOT NULL,
    message_part_id   TEXT NOT NULL,
    sender_remote_id  TEXT NOT NULL,
    emoji_id          TEXT NOT NULL,
    mxid              TEXT NOT NULL UNIQUE,
    emoji             TEXT NOT NULL,
    sent_at           INTEGER NOT NULL,
    metadata          TEXT NOT NULL,
    PRIMARY KEY (portal_remote_id, portal_receiver, message_remote_id, message_part_id,
                 sender_remote_id, emoji_id),
    FOREIGN KEY (portal_remote_id, portal_receiver, message_remote_id, message_part_id)
        REFERENCES messages (portal_remote_id, portal_receiver, remote_id, part_id)
        ON DELETE CASCADE
);

CREATE TABLE kv (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE as_inbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    txn_id       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    event        TEXT NOT NULL,
    processed_at INTEGER
);
CREATE INDEX as_inbox_pending ON as_inbox (seq) WHERE processed_at IS NULL;
CREATE INDEX as_inbox_received ON as_inbox (received_at);

CREATE TABLE as_txn (
    txn_id      TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
);
CREATE INDEX as_txn_received ON as_txn (received_at);
