//! The JSON the test network's server and client exchange over HTTP.
//!
//! Only the client half ([`super::client`], [`super::login`]) and the server half
//! ([`super::server`]) use these types; tests use the Rust API on [`super::TestNet`].

use serde::{Deserialize, Serialize};

use bridge_core::network::events::MediaKind;

/// An event queued for one login, with its sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqEvent {
    /// Monotonically increasing per login, starting at 1.
    pub seq: u64,
    /// Whether the event's chat is a one-to-one chat (the client then names the login as
    /// the chat's receiver).
    #[serde(default)]
    pub direct: bool,
    /// The event.
    pub event: WireEvent,
}

/// A batch answered by `GET /logins/{login}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// Events in order; empty when the long poll timed out.
    pub events: Vec<SeqEvent>,
}

/// Query of `GET /logins/{login}/events`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventsQuery {
    /// Only events with a higher sequence number (the acknowledged cursor applies too).
    #[serde(default)]
    pub after: u64,
    /// How long to hold the request when nothing is queued (default 20 s, at most 25 s).
    pub timeout_ms: Option<u64>,
}

/// Body of `POST /logins/{login}/ack`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ack {
    /// Everything up to and including this sequence number was handled.
    pub seq: u64,
}

/// A media attachment as the server describes it; the bytes are at `GET /media/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMedia {
    /// The media ID.
    pub id: String,
    /// The kind.
    pub kind: MediaKind,
    /// The file name.
    pub filename: String,
    /// MIME type.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
}

/// A message as stored in a chat's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMessage {
    /// The chat.
    pub chat: String,
    /// The message ID (unique on the server).
    pub id: String,
    /// The sender's user ID.
    pub sender: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Plain text (the caption of a media message).
    pub text: String,
    /// HTML rendering, if formatted.
    pub html: Option<String>,
    /// Users mentioned.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// The attachment, if any.
    pub media: Option<WireMedia>,
    /// The message replied to.
    pub reply_to: Option<String>,
    /// Whether the message was deleted.
    #[serde(default)]
    pub deleted: bool,
}

/// Something that happened on the test network, as queued for a login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireEvent {
    /// A new message.
    Message {
        /// The message.
        message: WireMessage,
    },
    /// A message was edited.
    Edit {
        /// The chat.
        chat: String,
        /// The message.
        id: String,
        /// Who edited it.
        sender: String,
        /// When.
        timestamp: i64,
        /// New text.
        text: String,
        /// New HTML.
        html: Option<String>,
    },
    /// A message was deleted.
    Delete {
        /// The chat.
        chat: String,
        /// The message.
        id: String,
        /// Who deleted it.
        sender: String,
    },
    /// A reaction was added or removed.
    Reaction {
        /// The chat.
        chat: String,
        /// The message reacted to.
        target: String,
        /// Who reacted.
        sender: String,
        /// The emoji.
        emoji: String,
        /// `true` to add, `false` to remove.
        add: bool,
        /// When.
        timestamp: i64,
    },
    /// Someone is typing (`timeout_ms` > 0) or stopped.
    Typing {
        /// The chat.
        chat: String,
        /// Who.
        sender: String,
        /// How long it lasts.
        timeout_ms: u64,
    },
    /// Someone read up to a message.
    Read {
        /// The chat.
        chat: String,
        /// Who.
        sender: String,
        /// The last message read.
        up_to: String,
    },
    /// A chat's info changed.
    ChatInfo {
        /// The new info.
        chat: WireChat,
    },
    /// A user's info changed.
    UserInfo {
        /// The new info.
        user: WireUser,
    },
    /// The chat was deleted, or the login was removed from it.
    ChatDeleted {
        /// The chat.
        chat: String,
    },
}

impl WireEvent {
    /// The chat the event is about, if any.
    pub fn chat_id(&self) -> Option<&str> {
        match self {
            Self::Message { message } => Some(&message.chat),
            Self::Edit { chat, .. }
            | Self::Delete { chat, .. }
            | Self::Reaction { chat, .. }
            | Self::Typing { chat, .. }
            | Self::Read { chat, .. }
            | Self::ChatDeleted { chat } => Some(chat),
            Self::ChatInfo { chat } => Some(&chat.id),
            Self::UserInfo { .. } => None,
        }
    }
}

/// A chat as `GET /chats/{id}` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireChat {
    /// The chat ID.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its topic.
    pub topic: Option<String>,
    /// Avatar media ID.
    pub avatar: Option<String>,
    /// One-to-one chat.
    pub is_direct: bool,
    /// Member user IDs.
    pub members: Vec<String>,
    /// Members who are admins.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Members' names in this chat only (user ID → nickname).
    #[serde(default)]
    pub nicknames: std::collections::BTreeMap<String, String>,
}

