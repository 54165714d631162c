//! The MTProto session of one login ([`StoredSession`]): the home DC, the DC addresses with
//! the authorization key, the update state (pts/qts/date/seq and each channel's pts) and the
//! cache of peers with their access hashes. grammers reads it from memory; every change is
//! written through to the login's [`LoginStore`] in the bridge's database, so a restart
//! needs no new login and resumes the updates where they stopped.
//!
//! While a login is in progress there is no login ID yet and the session lives in memory;
//! the finished login carries a [`SessionSnapshot`] as its session data, which seeds the
//! store the first time the login is loaded.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bridge_core::network::LoginStore;
use grammers_session::types::{DcOption, PeerId, PeerInfo, UpdateState, UpdatesState};
use grammers_session::{BoxFuture, Session, SessionData};
use serde::{Deserialize, Serialize};

use crate::config::TestDc;

/// The store key of the home DC and the DC options (with the authorization key).
const DCS_KEY: &str = "mtproto/dcs";
/// The store key of the update state.
const UPDATES_KEY: &str = "mtproto/updates";
/// The store key prefix of cached peers.
const PEERS_PREFIX: &str = "mtproto/peer/";

/// The DC Telegram assigns to a new session before it knows better (grammers' default).
const DEFAULT_DC: i32 = 2;

/// The home DC and the known DCs, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Dcs {
    home_dc: i32,
    dc_options: Vec<DcOption>,
    /// The login this session began with (random): a new login of the same account (after
    /// Telegram ended the old session) brings a new key and replaces the stored one.
    #[serde(default)]
    origin: String,
}

/// Everything of a session, as one JSON value: the session data of a finished login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// The home DC and all known DCs (with their authorization keys).
    dcs: Dcs,
    /// The update state.
    updates: UpdatesState,
    /// The cached peers.
    peers: Vec<PeerInfo>,
}

/// A failure to persist the session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The bridge's database refused a write.
    #[error("could not store the Telegram session: {0}")]
    Store(String),
    /// The stored session could not be read.
    #[error("the stored Telegram session is unreadable: {0}")]
    Unreadable(String),
}

/// A grammers [`Session`] in memory, written through to a [`LoginStore`] when it has one.
pub struct StoredSession {
    data: Mutex<SessionData>,
    store: Option<LoginStore>,
    origin: String,
}

impl StoredSession {
    /// A new, empty session for a login in progress: Telegram's DCs, or DC 2 at the
    /// simulator with its preset key in tests.
    pub fn new_login(test_dc: Option<&TestDc>) -> Self {
        let mut data = SessionData::default();
        if let Some(dc) = test_dc {
            let ipv6 = std::net::SocketAddrV6::new(
                dc.address.ip().to_ipv6_mapped(),
                dc.address.port(),
                0,
                0,
            );
            data.dc_options.clear();
            data.dc_options.insert(
                DEFAULT_DC,
                DcOption {
                    id: DEFAULT_DC,
                    ipv4: dc.address,
                    ipv6,
                    auth_key: Some(dc.auth_key),
                },
            );
            data.home_dc = DEFAULT_DC;
        }
        let origin = (0..16)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        Self {
            data: Mutex::new(data),
            store: None,
            origin,
        }
    }

