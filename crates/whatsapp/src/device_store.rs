//! [`DeviceStore`]: whatsapp-rust's storage traits (`wacore::store::traits`) over the core's
//! per-login [`LoginStore`], so a linked device — its Signal identity, prekeys, sessions,
//! sender keys, app-state keys and versions, LID mappings and device lists — lives in the
//! bridge's own database (SQLite or PostgreSQL) and a restart reconnects without pairing.
//!
//! Each record is one JSON value under a key of its own (`session/<address>`,
//! `prekey/<id>`, …; bytes as base64), and so are decrypted messages not yet bridged
//! (`inbound/<chat>/<sender>/<id>`, whatsapp-rust's pending-inbound buffer: a message
//! WhatsApp redelivers after a crash is replayed from it). What only matters within one
//! run (base keys of retried messages, sent messages kept for retries, message secrets,
//! group metadata) stays in whatsapp-rust's in-memory backend.
//!
//! During pairing there is no login yet: the store then lives in memory
//! ([`DeviceStore::in_memory`]) and is handed over whole as the login's seed
//! ([`DeviceStore::export`], [`DeviceStore::import`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use bridge_core::network::{LoginId, LoginStore, NetworkError};
use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::error::{Result, StoreError};
use wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore as WaDeviceStore,
    LidPnMappingEntry, MsgSecretEntry, MsgSecretStore, ProtocolStore, SignalStore, TcTokenEntry,
};
use wacore::store::{Device, InMemoryBackend};

/// The key prefix of everything this module stores in a login's [`LoginStore`].
const PREFIX: &str = "wa/";

/// A linked device's storage for whatsapp-rust. Cheap to clone.
#[derive(Clone)]
pub struct DeviceStore {
    kv: LoginStore,
    volatile: Arc<InMemoryBackend>,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore").finish_non_exhaustive()
    }
}

/// A stored prekey and whether the server has it.
#[derive(Serialize, Deserialize)]
struct PreKey {
    record: String,
    uploaded: bool,
}

impl DeviceStore {
    /// The device store of a login, in the login's own store.
    pub fn new(kv: LoginStore) -> Self {
        Self {
            kv,
            volatile: Arc::new(InMemoryBackend::new()),
        }
    }

    /// A store that lives in memory (a pairing in progress, tests).
    pub fn in_memory() -> Self {
        Self::new(LoginStore::in_memory(&LoginId::from("pairing".to_owned())))
    }

    /// Whether a device was ever stored here.
    pub async fn has_device(&self) -> std::result::Result<bool, NetworkError> {
        Ok(self
            .kv
            .get::<serde_json::Value>(&format!("{PREFIX}device"))
            .await?
            .is_some())
    }

    /// Every record, for handing a freshly paired device over to its login.
    pub async fn export(
        &self,
    ) -> std::result::Result<BTreeMap<String, serde_json::Value>, NetworkError> {
        Ok(self
            .kv
            .list::<serde_json::Value>(PREFIX)
            .await?
            .into_iter()
            .collect())
    }

    /// Writes records from [`DeviceStore::export`].
    pub async fn import(
        &self,
        records: &BTreeMap<String, serde_json::Value>,
    ) -> std::result::Result<(), NetworkError> {
        for (key, value) in records {
            if key.starts_with(PREFIX) {
                self.kv.set(key, value).await?;
            }
        }
        Ok(())
    }

    /// Removes every record (the device was unlinked).
    pub async fn clear(&self) -> std::result::Result<(), NetworkError> {
        for (key, _) in self.kv.list::<serde_json::Value>(PREFIX).await? {
            self.kv.delete(&key).await?;
        }
        Ok(())
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.kv
            .get(&format!("{PREFIX}{key}"))
            .await
            .map_err(database)
    }

    async fn set<T: Serialize + Sync>(&self, key: &str, value: &T) -> Result<()> {
        self.kv
            .set(&format!("{PREFIX}{key}"), value)
            .await
            .map_err(database)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.kv
            .delete(&format!("{PREFIX}{key}"))
            .await
            .map(|_| ())
            .map_err(database)
    }

