//! Reactions both ways. Telegram reports a message's reactions as a whole
//! (`updateMessageReactions`: who reacted with what), so the last known reactions of each
//! message are kept in the login's store (`reactions/<chat>/<message>`) and every update is
//! compared with them: what is new becomes a `ReactionAdd`, what is gone a
//! `ReactionRemove`. The bridge's own reactions are written there before they are sent,
//! so their echo changes nothing. Matrix reactions outside Telegram's standard set are
//! refused at once (the core tells the user); a chat that allows fewer gets
//! REACTION_INVALID from Telegram, reported the same way.

use bridge_core::network::events::{ChatRef, Sender};
use bridge_core::network::{EmojiId, NetworkError, RemoteEvent, RemoteMessageId};
use grammers_client::tl;
use grammers_session::types::PeerId;

use crate::client::{timed, Shared};
use crate::ids;
use crate::outbox::Target;

/// Telegram's standard reactions (without variation selectors).
const STANDARD: &[&str] = &[
    "👍",
    "👎",
    "❤",
    "🔥",
    "🥰",
    "👏",
    "😁",
    "🤔",
    "🤯",
    "😱",
    "🤬",
    "😢",
    "🎉",
    "🤩",
    "🤮",
    "💩",
    "🙏",
    "👌",
    "🕊",
    "🤡",
    "🥱",
    "🥴",
    "😍",
    "🐳",
    "❤\u{200d}🔥",
    "🌚",
    "🌭",
    "💯",
    "🤣",
    "⚡",
    "🍌",
    "🏆",
    "💔",
    "🤨",
    "😐",
    "🍓",
    "🍾",
    "💋",
    "🖕",
    "😈",
    "😴",
    "😭",
    "🤓",
    "👻",
    "👨\u{200d}💻",
    "👀",
    "🎃",
    "🙈",
    "😇",
    "😨",
    "🤝",
    "✍",
    "🤗",
    "🫡",
    "🎅",
    "🎄",
    "☃",
    "💅",
    "🤪",
    "🗿",
    "🆒",
    "💘",
    "🙉",
    "🦄",
    "😘",
    "💊",
    "🙊",
    "😎",
    "👾",
    "🤷\u{200d}♂",
    "🤷",
    "🤷\u{200d}♀",
    "😡",
];

/// The Telegram reaction for a Matrix reaction key, if it is a standard one.
pub fn emoji_id(key: &str) -> Option<EmojiId> {
    let bare: String = key.chars().filter(|c| *c != '\u{fe0f}').collect();
    STANDARD.contains(&bare.as_str()).then(|| EmojiId(bare))
}

/// Who reacted with what on one message: `(sender in Bot API notation, emoticon)`.
type Reactions = Vec<(i64, String)>;

fn key(chat: PeerId, message: i32) -> String {
    format!("reactions/{}/{message}", chat.bot_api_dialog_id_unchecked())
}

