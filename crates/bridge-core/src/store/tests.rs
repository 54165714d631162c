//! The storage conformance suite: every test runs once on SQLite and once on PostgreSQL.
//!
//! SQLite tests use a fresh file in a temporary directory. PostgreSQL tests use the server
//! at `BRIDGE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), each
//! in its own randomly named schema (dropped afterwards) so tests can run in parallel. An
//! unreachable PostgreSQL fails the test, unless `BRIDGE_TEST_SKIP_POSTGRES=1` is set and
//! `CI` is not, in which case the test prints a loud skip line and passes.

use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::json;

use super::*;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// What a conformance test gets: a migrated store and the URI that reopens it.
#[derive(Clone)]
struct TestDb {
    store: Store,
    uri: String,
}

/// What to tear down after a test.
enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin: Store, schema: String },
}

async fn sqlite_db() -> (TestDb, Cleanup) {
    let dir = tempfile::tempdir().expect("temp dir");
    let uri = format!("sqlite:{}", dir.path().join("bridge.db").display());
    let store = Store::connect(&uri).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    (TestDb { store, uri }, Cleanup::Sqlite(dir))
}

/// A fresh schema on the test server, or `None` when PostgreSQL is unreachable and skipping
/// is allowed.
async fn postgres_db(test: &str) -> Option<(TestDb, Cleanup)> {
    let base = std::env::var("BRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let admin = match Store::connect(&base).await {
        Ok(admin) => admin,
        Err(err) => {
            let why = format!(
                "PostgreSQL at {} is unreachable: {err:?}",
                redact_uri(&base)
            );
            if std::env::var_os("CI").is_some() {
                panic!("{why} (CI is set, so PostgreSQL tests may not be skipped)");
            }
            if std::env::var("BRIDGE_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
                // Written to the real stderr, past the test harness's capture, so the skip
                // is seen even though the test passes.
                let _ = writeln!(
                    std::io::stderr(),
                    "!!!!!!!! SKIPPED {test}: {why} (BRIDGE_TEST_SKIP_POSTGRES=1) !!!!!!!!"
                );
                return None;
            }
            panic!(
                "{why}; start it, set BRIDGE_TEST_POSTGRES_URL, or set BRIDGE_TEST_SKIP_POSTGRES=1"
            );
        }
    };
    let schema = format!("t_{:016x}", rand::random::<u64>());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin.pool)
        .await
        .expect("create test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let uri = format!("{base}{sep}options[search_path]={schema}");
    let store = Store::connect(&uri).await.expect("open postgres");
    store.migrate().await.expect("migrate postgres");
    Some((TestDb { store, uri }, Cleanup::Postgres { admin, schema }))
}

/// Runs one conformance test against `backend`, cleaning up even when it panics.
async fn run<F, Fut>(backend: Backend, test: &str, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let (db, cleanup) = match backend {
        Backend::Sqlite => sqlite_db().await,
        Backend::Postgres => match postgres_db(test).await {
            Some(pair) => pair,
            None => return,
        },
    };
    assert_eq!(db.store.backend(), backend);
    let store = db.store.clone();
    let result = AssertUnwindSafe(body(db)).catch_unwind().await;
    store.close().await;
    match cleanup {
        Cleanup::Sqlite(dir) => drop(dir),
        Cleanup::Postgres { admin, schema } => {
            let dropped =
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&admin.pool)
                    .await;
            admin.close().await;
            if result.is_ok() {
                dropped.expect("drop test schema");
            }
        }
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Declares `sqlite_<name>` and `postgres_<name>` tests for each conformance test `name`.
macro_rules! conformance {
    ($($test:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test]
        async fn $sqlite() {
            run(Backend::Sqlite, stringify!($sqlite), $test).await;
        }
        #[tokio::test]
        async fn $postgres() {
            run(Backend::Postgres, stringify!($postgres), $test).await;
        }
    )*};
}

conformance! {
    migrations_idempotent => sqlite_migrations_idempotent, postgres_migrations_idempotent;
    connection_settings => sqlite_connection_settings, postgres_connection_settings;
    users_crud => sqlite_users_crud, postgres_users_crud;
    user_logins_crud => sqlite_user_logins_crud, postgres_user_logins_crud;
    portals_crud => sqlite_portals_crud, postgres_portals_crud;
    ghosts_crud => sqlite_ghosts_crud, postgres_ghosts_crud;
    messages_roundtrip => sqlite_messages_roundtrip, postgres_messages_roundtrip;
    reactions_crud => sqlite_reactions_crud, postgres_reactions_crud;
    kv_crud => sqlite_kv_crud, postgres_kv_crud;
    kv_prefixes => sqlite_kv_prefixes, postgres_kv_prefixes;
    login_store_is_per_login => sqlite_login_store_is_per_login, postgres_login_store_is_per_login;
    inbox_dedup_by_event_id => sqlite_inbox_dedup_by_event_id, postgres_inbox_dedup_by_event_id;
    inbox_txn_keys => sqlite_inbox_txn_keys, postgres_inbox_txn_keys;
    remote_pending_in_order_per_portal => sqlite_remote_pending_in_order_per_portal, postgres_remote_pending_in_order_per_portal;
    inbox_done_rows_keep_no_content => sqlite_inbox_done_rows_keep_no_content, postgres_inbox_done_rows_keep_no_content;
    inbox_pending_order_and_done => sqlite_inbox_pending_order_and_done, postgres_inbox_pending_order_and_done;
    inbox_concurrent_same_txn => sqlite_inbox_concurrent_same_txn, postgres_inbox_concurrent_same_txn;
    survives_reopen => sqlite_survives_reopen, postgres_survives_reopen;
    crypto_rows_batch => sqlite_crypto_rows_batch, postgres_crypto_rows_batch;
    crypto_machine_survives_reopen => sqlite_crypto_machine_survives_reopen, postgres_crypto_machine_survives_reopen;
}

