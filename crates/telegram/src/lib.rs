//! The Telegram bridge: logs in as the user's own Telegram account (or a bot) over MTProto,
//! built on grammers.
//!
//! The files follow the layout shared by every network crate: [`connector`] (the
//! [`TelegramNetwork`] facts and the connector), [`login`] (the `phone`, `qr` and `bot` flows),
//! [`client`] (one MTProto connection per login), [`chats`] (chats and users described), [`handle_remote`] (updates → remote
//! events), [`handle_matrix`] (outgoing messages), [`convert`] (entities ↔ HTML), [`ids`],
//! [`config`] and [`commands`]; [`session`] keeps the MTProto session in the bridge's
//! database, [`outbox`] the messages waiting out a flood wait, and [`reactions`] reactions both ways.

pub mod chats;
pub mod client;
pub mod commands;
pub mod config;
pub mod connector;
pub mod convert;
pub mod handle_matrix;
pub mod handle_remote;
pub mod ids;
pub mod login;
pub mod outbox;
pub mod reactions;
pub mod session;

pub use config::TelegramConfig;
pub use connector::{TelegramConnector, TelegramNetwork};
