//! The test network's data: users, chats with their history, media, accounts, logins with
//! their event queues, login processes in progress, and the log of what the bridge did.
//!
//! Both halves of the server use it: the HTTP handlers ([`super::server`]) and the
//! test-side API ([`super::api`]). It outlives server restarts, so queued events survive.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use bytes::Bytes;

use super::wire::{
    SendRequest, SendResponse, SeqEvent, WireChat, WireEvent, WireLoginStep, WireMessage, WireOutgoing, WireUser,
};
use super::{Action, Sent};

/// Why a request was refused; becomes an HTTP status and `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fail {
    /// 400: the input was rejected (shown to the user).
    BadInput(String),
    /// 401: missing or wrong token.
    Unauthorized,
    /// 404: no such object.
    NotFound(String),
}

/// A remote user.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub name: String,
    pub avatar: Option<String>,
    pub is_bot: bool,
}

/// A chat and its history (oldest first).
#[derive(Debug, Clone, Default)]
pub(crate) struct Chat {
    pub name: Option<String>,
    pub topic: Option<String>,
    pub avatar: Option<String>,
    pub is_direct: bool,
    pub members: Vec<String>,
    pub admins: Vec<String>,
    pub nicknames: std::collections::BTreeMap<String, String>,
    pub messages: Vec<WireMessage>,
}

/// Stored media bytes.
#[derive(Debug, Clone)]
pub(crate) struct StoredMedia {
    pub mime: String,
    pub bytes: Bytes,
}

/// An account that can log in; its ID is also a user ID and, once logged in, the login ID.
#[derive(Debug, Clone, Default)]
pub(crate) struct Account {
    pub phone: Option<String>,
    pub password: Option<String>,
    pub bot_token: Option<String>,
}

/// A login: its current token (`None` once logged out or revoked) and its event queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct Login {
    pub token: Option<String>,
    pub queue: Vec<SeqEvent>,
    pub next_seq: u64,
    pub acked: u64,
}

/// Where a login process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProcStep {
    Phone,
    Code { account: String },
    Password { account: String },
    Token,
    Qr { n: u32 },
    Done(WireLoginStep),
}

/// A login process in progress.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub order: u64,
    pub step: ProcStep,
}

/// Everything the test network knows.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub next_id: u64,
    pub last_ts: i64,
    pub users: BTreeMap<String, User>,
    pub chats: BTreeMap<String, Chat>,
    pub media: HashMap<String, StoredMedia>,
    pub accounts: BTreeMap<String, Account>,
    pub logins: BTreeMap<String, Login>,
    pub processes: HashMap<String, Process>,
    pub login_code: Option<String>,
    pub actions: Vec<Action>,
    /// How many times each chat's history was read.
    pub history_reads: BTreeMap<String, usize>,
}

/// The shared state plus a counter bumped on every change, which long polls watch.
#[derive(Debug)]
pub(crate) struct Inner {
    state: Mutex<State>,
    pub changed: tokio::sync::watch::Sender<u64>,
}

impl Inner {
    pub fn new() -> Self {
        Self { state: Mutex::new(State::default()), changed: tokio::sync::watch::Sender::new(0) }
    }

    /// Reads the state (no change is signalled).
    pub fn read(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the state and wakes every long poll.
    pub fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let result = f(&mut self.read());
        self.changed.send_modify(|n| *n += 1);
        result
    }
}

impl State {
    /// A fresh ID with a prefix.
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// The current time in milliseconds, strictly increasing.
    pub fn now(&mut self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.last_ts = wall.max(self.last_ts + 1);
        self.last_ts
    }

    /// Stores media and returns its ID.
    pub fn store_media(&mut self, mime: &str, bytes: Bytes) -> String {
        let id = self.new_id("f");
        self.media.insert(id.clone(), StoredMedia { mime: mime.to_owned(), bytes });
        id
    }

