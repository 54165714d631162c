//! The Telegram simulator: an MTProto 2.0 server on 127.0.0.1 that the real grammers client
//! of `bridge-telegram` talks to in tests, built on grammers' own framing, crypto and TL types.
//!
//! A simulator cannot run Telegram's key exchange (grammers trusts only Telegram's RSA
//! keys), so it starts with a preset authorization key ([`TelegramSim::auth_key_hex`]) that
//! a new login's session is seeded with, unauthorized until `auth.signIn` succeeds.
//!
//! Tests build the world with [`TelegramSim::add_account`] (someone who can log in, with a
//! cloud password or not), [`TelegramSim::add_user`] (the other people) and
//! [`TelegramSim::add_bot`]; play those people with [`TelegramSim::send_private`]; read the
//! login code Telegram "sent" with [`TelegramSim::login_code`]; and check what the bridge did
//! with [`TelegramSim::messages`], [`TelegramSim::connections`], [`TelegramSim::inits`] and
//! [`TelegramSim::calls`].
//!
//! Modules: [`mtproto`] (transport, encryption, message layer), [`rpc`] (the methods),
//! [`auth`] (codes, SRP, bots), [`state`] (the world), [`tl_build`] (TL objects).

mod auth;
mod groups;
mod mtproto;
mod rpc;
mod state;
#[cfg(test)]
mod tests;
mod tl_build;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use anyhow::Context as _;
use grammers_tl_types as tl;
use tokio_util::sync::CancellationToken;

pub use state::InitInfo;
use state::{Inner, User};

/// A message in an account's private chat, as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMessage {
    /// The message's number in the account's box.
    pub id: i32,
    /// Who sent it.
    pub from: i64,
    /// Whether the account sent it.
    pub out: bool,
    /// The text.
    pub text: String,
    /// The formatting entities, as `(kind, offset, length)` in UTF-16 units (`bold`,
    /// `italic`, `code`, `text_url:<url>`, …).
    pub entities: Vec<(String, i32, i32)>,
    /// The message it replies to.
    pub reply_to: Option<i32>,
    /// Whether it was edited.
    pub edited: bool,
    /// Who reacted with what.
    pub reactions: Vec<(i64, String)>,
}

/// An account that can log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAccount {
    /// Its user ID.
    pub id: i64,
    /// Its phone number, digits only.
    pub phone: String,
}

