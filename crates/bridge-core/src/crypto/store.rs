//! matrix-sdk-crypto's store over the bridge's database.
//!
//! [`BridgeCryptoStore`] answers every read from matrix-sdk-crypto's own in-memory store and
//! writes every change through to the `crypto_store` table before it returns, one database
//! transaction per batch; [`BridgeCryptoStore::open`] loads the table back into memory at
//! startup. What is persisted is what a restart needs to go on decrypting and encrypting:
//! the Olm account, Olm sessions, Megolm sessions received, other users' devices and
//! identities, the users whose devices are tracked, the hashes of Olm messages already
//! seen (replay protection), room settings and custom values. Outbound Megolm sessions,
//! key requests, withheld notices, backups and secrets stay in memory: after a restart the
//! bridge starts a new outbound session per room, which costs one key share.

use std::collections::HashMap;

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use matrix_sdk_common::cross_process_lock::CrossProcessLockGeneration;
use matrix_sdk_crypto::{
    olm::{
        InboundGroupSession, OlmMessageHash, OutboundGroupSession, PickledAccount, PickledInboundGroupSession,
        PickledSession, PrivateCrossSigningIdentity, SenderDataType, Session,
    },
    store::{
        types::{
            BackupKeys, Changes, DehydratedDeviceKey, PendingChanges, RoomKeyCounts, RoomKeyWithheldEntry,
            RoomPendingKeyBundleDetails, RoomSettings, StoredRoomKeyBundleData, TrackedUser,
        },
        CryptoStore, CryptoStoreError, MemoryStore,
    },
    vodozemac::Curve25519PublicKey,
    Account, DeviceData, GossipRequest, SecretInfo, UserIdentityData,
};
use ruma_crypto::{events::secret::request::SecretName, DeviceId, OwnedDeviceId, RoomId, TransactionId, UserId};
use zeroize::Zeroizing;

use crate::store::{CryptoRow, Store, StoreError};

const ACCOUNT: &str = "account";
const SESSION: &str = "session";
const INBOUND: &str = "inbound_group_session";
const DEVICE: &str = "device";
const IDENTITY: &str = "identity";
const TRACKED: &str = "tracked_user";
const HASH: &str = "message_hash";
const ROOM_SETTINGS: &str = "room_settings";
const CUSTOM: &str = "custom";

type Result<T, E = CryptoStoreError> = std::result::Result<T, E>;

fn db_error(e: StoreError) -> CryptoStoreError {
    CryptoStoreError::backend(e)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(CryptoStoreError::Serialization)
}