// ---- fixtures ---------------------------------------------------------------------------

const ALICE: &str = "@alice:example.org";

fn portal_key() -> PortalKey {
    PortalKey::shared("chat-1")
}

async fn with_portal(db: &TestDb) -> PortalKey {
    let key = portal_key();
    let mut portal = Portal::new(key.clone(), PortalKind::Group, 1_000);
    portal.mxid = Some("!room1:example.org".into());
    db.store.portals().upsert(&portal).await.expect("portal");
    key
}

fn message(portal: &PortalKey, remote_id: &str, part_id: &str, mxid: &str, ts: i64) -> Message {
    Message {
        portal: portal.clone(),
        remote_id: remote_id.into(),
        part_id: part_id.into(),
        mxid: mxid.into(),
        room_mxid: "!room1:example.org".into(),
        sender_remote_id: "u-bob".into(),
        sender_mxid: "@net_u-bob:example.org".into(),
        timestamp: ts,
        thread_root: None,
        metadata: json!({"edit_count": 0}),
    }
}

fn reaction(portal: &PortalKey, msg: &str, sender: &str, emoji: &str, mxid: &str) -> Reaction {
    Reaction {
        portal: portal.clone(),
        message_remote_id: msg.into(),
        message_part_id: String::new(),
        sender_remote_id: sender.into(),
        emoji_id: emoji.into(),
        mxid: mxid.into(),
        emoji: emoji.into(),
        timestamp: 5_000,
        metadata: json!({}),
    }
}

fn events(ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| {
            (
                (*id).to_owned(),
                json!({"event_id": id, "type": "m.room.message"}).to_string(),
            )
        })
        .collect()
}

async fn pending_ids(db: &TestDb) -> Vec<String> {
    let pending = db.store.inbox().pending(1_000).await.expect("pending");
    pending.into_iter().map(|e| e.event_id).collect()
}

// ---- the tests ----------------------------------------------------------------------------