    /// The login whose token is `token` (`login` given: it must be that one).
    pub fn auth(&self, token: Option<&str>, login: Option<&str>) -> Result<String, Fail> {
        let token = token.ok_or(Fail::Unauthorized)?;
        let found = self
            .logins
            .iter()
            .find(|(_, l)| l.token.as_deref() == Some(token))
            .map(|(id, _)| id.clone())
            .ok_or(Fail::Unauthorized)?;
        match login {
            Some(wanted) if wanted != found => Err(Fail::Unauthorized),
            _ => Ok(found),
        }
    }

    /// The chat, if `login` is a member.
    pub fn member_chat(&self, login: &str, chat: &str) -> Result<&Chat, Fail> {
        self.chats
            .get(chat)
            .filter(|c| c.members.iter().any(|m| m == login))
            .ok_or_else(|| Fail::NotFound(format!("chat {chat}")))
    }

    /// Queues `event` for every logged-in member of `chat` except `except`.
    pub fn fanout(&mut self, chat: &str, except: Option<&str>, event: WireEvent) {
        let Some(c) = self.chats.get(chat) else { return };
        let members: Vec<String> = c.members.clone();
        for member in members.iter().filter(|m| Some(m.as_str()) != except) {
            self.enqueue(member, event.clone());
        }
    }

    /// Queues `event` for `login` if it is logged in.
    pub fn enqueue(&mut self, login: &str, event: WireEvent) {
        let direct = event.chat_id().and_then(|c| self.chats.get(c)).is_some_and(|c| c.is_direct);
        if let Some(l) = self.logins.get_mut(login).filter(|l| l.token.is_some()) {
            l.next_seq += 1;
            l.queue.push(SeqEvent { seq: l.next_seq, direct, event });
        }
    }

    /// The events of `login` after `after` and its acknowledged cursor.
    pub fn events_after(&self, login: &str, after: u64) -> Vec<SeqEvent> {
        let Some(l) = self.logins.get(login) else { return Vec::new() };
        let from = after.max(l.acked);
        l.queue.iter().filter(|e| e.seq > from).cloned().collect()
    }

    /// Acknowledges events of `login` up to `seq` and forgets them.
    pub fn ack(&mut self, login: &str, seq: u64) {
        if let Some(l) = self.logins.get_mut(login) {
            l.acked = l.acked.max(seq.min(l.next_seq));
            let acked = l.acked;
            l.queue.retain(|e| e.seq > acked);
        }
    }

    /// Describes a chat.
    pub fn wire_chat(&self, id: &str) -> Option<WireChat> {
        self.chats.get(id).map(|c| WireChat {
            id: id.to_owned(),
            name: c.name.clone(),
            topic: c.topic.clone(),
            avatar: c.avatar.clone(),
            is_direct: c.is_direct,
            members: c.members.clone(),
            admins: c.admins.clone(),
            nicknames: c.nicknames.clone(),
        })
    }

    /// Describes a user.
    pub fn wire_user(&self, id: &str) -> Option<WireUser> {
        self.users.get(id).map(|u| WireUser {
            id: id.to_owned(),
            name: u.name.clone(),
            avatar: u.avatar.clone(),
            is_bot: u.is_bot,
        })
    }

    /// Stores a message in its chat's history and queues it for the members (but `except`).
    pub fn add_message(&mut self, message: WireMessage, except: Option<&str>) {
        let chat = message.chat.clone();
        if let Some(c) = self.chats.get_mut(&chat) {
            c.messages.push(message.clone());
        }
        self.fanout(&chat, except, WireEvent::Message { message });
    }

    /// The message `id` of `chat`, mutably.
    pub fn message_mut(&mut self, chat: &str, id: &str) -> Result<&mut WireMessage, Fail> {
        self.chats
            .get_mut(chat)
            .and_then(|c| c.messages.iter_mut().find(|m| m.id == id && !m.deleted))
            .ok_or_else(|| Fail::NotFound(format!("message {id} in {chat}")))
    }