/// A running Telegram simulator. Cheap to clone; stops when the last handle is dropped or
/// on [`TelegramSim::stop`].
#[derive(Clone)]
pub struct TelegramSim {
    inner: Arc<Inner>,
    address: SocketAddrV4,
    key: [u8; 256],
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl TelegramSim {
    /// Starts the simulator on a free port of 127.0.0.1 with a fresh preset key.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind")?;
        let port = listener.local_addr()?.port();
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner::new(stop.clone()));
        let key: [u8; 256] = std::array::from_fn(|_| rand::random::<u8>());
        inner.lock().keys.insert(mtproto::key_id(&key), (key, None));
        let accepting = inner.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accepting.stop.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(mtproto::serve(stream, accepting.clone()));
                    }
                    Err(error) => tracing::warn!(%error, "telegram simulator accept failed"),
                }
            }
        });
        Ok(Self {
            inner,
            address: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            key,
            _stop: Arc::new(StopOnDrop(stop)),
        })
    }

    /// Where the simulator listens (`network.test_dc_address`).
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The preset authorization key in hex (`network.test_auth_key`).
    pub fn auth_key_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The preset authorization key.
    pub fn auth_key(&self) -> [u8; 256] {
        self.key
    }

    /// Stops listening and closes every connection.
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    /// Adds an account that can log in with `phone` (any format; digits are kept), named
    /// `first last`, with a cloud password or not.
    pub fn add_account(
        &self,
        phone: &str,
        first: &str,
        last: Option<&str>,
        password: Option<&str>,
    ) -> SimAccount {
        let phone: String = phone.chars().filter(char::is_ascii_digit).collect();
        let id = self.inner.lock().add_user(User {
            id: 0,
            access_hash: 0,
            first_name: first.to_owned(),
            last_name: last.map(str::to_owned),
            username: None,
            phone: Some(phone.clone()),
            password: password.map(str::to_owned),
            password_hint: password.map(|_| "simulated".to_owned()),
            bot_token: None,
        });
        SimAccount { id, phone }
    }

    /// Adds another person (who does not log in); returns their user ID.
    pub fn add_user(&self, first: &str, last: Option<&str>, username: Option<&str>) -> i64 {
        self.inner.lock().add_user(User {
            id: 0,
            access_hash: 0,
            first_name: first.to_owned(),
            last_name: last.map(str::to_owned),
            username: username.map(str::to_owned),
            phone: None,
            password: None,
            password_hint: None,
            bot_token: None,
        })
    }

    /// Adds a bot; returns its user ID and token.
    pub fn add_bot(&self, name: &str) -> (i64, String) {
        let mut data = self.inner.lock();
        let id = data.add_user(User {
            id: 0,
            access_hash: 0,
            first_name: name.to_owned(),
            last_name: None,
            username: Some(format!("{}_bot", name.to_lowercase().replace(' ', "_"))),
            phone: None,
            password: None,
            password_hint: None,
            bot_token: None,
        });
        let token = format!("{id}:{}", crate::random_lowercase(30));
        if let Some(bot) = data.users.get_mut(&id) {
            bot.bot_token = Some(token.clone());
        }
        (id, token)
    }

    /// `account`'s phone scans a QR login link (`tg://login?token=…`) and accepts it: the
    /// connection that asked for the token is told (`updateLoginToken`). Fails for an
    /// unknown or expired token.
    pub fn accept_login_token(&self, link: &str, account: i64) -> anyhow::Result<()> {
        use base64::Engine as _;
        let encoded = link
            .strip_prefix("tg://login?token=")
            .ok_or_else(|| anyhow::anyhow!("not a login link: {link}"))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded)?;
        let mut data = self.inner.lock();
        let entry = data
            .qr_tokens
            .get_mut(&token)
            .filter(|t| t.expires > state::now())
            .ok_or_else(|| anyhow::anyhow!("unknown or expired login token"))?;
        entry.accepted_by = Some(account);
        let key = entry.key;
        let updates = tl::types::UpdateShort {
            update: tl::types::UpdateLoginToken {}.into(),
            date: state::now(),
        }
        .into();
        data.push_to_key(key, &updates);
        Ok(())
    }

    /// Makes new QR login tokens live `seconds` (30 by default).
    pub fn set_login_token_lifetime(&self, seconds: i32) {
        self.inner.lock().qr_token_seconds = seconds;
    }

    /// How many QR login tokens were handed out.
    pub fn login_tokens_issued(&self) -> usize {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|c| *c == "auth.exportLoginToken")
            .count()
    }

    /// The newest login code sent to `phone`.
    pub fn login_code(&self, phone: &str) -> Option<String> {
        let phone: String = phone.chars().filter(char::is_ascii_digit).collect();
        self.inner
            .lock()
            .codes
            .values()
            .filter(|c| c.phone == phone)
            .map(|c| c.code.clone())
            .last()
    }

    /// `from` sends `text` to `to` in their private chat (with Telegram entities); the
    /// receiver's connections get the update. Returns the message's number in `to`'s box.
    pub fn send_private(
        &self,
        from: i64,
        to: i64,
        text: &str,
        entities: Vec<tl::enums::MessageEntity>,
    ) -> i32 {
        self.reply_private(from, to, text, entities, None)
    }

    /// [`TelegramSim::send_private`] as a reply to message `reply_to` of `to`'s box.
    pub fn reply_private(
        &self,
        from: i64,
        to: i64,
        text: &str,
        entities: Vec<tl::enums::MessageEntity>,
        reply_to: Option<i32>,
    ) -> i32 {
        let mut data = self.inner.lock();
        // The sender's copy of the message replied to.
        let reply_in_sender = reply_to
            .and_then(|id| data.shared_of(to, id))
            .and_then(|shared| {
                data.boxes
                    .get(&from)?
                    .messages
                    .iter()
                    .find(|m| m.shared == shared)
                    .map(|m| m.id)
            });
        let (sent, received) = data.store_private(from, to, text, entities, reply_in_sender);
        let updates = data.new_message_updates(to, &received);
        data.push(to, &updates);
        let own = data.new_message_updates(from, &sent);
        data.push(from, &own);
        received.id
    }

    /// Edits message `id` of `owner`'s box (both copies of the private message), as its
    /// sender does in the Telegram app; both sides get the update.
    pub fn edit_private(&self, owner: i64, id: i32, text: &str) {
        let mut data = self.inner.lock();
        let Some(shared) = data.shared_of(owner, id) else {
            return;
        };
        for (user, updates) in data.edit_shared(shared, text, Vec::new()) {
            data.push(user, &updates);
        }
    }

    /// `from` reacts with `emoji` (or with `None` takes their reaction back) on message
    /// `id` of `owner`'s box, their private chat; both sides are told.
    pub fn react(&self, from: i64, owner: i64, id: i32, emoji: Option<&str>) {
        let mut data = self.inner.lock();
        let Some(shared) = data.shared_of(owner, id) else {
            return;
        };
        for (user, updates) in data.react_shared(shared, from, emoji) {
            data.push(user, &updates);
        }
    }

    /// Deletes message `id` of `owner`'s box for both sides.
    pub fn delete_private(&self, owner: i64, id: i32) {
        let mut data = self.inner.lock();
        let Some(shared) = data.shared_of(owner, id) else {
            return;
        };
        for (user, updates, _) in data.delete_shared(shared) {
            data.push(user, &updates);
        }
    }

    /// The messages of `account`'s private chat with `peer`, oldest first.
    pub fn messages(&self, account: i64, peer: i64) -> Vec<SimMessage> {
        self.mailbox(account, |m| m.peer == peer && m.chat.is_none())
    }

    /// The messages in `account`'s box that `wanted` picks, oldest first.
    fn mailbox(&self, account: i64, wanted: impl Fn(&state::Stored) -> bool) -> Vec<SimMessage> {
        let data = self.inner.lock();
        data.boxes
            .get(&account)
            .map(|mailbox| mailbox.messages.iter().filter(|m| wanted(m)).map(sim_message).collect())
            .unwrap_or_default()
    }

    /// Adds a basic group made by `creator` with `members`; returns its ID (no update is
    /// sent: the group shows up with its first message).
    pub fn add_group(&self, creator: i64, title: &str, about: &str, members: &[i64]) -> i64 {
        self.inner.lock().add_group(creator, title, about, members)
    }

    /// Adds a supergroup (`megagroup`) or broadcast channel made by `creator` with
    /// `members`; returns its ID.
    pub fn add_channel(
        &self,
        creator: i64,
        title: &str,
        about: &str,
        megagroup: bool,
        members: &[i64],
    ) -> i64 {
        self.inner
            .lock()
            .add_channel(creator, title, about, megagroup, members)
    }

    /// `from` writes in basic group `group`; every member is told. Returns the message's
    /// number in `from`'s box.
    pub fn send_group(
        &self,
        from: i64,
        group: i64,
        text: &str,
        entities: Vec<tl::enums::MessageEntity>,
    ) -> anyhow::Result<i32> {
        self.send_chat(from, state::ChatPeer::Group(group), text, entities)
    }

    /// `from` writes (posts) in channel or supergroup `channel`; every member is told with
    /// `updateNewChannelMessage`. Returns the message's number in the channel.
    pub fn send_channel(
        &self,
        from: i64,
        channel: i64,
        text: &str,
        entities: Vec<tl::enums::MessageEntity>,
    ) -> anyhow::Result<i32> {
        self.send_chat(from, state::ChatPeer::Channel(channel), text, entities)
    }

    fn send_chat(
        &self,
        from: i64,
        chat: state::ChatPeer,
        text: &str,
        entities: Vec<tl::enums::MessageEntity>,
    ) -> anyhow::Result<i32> {
        let (sent, _) = self
            .inner
            .lock()
            .send_to_chat(from, chat, text, entities, None, None, true)
            .map_err(|(code, message)| anyhow::anyhow!("{code} {message}"))?;
        Ok(sent.id)
    }

    /// The messages of basic group `group` as `account` sees them, oldest first.
    pub fn group_messages(&self, account: i64, group: i64) -> Vec<SimMessage> {
        self.mailbox(account, |m| m.chat == Some(state::ChatPeer::Group(group)))
    }

    /// The messages of channel or supergroup `channel`, oldest first (`out`: sent by
    /// `account`).
    pub fn channel_messages(&self, account: i64, channel: i64) -> Vec<SimMessage> {
        let data = self.inner.lock();
        let Some(channel) = data.channels.get(&channel) else {
            return Vec::new();
        };
        channel
            .messages
            .iter()
            .map(|m| SimMessage {
                out: m.from == account,
                ..sim_message(m)
            })
            .collect()
    }

    /// How many connections signed in as `user` are open.
    pub fn connections(&self, user: i64) -> usize {
        self.inner.lock().connections_of(user)
    }

    /// What each `initConnection` said, in order.
    pub fn inits(&self) -> Vec<InitInfo> {
        self.inner.lock().inits.clone()
    }

    /// Every API method called so far (`auth.signIn`, …), in order.
    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().calls.clone()
    }

    /// Ends every session of `user`, as "Terminate session" in the Telegram app does: their
    /// connections close and further calls get 401 SESSION_REVOKED.
    pub fn revoke_sessions(&self, user: i64) {
        self.inner.lock().revoke(user);
    }

    /// `user` changes their name; `to` (who has them as a contact) is told.
    pub fn rename(&self, user: i64, first: &str, last: Option<&str>, to: i64) {
        let mut data = self.inner.lock();
        let Some(entry) = data.users.get_mut(&user) else {
            return;
        };
        entry.first_name = first.to_owned();
        entry.last_name = last.map(str::to_owned);
        let update = tl::types::UpdateUserName {
            user_id: user,
            first_name: first.to_owned(),
            last_name: last.unwrap_or_default().to_owned(),
            usernames: Vec::new(),
        };
        let updates = tl::types::UpdateShort {
            update: update.into(),
            date: state::now(),
        }
        .into();
        data.push(to, &updates);
    }

    /// `from` starts typing in their private chat with `to` (a push to `to`).
    pub fn typing(&self, from: i64, to: i64) {
        let data = self.inner.lock();
        let update = tl::types::UpdateUserTyping {
            user_id: from,
            top_msg_id: None,
            action: tl::types::SendMessageTypingAction {}.into(),
        };
        let updates = tl::types::UpdateShort {
            update: update.into(),
            date: state::now(),
        }
        .into();
        data.push(to, &updates);
    }

    /// `reader` reads everything `owner` sent them: `owner` gets the read receipt.
    pub fn read_private(&self, reader: i64, owner: i64) {
        let mut data = self.inner.lock();
        let Some(mailbox) = data.boxes.get_mut(&owner) else {
            return;
        };
        let Some(max_id) = mailbox
            .messages
            .iter()
            .filter(|m| m.peer == reader && m.out && m.chat.is_none())
            .map(|m| m.id)
            .max()
        else {
            return;
        };
        mailbox.pts += 1;
        let update = tl::types::UpdateReadHistoryOutbox {
            peer: tl::types::PeerUser { user_id: reader }.into(),
            max_id,
            pts: mailbox.pts,
            pts_count: 1,
        };
        let updates = tl::types::UpdateShort {
            update: update.into(),
            date: state::now(),
        }
        .into();
        data.push(owner, &updates);
    }

    /// Whether `account` last said it was typing to `peer` (`None`: never said).
    pub fn typing_of(&self, account: i64, peer: i64) -> Option<bool> {
        self.inner.lock().typing.get(&(account, peer)).copied()
    }

    /// How far `account` read its private chat with `peer`.
    pub fn read_up_to(&self, account: i64, peer: i64) -> Option<i32> {
        self.inner.lock().read.get(&(account, peer)).copied()
    }

    /// Answers the next `times` calls of `method` (`messages.sendMessage`) with
    /// 420 FLOOD_WAIT_`seconds`, as Telegram does to clients that send too fast.
    pub fn flood_wait(&self, method: &str, seconds: u32, times: u32) {
        self.inner
            .lock()
            .floods
            .insert(method.to_owned(), (seconds, times));
    }

    /// Answers every call of `method` for the next `seconds` with 420 FLOOD_WAIT_`n`, `n`
    /// the seconds left, as Telegram does while an account is held back.
    pub fn flood_for(&self, method: &str, seconds: u64) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        self.inner
            .lock()
            .flood_windows
            .insert(method.to_owned(), until);
    }

    /// The user the preset key is signed in as.
    pub fn signed_in(&self) -> Option<i64> {
        self.inner.lock().signed_in(&self.key)
    }
}