async fn migrations_idempotent(db: TestDb) {
    let latest = migrate::migrations(db.store.backend())
        .last()
        .expect("migrations")
        .version;
    assert_eq!(
        migrate::current_version(&db.store.pool)
            .await
            .expect("version"),
        latest
    );
    db.store.migrate().await.expect("second migrate");
    db.store.migrate().await.expect("third migrate");
    let row = sqlx::query("SELECT COUNT(*) AS n FROM store_migrations")
        .fetch_one(&db.store.pool)
        .await
        .expect("count");
    let n: i64 = sqlx::Row::try_get(&row, "n").expect("n");
    assert_eq!(n, migrate::migrations(db.store.backend()).len() as i64);
    // A database from a newer build is refused rather than used.
    sqlx::query("INSERT INTO store_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(latest + 1)
        .bind("future")
        .bind(0_i64)
        .execute(&db.store.pool)
        .await
        .expect("fake future version");
    assert!(matches!(
        db.store.migrate().await,
        Err(StoreError::SchemaTooNew { .. })
    ));
}

async fn connection_settings(db: TestDb) {
    if db.store.backend() != Backend::Sqlite {
        return;
    }
    for (pragma, want) in [
        ("journal_mode", "wal"),
        ("foreign_keys", "1"),
        ("busy_timeout", "5000"),
    ] {
        let mut conn = db.store.pool.acquire().await.expect("conn");
        let sql = format!("PRAGMA {pragma}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
            .expect("pragma");
        let got = sqlx::Row::try_get::<String, _>(&row, 0)
            .or_else(|_| sqlx::Row::try_get::<i64, _>(&row, 0).map(|v| v.to_string()))
            .expect("pragma value");
        assert_eq!(got, want, "PRAGMA {pragma}");
    }
}

async fn users_crud(db: TestDb) {
    let users = db.store.users();
    assert_eq!(users.get(ALICE).await.expect("get"), None);
    let created = users.upsert(ALICE).await.expect("upsert");
    assert_eq!(created.mxid, ALICE);
    assert_eq!(created.management_room, None);
    assert!(users
        .set_management_room(ALICE, Some("!mgmt:example.org"))
        .await
        .expect("set"));
    // A second upsert keeps the row as it is.
    let again = users.upsert(ALICE).await.expect("upsert again");
    assert_eq!(again.management_room.as_deref(), Some("!mgmt:example.org"));
    assert_eq!(again.created_at, created.created_at);
    let found = users
        .find_by_management_room("!mgmt:example.org")
        .await
        .expect("find");
    assert_eq!(found.map(|u| u.mxid).as_deref(), Some(ALICE));
    assert_eq!(
        users
            .find_by_management_room("!other:example.org")
            .await
            .expect("find"),
        None
    );
    assert!(users.set_management_room(ALICE, None).await.expect("clear"));
    assert_eq!(
        users
            .get(ALICE)
            .await
            .expect("get")
            .expect("row")
            .management_room,
        None
    );
    assert!(!users
        .set_management_room("@nobody:example.org", None)
        .await
        .expect("missing"));
}

async fn user_logins_crud(db: TestDb) {
    let logins = db.store.user_logins();
    let mut login = UserLogin {
        id: UserLogin::make_id(ALICE, "acct-1"),
        user_mxid: ALICE.into(),
        remote_id: "acct-1".into(),
        remote_name: "Alice".into(),
        session: json!({"token": "secret", "n": [1, 2]}),
        state: "connected".into(),
        created_at: 10,
    };
    // The user must exist first.
    assert!(matches!(
        logins.upsert(&login).await,
        Err(StoreError::MissingReference(_))
    ));
    db.store.users().upsert(ALICE).await.expect("user");
    logins.upsert(&login).await.expect("insert");
    assert_eq!(
        logins.get(&login.id).await.expect("get"),
        Some(login.clone())
    );
    assert_eq!(
        logins
            .get_by_remote(ALICE, "acct-1")
            .await
            .expect("by remote"),
        Some(login.clone())
    );

    login.remote_name = "Alice A.".into();
    login.created_at = 99; // ignored on update
    logins.upsert(&login).await.expect("update");
    let stored = logins.get(&login.id).await.expect("get").expect("row");
    assert_eq!(stored.remote_name, "Alice A.");
    assert_eq!(stored.created_at, 10);

    // Same (user, remote) under another ID is a conflict.
    let mut twin = login.clone();
    twin.id = "other-id".into();
    assert!(matches!(
        logins.upsert(&twin).await,
        Err(StoreError::Conflict(_))
    ));

    let second = UserLogin {
        id: "alice|acct-2".into(),
        remote_id: "acct-2".into(),
        created_at: 20,
        ..login.clone()
    };
    logins.upsert(&second).await.expect("second");
    let ids: Vec<_> = logins
        .list_for_user(ALICE)
        .await
        .expect("list")
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, vec![login.id.clone(), second.id.clone()]);
    assert_eq!(logins.list_all().await.expect("all").len(), 2);
    assert!(logins
        .list_for_user("@bob:example.org")
        .await
        .expect("list")
        .is_empty());

    assert!(logins
        .update_session(&login.id, &json!({"token": "new"}))
        .await
        .expect("session"));
    assert!(logins
        .update_state(&login.id, "bad_credentials")
        .await
        .expect("state"));
    let stored = logins.get(&login.id).await.expect("get").expect("row");
    assert_eq!(stored.session, json!({"token": "new"}));
    assert_eq!(stored.state, "bad_credentials");
    assert!(!logins
        .update_session("nope", &json!(null))
        .await
        .expect("missing"));

    assert!(logins.delete(&login.id).await.expect("delete"));
    assert!(!logins.delete(&login.id).await.expect("delete again"));
    assert_eq!(logins.list_all().await.expect("all").len(), 1);
}

async fn portals_crud(db: TestDb) {
    let portals = db.store.portals();
    let key = PortalKey::for_login("dm-7", "alice|acct-1");
    let mut portal = Portal::new(key.clone(), PortalKind::Direct, 1_000);
    portal.name = Some("Bob ✨".into());
    portal.topic = Some("line one\nline two 'quoted'".into());
    portal.avatar_url = Some("mxc://example.org/abc".into());
    portal.avatar_hash = Some("h1".into());
    portal.metadata = json!({"nested": {"list": [1, "two", null]}, "emoji": "🦀"});
    portals.upsert(&portal).await.expect("insert");
    assert_eq!(
        portals.get_by_key(&key).await.expect("get"),
        Some(portal.clone())
    );
    assert!(portals
        .get_by_key(&PortalKey::shared("dm-7"))
        .await
        .expect("get")
        .is_none());
    assert!(portals
        .get_by_key(&key)
        .await
        .expect("get")
        .expect("row")
        .kind
        .is_direct());

    assert!(portals
        .set_mxid(&key, Some("!dm:example.org"))
        .await
        .expect("set mxid"));
    let by_room = portals
        .get_by_mxid("!dm:example.org")
        .await
        .expect("by mxid")
        .expect("row");
    assert_eq!(by_room.key, key);

    // The room ID is unique across portals.
    let mut other = Portal::new(PortalKey::shared("group-1"), PortalKind::Group, 2_000);
    other.mxid = Some("!dm:example.org".into());
    assert!(matches!(
        portals.upsert(&other).await,
        Err(StoreError::Conflict(_))
    ));
    other.mxid = Some("!group:example.org".into());
    portals.upsert(&other).await.expect("other");

    // Upsert overwrites everything but created_at.
    portal.mxid = Some("!dm:example.org".into());
    portal.name = None;
    portal.kind = PortalKind::Group;
    portal.created_at = 5;
    portals.upsert(&portal).await.expect("update");
    let stored = portals.get_by_key(&key).await.expect("get").expect("row");
    assert_eq!(stored.name, None);
    assert_eq!(stored.kind, PortalKind::Group);
    assert_eq!(stored.created_at, 1_000);

    let mine: Vec<_> = portals
        .list_for_receiver("alice|acct-1")
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(mine, vec![key.clone()]);
    let shared: Vec<_> = portals
        .list_for_receiver("")
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(shared, vec![PortalKey::shared("group-1")]);
    assert_eq!(portals.list_with_room().await.expect("rooms").len(), 2);

    assert!(portals.set_mxid(&key, None).await.expect("clear"));
    assert!(portals
        .get_by_mxid("!dm:example.org")
        .await
        .expect("by mxid")
        .is_none());
    assert!(!portals
        .set_mxid(&PortalKey::shared("nope"), None)
        .await
        .expect("missing"));

    // Deleting a portal takes its messages along.
    db.store
        .messages()
        .insert(&message(&key, "m1", "", "$m1", 1))
        .await
        .expect("msg");
    assert!(portals.delete(&key).await.expect("delete"));
    assert!(!portals.delete(&key).await.expect("delete again"));
    assert!(db
        .store
        .messages()
        .get_by_mxid("$m1")
        .await
        .expect("msg")
        .is_none());

    // Every kind survives the round trip.
    for kind in [
        PortalKind::Direct,
        PortalKind::Group,
        PortalKind::Channel,
        PortalKind::Space,
    ] {
        assert_eq!(PortalKind::parse(kind.as_str()), Some(kind));
    }
}

async fn ghosts_crud(db: TestDb) {
    let ghosts = db.store.ghosts();
    assert_eq!(ghosts.get("u-1").await.expect("get"), None);
    let mut ghost = Ghost::new("u-1", 100);
    ghosts.upsert(&ghost).await.expect("insert");
    assert_eq!(ghosts.get("u-1").await.expect("get"), Some(ghost.clone()));
    ghost.name = Some("Bob".into());
    ghost.name_set = true;
    ghost.avatar_mxc = Some("mxc://example.org/bob".into());
    ghost.avatar_hash = Some("hash".into());
    ghost.metadata = json!({"is_bot": true});
    ghost.updated_at = 200;
    ghosts.upsert(&ghost).await.expect("update");
    assert_eq!(ghosts.get("u-1").await.expect("get"), Some(ghost.clone()));
    ghost.name_set = false;
    ghosts.upsert(&ghost).await.expect("unset");
    assert!(!ghosts.get("u-1").await.expect("get").expect("row").name_set);
}

async fn messages_roundtrip(db: TestDb) {
    let messages = db.store.messages();
    let portal = portal_key();
    // A message needs its portal.
    let orphan = message(&portal, "m0", "", "$m0", 1);
    assert!(matches!(
        messages.insert(&orphan).await,
        Err(StoreError::MissingReference(_))
    ));
    with_portal(&db).await;

    let mut first = message(&portal, "m1", "", "$m1", 1_000);
    first.thread_root = Some("root-1".into());
    messages.insert(&first).await.expect("insert");
    let caption = message(&portal, "m2", "caption", "$m2a", 2_000);
    let image = message(&portal, "m2", "image", "$m2b", 2_000);
    messages.insert(&image).await.expect("image");
    messages.insert(&caption).await.expect("caption");

    assert_eq!(
        messages.get_part(&portal, "m1", "").await.expect("part"),
        Some(first.clone())
    );
    assert_eq!(
        messages.get_part(&portal, "m1", "x").await.expect("part"),
        None
    );
    assert_eq!(
        messages.get_by_mxid("$m2b").await.expect("by mxid"),
        Some(image.clone())
    );
    assert_eq!(
        messages.get_parts(&portal, "m2").await.expect("parts"),
        vec![caption.clone(), image.clone()]
    );
    assert!(messages
        .get_parts(&PortalKey::for_login("chat-1", "x"), "m2")
        .await
        .expect("parts")
        .is_empty());

    // Both sides of the map are unique, and insert never overwrites.
    let same_part = message(&portal, "m1", "", "$other", 3_000);
    assert!(matches!(
        messages.insert(&same_part).await,
        Err(StoreError::Conflict(_))
    ));
    let same_event = message(&portal, "m9", "", "$m1", 3_000);
    assert!(matches!(
        messages.insert(&same_event).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        messages.get_by_mxid("$m1").await.expect("by mxid"),
        Some(first.clone())
    );

    let latest = messages
        .latest_in_portal(&portal)
        .await
        .expect("latest")
        .expect("row");
    assert_eq!(latest.remote_id, "m2");
    assert_eq!(
        messages
            .latest_in_portal(&PortalKey::shared("empty"))
            .await
            .expect("latest"),
        None
    );

    assert!(messages.delete_by_mxid("$m1").await.expect("delete"));
    assert!(!messages.delete_by_mxid("$m1").await.expect("delete again"));
    assert_eq!(
        messages
            .delete_by_remote(&portal, "m2")
            .await
            .expect("delete parts"),
        2
    );
    assert_eq!(
        messages
            .delete_by_remote(&portal, "m2")
            .await
            .expect("delete again"),
        0
    );
    assert_eq!(
        messages.latest_in_portal(&portal).await.expect("latest"),
        None
    );
}

async fn reactions_crud(db: TestDb) {
    let portal = with_portal(&db).await;
    let reactions = db.store.reactions();
    let thumbs = reaction(&portal, "m1", "u-1", "👍", "$r1");
    // The target message part must be mapped.
    assert!(matches!(
        reactions.upsert(&thumbs).await,
        Err(StoreError::MissingReference(_))
    ));
    db.store
        .messages()
        .insert(&message(&portal, "m1", "", "$m1", 1))
        .await
        .expect("msg");

    reactions.upsert(&thumbs).await.expect("insert");
    let heart = reaction(&portal, "m1", "u-2", "❤️", "$r2");
    reactions.upsert(&heart).await.expect("second");
    assert_eq!(
        reactions.get_by_mxid("$r1").await.expect("by mxid"),
        Some(thumbs.clone())
    );
    assert_eq!(
        reactions
            .get(&portal, "m1", "", "u-2", "❤️")
            .await
            .expect("get"),
        Some(heart.clone())
    );
    assert_eq!(
        reactions
            .get(&portal, "m1", "", "u-2", "👍")
            .await
            .expect("get"),
        None
    );

    // Re-reacting replaces the event of the same key.
    let mut replaced = thumbs.clone();
    replaced.mxid = "$r1b".into();
    replaced.timestamp = 6_000;
    reactions.upsert(&replaced).await.expect("replace");
    assert_eq!(reactions.get_by_mxid("$r1").await.expect("old"), None);
    assert_eq!(
        reactions.get_by_mxid("$r1b").await.expect("new"),
        Some(replaced.clone())
    );
    assert_eq!(
        reactions
            .list_for_message(&portal, "m1")
            .await
            .expect("list"),
        vec![heart.clone(), replaced.clone()]
    );

    // Another key with a taken event ID is a conflict.
    let clash = reaction(&portal, "m1", "u-3", "👍", "$r2");
    assert!(matches!(
        reactions.upsert(&clash).await,
        Err(StoreError::Conflict(_))
    ));

    assert!(reactions.delete(&replaced).await.expect("delete"));
    assert!(!reactions.delete(&replaced).await.expect("delete again"));
    assert!(reactions
        .delete_by_mxid("$r2")
        .await
        .expect("delete by mxid"));
    assert!(reactions
        .list_for_message(&portal, "m1")
        .await
        .expect("list")
        .is_empty());

    // Reactions go away with their message.
    reactions.upsert(&thumbs).await.expect("again");
    db.store
        .messages()
        .delete_by_mxid("$m1")
        .await
        .expect("delete msg");
    assert_eq!(reactions.get_by_mxid("$r1").await.expect("gone"), None);
}

async fn kv_crud(db: TestDb) {
    let kv = db.store.kv();
    assert_eq!(kv.get("version").await.expect("get"), None);
    kv.set("version", "1").await.expect("set");
    kv.set("version", "2").await.expect("overwrite");
    assert_eq!(kv.get("version").await.expect("get").as_deref(), Some("2"));
    assert!(kv.delete("version").await.expect("delete"));
    assert!(!kv.delete("version").await.expect("delete again"));
    assert_eq!(kv.get("version").await.expect("get"), None);
}

async fn kv_prefixes(db: TestDb) {
    let kv = db.store.kv();
    // `_` and `%` are ordinary characters in a prefix, not patterns.
    for (name, value) in [("net/a_1/x", "1"), ("net/a_1/y", "2"), ("net/ab1/x", "3"), ("net/a%1/x", "4"), ("net/a_", "5")] {
        kv.set(name, value).await.expect("set");
    }
    let listed = kv.list_prefix("net/a_1/").await.expect("list");
    assert_eq!(listed, vec![("net/a_1/x".to_owned(), "1".to_owned()), ("net/a_1/y".to_owned(), "2".to_owned())]);
    assert_eq!(kv.list_prefix("net/ä/").await.expect("list none"), vec![]);
    assert_eq!(kv.delete_prefix("net/a_1/").await.expect("delete"), 2);
    assert_eq!(kv.get("net/ab1/x").await.expect("get").as_deref(), Some("3"));
    assert_eq!(kv.get("net/a%1/x").await.expect("get").as_deref(), Some("4"));
    assert_eq!(kv.list_prefix("net/a_1/").await.expect("list after"), vec![]);
}

async fn login_store_is_per_login(db: TestDb) {
    use crate::network::{LoginId, LoginStore};
    let a = LoginStore::database(db.store.clone(), &LoginId("a".into()));
    let a_again = LoginStore::database(db.store.clone(), &LoginId("a".into()));
    let b = LoginStore::database(db.store.clone(), &LoginId("a/".into()));
    a.set("guild/1", &serde_json::json!({"mode": "all"})).await.expect("set");
    a.set("guild/2", &serde_json::json!({"mode": "on-message"})).await.expect("set");
    b.set("guild/1", &serde_json::json!({"mode": "b's"})).await.expect("set b");
    let listed: Vec<(String, serde_json::Value)> = a_again.list("guild/").await.expect("list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0], ("guild/1".to_owned(), serde_json::json!({"mode": "all"})));
    a.clear().await.expect("clear");
    assert_eq!(a.get::<serde_json::Value>("guild/2").await.expect("get"), None);
    assert_eq!(b.get::<serde_json::Value>("guild/1").await.expect("b kept"), Some(serde_json::json!({"mode": "b's"})));
}

async fn inbox_dedup_by_event_id(db: TestDb) {
    let inbox = db.store.inbox();
    let out = inbox
        .insert_transaction("1", &events(&["$a", "$b"]))
        .await
        .expect("txn 1");
    assert_eq!(
        out,
        InsertOutcome {
            new: 2,
            duplicate: 0,
            duplicate_transaction: false
        }
    );
    // A different transaction repeating an event stores only the new one.
    let out = inbox
        .insert_transaction("2", &events(&["$b", "$c", "$c"]))
        .await
        .expect("txn 2");
    assert_eq!(
        out,
        InsertOutcome {
            new: 1,
            duplicate: 2,
            duplicate_transaction: false
        }
    );
    assert_eq!(pending_ids(&db).await, vec!["$a", "$b", "$c"]);
    // Still deduplicated after being processed.
    let first = inbox.pending(1).await.expect("pending").remove(0);
    assert!(inbox.mark_done(first.seq).await.expect("done"));
    let out = inbox
        .insert_transaction("3", &events(&["$a"]))
        .await
        .expect("txn 3");
    assert_eq!(
        out,
        InsertOutcome {
            new: 0,
            duplicate: 1,
            duplicate_transaction: false
        }
    );
    // An empty transaction is fine.
    let out = inbox
        .insert_transaction("4", &[])
        .await
        .expect("txn 4");
    assert_eq!(out, InsertOutcome::default());
}

async fn inbox_txn_keys(db: TestDb) {
    use crate::store::transaction_key;
    let inbox = db.store.inbox();
    let t0 = 1_000_000;
    let first = transaction_key("7", b"body one");
    let out = inbox.insert_transaction_at(&first, &events(&["$a"]), t0).await.expect("first");
    assert_eq!(out.new, 1);
    // A retry (same ID, same body) is a duplicate: nothing is stored.
    let out = inbox.insert_transaction_at(&first, &events(&["$a"]), t0 + 10_000).await.expect("retry");
    assert_eq!(out, InsertOutcome { new: 0, duplicate: 1, duplicate_transaction: true });
    // The same ID with another body (the homeserver restarted its counter) is new, however
    // soon it comes: nothing of it is lost.
    let reused = transaction_key("7", b"body two");
    assert_ne!(first, reused);
    let out = inbox.insert_transaction_at(&reused, &events(&["$b"]), t0 + 1).await.expect("reused id");
    assert_eq!(out, InsertOutcome { new: 1, duplicate: 0, duplicate_transaction: false });
    assert_eq!(pending_ids(&db).await, vec!["$a", "$b"]);
    assert!(inbox.seen_transaction(&reused).await.expect("seen"));
    assert!(!inbox.seen_transaction(&transaction_key("7", b"body three")).await.expect("not seen"));

    // Old keys are pruned by age.
    assert_eq!(inbox.prune_transactions(t0 + 5).await.expect("prune"), 2);
    assert!(!inbox.seen_transaction(&first).await.expect("pruned"));
}

async fn remote_pending_in_order_per_portal(db: TestDb) {
    let store = db.store.remote_pending();
    let a = PortalKey { remote_id: "chat-a".into(), receiver: String::new() };
    let b = PortalKey { remote_id: "chat-b".into(), receiver: "login1".into() };
    assert_eq!(store.first(&a).await.expect("empty"), None);
    store.push(&a, "login1", "{\"n\":1}").await.expect("push");
    store.push(&b, "login1", "{\"n\":2}").await.expect("push");
    store.push(&a, "login2", "{\"n\":3}").await.expect("push");
    assert_eq!(store.count().await.expect("count"), 3);
    let mut portals = store.portals().await.expect("portals");
    portals.sort_by(|x, y| x.remote_id.cmp(&y.remote_id));
    assert_eq!(portals, vec![a.clone(), b.clone()]);
    let first = store.first(&a).await.expect("first").expect("some");
    assert_eq!((first.login_id.as_str(), first.event.as_str()), ("login1", "{\"n\":1}"));
    store.remove(first.seq).await.expect("remove");
    let next = store.first(&a).await.expect("next").expect("some");
    assert_eq!((next.login_id.as_str(), next.event.as_str()), ("login2", "{\"n\":3}"));
    store.remove(next.seq).await.expect("remove");
    assert_eq!(store.first(&a).await.expect("drained"), None);
    assert_eq!(store.count().await.expect("count"), 1);
}

async fn inbox_done_rows_keep_no_content(db: TestDb) {
    let inbox = db.store.inbox();
    let secret = r#"{"content":{"body":"my-secret-token"}}"#;
    inbox.insert_transaction("1", &[("$s".to_owned(), secret.to_owned()), ("$t".to_owned(), "{}".to_owned())]).await.expect("txn");
    let all = inbox.pending(10).await.expect("pending");
    assert_eq!(all[0].event, secret);
    assert!(inbox.mark_done(all[0].seq).await.expect("done"));
    // The worker reads on after what it dispatched.
    let after = inbox.pending_after(all[0].seq, 10).await.expect("after");
    assert_eq!(after.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), vec!["$t"]);
    let row = sqlx::query("SELECT event FROM as_inbox WHERE event_id = '$s'").fetch_one(&db.store.pool).await.expect("row");
    let kept: String = sqlx::Row::try_get(&row, "event").expect("event");
    assert!(kept.is_empty(), "a handled event's content is forgotten: {kept}");
    // Still deduplicated by its ID.
    assert_eq!(inbox.insert_transaction("2", &events(&["$s"])).await.expect("dup").duplicate, 1);
}

async fn inbox_pending_order_and_done(db: TestDb) {
    let inbox = db.store.inbox();
    inbox
        .insert_transaction("1", &events(&["$z", "$y"]))
        .await
        .expect("txn 1");
    inbox
        .insert_transaction("2", &events(&["$x"]))
        .await
        .expect("txn 2");
    let all = inbox.pending(10).await.expect("pending");
    let ids: Vec<_> = all.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, vec!["$z", "$y", "$x"], "arrival order, not ID order");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[2].txn_id, "2");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&all[0].event).expect("json")["event_id"],
        "$z"
    );
    assert_eq!(inbox.pending(2).await.expect("limited").len(), 2);
    assert_eq!(inbox.pending_count().await.expect("count"), 3);

    assert!(inbox.mark_done(all[1].seq).await.expect("done"));
    assert!(!inbox.mark_done(all[1].seq).await.expect("done twice"));
    assert!(!inbox.mark_done(-1).await.expect("unknown"));
    assert_eq!(pending_ids(&db).await, vec!["$z", "$x"]);
    assert_eq!(inbox.pending_count().await.expect("count"), 2);

    // Pruning removes processed rows only.
    assert_eq!(inbox.prune_done(now_ms() + 60_000).await.expect("prune"), 1);
    assert_eq!(pending_ids(&db).await, vec!["$z", "$x"]);
    assert_eq!(inbox.prune_done(0).await.expect("prune none"), 0);
    // Once pruned, an event ID is no longer deduplicated.
    let out = inbox
        .insert_transaction("3", &events(&["$y"]))
        .await
        .expect("txn 3");
    assert_eq!(out.new, 1);
    // New rows sort after old ones.
    assert_eq!(pending_ids(&db).await, vec!["$z", "$x", "$y"]);
}

