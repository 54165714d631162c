//! Groups and channels of the simulator. A basic group's messages live in each member's
//! box, numbered and counted (pts) per account like private messages; a channel or
//! supergroup has its own messages, numbers and pts, pushed as `updateNewChannelMessage`
//! and fetched after a gap with `updates.getChannelDifference`. Also the methods that
//! describe them: `messages.getFullChat`, `channels.getFullChannel`,
//! `channels.getParticipants`, `channels.getChannels`.

use grammers_tl_types as tl;
use tl::Serializable as _;

use super::rpc::{bad, RpcResult};
use super::state::{now, ChatPeer, Data, Mailbox, Stored};
use super::tl_build;

/// A basic group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub title: String,
    pub about: String,
    pub creator: i64,
    pub members: Vec<i64>,
}

/// A channel (broadcast) or supergroup (megagroup).
#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub id: i64,
    pub access_hash: i64,
    pub title: String,
    pub about: String,
    pub megagroup: bool,
    pub creator: i64,
    pub members: Vec<i64>,
    pub pts: i32,
    pub last_id: i32,
    pub messages: Vec<Stored>,
}

/// The pts of a new channel.
const FIRST_CHANNEL_PTS: i32 = 1;

/// An entity the bridge sent, as Telegram stores it (a mention by input user becomes a
/// mention by user ID).
fn stored_entity(entity: tl::enums::MessageEntity) -> tl::enums::MessageEntity {
    match entity {
        tl::enums::MessageEntity::InputMessageEntityMentionName(mention) => {
            let user_id = match mention.user_id {
                tl::enums::InputUser::User(user) => user.user_id,
                _ => 0,
            };
            tl::types::MessageEntityMentionName {
                offset: mention.offset,
                length: mention.length,
                user_id,
            }
            .into()
        }
        other => other,
    }
}

/// Entities the bridge sent, as Telegram stores them.
pub(crate) fn stored_entities(
    entities: Vec<tl::enums::MessageEntity>,
) -> Vec<tl::enums::MessageEntity> {
    entities.into_iter().map(stored_entity).collect()
}

impl Data {
    fn next_chat_id(&mut self) -> i64 {
        self.next_user += 1 + i64::from(rand::random::<u8>());
        self.next_user
    }

    /// Adds a basic group; returns its ID.
    pub fn add_group(&mut self, creator: i64, title: &str, about: &str, members: &[i64]) -> i64 {
        let id = self.next_chat_id();
        let mut all = vec![creator];
        all.extend(members.iter().copied().filter(|m| *m != creator));
        self.groups.insert(
            id,
            Group {
                title: title.to_owned(),
                about: about.to_owned(),
                creator,
                members: all,
            },
        );
        id
    }

    /// Adds a channel (or a supergroup); returns its ID.
    pub fn add_channel(
        &mut self,
        creator: i64,
        title: &str,
        about: &str,
        megagroup: bool,
        members: &[i64],
    ) -> i64 {
        let id = self.next_chat_id();
        let mut all = vec![creator];
        all.extend(members.iter().copied().filter(|m| *m != creator));
        self.channels.insert(
            id,
            Channel {
                id,
                access_hash: rand::random::<i64>() | 1,
                title: title.to_owned(),
                about: about.to_owned(),
                megagroup,
                creator,
                members: all,
                pts: FIRST_CHANNEL_PTS,
                last_id: 0,
                messages: Vec::new(),
            },
        );
        id
    }

