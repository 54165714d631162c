//! [`TestClient`]: one login's connection to the test network. A task long-polls the
//! login's event queue, converts the events to [`RemoteEvent`]s, hands them to the core and
//! acknowledges them; it reconnects with backoff and reports its [`LoginState`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bridge_core::backoff::Backoff;
use bridge_core::network::client::{
    ChatActivity, ChatStarter, DeleteHandler, EditHandler, HistoryHandler, PresenceHandler, ReactionHandler,
};
use bridge_core::network::events::{
    AvatarRef, ChatInfo, ChatMember, ChatRef, LoginState, Media, MessageContent, MessagePart, Sender, UserInfo,
};
use bridge_core::network::{
    EmojiId, EventSender, LoginId, NetworkClient, NetworkError, OutgoingContent, OutgoingMessage, PartId,
    RemoteChatId, RemoteEvent, RemoteMessageId, RemoteUserId, SentMessage,
};
use bytes::Bytes;
use reqwest::Method;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connector::{CallError, Http, CALL_TIMEOUT};
use super::wire::{
    Ack, EditRequest, EventBatch, ReadRequest, ResolveRequest, ResolveResponse, SendRequest, SendResponse, SeqEvent,
    TypingRequest, WireChat, WireChatRef, WireEvent, WireMessage, WireOutgoing, WireUser,
};

/// How long the server holds one events request.
const POLL_HOLD: Duration = Duration::from_secs(20);

/// One login's client. Built by [`super::TestConnector`]'s `load_login`.
pub struct TestClient {
    shared: Arc<Shared>,
    task: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

/// What the client and its poll task share.
struct Shared {
    http: Http,
    login: LoginId,
    token: String,
    events: EventSender,
    state: Mutex<LoginState>,
}

impl TestClient {
    pub(crate) fn new(http: Http, login: LoginId, token: String, events: EventSender) -> Self {
        let shared = Shared { http, login, token, events, state: Mutex::new(LoginState::Connecting) };
        Self { shared: Arc::new(shared), task: Mutex::new(None) }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&dyn super::connector::erased::Body>,
    ) -> Result<T, NetworkError> {
        Ok(self.shared.http.call(method, segments, Some(&self.shared.token), query, body, CALL_TIMEOUT).await?)
    }

    fn login(&self) -> &str {
        self.shared.login.as_str()
    }
}

impl Shared {
    /// Records a new state and reports it if its kind changed (or `always`); returns
    /// `false` if the core is gone.
    async fn report(&self, state: LoginState, always: bool) -> bool {
        let changed = {
            let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let changed = always || std::mem::discriminant(&*current) != std::mem::discriminant(&state);
            *current = state.clone();
            changed
        };
        !changed || self.events.send(RemoteEvent::StateChanged(state)).await
    }

    async fn poll(&self, after: u64, hold: Duration) -> Result<Vec<SeqEvent>, CallError> {
        let segments = ["logins", self.login.as_str(), "events"];
        let query = [("after", after.to_string()), ("timeout_ms", hold.as_millis().to_string())];
        let batch: EventBatch =
            self.http.call(Method::GET, &segments, Some(&self.token), &query, None, hold + CALL_TIMEOUT).await?;
        Ok(batch.events)
    }