async fn inbox_concurrent_same_txn(db: TestDb) {
    let ids: Vec<String> = (0..20).map(|i| format!("$e{i}")).collect();
    let batch: Vec<_> = ids.iter().map(|id| (id.clone(), "{}".to_owned())).collect();
    let (a, b) = tokio::join!(
        db.store.inbox().insert_transaction("9", &batch),
        db.store.inbox().insert_transaction("9", &batch),
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(
        a.new + b.new,
        20,
        "each event stored exactly once: {a:?} {b:?}"
    );
    assert_eq!(db.store.inbox().pending_count().await.expect("count"), 20);
}

async fn survives_reopen(db: TestDb) {
    db.store.users().upsert(ALICE).await.expect("user");
    with_portal(&db).await;
    db.store.kv().set("k", "v").await.expect("kv");
    db.store
        .inbox()
        .insert_transaction("1", &events(&["$a"]))
        .await
        .expect("inbox");
    db.store.close().await;

    let reopened = Store::connect(&db.uri).await.expect("reopen");
    reopened.migrate().await.expect("migrate after reopen");
    assert!(reopened.users().get(ALICE).await.expect("user").is_some());
    assert!(reopened
        .portals()
        .get_by_mxid("!room1:example.org")
        .await
        .expect("portal")
        .is_some());
    assert_eq!(
        reopened.kv().get("k").await.expect("kv").as_deref(),
        Some("v")
    );
    assert_eq!(reopened.inbox().pending(10).await.expect("inbox").len(), 1);
    // The inbox still deduplicates what it had before the restart.
    let out = reopened
        .inbox()
        .insert_transaction("2", &events(&["$a"]))
        .await
        .expect("dup");
    assert_eq!(out.duplicate, 1);
    reopened.close().await;
}

// ---- backend-independent unit tests --------------------------------------------------------

#[test]
fn uri_forms() {
    let cases: &[(&str, Option<Backend>)] = &[
        ("sqlite:data/bridge.db", Some(Backend::Sqlite)),
        ("sqlite:///var/lib/bridge/bridge.db", Some(Backend::Sqlite)),
        ("sqlite://bridge.sqlite3", Some(Backend::Sqlite)),
        ("bridge.db", Some(Backend::Sqlite)),
        ("/abs/path/bridge.db", Some(Backend::Sqlite)),
        ("postgres://u:p@localhost/db", Some(Backend::Postgres)),
        (
            "postgresql://localhost/db?sslmode=disable",
            Some(Backend::Postgres),
        ),
        ("mysql://localhost/db", None),
        ("bridge.sqlite", None),
        ("sqlite::memory:", None),
        ("sqlite:", None),
        ("", None),
    ];
    for (uri, want) in cases {
        let got = normalize_uri(uri).ok().map(|(backend, _)| backend);
        assert_eq!(got, *want, "{uri}");
    }
    let (_, url) = normalize_uri("sqlite:dir with space/a#b.db").expect("valid");
    assert!(url.starts_with("sqlite:///"), "{url}");
    assert!(
        url.ends_with("dir%20with%20space/a%23b.db?mode=rwc"),
        "{url}"
    );
}

#[test]
fn errors_do_not_leak_credentials() {
    let err = normalize_uri("mysql://user:hunter2@host/db").expect_err("unsupported");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let shown = redact_uri("postgres://user:hunter2@db.example:5432/bridge?password=hunter2");
    assert_eq!(shown, "postgres://user:***@db.example:5432/bridge");
}

#[tokio::test]
async fn sqlite_creates_missing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing-dir").join("new.db");
    let store = Store::connect(path.to_str().expect("utf-8"))
        .await
        .expect("open bare path");
    store.migrate().await.expect("migrate");
    assert!(path.exists());
    assert_eq!(store.backend(), Backend::Sqlite);
    store.close().await;
}

