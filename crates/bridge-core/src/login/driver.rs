//! [`LoginDriver`]: the one place that owns a [`LoginProcess`] and advances it.
//!
//! Both front ends (the management room and the provisioning API) hold a driver and call
//! [`LoginDriver::start`], [`LoginDriver::submit`] and [`LoginDriver::wait`] as the current
//! step asks. The driver keeps the current step, turns a rejected input into
//! [`Advance::Rejected`] (the flow stays on the same step), and on completion stores the
//! login, connects its client and starts the portal sync.

use std::{collections::BTreeMap, sync::Arc};

use ruma::OwnedUserId;

use crate::{
    bridge::{logins::LiveLogin, Bridge},
    config::PermissionLevel,
    network::{LoginFlow, LoginProcess, LoginStep, NetworkError},
};

/// Why a login could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The user's permission level is below `user`.
    #[error("you need the user permission level to log in")]
    NotAllowed,
    /// The requested flow does not exist.
    #[error("unknown login flow `{flow}`; available: {}", .available.join(", "))]
    UnknownFlow {
        /// The flow asked for.
        flow: String,
        /// The IDs of the flows the network offers.
        available: Vec<String>,
    },
    /// The user already has a login flow in progress.
    #[error("a login is already in progress")]
    InProgress,
    /// The flow was cancelled.
    #[error("the login was cancelled")]
    Cancelled,
    /// The flow waited too long for the user.
    #[error("the login timed out")]
    TimedOut,
    /// The flow has already ended.
    #[error("the login has already finished")]
    Finished,
    /// The network failed the flow.
    #[error("{0}")]
    Network(#[from] NetworkError),
    /// The completed login could not be stored or connected.
    #[error("could not save the login: {0}")]
    Save(String),
}

/// What advancing a login produced.
pub enum Advance {
    /// The flow moved on to a user-input or display-and-wait step.
    Next(LoginStep),
    /// The network rejected the input; `step` (unchanged) is still current.
    Rejected {
        /// Why, to show to the user.
        message: String,
        /// The step to prompt again.
        step: LoginStep,
    },
    /// The login is done: stored, and its client connected.
    Completed {
        /// The final step (its instructions may be shown).
        step: LoginStep,
        /// The live login.
        login: LiveLogin,
    },
}

/// Picks the flow `requested` (or the default, the first) among `flows`.
pub fn resolve_flow(flows: &[LoginFlow], requested: Option<&str>) -> Result<LoginFlow, LoginError> {
    let found = match requested {
        Some(id) => flows.iter().find(|f| f.id.eq_ignore_ascii_case(id)),
        None => flows.first(),
    };
    found.cloned().ok_or_else(|| LoginError::UnknownFlow {
        flow: requested.unwrap_or_default().to_owned(),
        available: flows.iter().map(|f| f.id.clone()).collect(),
    })
}

/// A login process in progress for one Matrix user.
pub struct LoginDriver {
    bridge: Arc<Bridge>,
    user: OwnedUserId,
    flow: LoginFlow,
    process: Box<dyn LoginProcess>,
    current: Option<LoginStep>,
    finished: bool,
}

