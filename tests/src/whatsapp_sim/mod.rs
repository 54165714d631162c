//! The WhatsApp simulator: WhatsApp's chat server (`/ws/chat`) on 127.0.0.1, so
//! the real whatsapp-rust client of `bridge-whatsapp` links and logs in against it.
//!
//! What it speaks: the WebSocket with WhatsApp's frames, the Noise handshake as responder
//! (XX for a first connect, IK once the client kept the server's certificate; the
//! certificate chain is a test chain, accepted only by a client built with
//! `danger-skip-cert-chain-verify`), pairing (`<pair-device>` with rotating references,
//! `pair-success` signed by a simulated phone, the client's `pair-device-sign`, stream
//! error 515, and the login after it with `<success>`), answers to the IQs a client sends
//! after login (app state for the critical collections — a 404 there would block
//! `Connected` — going active, keep-alive pings, and an empty
//! result for anything else), and the phone unlinking a device (a `device_removed` conflict
//! or a 401 stream error; the device is refused afterwards).
//!
//! Linking with a pairing code works too: the device's `companion_hello` is answered, the
//! phone's `primary_hello` follows [`WhatsappSim::enter_code`], and the device's key bundle
//! gives the phone the secret it vouches with.
//!
//! Tests drive it as the phone: [`WhatsappSim::scan`] reads a QR code the bridge showed,
//! [`WhatsappSim::refresh_qr`] rotates the references, [`WhatsappSim::unlink`] logs the
//! device out; [`WhatsappSim::logins`] and friends say what happened.
//!
//! Stage 2, messages ([`relay`]): devices publish prekeys and fetch each other's bundles,
//! usync answers device lists, and `<message>` stanzas are routed device by device with
//! acks, receipts, chat states and an offline queue. [`WhatsappSim::contact`] links a
//! second real whatsapp-rust client ([`Contact`]) that tests drive as the other person.
//! Groups ([`groups`]): [`WhatsappSim::create_group`] makes one, its metadata is answered
//! (`w:g2`), and its messages (sender keys) are fanned out to the members' devices.
//! Media ([`media`]): `media_conn` names the simulator's media host on 127.0.0.1, which
//! takes uploads and serves downloads of encrypted files.

mod conn;
mod contact;
mod groups;
mod media;
mod noise;
mod phone;
mod relay;
mod state;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

pub use contact::{Contact, ReceiptSeen, Received, SendMedia};
pub use media::Uploaded;
pub use phone::{parse_qr, read_qr_png, Qr};
pub use relay::Relayed;
use state::Inner;
pub use state::Login;

/// How the phone unlinks a device ([`WhatsappSim::unlink`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlink {
    /// `<stream:error><conflict type="device_removed"/></stream:error>`: removed in the
    /// phone's list of linked devices.
    DeviceRemoved,
    /// `<stream:error code="401"/>`: the session is no longer valid.
    Unauthorized,
}

