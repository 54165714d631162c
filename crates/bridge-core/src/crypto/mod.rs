//! End-to-bridge encryption: the bot's own device, on matrix-sdk-crypto's `OlmMachine`.
//!
//! The bot gets a device of its own, created through the appservice (MSC4190: `PUT
//! /devices/{id}` with the `as_token`), and every crypto request goes out as that device
//! (`?device_id=`). What a client sends the device — room keys over Olm — arrives in the
//! appservice transactions (MSC2409 to-device events, MSC3202 device-list changes and
//! one-time-key counts) and is fed to the machine before the transaction's events are
//! stored, so that they can be decrypted when handled. What the bot and the ghosts send to
//! an encrypted room is encrypted by this device ([`crate::matrix::RoomEncryptor`]), on the
//! ghosts' behalf as far as ghosts go.
//!
//! The machine's state lives in the bridge's database ([`store::BridgeCryptoStore`]). A
//! store that no longer matches the homeserver (its keys gone from the server, or the
//! database restored without them) is detected at startup and the device is replaced by a
//! new one, never left half-working.
//!
//! matrix-sdk-crypto 0.18 speaks ruma 0.16 (`ruma_crypto` here) while the bridge speaks
//! 0.17: everything crosses this module's boundary as JSON.

mod requests;
pub mod store;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use http::Method;
use matrix_sdk_crypto::{
    types::events::room::encrypted::EncryptedEvent, CollectStrategy, DecryptionSettings, EncryptionSettings,
    EncryptionSyncChanges, MegolmError, OlmMachine, TrustRequirement,
};
use rand::Rng;
use ruma_crypto::{
    api::client::sync::sync_events::DeviceLists, serde::Raw, OneTimeKeyAlgorithm, OwnedRoomId, OwnedUserId, UInt,
};
use serde_json::{json, value::RawValue, Value};
use tokio::sync::Notify;

use crate::{
    config::EncryptionConfig,
    matrix::{MatrixClient, MatrixError, RawRequest, RoomEncryptor, SendOptions},
    store::Store,
};
use requests::Answer;

/// Set (to `true`) on an event the bridge decrypted, so that later stages can tell it
/// arrived encrypted (`bridge.encryption.require`).
pub const DECRYPTED: &str = "io.bridges.decrypted";

/// The prefix of the bot's device IDs, so that old devices of the bridge are told apart.
const DEVICE_PREFIX: &str = "BRIDGE";

/// What a transaction carries for the bot's device (MSC2409 and MSC3202), as JSON.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TransactionCrypto {
    /// To-device events for the bot's device.
    pub to_device: Vec<Value>,
    /// Users whose devices changed.
    pub changed: Vec<String>,
    /// Users who no longer share an encrypted room with the bridge.
    pub left: Vec<String>,
    /// One-time-key counts: user → device → algorithm → count.
    pub otk_counts: Option<Value>,
    /// Unused fallback key types: user → device → [algorithm].
    pub fallback_types: Option<Value>,
}

impl TransactionCrypto {
    /// Whether the transaction carried nothing for the device.
    pub fn is_empty(&self) -> bool {
        self.to_device.is_empty() && self.changed.is_empty() && self.left.is_empty() && self.otk_counts.is_none() && self.fallback_types.is_none()
    }
}

/// Why an event could not be decrypted.
#[derive(Debug)]
pub enum DecryptFailure {
    /// The room key has not arrived (yet): worth trying again when keys arrive.
    MissingKey(String),
    /// The event is broken, or from a device the settings do not trust: trying again won't help.
    Permanent(String),
}

/// Whether a user is one of the bridge's own (the bot, a ghost): they have no devices.
pub type IsBridgeUser = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The bot's encryption device; see the module documentation.
pub struct Crypto {
    machine: OlmMachine,
    client: MatrixClient,
    device_id: String,
    settings: EncryptionConfig,
    is_bridge_user: IsBridgeUser,
    /// One batch of outgoing requests at a time (a second caller would send the same ones).
    outgoing: tokio::sync::Mutex<()>,
    /// One encryption per room at a time (key sharing is not reentrant per room).
    room_locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    /// Whether each room seen so far is encrypted.
    encrypted: Mutex<HashMap<OwnedRoomId, bool>>,
    /// The members (joined or invited, not the bridge's own) of encrypted rooms.
    members: Mutex<HashMap<OwnedRoomId, Vec<OwnedUserId>>>,
    /// Woken whenever room keys arrive.
    keys_arrived: Notify,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn crypto_error(e: impl std::fmt::Display) -> MatrixError {
    MatrixError::Encryption(e.to_string())
}

fn new_device_id() -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..10).map(|_| char::from(b'A' + rng.random_range(0..26u8))).collect();
    format!("{DEVICE_PREFIX}{suffix}")
}