    /// The session of a stored login: what the store holds, else the snapshot the login
    /// finished with (written to the store now, so later changes have a base). A snapshot of
    /// a newer login of the account (`relogin`) replaces the stored key, but keeps the stored
    /// update state, so what happened in between is caught up.
    pub async fn load(
        store: LoginStore,
        snapshot: &serde_json::Value,
    ) -> Result<Self, SessionError> {
        let unreadable =
            |e: bridge_core::network::NetworkError| SessionError::Unreadable(e.to_string());
        let mut snapshot: SessionSnapshot = serde_json::from_value(snapshot.clone())
            .map_err(|e| SessionError::Unreadable(e.to_string()))?;
        let stored: Option<Dcs> = store.get(DCS_KEY).await.map_err(unreadable)?;
        let updates: Option<UpdatesState> = store.get(UPDATES_KEY).await.map_err(unreadable)?;
        let peers: Vec<(String, PeerInfo)> = store.list(PEERS_PREFIX).await.map_err(unreadable)?;
        let same_login = stored
            .as_ref()
            .is_some_and(|dcs| dcs.origin == snapshot.dcs.origin);
        if let (true, Some(dcs)) = (same_login, stored) {
            snapshot = SessionSnapshot {
                dcs,
                updates: updates.unwrap_or_default(),
                peers: peers.into_iter().map(|(_, p)| p).collect(),
            };
        } else {
            if let Some(updates) = updates.filter(|u| u.pts > 0) {
                snapshot.updates = updates;
            }
            for (_, peer) in peers {
                if !snapshot.peers.iter().any(|p| p.id() == peer.id()) {
                    snapshot.peers.push(peer);
                }
            }
            write(&store, DCS_KEY, &snapshot.dcs).await?;
            write(&store, UPDATES_KEY, &snapshot.updates).await?;
            for peer in &snapshot.peers {
                write(&store, &peer_key(peer.id()), peer).await?;
            }
        }
        let origin = snapshot.dcs.origin.clone();
        Ok(Self {
            data: Mutex::new(from_snapshot(snapshot)),
            store: Some(store),
            origin,
        })
    }

    /// Everything in the session, for the finished login's session data.
    pub fn snapshot(&self) -> SessionSnapshot {
        let data = self.lock();
        let mut dc_options: Vec<DcOption> = data.dc_options.values().cloned().collect();
        dc_options.sort_by_key(|dc| dc.id);
        let mut peers: Vec<PeerInfo> = data.peer_infos.values().cloned().collect();
        peers.sort_by_key(|p| p.id().bot_api_dialog_id_unchecked());
        SessionSnapshot {
            dcs: Dcs {
                home_dc: data.home_dc,
                dc_options,
                origin: self.origin.clone(),
            },
            updates: data.updates_state.clone(),
            peers,
        }
    }

    /// The logged-in account's user ID, once signed in.
    pub fn self_id(&self) -> Option<i64> {
        self.lock().peer_infos.values().find_map(|peer| match peer {
            PeerInfo::User {
                id,
                is_self: Some(true),
                ..
            } => Some(*id),
            _ => None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SessionData> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dcs(&self) -> Dcs {
        self.snapshot().dcs
    }

    async fn persist<T: Serialize + Sync>(&self, key: &str, value: &T) -> Result<(), SessionError> {
        match &self.store {
            Some(store) => write(store, key, value).await,
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the authorization key.
        f.debug_struct("StoredSession")
            .field("home_dc", &self.lock().home_dc)
            .finish_non_exhaustive()
    }
}

fn from_snapshot(snapshot: SessionSnapshot) -> SessionData {
    SessionData {
        home_dc: snapshot.dcs.home_dc,
        dc_options: snapshot
            .dcs
            .dc_options
            .into_iter()
            .map(|dc| (dc.id, dc))
            .collect::<HashMap<_, _>>(),
        peer_infos: snapshot
            .peers
            .into_iter()
            .map(|peer| (peer.id(), peer))
            .collect(),
        updates_state: snapshot.updates,
    }
}

fn peer_key(id: PeerId) -> String {
    format!("{PEERS_PREFIX}{}", id.bot_api_dialog_id_unchecked())
}

async fn write<T: Serialize + Sync>(
    store: &LoginStore,
    key: &str,
    value: &T,
) -> Result<(), SessionError> {
    store
        .set(key, value)
        .await
        .map_err(|e| SessionError::Store(e.to_string()))
}

impl Session for StoredSession {
    type Error = SessionError;

    fn home_dc_id(&self) -> Result<i32, SessionError> {
        Ok(self.lock().home_dc)
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            self.lock().home_dc = dc_id;
            self.persist(DCS_KEY, &self.dcs()).await
        })
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<DcOption>, SessionError> {
        Ok(self.lock().dc_options.get(&dc_id).cloned())
    }

    fn set_dc_option(&self, dc_option: &DcOption) -> BoxFuture<'_, Result<(), SessionError>> {
        let dc_option = dc_option.clone();
        Box::pin(async move {
            let changed = self
                .lock()
                .dc_options
                .insert(dc_option.id, dc_option.clone())
                .as_ref()
                != Some(&dc_option);
            if changed {
                self.persist(DCS_KEY, &self.dcs()).await?;
            }
            Ok(())
        })
    }

    fn peer(&self, peer: PeerId) -> BoxFuture<'_, Result<Option<PeerInfo>, SessionError>> {
        Box::pin(async move { Ok(self.lock().peer_infos.get(&peer).cloned()) })
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<(), SessionError>> {
        self.cache_peers(vec![peer])
    }

    fn cache_peers(&self, peers: Vec<PeerInfo>) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            let changed: Vec<PeerInfo> = {
                let mut data = self.lock();
                peers
                    .into_iter()
                    .filter_map(|peer| {
                        let existing = data.peer_infos.get(&peer.id()).cloned();
                        let mut merged = existing.clone().unwrap_or_else(|| peer.clone());
                        merged.extend_info(&peer);
                        (existing.as_ref() != Some(&merged)).then(|| {
                            data.peer_infos.insert(merged.id(), merged.clone());
                            merged
                        })
                    })
                    .collect()
            };
            for peer in changed {
                self.persist(&peer_key(peer.id()), &peer).await?;
            }
            Ok(())
        })
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState, SessionError>> {
        Box::pin(async move { Ok(self.lock().updates_state.clone()) })
    }

