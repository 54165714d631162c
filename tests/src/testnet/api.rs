//! The test-side API of [`TestNet`]: set up users, chats and accounts, inject remote events,
//! drive login flows from the "phone", and read what the bridge did. No HTTP involved.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;

use super::state::{Account, Chat, User};
use super::wire::{WireEvent, WireMedia, WireMessage};
use super::{Action, ChatSpec, MessageSpec, TestNet};

impl TestNet {
    /// Adds (or replaces) a remote user.
    pub fn add_user(&self, id: &str, name: &str) {
        self.inner.update(|s| {
            s.users.insert(id.to_owned(), User { name: name.to_owned(), avatar: None, is_bot: false });
        });
    }

    /// Renames a user (no event: follow with [`TestNet::push_user_info_changed`] to report it).
    pub fn set_user_name(&self, id: &str, name: &str) {
        self.inner.update(|s| {
            if let Some(u) = s.users.get_mut(id) {
                name.clone_into(&mut u.name);
            }
        });
    }

    /// Sets a user's avatar (PNG bytes); returns the avatar's media ID, which is also the
    /// `AvatarRef::id` the client reports.
    pub fn set_user_avatar(&self, id: &str, png: &[u8]) -> String {
        self.inner.update(|s| {
            let media = s.store_media("image/png", Bytes::copy_from_slice(png));
            if let Some(u) = s.users.get_mut(id) {
                u.avatar = Some(media.clone());
            }
            media
        })
    }

    /// Marks a user as a bot.
    pub fn set_user_bot(&self, id: &str, is_bot: bool) {
        self.inner.update(|s| {
            if let Some(u) = s.users.get_mut(id) {
                u.is_bot = is_bot;
            }
        });
    }

    /// Reports a user's current name and avatar to every logged-in login.
    pub fn push_user_info_changed(&self, id: &str) -> anyhow::Result<()> {
        self.inner.update(|s| {
            let user = s.wire_user(id).with_context(|| format!("no user {id}"))?;
            let logins: Vec<String> = s.logins.keys().cloned().collect();
            for login in logins {
                s.enqueue(&login, WireEvent::UserInfo { user: user.clone() });
            }
            Ok(())
        })
    }

    /// Registers an account that can log in with the `password` flow (phone, code, then
    /// `password` if given) and the `qr` flow. The account ID is also its user ID and,
    /// once logged in, the login ID.
    pub fn add_account(&self, phone: &str, account_id: &str, name: &str, password: Option<&str>) {
        self.inner.update(|s| {
            s.users.insert(account_id.to_owned(), User { name: name.to_owned(), avatar: None, is_bot: false });
            let account = s.accounts.entry(account_id.to_owned()).or_default();
            account.phone = Some(phone.to_owned());
            account.password = password.map(str::to_owned);
        });
    }

    /// Registers a bot account that logs in with the `token` flow using `token`.
    pub fn add_bot_account(&self, token: &str, account_id: &str, name: &str) {
        self.inner.update(|s| {
            s.users.insert(account_id.to_owned(), User { name: name.to_owned(), avatar: None, is_bot: true });
            s.accounts.insert(account_id.to_owned(), Account { bot_token: Some(token.to_owned()), ..Account::default() });
        });
    }

    /// Sets the code the `password` flow expects (default `12345`).
    pub fn set_login_code(&self, code: &str) {
        self.inner.update(|s| s.login_code = Some(code.to_owned()));
    }

    /// The QR codes of `qr` login processes waiting for a scan, oldest first.
    pub fn pending_qr_codes(&self) -> Vec<String> {
        let state = self.inner.read();
        let mut pending: Vec<(u64, u32)> = state
            .processes
            .values()
            .filter_map(|p| match p.step {
                super::state::ProcStep::Qr { n } => Some((p.order, n)),
                _ => None,
            })
            .collect();
        pending.sort_unstable();
        pending.into_iter().map(|(_, n)| format!("testnet-qr-{n}")).collect()
    }

