//! A store filled as a large installation's would be, for the `--seed` bench: portals with
//! rooms, ghosts, and a message history per portal, written straight into the bridge's
//! database (the bridge is stopped) in a few large transactions.

use sqlx::{Any, Pool};

/// A PostgreSQL database of its own for one bench run, dropped afterwards.
pub struct PostgresDb {
    admin: String,
    name: String,
    url: String,
}

impl PostgresDb {
    /// Creates a fresh database on the server of `BRIDGE_TEST_POSTGRES_URL` (default the
    /// local `test` database).
    pub async fn create() -> anyhow::Result<Self> {
        let admin = bridge_tests::postgres_url().ok_or_else(|| anyhow::anyhow!("PostgreSQL is switched off (BRIDGE_TEST_SKIP_POSTGRES)"))?;
        let name = format!("bench_{}", bridge_tests::random_localpart("db").replace('-', "_"));
        let pool = pool(&admin).await?;
        // The name is ours (letters, digits, underscores), not input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await?;
        pool.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Ok(Self { admin, name, url })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database.
    pub async fn drop(self) -> anyhow::Result<()> {
        let pool = pool(&self.admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).execute(&pool).await?;
        pool.close().await;
        Ok(())
    }
}

async fn pool(url: &str) -> anyhow::Result<Pool<Any>> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await?)
}

/// Writes `latest.len()` portals (chat `s{i}`, room `!seed{i}:test.localhost`), ten ghosts
/// per portal and a hundred messages per portal, the newest of each being the chat's
/// `latest[i]` on the network, into the migrated store at `url`.
pub async fn seed_store(url: &str, latest: &[String]) -> anyhow::Result<()> {
    let pool = pool(url).await?;
    let now = bridge_core::store::now_ms();
    const BATCH: usize = 500;
    for (chunk_index, chunk) in latest.chunks(BATCH).enumerate() {
        let mut tx = pool.begin().await?;
        for (offset, newest) in chunk.iter().enumerate() {
            let i = chunk_index * BATCH + offset;
            let chat = format!("s{i}");
            sqlx::query(
                "INSERT INTO portals (remote_id, receiver, mxid, kind, name, metadata, created_at) \
                 VALUES ($1, '', $2, 'group', $3, '{}', $4)",
            )
            .bind(&chat)
            .bind(format!("!seed{i}:test.localhost"))
            .bind(&chat)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for g in 0..10 {
                sqlx::query("INSERT INTO ghosts (remote_id, name, name_set, metadata, updated_at) VALUES ($1, $2, 1, '{}', $3)")
                    .bind(format!("seed-user-{i}-{g}"))
                    .bind(format!("Seed User {i}.{g}"))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            for m in 0..100i64 {
                let remote_id = if m == 99 { newest.clone() } else { format!("seed-{i}-{m}") };
                sqlx::query(
                    "INSERT INTO messages (portal_remote_id, portal_receiver, remote_id, part_id, mxid, room_mxid, \
                     sender_remote_id, sender_mxid, sent_at, metadata) VALUES ($1, '', $2, '', $3, $4, $5, $6, $7, '{}')",
                )
                .bind(&chat)
                .bind(remote_id)
                .bind(format!("$seed-{i}-{m}"))
                .bind(format!("!seed{i}:test.localhost"))
                .bind(format!("seed-user-{i}-{}", m % 10))
                .bind(format!("@test_seed-user-{i}-{}:test.localhost", m % 10))
                .bind(now - 86_400_000 + m * 1000)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
    }
    pool.close().await;
    Ok(())
}