    /// The chat object of a group or channel.
    pub fn chat_tl(&self, chat: ChatPeer) -> Option<tl::enums::Chat> {
        match chat {
            ChatPeer::Group(id) => {
                let group = self.groups.get(&id)?;
                Some(
                    tl::types::Chat {
                        creator: false,
                        left: false,
                        deactivated: false,
                        call_active: false,
                        call_not_empty: false,
                        noforwards: false,
                        id,
                        title: group.title.clone(),
                        photo: tl::types::ChatPhotoEmpty {}.into(),
                        participants_count: group.members.len() as i32,
                        date: now(),
                        version: 1,
                        migrated_to: None,
                        admin_rights: None,
                        default_banned_rights: None,
                    }
                    .into(),
                )
            }
            ChatPeer::Channel(id) => {
                let channel = self.channels.get(&id)?;
                Some(
                    tl::types::Channel {
                        creator: false,
                        left: false,
                        broadcast: !channel.megagroup,
                        verified: false,
                        megagroup: channel.megagroup,
                        restricted: false,
                        signatures: false,
                        min: false,
                        scam: false,
                        has_link: false,
                        has_geo: false,
                        slowmode_enabled: false,
                        call_active: false,
                        call_not_empty: false,
                        fake: false,
                        gigagroup: false,
                        noforwards: false,
                        join_to_send: false,
                        join_request: false,
                        forum: false,
                        stories_hidden: false,
                        stories_hidden_min: false,
                        stories_unavailable: true,
                        signature_profiles: false,
                        autotranslation: false,
                        broadcast_messages_allowed: false,
                        monoforum: false,
                        forum_tabs: false,
                        id,
                        access_hash: Some(channel.access_hash),
                        title: channel.title.clone(),
                        username: None,
                        photo: tl::types::ChatPhotoEmpty {}.into(),
                        date: now(),
                        restriction_reason: None,
                        admin_rights: None,
                        banned_rights: None,
                        default_banned_rights: None,
                        participants_count: Some(channel.members.len() as i32),
                        usernames: None,
                        stories_max_id: None,
                        color: None,
                        profile_color: None,
                        emoji_status: None,
                        level: None,
                        subscription_until_date: None,
                        bot_verification_icon: None,
                        send_paid_messages_stars: None,
                        linked_monoforum_id: None,
                        linked_community_id: None,
                    }
                    .into(),
                )
            }
        }
    }

    /// The members of a group or channel.
    pub fn members_of(&self, chat: ChatPeer) -> Vec<i64> {
        match chat {
            ChatPeer::Group(id) => self.groups.get(&id).map(|g| g.members.clone()),
            ChatPeer::Channel(id) => self.channels.get(&id).map(|c| c.members.clone()),
        }
        .unwrap_or_default()
    }

    /// `updates` for `owner` with `updates` and the users and chat they name.
    fn chat_updates(
        &self,
        owner: i64,
        chat: ChatPeer,
        users: &[i64],
        updates: Vec<tl::enums::Update>,
    ) -> tl::enums::Updates {
        let mut ids: Vec<i64> = users.iter().copied().chain([owner]).collect();
        ids.sort_unstable();
        ids.dedup();
        tl::types::Updates {
            updates,
            users: ids.into_iter().map(|id| self.user_tl(owner, id)).collect(),
            chats: self.chat_tl(chat).into_iter().collect(),
            date: now(),
            seq: 0,
        }
        .into()
    }

