//! Persistent storage: one [`Store`] over SQLite or PostgreSQL, one file per table.
//!
//! The store owns the database connection pool, the embedded per-dialect migrations
//! ([`Store::migrate`]) and a typed accessor per table: [`Store::users`],
//! [`Store::user_logins`], [`Store::portals`], [`Store::ghosts`], [`Store::messages`],
//! [`Store::reactions`], [`Store::kv`], [`Store::inbox`] (the appservice's durable
//! transaction queue), [`Store::remote_pending`] and [`Store::crypto`].
//!
//! Both backends go through sqlx's `Any` driver with runtime queries and `$1`
//! placeholders, so every query is written once. Conventions shared by all tables:
//! timestamps are `i64` milliseconds since the Unix epoch, JSON values are stored as
//! TEXT, flags are integers 0/1 (never `BOOLEAN`, which the two dialects decode
//! differently), and Matrix IDs are stored as their string form (the layers above
//! convert to and from ruma types).

mod crypto;
mod ghosts;
mod inbox;
mod remote_pending;
mod kv;
mod messages;
mod migrate;
mod portals;
mod reactions;
mod user_logins;
mod users;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection};

pub use crypto::{Crypto, CryptoRow};
pub use ghosts::{Ghost, Ghosts};
pub use inbox::{transaction_key, Inbox, InboxEntry, InsertOutcome};
pub use kv::Kv;
pub use messages::{Message, Messages};
pub use migrate::Migration;
pub use portals::{Portal, PortalKey, PortalKind, Portals};
pub use reactions::{Reaction, Reactions};
pub use remote_pending::{PendingRemote, RemotePending};
pub use user_logins::{UserLogin, UserLogins};
pub use users::{User, Users};

/// An error from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection URI has a scheme or form the store does not understand.
    #[error("unsupported database uri (expected sqlite:PATH, a .db path or postgres://…): {0}")]
    InvalidUri(String),
    /// Opening the database failed.
    #[error("cannot connect to the {backend:?} database")]
    Connect {
        /// Which backend was being opened.
        backend: Backend,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying a schema migration failed; the migration's transaction was rolled back.
    #[error("migration {version} ({name}) failed")]
    Migrate {
        /// The migration's version number.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer build than this one.
    #[error("database schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew {
        /// The highest version recorded in the database.
        found: i64,
        /// The highest version this build embeds.
        known: i64,
    },
    /// A write broke a uniqueness constraint (for example a second mapping for one event).
    #[error("conflicting row: {0}")]
    Conflict(String),
    /// A write referenced a row that does not exist (for example a message in an unknown portal).
    #[error("referenced row does not exist: {0}")]
    MissingReference(String),
    /// Any other database error.
    #[error("database query failed")]
    Query(#[source] sqlx::Error),
    /// A stored JSON value could not be encoded or decoded.
    #[error("invalid stored json")]
    Json(#[from] serde_json::Error),
    /// A stored value is not one this build understands.
    #[error("invalid stored value in {column}: {value:?}")]
    Decode {
        /// The column holding the value.
        column: &'static str,
        /// The value found.
        value: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.message().to_owned());
            }
            if db.is_foreign_key_violation() {
                return StoreError::MissingReference(db.message().to_owned());
            }
        }
        StoreError::Query(err)
    }
}

/// Which database the store is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (WAL journal, 5 s busy timeout, foreign keys on).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The bridge's database: a cheap-to-clone handle over a connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Per-connection SQLite settings: wait up to 5 s for a lock held by another connection,
/// enforce foreign keys, and sync less often (safe with the WAL journal).
const SQLITE_CONNECTION_PRAGMAS: &str =
    "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";