impl Crypto {
    /// Sets up the bot's device: the stored one if the homeserver still has its keys, else
    /// a new one (old devices of the bridge are deleted); uploads its keys.
    pub async fn start(client: MatrixClient, db: Store, settings: EncryptionConfig, display_name: &str, is_bridge_user: IsBridgeUser) -> anyhow::Result<Arc<Crypto>> {
        let stored = db.crypto().get("account", "").await?;
        let stored_device = stored
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|v| v.get("device_id").and_then(Value::as_str).map(str::to_owned));
        if let Some(device_id) = stored_device {
            let crypto = Self::with_device(client.clone(), db.clone(), settings.clone(), device_id.clone(), is_bridge_user.clone()).await?;
            match crypto.server_has_our_keys().await? {
                true => {
                    crypto.process_outgoing().await?;
                    tracing::info!(device_id = %device_id, "encryption: using the bot's stored device");
                    return Ok(Arc::new(crypto));
                }
                false => {
                    tracing::warn!(
                        device_id = %device_id,
                        "encryption: the homeserver no longer has this device's keys (deleted, or the database was restored from an older copy); replacing the device with a new one"
                    );
                    db.crypto().clear().await?;
                }
            }
        } else if db.crypto().clear().await? > 0 {
            tracing::warn!("encryption: the stored state had no device account; starting over with a new device");
        }
        let device_id = new_device_id();
        create_device(&client, &device_id, display_name).await?;
        let crypto = Self::with_device(client.clone(), db, settings, device_id.clone(), is_bridge_user).await?;
        crypto.process_outgoing().await?;
        crypto.delete_old_devices().await;
        tracing::info!(device_id = %device_id, "encryption: created the bot's device and uploaded its keys");
        Ok(Arc::new(crypto))
    }

    async fn with_device(client: MatrixClient, db: Store, settings: EncryptionConfig, device_id: String, is_bridge_user: IsBridgeUser) -> anyhow::Result<Crypto> {
        let bot = ruma_crypto::OwnedUserId::try_from(client.bot().as_str())?;
        let device = ruma_crypto::OwnedDeviceId::from(device_id.as_str());
        let store = store::BridgeCryptoStore::open(db).await?;
        let machine = OlmMachine::with_store(&bot, &device, store, None).await?;
        Ok(Crypto {
            machine,
            client,
            device_id,
            settings,
            is_bridge_user,
            outgoing: tokio::sync::Mutex::new(()),
            room_locks: Mutex::default(),
            encrypted: Mutex::default(),
            members: Mutex::default(),
            keys_arrived: Notify::new(),
        })
    }

    /// The bot's device ID.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Whether the homeserver lists this device with the identity key the machine holds,
    /// or lists no keys for it yet while the machine has not uploaded any.
    async fn server_has_our_keys(&self) -> anyhow::Result<bool> {
        let bot = self.client.bot().to_string();
        let body = json!({ "device_keys": { &bot: [&self.device_id] } });
        let answer = requests::send_as_device(&self.client, &self.device_id, Method::POST, vec!["_matrix".into(), "client".into(), "v3".into(), "keys".into(), "query".into()], &body).await;
        let answer = match answer {
            Ok(answer) => answer,
            // The device itself is gone (the masquerade is refused).
            Err(e) if e.is("M_UNKNOWN_DEVICE") || e.is("M_UNKNOWN_TOKEN") => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let value: Value = serde_json::from_slice(&answer.body)?;
        let ours = self.machine.identity_keys().ed25519.to_base64();
        let key = value
            .pointer(&format!("/device_keys/{}/{}/keys/ed25519:{}", bot.replace('~', "~0").replace('/', "~1"), self.device_id, self.device_id))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let uploaded = self.machine.store().load_account().await?.is_some_and(|account| account.shared());
        Ok(match key {
            Some(key) => key == ours,
            None => !uploaded,
        })
    }

    /// Deletes the bot's other devices made by this bridge (left by an earlier store).
    async fn delete_old_devices(&self) {
        let list = RawRequest {
            method: Method::GET,
            path: vec!["_matrix".into(), "client".into(), "v3".into(), "devices".into()],
            query: Vec::new(),
            content_type: None,
            body: Default::default(),
        };
        let devices = match self.client.send_raw(list, None, SendOptions::default()).await {
            Ok(answer) => serde_json::from_slice::<Value>(&answer.body).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "encryption: could not list the bot's devices to remove old ones");
                return;
            }
        };
        let old = devices["devices"].as_array().into_iter().flatten().filter_map(|d| d["device_id"].as_str());
        for device in old.filter(|d| d.starts_with(DEVICE_PREFIX) && *d != self.device_id) {
            let delete = RawRequest {
                method: Method::DELETE,
                path: vec!["_matrix".into(), "client".into(), "v3".into(), "devices".into(), device.to_owned()],
                query: Vec::new(),
                content_type: Some("application/json".into()),
                body: "{}".into(),
            };
            match self.client.send_raw(delete, None, SendOptions::default()).await {
                Ok(_) => tracing::info!(device_id = device, "encryption: deleted an old device of the bot"),
                Err(e) => tracing::warn!(device_id = device, error = %e, "encryption: could not delete an old device of the bot"),
            }
        }
    }

    /// Sends what the machine wants sent (key uploads, queries, claims, to-device) until it
    /// has nothing more.
    pub async fn process_outgoing(&self) -> Result<(), MatrixError> {
        let _guard = self.outgoing.lock().await;
        for _ in 0..5 {
            let pending = self.machine.outgoing_requests().await.map_err(crypto_error)?;
            if pending.is_empty() {
                return Ok(());
            }
            for request in pending {
                let answer = requests::send(&self.client, &self.device_id, request.request()).await?;
                self.mark_sent(request.request_id(), &answer).await?;
            }
        }
        Ok(())
    }

    async fn mark_sent(&self, id: &ruma_crypto::TransactionId, answer: &Answer) -> Result<(), MatrixError> {
        let result = match answer {
            Answer::Upload(r) => self.machine.mark_request_as_sent(id, r).await,
            Answer::Query(r) => self.machine.mark_request_as_sent(id, r).await,
            Answer::Claim(r) => self.machine.mark_request_as_sent(id, r).await,
            Answer::ToDevice(r) => self.machine.mark_request_as_sent(id, r).await,
            Answer::Signatures(r) => self.machine.mark_request_as_sent(id, r).await,
            Answer::RoomMessage(r) => self.machine.mark_request_as_sent(id, r).await,
        };
        result.map_err(crypto_error)
    }

    /// Feeds what a transaction carried for the device to the machine (to-device events
    /// are decrypted and their room keys stored before this returns), then sends what the
    /// machine wants sent in answer.
    pub async fn receive(&self, txn: TransactionCrypto) -> anyhow::Result<()> {
        let bot = self.client.bot().as_str();
        let to_device: Vec<Raw<_>> = txn
            .to_device
            .into_iter()
            // Events for another device of the bot (or another user) are not ours to read.
            .filter(|event| {
                let user = event.get("to_user_id").and_then(Value::as_str);
                let device = event.get("to_device_id").and_then(Value::as_str);
                user.is_none_or(|u| u == bot) && device.is_none_or(|d| d == self.device_id)
            })
            .filter_map(|event| RawValue::from_string(event.to_string()).ok().map(Raw::from_json))
            .collect();
        let mut lists = DeviceLists::new();
        lists.changed = txn.changed.iter().filter_map(|u| OwnedUserId::try_from(u.as_str()).ok()).collect();
        lists.left = txn.left.iter().filter_map(|u| OwnedUserId::try_from(u.as_str()).ok()).collect();
        let ours = |v: &Option<Value>| v.as_ref().and_then(|v| v.get(bot)).and_then(|d| d.get(&self.device_id)).cloned();
        let counts: std::collections::BTreeMap<OneTimeKeyAlgorithm, UInt> = ours(&txn.otk_counts)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let fallback: Option<Vec<OneTimeKeyAlgorithm>> = ours(&txn.fallback_types).and_then(|v| serde_json::from_value(v).ok());
        let changes = EncryptionSyncChanges {
            to_device_events: to_device,
            changed_devices: &lists,
            one_time_keys_counts: &counts,
            unused_fallback_keys: fallback.as_deref(),
            next_batch_token: None,
        };
        let (_, room_keys) = self.machine.receive_sync_changes(changes, &self.decryption_settings()).await?;
        if !room_keys.is_empty() {
            tracing::debug!(count = room_keys.len(), "encryption: room keys arrived");
            self.keys_arrived.notify_waiters();
        }
        // Answers (new one-time keys, key queries for changed users) go out best effort: a
        // failure here is retried with the next transaction or send.
        if let Err(e) = self.process_outgoing().await {
            tracing::warn!(error = %e, "encryption: could not send the device's pending key requests");
        }
        Ok(())
    }

    fn decryption_settings(&self) -> DecryptionSettings {
        DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted }
    }

    /// A future that completes the next time room keys arrive.
    pub fn keys_arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.keys_arrived.notified()
    }

    /// Decrypts an `m.room.encrypted` event into the event that was encrypted (with the
    /// original event ID, sender, room and timestamp).
    pub async fn decrypt(&self, event: &Value) -> Result<Value, DecryptFailure> {
        let room = event
            .get("room_id")
            .and_then(Value::as_str)
            .and_then(|r| OwnedRoomId::try_from(r).ok())
            .ok_or_else(|| DecryptFailure::Permanent("the event has no room".into()))?;
        let raw = RawValue::from_string(event.to_string()).map_err(|e| DecryptFailure::Permanent(e.to_string()))?;
        let raw: Raw<EncryptedEvent> = Raw::from_json(raw);
        match self.machine.decrypt_room_event(&raw, &room, &self.decryption_settings()).await {
            Ok(decrypted) => {
                let mut plain: Value = serde_json::from_str(decrypted.event.json().get()).map_err(|e| DecryptFailure::Permanent(e.to_string()))?;
                if let Some(object) = plain.as_object_mut() {
                    for key in ["event_id", "sender", "room_id", "origin_server_ts", "unsigned"] {
                        if let Some(value) = event.get(key) {
                            object.entry(key).or_insert_with(|| value.clone());
                        }
                    }
                    object.insert(DECRYPTED.to_owned(), Value::Bool(true));
                }
                Ok(plain)
            }
            Err(MegolmError::MissingRoomKey(withheld)) => Err(DecryptFailure::MissingKey(match withheld {
                Some(code) => format!("the sender's device withheld the key ({code:?})"),
                None => "the room key has not arrived".to_owned(),
            })),
            Err(MegolmError::Decryption(e)) => Err(DecryptFailure::MissingKey(format!("the key does not cover this message yet ({e})"))),
            Err(e) => Err(DecryptFailure::Permanent(e.to_string())),
        }
    }

    /// Notes a state event of a room the bridge is in: encryption switched on, members
    /// changed (their devices must get the next room key).
    pub async fn note_state(&self, event: &Value) {
        let Some(room) = event.get("room_id").and_then(Value::as_str).and_then(|r| OwnedRoomId::try_from(r).ok()) else { return };
        match event.get("type").and_then(Value::as_str) {
            Some("m.room.encryption") => {
                lock(&self.encrypted).insert(room, true);
            }
            Some("m.room.member") => {
                lock(&self.members).remove(&room);
            }
            _ => {}
        }
    }

    /// Whether `room` is encrypted (asked of the homeserver once, then remembered).
    pub async fn is_encrypted(&self, room: &ruma::RoomId) -> Result<bool, MatrixError> {
        let room = OwnedRoomId::try_from(room.as_str()).map_err(crypto_error)?;
        if let Some(known) = lock(&self.encrypted).get(&room) {
            return Ok(*known);
        }
        let request = RawRequest {
            method: Method::GET,
            path: ["_matrix", "client", "v3", "rooms", room.as_str(), "state", "m.room.encryption", ""].iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            content_type: None,
            body: Default::default(),
        };
        let encrypted = match self.client.send_raw(request, None, SendOptions::default()).await {
            Ok(answer) => serde_json::from_slice::<Value>(&answer.body).ok().and_then(|v| v.get("algorithm").cloned()).is_some(),
            Err(e) if e.is("M_NOT_FOUND") => false,
            Err(e) => return Err(e),
        };
        lock(&self.encrypted).insert(room, encrypted);
        Ok(encrypted)
    }

    /// The members of `room` whose devices get the room key: joined or invited, not the
    /// bridge's own users.
    async fn recipients(&self, room: &OwnedRoomId) -> Result<Vec<OwnedUserId>, MatrixError> {
        if let Some(members) = lock(&self.members).get(room) {
            return Ok(members.clone());
        }
        let request = RawRequest {
            method: Method::GET,
            path: ["_matrix", "client", "v3", "rooms", room.as_str(), "members"].iter().map(|s| (*s).to_owned()).collect(),
            query: vec![("not_membership".to_owned(), "leave".to_owned())],
            content_type: None,
            body: Default::default(),
        };
        let answer = self.client.send_raw(request, None, SendOptions::default()).await?;
        let value: Value = serde_json::from_slice(&answer.body).map_err(|e| MatrixError::Deserialize(e.to_string()))?;
        let mut members = HashSet::new();
        for event in value["chunk"].as_array().into_iter().flatten() {
            let membership = event.pointer("/content/membership").and_then(Value::as_str);
            if matches!(membership, Some("join" | "invite")) {
                if let Some(user) = event.get("state_key").and_then(Value::as_str) {
                    if !(self.is_bridge_user)(user) {
                        if let Ok(user) = OwnedUserId::try_from(user) {
                            members.insert(user);
                        }
                    }
                }
            }
        }
        let members: Vec<OwnedUserId> = members.into_iter().collect();
        lock(&self.members).insert(room.clone(), members.clone());
        Ok(members)
    }

    fn room_lock(&self, room: &OwnedRoomId) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.room_locks).entry(room.clone()).or_default().clone()
    }

    /// Encrypts `content` (of `event_type`) for `room`: shares the room key with the
    /// members' devices first where they lack it.
    pub async fn encrypt(&self, room: &ruma::RoomId, event_type: &str, content: &str) -> Result<String, MatrixError> {
        let room = OwnedRoomId::try_from(room.as_str()).map_err(crypto_error)?;
        let room_lock = self.room_lock(&room);
        let _guard = room_lock.lock().await;
        let members = send_boxed(self.recipients(&room)).await?;
        let members: Vec<&ruma_crypto::UserId> = members.iter().map(AsRef::as_ref).collect();
        send_boxed(self.machine.update_tracked_users(members.iter().copied())).await.map_err(crypto_error)?;
        send_boxed(self.process_outgoing()).await?;
        if let Some((id, claim)) = send_boxed(self.machine.get_missing_sessions(members.iter().copied())).await.map_err(crypto_error)? {
            let answer = send_boxed(requests::send(&self.client, &self.device_id, &claim.into())).await?;
            send_boxed(self.mark_sent(&id, &answer)).await?;
        }
        let sharing_strategy = if self.settings.verified_only { CollectStrategy::IdentityBasedStrategy } else { CollectStrategy::AllDevices };
        let settings = EncryptionSettings { sharing_strategy, ..Default::default() };
        let shares = send_boxed(self.machine.share_room_key(&room, members.iter().copied(), settings)).await.map_err(crypto_error)?;
        for share in shares {
            let answer = send_boxed(requests::send_to_device(&self.client, &self.device_id, &share)).await?;
            send_boxed(self.machine.mark_request_as_sent(&share.txn_id, &answer)).await.map_err(crypto_error)?;
        }
        let raw = RawValue::from_string(content.to_owned()).map_err(crypto_error)?;
        let encrypted = send_boxed(self.machine.encrypt_room_event_raw(&room, event_type, &Raw::from_json(raw))).await.map_err(crypto_error)?;
        Ok(encrypted.content.json().get().to_owned())
    }
}

