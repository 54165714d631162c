//! Discord threads as Matrix threads. A thread is a channel of its own on Discord; on
//! Matrix it lives in its parent channel's portal, as a thread whose root is the message the
//! thread was started from (a Discord thread started from a message has that message's ID).
//!
//! [`Shared::locate`] tells the chat and thread root of a Discord channel (threads are
//! learnt from THREAD_CREATE, else looked up once over REST); [`thread_for_root`] finds or
//! starts the Discord thread a Matrix thread reply goes to. Messages known to sit in a thread
//! are remembered, so edits, deletions and reactions reach the right channel.

use bridge_core::network::events::ChatRef;
use bridge_core::network::{NetworkError, RemoteMessageId};
use serde_json::json;
use serenity::all::{Channel, ChannelId, ChannelType, GuildChannel, GuildId, MessageId};

use crate::client::{lock, Shared};
use crate::connector::timed;
use crate::handle_remote::chat_ref;
use crate::ids;

/// How many thread messages are remembered for edits, deletions and reactions.
pub const THREAD_MESSAGES_KEPT: usize = 50_000;

/// Whether a channel type is a thread.
pub fn is_thread(kind: ChannelType) -> bool {
    matches!(kind, ChannelType::PublicThread | ChannelType::PrivateThread | ChannelType::NewsThread)
}

impl Shared {
    /// Records a thread (from THREAD_CREATE or a lookup).
    pub(crate) fn note_thread(&self, thread: &GuildChannel) {
        if is_thread(thread.kind) {
            lock(&self.channel_parents).insert(thread.id, thread.parent_id);
        }
    }

    /// The parent of a guild channel if it is a thread (`None` for other channels).
    async fn thread_parent(&self, channel: ChannelId, guild: GuildId) -> Option<ChannelId> {
        if let Some(known) = lock(&self.channel_parents).get(&channel).copied() {
            return known;
        }
        let cache = self.cache();
        if cache.as_ref().and_then(|c| c.guild(guild).map(|g| g.channels.contains_key(&channel))) == Some(true) {
            lock(&self.channel_parents).insert(channel, None);
            return None;
        }
        match timed(self.http.get_channel(channel)).await {
            Ok(Channel::Guild(found)) => {
                let parent = if is_thread(found.kind) { found.parent_id } else { None };
                lock(&self.channel_parents).insert(channel, parent);
                parent
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(%channel, error = %e, "could not look up a channel");
                None
            }
        }
    }

    /// The chat of a Discord channel and, for a thread, the thread's root message.
    pub(crate) async fn locate(&self, channel: ChannelId, guild: Option<GuildId>) -> (ChatRef, Option<RemoteMessageId>) {
        let Some(guild) = guild else { return (chat_ref(channel, None, &self.login), None) };
        match self.thread_parent(channel, guild).await {
            Some(parent) => (chat_ref(parent, Some(guild), &self.login), Some(ids::message_id(MessageId::new(channel.get())))),
            None => (chat_ref(channel, Some(guild), &self.login), None),
        }
    }

    /// Remembers that `message` sits in `thread`: in memory (forgotten past
    /// [`THREAD_MESSAGES_KEPT`]) and in the login's store (`thread-message/<message>`), so that
    /// edits, deletions and reactions reach the thread after a restart too.
    pub(crate) fn note_thread_message(&self, message: MessageId, thread: ChannelId) {
        {
            let mut known = lock(&self.thread_messages);
            if known.len() >= THREAD_MESSAGES_KEPT {
                known.clear();
            }
            known.insert(message, thread);
        }
        let store = self.events.store().clone();
        tokio::spawn(async move {
            if let Err(e) = store.set(&format!("thread-message/{message}"), &thread.get()).await {
                tracing::warn!(%message, error = %e, "could not remember a thread message");
            }
        });
    }

    /// The channel `message` sits in: its thread if known, else `chat`'s channel.
    pub(crate) async fn channel_of(&self, chat: ChannelId, message: MessageId) -> ChannelId {
        if let Some(thread) = lock(&self.thread_messages).get(&message).copied() {
            return thread;
        }
        match self.events.store().get::<u64>(&format!("thread-message/{message}")).await {
            Ok(Some(thread)) if thread != 0 => ChannelId::new(thread),
            _ => chat,
        }
    }
}

/// The Discord thread for a Matrix thread rooted at `root` in `channel`: the thread with the
/// root's ID if there is one, else a new thread started from the root message.
pub(crate) async fn thread_for_root(shared: &Shared, channel: ChannelId, root: &RemoteMessageId) -> Result<ChannelId, NetworkError> {
    let root = ids::parse_message(root)?;
    let thread = ChannelId::new(root.get());
    if lock(&shared.channel_parents).get(&thread).copied().flatten() == Some(channel) {
        return Ok(thread);
    }
    // The root may itself sit in a thread: reply in that thread.
    if let Some(existing) = lock(&shared.thread_messages).get(&root).copied() {
        return Ok(existing);
    }
    let body = json!({ "name": "Thread", "auto_archive_duration": 1440 });
    match timed(shared.http.create_thread_from_message(channel, root, &body, None)).await {
        Ok(created) => {
            shared.note_thread(&created);
            Ok(created.id)
        }
        // Started meanwhile (by someone on Discord): it has the root's ID.
        Err(NetworkError::BadInput(reason)) if reason.contains("already") => {
            lock(&shared.channel_parents).insert(thread, Some(channel));
            Ok(thread)
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_kinds() {
        let cases = [
            (ChannelType::PublicThread, true),
            (ChannelType::PrivateThread, true),
            (ChannelType::NewsThread, true),
            (ChannelType::Text, false),
            (ChannelType::Private, false),
        ];
        for (kind, want) in cases {
            assert_eq!(is_thread(kind), want, "{kind:?}");
        }
    }
}
