//! WeChat → Matrix: the login's event task. It opens the puppet's event stream, turns
//! each event into [`RemoteEvent`]s (fetching message payloads and names as needed),
//! pings the puppet and reopens the stream with backoff when it drops, goes silent or is
//! reset (a RESET event, or the puppet restarting: LOGOUT "puppet stop()"). A logout of the
//! account (LOGOUT) or a new QR code (SCAN) ends the login: its owner is told to log in again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::backoff::Backoff;
use bridge_core::network::events::{ChatInfo, LoginState};
use bridge_core::network::RemoteEvent;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{now_ms, Shared};
use crate::convert::{self, Card, LoginEvent, MessageEvent, MessageKind, RoomMembersEvent, RoomTopicEvent};
use crate::ids::chat_ref;
use crate::puppet::proto::{EventResponse, EventType, MessagePayloadResponse};
use crate::puppet::PuppetError;

/// The reason of the LOGOUT that wechaty-puppet emits when the puppet itself stops (its
/// `stop()`, also run by `reset()`), as opposed to the account being logged out.
const PUPPET_STOPPED: &str = "puppet stop()";

/// The payload of RESET (and other events carrying only `data`).
#[derive(Debug, serde::Deserialize)]
struct DataEvent {
    #[serde(default)]
    data: Option<String>,
}

/// Why an event stream session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client was disconnected or the core is gone: stop.
    Stop,
    /// The session is no longer valid: report it and stop.
    BadCredentials(String),
    /// The stream broke: report it and reconnect.
    Transient(String),
}

impl From<PuppetError> for End {
    fn from(error: PuppetError) -> Self {
        match error {
            PuppetError::Unauthenticated => Self::BadCredentials(error.to_string()),
            other => Self::Transient(other.to_string()),
        }
    }
}