#[async_trait::async_trait]
impl RoomEncryptor for Crypto {
    async fn encrypt_for_room(
        &self,
        room: &ruma::RoomId,
        event_type: &str,
        content: &ruma::serde::Raw<ruma::events::AnyMessageLikeEventContent>,
    ) -> Result<Option<ruma::serde::Raw<ruma::events::AnyMessageLikeEventContent>>, MatrixError> {
        if !self.is_encrypted(room).await? {
            return Ok(None);
        }
        let encrypted = self.encrypt(room, event_type, content.json().get()).await?;
        let raw = RawValue::from_string(encrypted).map_err(crypto_error)?;
        Ok(Some(ruma::serde::Raw::from_json(raw)))
    }
}

/// Creates the bot's device `device_id` (MSC4190).
async fn create_device(client: &MatrixClient, device_id: &str, display_name: &str) -> anyhow::Result<()> {
    let body = json!({ "display_name": display_name });
    let request = RawRequest {
        method: Method::PUT,
        path: vec!["_matrix".into(), "client".into(), "v3".into(), "devices".into(), device_id.to_owned()],
        query: Vec::new(),
        content_type: Some("application/json".into()),
        body: serde_json::to_vec(&body)?.into(),
    };
    match client.send_raw(request, None, SendOptions::default()).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.errcode(), Some("M_NOT_FOUND" | "M_UNRECOGNIZED")) => anyhow::bail!(
            "the homeserver would not create the bot's device ({e}): the registration needs `io.element.msc4190: true` (run generate-registration again and restart the homeserver)"
        ),
        Err(e) => Err(e.into()),
    }
}

