//! Typed remote IDs. A network's IDs are opaque strings to the core, but each kind gets
//! its own type so a chat ID can never be passed where a user ID is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! remote_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The ID as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

remote_id!(
    /// A user (person or bot) on the remote network.
    RemoteUserId
);
remote_id!(
    /// A chat on the remote network: a DM, group, channel or thread parent.
    RemoteChatId
);
remote_id!(
    /// A message on the remote network, unique within its chat.
    RemoteMessageId
);
remote_id!(
    /// One part of a remote message that became several Matrix events (text + images).
    PartId
);
remote_id!(
    /// A reaction emoji as the network identifies it (a unicode string or a custom emoji ID).
    EmojiId
);
remote_id!(
    /// A user login: one remote account of one Matrix user. Chosen by the network (the
    /// remote account's own ID), unique per bridge.
    LoginId
);
