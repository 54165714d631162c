//! [`LoginStore`]: state a network keeps for one login between runs (a server's bridge mode,
//! messages waiting to be sent), beside the login's session.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Serialize};

use super::{LoginId, NetworkError};
use crate::store::Store;

/// Named JSON values owned by one login's network client, kept in the bridge's database
/// (the `kv` table, under the login's own namespace) and removed with the login.
/// Cheap to clone. Get it from [`super::EventSender::store`].
#[derive(Clone, Debug)]
pub struct LoginStore {
    prefix: String,
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Database(Store),
    Memory(Arc<Mutex<BTreeMap<String, String>>>),
}

impl LoginStore {
    /// The database-backed store of `login` (the bridge builds it; public for networks'
    /// storage conformance tests).
    pub fn database(store: Store, login: &LoginId) -> Self {
        Self { prefix: namespace(login), backend: Backend::Database(store) }
    }

    /// A store that lives only as long as the process (for tests and tools that run a
    /// client without a bridge).
    pub fn in_memory(login: &LoginId) -> Self {
        Self { prefix: namespace(login), backend: Backend::Memory(Arc::default()) }
    }

    /// The value stored under `key`, if any.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, NetworkError> {
        let name = self.name(key);
        let raw = match &self.backend {
            Backend::Database(store) => store.kv().get(&name).await.map_err(storage)?,
            Backend::Memory(map) => lock(map).get(&name).cloned(),
        };
        raw.map(|raw| decode(key, &raw)).transpose()
    }

    /// Stores `value` under `key`, replacing what was there.
    pub async fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<(), NetworkError> {
        let name = self.name(key);
        let raw = serde_json::to_string(value).map_err(|e| NetworkError::Remote(format!("could not encode the stored value {key}: {e}")))?;
        match &self.backend {
            Backend::Database(store) => store.kv().set(&name, &raw).await.map_err(storage),
            Backend::Memory(map) => {
                lock(map).insert(name, raw);
                Ok(())
            }
        }
    }

    /// Removes `key`; returns whether it was set.
    pub async fn delete(&self, key: &str) -> Result<bool, NetworkError> {
        let name = self.name(key);
        match &self.backend {
            Backend::Database(store) => store.kv().delete(&name).await.map_err(storage),
            Backend::Memory(map) => Ok(lock(map).remove(&name).is_some()),
        }
    }

    /// Every `(key, value)` whose key starts with `prefix`, sorted by key.
    pub async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, NetworkError> {
        let full = self.name(prefix);
        let rows: Vec<(String, String)> = match &self.backend {
            Backend::Database(store) => store.kv().list_prefix(&full).await.map_err(storage)?,
            Backend::Memory(map) => lock(map).range(full.clone()..).take_while(|(name, _)| name.starts_with(&full)).map(|(n, v)| (n.clone(), v.clone())).collect(),
        };
        rows.into_iter()
            .map(|(name, raw)| {
                let key = name[self.prefix.len()..].to_owned();
                let value = decode(&key, &raw)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Removes everything this login stored (when the login is deleted).
    pub(crate) async fn clear(&self) -> Result<(), NetworkError> {
        match &self.backend {
            Backend::Database(store) => store.kv().delete_prefix(&self.prefix).await.map(|_| ()).map_err(storage),
            Backend::Memory(map) => {
                lock(map).retain(|name, _| !name.starts_with(&self.prefix));
                Ok(())
            }
        }
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// The kv namespace of a login's network state. The login ID is length-prefixed so that
/// no login's namespace is a prefix of another's.
fn namespace(login: &LoginId) -> String {
    format!("network/{}:{}/", login.as_str().len(), login.as_str())
}

fn lock(map: &Mutex<BTreeMap<String, String>>) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
    map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn decode<T: DeserializeOwned>(key: &str, raw: &str) -> Result<T, NetworkError> {
    serde_json::from_str(raw).map_err(|e| NetworkError::Remote(format!("the stored value {key} is unreadable: {e}")))
}

fn storage(e: crate::store::StoreError) -> NetworkError {
    NetworkError::Remote(format!("database error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_memory_store_lists_by_prefix_and_keeps_logins_apart() {
        let a = LoginStore::in_memory(&LoginId("a".into()));
        a.set("guild/1", &"all").await.expect("set");
        a.set("guild/2", &"on-message").await.expect("set");
        a.set("other", &3).await.expect("set");
        assert_eq!(a.get::<String>("guild/1").await.expect("get").as_deref(), Some("all"));
        let listed: Vec<(String, String)> = a.list("guild/").await.expect("list");
        assert_eq!(listed, vec![("guild/1".into(), "all".into()), ("guild/2".into(), "on-message".into())]);
        assert!(a.delete("guild/1").await.expect("delete"));
        assert!(!a.delete("guild/1").await.expect("delete again"));
        // A value of another type is an error, not a panic.
        assert!(a.get::<u32>("guild/2").await.is_err());
        a.clear().await.expect("clear");
        assert_eq!(a.get::<u32>("other").await.expect("get"), None);
    }

    #[test]
    fn namespaces_never_nest() {
        let short = namespace(&LoginId("ab".into()));
        let long = namespace(&LoginId("ab/x".into()));
        assert!(!long.starts_with(&short) && !short.starts_with(&long));
    }
}