impl Shared {
    /// The event task: runs stream sessions until cancelled, reconnecting with backoff.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        if !self.report(LoginState::Connecting, true).await {
            return;
        }
        loop {
            let mut connected = false;
            let end = tokio::select! {
                () = cancel.cancelled() => return,
                end = self.session(&mut connected) => end,
            };
            if connected {
                backoff.reset();
            }
            match end {
                End::Stop => return,
                End::BadCredentials(reason) => {
                    tracing::warn!(login = %self.login, %reason, "WeChat session is no longer valid");
                    let _ = self.report(LoginState::BadCredentials { reason }, false).await;
                    return;
                }
                End::Transient(reason) => {
                    tracing::info!(login = %self.login, %reason, "WeChat event stream lost; reconnecting");
                    if !self.report(LoginState::TransientDisconnect { reason }, false).await {
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

    /// One event stream session: open, start the puppet, read events and ping until the
    /// stream ends. Sets `connected` once the puppet confirms the login.
    async fn session(&self, connected: &mut bool) -> End {
        let mut stream = match self.puppet.events().await {
            Ok(stream) => stream,
            Err(error) => return error.into(),
        };
        // Resumes the session if the puppet service restarted; harmless when it runs.
        if let Err(error) = self.puppet.start().await {
            tracing::debug!(%error, "puppet Start failed");
        }
        let mut last_seen = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + self.config.heartbeat_interval(), self.config.heartbeat_interval());
        loop {
            tokio::select! {
                item = stream.message() => match item {
                    Ok(Some(event)) => {
                        last_seen = Instant::now();
                        if let Some(end) = self.handle(event, connected).await {
                            return end;
                        }
                    }
                    Ok(None) => return End::Transient("the WeChat service closed the connection".to_owned()),
                    Err(status) => return PuppetError::from_status("Event", &status).into(),
                },
                _ = ping.tick() => {
                    if last_seen.elapsed() > self.config.heartbeat_timeout() {
                        return End::Transient("no heartbeat from the WeChat service".to_owned());
                    }
                    let puppet = self.puppet.clone();
                    tokio::spawn(async move {
                        if let Err(error) = puppet.ding("heartbeat").await {
                            tracing::debug!(%error, "puppet ping failed");
                        }
                    });
                }
            }
        }
    }

    /// Handles one event; `Some` ends the session.
    async fn handle(&self, event: EventResponse, connected: &mut bool) -> Option<End> {
        let kind = EventType::try_from(event.r#type).unwrap_or(EventType::Unspecified);
        let payload = event.payload.as_str();
        let sent = match kind {
            EventType::Login => {
                let login: LoginEvent = parse(payload)?;
                if login.contact_id != self.self_id() {
                    return Some(End::BadCredentials("the WeChat service is logged in to another WeChat account".to_owned()));
                }
                if !*connected {
                    *connected = true;
                    self.report(LoginState::Connected, false).await
                } else {
                    true
                }
            }
            EventType::Logout => {
                let logout: LoginEvent = parse(payload)?;
                if logout.contact_id != self.self_id() {
                    return None;
                }
                return Some(logout_end(logout.data.as_deref()));
            }
            EventType::Scan => {
                return Some(End::BadCredentials("WeChat asks for a new QR code scan: log in again".to_owned()));
            }
            EventType::Reset => return Some(reset_end(payload)),
            EventType::Message => {
                let message: MessageEvent = parse(payload)?;
                self.handle_message(&message.message_id).await
            }
            EventType::RoomTopic => {
                let topic: RoomTopicEvent = parse(payload)?;
                let info = ChatInfo { name: Some(topic.new_topic), ..ChatInfo::default() };
                self.events.send(RemoteEvent::ChatInfoChanged { chat: chat_ref(&self.login, &topic.room_id), info }).await
            }
            EventType::RoomJoin | EventType::RoomLeave => {
                let change: RoomMembersEvent = parse(payload)?;
                let chat = chat_ref(&self.login, &change.room_id);
                if change.removee_id_list.iter().any(|r| r == self.self_id()) {
                    self.events.send(RemoteEvent::ChatDeleted { chat }).await
                } else {
                    match self.chat_info(&change.room_id).await {
                        Ok(info) => {
                            let info = ChatInfo { members: info.members, ..ChatInfo::default() };
                            self.events.send(RemoteEvent::ChatInfoChanged { chat, info }).await
                        }
                        Err(error) => {
                            tracing::warn!(%error, room = %change.room_id, "could not read a room after a member change");
                            true
                        }
                    }
                }
            }
            EventType::Error => {
                tracing::debug!(error = payload, "puppet reported an error");
                true
            }
            _ => true,
        };
        (!sent).then_some(End::Stop)
    }

    /// Fetches, converts and reports one message; returns `false` if the core is gone.
    async fn handle_message(&self, id: &str) -> bool {
        let payload = match self.puppet.message(id).await {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(%error, message = id, "could not fetch a WeChat message");
                return true;
            }
        };
        if payload.talker_id == self.self_id() && self.was_sent_here(&payload.id).await {
            return true;
        }
        let room = Some(payload.room_id.as_str()).filter(|r| !r.is_empty());
        let mut names = HashMap::new();
        for mention in &payload.mention_ids {
            if let Some(name) = self.member_name(room, mention).await {
                names.insert(mention.clone(), name);
            }
        }
        let pill = |user: &bridge_core::network::RemoteUserId, name: &str| self.events.mention_pill(user, name);
        let card = self.card(&payload).await;
        match convert::message_event(&payload, &self.login, self.self_id(), &names, &pill, card.as_ref(), now_ms()) {
            Some(event) => self.events.send(event).await,
            None => true,
        }
    }
}

impl Shared {
    /// The card of a link, mini-program, contact card or location message (`None` for other
    /// kinds, or if the puppet cannot say; the message's text is used then).
    async fn card(&self, payload: &MessagePayloadResponse) -> Option<Card> {
        let id = payload.id.as_str();
        let result = match MessageKind::from_wire(payload.r#type) {
            MessageKind::Url => self.puppet.url_link(id).await.map(Card::Url),
            MessageKind::MiniProgram => self.puppet.mini_program(id).await.map(Card::MiniProgram),
            MessageKind::Location => self.puppet.location(id).await.map(Card::Location),
            MessageKind::Contact => match self.puppet.shared_contact(id).await {
                Ok(shared) if !shared.is_empty() => match self.puppet.contact(&shared).await {
                    Ok(contact) => Ok(Card::Contact {
                        name: convert::display_name("", &contact.name, &contact.weixin),
                        handle: contact.weixin,
                    }),
                    Err(error) => Err(error),
                },
                Ok(_) => return None,
                Err(error) => Err(error),
            },
            _ => return None,
        };
        result.map_err(|error| tracing::debug!(%error, message = id, "no card for a card message")).ok()
    }
}

/// How a LOGOUT of this login's account (with the puppet's reason) ends the session.
fn logout_end(data: Option<&str>) -> End {
    match data.unwrap_or_default() {
        // The puppet itself stopped (a reset, or the service shutting down); it may resume
        // the session when it starts again, or ask for a scan (SCAN).
        PUPPET_STOPPED => End::Transient("the WeChat service restarted".to_owned()),
        "" => End::BadCredentials("logged out of WeChat".to_owned()),
        data => End::BadCredentials(format!("logged out of WeChat ({data})")),
    }
}

/// How a RESET event ends the session: the stream is reopened.
fn reset_end(payload: &str) -> End {
    match parse::<DataEvent>(payload).and_then(|e| e.data).filter(|d| !d.is_empty()) {
        Some(data) => End::Transient(format!("the WeChat service reset the connection: {data}")),
        None => End::Transient("the WeChat service reset the connection".to_owned()),
    }
}

/// Parses an event's JSON payload; logs and skips the event if it does not parse.
fn parse<T: serde::de::DeserializeOwned>(payload: &str) -> Option<T> {
    match serde_json::from_str(payload) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(%error, "unexpected puppet event payload");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_puppet_restart_is_not_a_logout() {
        let restart = logout_end(Some("puppet stop()"));
        assert!(matches!(&restart, End::Transient(r) if r.contains("restarted")), "{restart:?}");
        assert_eq!(logout_end(Some("user logout")), End::BadCredentials("logged out of WeChat (user logout)".to_owned()));
        assert_eq!(logout_end(None), End::BadCredentials("logged out of WeChat".to_owned()));
    }

    #[test]
    fn a_reset_reopens_the_stream() {
        assert_eq!(reset_end(r#"{"data":"watchdog"}"#), End::Transient("the WeChat service reset the connection: watchdog".to_owned()));
        assert_eq!(reset_end("{}"), End::Transient("the WeChat service reset the connection".to_owned()));
        assert_eq!(reset_end("not json"), End::Transient("the WeChat service reset the connection".to_owned()));
    }
}
