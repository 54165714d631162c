//! The simulator's state: accounts (a phone and its linked devices), open connections,
//! devices waiting to be paired, and the record of logins and IQs tests look at.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::anyhow;
use tokio::sync::mpsc;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Node, NodeRef};

use super::conn::{node, SERVER};
use super::noise::{Hello, ServerKeys};
use super::phone::{CodeLink, Phone, Qr};
use super::relay::{Address, Relay};

/// What a connection's task is told to do.
pub(crate) enum Out {
    /// Send this stanza.
    Stanza(Node),
    /// Close the connection.
    Close,
}

/// A successful login of a linked device, as recorded by the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The account's phone number.
    pub phone: String,
    /// The device number.
    pub device: u32,
    /// Whether the client used the Noise IK handshake (it kept the server's certificate).
    pub ik: bool,
}

/// A linked device.
struct Device {
    phone: String,
    number: u32,
    removed: bool,
}

/// An account: its phone and the number of the last device it linked.
struct Account {
    phone: Phone,
    lid: String,
    last_device: u32,
}

/// A new device's connection, waiting for the phone.
struct Pairing {
    connection: u64,
    noise_key: [u8; 32],
    refs: Vec<String>,
    /// The id of the `pair-success` sent, and the device it names, while the client
    /// answers it.
    offered: Option<(String, String, u32)>,
    /// Whether the client signed the pairing.
    done: bool,
}

/// A new device that asked for a pairing code for an account (`companion_hello`).
struct CodePairing {
    connection: u64,
    phone: String,
    wrapped_ephemeral: Vec<u8>,
    reference: String,
    /// Set once the user typed the code on the phone.
    link: Option<CodeLink>,
}

struct Connection {
    tx: mpsc::UnboundedSender<Out>,
    device: Option<[u8; 32]>,
    /// Whether the device went active (`passive`/`active`): messages flow to it live.
    active: bool,
}

impl Connection {
    /// A connection of the device with Noise key `device` (`None`: not logged in).
    fn new(tx: mpsc::UnboundedSender<Out>, device: Option<[u8; 32]>) -> Self {
        Self {
            tx,
            device,
            active: false,
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    accounts: HashMap<String, Account>,
    devices: HashMap<[u8; 32], Device>,
    pairings: Vec<Pairing>,
    code_pairings: Vec<CodePairing>,
    connections: HashMap<u64, Connection>,
    logins: Vec<Login>,
    iqs: Vec<(String, String)>,
    failures: usize,
    /// Keys, queues and names of the message relay.
    pub(super) relay: Relay,
}

impl State {
    /// The device logged in on `connection`.
    pub(super) fn address(&self, connection: u64) -> Option<Address> {
        let key = self.connections.get(&connection)?.device?;
        let device = self.devices.get(&key)?;
        Some(Address::new(&device.phone, device.number))
    }

    /// The linked devices of account `phone`, by number.
    pub(super) fn linked_numbers(&self, phone: &str) -> Vec<u32> {
        let mut numbers: Vec<u32> = self
            .devices
            .values()
            .filter(|d| d.phone == phone && !d.removed)
            .map(|d| d.number)
            .collect();
        numbers.sort_unstable();
        numbers
    }

    /// Whether account `phone` exists.
    pub(super) fn has_account(&self, phone: &str) -> bool {
        self.accounts.contains_key(phone)
    }

    /// Sends `stanza` to every active connection of the device at `to`; returns how many.
    pub(super) fn deliver(&self, to: &Address, stanza: &Node) -> usize {
        let mut sent = 0;
        for conn in self.connections.values().filter(|c| c.active) {
            let at = conn.device.and_then(|k| self.devices.get(&k));
            if at.is_some_and(|d| d.phone == to.phone && d.number == u32::from(to.device)) {
                let _ = conn.tx.send(Out::Stanza(stanza.clone()));
                sent += 1;
            }
        }
        sent
    }

    /// Marks `connection` active (its device then gets messages live).
    pub(super) fn set_active(&mut self, connection: u64) {
        if let Some(conn) = self.connections.get_mut(&connection) {
            conn.active = true;
        }
    }
}

/// Shared by the simulator handle and its connections.
pub(crate) struct Inner {
    keys: ServerKeys,
    /// The media host `media_conn` names.
    pub(crate) media: super::media::MediaHost,
    state: Mutex<State>,
    next_id: AtomicU64,
}

fn random_refs() -> Vec<String> {
    (0..6)
        .map(|_| format!("2@{}", crate::random_lowercase(24)))
        .collect()
}

pub(super) fn now_secs() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string()
}

/// The `<pair-device>` IQ that hands a new device its QR references.
fn pair_device(refs: &[String]) -> Node {
    let refs = refs
        .iter()
        .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build());
    node(
        "iq",
        &[
            ("from", SERVER.to_owned()),
            ("type", "set".to_owned()),
            ("id", crate::random_lowercase(12)),
            ("xmlns", "md".to_owned()),
        ],
    )
    .children([NodeBuilder::new("pair-device").children(refs).build()])
    .build()
}

