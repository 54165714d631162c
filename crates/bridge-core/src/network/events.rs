//! What a network tells the core: [`RemoteEvent`]s, with the message contents, chat and
//! user information they carry.

use serde::{Deserialize, Serialize};

use super::ids::{EmojiId, LoginId, PartId, RemoteChatId, RemoteMessageId, RemoteUserId};

/// Milliseconds since the Unix epoch, as the network reports them.
pub type Timestamp = i64;

/// Something that happened on the remote network, reported by a login's client through
/// its [`EventSender`]. The core turns each into Matrix actions in the chat's portal;
/// events of one chat are applied in the order they were sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RemoteEvent {
    /// A new message.
    Message {
        /// Where.
        chat: ChatRef,
        /// The message's ID.
        id: RemoteMessageId,
        /// Who sent it.
        sender: Sender,
        /// When.
        timestamp: Timestamp,
        /// The message, in one or more parts (a caption and three images, say).
        parts: Vec<MessagePart>,
        /// The message it replies to, if any.
        reply_to: Option<RemoteMessageId>,
        /// The thread root, if it was sent in a thread.
        thread_root: Option<RemoteMessageId>,
    },
    /// A message was edited; `parts` replace the old ones with the same part IDs.
    Edit {
        /// Where.
        chat: ChatRef,
        /// The edited message.
        id: RemoteMessageId,
        /// Who edited it.
        sender: Sender,
        /// When.
        timestamp: Timestamp,
        /// The new content.
        parts: Vec<MessagePart>,
    },
    /// A message was deleted (recalled, unsent).
    Delete {
        /// Where.
        chat: ChatRef,
        /// The deleted message.
        id: RemoteMessageId,
        /// Who deleted it.
        sender: Sender,
    },
    /// A reaction was added.
    ReactionAdd {
        /// Where.
        chat: ChatRef,
        /// The message reacted to.
        target: RemoteMessageId,
        /// Who reacted.
        sender: Sender,
        /// The network's emoji ID.
        emoji_id: EmojiId,
        /// The emoji as text (or a shortcode for custom emoji).
        emoji: String,
        /// When.
        timestamp: Timestamp,
    },
    /// A reaction was removed.
    ReactionRemove {
        /// Where.
        chat: ChatRef,
        /// The message the reaction was on.
        target: RemoteMessageId,
        /// Who had reacted.
        sender: Sender,
        /// The network's emoji ID.
        emoji_id: EmojiId,
    },
    /// Someone is typing (or stopped).
    Typing {
        /// Where.
        chat: ChatRef,
        /// Who.
        sender: Sender,
        /// How long the typing notification lasts, 0 to stop.
        timeout_ms: u64,
    },
    /// Someone read up to a message.
    ReadReceipt {
        /// Where.
        chat: ChatRef,
        /// Who.
        sender: Sender,
        /// The last message read.
        up_to: RemoteMessageId,
    },
    /// A chat's name, topic, avatar or members changed (or are reported for the first time).
    ChatInfoChanged {
        /// Which chat.
        chat: ChatRef,
        /// The new information; `None` fields are unchanged.
        info: ChatInfo,
    },
    /// A user's name or avatar changed.
    UserInfoChanged {
        /// Who.
        user: RemoteUserId,
        /// The new information.
        info: UserInfo,
    },
    /// A new chat the user should see now (a channel created in a server bridged in full):
    /// its portal is created at once, before any message. Nothing happens if it exists.
    ChatCreated {
        /// Which chat.
        chat: ChatRef,
    },
    /// The chat was deleted or the login left it.
    ChatDeleted {
        /// Which chat.
        chat: ChatRef,
    },
    /// The login's connection state changed; shown to the user in the management room.
    StateChanged(LoginState),
    /// Something the login's owner must know (a sending limit reached, say): posted as a
    /// notice in their management room.
    Notice(String),
}

/// Identifies a chat from one login's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatRef {
    /// The chat's ID on the network.
    pub id: RemoteChatId,
    /// For chats that exist once per login (DMs on most networks), the login that sees
    /// it; `None` for chats shared by every login in them (groups, channels).
    pub receiver: Option<LoginId>,
}

/// Who sent an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The remote user.
    pub user: RemoteUserId,
    /// Whether it is the login's own account (sent from another device).
    pub is_from_me: bool,
}

/// One part of a remote message; becomes one Matrix event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagePart {
    /// Stable ID of the part within the message (`""` for single-part messages).
    pub id: PartId,
    /// The content.
    pub content: MessageContent,
}

/// The content of one message part, already converted to Matrix formatting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MessageContent {
    /// Text, with an optional HTML rendering.
    Text {
        /// Plain text.
        body: String,
        /// Matrix HTML, if the message was formatted.
        html: Option<String>,
        /// Remote users mentioned, for pills and `m.mentions`.
        mentions: Vec<RemoteUserId>,
    },
    /// A notice from the network or the bridge itself (a thing that can't be bridged).
    Notice {
        /// Plain text.
        body: String,
    },
    /// An image, video, audio clip, file or sticker.
    Media(Media),
    /// A location.
    Location {
        /// Latitude in degrees.
        latitude: f64,
        /// Longitude in degrees.
        longitude: f64,
        /// A description.
        description: String,
    },
}