fn infallible<T>(result: std::result::Result<T, std::convert::Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

/// The crypto store of the bot's device; see the module documentation.
#[derive(Debug)]
pub struct BridgeCryptoStore {
    db: Store,
    memory: MemoryStore,
}

impl BridgeCryptoStore {
    /// Loads what `db` holds into a new store. Items that no longer decode (written by an
    /// incompatible version) are skipped with a warning rather than failing the start.
    pub async fn open(db: Store) -> Result<Self> {
        let memory = MemoryStore::new();
        let crypto = db.crypto();
        let account = match crypto.get(ACCOUNT, "").await.map_err(db_error)? {
            Some(text) => {
                let pickle: PickledAccount = serde_json::from_str(&text)?;
                Some(Account::from_pickle(pickle).map_err(|e| CryptoStoreError::backend(e))?)
            }
            None => None,
        };
        let mut changes = Changes::default();
        if let Some(account) = account {
            let device_keys = account.device_keys();
            infallible(memory.save_pending_changes(PendingChanges { account: Some(account) }).await);
            for (name, text) in crypto.list(SESSION).await.map_err(db_error)? {
                match serde_json::from_str::<PickledSession>(&text)
                    .map_err(|e| e.to_string())
                    .and_then(|pickle| Session::from_pickle(device_keys.clone(), pickle).map_err(|e| e.to_string()))
                {
                    Ok(session) => changes.sessions.push(session),
                    Err(e) => tracing::warn!(session = %name, error = %e, "skipping an unreadable Olm session"),
                }
            }
        }
        for (name, text) in crypto.list(INBOUND).await.map_err(db_error)? {
            match serde_json::from_str::<PickledInboundGroupSession>(&text)
                .map_err(|e| e.to_string())
                .and_then(|pickle| InboundGroupSession::from_pickle(pickle).map_err(|e| e.to_string()))
            {
                Ok(session) => changes.inbound_group_sessions.push(session),
                Err(e) => tracing::warn!(session = %name, error = %e, "skipping an unreadable Megolm session"),
            }
        }
        for (name, text) in crypto.list(DEVICE).await.map_err(db_error)? {
            match serde_json::from_str::<DeviceData>(&text) {
                Ok(device) => changes.devices.new.push(device),
                Err(e) => tracing::warn!(device = %name, error = %e, "skipping an unreadable device"),
            }
        }
        for (name, text) in crypto.list(IDENTITY).await.map_err(db_error)? {
            match serde_json::from_str::<UserIdentityData>(&text) {
                Ok(identity) => changes.identities.new.push(identity),
                Err(e) => tracing::warn!(user = %name, error = %e, "skipping an unreadable identity"),
            }
        }
        for (_, text) in crypto.list(HASH).await.map_err(db_error)? {
            if let Ok(hash) = serde_json::from_str::<OlmMessageHash>(&text) {
                changes.message_hashes.push(hash);
            }
        }
        for (room, text) in crypto.list(ROOM_SETTINGS).await.map_err(db_error)? {
            if let (Ok(room), Ok(settings)) = (ruma_crypto::OwnedRoomId::try_from(room), serde_json::from_str::<RoomSettings>(&text)) {
                changes.room_settings.insert(room, settings);
            }
        }
        infallible(memory.save_changes(changes).await);
        let tracked: Vec<(ruma_crypto::OwnedUserId, bool)> = crypto
            .list(TRACKED)
            .await
            .map_err(db_error)?
            .into_iter()
            .filter_map(|(user, dirty)| Some((ruma_crypto::OwnedUserId::try_from(user).ok()?, dirty == "dirty")))
            .collect();
        let tracked: Vec<(&UserId, bool)> = tracked.iter().map(|(user, dirty)| (&**user, *dirty)).collect();
        infallible(memory.save_tracked_users(&tracked).await);
        for (key, text) in crypto.list(CUSTOM).await.map_err(db_error)? {
            if let Ok(value) = BASE64.decode(&text) {
                infallible(memory.set_custom_value(&key, value).await);
            }
        }
        Ok(Self { db, memory })
    }

    async fn write(&self, rows: Vec<CryptoRow>) -> Result<()> {
        self.db.crypto().apply(&rows).await.map_err(db_error)
    }

    async fn inbound_rows(sessions: &[InboundGroupSession]) -> Result<Vec<CryptoRow>> {
        let mut rows = Vec::with_capacity(sessions.len());
        for session in sessions {
            let pickle = session.pickle().await;
            rows.push(CryptoRow::put(INBOUND, format!("{}/{}", session.room_id(), session.session_id()), json(&pickle)?));
        }
        Ok(rows)
    }
}

#[async_trait]
impl CryptoStore for BridgeCryptoStore {
    type Error = CryptoStoreError;

    async fn load_account(&self) -> Result<Option<Account>> {
        Ok(infallible(self.memory.load_account().await))
    }

    async fn load_identity(&self) -> Result<Option<PrivateCrossSigningIdentity>> {
        Ok(infallible(self.memory.load_identity().await))
    }

    async fn save_changes(&self, changes: Changes) -> Result<()> {
        let mut rows = Vec::new();
        for session in &changes.sessions {
            let pickle = session.pickle().await;
            rows.push(CryptoRow::put(SESSION, format!("{}/{}", pickle.sender_key.to_base64(), session.session_id()), json(&pickle)?));
        }
        rows.extend(Self::inbound_rows(&changes.inbound_group_sessions).await?);
        for device in changes.devices.new.iter().chain(&changes.devices.changed) {
            rows.push(CryptoRow::put(DEVICE, format!("{}/{}", device.user_id(), device.device_id()), json(device)?));
        }
        for device in &changes.devices.deleted {
            rows.push(CryptoRow::delete(DEVICE, format!("{}/{}", device.user_id(), device.device_id())));
        }
        for identity in changes.identities.new.iter().chain(&changes.identities.changed) {
            rows.push(CryptoRow::put(IDENTITY, identity.user_id().to_string(), json(identity)?));
        }
        for hash in &changes.message_hashes {
            rows.push(CryptoRow::put(HASH, format!("{}/{}", hash.sender_key, hash.hash), json(hash)?));
        }
        for (room, settings) in &changes.room_settings {
            rows.push(CryptoRow::put(ROOM_SETTINGS, room.to_string(), json(settings)?));
        }
        // Written before the in-memory store sees the changes: a crash in between keeps the
        // database ahead, never behind, what the machine acted on.
        self.write(rows).await?;
        Ok(infallible(self.memory.save_changes(changes).await))
    }

    async fn save_pending_changes(&self, changes: PendingChanges) -> Result<()> {
        if let Some(account) = &changes.account {
            self.write(vec![CryptoRow::put(ACCOUNT, "", json(&account.pickle())?)]).await?;
        }
        Ok(infallible(self.memory.save_pending_changes(changes).await))
    }

    async fn save_inbound_group_sessions(&self, sessions: Vec<InboundGroupSession>, backed_up_to_version: Option<&str>) -> Result<()> {
        self.write(Self::inbound_rows(&sessions).await?).await?;
        Ok(infallible(self.memory.save_inbound_group_sessions(sessions, backed_up_to_version).await))
    }

    async fn get_sessions(&self, sender_key: &str) -> Result<Option<Vec<Session>>> {
        Ok(infallible(self.memory.get_sessions(sender_key).await))
    }

    async fn get_inbound_group_session(&self, room_id: &RoomId, session_id: &str) -> Result<Option<InboundGroupSession>> {
        Ok(infallible(self.memory.get_inbound_group_session(room_id, session_id).await))
    }

    async fn get_withheld_info(&self, room_id: &RoomId, session_id: &str) -> Result<Option<RoomKeyWithheldEntry>> {
        Ok(infallible(self.memory.get_withheld_info(room_id, session_id).await))
    }

    async fn get_withheld_sessions_by_room_id(&self, room_id: &RoomId) -> Result<Vec<RoomKeyWithheldEntry>> {
        Ok(infallible(self.memory.get_withheld_sessions_by_room_id(room_id).await))
    }

    async fn get_inbound_group_sessions(&self) -> Result<Vec<InboundGroupSession>> {
        Ok(infallible(self.memory.get_inbound_group_sessions().await))
    }

    async fn inbound_group_session_counts(&self, backup_version: Option<&str>) -> Result<RoomKeyCounts> {
        Ok(infallible(self.memory.inbound_group_session_counts(backup_version).await))
    }

    async fn get_inbound_group_sessions_by_room_id(&self, room_id: &RoomId) -> Result<Vec<InboundGroupSession>> {
        Ok(infallible(self.memory.get_inbound_group_sessions_by_room_id(room_id).await))
    }

    async fn get_inbound_group_sessions_for_device_batch(
        &self,
        curve_key: Curve25519PublicKey,
        sender_data_type: SenderDataType,
        after_session_id: Option<String>,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>> {
        Ok(infallible(
            self.memory.get_inbound_group_sessions_for_device_batch(curve_key, sender_data_type, after_session_id, limit).await,
        ))
    }

    async fn inbound_group_sessions_for_backup(&self, backup_version: &str, limit: usize) -> Result<Vec<InboundGroupSession>> {
        Ok(infallible(self.memory.inbound_group_sessions_for_backup(backup_version, limit).await))
    }

    async fn mark_inbound_group_sessions_as_backed_up(&self, backup_version: &str, room_and_session_ids: &[(&RoomId, &str)]) -> Result<()> {
        Ok(infallible(self.memory.mark_inbound_group_sessions_as_backed_up(backup_version, room_and_session_ids).await))
    }

    async fn reset_backup_state(&self) -> Result<()> {
        Ok(infallible(self.memory.reset_backup_state().await))
    }

    async fn load_backup_keys(&self) -> Result<BackupKeys> {
        Ok(infallible(self.memory.load_backup_keys().await))
    }

    async fn load_dehydrated_device_pickle_key(&self) -> Result<Option<DehydratedDeviceKey>> {
        Ok(infallible(self.memory.load_dehydrated_device_pickle_key().await))
    }

    async fn delete_dehydrated_device_pickle_key(&self) -> Result<()> {
        Ok(infallible(self.memory.delete_dehydrated_device_pickle_key().await))
    }

    async fn get_outbound_group_session(&self, room_id: &RoomId) -> Result<Option<OutboundGroupSession>> {
        Ok(infallible(self.memory.get_outbound_group_session(room_id).await))
    }

    async fn load_tracked_users(&self) -> Result<Vec<TrackedUser>> {
        Ok(infallible(self.memory.load_tracked_users().await))
    }

    async fn save_tracked_users(&self, users: &[(&UserId, bool)]) -> Result<()> {
        let rows = users
            .iter()
            .map(|(user, dirty)| CryptoRow::put(TRACKED, user.to_string(), if *dirty { "dirty" } else { "clean" }.to_owned()))
            .collect();
        self.write(rows).await?;
        Ok(infallible(self.memory.save_tracked_users(users).await))
    }

    async fn get_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<DeviceData>> {
        Ok(infallible(self.memory.get_device(user_id, device_id).await))
    }

    async fn get_user_devices(&self, user_id: &UserId) -> Result<HashMap<OwnedDeviceId, DeviceData>> {
        Ok(infallible(self.memory.get_user_devices(user_id).await))
    }

    async fn get_own_device(&self) -> Result<DeviceData> {
        Ok(infallible(self.memory.get_own_device().await))
    }

    async fn get_user_identity(&self, user_id: &UserId) -> Result<Option<UserIdentityData>> {
        Ok(infallible(self.memory.get_user_identity(user_id).await))
    }

    async fn is_message_known(&self, message_hash: &OlmMessageHash) -> Result<bool> {
        Ok(infallible(self.memory.is_message_known(message_hash).await))
    }

    async fn get_outgoing_secret_requests(&self, request_id: &TransactionId) -> Result<Option<GossipRequest>> {
        Ok(infallible(self.memory.get_outgoing_secret_requests(request_id).await))
    }

    async fn get_secret_request_by_info(&self, secret_info: &SecretInfo) -> Result<Option<GossipRequest>> {
        Ok(infallible(self.memory.get_secret_request_by_info(secret_info).await))
    }

    async fn get_unsent_secret_requests(&self) -> Result<Vec<GossipRequest>> {
        Ok(infallible(self.memory.get_unsent_secret_requests().await))
    }

    async fn delete_outgoing_secret_requests(&self, request_id: &TransactionId) -> Result<()> {
        Ok(infallible(self.memory.delete_outgoing_secret_requests(request_id).await))
    }

    async fn get_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<Vec<Zeroizing<String>>> {
        Ok(infallible(self.memory.get_secrets_from_inbox(secret_name).await))
    }

    async fn delete_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<()> {
        Ok(infallible(self.memory.delete_secrets_from_inbox(secret_name).await))
    }

    async fn get_room_settings(&self, room_id: &RoomId) -> Result<Option<RoomSettings>> {
        Ok(infallible(self.memory.get_room_settings(room_id).await))
    }

    async fn get_received_room_key_bundle_data(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<StoredRoomKeyBundleData>> {
        Ok(infallible(self.memory.get_received_room_key_bundle_data(room_id, user_id).await))
    }

    async fn get_pending_key_bundle_details_for_room(&self, room_id: &RoomId) -> Result<Option<RoomPendingKeyBundleDetails>> {
        Ok(infallible(self.memory.get_pending_key_bundle_details_for_room(room_id).await))
    }

    async fn get_all_rooms_pending_key_bundles(&self) -> Result<Vec<RoomPendingKeyBundleDetails>> {
        Ok(infallible(self.memory.get_all_rooms_pending_key_bundles().await))
    }

    async fn has_downloaded_all_room_keys(&self, room_id: &RoomId) -> Result<bool> {
        Ok(infallible(self.memory.has_downloaded_all_room_keys(room_id).await))
    }

    async fn get_custom_value(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(infallible(self.memory.get_custom_value(key).await))
    }

    async fn set_custom_value(&self, key: &str, value: Vec<u8>) -> Result<()> {
        // Custom values are bytes (PostgreSQL text holds no NUL): stored as base64.
        self.write(vec![CryptoRow::put(CUSTOM, key, BASE64.encode(&value))]).await?;
        Ok(infallible(self.memory.set_custom_value(key, value).await))
    }

    async fn remove_custom_value(&self, key: &str) -> Result<()> {
        self.write(vec![CryptoRow::delete(CUSTOM, key)]).await?;
        Ok(infallible(self.memory.remove_custom_value(key).await))
    }

    async fn try_take_leased_lock(&self, lease_duration_ms: u32, key: &str, holder: &str) -> Result<Option<CrossProcessLockGeneration>> {
        Ok(infallible(self.memory.try_take_leased_lock(lease_duration_ms, key, holder).await))
    }

    async fn next_batch_token(&self) -> Result<Option<String>> {
        Ok(infallible(self.memory.next_batch_token().await))
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    async fn reopen(&self) -> Result<()> {
        Ok(())
    }

    async fn get_size(&self) -> Result<Option<usize>> {
        Ok(None)
    }
}
