//! The WeChat bridge: speaks the Wechaty Puppet Service gRPC protocol, so any Wechaty puppet
//! (padlocal, wechat4u, …) behind a puppet service can carry the account.
//!
//! - [`connector`]: [`WechatNetwork`] and [`WechatConnector`], what the core sees.
//! - [`login`]: the `qr` login flow.
//! - [`client`]: [`client::WechatClient`], one login's connection.
//! - [`handle_remote`] / [`handle_matrix`]: the two directions, with pacing in the latter.
//! - [`convert`], [`ids`]: pure conversions; [`puppet`]: the gRPC client; [`config`]: the
//!   `network:` section; [`outbox`]: messages waiting while the puppet service is away;
//!   [`file_box`], [`media`]: file boxes and fetching files and avatars.

pub mod client;
pub mod commands;
pub mod config;
pub mod connector;
pub mod convert;
pub mod file_box;
pub mod handle_matrix;
pub mod handle_remote;
pub mod ids;
pub mod login;
pub mod media;
pub mod outbox;
pub mod puppet;

pub use config::WechatConfig;
pub use connector::{WechatConnector, WechatNetwork};