/// A stored message as the control API shows it.
fn sim_message(m: &state::Stored) -> SimMessage {
    SimMessage {
        id: m.id,
        from: m.from,
        out: m.out,
        text: m.text.clone(),
        entities: m.entities.iter().map(describe_entity).collect(),
        reply_to: m.reply_to,
        edited: m.edit_date.is_some(),
        reactions: m.reactions.clone(),
    }
}

/// An entity as `(kind, offset, length)` for tests.
fn describe_entity(entity: &tl::enums::MessageEntity) -> (String, i32, i32) {
    use tl::enums::MessageEntity as E;
    match entity {
        E::Bold(e) => ("bold".to_owned(), e.offset, e.length),
        E::Italic(e) => ("italic".to_owned(), e.offset, e.length),
        E::Underline(e) => ("underline".to_owned(), e.offset, e.length),
        E::Strike(e) => ("strike".to_owned(), e.offset, e.length),
        E::Code(e) => ("code".to_owned(), e.offset, e.length),
        E::Pre(e) => (format!("pre:{}", e.language), e.offset, e.length),
        E::TextUrl(e) => (format!("text_url:{}", e.url), e.offset, e.length),
        E::Spoiler(e) => ("spoiler".to_owned(), e.offset, e.length),
        E::MentionName(e) => (format!("mention:{}", e.user_id), e.offset, e.length),
        other => (format!("{other:?}"), 0, 0),
    }
}