async fn crypto_rows_batch(db: TestDb) {
    let crypto = db.store.crypto();
    assert!(crypto.list("session").await.expect("list").is_empty());
    crypto
        .apply(&[
            CryptoRow::put("account", "", "{\"pickle\":1}".to_owned()),
            CryptoRow::put("session", "b/1", "one".to_owned()),
            CryptoRow::put("session", "a/2", "two".to_owned()),
        ])
        .await
        .expect("first batch");
    // A later batch replaces, removes and adds, in order.
    crypto
        .apply(&[
            CryptoRow::put("session", "b/1", "one, ratcheted".to_owned()),
            CryptoRow::delete("session", "a/2"),
            CryptoRow::put("device", "@bob:example.org/DEV", "{}".to_owned()),
            CryptoRow::delete("device", "never-stored"),
        ])
        .await
        .expect("second batch");
    assert_eq!(
        crypto.list("session").await.expect("list"),
        vec![("b/1".to_owned(), "one, ratcheted".to_owned())]
    );
    assert_eq!(crypto.get("account", "").await.expect("get").as_deref(), Some("{\"pickle\":1}"));
    assert_eq!(crypto.get("account", "other").await.expect("get"), None);
    // What was written survives reopening the database.
    let reopened = Store::connect(&db.uri).await.expect("reopen");
    assert_eq!(reopened.crypto().list("device").await.expect("list").len(), 1);
    assert_eq!(reopened.crypto().clear().await.expect("clear"), 3);
    assert!(crypto.list("account").await.expect("list").is_empty());
}