    fn set_update_state(&self, update: UpdateState) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            let state = {
                let mut data = self.lock();
                let before = data.updates_state.clone();
                let state = &mut data.updates_state;
                match update {
                    UpdateState::All(all) => *state = all,
                    UpdateState::Primary { pts, date, seq } => {
                        state.pts = pts;
                        state.date = date;
                        state.seq = seq;
                    }
                    UpdateState::Secondary { qts } => state.qts = qts,
                    UpdateState::Channel { id, pts } => {
                        state.channels.retain(|c| c.id != id);
                        state
                            .channels
                            .push(grammers_session::types::ChannelState { id, pts });
                    }
                }
                (*state != before).then(|| state.clone())
            };
            match state {
                Some(state) => self.persist(UPDATES_KEY, &state).await,
                None => Ok(()),
            }
        })
    }
}

/// How long the update stream must stay quiet before the state of the last applied update
/// is stored: updates of one batch follow each other at once.
pub(crate) const STATE_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// The update state as far as the core has applied the updates, stored only then.
///
/// grammers hands out each update with the state "up to and including" it, but all the
/// messages of one `updates.getDifference` answer carry the state after the last of them.
/// So the state of an update is stored once every update with that state is applied: when
/// an update with another state arrives, or when the stream has nothing at hand (for
/// [`STATE_SETTLE`], or at a disconnect). A crash in between leaves an older state, and the updates after it
/// come again; the core skips what it already bridged.
#[derive(Debug, Default)]
pub(crate) struct AppliedState {
    /// The state of the last applied update, not stored yet.
    pending: Option<grammers_session::updates::State>,
}

impl AppliedState {
    /// Whether an applied state waits to be stored.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// An update with `state` arrived (not applied yet): if the updates before had
    /// another state, they are all applied, and their state is stored.
    pub(crate) async fn next(
        &mut self,
        state: &grammers_session::updates::State,
        session: &StoredSession,
        login: &bridge_core::network::LoginId,
    ) {
        if state.message_box.is_some() && self.pending.as_ref().is_some_and(|p| p != state) {
            self.store(session, login).await;
        }
    }

    /// The update with `state` was applied.
    pub(crate) fn applied(&mut self, state: grammers_session::updates::State) {
        if state.message_box.is_some() {
            self.pending = Some(state);
        }
    }

