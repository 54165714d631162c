//! The shared core of the Matrix bridges.
//!
//! Everything that does not depend on a particular remote network lives here: the
//! appservice server and its durable transaction inbox, the Matrix client and intents,
//! storage, configuration and the command line, bot commands and login flows. A network
//! crate implements the traits in [`network`] and calls [`cli::main`] from its `main.rs`.

pub mod appservice;
pub mod backoff;
pub mod bridge;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod ghost;
pub mod login;
pub mod matrix;
pub mod metrics;
pub mod network;
pub mod portal;
pub mod provisioning;
pub mod public_media;
pub mod store;
