-- Remote events that could not be bridged while the homeserver was unreachable, kept in
-- order per portal until they are (SQLite dialect). Keep in step with ../postgres/.
CREATE TABLE remote_pending (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    portal_remote_id TEXT NOT NULL,
    portal_receiver  TEXT NOT NULL,
    login_id         TEXT NOT NULL,
    event            TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX remote_pending_portal ON remote_pending (portal_remote_id, portal_receiver, seq);