/// The account of `phone`, created with a new phone on first use.
fn account<'a>(accounts: &'a mut HashMap<String, Account>, phone: &str) -> &'a mut Account {
    accounts.entry(phone.to_owned()).or_insert_with(|| Account {
        phone: Phone::new(),
        lid: format!("1{:014}", rand::random::<u64>() % 100_000_000_000_000),
        last_device: 0,
    })
}

/// Offers the waiting device `index` a `pair-success` as the next device of account
/// `phone`, vouched for by its phone.
fn offer(state: &mut State, index: usize, qr: &Qr, phone: &str) -> anyhow::Result<()> {
    let account = account(&mut state.accounts, phone);
    account.last_device += 1;
    let number = account.last_device;
    let identity = account.phone.vouch(qr, number)?;
    let lid = account.lid.clone();
    let id = format!("pair-{}", crate::random_lowercase(8));
    let pairing = &mut state.pairings[index];
    pairing.offered = Some((id.clone(), phone.to_owned(), number));
    let connection = pairing.connection;
    let success = node(
        "iq",
        &[
            ("from", SERVER.to_owned()),
            ("type", "set".to_owned()),
            ("id", id),
            ("xmlns", "md".to_owned()),
        ],
    )
    .children([NodeBuilder::new("pair-success")
        .children([
            node("device-identity", &[("key-index", number.to_string())])
                .bytes(identity)
                .build(),
            node("platform", &[("name", "android".to_owned())]).build(),
            node(
                "device",
                &[
                    ("jid", format!("{phone}:{number}@s.whatsapp.net")),
                    ("lid", format!("{lid}:{number}@lid")),
                ],
            )
            .build(),
        ])
        .build()])
    .build();
    if let Some(conn) = state.connections.get(&connection) {
        let _ = conn.tx.send(Out::Stanza(success));
    }
    Ok(())
}

