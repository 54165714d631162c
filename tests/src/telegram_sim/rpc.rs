//! The API methods the simulator answers. A request body is a constructor ID and the
//! function's fields; the generic wrappers (`invokeWithLayer`, `initConnection`) are read by
//! hand, since grammers' generated readers of functions skip the constructor ID of the
//! inner query. Everything but `help.getConfig` and the sign-in methods needs a signed-in key
//! (else 401 AUTH_KEY_UNREGISTERED, or SESSION_REVOKED after [`super::TelegramSim::revoke_sessions`],
//! as from Telegram).

use grammers_tl_types as tl;
use tl::{Deserializable as _, Identifiable as _, Serializable as _};

use super::state::{now, Change, Data, InitInfo, Inner, FIRST_PTS};
use super::{auth, groups, tl_build};

/// `invokeWithLayer#da9b0d0d`.
const INVOKE_WITH_LAYER: u32 = 0xda9b_0d0d;
/// `initConnection#c1cd5ea9`.
const INIT_CONNECTION: u32 = 0xc1cd_5ea9;

/// The answer to one call: serialized result or `(code, message)` error.
pub(super) type RpcResult = Result<Vec<u8>, (i32, String)>;

/// What the connection sends back for one client message.
pub(super) enum Answer {
    /// An `rpc_result`.
    Result(RpcResult),
    /// A `pong` for a ping with this ID.
    Pong(i64),
}

/// A 400 error.
pub(super) fn bad(message: &str) -> (i32, String) {
    (400, message.to_owned())
}

/// Answers one request body from the connection of `key`.
pub(super) fn call(inner: &Inner, key: &[u8; 256], body: &[u8]) -> Answer {
    let mut cursor = tl::Cursor::from_slice(body);
    let Ok(id) = u32::deserialize(&mut cursor) else {
        return Answer::Result(Err(bad("INPUT_CONSTRUCTOR_INVALID")));
    };
    match id {
        INVOKE_WITH_LAYER => {
            if i32::deserialize(&mut cursor).is_err() {
                return Answer::Result(Err(bad("INPUT_LAYER_INVALID")));
            }
            call(inner, key, &body[cursor.pos()..])
        }
        INIT_CONNECTION => match read_init(&mut cursor) {
            Some(info) => {
                inner.lock().inits.push(info);
                call(inner, key, &body[cursor.pos()..])
            }
            None => Answer::Result(Err(bad("CONNECTION_LAYER_INVALID"))),
        },
        tl::functions::Ping::CONSTRUCTOR_ID => {
            Answer::Pong(i64::deserialize(&mut cursor).unwrap_or_default())
        }
        tl::functions::PingDelayDisconnect::CONSTRUCTOR_ID => {
            Answer::Pong(i64::deserialize(&mut cursor).unwrap_or_default())
        }
        _ => Answer::Result(method(&mut inner.lock(), key, id, &mut cursor)),
    }
}

/// Reads `initConnection`'s fields up to its inner query.
fn read_init(cursor: &mut tl::Cursor) -> Option<InitInfo> {
    let flags = u32::deserialize(cursor).ok()?;
    let api_id = i32::deserialize(cursor).ok()?;
    let device_model = String::deserialize(cursor).ok()?;
    let system_version = String::deserialize(cursor).ok()?;
    let app_version = String::deserialize(cursor).ok()?;
    let _system_lang_code = String::deserialize(cursor).ok()?;
    let _lang_pack = String::deserialize(cursor).ok()?;
    let _lang_code = String::deserialize(cursor).ok()?;
    if flags & 1 != 0 {
        tl::enums::InputClientProxy::deserialize(cursor).ok()?;
    }
    if flags & 2 != 0 {
        tl::enums::Jsonvalue::deserialize(cursor).ok()?;
    }
    Some(InitInfo {
        api_id,
        device_model,
        system_version,
        app_version,
    })
}

