//! The logins that are live in this process: each stored [`UserLogin`] with its
//! [`NetworkClient`]. Loaded at startup (so logins survive restarts with no user action),
//! added when a login flow completes, removed on logout.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context as _;
use ruma::{OwnedUserId, UserId};

use super::{
    state_notices::{self, Tell},
    Bridge,
};
use crate::{
    network::{
        events::LoginState, login::CompletedLogin, EventSender, LoginId, NetworkClient, RemoteEvent,
        StoredLogin,
    },
    store::{now_ms, UserLogin},
};

/// A live login: who owns it and its client.
#[derive(Clone)]
pub struct LiveLogin {
    /// The login's ID (the remote account's ID).
    pub id: LoginId,
    /// The Matrix user who owns it.
    pub user: OwnedUserId,
    /// A human name for the remote account.
    pub remote_name: String,
    /// The network client.
    pub client: Arc<dyn NetworkClient>,
}

/// The registry of live logins. Its lock is never held across an `.await`.
#[derive(Default)]
pub struct Logins {
    live: RwLock<HashMap<LoginId, LiveLogin>>,
}

impl Logins {
    /// The live login with this ID.
    pub fn get(&self, id: &LoginId) -> Option<LiveLogin> {
        self.read().get(id).cloned()
    }

    /// The live logins of a Matrix user, oldest first by ID order.
    pub fn of_user(&self, user: &UserId) -> Vec<LiveLogin> {
        let mut list: Vec<LiveLogin> = self.read().values().filter(|l| l.user == user).cloned().collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Every live login.
    pub fn all(&self) -> Vec<LiveLogin> {
        self.read().values().cloned().collect()
    }

    fn insert(&self, login: LiveLogin) {
        self.live.write().unwrap_or_else(|e| e.into_inner()).insert(login.id.clone(), login);
    }

    fn remove(&self, id: &LoginId) -> Option<LiveLogin> {
        self.live.write().unwrap_or_else(|e| e.into_inner()).remove(id)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<LoginId, LiveLogin>> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Bridge {
    /// Builds and connects the client of every stored login and syncs its portals
    /// (catching up on what was missed while the bridge was down). A login whose client cannot
    /// be built is reported to its owner and skipped.
    pub async fn load_logins(self: &Arc<Self>) -> anyhow::Result<()> {
        let stored = self.store.user_logins().list_all().await?;
        for login in stored {
            if let Err(e) = self.start_login(&login).await {
                tracing::error!(login = %login.id, error = %format!("{e:#}"), "could not load a login");
                if let Ok(user) = OwnedUserId::try_from(login.user_mxid.as_str()) {
                    self.notify_user(&user, &format!("Your login {} could not be restored: {e}. Use `login` to log in again.", login.remote_name)).await;
                }
            }
        }
        Ok(())
    }

    /// Stores a completed login for `user`, builds and connects its client. Fails if the
    /// remote account is already logged in by another Matrix user.
    pub async fn add_login(self: &Arc<Self>, user: &UserId, completed: CompletedLogin) -> anyhow::Result<LiveLogin> {
        let id = completed.remote_id.clone();
        if let Some(existing) = self.store.user_logins().get(&id).await? {
            if existing.user_mxid != user.as_str() {
                anyhow::bail!("this account is already logged in to the bridge by another Matrix user");
            }
            // A re-login of the same account: replace the old client.
            if let Some(old) = self.logins.remove(&LoginId(id.clone())) {
                old.client.disconnect().await;
            }
        }
        self.store.users().upsert(user.as_str()).await?;
        let row = UserLogin {
            id: id.clone(),
            user_mxid: user.to_string(),
            remote_id: completed.remote_id,
            remote_name: completed.remote_name,
            session: completed.session,
            state: "connecting".to_owned(),
            created_at: now_ms(),
        };
        self.store.user_logins().upsert(&row).await?;
        self.start_login(&row).await
    }

    /// Disconnects a login, logs it out on the network if `remote_logout`, and deletes it.
    pub async fn remove_login(self: &Arc<Self>, id: &LoginId, remote_logout: bool) -> anyhow::Result<()> {
        if let Some(live) = self.logins.remove(id) {
            if remote_logout {
                if let Err(e) = live.client.logout().await {
                    tracing::warn!(login = %id, error = %e, "remote logout failed; deleting the login anyway");
                }
            }
            live.client.disconnect().await;
        }
        self.store.user_logins().delete(id.as_str()).await?;
        self.state_notices.forget(id);
        if let Err(e) = crate::network::LoginStore::database(self.store.clone(), id).clear().await {
            tracing::warn!(login = %id, error = %e, "could not delete the login's network state");
        }
        Ok(())
    }

    /// Disconnects every login (at shutdown).
    pub async fn disconnect_logins(&self) {
        for login in self.logins.all() {
            login.client.disconnect().await;
        }
    }

    async fn start_login(self: &Arc<Self>, row: &UserLogin) -> anyhow::Result<LiveLogin> {
        let user = OwnedUserId::try_from(row.user_mxid.as_str()).context("stored login has an invalid user ID")?;
        let id = LoginId(row.id.clone());
        let stored = StoredLogin { id: id.clone(), user: user.clone(), remote_name: row.remote_name.clone(), session: row.session.clone() };
        let events = EventSender::new(id.clone(), self.remote_tx.clone(), self.ghosts.clone())
            .with_tracking(self.tracked_tx.clone())
            .with_owner(user.clone())
            .with_store(crate::network::LoginStore::database(self.store.clone(), &id));
        let client = self.connector.load_login(stored, events).await?;
        let live = LiveLogin { id, user, remote_name: row.remote_name.clone(), client };
        self.logins.insert(live.clone());
        live.client.connect().await;
        // Portals for recent chats, and catch-up of what was missed while down.
        let (bridge, id) = (self.clone(), live.id.clone());
        tokio::spawn(async move { bridge.portals.sync_login(&bridge, &id).await });
        Ok(live)
    }

    /// Sends a notice to a user's management room, if they have one. Failures are logged.
    pub async fn notify_user(&self, user: &UserId, text: &str) {
        let room = match self.store.users().get(user.as_str()).await {
            Ok(Some(u)) => u.management_room,
            _ => None,
        };
        let Some(room) = room.and_then(|r| ruma::OwnedRoomId::try_from(r).ok()) else { return };
        if let Err(e) = crate::commands::reply(self, &room, None, text).await {
            tracing::warn!(%user, error = %format!("{e:#}"), "could not notify a user");
        }
    }

    /// Handles one event reported by a login: state changes here, the rest in its portal.
    /// `done` (for tracked events) is answered once the event is applied.
    pub(crate) async fn handle_remote_event(self: &Arc<Self>, login: LoginId, event: RemoteEvent, done: Option<tokio::sync::oneshot::Sender<()>>) {
        match event {
            RemoteEvent::StateChanged(state) => self.on_login_state(&login, state).await,
            RemoteEvent::Notice(text) => {
                if let Some(live) = self.logins.get(&login) {
                    self.notify_user(&live.user, &format!("{}: {text}", live.remote_name)).await;
                }
            }
            other => return self.portals.handle_remote(self, login, other, done).await,
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    async fn on_login_state(self: &Arc<Self>, login: &LoginId, state: LoginState) {
        let label = state_notices::label(&state);
        let previous = self.store.user_logins().get(login.as_str()).await.ok().flatten().map(|l| l.state);
        if state_notices::replaces(previous.as_deref(), &state) {
            if let Err(e) = self.store.user_logins().update_state(login.as_str(), label).await {
                tracing::warn!(%login, error = %e, "could not store a login state");
            }
        }
        tracing::info!(%login, state = label, "login state changed");
        // Tell the owner about problems and recoveries, not about every reconnect.
        let Some(live) = self.logins.get(login) else { return };
        let grace = Duration::from_secs(self.settings.notify_disconnect_after_secs);
        match self.state_notices.on_change(login, &live.remote_name, previous.as_deref(), &state, grace) {
            Tell::Nothing => {}
            Tell::Now(text) => self.notify_user(&live.user, &text).await,
            Tell::Later { outage } => {
                let (bridge, login) = (self.clone(), login.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(grace) => {}
                        () = bridge.shutdown.cancelled() => return,
                    }
                    if let Some(text) = bridge.state_notices.overdue(&login, &live.remote_name, outage) {
                        bridge.notify_user(&live.user, &text).await;
                    }
                });
            }
        }
    }
}