/// A user as `GET /users/{id}` describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUser {
    /// The user ID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Avatar media ID.
    pub avatar: Option<String>,
    /// Whether the user is a bot.
    #[serde(default)]
    pub is_bot: bool,
}

/// One entry of `GET /logins/{login}/chats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireChatRef {
    /// The chat ID.
    pub id: String,
    /// One-to-one chat.
    pub is_direct: bool,
    /// The latest message's ID, if any.
    #[serde(default)]
    pub last_message: Option<String>,
    /// The latest message's timestamp (0 without messages).
    #[serde(default)]
    pub last_timestamp: i64,
}

/// Query of `GET /chats/{id}/messages` and `GET /logins/{login}/chats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PageQuery {
    /// Only messages older than this one.
    pub before: Option<String>,
    /// At most this many (default 50).
    pub limit: Option<usize>,
    /// Only chats whose latest message is newer than this (ms).
    pub since: Option<i64>,
}

/// The content of a message or edit the bridge sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireOutgoing {
    /// Text.
    Text {
        /// Plain text.
        body: String,
        /// HTML.
        html: Option<String>,
        /// Mentioned user IDs.
        #[serde(default)]
        mentions: Vec<String>,
        /// `/me`.
        #[serde(default)]
        emote: bool,
    },
    /// A file.
    Media {
        /// The kind.
        kind: MediaKind,
        /// Base64 (standard) of the bytes.
        data: String,
        /// File name.
        filename: String,
        /// MIME type.
        mime: String,
        /// Caption.
        caption: Option<String>,
    },
    /// A location.
    Location {
        /// Degrees.
        latitude: f64,
        /// Degrees.
        longitude: f64,
    },
}

/// Body of `POST /logins/{login}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The chat.
    pub chat: String,
    /// The content.
    pub content: WireOutgoing,
    /// The message replied to.
    pub reply_to: Option<String>,
    /// The thread root.
    pub thread_root: Option<String>,
    /// The relayed Matrix user's name.
    pub relayed_from: Option<String>,
    /// The public URL of the sender's avatar.
    #[serde(default)]
    pub avatar_url: Option<String>,
}

/// Answer of `POST /logins/{login}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// The new message's ID.
    pub id: String,
    /// Its timestamp.
    pub timestamp: i64,
}

/// Body of `PUT /logins/{login}/messages/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditRequest {
    /// The chat.
    pub chat: String,
    /// The new content.
    pub content: WireOutgoing,
}

/// Query naming the chat of a delete or reaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatQuery {
    /// The chat.
    pub chat: String,
}

/// Body of `POST /logins/{login}/typing`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypingRequest {
    /// The chat.
    pub chat: String,
    /// Started or stopped.
    pub typing: bool,
}

/// Body of `POST /logins/{login}/read`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The chat.
    pub chat: String,
    /// The last message read.
    pub up_to: String,
}

/// Body of `POST /logins/{login}/resolve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveRequest {
    /// A user ID or a user's exact name.
    pub identifier: String,
}

/// Answer of `POST /logins/{login}/resolve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveResponse {
    /// The user.
    pub user: String,
    /// The DM chat with them (created if there was none).
    pub chat: String,
}

/// An error body: `{"error": "..."}`, with 400 for bad input, 401 for a bad token,
/// 404 for unknown objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    /// What went wrong, for the user.
    pub error: String,
}

/// Body of `POST /login/{flow}`'s follow-ups: the values of a user-input step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoginInput {
    /// Values by field ID.
    pub fields: std::collections::BTreeMap<String, String>,
}

/// Query of `GET /login/process/{id}/wait`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoginWaitQuery {
    /// The QR code the client shows now; the server answers when it differs.
    pub shown: Option<String>,
    /// How long to hold the request (default 20 s).
    pub timeout_ms: Option<u64>,
}

/// A step of a login process as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum WireLoginStep {
    /// Asks for the phone number.
    Phone,
    /// Asks for the code sent to the phone.
    Code,
    /// Asks for the account password.
    Password,
    /// Asks for a bot token.
    Token,
    /// Shows a QR code until it is scanned or refreshed.
    Qr {
        /// The code's content.
        code: String,
    },
    /// Done.
    Complete {
        /// The account (and login) ID.
        account: String,
        /// The account's name.
        name: String,
        /// The session token.
        token: String,
    },
}

/// Answer of `POST /login/{flow}`: the process ID and its first step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStarted {
    /// The process ID for later calls.
    pub process: String,
    /// The first step.
    pub step: WireLoginStep,
}