impl Shared {
    async fn known_reactions(&self, chat: PeerId, message: i32) -> Reactions {
        self.events
            .store()
            .get(&key(chat, message))
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    async fn keep_reactions(&self, chat: PeerId, message: i32, reactions: &Reactions) {
        if let Err(error) = self
            .events
            .store()
            .set(&key(chat, message), reactions)
            .await
        {
            tracing::warn!(login = %self.login, %error, "could not keep a message's reactions");
        }
    }

    /// Sets (or with `None` removes) the account's reaction on a message.
    pub(crate) async fn react(
        &self,
        chat: &ChatRef,
        target: &RemoteMessageId,
        emoji: Option<&EmojiId>,
    ) -> Result<(), NetworkError> {
        let peer_id = ids::parse_chat(&chat.id)
            .ok_or_else(|| NetworkError::NotFound(format!("chat {}", chat.id.as_str())))?;
        let peer = self.peer_ref(peer_id).await.ok_or_else(|| {
            NetworkError::NotFound(format!("the Telegram chat {}", chat.id.as_str()))
        })?;
        let Target::Sent(message) = self.outbox.target(target) else {
            return Err(NetworkError::NotFound(format!(
                "message {} (not sent to Telegram yet)",
                target.as_str()
            )));
        };
        let me = self.self_id().ok_or(NetworkError::NotLoggedIn)?;
        let before = self.known_reactions(peer_id, message).await;
        // One reaction per person: the new one replaces the account's old one.
        let mut after: Reactions = before.iter().filter(|(s, _)| *s != me).cloned().collect();
        if let Some(emoji) = emoji {
            after.push((me, emoji.0.clone()));
        }
        self.keep_reactions(peer_id, message, &after).await;
        let request = tl::functions::messages::SendReaction {
            big: false,
            add_to_recent: true,
            peer: peer.into(),
            msg_id: message,
            reaction: Some(
                emoji
                    .map(|e| {
                        tl::types::ReactionEmoji {
                            emoticon: e.0.clone(),
                        }
                        .into()
                    })
                    .into_iter()
                    .collect(),
            ),
        };
        let client = self.client()?;
        let sent = timed(&self.config, client.invoke(&request)).await;
        if let Err(error) = sent {
            self.keep_reactions(peer_id, message, &before).await;
            return Err(match error {
                NetworkError::NotFound(what) if what.starts_with("REACTION") => {
                    NetworkError::Unsupported(format!(
                        "this reaction in this Telegram chat ({what})"
                    ))
                }
                other => other,
            });
        }
        Ok(())
    }

    /// The events of an `updateMessageReactions`: the differences with what was known.
    pub(crate) async fn reaction_events(
        &self,
        update: tl::types::UpdateMessageReactions,
    ) -> Vec<RemoteEvent> {
        let chat = PeerId::from(&update.peer);
        let Some(me) = self.self_id() else {
            return Vec::new();
        };
        let tl::enums::MessageReactions::Reactions(reactions) = update.reactions;
        let now: Reactions = reactions
            .recent_reactions
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| {
                let tl::enums::MessagePeerReaction::Reaction(r) = r;
                let tl::enums::Reaction::Emoji(emoji) = r.reaction else {
                    return None;
                };
                let sender = if r.my {
                    me
                } else {
                    PeerId::from(&r.peer_id).bot_api_dialog_id()?
                };
                Some((sender, emoji.emoticon))
            })
            .collect();
        let before = self.known_reactions(chat, update.msg_id).await;
        if before == now {
            return Vec::new();
        }
        self.keep_reactions(chat, update.msg_id, &now).await;
        let target = self.outbox.known_id(chat, update.msg_id);
        let chat_ref = ids::chat_ref(&self.login, chat);
        let sender = |id: i64| Sender {
            user: ids::user_id(id),
            is_from_me: id == me,
        };
        let removed = before
            .iter()
            .filter(|r| !now.contains(r))
            .map(|(id, emoji)| RemoteEvent::ReactionRemove {
                chat: chat_ref.clone(),
                target: target.clone(),
                sender: sender(*id),
                emoji_id: EmojiId(emoji.clone()),
            });
        let added = now
            .iter()
            .filter(|r| !before.contains(r))
            .map(|(id, emoji)| RemoteEvent::ReactionAdd {
                chat: chat_ref.clone(),
                target: target.clone(),
                sender: sender(*id),
                emoji_id: EmojiId(emoji.clone()),
                emoji: emoji.clone(),
                timestamp: crate::client::now_ms(),
            });
        removed.chain(added).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_reactions_are_accepted_with_or_without_variation_selectors() {
        assert_eq!(emoji_id("👍"), Some(EmojiId("👍".to_owned())));
        assert_eq!(emoji_id("❤️"), Some(EmojiId("❤".to_owned())));
        assert_eq!(emoji_id("🦆"), None);
        assert_eq!(emoji_id("hello"), None);
    }
}
