//! The message relay between linked devices, as WhatsApp's chat server does it: devices
//! publish their Signal keys (`encrypt` set), others fetch one bundle per device
//! (`encrypt` get `<key>`) and ask for an account's device list (`usync` `<devices>`); a
//! `<message>` is split along its `<participants>` into one stanza per device, carrying
//! that device's `<enc>` unchanged (the Signal encryption stays end to end between the two
//! real clients: the simulator never decrypts), acknowledged to the sender, and kept in the
//! receiving device's queue until that device acknowledges it with a receipt or an ack.
//! A device that was away gets its queue when it goes active, marked `offline`, followed by
//! `<ib><offline count/>`. Receipts and chat states are passed on; push names come from the
//! devices' `<presence name>`.

use std::collections::HashMap;

use whatsapp_rust::buffa::Message as _;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Jid, JidExt as _, Node, NodeContent, NodeRef};
use whatsapp_rust::waproto::whatsapp as wa;

use super::conn::node;
use super::groups::Group;
use super::state::{now_secs, Inner, State};

/// A device of an account: `phone:device`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Address {
    /// The account's phone number.
    pub(crate) phone: String,
    /// The device number (0 is the phone itself).
    pub(crate) device: u16,
}

impl Address {
    pub(crate) fn new(phone: &str, device: u32) -> Self {
        Self {
            phone: phone.to_owned(),
            device: u16::try_from(device).unwrap_or(u16::MAX),
        }
    }

    fn from_jid(jid: &Jid) -> Self {
        Self {
            phone: jid.user.to_string(),
            device: jid.device,
        }
    }

    /// The device's JID (`phone:device@s.whatsapp.net`).
    pub(crate) fn jid(&self) -> Jid {
        if self.device == 0 {
            Jid::pn(self.phone.as_str())
        } else {
            Jid::pn_device(self.phone.as_str(), self.device)
        }
    }
}

/// A device's published keys, as uploaded.
struct Bundle {
    registration: Vec<u8>,
    identity: Vec<u8>,
    signed: Node,
    one_time: Vec<Node>,
}

/// A message waiting for its device's acknowledgement.
struct Queued {
    id: String,
    stanza: Node,
}

/// A message the relay passed on, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// The sending device's account.
    pub from: String,
    /// The account it was sent to.
    pub to: String,
    /// The message ID.
    pub id: String,
    /// How many devices it went to.
    pub devices: usize,
}

/// What the relay keeps.
#[derive(Default)]
pub(super) struct Relay {
    bundles: HashMap<Address, Bundle>,
    queues: HashMap<Address, Vec<Queued>>,
    push_names: HashMap<String, String>,
    relayed: Vec<Relayed>,
    /// Accounts whose devices get the next messages damaged (a decryption failure), and
    /// how many.
    corrupt: HashMap<String, usize>,
    /// Retry receipts seen: (the device that could not decrypt, the message ID).
    retries: Vec<(String, String)>,
    /// Groups by ID (the user part of their JID).
    pub(super) groups: HashMap<String, Group>,
}

fn attr(stanza: &NodeRef<'_>, name: &str) -> Option<String> {
    stanza.get_attr(name).map(|v| v.as_str().into_owned())
}

/// The devices of account `phone` that published keys, by number.
fn reachable(state: &State, phone: &str) -> Vec<u32> {
    state
        .linked_numbers(phone)
        .into_iter()
        .filter(|&n| state.relay.bundles.contains_key(&Address::new(phone, n)))
        .collect()
}

/// The `<devices>` answer of a usync for account `phone`: its reachable devices and the
/// key-index list that vouches for them.
fn device_list(state: &State, phone: &str) -> Node {
    let numbers = reachable(state, phone);
    let devices = numbers.iter().map(|n| {
        NodeBuilder::new("device")
            .attr("id", n.to_string())
            .attr("key-index", n.to_string())
            .build()
    });
    let list = NodeBuilder::new("device-list").children(devices).build();
    let key_index = wa::ADVKeyIndexList {
        raw_id: Some(1),
        timestamp: Some(1),
        current_index: numbers.iter().copied().max(),
        valid_indexes: numbers.clone(),
        ..Default::default()
    };
    let signed = wa::ADVSignedKeyIndexList {
        details: Some(key_index.encode_to_vec()),
        ..Default::default()
    };
    let key_index_list = node("key-index-list", &[("ts", "1".to_owned())])
        .bytes(signed.encode_to_vec())
        .build();
    NodeBuilder::new("devices")
        .children([list, key_index_list])
        .build()
}