    /// `from` writes in group or channel `chat` (replying to message `reply_to` of their
    /// own view of it). Every member's connections get the update, but the sender's own
    /// only when `push_to_sender` (a message from the phone, not an API call). Returns the
    /// sender's copy and the sender's `updates` (for an API call's answer, with `random_id`).
    pub fn send_to_chat(
        &mut self,
        from: i64,
        chat: ChatPeer,
        text: &str,
        entities: Vec<tl::enums::MessageEntity>,
        reply_to: Option<i32>,
        random_id: Option<i64>,
        push_to_sender: bool,
    ) -> Result<(Stored, tl::enums::Updates), (i32, String)> {
        let members = self.members_of(chat);
        if !members.contains(&from) {
            return Err((403, "CHAT_WRITE_FORBIDDEN".to_owned()));
        }
        let date = now();
        let shared = rand::random::<u64>();
        let mut copies: Vec<(i64, Stored)> = Vec::new();
        match chat {
            ChatPeer::Group(_) => {
                let reply_shared = reply_to.and_then(|id| self.shared_of(from, id));
                for member in &members {
                    let reply_here = reply_shared.and_then(|s| {
                        self.boxes
                            .get(member)?
                            .messages
                            .iter()
                            .find(|m| m.shared == s)
                            .map(|m| m.id)
                    });
                    let mailbox = self.boxes.entry(*member).or_insert_with(Mailbox::new);
                    mailbox.pts += 1;
                    mailbox.last_id += 1;
                    let message = Stored {
                        id: mailbox.last_id,
                        pts: mailbox.pts,
                        peer: from,
                        chat: Some(chat),
                        post: false,
                        from,
                        out: *member == from,
                        text: text.to_owned(),
                        entities: entities.clone(),
                        date,
                        reply_to: reply_here,
                        shared,
                        edit_date: None,
                        reactions: Vec::new(),
                    };
                    mailbox.messages.push(message.clone());
                    copies.push((*member, message));
                }
            }
            ChatPeer::Channel(id) => {
                let Some(channel) = self.channels.get_mut(&id) else {
                    return Err(bad("CHANNEL_INVALID"));
                };
                channel.pts += 1;
                channel.last_id += 1;
                let message = Stored {
                    id: channel.last_id,
                    pts: channel.pts,
                    peer: from,
                    chat: Some(chat),
                    post: !channel.megagroup,
                    from,
                    out: false,
                    text: text.to_owned(),
                    entities: entities.clone(),
                    date,
                    reply_to,
                    shared,
                    edit_date: None,
                    reactions: Vec::new(),
                };
                channel.messages.push(message.clone());
                for member in &members {
                    let mut copy = message.clone();
                    copy.out = *member == from;
                    copies.push((*member, copy));
                }
            }
        }
        let mut answer = None;
        for (member, message) in copies {
            let update: tl::enums::Update = match chat {
                ChatPeer::Group(_) => tl::types::UpdateNewMessage {
                    message: tl_build::message(member, &message),
                    pts: message.pts,
                    pts_count: 1,
                }
                .into(),
                ChatPeer::Channel(_) => tl::types::UpdateNewChannelMessage {
                    message: tl_build::message(member, &message),
                    pts: message.pts,
                    pts_count: 1,
                }
                .into(),
            };
            if member == from {
                let mut updates = Vec::new();
                if let Some(random_id) = random_id {
                    updates.push(
                        tl::types::UpdateMessageId {
                            id: message.id,
                            random_id,
                        }
                        .into(),
                    );
                }
                updates.push(update.clone());
                let own = self.chat_updates(member, chat, &[from], updates);
                if push_to_sender {
                    self.push(
                        member,
                        &self.chat_updates(member, chat, &[from], vec![update]),
                    );
                }
                answer = Some((message, own));
            } else {
                let updates = self.chat_updates(member, chat, &[from], vec![update]);
                self.push(member, &updates);
            }
        }
        answer.ok_or_else(|| bad("CHAT_ID_INVALID"))
    }

    /// The group or channel an `InputPeer` names, if `me` may see it.
    pub fn input_chat(&self, me: i64, peer: &tl::enums::InputPeer) -> Option<ChatPeer> {
        let chat = match peer {
            tl::enums::InputPeer::Chat(chat) => ChatPeer::Group(chat.chat_id),
            tl::enums::InputPeer::Channel(channel) => self.input_channel_id(
                &tl::types::InputChannel {
                    channel_id: channel.channel_id,
                    access_hash: channel.access_hash,
                }
                .into(),
            )?,
            _ => return None,
        };
        self.members_of(chat).contains(&me).then_some(chat)
    }

    fn input_channel_id(&self, channel: &tl::enums::InputChannel) -> Option<ChatPeer> {
        let tl::enums::InputChannel::Channel(channel) = channel else {
            return None;
        };
        self.channels
            .get(&channel.channel_id)
            .filter(|c| c.access_hash == channel.access_hash)
            .map(|c| ChatPeer::Channel(c.id))
    }

