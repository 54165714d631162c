//! The client side of the test network's login flows: [`TestLogin`] turns the server's
//! login steps into the core's [`LoginStep`]s.
//!
//! Step IDs: `phone`, `code`, `password`, `token` (user input), `qr` (display and wait),
//! `complete`. The session of a completed login is `{"token": "..."}`.

use std::collections::BTreeMap;
use std::time::Duration;

use bridge_core::network::login::{CompletedLogin, Display, FieldKind, InputField, LoginStep};
use bridge_core::network::{LoginProcess, NetworkError};
use reqwest::Method;

use super::connector::{Http, CALL_TIMEOUT};
use super::wire::{LoginInput, LoginStarted, WireLoginStep};

/// How long the server holds one `wait` request.
const WAIT_HOLD: Duration = Duration::from_secs(20);

/// A login process of the test network (`password`, `qr` or `token`).
pub struct TestLogin {
    http: Http,
    flow: String,
    process: Option<String>,
    shown: Option<String>,
}

impl TestLogin {
    pub(crate) fn new(http: Http, flow: &str) -> Self {
        Self { http, flow: flow.to_owned(), process: None, shown: None }
    }

    fn process(&self) -> Result<&str, NetworkError> {
        self.process.as_deref().ok_or_else(|| NetworkError::Remote("the login was not started".to_owned()))
    }

    /// Converts a server step, remembering the QR code shown.
    fn step(&mut self, step: WireLoginStep) -> LoginStep {
        let input = |step_id: &str, kind: FieldKind, name: &str, instructions: &str| LoginStep::UserInput {
            step_id: step_id.to_owned(),
            instructions: instructions.to_owned(),
            fields: vec![InputField { id: step_id.to_owned(), kind, name: name.to_owned(), description: None }],
        };
        match step {
            WireLoginStep::Phone => {
                input("phone", FieldKind::PhoneNumber, "Phone number", "Send your phone number in international format (+…).")
            }
            WireLoginStep::Code => input("code", FieldKind::Code, "Code", "Send the code the test network sent you."),
            WireLoginStep::Password => input("password", FieldKind::Password, "Password", "Send your password."),
            WireLoginStep::Token => input("token", FieldKind::Token, "Bot token", "Send the bot's token."),
            WireLoginStep::Qr { code } => {
                self.shown = Some(code.clone());
                LoginStep::DisplayAndWait {
                    step_id: "qr".to_owned(),
                    instructions: "Scan this QR code with the test network app.".to_owned(),
                    display: Display::Qr(code),
                }
            }
            WireLoginStep::Complete { account, name, token } => {
                self.process = None;
                LoginStep::Complete {
                    step_id: "complete".to_owned(),
                    instructions: format!("Logged in as {name}."),
                    login: CompletedLogin {
                        remote_id: account,
                        remote_name: name,
                        session: serde_json::json!({ "token": token }),
                    },
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl LoginProcess for TestLogin {
    async fn start(&mut self) -> Result<LoginStep, NetworkError> {
        let started: LoginStarted =
            self.http.call(Method::POST, &["login", &self.flow], None, &[], None, CALL_TIMEOUT).await?;
        self.process = Some(started.process);
        Ok(self.step(started.step))
    }

    async fn submit_input(&mut self, input: BTreeMap<String, String>) -> Result<LoginStep, NetworkError> {
        let process = self.process()?.to_owned();
        let body = LoginInput { fields: input };
        let step: WireLoginStep = self
            .http
            .call(Method::POST, &["login", "process", &process, "submit"], None, &[], Some(&body), CALL_TIMEOUT)
            .await?;
        Ok(self.step(step))
    }

    async fn wait(&mut self) -> Result<LoginStep, NetworkError> {
        let process = self.process()?.to_owned();
        loop {
            let mut query = vec![("timeout_ms", WAIT_HOLD.as_millis().to_string())];
            if let Some(shown) = &self.shown {
                query.push(("shown", shown.clone()));
            }
            let step: WireLoginStep = self
                .http
                .call(Method::GET, &["login", "process", &process, "wait"], None, &query, None, WAIT_HOLD + CALL_TIMEOUT)
                .await?;
            let unchanged = matches!(&step, WireLoginStep::Qr { code } if Some(code) == self.shown.as_ref());
            if !unchanged {
                return Ok(self.step(step));
            }
        }
    }

    async fn cancel(&mut self) {
        if let Some(process) = self.process.take() {
            let result: Result<serde_json::Value, _> =
                self.http.call(Method::DELETE, &["login", "process", &process], None, &[], None, CALL_TIMEOUT).await;
            if let Err(error) = result {
                tracing::debug!(%error, "could not cancel a test network login");
            }
        }
    }
}
