//! Groups, as WhatsApp's server keeps them: a subject, a description and the members
//! (admins marked). The metadata query (`w:g2` get `<query>`) is answered with the
//! `<group>` node clients parse; a message to a group is fanned out by the relay
//! ([`super::relay`]) to every member's devices: the sender-key message (`skmsg`) to all,
//! and to each device the pairwise `<enc>` the sender addressed to it (the sender-key
//! distribution message for a device that has no sender key yet).

use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Jid, Node, NodeRef};

use super::conn::node;
use super::state::{now_secs, Inner};

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The account's phone number.
    pub(crate) phone: String,
    /// Whether they are an admin.
    pub(crate) admin: bool,
}

/// A group.
pub(crate) struct Group {
    subject: String,
    description: String,
    created: String,
    pub(crate) members: Vec<Member>,
}

impl Group {
    /// The `<group>` node of the metadata answer, as WhatsApp sends it (phone-number
    /// addressing; the first admin is its creator and super admin).
    fn node(&self, jid: &Jid) -> Node {
        let creator = self.members.iter().find(|m| m.admin).map(|m| &m.phone);
        let mut participants: Vec<Node> = self
            .members
            .iter()
            .map(|m| {
                let mut participant =
                    NodeBuilder::new("participant").attr("jid", Jid::pn(m.phone.as_str()));
                if m.admin {
                    let kind = if Some(&m.phone) == creator {
                        "superadmin"
                    } else {
                        "admin"
                    };
                    participant = participant.attr("type", kind);
                }
                participant.build()
            })
            .collect();
        if !self.description.is_empty() {
            participants.push(
                node(
                    "description",
                    &[
                        ("id", format!("desc-{}", self.created)),
                        ("t", self.created.clone()),
                    ],
                )
                .children([NodeBuilder::new("body")
                    .string_content(self.description.as_str())
                    .build()])
                .build(),
            );
        }
        let mut group = node(
            "group",
            &[
                ("subject", self.subject.clone()),
                ("s_t", self.created.clone()),
                ("creation", self.created.clone()),
                ("addressing_mode", "pn".to_owned()),
                ("size", self.members.len().to_string()),
            ],
        )
        .attr("id", jid.user.as_str());
        if let Some(creator) = creator {
            group = group.attr("creator", Jid::pn(creator.as_str()));
        }
        group.children(participants).build()
    }
}

impl Inner {
    /// Creates a group of `members` (phone, admin); returns its JID.
    pub(crate) fn create_group(
        &self,
        subject: &str,
        description: &str,
        members: &[(&str, bool)],
    ) -> Jid {
        let id = format!("1203630{:011}", rand::random::<u64>() % 100_000_000_000);
        let group = Group {
            subject: subject.to_owned(),
            description: description.to_owned(),
            created: now_secs(),
            members: members
                .iter()
                .map(|(phone, admin)| Member {
                    phone: (*phone).to_owned(),
                    admin: *admin,
                })
                .collect(),
        };
        self.state().relay.groups.insert(id.clone(), group);
        Jid::group(id.as_str())
    }

    /// Answers a group metadata query (`w:g2` get `<query>` to the group): its `<group>`,
    /// or `None` for an unknown group.
    pub(crate) fn group_query(&self, iq: &NodeRef<'_>) -> Option<Node> {
        let jid = iq.attrs().optional_jid("to")?;
        let state = self.state();
        Some(state.relay.groups.get(jid.user.as_str())?.node(&jid))
    }
}