    /// Waits until a `qr` login process is waiting for a scan and returns the newest code
    /// (use it before [`TestNet::scan_qr`] when the bridge starts the flow).
    pub async fn wait_qr(&self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.inner.changed.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(code) = self.pending_qr_codes().pop() {
                return Ok(code);
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => anyhow::bail!("no qr login started within {timeout:?}"),
            }
        }
    }

    /// Replaces the QR code of every waiting `qr` process (`testnet-qr-1` → `testnet-qr-2`).
    pub fn refresh_qr(&self) {
        self.inner.update(|s| {
            for p in s.processes.values_mut() {
                if let super::state::ProcStep::Qr { n } = &mut p.step {
                    *n += 1;
                }
            }
        });
    }

    /// "Scans" the QR code of the most recently started waiting `qr` process with the
    /// phone of `account_id`: that process completes as this account.
    pub fn scan_qr(&self, account_id: &str) -> anyhow::Result<()> {
        self.inner.update(|s| {
            anyhow::ensure!(s.accounts.contains_key(account_id), "no account {account_id}");
            let process = s
                .processes
                .iter()
                .filter(|(_, p)| matches!(p.step, super::state::ProcStep::Qr { .. }))
                .max_by_key(|(_, p)| p.order)
                .map(|(id, _)| id.clone())
                .context("no qr login is waiting for a scan")?;
            let done = s.complete_login(account_id);
            if let Some(p) = s.processes.get_mut(&process) {
                p.step = super::state::ProcStep::Done(done);
            }
            Ok(())
        })
    }

    /// Logs `account_id` in without a flow and returns the session data the client needs
    /// (`{"token": ...}`), for tests that build a client directly.
    pub fn create_session(&self, account_id: &str) -> anyhow::Result<serde_json::Value> {
        self.inner.update(|s| {
            anyhow::ensure!(s.accounts.contains_key(account_id), "no account {account_id}");
            match s.complete_login(account_id) {
                super::wire::WireLoginStep::Complete { token, .. } => Ok(serde_json::json!({ "token": token })),
                other => anyhow::bail!("unexpected step {other:?}"),
            }
        })
    }

    /// Invalidates the login's token (as if the session was ended from another device);
    /// its client then reports `LoginState::BadCredentials`.
    pub fn revoke_login(&self, account_id: &str) {
        self.inner.update(|s| {
            if let Some(l) = s.logins.get_mut(account_id) {
                l.token = None;
            }
        });
    }

    /// Whether `account_id` has a valid session.
    pub fn is_logged_in(&self, account_id: &str) -> bool {
        self.inner.read().logins.get(account_id).is_some_and(|l| l.token.is_some())
    }

    /// How many events are queued for the login and not yet acknowledged by its client.
    pub fn pending_events(&self, account_id: &str) -> usize {
        self.inner.read().events_after(account_id, 0).len()
    }

    /// Discards the login's queued, unacknowledged events (as if the network kept only the
    /// chat history, not a replay queue, for a client that was away), so a bridge that
    /// reconnects must catch up from history. Returns how many were dropped.
    pub fn drop_pending(&self, account_id: &str) -> usize {
        self.inner.update(|s| {
            let Some(l) = s.logins.get_mut(account_id) else { return 0 };
            let dropped = l.queue.len();
            l.queue.clear();
            l.acked = l.next_seq;
            dropped
        })
    }

    /// Creates (or replaces) a chat; every member that is logged in sees it.
    pub fn add_chat(&self, spec: ChatSpec) {
        self.inner.update(|s| {
            let old = s.chats.remove(&spec.id).map(|c| c.messages).unwrap_or_default();
            let chat = Chat {
                name: spec.name,
                topic: spec.topic,
                is_direct: spec.is_direct,
                members: spec.members,
                messages: old,
                ..Chat::default()
            };
            s.chats.insert(spec.id, chat);
        });
    }

    fn with_chat(&self, chat: &str, f: impl FnOnce(&mut Chat)) -> anyhow::Result<()> {
        self.inner.update(|s| {
            let c = s.chats.get_mut(chat).with_context(|| format!("no chat {chat}"))?;
            f(c);
            Ok(())
        })
    }

    /// Renames a chat (no event: follow with [`TestNet::push_chat_info_changed`]).
    pub fn set_chat_name(&self, chat: &str, name: Option<&str>) -> anyhow::Result<()> {
        self.with_chat(chat, |c| c.name = name.map(str::to_owned))
    }

    /// Sets a chat's topic (no event: follow with [`TestNet::push_chat_info_changed`]).
    pub fn set_chat_topic(&self, chat: &str, topic: Option<&str>) -> anyhow::Result<()> {
        self.with_chat(chat, |c| c.topic = topic.map(str::to_owned))
    }

    /// Sets a chat's avatar (PNG bytes); returns its media ID.
    pub fn set_chat_avatar(&self, chat: &str, png: &[u8]) -> anyhow::Result<String> {
        let media = self.inner.update(|s| s.store_media("image/png", Bytes::copy_from_slice(png)));
        self.with_chat(chat, |c| c.avatar = Some(media.clone()))?;
        Ok(media)
    }

    /// Sets (or with `None` clears) a member's name in this chat only; no event until
    /// [`TestNet::push_chat_info_changed`].
    pub fn set_nickname(&self, chat: &str, user: &str, nickname: Option<&str>) -> anyhow::Result<()> {
        self.with_chat(chat, |c| match nickname {
            Some(n) => {
                c.nicknames.insert(user.to_owned(), n.to_owned());
            }
            None => {
                c.nicknames.remove(user);
            }
        })
    }

    /// Adds a member to a chat (admin if `admin`); no event until [`TestNet::push_chat_info_changed`].
    pub fn add_member(&self, chat: &str, user: &str, admin: bool) -> anyhow::Result<()> {
        self.with_chat(chat, |c| {
            if !c.members.iter().any(|m| m == user) {
                c.members.push(user.to_owned());
            }
            if admin && !c.admins.iter().any(|m| m == user) {
                c.admins.push(user.to_owned());
            }
        })
    }

    /// Removes a member; the removed login is sent `ChatDeleted`. Other members get nothing
    /// until [`TestNet::push_chat_info_changed`].
    pub fn remove_member(&self, chat: &str, user: &str) -> anyhow::Result<()> {
        self.with_chat(chat, |c| {
            c.members.retain(|m| m != user);
            c.admins.retain(|m| m != user);
        })?;
        self.inner.update(|s| s.enqueue(user, WireEvent::ChatDeleted { chat: chat.to_owned() }));
        Ok(())
    }

    /// Reports the chat's current info to its members.
    pub fn push_chat_info_changed(&self, chat: &str) -> anyhow::Result<()> {
        self.inner.update(|s| {
            let info = s.wire_chat(chat).with_context(|| format!("no chat {chat}"))?;
            s.fanout(chat, None, WireEvent::ChatInfo { chat: info });
            Ok(())
        })
    }

    /// Deletes a chat and tells its members.
    pub fn push_chat_deleted(&self, chat: &str) -> anyhow::Result<()> {
        self.inner.update(|s| {
            anyhow::ensure!(s.chats.contains_key(chat), "no chat {chat}");
            s.fanout(chat, None, WireEvent::ChatDeleted { chat: chat.to_owned() });
            s.chats.remove(chat);
            Ok(())
        })
    }

    /// Injects a message from `sender` into `chat`: stored in the history and queued for every
    /// logged-in member (the sender's own login too, as `is_from_me`). Returns its ID.
    pub fn push_message(&self, chat: &str, sender: &str, spec: MessageSpec) -> anyhow::Result<String> {
        self.inner.update(|s| {
            anyhow::ensure!(s.chats.contains_key(chat), "no chat {chat}");
            let media = spec.media.map(|m| {
                let size = m.bytes.len() as u64;
                let id = s.store_media(&m.mime, Bytes::from(m.bytes));
                WireMedia { id, kind: m.kind, filename: m.filename, mime: m.mime, size }
            });
            let id = s.new_id("m");
            let timestamp = s.now();
            let message = WireMessage {
                chat: chat.to_owned(),
                id: id.clone(),
                sender: sender.to_owned(),
                timestamp,
                text: spec.text,
                html: spec.html,
                mentions: spec.mentions,
                media,
                reply_to: spec.reply_to,
                deleted: false,
            };
            s.add_message(message, None);
            Ok(id)
        })
    }

    /// Injects an edit of message `id` by `sender`.
    pub fn push_edit(&self, chat: &str, id: &str, sender: &str, text: &str, html: Option<&str>) -> anyhow::Result<()> {
        self.inner.update(|s| {
            let timestamp = s.now();
            let message = s.message_mut(chat, id).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            text.clone_into(&mut message.text);
            message.html = html.map(str::to_owned);
            let event = WireEvent::Edit {
                chat: chat.to_owned(),
                id: id.to_owned(),
                sender: sender.to_owned(),
                timestamp,
                text: text.to_owned(),
                html: html.map(str::to_owned),
            };
            s.fanout(chat, None, event);
            Ok(())
        })
    }

    /// Injects the deletion of message `id` by `sender`.
    pub fn push_delete(&self, chat: &str, id: &str, sender: &str) -> anyhow::Result<()> {
        self.inner.update(|s| {
            s.message_mut(chat, id).map_err(|e| anyhow::anyhow!("{e:?}"))?.deleted = true;
            let event = WireEvent::Delete { chat: chat.to_owned(), id: id.to_owned(), sender: sender.to_owned() };
            s.fanout(chat, None, event);
            Ok(())
        })
    }

    /// Injects a reaction added (`add`) or removed by `sender` on message `target`.
    pub fn push_reaction(&self, chat: &str, target: &str, sender: &str, emoji: &str, add: bool) -> anyhow::Result<()> {
        self.inner.update(|s| {
            s.message_mut(chat, target).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let timestamp = s.now();
            let event = WireEvent::Reaction {
                chat: chat.to_owned(),
                target: target.to_owned(),
                sender: sender.to_owned(),
                emoji: emoji.to_owned(),
                add,
                timestamp,
            };
            s.fanout(chat, None, event);
            Ok(())
        })
    }

    /// Injects a typing notification (`timeout_ms` 0 stops it).
    pub fn push_typing(&self, chat: &str, sender: &str, timeout_ms: u64) -> anyhow::Result<()> {
        self.inner.update(|s| {
            anyhow::ensure!(s.chats.contains_key(chat), "no chat {chat}");
            s.fanout(chat, Some(sender), WireEvent::Typing { chat: chat.to_owned(), sender: sender.to_owned(), timeout_ms });
            Ok(())
        })
    }

    /// Injects a read receipt: `sender` read `chat` up to message `up_to`.
    pub fn push_read_receipt(&self, chat: &str, sender: &str, up_to: &str) -> anyhow::Result<()> {
        self.inner.update(|s| {
            anyhow::ensure!(s.chats.contains_key(chat), "no chat {chat}");
            let event = WireEvent::Read { chat: chat.to_owned(), sender: sender.to_owned(), up_to: up_to.to_owned() };
            s.fanout(chat, Some(sender), event);
            Ok(())
        })
    }

    /// Injects a read receipt that `account` made in the network's own app: like
    /// [`TestNet::push_read_receipt`], but queued for the account's own login too (as
    /// `is_from_me`), as networks sync read state between a user's devices.
    pub fn push_own_read_receipt(&self, chat: &str, account: &str, up_to: &str) -> anyhow::Result<()> {
        self.inner.update(|s| {
            anyhow::ensure!(s.chats.contains_key(chat), "no chat {chat}");
            let event = WireEvent::Read { chat: chat.to_owned(), sender: account.to_owned(), up_to: up_to.to_owned() };
            s.fanout(chat, None, event);
            Ok(())
        })
    }

    /// A chat's messages, oldest first (deleted ones included, flagged `deleted`).
    pub fn history(&self, chat: &str) -> Vec<WireMessage> {
        self.inner.read().chats.get(chat).map(|c| c.messages.clone()).unwrap_or_default()
    }

    /// How many times the bridge read each chat's history (chat ID → reads).
    pub fn history_reads(&self) -> std::collections::BTreeMap<String, usize> {
        self.inner.read().history_reads.clone()
    }

    /// Everything the bridge did so far, in order.
    pub fn actions(&self) -> Vec<Action> {
        self.inner.read().actions.clone()
    }

    /// Waits for the first action (in the whole log, old ones included) that matches
    /// `predicate`; fails after `timeout`, listing the actions seen.
    pub async fn wait_action(&self, timeout: Duration, predicate: impl Fn(&Action) -> bool) -> anyhow::Result<Action> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.inner.changed.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(found) = self.inner.read().actions.iter().find(|a| predicate(a)) {
                return Ok(found.clone());
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => {
                    anyhow::bail!("timed out after {timeout:?} waiting for an action; seen: {:#?}", self.actions());
                }
            }
        }
    }
}
