//! The simulated Telegram world: authorization keys (and who they are signed in as), users
//! (accounts that can log in, and the other people), each account's message box with its own
//! message numbers and pts, open connections to push updates to, and what the bridge did.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use grammers_tl_types as tl;
use tl::Serializable as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mtproto::key_id;

/// A Telegram user of the simulator.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: i64,
    pub access_hash: i64,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    /// The cloud password, if the account has one.
    pub password: Option<String>,
    /// The password's hint.
    pub password_hint: Option<String>,
    /// A bot's token.
    pub bot_token: Option<String>,
}

/// A group or channel a message was sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ChatPeer {
    /// A basic group.
    Group(i64),
    /// A channel or supergroup.
    Channel(i64),
}

/// A message in one account's box (or in a channel).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub id: i32,
    pub pts: i32,
    /// The other side of a private chat (the sender in groups).
    pub peer: i64,
    /// The group or channel, `None` in private chats.
    pub chat: Option<ChatPeer>,
    /// A broadcast channel's post (no author shown).
    pub post: bool,
    pub from: i64,
    pub out: bool,
    pub text: String,
    pub entities: Vec<tl::enums::MessageEntity>,
    pub date: i32,
    pub reply_to: Option<i32>,
    /// The same for both copies of a private message (sender's and receiver's).
    pub shared: u64,
    pub edit_date: Option<i32>,
    /// Who reacted with what.
    pub reactions: Vec<(i64, String)>,
}

/// A change to an existing message, logged with its pts for `updates.getDifference`.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// The message with this ID was edited.
    Edit(i32),
    /// The messages with these IDs were deleted.
    Delete(Vec<i32>),
}

/// One account's messages and update state.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub pts: i32,
    pub last_id: i32,
    pub messages: Vec<Stored>,
    /// Edits and deletions by pts.
    pub changes: Vec<(i32, Change)>,
}

/// The pts of an account without messages (an account's pts never starts at 0).
pub(crate) const FIRST_PTS: i32 = 100;

impl Mailbox {
    pub(crate) fn new() -> Self {
        Self {
            pts: FIRST_PTS,
            last_id: 0,
            messages: Vec::new(),
            changes: Vec::new(),
        }
    }
}

/// A QR login token handed out by `auth.exportLoginToken`.
#[derive(Debug, Clone)]
pub(crate) struct QrToken {
    /// The key that asked for it.
    pub key: [u8; 8],
    /// When it expires (Telegram's seconds).
    pub expires: i32,
    /// The account whose phone accepted it.
    pub accepted_by: Option<i64>,
}

/// What `initConnection` said (shown in Telegram's list of active sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitInfo {
    /// The application's api_id.
    pub api_id: i32,
    /// The device model.
    pub device_model: String,
    /// The system version.
    pub system_version: String,
    /// The app version.
    pub app_version: String,
}

/// A login code sent for a phone number.
#[derive(Debug, Clone)]
pub(crate) struct SentCode {
    pub phone: String,
    pub code: String,
}

struct Connection {
    key: [u8; 8],
    /// Updates to push; `None` closes the connection.
    push: mpsc::UnboundedSender<Option<Vec<u8>>>,
}

