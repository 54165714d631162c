//! Discord's snowflake IDs ↔ the core's typed remote IDs.
//!
//! Users, channels and messages keep their decimal snowflake as the remote ID. Reactions
//! use the unicode emoji itself, or `name:id` for a custom emoji (the form Discord's
//! reaction endpoints take).

use bridge_core::network::{EmojiId, LoginId, NetworkError, RemoteChatId, RemoteMessageId, RemoteUserId};
use serenity::model::channel::ReactionType;
use serenity::model::id::{ChannelId, EmojiId as DiscordEmojiId, MessageId, UserId};

/// Parses a decimal snowflake, refusing 0 and non-digits.
fn snowflake(kind: &str, value: &str) -> Result<u64, NetworkError> {
    match value.parse::<u64>() {
        Ok(id) if id != 0 => Ok(id),
        _ => Err(NetworkError::NotFound(format!("{kind} {value:?} (not a Discord ID)"))),
    }
}

/// The remote ID of a Discord user.
pub fn user_id(id: UserId) -> RemoteUserId {
    RemoteUserId(id.get().to_string())
}

/// The Discord user of a remote user ID.
pub fn parse_user(id: &RemoteUserId) -> Result<UserId, NetworkError> {
    snowflake("user", id.as_str()).map(UserId::new)
}

/// The login ID of a bot (its user ID).
pub fn login_id(id: UserId) -> LoginId {
    LoginId(id.get().to_string())
}

/// The remote chat ID of a channel (guild channel, thread or DM).
pub fn chat_id(id: ChannelId) -> RemoteChatId {
    RemoteChatId(id.get().to_string())
}

/// The channel of a remote chat ID.
pub fn parse_chat(id: &RemoteChatId) -> Result<ChannelId, NetworkError> {
    snowflake("channel", id.as_str()).map(ChannelId::new)
}

/// The remote chat ID of a server (the parent of its channels, bridged as a space):
/// `guild:<id>`, since old servers share their ID with their first channel.
pub fn guild_id(id: serenity::model::id::GuildId) -> RemoteChatId {
    RemoteChatId(format!("guild:{}", id.get()))
}

/// The server of a remote chat ID made by [`guild_id`]; `None` for channels.
pub fn parse_guild(id: &RemoteChatId) -> Option<serenity::model::id::GuildId> {
    let id = id.as_str().strip_prefix("guild:")?;
    snowflake("guild", id).ok().map(serenity::model::id::GuildId::new)
}

/// The remote ID of a message.
pub fn message_id(id: MessageId) -> RemoteMessageId {
    RemoteMessageId(id.get().to_string())
}

/// The message of a remote message ID.
pub fn parse_message(id: &RemoteMessageId) -> Result<MessageId, NetworkError> {
    snowflake("message", id.as_str()).map(MessageId::new)
}

/// The emoji ID of a reaction: the unicode emoji, or `name:id` for custom emoji.
pub fn emoji_id(reaction: &ReactionType) -> EmojiId {
    match reaction {
        ReactionType::Custom { id, name, .. } => {
            EmojiId(format!("{}:{}", name.as_deref().unwrap_or("_"), id.get()))
        }
        ReactionType::Unicode(text) => EmojiId(text.clone()),
        // The enum is non-exhaustive; anything new is kept as its display form.
        other => EmojiId(other.to_string()),
    }
}

/// The reaction of an emoji ID (inverse of [`emoji_id`]).
pub fn parse_emoji(id: &EmojiId) -> ReactionType {
    if let Some((name, number)) = id.as_str().rsplit_once(':') {
        if let Ok(number) = number.parse::<u64>() {
            if number != 0 && !name.is_empty() {
                return ReactionType::Custom {
                    animated: false,
                    id: DiscordEmojiId::new(number),
                    name: Some(name.to_owned()),
                };
            }
        }
    }
    ReactionType::Unicode(id.as_str().to_owned())
}

/// Milliseconds since the Unix epoch of a Discord timestamp (which has millisecond
/// precision; serenity's `unix_timestamp` drops it).
pub fn millis(timestamp: &serenity::all::Timestamp) -> i64 {
    i64::try_from(timestamp.unix_timestamp_nanos() / 1_000_000).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_their_milliseconds() {
        let t = serenity::all::Timestamp::parse("2016-04-30T11:18:25.796Z").expect("timestamp");
        assert_eq!(millis(&t), 1_462_015_105_796);
    }

    #[test]
    fn snowflakes_round_trip() {
        let user = UserId::new(80351110224678912);
        assert_eq!(user_id(user).as_str(), "80351110224678912");
        assert_eq!(parse_user(&user_id(user)).ok(), Some(user));
        let chat = ChannelId::new(42);
        assert_eq!(parse_chat(&chat_id(chat)).ok(), Some(chat));
        let message = MessageId::new(7);
        assert_eq!(parse_message(&message_id(message)).ok(), Some(message));
        assert_eq!(login_id(user).as_str(), "80351110224678912");
        let guild = serenity::model::id::GuildId::new(42);
        assert_eq!(guild_id(guild).as_str(), "guild:42");
        assert_eq!(parse_guild(&guild_id(guild)), Some(guild));
        assert_eq!(parse_guild(&chat_id(chat)), None, "a channel is not a server");
        assert_eq!(parse_guild(&RemoteChatId::from("guild:x")), None);
    }

    #[test]
    fn bad_ids_are_not_found() {
        for bad in ["", "0", "abc", "-5", "1.5", "99999999999999999999999"] {
            assert!(matches!(parse_user(&RemoteUserId::from(bad)), Err(NetworkError::NotFound(_))), "{bad:?}");
            assert!(parse_chat(&RemoteChatId::from(bad)).is_err());
        }
    }

    #[test]
    fn emoji_round_trip() {
        let cases = [
            ReactionType::Unicode("👍".to_owned()),
            ReactionType::Custom { animated: false, id: DiscordEmojiId::new(123), name: Some("blob".to_owned()) },
        ];
        for reaction in cases {
            let id = emoji_id(&reaction);
            assert_eq!(parse_emoji(&id), reaction, "{id}");
        }
        assert_eq!(emoji_id(&ReactionType::Unicode("❤️".to_owned())).as_str(), "❤️");
        assert_eq!(parse_emoji(&EmojiId::from("a:b")), ReactionType::Unicode("a:b".to_owned()));
    }
}
