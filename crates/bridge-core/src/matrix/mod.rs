//! The bridge's side of the Matrix client-server API.
//!
//! [`MatrixClient`] is the appservice's HTTP client: the `as_token`, identity assertion,
//! timeouts and retries live there. [`Intent`] is one appservice user (the bot or a ghost)
//! acting in rooms: registering, joining, sending, redacting, reacting, profile and media.

mod client;
mod error;
mod intent;
mod media;
mod retry;
pub mod txn;

pub use client::{ClientOptions, MatrixClient, PathInput, RawRequest, RawResponse, RoomEncryptor, SendOptions};
pub use error::MatrixError;
pub use intent::{CreateRoomOptions, Intent, Profile, RoomMember};
pub use retry::RetryPolicy;