    /// A message sent by the bridge for `login`.
    pub fn send(&mut self, login: &str, req: SendRequest) -> Result<SendResponse, Fail> {
        self.member_chat(login, &req.chat)?;
        let sent = decode_outgoing(&req.content)?;
        if let Some(reply) = &req.reply_to {
            self.message_mut(&req.chat, reply)?;
        }
        let id = self.new_id("m");
        let timestamp = self.now();
        let (text, html, mentions, media) = match &sent {
            Sent::Text { body, html, mentions, .. } => (body.clone(), html.clone(), mentions.clone(), None),
            Sent::Media { kind, data, filename, mime, caption } => {
                let media_id = self.store_media(mime, Bytes::from(data.clone()));
                let media = super::wire::WireMedia {
                    id: media_id,
                    kind: *kind,
                    filename: filename.clone(),
                    mime: mime.clone(),
                    size: data.len() as u64,
                };
                (caption.clone().unwrap_or_default(), None, Vec::new(), Some(media))
            }
            Sent::Location { latitude, longitude } => (format!("geo:{latitude},{longitude}"), None, Vec::new(), None),
        };
        let message = WireMessage {
            chat: req.chat.clone(),
            id: id.clone(),
            sender: login.to_owned(),
            timestamp,
            text,
            html,
            mentions,
            media,
            reply_to: req.reply_to.clone(),
            deleted: false,
        };
        self.add_message(message, Some(login));
        self.actions.push(Action::Send {
            login: login.to_owned(),
            chat: req.chat,
            id: id.clone(),
            content: sent,
            reply_to: req.reply_to,
            thread_root: req.thread_root,
            relayed_from: req.relayed_from,
            avatar_url: req.avatar_url,
        });
        Ok(SendResponse { id, timestamp })
    }

    /// An edit by the bridge for `login`.
    pub fn edit(&mut self, login: &str, chat: &str, id: &str, content: &WireOutgoing) -> Result<(), Fail> {
        self.member_chat(login, chat)?;
        let sent = decode_outgoing(content)?;
        let Sent::Text { body, html, .. } = &sent else {
            return Err(Fail::BadInput("only text can be edited".to_owned()));
        };
        let timestamp = self.now();
        let message = self.message_mut(chat, id)?;
        if message.sender != login {
            return Err(Fail::BadInput("cannot edit someone else's message".to_owned()));
        }
        message.text = body.clone();
        message.html = html.clone();
        let event = WireEvent::Edit {
            chat: chat.to_owned(),
            id: id.to_owned(),
            sender: login.to_owned(),
            timestamp,
            text: body.clone(),
            html: html.clone(),
        };
        self.fanout(chat, Some(login), event);
        self.actions.push(Action::Edit { login: login.to_owned(), chat: chat.to_owned(), id: id.to_owned(), content: sent });
        Ok(())
    }

    /// A deletion by the bridge for `login`.
    pub fn delete(&mut self, login: &str, chat: &str, id: &str) -> Result<(), Fail> {
        self.member_chat(login, chat)?;
        self.message_mut(chat, id)?.deleted = true;
        let event = WireEvent::Delete { chat: chat.to_owned(), id: id.to_owned(), sender: login.to_owned() };
        self.fanout(chat, Some(login), event);
        self.actions.push(Action::Delete { login: login.to_owned(), chat: chat.to_owned(), id: id.to_owned() });
        Ok(())
    }

    /// A reaction added or removed by the bridge for `login`.
    pub fn react(&mut self, login: &str, chat: &str, target: &str, emoji: &str, add: bool) -> Result<(), Fail> {
        self.member_chat(login, chat)?;
        self.message_mut(chat, target)?;
        let timestamp = self.now();
        let event = WireEvent::Reaction {
            chat: chat.to_owned(),
            target: target.to_owned(),
            sender: login.to_owned(),
            emoji: emoji.to_owned(),
            add,
            timestamp,
        };
        self.fanout(chat, Some(login), event);
        self.actions.push(Action::Reaction {
            login: login.to_owned(),
            chat: chat.to_owned(),
            target: target.to_owned(),
            emoji: emoji.to_owned(),
            add,
        });
        Ok(())
    }