/// Flips a bit of an `<enc>`'s ciphertext, as a corrupted delivery would: the receiving
/// device cannot decrypt it.
fn damage(enc: &mut Node) {
    if let Some(NodeContent::Bytes(bytes)) = &mut enc.content {
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
    }
}

impl Inner {
    /// The device of `connection` published its keys (`encrypt` set).
    pub(crate) fn upload_keys(&self, connection: u64, iq: &NodeRef<'_>) {
        let bytes = |tag: &str| {
            iq.get_optional_child(tag)
                .and_then(|n| n.content_bytes())
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        };
        let Some(signed) = iq.get_optional_child("skey").map(NodeRef::to_owned) else {
            return;
        };
        let one_time: Vec<Node> = iq
            .get_optional_child("list")
            .map(|list| {
                list.get_children_by_tag("key")
                    .map(NodeRef::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut state = self.state();
        let Some(address) = state.address(connection) else {
            return;
        };
        let bundle = state.relay.bundles.entry(address).or_insert(Bundle {
            registration: Vec::new(),
            identity: Vec::new(),
            signed: signed.clone(),
            one_time: Vec::new(),
        });
        bundle.registration = bytes("registration");
        bundle.identity = bytes("identity");
        bundle.signed = signed;
        bundle.one_time.extend(one_time);
    }

    /// How many one-time prekeys the device of `connection` has left on the server.
    pub(crate) fn prekey_count(&self, connection: u64) -> usize {
        let state = self.state();
        state
            .address(connection)
            .and_then(|a| state.relay.bundles.get(&a))
            .map_or(0, |b| b.one_time.len())
    }

    /// Answers a prekey fetch (`encrypt` get `<key><user jid/>…`): one bundle per device,
    /// each with one of its one-time prekeys (used up), as the server hands them out.
    pub(crate) fn fetch_bundles(&self, iq: &NodeRef<'_>) -> Node {
        let mut state = self.state();
        let users: Vec<Jid> = iq
            .get_optional_child("key")
            .map(|key| {
                key.get_children_by_tag("user")
                    .filter_map(|u| u.attrs().optional_jid("jid"))
                    .collect()
            })
            .unwrap_or_default();
        let answers = users.into_iter().map(|jid| {
            let address = Address::from_jid(&jid);
            let Some(bundle) = state.relay.bundles.get_mut(&address) else {
                return node("user", &[])
                    .attr("jid", jid)
                    .children([node("error", &[("code", "404".to_owned())]).build()])
                    .build();
            };
            let mut children = vec![
                NodeBuilder::new("registration")
                    .bytes(bundle.registration.clone())
                    .build(),
                NodeBuilder::new("type").bytes(vec![5]).build(),
                NodeBuilder::new("identity")
                    .bytes(bundle.identity.clone())
                    .build(),
                bundle.signed.clone(),
            ];
            if !bundle.one_time.is_empty() {
                children.push(bundle.one_time.remove(0));
            }
            node("user", &[])
                .attr("jid", jid)
                .children(children)
                .build()
        });
        let list: Vec<Node> = answers.collect();
        NodeBuilder::new("list").children(list).build()
    }

    /// Answers a usync query: device lists (`<devices>`) and whether numbers are on
    /// WhatsApp (`<contact>`). No LID mappings: accounts stay on phone-number addressing.
    pub(crate) fn usync(&self, iq: &NodeRef<'_>) -> Node {
        let state = self.state();
        let Some(usync) = iq.get_optional_child("usync") else {
            return NodeBuilder::new("usync").build();
        };
        let wants = |tag: &str| {
            usync
                .get_optional_child("query")
                .and_then(|q| q.get_optional_child(tag))
                .is_some()
        };
        let (devices, contact) = (wants("devices"), wants("contact"));
        let users: Vec<Jid> = usync
            .get_optional_child("list")
            .map(|list| {
                list.get_children_by_tag("user")
                    .filter_map(|u| {
                        u.attrs().optional_jid("jid").or_else(|| {
                            // A contact lookup names the number in the `<contact>` text.
                            let number = u.get_optional_child("contact")?.content_as_string()?;
                            Some(Jid::pn(number.trim_start_matches('+')))
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let answers: Vec<Node> = users
            .into_iter()
            .map(|jid| {
                let phone = jid.user.to_string();
                let mut children = Vec::new();
                if devices {
                    children.push(device_list(&state, &phone));
                }
                if contact {
                    let known = if state.has_account(&phone) {
                        "in"
                    } else {
                        "out"
                    };
                    children.push(node("contact", &[("type", known.to_owned())]).build());
                }
                node("user", &[])
                    .attr("jid", jid.to_non_ad())
                    .children(children)
                    .build()
            })
            .collect();
        let mut builder = NodeBuilder::new("usync");
        if let Some(sid) = attr(usync, "sid") {
            builder = builder.attr("sid", sid);
        }
        builder
            .children([NodeBuilder::new("list").children(answers).build()])
            .build()
    }

    /// A device sent a `<message>`: one copy per device it is encrypted for, queued until
    /// acknowledged and delivered at once to a device that is active; the sender gets the
    /// server's ack.
    pub(crate) fn route_message(&self, connection: u64, stanza: &NodeRef<'_>) -> Vec<Node> {
        let mut state = self.state();
        let Some(from) = state.address(connection) else {
            return Vec::new();
        };
        let id = attr(stanza, "id").unwrap_or_default();
        let Some(to) = stanza.attrs().optional_jid("to") else {
            return Vec::new();
        };
        let mut addressed: Vec<(Address, Vec<Node>)> = Vec::new();
        if let Some(participants) = stanza.get_optional_child("participants") {
            for target in participants.get_children_by_tag("to") {
                let Some(jid) = target.attrs().optional_jid("jid") else {
                    continue;
                };
                let encs = target
                    .get_children_by_tag("enc")
                    .map(NodeRef::to_owned)
                    .collect();
                addressed.push((Address::from_jid(&jid), encs));
            }
        }
        let bare: Vec<Node> = stanza
            .get_children_by_tag("enc")
            .map(NodeRef::to_owned)
            .collect();
        let group = to
            .is_group()
            .then(|| state.relay.groups.get(to.user.as_str()))
            .flatten();
        let is_group = group.is_some();
        let targets: Vec<(Address, Vec<Node>)> = match group {
            // A group message goes to every device of every member but the sender's: the
            // sender-key message to all, with what was addressed to each device first.
            Some(group) => group
                .members
                .iter()
                .flat_map(|m| {
                    reachable(&state, &m.phone)
                        .into_iter()
                        .map(|n| Address::new(&m.phone, n))
                })
                .filter(|device| *device != from)
                .map(|device| {
                    let mut encs: Vec<Node> = addressed
                        .iter()
                        .filter(|(a, _)| *a == device)
                        .flat_map(|(_, e)| e.iter().cloned())
                        .collect();
                    encs.extend(bare.iter().cloned());
                    (device, encs)
                })
                .collect(),
            None => {
                if !bare.is_empty() {
                    addressed.push((Address::from_jid(&to), bare));
                }
                addressed
            }
        };
        let identity = stanza
            .get_optional_child("device-identity")
            .map(NodeRef::to_owned);
        let t = now_secs();
        let notify = state.relay.push_names.get(&from.phone).cloned();
        let mut devices = 0;
        for (target, mut encs) in targets {
            if let Some(left) = state
                .relay
                .corrupt
                .get_mut(&target.phone)
                .filter(|n| **n > 0)
            {
                *left -= 1;
                encs.iter_mut().for_each(damage);
            }
            let mut builder = NodeBuilder::new("message");
            builder = if is_group {
                builder
                    .attr("from", to.to_non_ad())
                    .attr("participant", from.jid())
                    .attr("addressing_mode", "pn")
            } else {
                builder.attr("from", from.jid())
            };
            let mut builder = builder
                .attr("id", id.clone())
                .attr(
                    "type",
                    attr(stanza, "type").unwrap_or_else(|| "text".to_owned()),
                )
                .attr("t", t.clone());
            if let Some(name) = &notify {
                builder = builder.attr("notify", name.clone());
            }
            if let Some(edit) = attr(stanza, "edit") {
                builder = builder.attr("edit", edit);
            }
            if target.phone == from.phone && !is_group {
                // A copy for the sender's own other devices names the chat.
                builder = builder.attr("recipient", to.to_non_ad());
            }
            let children = encs.into_iter().chain(identity.clone());
            let copy = builder.children(children).build();
            state.deliver(&target, &copy);
            state.relay.queues.entry(target).or_default().push(Queued {
                id: id.clone(),
                stanza: copy,
            });
            devices += 1;
        }
        state.relay.relayed.push(Relayed {
            from: from.phone.clone(),
            to: to.user.to_string(),
            id: id.clone(),
            devices,
        });
        vec![node(
            "ack",
            &[("class", "message".to_owned()), ("id", id), ("t", t)],
        )
        .attr("from", to)
        .build()]
    }

    /// A device sent a `<receipt>`: the messages it names are off its queue, and the
    /// receipt goes on to the device (or every device of the account) it is addressed to.
    pub(crate) fn route_receipt(&self, connection: u64, stanza: &NodeRef<'_>) -> Vec<Node> {
        let mut state = self.state();
        let Some(from) = state.address(connection) else {
            return Vec::new();
        };
        let id = attr(stanza, "id").unwrap_or_default();
        let mut ids = vec![id.clone()];
        if let Some(list) = stanza.get_optional_child("list") {
            ids.extend(
                list.get_children_by_tag("item")
                    .filter_map(|i| attr(i, "id")),
            );
        }
        if let Some(queue) = state.relay.queues.get_mut(&from) {
            queue.retain(|q| !ids.contains(&q.id));
        }
        let Some(to) = stanza.attrs().optional_jid("to") else {
            return Vec::new();
        };
        if attr(stanza, "type").as_deref() == Some("retry") {
            state.relay.retries.push((from.phone.clone(), id.clone()));
        }
        // A receipt in a group goes to the author of the messages (`participant`), from
        // the group, naming the reader as its participant.
        let author = to
            .is_group()
            .then(|| stanza.attrs().optional_jid("participant"))
            .flatten();
        let every_device = |jid: &Jid| -> Vec<Address> {
            let phone = jid.user.to_string();
            state
                .linked_numbers(&phone)
                .into_iter()
                .map(|n| Address::new(&phone, n))
                .collect()
        };
        let targets = match &author {
            Some(author) => every_device(author),
            None if to.device != 0 => vec![Address::from_jid(&to)],
            None => every_device(&to),
        };
        let mut builder = NodeBuilder::new("receipt");
        builder = match &author {
            Some(_) => builder
                .attr("from", to.to_non_ad())
                .attr("participant", from.jid()),
            None => builder.attr("from", from.jid()),
        };
        let mut builder = builder.attr("id", id.clone()).attr("t", now_secs());
        let copied: &[&str] = if author.is_some() {
            &["type", "recipient"]
        } else {
            &["type", "participant", "recipient"]
        };
        for &name in copied {
            if let Some(value) = attr(stanza, name) {
                builder = builder.attr(name, value);
            }
        }
        let children: Vec<Node> = stanza
            .children()
            .map(|c| c.iter().map(NodeRef::to_owned).collect())
            .unwrap_or_default();
        let receipt = builder.children(children).build();
        for target in targets.iter().filter(|t| **t != from) {
            state.deliver(target, &receipt);
        }
        let mut ack = node("ack", &[("class", "receipt".to_owned()), ("id", id)]).attr("from", to);
        if let Some(kind) = attr(stanza, "type") {
            ack = ack.attr("type", kind);
        }
        vec![ack.build()]
    }

    /// A device acknowledged a stanza: a message it names is off its queue.
    pub(crate) fn client_ack(&self, connection: u64, stanza: &NodeRef<'_>) {
        if attr(stanza, "class").as_deref() != Some("message") {
            return;
        }
        let id = attr(stanza, "id").unwrap_or_default();
        let mut state = self.state();
        if let Some(from) = state.address(connection) {
            if let Some(queue) = state.relay.queues.get_mut(&from) {
                queue.retain(|q| q.id != id);
            }
        }
    }

    /// A device says it is typing (or stopped) in a chat: passed on to the account's devices.
    pub(crate) fn route_chatstate(&self, connection: u64, stanza: &NodeRef<'_>) {
        let state = self.state();
        let (Some(from), Some(to)) = (state.address(connection), stanza.attrs().optional_jid("to"))
        else {
            return;
        };
        let children: Vec<Node> = stanza
            .children()
            .map(|c| c.iter().map(NodeRef::to_owned).collect())
            .unwrap_or_default();
        let chatstate = NodeBuilder::new("chatstate")
            .attr("from", Jid::pn(from.phone.as_str()))
            .children(children)
            .build();
        let phone = to.user.to_string();
        for n in state.linked_numbers(&phone) {
            state.deliver(&Address::new(&phone, n), &chatstate);
        }
    }

    /// A device announced its presence; its `name` is the account's push name.
    pub(crate) fn presence(&self, connection: u64, stanza: &NodeRef<'_>) {
        let Some(name) = attr(stanza, "name").filter(|n| !n.is_empty()) else {
            return;
        };
        let mut state = self.state();
        if let Some(from) = state.address(connection) {
            state.relay.push_names.insert(from.phone, name);
        }
    }

    /// The device of `connection` went active: what waited for it is delivered, marked
    /// offline, then `<ib><offline count/>` ends the backlog.
    pub(crate) fn go_active(&self, connection: u64) -> Vec<Node> {
        let mut state = self.state();
        state.set_active(connection);
        let queued: Vec<Node> = state
            .address(connection)
            .and_then(|a| state.relay.queues.get(&a))
            .map(|queue| {
                queue
                    .iter()
                    .map(|q| {
                        let mut stanza = q.stanza.clone();
                        stanza.attrs.insert("offline", "1");
                        stanza
                    })
                    .collect()
            })
            .unwrap_or_default();
        let count = queued.len();
        let mut stanzas = queued;
        stanzas.push(
            NodeBuilder::new("ib")
                .children([node("offline", &[("count", count.to_string())]).build()])
                .build(),
        );
        stanzas
    }

    /// Sets the push name WhatsApp shows for account `phone`.
    pub(crate) fn set_push_name(&self, phone: &str, name: &str) {
        self.state()
            .relay
            .push_names
            .insert(phone.to_owned(), name.to_owned());
    }

    /// Damages the next `count` messages to account `phone`'s devices.
    pub(crate) fn corrupt_next(&self, phone: &str, count: usize) {
        self.state().relay.corrupt.insert(phone.to_owned(), count);
    }

    /// Retry receipts seen so far: (account that asked, message ID).
    pub(crate) fn retries(&self) -> Vec<(String, String)> {
        self.state().relay.retries.clone()
    }

    /// The devices of account `phone` that published their keys.
    pub(crate) fn devices_with_keys(&self, phone: &str) -> Vec<u32> {
        reachable(&self.state(), phone)
    }

    /// Every message relayed so far.
    pub(crate) fn relayed(&self) -> Vec<Relayed> {
        self.state().relay.relayed.clone()
    }

    /// How many messages wait for account `phone`'s devices.
    pub(crate) fn queued(&self, phone: &str) -> usize {
        self.state()
            .relay
            .queues
            .iter()
            .filter(|(a, _)| a.phone == phone)
            .map(|(_, q)| q.len())
            .sum()
    }
}