fn method(data: &mut Data, key: &[u8; 256], id: u32, cursor: &mut tl::Cursor) -> RpcResult {
    use tl::functions as f;
    let name = tl::name_for_id(id).to_owned();
    if let Some((seconds, remaining)) = data.floods.get_mut(&name).filter(|(_, n)| *n > 0) {
        *remaining -= 1;
        let seconds = *seconds;
        data.calls.push(format!("{name} (flood wait)"));
        return Err((420, format!("FLOOD_WAIT_{seconds}")));
    }
    let window = data.flood_windows.get(&name).copied();
    if let Some(left) =
        window.map(|until| until.saturating_duration_since(std::time::Instant::now()))
    {
        if !left.is_zero() {
            // Whole seconds, rounded up, as Telegram says them.
            let seconds = left.as_millis().div_ceil(1000);
            data.calls.push(format!("{name} (flood wait)"));
            return Err((420, format!("FLOOD_WAIT_{seconds}")));
        }
    }
    data.calls.push(name);
    macro_rules! read {
        ($t:ty) => {
            <$t>::deserialize(cursor).map_err(|_| bad("INPUT_REQUEST_INVALID"))?
        };
    }
    match id {
        f::help::GetConfig::CONSTRUCTOR_ID => return Ok(tl_build::config(now()).to_bytes()),
        f::auth::SendCode::CONSTRUCTOR_ID => {
            return auth::send_code(data, read!(f::auth::SendCode))
        }
        f::auth::SignIn::CONSTRUCTOR_ID => return auth::sign_in(data, key, read!(f::auth::SignIn)),
        f::account::GetPassword::CONSTRUCTOR_ID => return auth::get_password(data, key),
        f::auth::CheckPassword::CONSTRUCTOR_ID => {
            return auth::check_password(data, key, read!(f::auth::CheckPassword))
        }
        f::auth::ExportLoginToken::CONSTRUCTOR_ID => return auth::export_login_token(data, key),
        f::auth::ImportBotAuthorization::CONSTRUCTOR_ID => {
            return auth::import_bot(data, key, read!(f::auth::ImportBotAuthorization));
        }
        _ => {}
    }
    let Some(me) = data.signed_in(key) else {
        let revoked = data.revoked.contains(&super::mtproto::key_id(key));
        let name = if revoked {
            "SESSION_REVOKED"
        } else {
            "AUTH_KEY_UNREGISTERED"
        };
        return Err((401, name.to_owned()));
    };
    match id {
        f::auth::LogOut::CONSTRUCTOR_ID => auth::log_out(data, key),
        f::updates::GetState::CONSTRUCTOR_ID => Ok(state(data, me).to_bytes()),
        f::updates::GetDifference::CONSTRUCTOR_ID => {
            Ok(difference(data, me, &read!(f::updates::GetDifference)).to_bytes())
        }
        f::users::GetUsers::CONSTRUCTOR_ID => {
            let request = read!(f::users::GetUsers);
            let users: Vec<tl::enums::User> = request
                .id
                .iter()
                .filter_map(|input| input_user(data, me, input))
                .map(|id| data.user_tl(me, id))
                .collect();
            Ok(users.to_bytes())
        }
        f::messages::SendMessage::CONSTRUCTOR_ID => {
            send_message(data, me, read!(f::messages::SendMessage))
        }
        f::messages::GetFullChat::CONSTRUCTOR_ID => {
            data.get_full_chat(me, read!(f::messages::GetFullChat).chat_id)
        }
        f::channels::GetFullChannel::CONSTRUCTOR_ID => {
            data.get_full_channel(me, &read!(f::channels::GetFullChannel).channel)
        }
        f::channels::GetParticipants::CONSTRUCTOR_ID => {
            data.get_participants(me, &read!(f::channels::GetParticipants))
        }
        f::channels::GetChannels::CONSTRUCTOR_ID => {
            data.get_channels(me, &read!(f::channels::GetChannels).id)
        }
        f::updates::GetChannelDifference::CONSTRUCTOR_ID => {
            data.channel_difference(me, &read!(f::updates::GetChannelDifference))
        }
        f::channels::ReadHistory::CONSTRUCTOR_ID => {
            let request = read!(f::channels::ReadHistory);
            if let tl::enums::InputChannel::Channel(channel) = &request.channel {
                data.read.insert((me, -channel.channel_id), request.max_id);
            }
            Ok(true.to_bytes())
        }
        f::messages::GetDialogs::CONSTRUCTOR_ID => Ok(dialogs(data, me).to_bytes()),
        f::messages::SetTyping::CONSTRUCTOR_ID => {
            let request = read!(f::messages::SetTyping);
            let peer = input_peer(data, me, &request.peer)?;
            let typing = !matches!(
                request.action,
                tl::enums::SendMessageAction::SendMessageCancelAction
            );
            data.typing.insert((me, peer), typing);
            Ok(true.to_bytes())
        }
        f::messages::ReadHistory::CONSTRUCTOR_ID => {
            let request = read!(f::messages::ReadHistory);
            let peer = input_peer(data, me, &request.peer)?;
            data.read.insert((me, peer), request.max_id);
            let pts = data.boxes.get(&me).map_or(FIRST_PTS, |b| b.pts);
            Ok(tl::enums::messages::AffectedMessages::Messages(
                tl::types::messages::AffectedMessages { pts, pts_count: 0 },
            )
            .to_bytes())
        }
        f::messages::EditMessage::CONSTRUCTOR_ID => {
            edit_message(data, me, read!(f::messages::EditMessage))
        }
        f::messages::SendReaction::CONSTRUCTOR_ID => {
            let request = read!(f::messages::SendReaction);
            input_peer(data, me, &request.peer)?;
            let shared = data
                .shared_of(me, request.msg_id)
                .ok_or_else(|| bad("MESSAGE_ID_INVALID"))?;
            let emoji = match request.reaction.as_deref() {
                Some([tl::enums::Reaction::Emoji(emoji)]) => Some(emoji.emoticon.clone()),
                Some([]) | None => None,
                Some(_) => return Err(bad("REACTION_INVALID")),
            };
            let all = data.react_shared(shared, me, emoji.as_deref());
            data.push_all_but(me, all)
                .map(|u| u.to_bytes())
                .ok_or_else(|| bad("MESSAGE_ID_INVALID"))
        }
        f::messages::DeleteMessages::CONSTRUCTOR_ID => {
            delete_messages(data, me, read!(f::messages::DeleteMessages))
        }
        _ => Err(bad(&format!(
            "METHOD_NOT_SIMULATED_{}",
            tl::name_for_id(id).replace('.', "_").to_uppercase()
        ))),
    }
}