    /// `(key without `prefix`, value)` of every record under `prefix`.
    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>> {
        let full = format!("{PREFIX}{prefix}");
        let rows = self.kv.list::<T>(&full).await.map_err(database)?;
        Ok(rows
            .into_iter()
            .map(|(key, value)| (key[full.len()..].to_owned(), value))
            .collect())
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get::<String>(key)
            .await?
            .map(|text| decode(&text))
            .transpose()
    }

    async fn set_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.set(key, &encode(bytes)).await
    }
}

fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| StoreError::Serialization(Box::new(e)))
}

fn database(e: NetworkError) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// A prekey's key: zero-padded so that keys sort by ID.
fn prekey_key(id: u32) -> String {
    format!("prekey/{id:010}")
}

fn signed_prekey_key(id: u32) -> String {
    format!("signed-prekey/{id:010}")
}

fn parse_id(key: &str) -> Option<u32> {
    key.parse().ok()
}

#[async_trait]
impl SignalStore for DeviceStore {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.set_bytes(&format!("identity/{address}"), &key).await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        let Some(bytes) = self.get_bytes(&format!("identity/{address}")).await? else {
            return Ok(None);
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            StoreError::Validation(format!("the identity of {address} is not 32 bytes"))
        })?;
        Ok(Some(key))
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.delete(&format!("identity/{address}")).await
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self
            .get_bytes(&format!("session/{address}"))
            .await?
            .map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.set_bytes(&format!("session/{address}"), session).await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.delete(&format!("session/{address}")).await
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.set(
            &prekey_key(id),
            &PreKey {
                record: encode(record),
                uploaded,
            },
        )
        .await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        let Some(prekey) = self.get::<PreKey>(&prekey_key(id)).await? else {
            return Ok(None);
        };
        Ok(Some(Bytes::from(decode(&prekey.record)?)))
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        for &id in ids {
            // Never resurrects a prekey that was used and removed meanwhile.
            if let Some(mut prekey) = self.get::<PreKey>(&prekey_key(id)).await? {
                prekey.uploaded = true;
                self.set(&prekey_key(id), &prekey).await?;
            }
        }
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.delete(&prekey_key(id)).await
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let keys = self.list::<serde_json::Value>("prekey/").await?;
        Ok(keys
            .iter()
            .filter_map(|(key, _)| parse_id(key))
            .max()
            .unwrap_or(0))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.set_bytes(&signed_prekey_key(id), record).await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.get_bytes(&signed_prekey_key(id)).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let rows = self.list::<String>("signed-prekey/").await?;
        rows.into_iter()
            .filter_map(|(key, text)| {
                parse_id(&key).map(|id| decode(&text).map(|bytes| (id, bytes)))
            })
            .collect()
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.delete(&signed_prekey_key(id)).await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.set_bytes(&format!("sender-key/{address}"), record)
            .await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.get_bytes(&format!("sender-key/{address}")).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.delete(&format!("sender-key/{address}")).await
    }
}

/// A hex name for binary key IDs and MACs in keys.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl AppSyncStore for DeviceStore {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.get(&format!("sync-key/{}", hex(key_id))).await
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.set(&format!("sync-key/{}", hex(key_id)), &key).await?;
        self.set_bytes("latest-sync-key", key_id).await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        Ok(self
            .get(&format!("version/{name}"))
            .await?
            .unwrap_or_default())
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.set(&format!("version/{name}"), &state).await
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        _version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        for mutation in mutations {
            self.set_bytes(
                &format!("mac/{name}/{}", hex(&mutation.index_mac)),
                &mutation.value_mac,
            )
            .await?;
        }
        Ok(())
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_bytes(&format!("mac/{name}/{}", hex(index_mac)))
            .await
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        for index_mac in index_macs {
            self.delete(&format!("mac/{name}/{}", hex(index_mac)))
                .await?;
        }
        Ok(())
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        for (key, _) in self
            .list::<serde_json::Value>(&format!("mac/{name}/"))
            .await?
        {
            self.delete(&format!("mac/{name}/{key}")).await?;
        }
        Ok(())
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        self.get_bytes("latest-sync-key").await
    }
}