    /// Finishes a login for `account`: a new token (the old one stops working).
    pub fn complete_login(&mut self, account: &str) -> WireLoginStep {
        let token = format!("tok-{}", crate::random_lowercase(24));
        let login = self.logins.entry(account.to_owned()).or_default();
        login.token = Some(token.clone());
        let name = self.users.get(account).map_or_else(|| account.to_owned(), |u| u.name.clone());
        WireLoginStep::Complete { account: account.to_owned(), name, token }
    }

    /// Starts a login process for `flow`.
    pub fn login_start(&mut self, flow: &str) -> Result<(String, WireLoginStep), Fail> {
        let step = match flow {
            "password" => ProcStep::Phone,
            "qr" => ProcStep::Qr { n: 1 },
            "token" => ProcStep::Token,
            other => return Err(Fail::NotFound(format!("login flow {other}"))),
        };
        let id = self.new_id("p");
        let order = self.next_id;
        let wire = wire_step(&step);
        self.processes.insert(id.clone(), Process { order, step });
        Ok((id, wire))
    }

    /// Submits the values of a user-input step.
    pub fn login_submit(&mut self, process: &str, fields: &BTreeMap<String, String>) -> Result<WireLoginStep, Fail> {
        let step = self
            .processes
            .get(process)
            .map(|p| p.step.clone())
            .ok_or_else(|| Fail::NotFound(format!("login process {process}")))?;
        let field = |name: &str| {
            fields
                .get(name)
                .map(|v| v.trim().to_owned())
                .ok_or_else(|| Fail::BadInput(format!("missing field {name}")))
        };
        let next = match step {
            ProcStep::Phone => {
                let phone = field("phone")?;
                if !phone.starts_with('+') {
                    return Err(Fail::BadInput("the phone number must start with + and the country code".to_owned()));
                }
                let account = self
                    .accounts
                    .iter()
                    .find(|(_, a)| a.phone.as_deref() == Some(phone.as_str()))
                    .map(|(id, _)| id.clone())
                    .ok_or_else(|| Fail::BadInput(format!("no account has the phone number {phone}")))?;
                ProcStep::Code { account }
            }
            ProcStep::Code { account } => {
                let expected = self.login_code.clone().unwrap_or_else(|| "12345".to_owned());
                if field("code")? != expected {
                    return Err(Fail::BadInput("wrong code, try again".to_owned()));
                }
                match self.accounts.get(&account).and_then(|a| a.password.clone()) {
                    Some(_) => ProcStep::Password { account },
                    None => ProcStep::Done(self.complete_login(&account)),
                }
            }
            ProcStep::Password { account } => {
                let expected = self.accounts.get(&account).and_then(|a| a.password.clone());
                if Some(field("password")?) != expected {
                    return Err(Fail::BadInput("wrong password, try again".to_owned()));
                }
                ProcStep::Done(self.complete_login(&account))
            }
            ProcStep::Token => {
                let token = field("token")?;
                let account = self
                    .accounts
                    .iter()
                    .find(|(_, a)| a.bot_token.as_deref() == Some(token.as_str()))
                    .map(|(id, _)| id.clone())
                    .ok_or_else(|| Fail::BadInput("invalid token".to_owned()))?;
                ProcStep::Done(self.complete_login(&account))
            }
            ProcStep::Qr { .. } | ProcStep::Done(_) => {
                return Err(Fail::BadInput("this step takes no input".to_owned()));
            }
        };
        let wire = wire_step(&next);
        if matches!(next, ProcStep::Done(_)) {
            self.processes.remove(process);
        } else if let Some(p) = self.processes.get_mut(process) {
            p.step = next;
        }
        Ok(wire)
    }

    /// The next step of a waiting process, once it differs from the QR code `shown`.
    pub fn login_poll(&mut self, process: &str, shown: Option<&str>) -> Result<Option<WireLoginStep>, Fail> {
        let step = self
            .processes
            .get(process)
            .map(|p| p.step.clone())
            .ok_or_else(|| Fail::NotFound(format!("login process {process}")))?;
        let wire = wire_step(&step);
        match &wire {
            WireLoginStep::Complete { .. } => {
                self.processes.remove(process);
                Ok(Some(wire))
            }
            WireLoginStep::Qr { code } if Some(code.as_str()) == shown => Ok(None),
            _ => Ok(Some(wire)),
        }
    }
}

