//! Login as a step machine: ask for input, display something and wait, complete.
//!
//! A [`LoginProcess`] hands the core one [`LoginStep`] at a time. The core renders the
//! step in the management room (or the provisioning API returns it as JSON), collects
//! what the step needs, and feeds it back. Step IDs are stable strings so clients of the
//! provisioning API can recognise them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// A way to log in that a network offers (`qr`, `phone`, `token`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFlow {
    /// Stable machine ID, used in `login <id>` and the provisioning API.
    pub id: String,
    /// Short human name.
    pub name: String,
    /// One sentence on what the flow needs from the user.
    pub description: String,
}

/// What kind of value a user-input field takes; decides validation and redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Free text.
    Text,
    /// A phone number in international format.
    PhoneNumber,
    /// A one-time code sent by the network.
    Code,
    /// A password; redacted from the room once read.
    Password,
    /// An access token; redacted from the room once read.
    Token,
    /// A URL.
    Url,
}

impl FieldKind {
    /// Whether the value is a secret whose message must be redacted and never logged.
    pub fn is_secret(self) -> bool {
        matches!(self, Self::Password | Self::Token | Self::Code)
    }
}

/// One field of a user-input step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputField {
    /// Stable key under which the value is submitted.
    pub id: String,
    /// What the value is.
    pub kind: FieldKind,
    /// Human label.
    pub name: String,
    /// Optional longer explanation.
    pub description: Option<String>,
}

/// What a display-and-wait step shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Display {
    /// A QR code to scan; the string is the code's content. The core renders it as an image.
    Qr(String),
    /// A short code to type on another device.
    Code(String),
    /// Nothing to show; the user acts elsewhere (approve on the phone, say).
    Nothing,
}

/// One step of a login process, as the network hands it to the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LoginStep {
    /// Ask the user for one or more values, then call [`LoginProcess::submit_input`].
    UserInput {
        /// Stable step ID (`fi.mau.telegram.phone` style, or `phone`).
        step_id: String,
        /// What to tell the user.
        instructions: String,
        /// The values wanted, in order.
        fields: Vec<InputField>,
    },
    /// Show something and call [`LoginProcess::wait`] until the next step arrives.
    DisplayAndWait {
        /// Stable step ID.
        step_id: String,
        /// What to tell the user.
        instructions: String,
        /// What to show.
        display: Display,
    },
    /// The login is done: store it and connect its client.
    Complete {
        /// Stable step ID.
        step_id: String,
        /// What to tell the user.
        instructions: String,
        /// The login that was created.
        login: CompletedLogin,
    },
}

impl LoginStep {
    /// The step's stable ID.
    pub fn step_id(&self) -> &str {
        match self {
            Self::UserInput { step_id, .. }
            | Self::DisplayAndWait { step_id, .. }
            | Self::Complete { step_id, .. } => step_id,
        }
    }
}

/// A finished login as the network reports it; the core stores it as a user login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedLogin {
    /// The remote account's stable ID (a login per user is unique by this).
    pub remote_id: String,
    /// A human name for the account (phone number, username).
    pub remote_name: String,
    /// Network-specific session data needed to reconnect without a new login.
    /// Stored in the database; never logged.
    pub session: serde_json::Value,
}

/// A login in progress. Created by [`super::NetworkConnector::create_login`]; the core
/// calls [`LoginProcess::start`] once, then `submit_input` or `wait` as each step asks,
/// and [`LoginProcess::cancel`] if the user gives up or the flow times out.
#[async_trait::async_trait]
pub trait LoginProcess: Send + 'static {
    /// Starts the flow and returns its first step.
    async fn start(&mut self) -> Result<LoginStep, NetworkError>;

    /// Submits the values of a user-input step, keyed by field ID. A
    /// [`NetworkError::BadInput`] makes the core re-prompt with the message.
    async fn submit_input(
        &mut self,
        input: BTreeMap<String, String>,
    ) -> Result<LoginStep, NetworkError>;

    /// Waits for a display-and-wait step to move on (a scan, a refresh of the QR code,
    /// a timeout). The core cancels the future when the user cancels.
    async fn wait(&mut self) -> Result<LoginStep, NetworkError>;

    /// Abandons the flow and releases whatever it holds on the network side.
    async fn cancel(&mut self);
}
