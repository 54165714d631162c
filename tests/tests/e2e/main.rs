//! The end-to-end suite: the bridges against a real Synapse (one binary, one module per area).

mod core;
mod env;
mod login;
mod messages;
mod harness;
mod matrix;
mod testnet;