    /// The poll loop; returns when cancelled, when the core is gone or when the token is bad.
    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut after = 0;
        let mut connected = false;
        if !self.report(LoginState::Connecting, true).await {
            return;
        }
        loop {
            // The first poll after (re)connecting returns at once, so Connected is prompt.
            let hold = if connected { POLL_HOLD } else { Duration::ZERO };
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                result = self.poll(after, hold) => result,
            };
            match result {
                Ok(batch) => {
                    if !connected {
                        connected = true;
                        backoff.reset();
                        if !self.report(LoginState::Connected, false).await {
                            return;
                        }
                    }
                    // Acknowledged to the network only once the bridge has applied them: a
                    // crash in between means they are delivered again, never lost.
                    let mut applied = Vec::with_capacity(batch.len());
                    for item in batch {
                        let Some(handle) = self.events.send_tracked(convert_event(&self.login, item.direct, item.event)).await else {
                            return;
                        };
                        applied.push((item.seq, handle));
                    }
                    for (seq, handle) in applied {
                        if !handle.wait().await {
                            return;
                        }
                        after = seq;
                    }
                    if after > 0 {
                        let segments = ["logins", self.login.as_str(), "ack"];
                        let ack: Result<serde_json::Value, _> = self
                            .http
                            .call(Method::POST, &segments, Some(&self.token), &[], Some(&Ack { seq: after }), CALL_TIMEOUT)
                            .await;
                        if let Err(error) = ack {
                            tracing::debug!(%error, "could not acknowledge test network events");
                        }
                    }
                }
                Err(CallError::Status { status: 401, message }) => {
                    let _ = self.report(LoginState::BadCredentials { reason: message }, false).await;
                    return;
                }
                Err(error) => {
                    connected = false;
                    tracing::debug!(%error, login = %self.login, "test network poll failed");
                    if !self.report(LoginState::TransientDisconnect { reason: error.to_string() }, false).await {
                        return;
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }
}

fn chat_ref(login: &LoginId, chat: &str, is_direct: bool) -> ChatRef {
    ChatRef { id: RemoteChatId::from(chat), receiver: is_direct.then(|| login.clone()) }
}

fn sender(login: &LoginId, user: &str) -> Sender {
    Sender { user: RemoteUserId::from(user), is_from_me: user == login.as_str() }
}

/// A text part.
fn text_part(text: String, html: Option<String>, mentions: Vec<String>) -> MessagePart {
    let mentions = mentions.into_iter().map(RemoteUserId::from).collect();
    MessagePart { id: PartId::from(""), content: MessageContent::Text { body: text, html, mentions } }
}

/// Converts a stored message to a [`RemoteEvent::Message`] in `chat`.
fn message_event(login: &LoginId, chat: ChatRef, m: WireMessage) -> RemoteEvent {
    let part = match m.media {
        Some(media) => MessagePart {
            id: PartId::from(""),
            content: MessageContent::Media(Media {
                kind: media.kind,
                source: media.id,
                filename: media.filename,
                mime: Some(media.mime),
                size: Some(media.size),
                dimensions: None,
                duration_ms: None,
                caption: (!m.text.is_empty()).then_some(m.text),
            }),
        },
        None => text_part(m.text, m.html, m.mentions),
    };
    RemoteEvent::Message {
        chat,
        id: RemoteMessageId::from(m.id),
        sender: sender(login, &m.sender),
        timestamp: m.timestamp,
        parts: vec![part],
        reply_to: m.reply_to.map(RemoteMessageId::from),
        thread_root: None,
    }
}

fn avatar(media: Option<String>) -> Option<AvatarRef> {
    media.map(|id| AvatarRef { source: Some(id.clone()), id })
}

fn chat_info(c: WireChat) -> ChatInfo {
    let members = c
        .members
        .iter()
        .map(|m| ChatMember { user: RemoteUserId::from(m.as_str()), nickname: c.nicknames.get(m).cloned(), is_admin: c.admins.contains(m) })
        .collect();
    ChatInfo { name: c.name, topic: c.topic, avatar: avatar(c.avatar), is_direct: c.is_direct, members: Some(members), members_partial: false, parent: None }
}

fn user_info(u: WireUser) -> UserInfo {
    UserInfo { name: Some(u.name), avatar: avatar(u.avatar), is_bot: u.is_bot }
}

/// Converts one wire event for `login`; `direct` says whether its chat is a DM (the
/// server stamps it on each queued event), which makes the login the chat's receiver.
fn convert_event(login: &LoginId, is_direct: bool, event: WireEvent) -> RemoteEvent {
    match event {
        WireEvent::Message { message } => {
            let chat = chat_ref(login, &message.chat, is_direct);
            message_event(login, chat, message)
        }
        WireEvent::Edit { chat, id, sender: who, timestamp, text, html } => RemoteEvent::Edit {
            chat: chat_ref(login, &chat, is_direct),
            id: RemoteMessageId::from(id),
            sender: sender(login, &who),
            timestamp,
            parts: vec![text_part(text, html, Vec::new())],
        },
        WireEvent::Delete { chat, id, sender: who } => RemoteEvent::Delete {
            chat: chat_ref(login, &chat, is_direct),
            id: RemoteMessageId::from(id),
            sender: sender(login, &who),
        },
        WireEvent::Reaction { chat, target, sender: who, emoji, add: true, timestamp } => RemoteEvent::ReactionAdd {
            chat: chat_ref(login, &chat, is_direct),
            target: RemoteMessageId::from(target),
            sender: sender(login, &who),
            emoji_id: EmojiId::from(emoji.as_str()),
            emoji,
            timestamp,
        },
        WireEvent::Reaction { chat, target, sender: who, emoji, add: false, .. } => RemoteEvent::ReactionRemove {
            chat: chat_ref(login, &chat, is_direct),
            target: RemoteMessageId::from(target),
            sender: sender(login, &who),
            emoji_id: EmojiId::from(emoji),
        },
        WireEvent::Typing { chat, sender: who, timeout_ms } => {
            RemoteEvent::Typing { chat: chat_ref(login, &chat, is_direct), sender: sender(login, &who), timeout_ms }
        }
        WireEvent::Read { chat, sender: who, up_to } => RemoteEvent::ReadReceipt {
            chat: chat_ref(login, &chat, is_direct),
            sender: sender(login, &who),
            up_to: RemoteMessageId::from(up_to),
        },
        WireEvent::ChatInfo { chat } => {
            RemoteEvent::ChatInfoChanged { chat: chat_ref(login, &chat.id, chat.is_direct), info: chat_info(chat) }
        }
        WireEvent::UserInfo { user } => {
            RemoteEvent::UserInfoChanged { user: RemoteUserId::from(user.id.as_str()), info: user_info(user) }
        }
        WireEvent::ChatDeleted { chat } => RemoteEvent::ChatDeleted { chat: chat_ref(login, &chat, is_direct) },
    }
}

fn outgoing(content: OutgoingContent) -> WireOutgoing {
    match content {
        OutgoingContent::Text { body, html, mentions, emote } => {
            WireOutgoing::Text { body, html, mentions: mentions.into_iter().map(|m| m.0).collect(), emote }
        }
        OutgoingContent::Media { kind, data, filename, mime, caption } => WireOutgoing::Media {
            kind,
            data: base64::engine::general_purpose::STANDARD.encode(&data),
            filename,
            mime,
            caption,
        },
        OutgoingContent::Location { latitude, longitude } => WireOutgoing::Location { latitude, longitude },
    }
}

#[async_trait::async_trait]
impl NetworkClient for TestClient {
    async fn connect(&self) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_some_and(|(_, handle)| !handle.is_finished()) {
            return;
        }
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(self.shared.clone().run(cancel.clone()));
        *task = Some((cancel, handle));
    }

    async fn disconnect(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((cancel, mut handle)) = task {
            cancel.cancel();
            if tokio::time::timeout(Duration::from_secs(5), &mut handle).await.is_err() {
                handle.abort();
            }
        }
    }

    fn state(&self) -> LoginState {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn send_message(&self, message: OutgoingMessage) -> Result<SentMessage, NetworkError> {
        let body = SendRequest {
            chat: message.chat.id.0,
            content: outgoing(message.content),
            reply_to: message.reply_to.map(|r| r.0),
            thread_root: message.thread_root.map(|r| r.0),
            relayed_from: message.relayed_from,
            avatar_url: message.avatar_url,
        };
        let sent: SendResponse = self.call(Method::POST, &["logins", self.login(), "messages"], &[], Some(&body)).await?;
        Ok(SentMessage { id: RemoteMessageId::from(sent.id), part: PartId::from(""), timestamp: sent.timestamp })
    }

    async fn chat_info(&self, chat: &ChatRef) -> Result<ChatInfo, NetworkError> {
        let c: WireChat = self.call(Method::GET, &["chats", chat.id.as_str()], &[], None).await?;
        Ok(chat_info(c))
    }

    async fn user_info(&self, user: &RemoteUserId) -> Result<UserInfo, NetworkError> {
        let u: WireUser = self.call(Method::GET, &["users", user.as_str()], &[], None).await?;
        Ok(user_info(u))
    }

    async fn download_media(&self, source: &str) -> Result<(Bytes, Option<String>), NetworkError> {
        let request = self.shared.http.request(Method::GET, &["media", source]).bearer_auth(&self.shared.token);
        let response = self.shared.http.send(request, CALL_TIMEOUT * 3).await?;
        let mime = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| NetworkError::Remote(format!("media download failed: {e}")))?;
        Ok((bytes, mime))
    }

    async fn logout(&self) -> Result<(), NetworkError> {
        let _: serde_json::Value = self.call(Method::POST, &["logins", self.login(), "logout"], &[], None).await?;
        let _ = self.shared.report(LoginState::LoggedOut, false).await;
        Ok(())
    }

    fn edits(&self) -> Option<&dyn EditHandler> {
        Some(self)
    }

    fn deletions(&self) -> Option<&dyn DeleteHandler> {
        Some(self)
    }

    fn reactions(&self) -> Option<&dyn ReactionHandler> {
        Some(self)
    }

    fn presence(&self) -> Option<&dyn PresenceHandler> {
        Some(self)
    }

    fn history(&self) -> Option<&dyn HistoryHandler> {
        Some(self)
    }

    fn chat_starter(&self) -> Option<&dyn ChatStarter> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl EditHandler for TestClient {
    async fn edit_message(&self, chat: &ChatRef, id: &RemoteMessageId, content: OutgoingContent) -> Result<(), NetworkError> {
        let body = EditRequest { chat: chat.id.0.clone(), content: outgoing(content) };
        let _: serde_json::Value =
            self.call(Method::PUT, &["logins", self.login(), "messages", id.as_str()], &[], Some(&body)).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl DeleteHandler for TestClient {
    async fn delete_message(&self, chat: &ChatRef, id: &RemoteMessageId) -> Result<(), NetworkError> {
        let query = [("chat", chat.id.0.clone())];
        let _: serde_json::Value =
            self.call(Method::DELETE, &["logins", self.login(), "messages", id.as_str()], &query, None).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ReactionHandler for TestClient {
    fn emoji_id(&self, key: &str) -> Option<EmojiId> {
        (!key.is_empty()).then(|| EmojiId::from(key))
    }

    async fn add_reaction(&self, chat: &ChatRef, target: &RemoteMessageId, emoji: &EmojiId) -> Result<(), NetworkError> {
        let segments = ["logins", self.login(), "messages", target.as_str(), "reactions", emoji.as_str()];
        let _: serde_json::Value = self.call(Method::PUT, &segments, &[("chat", chat.id.0.clone())], None).await?;
        Ok(())
    }

    async fn remove_reaction(&self, chat: &ChatRef, target: &RemoteMessageId, emoji: &EmojiId) -> Result<(), NetworkError> {
        let segments = ["logins", self.login(), "messages", target.as_str(), "reactions", emoji.as_str()];
        let _: serde_json::Value = self.call(Method::DELETE, &segments, &[("chat", chat.id.0.clone())], None).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl PresenceHandler for TestClient {
    async fn set_typing(&self, chat: &ChatRef, typing: bool) -> Result<(), NetworkError> {
        let body = TypingRequest { chat: chat.id.0.clone(), typing };
        let _: serde_json::Value = self.call(Method::POST, &["logins", self.login(), "typing"], &[], Some(&body)).await?;
        Ok(())
    }

    async fn mark_read(&self, chat: &ChatRef, up_to: &RemoteMessageId) -> Result<(), NetworkError> {
        let body = ReadRequest { chat: chat.id.0.clone(), up_to: up_to.0.clone() };
        let _: serde_json::Value = self.call(Method::POST, &["logins", self.login(), "read"], &[], Some(&body)).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl HistoryHandler for TestClient {
    async fn fetch_history(
        &self,
        chat: &ChatRef,
        before: Option<&RemoteMessageId>,
        limit: usize,
    ) -> Result<Vec<RemoteEvent>, NetworkError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(before) = before {
            query.push(("before", before.0.clone()));
        }
        let page: Vec<WireMessage> = self.call(Method::GET, &["chats", chat.id.as_str(), "messages"], &query, None).await?;
        Ok(page.into_iter().map(|m| message_event(&self.shared.login, chat.clone(), m)).collect())
    }

    async fn recent_chats(&self, limit: usize) -> Result<Vec<ChatRef>, NetworkError> {
        let list: Vec<WireChatRef> =
            self.call(Method::GET, &["logins", self.login(), "chats"], &[("limit", limit.to_string())], None).await?;
        Ok(list.into_iter().map(|c| chat_ref(&self.shared.login, &c.id, c.is_direct)).collect())
    }

    async fn chats_with_activity(&self, since: i64) -> Result<Vec<ChatActivity>, NetworkError> {
        let query = [("since", since.to_string()), ("limit", usize::MAX.to_string())];
        let list: Vec<WireChatRef> = self.call(Method::GET, &["logins", self.login(), "chats"], &query, None).await?;
        Ok(list
            .into_iter()
            .map(|c| ChatActivity {
                chat: chat_ref(&self.shared.login, &c.id, c.is_direct),
                latest: c.last_message.map(RemoteMessageId::from),
                timestamp: c.last_timestamp,
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl ChatStarter for TestClient {
    async fn resolve_identifier(&self, identifier: &str) -> Result<(RemoteUserId, RemoteChatId), NetworkError> {
        let body = ResolveRequest { identifier: identifier.to_owned() };
        let r: ResolveResponse = self.call(Method::POST, &["logins", self.login(), "resolve"], &[], Some(&body)).await?;
        Ok((RemoteUserId::from(r.user), RemoteChatId::from(r.chat)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::wire::WireMedia;
    use bridge_core::network::events::MediaKind;

    fn message(sender: &str, media: Option<WireMedia>) -> WireEvent {
        WireEvent::Message {
            message: WireMessage {
                chat: "c".into(),
                id: "m1".into(),
                sender: sender.into(),
                timestamp: 5,
                text: "caption".into(),
                html: None,
                mentions: vec!["u2".into()],
                media,
                reply_to: Some("m0".into()),
                deleted: false,
            },
        }
    }

    #[test]
    fn wire_events_become_remote_events_for_the_login() {
        let login = LoginId::from("me");
        let media = WireMedia { id: "f1".into(), kind: MediaKind::Image, filename: "a.png".into(), mime: "image/png".into(), size: 3 };
        // (event, direct, expected receiver, expected is_from_me, expect media)
        let cases = [
            (message("other", None), false, None, false, false),
            (message("me", None), true, Some(login.clone()), true, false),
            (message("other", Some(media)), false, None, false, true),
        ];
        for (event, direct, receiver, from_me, is_media) in cases {
            let RemoteEvent::Message { chat, sender, parts, reply_to, .. } = convert_event(&login, direct, event) else {
                panic!("not a message");
            };
            assert_eq!(chat.receiver, receiver);
            assert_eq!(sender.is_from_me, from_me);
            assert_eq!(reply_to, Some(RemoteMessageId::from("m0")));
            match &parts[0].content {
                MessageContent::Media(m) => {
                    assert!(is_media);
                    assert_eq!((m.source.as_str(), m.caption.as_deref()), ("f1", Some("caption")));
                }
                MessageContent::Text { body, mentions, .. } => {
                    assert!(!is_media);
                    assert_eq!((body.as_str(), mentions.as_slice()), ("caption", [RemoteUserId::from("u2")].as_slice()));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let removed = WireEvent::Reaction {
            chat: "c".into(),
            target: "m1".into(),
            sender: "x".into(),
            emoji: "👍".into(),
            add: false,
            timestamp: 1,
        };
        assert!(matches!(convert_event(&login, false, removed), RemoteEvent::ReactionRemove { emoji_id, .. } if emoji_id.as_str() == "👍"));
    }

    #[test]
    fn outgoing_media_is_base64() {
        let content = OutgoingContent::Media {
            kind: MediaKind::File,
            data: Bytes::from_static(b"hi"),
            filename: "f".into(),
            mime: "text/plain".into(),
            caption: None,
        };
        assert!(matches!(outgoing(content), WireOutgoing::Media { data, .. } if data == "aGk="));
    }
}