impl Inner {
    pub(crate) fn new(media: super::media::MediaHost) -> Self {
        Self {
            keys: ServerKeys::generate(),
            media,
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn keys(&self) -> &ServerKeys {
        &self.keys
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A client finished the handshake: a paired device gets `<success>` (or `<failure>`
    /// if the phone unlinked it), a new one its pairing references.
    pub(crate) fn connection_opened(
        &self,
        id: u64,
        hello: &Hello,
        ik: bool,
        tx: mpsc::UnboundedSender<Out>,
    ) -> anyhow::Result<Vec<Node>> {
        let mut state = self.state();
        let stanzas = match hello.payload.username {
            Some(username) => {
                let phone = username.to_string();
                let number = hello.payload.device.unwrap_or(0);
                let known = state
                    .devices
                    .get(&hello.client_static)
                    .filter(|d| d.phone == phone && d.number == number && !d.removed);
                if known.is_none() {
                    state.failures += 1;
                    let _ = tx.send(Out::Close);
                    state.connections.insert(id, Connection::new(tx, None));
                    return Ok(vec![node(
                        "failure",
                        &[("reason", "401".to_owned()), ("location", "frc".to_owned())],
                    )
                    .build()]);
                }
                let lid = state
                    .accounts
                    .get(&phone)
                    .map(|a| a.lid.clone())
                    .ok_or_else(|| anyhow!("no account {phone}"))?;
                state.logins.push(Login {
                    phone,
                    device: number,
                    ik,
                });
                state
                    .connections
                    .insert(id, Connection::new(tx, Some(hello.client_static)));
                vec![node(
                    "success",
                    &[
                        ("t", now_secs()),
                        ("lid", format!("{lid}:{number}@lid")),
                        ("props", "0".to_owned()),
                        ("abprops", "0".to_owned()),
                        ("location", "frc".to_owned()),
                        ("creation", now_secs()),
                    ],
                )
                .build()]
            }
            None => {
                let refs = random_refs();
                let stanza = pair_device(&refs);
                state.pairings.push(Pairing {
                    connection: id,
                    noise_key: hello.client_static,
                    refs,
                    offered: None,
                    done: false,
                });
                state.connections.insert(id, Connection::new(tx, None));
                vec![stanza]
            }
        };
        Ok(stanzas)
    }

    pub(crate) fn connection_closed(&self, id: u64) {
        let mut state = self.state();
        state.connections.remove(&id);
        state.pairings.retain(|p| p.connection != id || p.done);
        state.code_pairings.retain(|p| p.connection != id);
    }

    pub(crate) fn record_iq(&self, xmlns: &str, child: &str) {
        self.state().iqs.push((xmlns.to_owned(), child.to_owned()));
    }

    /// The client answered an IQ of ours; a signed `pair-success` completes the pairing:
    /// the device is registered and told to reconnect (stream error 515), as WhatsApp does.
    pub(crate) fn iq_answered(&self, connection: u64, id: &str, answer: &NodeRef<'_>) {
        let mut state = self.state();
        let Some(pairing) = state.pairings.iter_mut().find(|p| {
            p.connection == connection
                && p.offered
                    .as_ref()
                    .is_some_and(|(offered, _, _)| offered == id)
        }) else {
            return;
        };
        if answer.get_optional_child("pair-device-sign").is_none() {
            tracing::warn!("the client refused the pairing");
            pairing.offered = None;
            return;
        }
        pairing.done = true;
        let noise_key = pairing.noise_key;
        let Some((_, phone, number)) = pairing.offered.clone() else {
            return;
        };
        state.devices.insert(
            noise_key,
            Device {
                phone,
                number,
                removed: false,
            },
        );
        if let Some(conn) = state.connections.get(&connection) {
            let _ = conn.tx.send(Out::Stanza(
                node("stream:error", &[("code", "515".to_owned())]).build(),
            ));
            let _ = conn.tx.send(Out::Close);
        }
    }

    /// The device of `connection` asked to be unlinked (the bridge's `logout`).
    pub(crate) fn device_unlinked_itself(&self, connection: u64) {
        let mut state = self.state();
        let key = state.connections.get(&connection).and_then(|c| c.device);
        if let Some(device) = key.and_then(|k| state.devices.get_mut(&k)) {
            device.removed = true;
        }
    }

    /// The phone of account `phone` scans `qr`: the matching new device is offered a
    /// `pair-success`. Returns whether a waiting device matched.
    pub(crate) fn scan(&self, qr: &Qr, phone: &str) -> anyhow::Result<bool> {
        let mut state = self.state();
        let Some(index) = state
            .pairings
            .iter()
            .position(|p| !p.done && p.noise_key == qr.noise_key && p.refs.contains(&qr.reference))
        else {
            return Ok(false);
        };
        offer(&mut state, index, qr, phone)?;
        Ok(true)
    }

    /// A new device asks for a pairing code for `phone` (`companion_hello`): remembered
    /// until the user types the code on the phone; returns the pairing reference.
    pub(crate) fn companion_hello(
        &self,
        connection: u64,
        phone: &str,
        wrapped_ephemeral: Vec<u8>,
    ) -> String {
        let reference = format!("code@{}", crate::random_lowercase(16));
        let mut state = self.state();
        state.code_pairings.retain(|p| p.connection != connection);
        state.code_pairings.push(CodePairing {
            connection,
            phone: phone.to_owned(),
            wrapped_ephemeral,
            reference: reference.clone(),
            link: None,
        });
        drop(state);
        reference
    }

    /// The user types `code` on the phone of account `phone`: the waiting device gets the
    /// phone's `primary_hello`. Returns whether a device was waiting.
    pub(crate) fn enter_code(&self, phone: &str, code: &str) -> anyhow::Result<bool> {
        let mut state = self.state();
        let State {
            code_pairings,
            accounts,
            connections,
            ..
        } = &mut *state;
        let Some(pairing) = code_pairings
            .iter_mut()
            .find(|p| p.phone == phone && p.link.is_none())
        else {
            return Ok(false);
        };
        let account = account(accounts, phone);
        let (wrapped, identity, link) =
            account.phone.enter_code(&pairing.wrapped_ephemeral, code)?;
        pairing.link = Some(link);
        let hello = node(
            "notification",
            &[
                ("from", SERVER.to_owned()),
                ("type", "link_code_companion_reg".to_owned()),
                ("id", crate::random_lowercase(10)),
            ],
        )
        .children([node(
            "link_code_companion_reg",
            &[("stage", "primary_hello".to_owned())],
        )
        .children([
            NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                .bytes(wrapped)
                .build(),
            NodeBuilder::new("primary_identity_pub")
                .bytes(identity)
                .build(),
            NodeBuilder::new("link_code_pairing_ref")
                .bytes(pairing.reference.as_bytes().to_vec())
                .build(),
        ])
        .build()])
        .build();
        if let Some(conn) = connections.get(&pairing.connection) {
            let _ = conn.tx.send(Out::Stanza(hello));
        }
        Ok(true)
    }

    /// The device sent its key bundle (`companion_finish`): the phone derives the secret
    /// they share and offers the device a `pair-success`.
    pub(crate) fn companion_finish(
        &self,
        connection: u64,
        wrapped_bundle: &[u8],
    ) -> anyhow::Result<()> {
        let mut state = self.state();
        let index = state
            .code_pairings
            .iter()
            .position(|p| p.connection == connection && p.link.is_some());
        let code = index
            .map(|i| state.code_pairings.remove(i))
            .ok_or_else(|| anyhow!("no pairing code was entered"))?;
        let pairing = state
            .pairings
            .iter()
            .position(|p| p.connection == connection && !p.done)
            .ok_or_else(|| anyhow!("not a new device"))?;
        let noise_key = state.pairings[pairing].noise_key;
        let link = code.link.as_ref().ok_or_else(|| anyhow!("no link"))?;
        let qr = account(&mut state.accounts, &code.phone)
            .phone
            .finish_code(link, wrapped_bundle, noise_key)?;
        offer(&mut state, pairing, &qr, &code.phone)
    }

    /// Whether the pairing of the device with noise key `noise_key` was signed.
    pub(crate) fn paired(&self, noise_key: &[u8; 32]) -> bool {
        self.state().devices.contains_key(noise_key)
    }

    /// Sends every waiting device new pairing references (WhatsApp rotates them).
    pub(crate) fn refresh_refs(&self) -> usize {
        let mut state = self.state();
        let State {
            pairings,
            connections,
            ..
        } = &mut *state;
        let mut sent = 0;
        for pairing in pairings.iter_mut().filter(|p| !p.done) {
            pairing.refs = random_refs();
            if let Some(conn) = connections.get(&pairing.connection) {
                let _ = conn.tx.send(Out::Stanza(pair_device(&pairing.refs)));
                sent += 1;
            }
        }
        sent
    }

    /// The phone unlinks every device of `phone`: connected ones get `stanza` and are closed.
    pub(crate) fn unlink(&self, phone: &str, stanza: &Node) -> usize {
        let mut state = self.state();
        let State {
            devices,
            connections,
            ..
        } = &mut *state;
        let mut kicked = 0;
        for (key, device) in devices.iter_mut().filter(|(_, d)| d.phone == phone) {
            device.removed = true;
            for conn in connections.values().filter(|c| c.device == Some(*key)) {
                let _ = conn.tx.send(Out::Stanza(stanza.clone()));
                let _ = conn.tx.send(Out::Close);
                kicked += 1;
            }
        }
        kicked
    }

    pub(crate) fn waiting_pairings(&self) -> usize {
        self.state()
            .pairings
            .iter()
            .filter(|p| !p.done && p.offered.is_none())
            .count()
    }

    pub(crate) fn logins(&self) -> Vec<Login> {
        self.state().logins.clone()
    }

    pub(crate) fn failures(&self) -> usize {
        self.state().failures
    }

    pub(crate) fn connected_devices(&self, phone: &str) -> usize {
        let state = self.state();
        state
            .connections
            .values()
            .filter(|c| {
                c.device
                    .and_then(|k| state.devices.get(&k))
                    .is_some_and(|d| d.phone == phone)
            })
            .count()
    }

    pub(crate) fn iqs(&self) -> Vec<(String, String)> {
        self.state().iqs.clone()
    }

    pub(crate) fn linked(&self, phone: &str) -> Vec<u32> {
        self.state().linked_numbers(phone)
    }
}
