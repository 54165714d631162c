//! The device store's conformance tests: each runs on SQLite and on PostgreSQL (the server
//! at `BRIDGE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`, in a
//! schema of its own; skipped with a loud line only when `BRIDGE_TEST_SKIP_POSTGRES=1` and
//! not in CI), through the core's database-backed `LoginStore`.

use std::io::Write as _;

use bridge_core::store::Store;
use sqlx::Connection as _;
use wacore::store::traits::{DeviceInfo, DeviceStore as _};

use super::*;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A migrated database and what tears it down.
struct Db {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!(
        "sqlite:{}",
        dir.path().join("bridge.db").display()
    ))
    .await
    .expect("open sqlite");
    store.migrate().await.expect("migrate");
    Db {
        store,
        _dir: Some(dir),
        schema: None,
    }
}

async fn postgres(test: &str) -> Option<Db> {
    let base = std::env::var("BRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    sqlx::any::install_default_drivers();
    let mut admin = match sqlx::AnyConnection::connect(&base).await {
        Ok(admin) => admin,
        Err(error) => {
            let why = format!("PostgreSQL is unreachable: {error}");
            if std::env::var_os("CI").is_none()
                && std::env::var("BRIDGE_TEST_SKIP_POSTGRES").as_deref() == Ok("1")
            {
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
    let schema = format!("wa_{:016x}", rand::random::<u64>());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = Store::connect(&format!("{base}{sep}options[search_path]={schema}"))
        .await
        .expect("open postgres");
    store.migrate().await.expect("migrate");
    Some(Db {
        store,
        _dir: None,
        schema: Some((base, schema)),
    })
}

impl Db {
    fn device(&self, login: &str) -> DeviceStore {
        DeviceStore::new(LoginStore::database(
            self.store.clone(),
            &LoginId::from(login.to_owned()),
        ))
    }

    async fn close(self) {
        self.store.close().await;
        if let Some((base, schema)) = self.schema {
            let mut admin = sqlx::AnyConnection::connect(&base)
                .await
                .expect("reconnect");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut admin)
                .await
                .expect("drop schema");
        }
    }
}

/// Runs `body` on both backends.
async fn on_both<F, Fut>(test: &str, body: F)
where
    F: Fn(DeviceStore, DeviceStore) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = sqlite().await;
    body(db.device("15550001"), db.device("15550001/x")).await;
    db.close().await;
    if let Some(db) = postgres(test).await {
        body(db.device("15550001"), db.device("15550001/x")).await;
        db.close().await;
    }
}

#[tokio::test]
async fn signal_records_round_trip_and_stay_with_their_login() {
    on_both("signal_records", |store, other| async move {
        store
            .put_identity("alice.0:1", [7; 32])
            .await
            .expect("identity");
        assert_eq!(
            store.load_identity("alice.0:1").await.expect("load"),
            Some([7; 32])
        );
        assert_eq!(other.load_identity("alice.0:1").await.expect("other"), None);
        store
            .put_session("alice.0:1", b"session")
            .await
            .expect("session");
        assert!(store.has_session("alice.0:1").await.expect("has"));
        assert_eq!(
            store
                .get_session("alice.0:1")
                .await
                .expect("get")
                .as_deref(),
            Some(&b"session"[..])
        );
        store.delete_session("alice.0:1").await.expect("delete");
        assert!(!store.has_session("alice.0:1").await.expect("has"));

        store
            .store_prekeys_batch(
                &[
                    (3, Bytes::from_static(b"three")),
                    (12, Bytes::from_static(b"twelve")),
                ],
                false,
            )
            .await
            .expect("prekeys");
        assert_eq!(store.get_max_prekey_id().await.expect("max"), 12);
        assert_eq!(
            store.load_prekey(3).await.expect("load").as_deref(),
            Some(&b"three"[..])
        );
        store.remove_prekey(12).await.expect("remove");
        store.mark_prekeys_uploaded(&[3, 12]).await.expect("mark");
        assert_eq!(
            store.load_prekey(12).await.expect("removed"),
            None,
            "marking never resurrects a prekey"
        );
        assert_eq!(store.get_max_prekey_id().await.expect("max"), 3);

        store
            .store_signed_prekey(1, b"signed")
            .await
            .expect("signed");
        assert_eq!(
            store.load_all_signed_prekeys().await.expect("all"),
            vec![(1, b"signed".to_vec())]
        );
        store
            .put_sender_key("group:alice", b"sk")
            .await
            .expect("sender key");
        assert_eq!(
            store.get_sender_key("group:alice").await.expect("get"),
            Some(b"sk".to_vec())
        );
        assert_eq!(
            other.get_sender_key("group:alice").await.expect("other"),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn app_state_and_protocol_records_round_trip() {
    on_both("app_state_records", |store, _other| async move {
        let key = AppStateSyncKey {
            key_data: vec![1, 2],
            fingerprint: vec![3],
            timestamp: 9,
        };
        store
            .set_sync_key(&[0xab, 0x01], key)
            .await
            .expect("sync key");
        assert_eq!(
            store
                .get_sync_key(&[0xab, 0x01])
                .await
                .expect("get")
                .map(|k| k.key_data),
            Some(vec![1, 2])
        );
        assert_eq!(
            store.get_latest_sync_key_id().await.expect("latest"),
            Some(vec![0xab, 0x01])
        );
        let mut version = store.get_version("regular").await.expect("default version");
        assert_eq!(version.version, 0);
        version.version = 5;
        store
            .set_version("regular", version)
            .await
            .expect("set version");
        assert_eq!(
            store.get_version("regular").await.expect("version").version,
            5
        );
        let mac = AppStateMutationMAC {
            index_mac: vec![1; 32],
            value_mac: vec![2; 32],
        };
        store
            .put_mutation_macs("regular", 5, &[mac])
            .await
            .expect("macs");
        assert_eq!(
            store
                .get_mutation_mac("regular", &[1; 32])
                .await
                .expect("mac"),
            Some(vec![2; 32])
        );
        store.clear_mutation_macs("regular").await.expect("clear");
        assert_eq!(
            store
                .get_mutation_mac("regular", &[1; 32])
                .await
                .expect("mac"),
            None
        );

        let entry = LidPnMappingEntry {
            lid: "100200".to_owned(),
            phone_number: "15550002".to_owned(),
            created_at: 1,
            updated_at: 2,
            learning_source: "usync".to_owned(),
        };
        store.put_lid_mapping(&entry).await.expect("lid");
        assert_eq!(
            store
                .get_pn_mapping("15550002")
                .await
                .expect("pn")
                .map(|e| e.lid),
            Some("100200".to_owned())
        );
        let record = DeviceListRecord {
            user: "15550002".to_owned(),
            devices: vec![DeviceInfo::new(0, None)],
            timestamp: 1,
            phash: None,
            raw_id: None,
        };
        store.update_device_list(record).await.expect("devices");
        assert_eq!(
            store
                .get_devices("15550002")
                .await
                .expect("devices")
                .map(|r| r.devices.len()),
            Some(1)
        );
        store
            .set_sender_key_status("g1@g.us", &[("a:1@s.whatsapp.net", true)])
            .await
            .expect("skd");
        assert_eq!(
            store.get_sender_key_devices("g1@g.us").await.expect("skd"),
            vec![("a:1@s.whatsapp.net".to_owned(), true)]
        );
        store
            .put_tc_token(
                "15550002@s.whatsapp.net",
                &TcTokenEntry {
                    token: vec![1],
                    token_timestamp: 10,
                    sender_timestamp: None,
                },
            )
            .await
            .expect("tc");
        assert_eq!(
            store
                .delete_expired_tc_tokens(5, 5)
                .await
                .expect("expire none"),
            0
        );
        assert_eq!(
            store
                .delete_expired_tc_tokens(11, 11)
                .await
                .expect("expire"),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn a_device_moves_from_a_pairing_store_into_its_login() {
    on_both("device_hand_over", |store, _other| async move {
        let pairing = DeviceStore::in_memory();
        let id = pairing.create().await.expect("create");
        let mut device = pairing.load().await.expect("load").expect("a device");
        device.push_name = "Alice".to_owned();
        pairing.save(&device).await.expect("save");
        pairing
            .put_identity("bob.0:1", [1; 32])
            .await
            .expect("identity");
        assert_eq!(id, 1);

        assert!(!store.has_device().await.expect("empty"));
        store
            .import(&pairing.export().await.expect("export"))
            .await
            .expect("import");
        let loaded = store.load().await.expect("load").expect("the device");
        assert_eq!(loaded.push_name, "Alice");
        assert_eq!(
            loaded.identity_key.public_key.public_key_bytes(),
            device.identity_key.public_key.public_key_bytes()
        );
        assert_eq!(
            store.load_identity("bob.0:1").await.expect("identity"),
            Some([1; 32])
        );

        store.clear().await.expect("clear");
        assert!(!store.has_device().await.expect("cleared"));
        assert_eq!(
            store.load_identity("bob.0:1").await.expect("identity"),
            None
        );
    })
    .await;
}