/// The wire form of a process step.
fn wire_step(step: &ProcStep) -> WireLoginStep {
    match step {
        ProcStep::Phone => WireLoginStep::Phone,
        ProcStep::Code { .. } => WireLoginStep::Code,
        ProcStep::Password { .. } => WireLoginStep::Password,
        ProcStep::Token => WireLoginStep::Token,
        ProcStep::Qr { n } => WireLoginStep::Qr { code: format!("testnet-qr-{n}") },
        ProcStep::Done(done) => done.clone(),
    }
}

/// Checks and decodes outgoing content.
fn decode_outgoing(content: &WireOutgoing) -> Result<Sent, Fail> {
    Ok(match content {
        WireOutgoing::Text { body, html, mentions, emote } => {
            if body.trim().is_empty() {
                return Err(Fail::BadInput("message text is empty".to_owned()));
            }
            Sent::Text { body: body.clone(), html: html.clone(), mentions: mentions.clone(), emote: *emote }
        }
        WireOutgoing::Media { kind, data, filename, mime, caption } => {
            let data = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| Fail::BadInput(format!("media is not base64: {e}")))?;
            Sent::Media { kind: *kind, data, filename: filename.clone(), mime: mime.clone(), caption: caption.clone() }
        }
        WireOutgoing::Location { latitude, longitude } => Sent::Location { latitude: *latitude, longitude: *longitude },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_account() -> State {
        let mut s = State::default();
        s.users.insert("acc".into(), User { name: "Acc".into(), avatar: None, is_bot: false });
        s.accounts.insert(
            "acc".into(),
            Account { phone: Some("+100".into()), password: Some("pw".into()), bot_token: Some("bot".into()) },
        );
        s
    }

    fn input(key: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(key.to_owned(), value.to_owned())])
    }

    #[test]
    fn password_flow_validates_each_step() {
        let mut s = state_with_account();
        let (p, first) = s.login_start("password").expect("start");
        assert_eq!(first, WireLoginStep::Phone);
        let cases: [(&str, &str, Result<WireLoginStep, ()>); 6] = [
            ("phone", "100", Err(())),
            ("phone", "+999", Err(())),
            ("phone", "+100", Ok(WireLoginStep::Code)),
            ("code", "000", Err(())),
            ("code", "12345", Ok(WireLoginStep::Password)),
            ("password", "nope", Err(())),
        ];
        for (key, value, want) in cases {
            let got = s.login_submit(&p, &input(key, value));
            match want {
                Ok(step) => assert_eq!(got, Ok(step), "{key}={value}"),
                Err(()) => assert!(matches!(got, Err(Fail::BadInput(_))), "{key}={value}: {got:?}"),
            }
        }
        let done = s.login_submit(&p, &input("password", "pw")).expect("complete");
        assert!(matches!(done, WireLoginStep::Complete { ref account, .. } if account == "acc"));
        assert!(s.logins["acc"].token.is_some());
        assert!(s.processes.is_empty());
    }

    #[test]
    fn events_after_respects_the_acknowledged_cursor() {
        let mut s = State::default();
        s.logins.insert("a".into(), Login { token: Some("t".into()), ..Login::default() });
        for n in 0..3 {
            s.enqueue("a", WireEvent::ChatDeleted { chat: format!("c{n}") });
        }
        assert_eq!(s.events_after("a", 0).len(), 3);
        assert_eq!(s.events_after("a", 2).len(), 1);
        s.ack("a", 2);
        assert_eq!(s.events_after("a", 0).iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(s.auth(Some("t"), Some("a")), Ok("a".to_owned()));
        assert_eq!(s.auth(Some("t"), Some("b")), Err(Fail::Unauthorized));
        assert_eq!(s.auth(None, None), Err(Fail::Unauthorized));
    }

    #[test]
    fn empty_text_is_rejected() {
        let empty = WireOutgoing::Text { body: "  ".into(), html: None, mentions: vec![], emote: false };
        assert!(matches!(decode_outgoing(&empty), Err(Fail::BadInput(_))));
    }
}