/// Kinds of media, which decide the Matrix `msgtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// `m.image`.
    Image,
    /// `m.video`.
    Video,
    /// `m.audio`.
    Audio,
    /// A voice message (`m.audio` with the voice flag).
    Voice,
    /// `m.file`.
    File,
    /// `m.sticker`.
    Sticker,
}

/// A media attachment. The bytes are fetched by the network client when the core asks
/// ([`super::NetworkClient::download_media`]) so that large files stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// The kind.
    pub kind: MediaKind,
    /// An opaque reference the network's client can download.
    pub source: String,
    /// The file name.
    pub filename: String,
    /// MIME type, if known.
    pub mime: Option<String>,
    /// Size in bytes, if known (checked against the homeserver's upload limit first).
    pub size: Option<u64>,
    /// Width and height for images and videos.
    pub dimensions: Option<(u32, u32)>,
    /// Duration for audio and video.
    pub duration_ms: Option<u64>,
    /// A caption sent with the media.
    pub caption: Option<String>,
}

/// Information about a chat; `None` fields are unknown or unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatInfo {
    /// The chat's name (a group's title; for DMs the core uses the other person's name).
    pub name: Option<String>,
    /// The topic or description.
    pub topic: Option<String>,
    /// An avatar reference the client can download, with a stable hash or ID to detect
    /// changes without downloading.
    pub avatar: Option<AvatarRef>,
    /// Whether the chat is a one-to-one conversation.
    pub is_direct: bool,
    /// The members, when known.
    pub members: Option<Vec<ChatMember>>,
    /// Whether `members` names only some of the members (the sender of a message with
    /// their name in a large chat, say): those join and get their names in the room, and
    /// nobody leaves. When `false`, members are everyone, and ghosts not listed leave.
    #[serde(default)]
    pub members_partial: bool,
    /// The parent chat (a Discord guild, say), for spaces.
    pub parent: Option<RemoteChatId>,
}

/// A member of a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMember {
    /// Who.
    pub user: RemoteUserId,
    /// Their name in this chat, if it overrides their global name (a group alias).
    pub nickname: Option<String>,
    /// Whether they are an admin of the chat.
    pub is_admin: bool,
}

/// Information about a remote user, for their ghost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The display name; networks must give a real name whenever they know one.
    pub name: Option<String>,
    /// The avatar.
    pub avatar: Option<AvatarRef>,
    /// Whether the user is a bot.
    pub is_bot: bool,
}

/// A reference to an avatar image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvatarRef {
    /// A stable ID of this avatar version; the image is fetched again only when it changes.
    pub id: String,
    /// The reference the client downloads from (`None` removes the avatar).
    pub source: Option<String>,
}

/// A login's connection state, as shown by `ping` and reported in the management room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LoginState {
    /// Connecting or reconnecting.
    Connecting,
    /// Connected and receiving events.
    Connected,
    /// Temporarily disconnected; the client is retrying by itself.
    TransientDisconnect {
        /// Why, for the user.
        reason: String,
    },
    /// The session is no longer valid; the user must log in again.
    BadCredentials {
        /// Why, for the user.
        reason: String,
    },
    /// Logged out on purpose.
    LoggedOut,
}

/// The channel through which a login's client reports [`RemoteEvent`]s to the core.
/// Cheap to clone; sending waits when the core is behind (backpressure).
///
/// It also tells the network how the core names ghosts, so that converters can write
/// mentions of remote users as Matrix pills ([`EventSender::mention_pill`]).
#[derive(Clone, Debug)]
pub struct EventSender {
    login: LoginId,
    tx: tokio::sync::mpsc::Sender<(LoginId, RemoteEvent)>,
    tracked: Option<tokio::sync::mpsc::Sender<TrackedEvent>>,
    ghosts: crate::bridge::ids::GhostNamer,
    owner: Option<ruma::OwnedUserId>,
    store: super::LoginStore,
}

impl EventSender {
    /// A sender for `login` into the core's queue `tx`; `ghosts` maps remote users to ghosts.
    pub fn new(
        login: LoginId,
        tx: tokio::sync::mpsc::Sender<(LoginId, RemoteEvent)>,
        ghosts: crate::bridge::ids::GhostNamer,
    ) -> Self {
        let store = super::LoginStore::in_memory(&login);
        Self { login, tx, ghosts, owner: None, store, tracked: None }
    }

    /// Reports [`EventSender::send_tracked`] events through `tracked` (the bridge's queue
    /// that answers once each event is applied); without it they are only queued.
    pub fn with_tracking(mut self, tracked: tokio::sync::mpsc::Sender<TrackedEvent>) -> Self {
        self.tracked = Some(tracked);
        self
    }

    /// Uses `store` for the login's state (the bridge gives its database-backed store;
    /// without this call the state lives in memory).
    pub fn with_store(mut self, store: super::LoginStore) -> Self {
        self.store = store;
        self
    }

    /// The login's own persistent state (see [`super::LoginStore`]).
    pub fn store(&self) -> &super::LoginStore {
        &self.store
    }

