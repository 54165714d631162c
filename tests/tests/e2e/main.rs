//! The end-to-end suite: the bridges against a real Synapse (one binary, one module per area).

mod core;
mod discord;
mod env;
mod login;
mod messages;
mod puppet;
mod harness;
mod matrix;
mod testnet;
mod wechat;
mod whatsapp;