/// Decrypts an encrypted attachment downloaded as `data`, with the event's `file` object
/// (key, IV, SHA-256 of the ciphertext, which is checked).
pub fn decrypt_attachment(data: &[u8], file: &Value) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let info: matrix_sdk_crypto::MediaEncryptionInfo =
        serde_json::from_value(file.clone()).map_err(|e| format!("its keys are unreadable ({e})"))?;
    let mut input = std::io::Cursor::new(data);
    let mut decryptor = matrix_sdk_crypto::AttachmentDecryptor::new(&mut input, info).map_err(|e| format!("it cannot be decrypted ({e})"))?;
    let mut plain = Vec::with_capacity(data.len());
    decryptor.read_to_end(&mut plain).map_err(|e| format!("it cannot be decrypted ({e})"))?;
    Ok(plain)
}

/// Encrypts an attachment for an encrypted room: the ciphertext to upload, and the `file`
/// object (without its `url`, known once uploaded).
pub fn encrypt_attachment(data: &[u8]) -> Result<(Vec<u8>, Value), String> {
    use std::io::Read as _;
    let mut input = std::io::Cursor::new(data);
    let mut encryptor = matrix_sdk_crypto::AttachmentEncryptor::new(&mut input);
    let mut cipher = Vec::with_capacity(data.len());
    encryptor.read_to_end(&mut cipher).map_err(|e| e.to_string())?;
    let file = serde_json::to_value(encryptor.finish()).map_err(|e| e.to_string())?;
    Ok((cipher, file))
}

