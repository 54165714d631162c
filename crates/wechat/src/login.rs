//! The `qr` login flow: optionally ask for the user's own puppet service, start the
//! puppet, show the QR code from each SCAN event (a new step when it refreshes), report
//! the scan status, and complete on LOGIN with the account's real name.
//!
//! Step IDs: `endpoint` (user input), `qr` (the code), `qr-scanned`, `qr-expired`
//! (display and wait, nothing to show), `complete`.

use std::collections::BTreeMap;

use bridge_core::network::login::{CompletedLogin, Display, FieldKind, InputField, LoginStep};
use bridge_core::network::{LoginProcess, NetworkError};
use serde::{Deserialize, Serialize};

use crate::config::WechatConfig;
use crate::convert::{self, scan_status, LoginEvent, ScanEvent};
use crate::puppet::proto::{EventResponse, EventType};
use crate::puppet::{Puppet, PuppetError, PuppetTarget};

/// What the core stores for a WeChat login.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The self contact's id.
    pub self_id: String,
    /// The user's own puppet service, if they gave one; otherwise the config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The token of the user's own puppet service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("self_id", &self.self_id).field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Session {
    /// The puppet service this session uses.
    pub fn target(&self, config: &WechatConfig) -> PuppetTarget {
        PuppetTarget {
            endpoint: self.endpoint.clone().unwrap_or_else(|| config.endpoint.clone()),
            token: self.token.clone().unwrap_or_else(|| config.token.clone()),
            tls: config.tls.clone(),
        }
    }
}

/// A `qr` login in progress.
pub struct QrLogin {
    config: WechatConfig,
    /// The user's own service, when they gave one.
    own: Option<(String, String)>,
    puppet: Option<Puppet>,
    stream: Option<tonic::Streaming<EventResponse>>,
    shown: Option<String>,
    status: i32,
}

impl QrLogin {
    /// A new login with the bridge's `config`.
    pub fn new(config: WechatConfig) -> Self {
        Self { config, own: None, puppet: None, stream: None, shown: None, status: 0 }
    }

    fn asks_for_endpoint(&self) -> bool {
        self.config.allow_user_endpoint
    }

    /// Opens the event stream, starts the puppet and returns the first step.
    async fn begin(&mut self) -> Result<LoginStep, NetworkError> {
        let target = match &self.own {
            Some((endpoint, token)) => {
                PuppetTarget { endpoint: endpoint.clone(), token: token.clone(), tls: self.config.tls.clone() }
            }
            None if self.config.endpoint.is_empty() => {
                return Err(NetworkError::Remote("network.endpoint is not set in the bridge config".to_owned()))
            }
            None => PuppetTarget {
                endpoint: self.config.endpoint.clone(),
                token: self.config.token.clone(),
                tls: self.config.tls.clone(),
            },
        };
        let puppet = Puppet::new(&target, self.config.call_timeout()).map_err(|e| match e {
            PuppetError::InvalidEndpoint(_) if self.own.is_some() => NetworkError::BadInput(e.to_string()),
            other => other.into(),
        })?;
        let stream = puppet.events().await.map_err(|e| match e {
            PuppetError::StreamBusy => NetworkError::Remote(self.service_in_use()),
            PuppetError::Unauthenticated if self.own.is_some() => NetworkError::BadInput(e.to_string()),
            other => self.unreachable(other),
        })?;
        puppet.start().await.map_err(|e| self.unreachable(e))?;
        self.puppet = Some(puppet);
        self.stream = Some(stream);
        self.next_step().await
    }

    /// Why a login cannot start on a service that is in use: a Wechaty service carries one
    /// WeChat account, and another login (usually one of this bridge's) is using it.
    fn service_in_use(&self) -> String {
        let whose = if self.own.is_some() { "Your WeChat service" } else { "This bridge's WeChat service" };
        let mut text = format!("{whose} is already in use by a logged-in WeChat account, and it carries one account at a time");
        if self.asks_for_endpoint() && self.own.is_none() {
            text.push_str(". To add another account, send `login` and give the address of your own Wechaty service");
        }
        text
    }

