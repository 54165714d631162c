//! The Discord bridge: a bot token per login, messages from Matrix sent through
//! per-channel webhooks, built on serenity.
//!
//! The files follow the layout shared by every network crate: [`connector`] (the
//! [`DiscordNetwork`] facts and the connector), [`login`] (the `token` flow), [`client`] (one
//! gateway connection per login), [`handle_remote`] (Discord events → remote events),
//! [`handle_matrix`] (outgoing messages), [`convert`] (markdown ↔ HTML), [`ids`],
//! [`config`], [`commands`] (the `guilds` commands) and [`threads`] (Discord threads as
//! Matrix threads).

pub mod client;
pub mod commands;
pub mod config;
pub mod connector;
pub mod convert;
pub mod handle_matrix;
pub mod handle_remote;
pub mod ids;
pub mod login;
pub mod threads;

pub use config::DiscordConfig;
pub use connector::{DiscordConnector, DiscordNetwork};