    /// `messages.getFullChat`.
    pub fn get_full_chat(&self, me: i64, chat_id: i64) -> RpcResult {
        let group = self
            .groups
            .get(&chat_id)
            .filter(|g| g.members.contains(&me))
            .ok_or_else(|| bad("CHAT_ID_INVALID"))?;
        let participants = group
            .members
            .iter()
            .map(|user_id| -> tl::enums::ChatParticipant {
                if *user_id == group.creator {
                    tl::types::ChatParticipantCreator {
                        user_id: *user_id,
                        rank: None,
                    }
                    .into()
                } else {
                    tl::types::ChatParticipant {
                        user_id: *user_id,
                        inviter_id: group.creator,
                        date: now(),
                        rank: None,
                    }
                    .into()
                }
            })
            .collect();
        let full = tl::types::ChatFull {
            can_set_username: false,
            has_scheduled: false,
            translations_disabled: false,
            has_welcome_messages: false,
            id: chat_id,
            about: group.about.clone(),
            participants: tl::types::ChatParticipants {
                chat_id,
                participants,
                version: 1,
            }
            .into(),
            chat_photo: None,
            notify_settings: tl_build::notify_settings(),
            exported_invite: None,
            bot_info: None,
            pinned_msg_id: None,
            folder_id: None,
            call: None,
            ttl_period: None,
            groupcall_default_join_as: None,
            theme_emoticon: None,
            requests_pending: None,
            recent_requesters: None,
            available_reactions: None,
            reactions_limit: None,
        };
        Ok(
            tl::enums::messages::ChatFull::Full(tl::types::messages::ChatFull {
                full_chat: full.into(),
                chats: self.chat_tl(ChatPeer::Group(chat_id)).into_iter().collect(),
                users: group
                    .members
                    .iter()
                    .map(|id| self.user_tl(me, *id))
                    .collect(),
            })
            .to_bytes(),
        )
    }

    fn member_channel(
        &self,
        me: i64,
        channel: &tl::enums::InputChannel,
    ) -> Result<&Channel, (i32, String)> {
        let Some(ChatPeer::Channel(id)) = self.input_channel_id(channel) else {
            return Err(bad("CHANNEL_INVALID"));
        };
        self.channels
            .get(&id)
            .filter(|c| c.members.contains(&me))
            .ok_or_else(|| bad("CHANNEL_PRIVATE"))
    }

    /// `channels.getFullChannel`.
    pub fn get_full_channel(&self, me: i64, channel: &tl::enums::InputChannel) -> RpcResult {
        let channel = self.member_channel(me, channel)?;
        let full = tl::types::ChannelFull {
            can_view_participants: true,
            can_set_username: false,
            can_set_stickers: false,
            hidden_prehistory: false,
            can_set_location: false,
            has_scheduled: false,
            can_view_stats: false,
            blocked: false,
            can_delete_channel: false,
            antispam: false,
            participants_hidden: false,
            translations_disabled: false,
            stories_pinned_available: false,
            view_forum_as_messages: false,
            restricted_sponsored: false,
            can_view_revenue: false,
            paid_media_allowed: false,
            can_view_stars_revenue: false,
            paid_reactions_available: false,
            stargifts_available: false,
            paid_messages_available: false,
            has_welcome_messages: false,
            id: channel.id,
            about: channel.about.clone(),
            participants_count: Some(channel.members.len() as i32),
            admins_count: Some(1),
            kicked_count: None,
            banned_count: None,
            online_count: None,
            read_inbox_max_id: channel.last_id,
            read_outbox_max_id: channel.last_id,
            unread_count: 0,
            chat_photo: tl::types::PhotoEmpty { id: 0 }.into(),
            notify_settings: tl_build::notify_settings(),
            exported_invite: None,
            bot_info: Vec::new(),
            migrated_from_chat_id: None,
            migrated_from_max_id: None,
            pinned_msg_id: None,
            stickerset: None,
            available_min_id: None,
            folder_id: None,
            linked_chat_id: None,
            location: None,
            slowmode_seconds: None,
            slowmode_next_send_date: None,
            stats_dc: None,
            pts: channel.pts,
            call: None,
            ttl_period: None,
            pending_suggestions: None,
            groupcall_default_join_as: None,
            theme_emoticon: None,
            requests_pending: None,
            recent_requesters: None,
            default_send_as: None,
            available_reactions: None,
            reactions_limit: None,
            stories: None,
            wallpaper: None,
            boosts_applied: None,
            boosts_unrestrict: None,
            emojiset: None,
            bot_verification: None,
            stargifts_count: None,
            send_paid_messages_stars: None,
            main_tab: None,
            guard_bot_id: None,
        };
        Ok(
            tl::enums::messages::ChatFull::Full(tl::types::messages::ChatFull {
                full_chat: full.into(),
                chats: self
                    .chat_tl(ChatPeer::Channel(channel.id))
                    .into_iter()
                    .collect(),
                users: Vec::new(),
            })
            .to_bytes(),
        )
    }