impl std::fmt::Debug for LoginDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginDriver")
            .field("user", &self.user)
            .field("flow", &self.flow.id)
            .field("step", &self.current.as_ref().map(LoginStep::step_id))
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl LoginDriver {
    /// Checks that `user` may log in, resolves the flow and creates the network's process.
    /// Nothing is sent to the network until [`LoginDriver::start`].
    pub async fn create(bridge: &Arc<Bridge>, user: &OwnedUserId, flow: Option<&str>) -> Result<Self, LoginError> {
        if bridge.permission(user) < PermissionLevel::User {
            return Err(LoginError::NotAllowed);
        }
        let flow = resolve_flow(&bridge.connector.login_flows(), flow)?;
        let process = bridge.connector.create_login(&flow.id).await?;
        Ok(Self { bridge: bridge.clone(), user: user.clone(), flow, process, current: None, finished: false })
    }

    /// The flow being run.
    pub fn flow(&self) -> &LoginFlow {
        &self.flow
    }

    /// The Matrix user logging in.
    pub fn user(&self) -> &OwnedUserId {
        &self.user
    }

    /// The step the flow is on (`None` before [`LoginDriver::start`]).
    pub fn current(&self) -> Option<&LoginStep> {
        self.current.as_ref()
    }

    /// Whether the flow has ended (completed, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Starts the flow and returns its first step.
    pub async fn start(&mut self) -> Result<Advance, LoginError> {
        self.ensure_running()?;
        tracing::info!(user = %self.user, flow = %self.flow.id, "starting a login");
        let result = self.process.start().await;
        self.advance(result).await
    }

    /// Submits the values of the current user-input step, keyed by field ID.
    pub async fn submit(&mut self, input: BTreeMap<String, String>) -> Result<Advance, LoginError> {
        self.ensure_running()?;
        let result = self.process.submit_input(input).await;
        self.advance(result).await
    }

    /// Waits for the current display-and-wait step to move on. Dropping the future leaves
    /// the driver on the same step (the front end then usually calls [`LoginDriver::cancel`]).
    pub async fn wait(&mut self) -> Result<Advance, LoginError> {
        self.ensure_running()?;
        let result = self.process.wait().await;
        self.advance(result).await
    }

    /// Abandons the flow; does nothing if it has already ended.
    pub async fn cancel(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        tracing::info!(user = %self.user, flow = %self.flow.id, "login cancelled");
        self.process.cancel().await;
    }

    fn ensure_running(&self) -> Result<(), LoginError> {
        if self.finished {
            Err(LoginError::Finished)
        } else {
            Ok(())
        }
    }

    async fn advance(&mut self, result: Result<LoginStep, NetworkError>) -> Result<Advance, LoginError> {
        match result {
            Ok(LoginStep::Complete { step_id, instructions, login }) => {
                self.finished = true;
                let remote_name = login.remote_name.clone();
                let step = LoginStep::Complete { step_id, instructions, login: login.clone() };
                self.current = Some(step.clone());
                let live = self.bridge.add_login(&self.user, login).await.map_err(|e| {
                    tracing::warn!(user = %self.user, error = %format!("{e:#}"), "could not save a completed login");
                    LoginError::Save(format!("{e:#}"))
                })?;
                // add_login connects the client and starts syncing its portals.
                tracing::info!(user = %self.user, login = %live.id, remote = %remote_name, "login completed");
                Ok(Advance::Completed { step, login: live })
            }
            Ok(step) => {
                tracing::debug!(user = %self.user, step = step.step_id(), "login step");
                self.current = Some(step.clone());
                Ok(Advance::Next(step))
            }
            Err(NetworkError::BadInput(message)) => match self.current.clone() {
                Some(step) => Ok(Advance::Rejected { message, step }),
                None => self.fail(NetworkError::BadInput(message)).await,
            },
            Err(e) => self.fail(e).await,
        }
    }

    async fn fail(&mut self, error: NetworkError) -> Result<Advance, LoginError> {
        tracing::info!(user = %self.user, flow = %self.flow.id, error = %error, "login failed");
        self.finished = true;
        self.process.cancel().await;
        Err(LoginError::Network(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(id: &str) -> LoginFlow {
        LoginFlow { id: id.into(), name: id.to_uppercase(), description: format!("log in with {id}") }
    }

    #[test]
    fn resolve_flow_picks_requested_or_default() {
        let flows = [flow("qr"), flow("password")];
        let cases = [
            (None, Ok("qr")),
            (Some("password"), Ok("password")),
            (Some("QR"), Ok("qr")),
            (Some("sms"), Err("unknown login flow `sms`; available: qr, password")),
        ];
        for (requested, want) in cases {
            let got = resolve_flow(&flows, requested).map(|f| f.id).map_err(|e| e.to_string());
            assert_eq!(got.as_deref().map_err(String::as_str), want, "{requested:?}");
        }
        assert!(resolve_flow(&[], None).is_err());
    }
}