/// Everything the simulator knows.
#[derive(Default)]
pub(crate) struct Data {
    /// Authorization keys by ID, with the user each is signed in as.
    pub keys: HashMap<[u8; 8], ([u8; 256], Option<i64>)>,
    pub users: BTreeMap<i64, User>,
    pub boxes: HashMap<i64, Mailbox>,
    /// Codes by phone_code_hash.
    pub codes: HashMap<String, SentCode>,
    /// The SRP parameters `account.getPassword` handed out, by key.
    pub srp: HashMap<[u8; 8], super::auth::Srp>,
    /// Keys whose sign-in waits for the account's cloud password.
    pub awaiting_password: HashMap<[u8; 8], i64>,
    pub inits: Vec<InitInfo>,
    /// What the bridge said about typing, by (account, peer): typing or not.
    pub typing: HashMap<(i64, i64), bool>,
    /// How far each account read each private chat, by (account, peer).
    pub read: HashMap<(i64, i64), i32>,
    /// Flood waits to answer: method name → (seconds, how many more calls).
    pub floods: HashMap<String, (u32, u32)>,
    /// Flood windows: method name → until when every call gets a flood wait.
    pub flood_windows: HashMap<String, std::time::Instant>,
    /// The `random_id`s of messages sent, by (sender, random_id): Telegram refuses a
    /// second message with one (RANDOM_ID_DUPLICATE).
    pub random_ids: HashSet<(i64, i64)>,
    /// Keys whose session the account ended from another device.
    pub revoked: HashSet<[u8; 8]>,
    /// Every method called, by name, in order.
    pub calls: Vec<String>,
    /// QR login tokens by token.
    pub qr_tokens: HashMap<Vec<u8>, QrToken>,
    /// How long a QR login token lives (seconds).
    pub qr_token_seconds: i32,
    /// Basic groups by ID.
    pub groups: BTreeMap<i64, super::groups::Group>,
    /// Channels and supergroups by ID.
    pub channels: BTreeMap<i64, super::groups::Channel>,
    connections: HashMap<u64, Connection>,
    pub(crate) next_user: i64,
}

/// The shared state behind a simulator and its connections.
pub(crate) struct Inner {
    pub stop: CancellationToken,
    data: Mutex<Data>,
    next_connection: AtomicU64,
}

/// Now, in Telegram's seconds.
pub(crate) fn now() -> i32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i32)
        .unwrap_or_default()
}

