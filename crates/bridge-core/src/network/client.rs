//! The per-login client ([`NetworkClient`]) and its optional capabilities.
//!
//! The required trait is small: connect, disconnect, send a message, describe chats and
//! users. Everything a network may lack (edits, reactions, typing, …) is a separate
//! trait reached through an accessor returning `Option`; on `None` the core tells the
//! user the feature is not supported on this network and hides the related commands.

use bytes::Bytes;

use super::{
    events::{ChatInfo, ChatRef, LoginState, MediaKind, UserInfo},
    ids::{EmojiId, PartId, RemoteChatId, RemoteMessageId, RemoteUserId},
    NetworkError,
};

/// A Matrix message on its way to the network, already resolved by the core.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    /// The chat to send to.
    pub chat: ChatRef,
    /// The content.
    pub content: OutgoingContent,
    /// The remote message this replies to, if the Matrix event was a reply to a bridged message.
    pub reply_to: Option<RemoteMessageId>,
    /// The thread root, if sent in a thread.
    pub thread_root: Option<RemoteMessageId>,
    /// In relay mode, the Matrix user's display name. The core has already applied
    /// `bridge.relay.message_format` to the text (or a file's caption); a network that can
    /// show the name natively (a webhook name) may use this as well.
    pub relayed_from: Option<String>,
    /// A public URL of the Matrix sender's avatar (relayed or not), for networks that show
    /// it natively (a webhook's avatar). Set only when `appservice.public_media` is enabled
    /// and the sender has an avatar; fetching it needs no token.
    pub avatar_url: Option<String>,
}

/// The content of an outgoing message.
#[derive(Debug, Clone, PartialEq)]
pub enum OutgoingContent {
    /// Text; `html` is the Matrix HTML the network converts to its markup.
    Text {
        /// Plain text.
        body: String,
        /// Matrix HTML, if formatted.
        html: Option<String>,
        /// Remote users mentioned, in order of their first pill in `html`, then those only
        /// listed in `m.mentions`. The pills in `html` keep their `https://matrix.to/#/@ghost`
        /// links; [`super::EventSender::remote_user_id`] maps a link's user back.
        mentions: Vec<RemoteUserId>,
        /// Whether it was an emote (`/me`).
        emote: bool,
    },
    /// A file downloaded from the homeserver.
    Media {
        /// The kind.
        kind: MediaKind,
        /// The bytes.
        data: Bytes,
        /// The file name.
        filename: String,
        /// MIME type.
        mime: String,
        /// A caption.
        caption: Option<String>,
    },
    /// A location.
    Location {
        /// Latitude in degrees.
        latitude: f64,
        /// Longitude in degrees.
        longitude: f64,
    },
}

/// What the network assigned to a sent message, for the message map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The message's remote ID.
    pub id: RemoteMessageId,
    /// Its part ID, if the network splits messages.
    pub part: PartId,
    /// The network's timestamp, in milliseconds.
    pub timestamp: i64,
}

/// One login's connection to the network. Created by
/// [`super::NetworkConnector::load_login`]; reports what happens through the
/// [`super::events::EventSender`] it was given.
#[async_trait::async_trait]
pub trait NetworkClient: Send + Sync + 'static {
    /// Connects and starts reporting events. Called once after the login is loaded (at
    /// startup or after a login completes). Must return quickly: reconnecting with
    /// backoff happens in the client's own task, reported as [`LoginState`] events.
    async fn connect(&self);

    /// Disconnects; called at shutdown and before logout. Must not fail.
    async fn disconnect(&self);

    /// The current connection state, for `ping`.
    fn state(&self) -> LoginState;

    /// Anything else the login's owner should see in `ping` (messages waiting to be sent,
    /// say), as one line; `None` when there is nothing to add. Must not block.
    fn status(&self) -> Option<String> {
        None
    }

    /// Sends a message and returns its remote ID.
    async fn send_message(&self, message: OutgoingMessage) -> Result<SentMessage, NetworkError>;

    /// Describes a chat (name, topic, avatar, members), for creating or syncing its portal.
    async fn chat_info(&self, chat: &ChatRef) -> Result<ChatInfo, NetworkError>;

    /// Describes a user, for their ghost.
    async fn user_info(&self, user: &RemoteUserId) -> Result<UserInfo, NetworkError>;

    /// Downloads media named by a `source` the network put in a
    /// [`super::events::Media`] or [`super::events::AvatarRef`].
    async fn download_media(&self, source: &str) -> Result<(Bytes, Option<String>), NetworkError>;

    /// Logs the remote session out (invalidates it on the network). Called by `logout`.
    async fn logout(&self) -> Result<(), NetworkError>;

    /// Edits, if the network has them.
    fn edits(&self) -> Option<&dyn EditHandler> {
        None
    }

    /// Deletions, if the network has them.
    fn deletions(&self) -> Option<&dyn DeleteHandler> {
        None
    }

    /// Reactions, if the network has them.
    fn reactions(&self) -> Option<&dyn ReactionHandler> {
        None
    }

    /// Typing notifications and read receipts, if the network has them.
    fn presence(&self) -> Option<&dyn PresenceHandler> {
        None
    }

    /// History fetching, for backfill and catch-up, if the network has it.
    fn history(&self) -> Option<&dyn HistoryHandler> {
        None
    }

    /// Starting chats from an identifier (`start-chat`), if the network allows it.
    fn chat_starter(&self) -> Option<&dyn ChatStarter> {
        None
    }
}

