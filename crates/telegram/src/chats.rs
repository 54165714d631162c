//! What the core asks about chats and users: private chats; basic groups
//! (`messages.getFullChat`); channels and supergroups (`channels.getFullChannel`, members
//! by `channels.getParticipants`, a broadcast channel's only with `sync_channel_members`);
//! members bounded by `max_initial_member_sync`; the ghosts of users (`users.getUsers`)
//! and of channels that post as themselves (`channels.getChannels`). The users and chats
//! these answers name are cached in the session, with their access hashes.

use bridge_core::network::events::{ChatInfo, ChatMember, ChatRef, UserInfo};
use bridge_core::network::{NetworkError, RemoteUserId};
use grammers_client::tl;
use grammers_session::types::{PeerId, PeerInfo, PeerKind};

use crate::client::{timed, Shared};
use crate::{handle_remote, ids};

/// The most members asked for in one `channels.getParticipants` call.
const PARTICIPANTS_PAGE: i32 = 200;

impl Shared {
    /// Caches the users and chats an answer names.
    async fn cache(&self, users: &[tl::enums::User], chats: &[tl::enums::Chat]) {
        use grammers_session::Session as _;
        let peers: Vec<PeerInfo> = users
            .iter()
            .map(PeerInfo::from)
            .chain(chats.iter().map(PeerInfo::from))
            .collect();
        if let Err(error) = self.session.cache_peers(peers).await {
            tracing::warn!(login = %self.login, %error, "could not cache Telegram users and chats");
        }
    }

    /// The access hash of a channel this login has seen.
    async fn input_channel(&self, id: i64) -> Result<tl::enums::InputChannel, NetworkError> {
        let peer = self
            .peer_ref(PeerId::channel_unchecked(id))
            .await
            .ok_or_else(|| NetworkError::NotFound(format!("channel {id} (not seen yet)")))?;
        Ok(tl::types::InputChannel {
            channel_id: id,
            access_hash: peer.auth.hash(),
        }
        .into())
    }

    /// How many members to sync: `max_initial_member_sync`, `None` for all.
    fn member_limit(&self) -> Option<usize> {
        usize::try_from(self.config.max_initial_member_sync).ok()
    }

    /// `members` bounded by the configured limit, the account itself always in.
    fn bounded(&self, mut members: Vec<ChatMember>) -> Vec<ChatMember> {
        if let Some(limit) = self.member_limit() {
            let me = self.self_id().map(ids::user_id);
            let mine = members.iter().position(|m| Some(&m.user) == me.as_ref());
            if let Some(index) = mine.filter(|i| *i >= limit) {
                let own = members.remove(index);
                members.insert(0, own);
            }
            members.truncate(limit.max(1));
        }
        members
    }

    /// A group's or channel's description.
    fn group_chat(
        &self,
        name: Option<String>,
        about: String,
        members: Vec<ChatMember>,
    ) -> ChatInfo {
        ChatInfo {
            name,
            topic: Some(about).filter(|a| !a.is_empty()),
            is_direct: false,
            members: Some(self.bounded(members)),
            ..ChatInfo::default()
        }
    }

    fn me_member(&self) -> Option<ChatMember> {
        Some(ChatMember {
            user: ids::user_id(self.self_id()?),
            nickname: None,
            is_admin: false,
        })
    }

    /// Describes a chat for its portal.
    pub(crate) async fn chat_info(&self, chat: &ChatRef) -> Result<ChatInfo, NetworkError> {
        let peer = ids::parse_chat(&chat.id)
            .ok_or_else(|| NetworkError::NotFound(format!("chat {}", chat.id.as_str())))?;
        match peer.kind() {
            PeerKind::User => {
                let mut members = vec![ChatMember {
                    user: ids::user_id(peer.bare_id_unchecked()),
                    nickname: None,
                    is_admin: false,
                }];
                members.extend(self.me_member());
                Ok(ChatInfo {
                    is_direct: true,
                    members: Some(members),
                    ..ChatInfo::default()
                })
            }
            PeerKind::Chat => self.group_info(peer.bare_id_unchecked()).await,
            PeerKind::Channel => self.channel_info(peer.bare_id_unchecked()).await,
        }
    }

    async fn group_info(&self, chat_id: i64) -> Result<ChatInfo, NetworkError> {
        let client = self.client()?;
        let tl::enums::messages::ChatFull::Full(full) = timed(
            &self.config,
            client.invoke(&tl::functions::messages::GetFullChat { chat_id }),
        )
        .await?;
        self.cache(&full.users, &full.chats).await;
        let name = full.chats.iter().find_map(|c| match c {
            tl::enums::Chat::Chat(c) if c.id == chat_id => Some(c.title.clone()),
            tl::enums::Chat::Forbidden(c) if c.id == chat_id => Some(c.title.clone()),
            _ => None,
        });
        let (about, members) = match &full.full_chat {
            tl::enums::ChatFull::Full(full) => {
                let members = match &full.participants {
                    tl::enums::ChatParticipants::Participants(list) => list
                        .participants
                        .iter()
                        .map(|p| {
                            use tl::enums::ChatParticipant as P;
                            let (user, is_admin) = match p {
                                P::Participant(p) => (p.user_id, false),
                                P::Creator(p) => (p.user_id, true),
                                P::Admin(p) => (p.user_id, true),
                            };
                            ChatMember {
                                user: ids::user_id(user),
                                nickname: None,
                                is_admin,
                            }
                        })
                        .collect(),
                    tl::enums::ChatParticipants::Forbidden(_) => {
                        self.me_member().into_iter().collect()
                    }
                };
                (full.about.clone(), members)
            }
            _ => (String::new(), self.me_member().into_iter().collect()),
        };
        Ok(self.group_chat(name, about, members))
    }