#[async_trait]
impl ProtocolStore for DeviceStore {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        self.list::<bool>(&format!("skd/{group_jid}/")).await
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        for (device, has_key) in entries {
            self.set(&format!("skd/{group_jid}/{device}"), has_key)
                .await?;
        }
        Ok(())
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        for (device, _) in self.get_sender_key_devices(group_jid).await? {
            self.delete(&format!("skd/{group_jid}/{device}")).await?;
        }
        Ok(())
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        for (key, _) in self.list::<bool>("skd/").await? {
            if device_jids
                .iter()
                .any(|device| key.ends_with(&format!("/{device}")))
            {
                self.delete(&format!("skd/{key}")).await?;
            }
        }
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        for (key, _) in self.list::<bool>("skd/").await? {
            self.delete(&format!("skd/{key}")).await?;
        }
        Ok(())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.get(&format!("lid/{lid}")).await
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let Some(lid) = self.get::<String>(&format!("pn/{phone}")).await? else {
            return Ok(None);
        };
        self.get_lid_mapping(&lid).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.set(&format!("lid/{}", entry.lid), entry).await?;
        self.set(&format!("pn/{}", entry.phone_number), &entry.lid)
            .await
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        Ok(self
            .list::<LidPnMappingEntry>("lid/")
            .await?
            .into_iter()
            .map(|(_, entry)| entry)
            .collect())
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.volatile
            .save_base_key(address, message_id, base_key)
            .await
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        self.volatile
            .has_same_base_key(address, message_id, current_base_key)
            .await
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.volatile.delete_base_key(address, message_id).await
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.set(&format!("devices/{}", record.user), &record).await
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.get(&format!("devices/{user}")).await
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.delete(&format!("devices/{user}")).await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.volatile.get_group_metadata(group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.volatile.put_group_metadata(group_jid, blob).await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.volatile.delete_group_metadata(group_jid).await
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.get(&format!("tc/{jid}")).await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.set(&format!("tc/{jid}"), entry).await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.delete(&format!("tc/{jid}")).await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        Ok(self
            .list::<serde_json::Value>("tc/")
            .await?
            .into_iter()
            .map(|(jid, _)| jid)
            .collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let mut deleted = 0;
        for (jid, entry) in self.list::<TcTokenEntry>("tc/").await? {
            let token_expired = entry.token_timestamp < token_cutoff;
            let sender_expired = entry.sender_timestamp.is_none_or(|t| t < sender_cutoff);
            if token_expired && sender_expired {
                self.delete(&format!("tc/{jid}")).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.volatile
            .store_sent_message(chat_jid, message_id, payload)
            .await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        self.volatile.take_sent_message(chat_jid, message_id).await
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.volatile
            .delete_expired_sent_messages(cutoff_timestamp)
            .await
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        let row = Inbound {
            message: encode(message),
            at: crate::handle_remote::now_ms() / 1000,
        };
        self.set(&inbound_key(chat, sender, id), &row).await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.get::<Inbound>(&inbound_key(chat, sender, id))
            .await?
            .map(|row| decode(&row.message))
            .transpose()
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete(&inbound_key(chat, sender, id)).await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        let mut deleted = 0;
        for (key, row) in self.list::<Inbound>("inbound/").await? {
            if row.at < cutoff_timestamp {
                self.delete(&format!("inbound/{key}")).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// A decrypted message kept until the bridge applied it (whatsapp-rust's durability
/// hook), so that WhatsApp's redelivery after a crash can be replayed.
#[derive(Serialize, Deserialize)]
struct Inbound {
    /// The encoded message, base64.
    message: String,
    /// When it was kept (seconds since the epoch).
    at: i64,
}

fn inbound_key(chat: &str, sender: &str, id: &str) -> String {
    format!("inbound/{chat}/{sender}/{id}")
}

#[async_trait]
impl MsgSecretStore for DeviceStore {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        self.volatile.put_msg_secrets(entries).await
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.volatile.get_msg_secret(chat, sender, msg_id).await
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        self.volatile
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.volatile
            .delete_expired_msg_secrets(cutoff_timestamp)
            .await
    }
}

#[async_trait]
impl WaDeviceStore for DeviceStore {
    async fn save(&self, device: &Device) -> Result<()> {
        self.set("device", device).await
    }

    async fn load(&self) -> Result<Option<Device>> {
        self.get("device").await
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self.get::<serde_json::Value>("device").await?.is_some())
    }

    async fn create(&self) -> Result<i32> {
        if !self.exists().await? {
            self.save(&Device::new()).await?;
        }
        Ok(1)
    }
}

#[cfg(test)]
mod tests;