/// Editing sent messages.
#[async_trait::async_trait]
pub trait EditHandler: Send + Sync {
    /// Replaces the content of a message this login sent.
    async fn edit_message(
        &self,
        chat: &ChatRef,
        id: &RemoteMessageId,
        content: OutgoingContent,
    ) -> Result<(), NetworkError>;
}

/// Deleting messages.
#[async_trait::async_trait]
pub trait DeleteHandler: Send + Sync {
    /// Deletes (recalls) a message.
    async fn delete_message(&self, chat: &ChatRef, id: &RemoteMessageId) -> Result<(), NetworkError>;
}

/// Reacting to messages.
#[async_trait::async_trait]
pub trait ReactionHandler: Send + Sync {
    /// Converts a Matrix reaction key (an emoji) to the network's emoji ID; `None` if the
    /// network cannot react with it.
    fn emoji_id(&self, key: &str) -> Option<EmojiId>;

    /// For a custom (image) emoji of the network: its shortcode (`blob`, without colons) and
    /// an image source for [`NetworkClient::download_media`]. The core then reacts on
    /// Matrix with the uploaded image's `mxc://` URI as the key (and the shortcode in
    /// `com.beeper.reaction.shortcode`), and maps that key back to this emoji ID when a
    /// Matrix user reacts with it. `None` (the default) for plain unicode emoji.
    fn emoji_image(&self, emoji: &EmojiId) -> Option<(String, String)> {
        let _ = emoji;
        None
    }

    /// Adds a reaction.
    async fn add_reaction(&self, chat: &ChatRef, target: &RemoteMessageId, emoji: &EmojiId) -> Result<(), NetworkError>;

    /// Removes a reaction this login added.
    async fn remove_reaction(&self, chat: &ChatRef, target: &RemoteMessageId, emoji: &EmojiId) -> Result<(), NetworkError>;
}

/// Typing notifications and read receipts.
#[async_trait::async_trait]
pub trait PresenceHandler: Send + Sync {
    /// Starts (`true`) or stops typing in a chat.
    async fn set_typing(&self, chat: &ChatRef, typing: bool) -> Result<(), NetworkError>;

    /// Marks a chat read up to a message.
    async fn mark_read(&self, chat: &ChatRef, up_to: &RemoteMessageId) -> Result<(), NetworkError>;
}

/// Fetching past messages.
#[async_trait::async_trait]
pub trait HistoryHandler: Send + Sync {
    /// Returns up to `limit` messages of `chat` older than `before` (newest first when
    /// `before` is `None`), as [`super::events::RemoteEvent::Message`] events.
    async fn fetch_history(
        &self,
        chat: &ChatRef,
        before: Option<&RemoteMessageId>,
        limit: usize,
    ) -> Result<Vec<super::events::RemoteEvent>, NetworkError>;

    /// The chats with recent activity, newest first, for creating portals after login.
    async fn recent_chats(&self, limit: usize) -> Result<Vec<ChatRef>, NetworkError>;

    /// The chats whose latest message is newer than `since` (ms since the Unix epoch), as
    /// far as the network can tell without a request per chat (a channel list, a dialog
    /// list, the gateway's cache). After a login connects, the core catches up only these,
    /// and only those whose latest message it has not bridged; a chat the login can no
    /// longer see is simply not listed, so it is never fetched.
    async fn chats_with_activity(&self, since: i64) -> Result<Vec<ChatActivity>, NetworkError>;
}

/// A chat with messages newer than some time, and its latest message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatActivity {
    /// The chat.
    pub chat: ChatRef,
    /// Its latest message, if the network says which (else the chat is always caught up).
    pub latest: Option<RemoteMessageId>,
    /// When that message was sent (ms since the Unix epoch).
    pub timestamp: i64,
}

/// Resolving an identifier (phone number, username) to a chat.
#[async_trait::async_trait]
pub trait ChatStarter: Send + Sync {
    /// Resolves `identifier` to a user and the DM chat with them.
    async fn resolve_identifier(&self, identifier: &str) -> Result<(RemoteUserId, RemoteChatId), NetworkError>;
}