    async fn channel_info(&self, channel_id: i64) -> Result<ChatInfo, NetworkError> {
        let client = self.client()?;
        let channel = self.input_channel(channel_id).await?;
        let tl::enums::messages::ChatFull::Full(full) = timed(
            &self.config,
            client.invoke(&tl::functions::channels::GetFullChannel {
                channel: channel.clone(),
            }),
        )
        .await?;
        self.cache(&full.users, &full.chats).await;
        let (name, broadcast) = full
            .chats
            .iter()
            .find_map(|c| match c {
                tl::enums::Chat::Channel(c) if c.id == channel_id => {
                    Some((Some(c.title.clone()), c.broadcast))
                }
                tl::enums::Chat::ChannelForbidden(c) if c.id == channel_id => {
                    Some((Some(c.title.clone()), c.broadcast))
                }
                _ => None,
            })
            .unwrap_or((None, false));
        let about = match &full.full_chat {
            tl::enums::ChatFull::ChannelFull(full) => full.about.clone(),
            _ => String::new(),
        };
        let members = if broadcast && !self.config.sync_channel_members {
            self.me_member().into_iter().collect()
        } else {
            self.channel_members(channel).await?
        };
        Ok(self.group_chat(name, about, members))
    }

    /// A channel's members, page by page, up to the configured limit.
    async fn channel_members(
        &self,
        channel: tl::enums::InputChannel,
    ) -> Result<Vec<ChatMember>, NetworkError> {
        let client = self.client()?;
        let limit = self.member_limit();
        let mut members: Vec<ChatMember> = Vec::new();
        loop {
            let wanted = limit.map_or(PARTICIPANTS_PAGE as usize, |l| {
                l.saturating_sub(members.len())
            });
            let page = i32::try_from(wanted)
                .unwrap_or(PARTICIPANTS_PAGE)
                .min(PARTICIPANTS_PAGE);
            if page == 0 {
                break;
            }
            let request = tl::functions::channels::GetParticipants {
                channel: channel.clone(),
                filter: tl::types::ChannelParticipantsRecent {}.into(),
                offset: members.len() as i32,
                limit: page,
                hash: 0,
            };
            let answer = timed(&self.config, client.invoke(&request)).await?;
            let tl::enums::channels::ChannelParticipants::Participants(answer) = answer else {
                break;
            };
            self.cache(&answer.users, &answer.chats).await;
            let got = answer.participants.len();
            for participant in &answer.participants {
                use tl::enums::ChannelParticipant as P;
                let (user, is_admin) = match participant {
                    P::Participant(p) => (p.user_id, false),
                    P::ParticipantSelf(p) => (p.user_id, false),
                    P::Creator(p) => (p.user_id, true),
                    P::Admin(p) => (p.user_id, true),
                    P::Banned(_) | P::Left(_) => continue,
                };
                members.push(ChatMember {
                    user: ids::user_id(user),
                    nickname: None,
                    is_admin,
                });
            }
            if got < page as usize || members.len() >= answer.count.max(0) as usize {
                break;
            }
        }
        Ok(members)
    }

    /// Describes a user (or a channel posting as itself) for their ghost.
    pub(crate) async fn user_info(&self, user: &RemoteUserId) -> Result<UserInfo, NetworkError> {
        let client = self.client()?;
        if let Some(id) = ids::parse_user(user) {
            let peer = self
                .peer_ref(PeerId::user_unchecked(id))
                .await
                .ok_or_else(|| NetworkError::NotFound(format!("user {id} (not seen yet)")))?;
            let input = tl::enums::InputUser::User(tl::types::InputUser {
                user_id: id,
                access_hash: peer.auth.hash(),
            });
            let users = timed(
                &self.config,
                client.invoke(&tl::functions::users::GetUsers { id: vec![input] }),
            )
            .await?;
            let user = users
                .into_iter()
                .next()
                .ok_or_else(|| NetworkError::NotFound(format!("user {id}")))?;
            return Ok(handle_remote::user_info(&user));
        }
        let channel = user
            .as_str()
            .parse()
            .ok()
            .and_then(PeerId::from_bot_api_dialog_id)
            .filter(|p| p.kind() == PeerKind::Channel)
            .ok_or_else(|| NetworkError::NotFound(format!("user {}", user.as_str())))?;
        let input = self.input_channel(channel.bare_id_unchecked()).await?;
        let tl::enums::messages::Chats::Chats(chats) = timed(
            &self.config,
            client.invoke(&tl::functions::channels::GetChannels { id: vec![input] }),
        )
        .await?
        else {
            return Err(NetworkError::NotFound(format!("channel {}", user.as_str())));
        };
        let name = chats.chats.iter().find_map(|c| match c {
            tl::enums::Chat::Channel(c) => Some(c.title.clone()),
            _ => None,
        });
        Ok(UserInfo {
            name,
            avatar: None,
            is_bot: false,
        })
    }
}