impl Inner {
    pub fn new(stop: CancellationToken) -> Self {
        let data = Data {
            next_user: 100_000,
            qr_token_seconds: 30,
            ..Data::default()
        };
        Self {
            stop,
            data: Mutex::new(data),
            next_connection: AtomicU64::new(1),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// The authorization key with this ID, if the simulator knows it.
    pub fn auth_key(&self, id: &[u8]) -> Option<[u8; 256]> {
        let id: [u8; 8] = id.try_into().ok()?;
        self.lock().keys.get(&id).map(|(key, _)| *key)
    }

    pub fn connection_opened(
        &self,
        connection: u64,
        key: &[u8; 256],
        push: mpsc::UnboundedSender<Option<Vec<u8>>>,
    ) {
        self.lock().connections.insert(
            connection,
            Connection {
                key: key_id(key),
                push,
            },
        );
    }

    pub fn connection_closed(&self, connection: u64) {
        self.lock().connections.remove(&connection);
    }
}

impl Data {
    /// Adds a user; returns its ID.
    pub fn add_user(&mut self, mut user: User) -> i64 {
        self.next_user += 1 + i64::from(rand::random::<u8>());
        user.id = self.next_user;
        user.access_hash = rand::random::<i64>() | 1;
        self.users.insert(user.id, user);
        self.next_user
    }

    /// The user a key is signed in as.
    pub fn signed_in(&self, key: &[u8; 256]) -> Option<i64> {
        self.keys.get(&key_id(key)).and_then(|(_, user)| *user)
    }

    /// Binds a key to a user (a successful sign-in).
    pub fn sign_in(&mut self, key: &[u8; 256], user: i64) {
        self.keys.insert(key_id(key), (*key, Some(user)));
        self.revoked.remove(&key_id(key));
    }

    /// Ends every session of `user` (as "Terminate session" on their phone does): the keys
    /// are no longer signed in and their connections close.
    pub fn revoke(&mut self, user: i64) {
        for (id, (_, signed_in)) in &mut self.keys {
            if *signed_in == Some(user) {
                *signed_in = None;
                self.revoked.insert(*id);
            }
        }
        for connection in self.connections.values() {
            if self.revoked.contains(&connection.key) {
                let _ = connection.push.send(None);
            }
        }
    }

    /// Live connections of keys signed in as `user`.
    pub fn connections_of(&self, user: i64) -> usize {
        self.connections
            .values()
            .filter(|c| self.keys.get(&c.key).and_then(|(_, u)| *u) == Some(user))
            .count()
    }

    /// The user object `viewer` sees for `id`.
    pub fn user_tl(&self, viewer: i64, id: i64) -> tl::enums::User {
        let Some(user) = self.users.get(&id) else {
            return tl::types::UserEmpty { id }.into();
        };
        super::tl_build::user(user, viewer == id)
    }

    /// Stores a private message from `from` to `to` in both boxes; returns
    /// `(the sender's copy, the receiver's copy)`.
    pub fn store_private(
        &mut self,
        from: i64,
        to: i64,
        text: &str,
        entities: Vec<tl::enums::MessageEntity>,
        reply_to_in_sender: Option<i32>,
    ) -> (Stored, Stored) {
        let date = now();
        let shared = rand::random::<u64>();
        // The receiver's copy replies to the receiver's copy of the same message.
        let reply_shared = reply_to_in_sender.and_then(|id| self.shared_of(from, id));
        let reply_to_in_receiver = reply_shared.and_then(|shared| {
            self.boxes
                .get(&to)?
                .messages
                .iter()
                .find(|m| m.shared == shared)
                .map(|m| m.id)
        });
        let mut stored = |owner: i64, peer: i64, out: bool, reply_to: Option<i32>| {
            let mailbox = self.boxes.entry(owner).or_insert_with(Mailbox::new);
            mailbox.pts += 1;
            mailbox.last_id += 1;
            let message = Stored {
                id: mailbox.last_id,
                pts: mailbox.pts,
                peer,
                chat: None,
                post: false,
                from,
                out,
                text: text.to_owned(),
                entities: entities.clone(),
                date,
                reply_to,
                shared,
                edit_date: None,
                reactions: Vec::new(),
            };
            mailbox.messages.push(message.clone());
            message
        };
        let sent = stored(from, to, true, reply_to_in_sender);
        let received = if from == to {
            sent.clone()
        } else {
            stored(to, from, false, reply_to_in_receiver)
        };
        (sent, received)
    }

    /// Edits both copies of a private message; returns each owner's `updates`.
    pub fn edit_shared(
        &mut self,
        shared: u64,
        text: &str,
        entities: Vec<tl::enums::MessageEntity>,
    ) -> Vec<(i64, tl::enums::Updates)> {
        let date = now();
        let mut edited = Vec::new();
        for (owner, mailbox) in &mut self.boxes {
            let Some(message) = mailbox.messages.iter_mut().find(|m| m.shared == shared) else {
                continue;
            };
            message.text = text.to_owned();
            message.entities = entities.clone();
            message.edit_date = Some(date);
            mailbox.pts += 1;
            mailbox
                .changes
                .push((mailbox.pts, Change::Edit(message.id)));
            edited.push((*owner, message.clone(), mailbox.pts));
        }
        edited
            .into_iter()
            .map(|(owner, message, pts)| {
                let update = tl::types::UpdateEditMessage {
                    message: super::tl_build::message(owner, &message),
                    pts,
                    pts_count: 1,
                }
                .into();
                (owner, self.updates(owner, &[message.peer], update, date))
            })
            .collect()
    }

    /// Deletes both copies of a private message; returns each owner's `updates` and pts.
    pub fn delete_shared(&mut self, shared: u64) -> Vec<(i64, tl::enums::Updates, i32)> {
        let date = now();
        let mut deleted = Vec::new();
        for (owner, mailbox) in &mut self.boxes {
            let Some(index) = mailbox.messages.iter().position(|m| m.shared == shared) else {
                continue;
            };
            let message = mailbox.messages.remove(index);
            mailbox.pts += 1;
            mailbox
                .changes
                .push((mailbox.pts, Change::Delete(vec![message.id])));
            deleted.push((*owner, message.id, mailbox.pts));
        }
        deleted
            .into_iter()
            .map(|(owner, id, pts)| {
                let update = tl::types::UpdateDeleteMessages {
                    messages: vec![id],
                    pts,
                    pts_count: 1,
                }
                .into();
                (owner, self.updates(owner, &[], update, date), pts)
            })
            .collect()
    }

    /// One update for `owner`, with the users it names.
    fn updates(
        &self,
        owner: i64,
        users: &[i64],
        update: tl::enums::Update,
        date: i32,
    ) -> tl::enums::Updates {
        let users = users
            .iter()
            .copied()
            .chain([owner])
            .map(|id| self.user_tl(owner, id))
            .collect();
        tl::types::Updates {
            updates: vec![update],
            users,
            chats: Vec::new(),
            date,
            seq: 0,
        }
        .into()
    }

    /// The `shared` key of message `id` in `owner`'s box.
    pub fn shared_of(&self, owner: i64, id: i32) -> Option<u64> {
        self.boxes
            .get(&owner)?
            .messages
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.shared)
    }

    /// `user` sets (or with `None` removes) their reaction on the private message `shared`;
    /// returns each owner's `updateMessageReactions` (as that owner sees the message).
    pub fn react_shared(
        &mut self,
        shared: u64,
        user: i64,
        emoji: Option<&str>,
    ) -> Vec<(i64, tl::enums::Updates)> {
        let mut changed = Vec::new();
        for (owner, mailbox) in &mut self.boxes {
            let Some(message) = mailbox.messages.iter_mut().find(|m| m.shared == shared) else {
                continue;
            };
            message.reactions.retain(|(u, _)| *u != user);
            if let Some(emoji) = emoji {
                message.reactions.push((user, emoji.to_owned()));
            }
            changed.push((*owner, message.clone()));
        }
        changed
            .into_iter()
            .map(|(owner, message)| {
                let recent = message
                    .reactions
                    .iter()
                    .map(|(u, e)| {
                        tl::types::MessagePeerReaction {
                            big: false,
                            unread: false,
                            my: *u == owner,
                            peer_id: tl::types::PeerUser { user_id: *u }.into(),
                            date: now(),
                            reaction: tl::types::ReactionEmoji {
                                emoticon: e.clone(),
                            }
                            .into(),
                        }
                        .into()
                    })
                    .collect();
                let update = tl::types::UpdateMessageReactions {
                    peer: tl::types::PeerUser {
                        user_id: message.peer,
                    }
                    .into(),
                    msg_id: message.id,
                    top_msg_id: None,
                    saved_peer_id: None,
                    reactions: tl::types::MessageReactions {
                        min: false,
                        can_see_list: true,
                        reactions_as_tags: false,
                        results: Vec::new(),
                        recent_reactions: Some(recent),
                        top_reactors: None,
                    }
                    .into(),
                }
                .into();
                let updates = self.updates(owner, &[message.peer], update, now());
                (owner, updates)
            })
            .collect()
    }

    /// Pushes `updates` to every connection of the key `key` (signed in or not).
    pub fn push_to_key(&self, key: [u8; 8], updates: &tl::enums::Updates) {
        let bytes = updates.to_bytes();
        for connection in self.connections.values().filter(|c| c.key == key) {
            let _ = connection.push.send(Some(bytes.clone()));
        }
    }

    /// Pushes `updates` to every connection signed in as `user`.
    pub fn push(&self, user: i64, updates: &tl::enums::Updates) {
        let bytes = updates.to_bytes();
        for connection in self.connections.values() {
            if self.keys.get(&connection.key).and_then(|(_, u)| *u) == Some(user) {
                let _ = connection.push.send(Some(bytes.clone()));
            }
        }
    }

    /// Pushes each owner's updates to them, except `me`'s, which are returned (the answer to
    /// `me`'s request); `None` if `me` had none.
    pub fn push_all_but(&self, me: i64, all: Vec<(i64, tl::enums::Updates)>) -> Option<tl::enums::Updates> {
        let mut answer = None;
        for (owner, updates) in all {
            if owner == me {
                answer = Some(updates);
            } else {
                self.push(owner, &updates);
            }
        }
        answer
    }

    /// The `updates` that tell `owner` about a new message in their box.
    pub fn new_message_updates(&self, owner: i64, message: &Stored) -> tl::enums::Updates {
        let users = [message.peer, owner]
            .into_iter()
            .map(|id| self.user_tl(owner, id))
            .collect();
        tl::types::Updates {
            updates: vec![tl::types::UpdateNewMessage {
                message: super::tl_build::message(owner, message),
                pts: message.pts,
                pts_count: 1,
            }
            .into()],
            users,
            chats: Vec::new(),
            date: message.date,
            seq: 0,
        }
        .into()
    }
}