/// Where the bridge's encryption stands; shared through [`CryptoSlot`].
#[derive(Clone, Debug)]
pub enum CryptoStatus {
    /// `bridge.encryption.allow` is off.
    Disabled,
    /// The device is being set up (the bridge is starting).
    Starting,
    /// The device runs.
    Ready(Arc<Crypto>),
    /// Setting up the device failed; the reason, for the user and the operator.
    Failed(String),
}

/// The bridge's encryption status, set once at startup and read by every event.
#[derive(Debug)]
pub struct CryptoSlot {
    tx: tokio::sync::watch::Sender<CryptoStatus>,
}

impl CryptoSlot {
    /// `Starting` when encryption is allowed, else `Disabled`.
    pub fn new(allow: bool) -> Self {
        let status = if allow { CryptoStatus::Starting } else { CryptoStatus::Disabled };
        Self { tx: tokio::sync::watch::Sender::new(status) }
    }

    /// The status now.
    pub fn get(&self) -> CryptoStatus {
        self.tx.borrow().clone()
    }

    /// The running device, if there is one.
    pub fn ready(&self) -> Option<Arc<Crypto>> {
        match &*self.tx.borrow() {
            CryptoStatus::Ready(crypto) => Some(crypto.clone()),
            _ => None,
        }
    }

    /// Sets the status once setup has finished.
    pub fn set(&self, status: CryptoStatus) {
        self.tx.send_replace(status);
    }

    /// The status once it is no longer `Starting`, or `Starting` after `timeout`.
    pub async fn settled(&self, timeout: Duration) -> CryptoStatus {
        let mut rx = self.tx.subscribe();
        let settled = tokio::time::timeout(timeout, async {
            rx.wait_for(|status| !matches!(status, CryptoStatus::Starting)).await.map(|status| status.clone())
        })
        .await;
        match settled {
            Ok(Ok(status)) => status,
            _ => self.get(),
        }
    }
}

/// Boxes a future as `Send` where it is made. Some of matrix-sdk-crypto's futures are `Send`
/// for each lifetime but rustc cannot prove it for all lifetimes at once (the bound an
/// `async_trait` method needs); erasing them here, where the lifetimes are concrete, helps.
fn send_boxed<'a, T>(future: impl std::future::Future<Output = T> + Send + 'a) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>> {
    Box::pin(future)
}