    /// `error` for the user: an unreachable service of the bridge's config is named with
    /// its address and config key, so that they can tell the operator what to fix.
    fn unreachable(&self, error: PuppetError) -> NetworkError {
        match error {
            PuppetError::Unavailable(detail) | PuppetError::Tls(detail) if self.own.is_none() => {
                NetworkError::Remote(format!(
                    "the WeChat service of this bridge ({}, network.endpoint in the bridge's config) \
                     cannot be reached: {detail}; tell the bridge's operator",
                    self.config.endpoint
                ))
            }
            other => other.into(),
        }
    }

    /// Reads events until one changes what the user should see.
    async fn next_step(&mut self) -> Result<LoginStep, NetworkError> {
        loop {
            let stream = self.stream.as_mut().ok_or_else(|| NetworkError::Remote("the login was not started".to_owned()))?;
            let event = match stream.message().await {
                Ok(Some(event)) => event,
                Ok(None) => return Err(NetworkError::Remote("the WeChat service closed the connection".to_owned())),
                Err(status) => return Err(PuppetError::from_status("Event", &status).into()),
            };
            match EventType::try_from(event.r#type).unwrap_or(EventType::Unspecified) {
                EventType::Scan => {
                    let Ok(scan) = serde_json::from_str::<ScanEvent>(&event.payload) else { continue };
                    if let Some(step) = self.scan_step(scan) {
                        return Ok(step);
                    }
                }
                EventType::Login => {
                    let Ok(login) = serde_json::from_str::<LoginEvent>(&event.payload) else { continue };
                    return self.complete(login.contact_id).await;
                }
                _ => {}
            }
        }
    }

    /// The step for a SCAN event, if it changes anything.
    fn scan_step(&mut self, scan: ScanEvent) -> Option<LoginStep> {
        let wait = |step_id: &str, instructions: &str, display: Display| LoginStep::DisplayAndWait {
            step_id: step_id.to_owned(),
            instructions: instructions.to_owned(),
            display,
        };
        let new_code = !scan.qrcode.is_empty() && self.shown.as_deref() != Some(scan.qrcode.as_str());
        let changed = new_code || scan.status != self.status;
        self.status = scan.status;
        if new_code {
            self.shown = Some(scan.qrcode.clone());
            return Some(wait(
                "qr",
                "Scan this QR code with WeChat on your phone (Me → … or the scan button), then confirm.",
                Display::Qr(scan.qrcode),
            ));
        }
        if !changed {
            return None;
        }
        match scan.status {
            scan_status::SCANNED => Some(wait("qr-scanned", "Scanned. Confirm the login on your phone.", Display::Nothing)),
            scan_status::CONFIRMED => Some(wait("qr-scanned", "Confirmed. Logging in…", Display::Nothing)),
            scan_status::TIMEOUT | scan_status::CANCEL => {
                Some(wait("qr-expired", "The QR code expired or was cancelled; waiting for a new one.", Display::Nothing))
            }
            _ => None,
        }
    }

    /// Completes the login as `self_id`, with its real name.
    async fn complete(&mut self, self_id: String) -> Result<LoginStep, NetworkError> {
        // Only one event stream per puppet: free it for the login's client.
        self.stream = None;
        let puppet = self.puppet.as_ref().ok_or_else(|| NetworkError::Remote("the login was not started".to_owned()))?;
        let name = match puppet.contact(&self_id).await {
            Ok(contact) => convert::display_name("", &contact.name, &contact.weixin),
            Err(error) => {
                tracing::warn!(%error, "could not read the logged-in contact");
                None
            }
        };
        let remote_name = name.unwrap_or_else(|| self_id.clone());
        let session = Session {
            self_id: self_id.clone(),
            endpoint: self.own.as_ref().map(|(e, _)| e.clone()),
            token: self.own.as_ref().map(|(_, t)| t.clone()),
        };
        let session = serde_json::to_value(&session).map_err(|e| NetworkError::Remote(e.to_string()))?;
        Ok(LoginStep::Complete {
            step_id: "complete".to_owned(),
            instructions: format!("Logged in to WeChat as {remote_name}."),
            login: CompletedLogin { remote_id: self_id, remote_name, session },
        })
    }
}