fn state(data: &Data, me: i64) -> tl::enums::updates::State {
    let pts = data.boxes.get(&me).map_or(FIRST_PTS, |b| b.pts);
    tl::types::updates::State {
        pts,
        qts: 0,
        date: now(),
        seq: 0,
        unread_count: 0,
    }
    .into()
}

/// The messages of `me`'s box after the client's pts.
fn difference(
    data: &Data,
    me: i64,
    request: &tl::functions::updates::GetDifference,
) -> tl::enums::updates::Difference {
    let Some(mailbox) = data.boxes.get(&me).filter(|b| b.pts > request.pts) else {
        return tl::types::updates::DifferenceEmpty {
            date: now(),
            seq: 0,
        }
        .into();
    };
    let new: Vec<_> = mailbox
        .messages
        .iter()
        .filter(|m| m.pts > request.pts)
        .collect();
    let mut peers: Vec<i64> = new.iter().map(|m| m.peer).chain([me]).collect();
    peers.sort_unstable();
    peers.dedup();
    let mut chats: Vec<_> = new.iter().filter_map(|m| m.chat).collect();
    chats.dedup();
    tl::types::updates::Difference {
        new_messages: new.iter().map(|m| tl_build::message(me, m)).collect(),
        new_encrypted_messages: Vec::new(),
        other_updates: mailbox
            .changes
            .iter()
            .filter(|(pts, _)| *pts > request.pts)
            .filter_map(|(pts, change)| match change {
                Change::Edit(id) => mailbox.messages.iter().find(|m| m.id == *id).map(|m| {
                    tl::types::UpdateEditMessage {
                        message: tl_build::message(me, m),
                        pts: *pts,
                        pts_count: 1,
                    }
                    .into()
                }),
                Change::Delete(ids) => Some(
                    tl::types::UpdateDeleteMessages {
                        messages: ids.clone(),
                        pts: *pts,
                        pts_count: 1,
                    }
                    .into(),
                ),
            })
            .collect(),
        chats: chats.into_iter().filter_map(|c| data.chat_tl(c)).collect(),
        users: peers.into_iter().map(|id| data.user_tl(me, id)).collect(),
        state: state(data, me),
    }
    .into()
}

/// The user an `InputUser` names, if its access hash is right.
fn input_user(data: &Data, me: i64, input: &tl::enums::InputUser) -> Option<i64> {
    match input {
        tl::enums::InputUser::UserSelf => Some(me),
        tl::enums::InputUser::User(user) => data
            .users
            .get(&user.user_id)
            .filter(|u| u.access_hash == user.access_hash)
            .map(|u| u.id),
        _ => None,
    }
}