/// The crypto store keeps the bot's device across a restart: the same identity keys, and
/// a Megolm session made before the restart still decrypts after it.
async fn crypto_machine_survives_reopen(db: TestDb) {
    use matrix_sdk_crypto::{DecryptionSettings, EncryptionSettings, OlmMachine, TrustRequirement};
    use ruma_crypto::{owned_device_id, owned_room_id, owned_user_id, serde::Raw};

    let user = owned_user_id!("@bot:example.org");
    let device = owned_device_id!("BRIDGETEST");
    let room = owned_room_id!("!room:example.org");
    let first = crate::crypto::store::BridgeCryptoStore::open(db.store.clone()).await.expect("open");
    let machine = OlmMachine::with_store(&user, &device, first, None).await.expect("machine");
    let keys = machine.identity_keys();
    let shares = machine.share_room_key(&room, std::iter::empty(), EncryptionSettings::default()).await.expect("share");
    assert!(shares.is_empty(), "nobody else to share with");
    let content = Raw::from_json(serde_json::value::to_raw_value(&json!({"msgtype": "m.text", "body": "before the restart"})).expect("raw"));
    let encrypted = machine.encrypt_room_event_raw(&room, "m.room.message", &content).await.expect("encrypt");
    drop(machine);

    let reopened = Store::connect(&db.uri).await.expect("reopen");
    let second = crate::crypto::store::BridgeCryptoStore::open(reopened).await.expect("open again");
    let machine = OlmMachine::with_store(&user, &device, second, None).await.expect("machine again");
    assert_eq!(machine.identity_keys(), keys, "same device keys after a restart");
    let event = json!({
        "type": "m.room.encrypted",
        "content": serde_json::from_str::<serde_json::Value>(encrypted.content.json().get()).expect("content"),
        "sender": user.as_str(),
        "event_id": "$one:example.org",
        "origin_server_ts": 1,
        "room_id": room.as_str(),
    });
    let raw = Raw::from_json(serde_json::value::to_raw_value(&event).expect("raw"));
    let settings = DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted };
    let decrypted = machine.decrypt_room_event(&raw, &room, &settings).await.expect("the session survived");
    let plain: serde_json::Value = serde_json::from_str(decrypted.event.json().get()).expect("json");
    assert_eq!(plain["content"]["body"], "before the restart");
}