#[async_trait::async_trait]
impl LoginProcess for QrLogin {
    async fn start(&mut self) -> Result<LoginStep, NetworkError> {
        if self.asks_for_endpoint() {
            let field = |id: &str, kind: FieldKind, name: &str, description: &str| InputField {
                id: id.to_owned(),
                kind,
                name: name.to_owned(),
                description: Some(description.to_owned()),
            };
            return Ok(LoginStep::UserInput {
                step_id: "endpoint".to_owned(),
                instructions: "Send the address and token of your own Wechaty service, or `default` to use the bridge's."
                    .to_owned(),
                fields: vec![
                    field("endpoint", FieldKind::Url, "Endpoint", "http://host:port or https://host:port, or `default`"),
                    field("token", FieldKind::Token, "Token", "The Wechaty service token (any text with `default`)"),
                ],
            });
        }
        self.begin().await
    }

    async fn submit_input(&mut self, input: BTreeMap<String, String>) -> Result<LoginStep, NetworkError> {
        let endpoint = input.get("endpoint").map(|e| e.trim().to_owned()).unwrap_or_default();
        let token = input.get("token").map(|t| t.trim().to_owned()).unwrap_or_default();
        if endpoint.is_empty() {
            return Err(NetworkError::BadInput("an endpoint is required".to_owned()));
        }
        if endpoint != "default" {
            self.own = Some((endpoint, token));
        }
        self.begin().await
    }

    async fn wait(&mut self) -> Result<LoginStep, NetworkError> {
        self.next_step().await
    }

    async fn cancel(&mut self) {
        self.stream = None;
        self.puppet = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(qrcode: &str, status: i32) -> ScanEvent {
        ScanEvent { qrcode: qrcode.to_owned(), status }
    }

    #[test]
    fn scan_events_become_steps_only_when_something_changes() {
        let mut login = QrLogin::new(WechatConfig::default());
        let cases = [
            (scan("qr-1", scan_status::WAITING), Some("qr")),
            (scan("qr-1", scan_status::WAITING), None),
            (scan("", scan_status::SCANNED), Some("qr-scanned")),
            (scan("", scan_status::TIMEOUT), Some("qr-expired")),
            (scan("qr-2", scan_status::WAITING), Some("qr")),
        ];
        for (event, want) in cases {
            let step = login.scan_step(event.clone());
            assert_eq!(step.as_ref().map(LoginStep::step_id), want, "{event:?}");
            if let Some(LoginStep::DisplayAndWait { display: Display::Qr(code), .. }) = step {
                assert_eq!(code, event.qrcode);
            }
        }
    }

    #[test]
    fn sessions_use_their_own_service_or_the_configs() {
        let config = WechatConfig { endpoint: "http://cfg:1".to_owned(), token: "cfg-token".to_owned(), ..WechatConfig::default() };
        let plain = Session { self_id: "me".to_owned(), endpoint: None, token: None };
        assert_eq!(plain.target(&config).endpoint, "http://cfg:1");
        let json = serde_json::to_value(&plain).expect("json");
        assert_eq!(json, serde_json::json!({"self_id": "me"}));
        let own = Session { self_id: "me".to_owned(), endpoint: Some("http://own:2".to_owned()), token: Some("t".to_owned()) };
        assert_eq!(own.target(&config).token, "t");
        assert!(!format!("{own:?}").contains("\"t\""));
    }
}