    /// Names the Matrix user who owns the login, so that mentions of the login's own remote
    /// account (whose user ID is the login ID) pill the real Matrix user, not a ghost.
    pub fn with_owner(mut self, owner: ruma::OwnedUserId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// The Matrix user to mention for a remote user: the login's owner for the login's own
    /// account, else the remote user's ghost.
    pub fn mention_target(&self, user: &RemoteUserId) -> Option<ruma::OwnedUserId> {
        match &self.owner {
            Some(owner) if user.as_str() == self.login.as_str() => Some(owner.clone()),
            _ => self.ghost_user_id(user),
        }
    }

    /// The Matrix ID of a remote user's ghost.
    pub fn ghost_user_id(&self, user: &RemoteUserId) -> Option<ruma::OwnedUserId> {
        self.ghosts.user_id(user.as_str())
    }

    /// The remote user a ghost stands for (the inverse of [`EventSender::ghost_user_id`]):
    /// lets a network's HTML → markup converter turn the pills (`https://matrix.to/#/@…`)
    /// in [`super::OutgoingContent::Text::html`] into its own mentions. `None` for a Matrix
    /// user who is not one of this bridge's ghosts.
    pub fn remote_user_id(&self, user: &ruma::UserId) -> Option<RemoteUserId> {
        if self.owner.as_deref() == Some(user) {
            return Some(RemoteUserId(self.login.as_str().to_owned()));
        }
        self.ghosts.remote_id(user).map(RemoteUserId)
    }

    /// An HTML pill mentioning a remote user (`<a href="https://matrix.to/#/@…">name</a>`):
    /// their ghost, or the login's owner for the login's own account (see
    /// [`EventSender::mention_target`]); the escaped name alone if there is no Matrix ID.
    pub fn mention_pill(&self, user: &RemoteUserId, name: &str) -> String {
        let name = name.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        match self.mention_target(user) {
            Some(id) => format!("<a href=\"https://matrix.to/#/{id}\">{name}</a>"),
            None => name,
        }
    }

    /// The login this sender reports for.
    pub fn login(&self) -> &LoginId {
        &self.login
    }

    /// Reports an event; returns `false` if the bridge is shutting down.
    pub async fn send(&self, event: RemoteEvent) -> bool {
        self.tx.send((self.login.clone(), event)).await.is_ok()
    }

    /// Reports an event and returns a handle that resolves once the core has applied it in
    /// its portal — or kept it in the database to apply later. A network that acknowledges
    /// events upstream (a replay queue, an update state, delivery receipts) acknowledges
    /// only after that, so that nothing is lost when the bridge crashes. `None` if the
    /// bridge is shutting down. A network uses either this or [`EventSender::send`] for its
    /// events, not both: the two are not ordered with each other.
    pub async fn send_tracked(&self, event: RemoteEvent) -> Option<Applied> {
        let Some(tracked) = &self.tracked else {
            // Outside a bridge (unit tests): queued is as far as it goes.
            let (done, rx) = tokio::sync::oneshot::channel();
            let _ = done.send(());
            return self.send(event).await.then_some(Applied(rx));
        };
        let (done, rx) = tokio::sync::oneshot::channel();
        tracked.send(TrackedEvent { login: self.login.clone(), event, done }).await.ok()?;
        Some(Applied(rx))
    }
}

/// An event reported with [`EventSender::send_tracked`], as the core receives it.
#[derive(Debug)]
pub struct TrackedEvent {
    /// The login that reported it.
    pub login: LoginId,
    /// The event.
    pub event: RemoteEvent,
    /// Answered once the event is applied (or kept for later).
    pub done: tokio::sync::oneshot::Sender<()>,
}

/// Resolves once the core has applied a tracked event (see [`EventSender::send_tracked`]).
#[derive(Debug)]
pub struct Applied(tokio::sync::oneshot::Receiver<()>);

impl Applied {
    /// Waits until the event is applied; `false` if the bridge stopped before that (the
    /// event must then be reported again after the restart).
    pub async fn wait(self) -> bool {
        self.0.await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_account_mentions_pill_the_owner() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let ghosts = crate::bridge::ids::GhostNamer::new("net_{id}", "example.com");
        let owner = ruma::OwnedUserId::try_from("@alice:example.com").expect("valid");
        let sender = EventSender::new(LoginId::from("me"), tx, ghosts).with_owner(owner.clone());
        assert_eq!(
            sender.mention_pill(&RemoteUserId::from("me"), "Me <3"),
            "<a href=\"https://matrix.to/#/@alice:example.com\">Me &lt;3</a>"
        );
        assert_eq!(
            sender.mention_pill(&RemoteUserId::from("bob"), "Bob"),
            "<a href=\"https://matrix.to/#/@net_bob:example.com\">Bob</a>"
        );
        assert_eq!(sender.remote_user_id(&owner), Some(RemoteUserId::from("me")));
        let ghost = ruma::OwnedUserId::try_from("@net_bob:example.com").expect("valid");
        assert_eq!(sender.remote_user_id(&ghost), Some(RemoteUserId::from("bob")));
    }
}
