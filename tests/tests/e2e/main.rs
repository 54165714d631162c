//! The end-to-end suite: the bridges against a real Synapse (one binary, one module per area).

mod container;
mod core;
mod discord;
mod durability;
mod encryption;
mod env;
mod login;
mod messages;
mod puppet;
mod telegram;
mod harness;
mod matrix;
mod portals;
mod testnet;
mod wechat;
mod whatsapp;
