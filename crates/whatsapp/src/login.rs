//! The login flows, which link the bridge as a companion device of the user's phone:
//! `qr` (scan the QR code, refreshed as WhatsApp rotates it) and `phone` (a pairing code for
//! a phone number, typed into the phone). The device being linked lives in memory until
//! the phone accepts it; the completed login's session carries it to the login's own store
//! ([`Session`]).
//!
//! Step IDs: `phone` (user input), `qr` (the code), `code` (the pairing code), `complete`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge_core::network::login::{CompletedLogin, Display, FieldKind, InputField, LoginStep};
use bridge_core::network::{LoginProcess, NetworkError};
use serde::{Deserialize, Serialize};
use whatsapp_rust::bot::BotHandle;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::types::events::Event;

use crate::client::{build_bot, BotOptions};
use crate::config::WhatsappConfig;
use crate::device_store::DeviceStore;
use crate::ids;

/// What the core stores for a WhatsApp login.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// The account's phone number (the user part of its JID).
    pub phone: String,
    /// When the device was linked (milliseconds since the epoch); tells a relinked device
    /// from the one already in the login's store.
    pub linked_at: i64,
    /// The linked device's records as they were at linking, moved into the login's store
    /// when it first loads.
    #[serde(default)]
    pub device: BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for Session {
    // The device records hold private keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phone", &self.phone)
            .field("linked_at", &self.linked_at)
            .finish_non_exhaustive()
    }
}

/// Which way the device is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Scan a QR code.
    Qr,
    /// Type a pairing code for a phone number.
    Phone,
}

/// A login in progress.
pub struct PairLogin {
    config: WhatsappConfig,
    flow: Flow,
    store: DeviceStore,
    bot: Option<BotHandle>,
    events: Option<tokio::sync::mpsc::UnboundedReceiver<Arc<Event>>>,
}

impl PairLogin {
    /// A new login through `flow` with the bridge's `config`.
    pub fn new(config: WhatsappConfig, flow: Flow) -> Self {
        Self {
            config,
            flow,
            store: DeviceStore::in_memory(),
            bot: None,
            events: None,
        }
    }

    /// Starts a fresh device's client (asking for a pairing code for `phone`, if given) and
    /// returns the first step.
    async fn begin(&mut self, phone: Option<String>) -> Result<LoginStep, NetworkError> {
        let pair_code = phone.map(|phone_number| PairCodeOptions {
            phone_number,
            ..PairCodeOptions::default()
        });
        let options = BotOptions {
            pair_code,
            ..BotOptions::default()
        };
        let (bot, events) = build_bot(&self.config, self.store.clone(), options).await?;
        self.bot = Some(bot.spawn());
        self.events = Some(events);
        self.next_step().await
    }

    /// Reads the client's events until one changes what the user should see.
    async fn next_step(&mut self) -> Result<LoginStep, NetworkError> {
        loop {
            let events = self
                .events
                .as_mut()
                .ok_or_else(|| NetworkError::Remote("the login was not started".to_owned()))?;
            let Some(event) = events.recv().await else {
                return Err(NetworkError::Remote(
                    "the WhatsApp client stopped".to_owned(),
                ));
            };
            match &*event {
                Event::PairingQrCode(qr) if self.flow == Flow::Qr => {
                    return Ok(LoginStep::DisplayAndWait {
                        step_id: "qr".to_owned(),
                        instructions: "Scan this QR code with WhatsApp on your phone: Settings → Linked devices → Link a device."
                            .to_owned(),
                        display: Display::Qr(qr.code.clone()),
                    });
                }
                Event::PairingCode(code) => {
                    return Ok(LoginStep::DisplayAndWait {
                        step_id: "code".to_owned(),
                        instructions: "On your phone, open WhatsApp → Settings → Linked devices → Link a device → \
                                       Link with phone number instead, and enter this code:"
                            .to_owned(),
                        display: Display::Code(code.code.clone()),
                    });
                }
                Event::PairingCodeError(error) => {
                    return Err(NetworkError::Remote(format!(
                        "WhatsApp gave no pairing code: {error:?}"
                    )));
                }
                Event::PairError(error) => {
                    return Err(NetworkError::Remote(format!(
                        "linking failed: {}",
                        error.error
                    )));
                }
                Event::PairingQrCodesExhausted(_) => {
                    return Err(NetworkError::Remote(
                        "the QR codes expired; send `login` to get new ones".to_owned(),
                    ));
                }
                Event::PairSuccess(success) => {
                    let phone = success.id.user.to_string();
                    let name =
                        (!success.business_name.is_empty()).then(|| success.business_name.clone());
                    return self.complete(phone, name).await;
                }
                _ => {}
            }
        }
    }

    /// The phone accepted the device: stops the pairing client (which flushes the device
    /// to the store) and hands the device over in the session.
    async fn complete(
        &mut self,
        phone: String,
        name: Option<String>,
    ) -> Result<LoginStep, NetworkError> {
        if let Some(bot) = self.bot.take() {
            bot.shutdown().await;
        }
        self.events = None;
        let session = Session {
            phone: phone.clone(),
            linked_at: crate::handle_remote::now_ms(),
            device: self.store.export().await?,
        };
        let remote_name = match name {
            Some(name) => format!("{name} ({})", ids::display_phone(&phone)),
            None => ids::display_phone(&phone),
        };
        let session =
            serde_json::to_value(&session).map_err(|e| NetworkError::Remote(e.to_string()))?;
        Ok(LoginStep::Complete {
            step_id: "complete".to_owned(),
            instructions: format!("Logged in to WhatsApp as {remote_name}."),
            login: CompletedLogin {
                remote_id: phone,
                remote_name,
                session,
            },
        })
    }
}

#[async_trait::async_trait]
impl LoginProcess for PairLogin {
    async fn start(&mut self) -> Result<LoginStep, NetworkError> {
        match self.flow {
            Flow::Qr => self.begin(None).await,
            Flow::Phone => Ok(LoginStep::UserInput {
                step_id: "phone".to_owned(),
                instructions:
                    "Send the phone number of your WhatsApp account, in international format (+…)."
                        .to_owned(),
                fields: vec![InputField {
                    id: "phone".to_owned(),
                    kind: FieldKind::PhoneNumber,
                    name: "Phone number".to_owned(),
                    description: Some("With the country code, like +15551234567".to_owned()),
                }],
            }),
        }
    }

    async fn submit_input(
        &mut self,
        input: BTreeMap<String, String>,
    ) -> Result<LoginStep, NetworkError> {
        let raw = input.get("phone").map(String::as_str).unwrap_or_default();
        let phone = ids::parse_phone(raw).ok_or_else(|| {
            NetworkError::BadInput(
                "that is not a phone number in international format, like +15551234567".to_owned(),
            )
        })?;
        self.begin(Some(phone)).await
    }

    async fn wait(&mut self) -> Result<LoginStep, NetworkError> {
        self.next_step().await
    }

    async fn cancel(&mut self) {
        self.events = None;
        if let Some(bot) = self.bot.take() {
            bot.shutdown().await;
        }
    }
}