/// The user an `InputPeer` names, if its access hash is right.
fn input_peer(data: &Data, me: i64, peer: &tl::enums::InputPeer) -> Result<i64, (i32, String)> {
    match peer {
        tl::enums::InputPeer::PeerSelf => Ok(me),
        tl::enums::InputPeer::User(user) => data
            .users
            .get(&user.user_id)
            .filter(|u| u.access_hash == user.access_hash)
            .map(|u| u.id)
            .ok_or_else(|| bad("PEER_ID_INVALID")),
        _ => Err(bad("PEER_ID_INVALID")),
    }
}

fn send_message(
    data: &mut Data,
    me: i64,
    request: tl::functions::messages::SendMessage,
) -> RpcResult {
    if request.message.trim().is_empty() {
        return Err(bad("MESSAGE_EMPTY"));
    }
    let reply_to = match &request.reply_to {
        Some(tl::enums::InputReplyTo::Message(reply)) => Some(reply.reply_to_msg_id),
        _ => None,
    };
    let entities = groups::stored_entities(request.entities.clone().unwrap_or_default());
    if let Some(chat) = data.input_chat(me, &request.peer) {
        if !data.random_ids.insert((me, request.random_id)) {
            return Err(bad("RANDOM_ID_DUPLICATE"));
        }
        let (_, updates) = data.send_to_chat(
            me,
            chat,
            &request.message,
            entities,
            reply_to,
            Some(request.random_id),
            false,
        )?;
        return Ok(updates.to_bytes());
    }
    let to = input_peer(data, me, &request.peer)?;
    if !data.random_ids.insert((me, request.random_id)) {
        return Err(bad("RANDOM_ID_DUPLICATE"));
    }
    let (sent, received) = data.store_private(me, to, &request.message, entities, reply_to);
    if to != me {
        let updates = data.new_message_updates(to, &received);
        data.push(to, &updates);
    }
    Ok(
        tl::enums::Updates::UpdateShortSentMessage(tl::types::UpdateShortSentMessage {
            out: true,
            id: sent.id,
            pts: sent.pts,
            pts_count: 1,
            date: sent.date,
            media: None,
            entities: None,
            ttl_period: None,
        })
        .to_bytes(),
    )
}

fn edit_message(
    data: &mut Data,
    me: i64,
    request: tl::functions::messages::EditMessage,
) -> RpcResult {
    let shared = data
        .shared_of(me, request.id)
        .ok_or_else(|| bad("MESSAGE_ID_INVALID"))?;
    let text = request.message.clone().unwrap_or_default();
    let all = data.edit_shared(shared, &text, request.entities.clone().unwrap_or_default());
    data.push_all_but(me, all)
        .map(|u| u.to_bytes())
        .ok_or_else(|| bad("MESSAGE_ID_INVALID"))
}

fn delete_messages(
    data: &mut Data,
    me: i64,
    request: tl::functions::messages::DeleteMessages,
) -> RpcResult {
    let mut pts = data.boxes.get(&me).map_or(FIRST_PTS, |b| b.pts);
    let mut count = 0;
    for id in &request.id {
        let Some(shared) = data.shared_of(me, *id) else {
            continue;
        };
        for (owner, updates, owner_pts) in data.delete_shared(shared) {
            if owner == me {
                pts = owner_pts;
                count += 1;
            } else {
                data.push(owner, &updates);
            }
        }
    }
    Ok(
        tl::enums::messages::AffectedMessages::Messages(tl::types::messages::AffectedMessages {
            pts,
            pts_count: count,
        })
        .to_bytes(),
    )
}

/// `me`'s private chats, newest first.
fn dialogs(data: &Data, me: i64) -> tl::enums::messages::Dialogs {
    let mut tops: Vec<&super::state::Stored> = Vec::new();
    if let Some(mailbox) = data.boxes.get(&me) {
        for message in mailbox.messages.iter().rev().filter(|m| m.chat.is_none()) {
            if !tops.iter().any(|t| t.peer == message.peer) {
                tops.push(message);
            }
        }
    }
    let pts = data.boxes.get(&me).map_or(FIRST_PTS, |b| b.pts);
    let mut users: Vec<i64> = tops.iter().map(|m| m.peer).chain([me]).collect();
    users.dedup();
    tl::types::messages::Dialogs {
        dialogs: tops
            .iter()
            .map(|m| tl_build::dialog(m.peer, m.id, pts))
            .collect(),
        messages: tops.iter().map(|m| tl_build::message(me, m)).collect(),
        chats: Vec::new(),
        users: users.into_iter().map(|id| data.user_tl(me, id)).collect(),
    }
    .into()
}