    /// `channels.getParticipants` (any filter reads as "recent").
    pub fn get_participants(
        &self,
        me: i64,
        request: &tl::functions::channels::GetParticipants,
    ) -> RpcResult {
        let channel = self.member_channel(me, &request.channel)?;
        let page: Vec<i64> = channel
            .members
            .iter()
            .copied()
            .skip(request.offset.max(0) as usize)
            .take(request.limit.max(0) as usize)
            .collect();
        let participants = page
            .iter()
            .map(|user_id| -> tl::enums::ChannelParticipant {
                if *user_id == channel.creator {
                    tl::types::ChannelParticipantCreator {
                        user_id: *user_id,
                        admin_rights: tl::types::ChatAdminRights {
                            change_info: true,
                            post_messages: true,
                            edit_messages: true,
                            delete_messages: true,
                            ban_users: true,
                            invite_users: true,
                            pin_messages: true,
                            add_admins: true,
                            anonymous: false,
                            manage_call: true,
                            other: true,
                            manage_topics: true,
                            post_stories: false,
                            edit_stories: false,
                            delete_stories: false,
                            manage_direct_messages: false,
                            manage_ranks: false,
                            manage_linked_peers: false,
                            manage_welcome_messages: false,
                        }
                        .into(),
                        rank: None,
                    }
                    .into()
                } else {
                    tl::types::ChannelParticipant {
                        user_id: *user_id,
                        date: now(),
                        subscription_until_date: None,
                        rank: None,
                    }
                    .into()
                }
            })
            .collect();
        Ok(tl::enums::channels::ChannelParticipants::Participants(
            tl::types::channels::ChannelParticipants {
                count: channel.members.len() as i32,
                participants,
                chats: Vec::new(),
                users: page.iter().map(|id| self.user_tl(me, *id)).collect(),
            },
        )
        .to_bytes())
    }

    /// `channels.getChannels`.
    pub fn get_channels(&self, me: i64, ids: &[tl::enums::InputChannel]) -> RpcResult {
        let chats = ids
            .iter()
            .filter_map(|input| self.member_channel(me, input).ok())
            .filter_map(|channel| self.chat_tl(ChatPeer::Channel(channel.id)))
            .collect();
        Ok(tl::enums::messages::Chats::Chats(tl::types::messages::Chats { chats }).to_bytes())
    }

    /// `updates.getChannelDifference`: the channel's messages after the client's pts.
    pub fn channel_difference(
        &self,
        me: i64,
        request: &tl::functions::updates::GetChannelDifference,
    ) -> RpcResult {
        let channel = self.member_channel(me, &request.channel)?;
        let new: Vec<&Stored> = channel
            .messages
            .iter()
            .filter(|m| m.pts > request.pts)
            .take(request.limit.max(1) as usize)
            .collect();
        if new.is_empty() {
            return Ok(tl::enums::updates::ChannelDifference::Empty(
                tl::types::updates::ChannelDifferenceEmpty {
                    r#final: true,
                    pts: channel.pts,
                    timeout: None,
                },
            )
            .to_bytes());
        }
        let last_pts = new.last().map_or(channel.pts, |m| m.pts);
        let mut users: Vec<i64> = new.iter().map(|m| m.from).chain([me]).collect();
        users.sort_unstable();
        users.dedup();
        Ok(tl::enums::updates::ChannelDifference::Difference(
            tl::types::updates::ChannelDifference {
                r#final: last_pts == channel.pts,
                pts: last_pts,
                timeout: None,
                new_messages: new
                    .iter()
                    .map(|m| {
                        let mut copy = (*m).clone();
                        copy.out = copy.from == me && !copy.post;
                        tl_build::message(me, &copy)
                    })
                    .collect(),
                other_updates: Vec::new(),
                chats: self
                    .chat_tl(ChatPeer::Channel(channel.id))
                    .into_iter()
                    .collect(),
                users: users.into_iter().map(|id| self.user_tl(me, id)).collect(),
            },
        )
        .to_bytes())
    }
}