/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Opens the database named by `uri`.
    ///
    /// Accepted forms: `sqlite:PATH`, `sqlite://PATH` or a bare path ending in `.db`
    /// (SQLite; the file is created if missing, switched to the WAL journal, with a 5 s
    /// busy timeout and foreign keys enforced), and `postgres://…` / `postgresql://…`.
    /// Does not migrate: call [`Store::migrate`] next.
    pub async fn connect(uri: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalize_uri(uri)?;
        let max_connections = match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 10,
        };
        // One direct connection first: a pool only reports "timed out" when the server is
        // unreachable, while this surfaces the driver's reason (refused, bad password…).
        let probe = AnyConnection::connect(&url)
            .await
            .map_err(|source| StoreError::Connect { backend, source })?;
        // Closing the probe is best effort; the pool opens its own connections.
        let _ = probe.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::raw_sql(SQLITE_CONNECTION_PRAGMAS)
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect { backend, source })?;
        if backend == Backend::Sqlite {
            // WAL is persistent in the file; setting it once per open is enough.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|source| StoreError::Connect { backend, source })?;
        }
        tracing::debug!(?backend, "database opened");
        Ok(Store { pool, backend })
    }

    /// Applies every embedded migration not yet recorded in the database, each in its own
    /// transaction. Safe to call on every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate::run(&self.pool, self.backend).await
    }

    /// Which database this store is connected to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every pooled connection; later calls on clones of this store fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The `users` table.
    pub fn users(&self) -> Users<'_> {
        Users::new(&self.pool)
    }

    /// The `user_logins` table.
    pub fn user_logins(&self) -> UserLogins<'_> {
        UserLogins::new(&self.pool)
    }

    /// The `portals` table.
    pub fn portals(&self) -> Portals<'_> {
        Portals::new(&self.pool)
    }

    /// The `ghosts` table.
    pub fn ghosts(&self) -> Ghosts<'_> {
        Ghosts::new(&self.pool)
    }

    /// The `messages` table (remote message part ↔ Matrix event).
    pub fn messages(&self) -> Messages<'_> {
        Messages::new(&self.pool)
    }

    /// The `reactions` table.
    pub fn reactions(&self) -> Reactions<'_> {
        Reactions::new(&self.pool)
    }

    /// The `kv` table of small named values.
    pub fn kv(&self) -> Kv<'_> {
        Kv::new(&self.pool)
    }

    /// The appservice inbox (`as_inbox` and `as_txn`).
    pub fn inbox(&self) -> Inbox<'_> {
        Inbox::new(&self.pool)
    }

    /// Remote events parked while the homeserver was unreachable (`remote_pending`).
    pub fn remote_pending(&self) -> RemotePending<'_> {
        RemotePending::new(&self.pool)
    }

    /// The bot's end-to-end encryption state (`crypto_store`).
    pub fn crypto(&self) -> Crypto<'_> {
        Crypto::new(&self.pool)
    }
}

/// Turns the accepted URI forms into a URL sqlx's `Any` driver understands.
fn normalize_uri(uri: &str) -> Result<(Backend, String), StoreError> {
    if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        return Ok((Backend::Postgres, uri.to_owned()));
    }
    let path = if let Some(rest) = uri.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = uri.strip_prefix("sqlite:") {
        rest
    } else if uri.ends_with(".db") && !uri.contains("://") {
        uri
    } else {
        return Err(StoreError::InvalidUri(redact_uri(uri)));
    };
    // Drop any query the caller gave; the store chooses the open mode itself.
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::InvalidUri(redact_uri(uri)));
    }
    let absolute = std::path::absolute(Path::new(path))
        .map_err(|_| StoreError::InvalidUri(redact_uri(uri)))?;
    if let Some(parent) = absolute.parent() {
        // Best effort: if this fails, opening the file reports why.
        let _ = std::fs::create_dir_all(parent);
    }
    let mut encoded = String::new();
    for ch in absolute.to_string_lossy().chars() {
        match ch {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            ' ' => encoded.push_str("%20"),
            other => encoded.push(other),
        }
    }
    // `mode=rwc` creates the file if it is missing.
    Ok((Backend::Sqlite, format!("sqlite://{encoded}?mode=rwc")))
}

/// A URI safe to show in an error or a log line: no password, no query.
fn redact_uri(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) if url.scheme() != "sqlite" => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.set_query(None);
            url.to_string()
        }
        _ => uri
            .split('?')
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Encodes a JSON value for a TEXT column.
fn json_text(value: &Value) -> Result<String, StoreError> {
    Ok(serde_json::to_string(value)?)
}

/// Decodes a TEXT column holding JSON.
fn parse_json(text: &str) -> Result<Value, StoreError> {
    Ok(serde_json::from_str(text)?)
}
