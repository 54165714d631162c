//! The schema migration runner and the embedded per-dialect migrations.
//!
//! Migrations live in `crates/bridge-core/migrations/{sqlite,postgres}/NNNN_name.sql` and
//! are compiled in with `include_str!`. Applied versions are recorded in the
//! `store_migrations` table; each pending migration runs, with its version row, in one
//! transaction, so a failed migration leaves no trace and a second run does nothing.

use sqlx::AnyPool;
use sqlx::Row;

use super::{now_ms, Backend, StoreError};

/// One embedded schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version number (the file's `NNNN` prefix); strictly increasing.
    pub version: i64,
    /// The file's name after the prefix.
    pub name: &'static str,
    /// The SQL, possibly several statements.
    pub sql: &'static str,
}

/// The SQLite migrations, in order.
pub(crate) const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../../migrations/sqlite/0001_initial.sql") },
    Migration { version: 2, name: "remote_pending", sql: include_str!("../../migrations/sqlite/0002_remote_pending.sql") },
    Migration { version: 3, name: "crypto", sql: include_str!("../../migrations/sqlite/0003_crypto.sql") },
];

/// The PostgreSQL migrations, in order (same versions and meaning as [`SQLITE`]).
pub(crate) const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../../migrations/postgres/0001_initial.sql") },
    Migration { version: 2, name: "remote_pending", sql: include_str!("../../migrations/postgres/0002_remote_pending.sql") },
    Migration { version: 3, name: "crypto", sql: include_str!("../../migrations/postgres/0003_crypto.sql") },
];

/// The migrations for one backend.
pub(crate) fn migrations(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// An arbitrary constant naming the advisory lock that serialises migrating processes on
/// PostgreSQL.
const PG_MIGRATION_LOCK: i64 = 0x6272_6964_6765; // "bridge"

/// Applies every migration for `backend` that the database has not recorded.
pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS store_migrations (\
             version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, \
             applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;

    let list = migrations(backend);
    let known = list.last().map_or(0, |m| m.version);
    let found = current_version(pool).await?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }

    for migration in list.iter().filter(|m| m.version > found) {
        let fail = |source: sqlx::Error| StoreError::Migrate {
            version: migration.version,
            name: migration.name,
            source,
        };
        let mut tx = pool.begin().await.map_err(fail)?;
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        // Another process may have applied it while we waited.
        let already: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM store_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get("n"))
                .map_err(fail)?;
        if already > 0 {
            tx.rollback().await.map_err(fail)?;
            continue;
        }
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query("INSERT INTO store_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    Ok(())
}

/// The highest migration version recorded, or 0 for a fresh database.
pub(crate) async fn current_version(pool: &AnyPool) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT MAX(version) AS v FROM store_migrations")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<Option<i64>, _>("v")?.unwrap_or(0))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn versions_strictly_increase_and_match_across_dialects() {
        for list in [SQLITE, POSTGRES] {
            let mut last = 0;
            for m in list {
                assert!(m.version > last, "migration {} out of order", m.version);
                last = m.version;
            }
        }
        let sqlite: Vec<_> = SQLITE.iter().map(|m| (m.version, m.name)).collect();
        let postgres: Vec<_> = POSTGRES.iter().map(|m| (m.version, m.name)).collect();
        assert_eq!(sqlite, postgres);
    }
}