    /// Stores the pending state.
    pub(crate) async fn store(
        &mut self,
        session: &StoredSession,
        login: &bridge_core::network::LoginId,
    ) {
        use grammers_session::updates::MessageBox;
        let Some(state) = self.pending.take() else {
            return;
        };
        let update = match state.message_box {
            Some(MessageBox::Common { pts }) => UpdateState::Primary {
                pts,
                date: state.date,
                seq: state.seq,
            },
            Some(MessageBox::Secondary { qts }) => UpdateState::Secondary { qts },
            Some(MessageBox::Channel { channel_id, pts }) => UpdateState::Channel {
                id: channel_id,
                pts,
            },
            None => return,
        };
        if let Err(error) = session.set_update_state(update).await {
            tracing::warn!(%login, %error, "could not store the update state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::network::LoginId;

    fn test_dc() -> TestDc {
        TestDc {
            address: "127.0.0.1:4444".parse().expect("address"),
            auth_key: [7; 256],
        }
    }

    #[tokio::test]
    async fn a_finished_login_reloads_with_its_key_state_and_peers() {
        let session = StoredSession::new_login(Some(&test_dc()));
        assert_eq!(session.home_dc_id().expect("dc"), 2);
        let dc = session.dc_option(2).expect("dc").expect("dc 2");
        assert_eq!(dc.auth_key, Some([7; 256]));
        assert_eq!(dc.ipv4.to_string(), "127.0.0.1:4444");
        assert!(
            session.dc_option(1).expect("dc").is_none(),
            "only the simulator is known"
        );
        let me = PeerInfo::User {
            id: 42,
            auth: Some(grammers_session::types::PeerAuth::from_hash(9)),
            bot: Some(false),
            is_self: Some(true),
        };
        session.cache_peer(me.clone()).await.expect("cache");
        session
            .set_update_state(UpdateState::Primary {
                pts: 5,
                date: 100,
                seq: 0,
            })
            .await
            .expect("state");
        assert_eq!(session.self_id(), Some(42));

        let snapshot = serde_json::to_value(session.snapshot()).expect("json");
        let store = LoginStore::in_memory(&LoginId::from("42"));
        let loaded = StoredSession::load(store.clone(), &snapshot)
            .await
            .expect("load");
        assert_eq!(
            loaded.dc_option(2).expect("dc").expect("dc 2").auth_key,
            Some([7; 256])
        );
        assert_eq!(loaded.updates_state().await.expect("state").pts, 5);

        // Later changes go to the store and win over the login's snapshot.
        loaded
            .set_update_state(UpdateState::Primary {
                pts: 9,
                date: 120,
                seq: 0,
            })
            .await
            .expect("state");
        let bob = PeerInfo::User {
            id: 7,
            auth: Some(grammers_session::types::PeerAuth::from_hash(3)),
            bot: None,
            is_self: None,
        };
        loaded.cache_peers(vec![bob.clone()]).await.expect("cache");
        let again = StoredSession::load(store.clone(), &snapshot)
            .await
            .expect("load again");
        assert_eq!(again.updates_state().await.expect("state").pts, 9);
        assert_eq!(
            again.peer(PeerId::user_unchecked(7)).await.expect("peer"),
            Some(bob)
        );
        assert_eq!(again.self_id(), Some(42));

        // A new login of the account (a new key) replaces the key but keeps the update
        // state, so what happened in between is caught up.
        let relogin = StoredSession::new_login(Some(&TestDc {
            auth_key: [8; 256],
            ..test_dc()
        }));
        relogin.cache_peer(me).await.expect("cache");
        relogin
            .set_update_state(UpdateState::Primary {
                pts: 20,
                date: 200,
                seq: 0,
            })
            .await
            .expect("state");
        let snapshot = serde_json::to_value(relogin.snapshot()).expect("json");
        let replaced = StoredSession::load(store.clone(), &snapshot)
            .await
            .expect("load relogin");
        let dc = replaced.dc_option(2).expect("dc").expect("dc 2");
        assert_eq!(dc.auth_key, Some([8; 256]));
        assert_eq!(replaced.updates_state().await.expect("state").pts, 9);
        assert!(replaced
            .peer(PeerId::user_unchecked(7))
            .await
            .expect("peer")
            .is_some());
        let restarted = StoredSession::load(store, &snapshot)
            .await
            .expect("restart");
        assert_eq!(
            restarted.dc_option(2).expect("dc").expect("dc 2").auth_key,
            Some([8; 256])
        );
    }
}