/// A running WhatsApp simulator. Cheap to clone; stops when the last handle is dropped.
#[derive(Clone)]
pub struct WhatsappSim {
    inner: Arc<Inner>,
    port: u16,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl WhatsappSim {
    /// Starts the simulator on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind")?;
        let port = listener.local_addr()?.port();
        let stop = CancellationToken::new();
        let media = media::MediaHost::start(stop.clone()).await?;
        let inner = Arc::new(Inner::new(media));
        let (accepting, token) = (inner.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let inner = accepting.clone();
                        let token = token.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                () = token.cancelled() => {}
                                () = conn::serve(inner, stream) => {}
                            }
                        });
                    }
                }
            }
        });
        Ok(Self {
            inner,
            port,
            _stop: Arc::new(StopOnDrop(stop)),
        })
    }

    /// The WebSocket URL a client connects to.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws/chat", self.port)
    }

    /// The phone of account `phone` (digits) scans the QR code `qr` (its text): the
    /// waiting device it names is offered the pairing, and this returns once the device
    /// signed it. Fails if no waiting device matches within `timeout`.
    pub async fn scan(&self, qr: &str, phone: &str, timeout: Duration) -> anyhow::Result<()> {
        let qr = parse_qr(qr)?;
        let inner = &self.inner;
        crate::wait_until(timeout, "a device waiting for this QR code", async || {
            Ok(inner.scan(&qr, phone)?.then_some(()))
        })
        .await?;
        crate::wait_until(timeout, "the device to sign the pairing", async || {
            Ok(inner.paired(&qr.noise_key).then_some(()))
        })
        .await
    }

    /// The user types the pairing code `code` on the phone of account `phone` (digits): the
    /// device that asked for a code for this number is told, finishes the link, and this
    /// returns once it signed the pairing.
    pub async fn enter_code(
        &self,
        phone: &str,
        code: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let inner = &self.inner;
        crate::wait_until(timeout, "a device waiting for a pairing code", async || {
            Ok(inner.enter_code(phone, code)?.then_some(()))
        })
        .await?;
        crate::wait_until(timeout, "the device to be linked", async || {
            Ok((!inner.linked(phone).is_empty()).then_some(()))
        })
        .await
    }

    /// Waits until a new device is waiting for a scan; returns how many are.
    pub async fn wait_pairing(&self, timeout: Duration) -> anyhow::Result<usize> {
        let inner = &self.inner;
        crate::wait_until(timeout, "a device waiting to be paired", async || {
            let waiting = inner.waiting_pairings();
            Ok((waiting > 0).then_some(waiting))
        })
        .await
    }

    /// Gives every waiting device new QR references; returns how many got them.
    pub fn refresh_qr(&self) -> usize {
        self.inner.refresh_refs()
    }

    /// The phone of account `phone` unlinks all its devices, the way `how` says; returns
    /// how many connected devices were told. Unlinked devices are refused from then on.
    pub fn unlink(&self, phone: &str, how: Unlink) -> usize {
        let stanza = match how {
            Unlink::DeviceRemoved => NodeBuilder::new("stream:error")
                .children([NodeBuilder::new("conflict")
                    .attr("type", "device_removed")
                    .build()])
                .build(),
            Unlink::Unauthorized => NodeBuilder::new("stream:error").attr("code", "401").build(),
        };
        self.inner.unlink(phone, &stanza)
    }

    /// Every successful login so far, oldest first.
    pub fn logins(&self) -> Vec<Login> {
        self.inner.logins()
    }

    /// How many logins were refused (unknown or unlinked devices).
    pub fn refused_logins(&self) -> usize {
        self.inner.failures()
    }

    /// How many devices of account `phone` are connected now.
    pub fn connected_devices(&self, phone: &str) -> usize {
        self.inner.connected_devices(phone)
    }

    /// The device numbers of account `phone` that are linked (not unlinked).
    pub fn linked_devices(&self, phone: &str) -> Vec<u32> {
        self.inner.linked(phone)
    }

    /// Links a contact: a second whatsapp-rust client as a new device of account `phone`,
    /// whose push name is `name`; returns once it is connected.
    pub async fn contact(
        &self,
        phone: &str,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<Contact> {
        Contact::link(self, phone, name, timeout).await
    }

    /// Sets the push name WhatsApp shows for account `phone` (as the account's own
    /// `<presence name>` does).
    pub fn set_push_name(&self, phone: &str, name: &str) {
        self.inner.set_push_name(phone, name);
    }

    /// Damages the next `count` messages to account `phone`'s devices on the way, so they
    /// cannot decrypt them (their retry receipts ask the sender again).
    pub fn corrupt_next(&self, phone: &str, count: usize) {
        self.inner.corrupt_next(phone, count);
    }

    /// Retry receipts seen so far: (the account that could not decrypt, the message ID).
    pub fn retries(&self) -> Vec<(String, String)> {
        self.inner.retries()
    }

    /// The devices of account `phone` that published their Signal keys (others can only
    /// write to those).
    pub fn devices_with_keys(&self, phone: &str) -> Vec<u32> {
        self.inner.devices_with_keys(phone)
    }

    /// Every message the simulator relayed, oldest first.
    pub fn relayed(&self) -> Vec<Relayed> {
        self.inner.relayed()
    }

    /// How many messages wait in the queues of account `phone`'s devices (not yet
    /// acknowledged by them).
    pub fn queued(&self, phone: &str) -> usize {
        self.inner.queued(phone)
    }

    /// Creates a group named `subject` with `description`, whose members are the accounts
    /// `members` (phone, whether an admin); returns its JID (`…@g.us`).
    pub fn create_group(
        &self,
        subject: &str,
        description: &str,
        members: &[(&str, bool)],
    ) -> String {
        self.inner
            .create_group(subject, description, members)
            .to_string()
    }

    /// Every file uploaded to the media host (encrypted, as it was uploaded).
    pub fn media_uploads(&self) -> Vec<Uploaded> {
        self.inner.media.uploads()
    }

    /// Every IQ clients sent, as `(xmlns, first child's tag)`.
    pub fn iqs(&self) -> Vec<(String, String)> {
        self.inner.iqs()
    }
}

#[cfg(test)]
mod tests;
