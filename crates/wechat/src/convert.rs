//! Pure conversions between the puppet protocol and the core's types: message payloads to
//! [`RemoteEvent`]s, contacts and rooms to user and chat info, event payloads (JSON) to
//! typed structs, and Matrix text with pills to WeChat text with `@name` mentions.

use std::collections::HashMap;

use bridge_core::network::events::{
    AvatarRef, ChatInfo, ChatMember, Media, MediaKind, MessageContent, MessagePart, Sender, Timestamp, UserInfo,
};
use bridge_core::network::{LoginId, PartId, RemoteEvent, RemoteMessageId, RemoteUserId};
use serde::Deserialize;

use crate::file_box::{stable_hash, FileBox};
use crate::ids::{chat_ref, conversation_of, MediaSource};
use crate::puppet::proto::{
    ContactPayloadResponse, LocationPayload, MessagePayloadResponse, MiniProgramPayload, RoomPayloadResponse,
    UrlLinkPayload,
};

/// The separator WeChat puts after an `@name` mention (a four-per-em space).
pub const MENTION_SEPARATOR: char = '\u{2005}';

/// Message types as puppet services built on wechaty-puppet send them in
/// `MessagePayloadResponse.type`: the TypeScript enum's numbers, not the proto enum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Anything the puppet could not classify.
    Unknown,
    /// A file.
    Attachment,
    /// A voice message.
    Audio,
    /// A shared contact card.
    Contact,
    /// A forwarded chat history.
    ChatHistory,
    /// A sticker.
    Emoticon,
    /// An image.
    Image,
    /// Text.
    Text,
    /// A location.
    Location,
    /// A mini-program card.
    MiniProgram,
    /// A group note.
    GroupNote,
    /// A money transfer.
    Transfer,
    /// A red envelope.
    RedEnvelope,
    /// A recall notice; the text is the recalled message's id.
    Recalled,
    /// A link card.
    Url,
    /// A video.
    Video,
    /// A moments post.
    Post,
}

impl MessageKind {
    /// The kind for a wire number; unknown numbers are [`MessageKind::Unknown`].
    pub fn from_wire(number: i32) -> Self {
        match number {
            1 => Self::Attachment,
            2 => Self::Audio,
            3 => Self::Contact,
            4 => Self::ChatHistory,
            5 => Self::Emoticon,
            6 => Self::Image,
            7 => Self::Text,
            8 => Self::Location,
            9 => Self::MiniProgram,
            10 => Self::GroupNote,
            11 => Self::Transfer,
            12 => Self::RedEnvelope,
            13 => Self::Recalled,
            14 => Self::Url,
            15 => Self::Video,
            16 => Self::Post,
            _ => Self::Unknown,
        }
    }
}

/// The payload of a SCAN event.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ScanEvent {
    /// The QR code's content (empty once scanned).
    #[serde(default)]
    pub qrcode: String,
    /// wechaty-puppet's `ScanStatus`.
    #[serde(default)]
    pub status: i32,
}

/// wechaty-puppet's scan status numbers.
pub mod scan_status {
    /// Waiting for a scan.
    pub const WAITING: i32 = 2;
    /// Scanned; waiting for the user to confirm on the phone.
    pub const SCANNED: i32 = 3;
    /// Confirmed on the phone.
    pub const CONFIRMED: i32 = 4;
    /// The code expired.
    pub const TIMEOUT: i32 = 5;
    /// The user cancelled on the phone.
    pub const CANCEL: i32 = 1;
}

/// The payload of a LOGIN or LOGOUT event.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoginEvent {
    /// The self contact's id.
    pub contact_id: String,
    /// Why (LOGOUT only).
    #[serde(default)]
    pub data: Option<String>,
}

/// The payload of a MESSAGE event.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MessageEvent {
    /// The message to fetch with `MessagePayload`.
    pub message_id: String,
}

/// The payload of a ROOM_TOPIC event.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoomTopicEvent {
    /// The room.
    pub room_id: String,
    /// The new topic.
    pub new_topic: String,
}

/// The payload of a ROOM_JOIN or ROOM_LEAVE event.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoomMembersEvent {
    /// The room.
    pub room_id: String,
    /// Who joined.
    #[serde(default)]
    pub invitee_id_list: Vec<String>,
    /// Who left.
    #[serde(default)]
    pub removee_id_list: Vec<String>,
}

/// The best name of a contact: the remark the account gave them, else their nickname, else
/// their WeChat handle; `None` only if the puppet knows none of them.
pub fn display_name(alias: &str, name: &str, handle: &str) -> Option<String> {
    [alias, name, handle].into_iter().map(str::trim).find(|s| !s.is_empty()).map(str::to_owned)
}

/// The version of an avatar given as `file_box` (the JSON a puppet service sends for
/// avatars), without fetching it: a hash of the image for inline boxes, of the address for
/// URL boxes. `None` for boxes whose content must be fetched to know it (UUID boxes, see
/// [`crate::client`]) and for boxes that are no image (QR codes, empty).
pub fn avatar_version(file_box: &FileBox) -> Option<String> {
    match file_box {
        FileBox::Inline { data, .. } if !data.is_empty() => Some(format!("{}-{}", stable_hash(data), data.len())),
        FileBox::Url { url, .. } => Some(format!("url-{}", stable_hash(url.as_bytes()))),
        _ => None,
    }
}

/// The avatar of `contact_id` (a contact or room) at `version`: fetched from the source
/// `avatar:<id>`.
pub fn avatar_ref(contact_id: &str, version: String) -> AvatarRef {
    AvatarRef { id: version, source: Some(MediaSource::Avatar(contact_id.to_owned()).to_string()) }
}

/// A contact as a ghost's user info.
pub fn user_info(contact: &ContactPayloadResponse) -> UserInfo {
    UserInfo {
        name: display_name(&contact.alias, &contact.name, &contact.weixin),
        avatar: None,
        // Official accounts are the closest WeChat has to bots.
        is_bot: contact.r#type == crate::puppet::proto::ContactType::Official as i32,
    }
}

/// A room as chat info, with its members (their room aliases as nicknames).
pub fn room_info(room: &RoomPayloadResponse, members: Vec<ChatMember>) -> ChatInfo {
    ChatInfo {
        name: Some(room.topic.clone()).filter(|t| !t.trim().is_empty()),
        topic: None,
        avatar: None,
        is_direct: false,
        members: Some(members),
        members_partial: false,
        parent: None,
    }
}

/// A room member; `room_alias` is their name in this room, if any.
pub fn room_member(room: &RoomPayloadResponse, id: &str, room_alias: &str) -> ChatMember {
    ChatMember {
        user: RemoteUserId::from(id),
        nickname: Some(room_alias.trim().to_owned()).filter(|a| !a.is_empty()),
        is_admin: room.owner_id == id || room.admin_ids.iter().any(|a| a == id),
    }
}

/// A DM with `contact`, seen by the account `self_id`.
pub fn dm_info(contact: &ContactPayloadResponse, self_id: &str) -> ChatInfo {
    let member = |id: &str| ChatMember { user: RemoteUserId::from(id), nickname: None, is_admin: false };
    ChatInfo {
        name: display_name(&contact.alias, &contact.name, &contact.weixin),
        topic: None,
        avatar: None,
        is_direct: true,
        members: Some(vec![member(&contact.id), member(self_id)]),
        members_partial: false,
        parent: None,
    }
}

/// The message's time in milliseconds: `receive_time`, else the deprecated timestamp
/// (seconds or milliseconds), else `now`.
pub fn timestamp_ms(payload: &MessagePayloadResponse, now: Timestamp) -> Timestamp {
    if let Some(time) = &payload.receive_time {
        if time.seconds > 0 {
            return time.seconds * 1000 + i64::from(time.nanos) / 1_000_000;
        }
    }
    match i64::try_from(payload.timestamp_deprecated) {
        Ok(0) | Err(_) => now,
        Ok(t) if t < 100_000_000_000 => t * 1000,
        Ok(t) => t,
    }
}

/// The details of a card message, fetched with the call for its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Card {
    /// A link.
    Url(UrlLinkPayload),
    /// A mini-program.
    MiniProgram(MiniProgramPayload),
    /// A shared contact: its name and WeChat handle, when known.
    Contact {
        /// The contact's best name.
        name: Option<String>,
        /// Their WeChat ID (handle).
        handle: String,
    },
    /// A place.
    Location(LocationPayload),
}

/// A card as readable Matrix content: links with their title and address, mini-programs
/// and contact cards as text, places as locations.
pub fn card_content(card: &Card) -> MessageContent {
    let text = |body: String, html: Option<String>| MessageContent::Text { body, html, mentions: Vec::new() };
    let lines = |parts: &[&str]| parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("\n");
    match card {
        Card::Url(link) => {
            let title = if link.title.trim().is_empty() { link.url.as_str() } else { link.title.as_str() };
            let body = if title == link.url { lines(&[&link.description, &link.url]) } else { lines(&[title, &link.description, &link.url]) };
            let url = link.url.trim();
            let html = (url.starts_with("https://") || url.starts_with("http://")).then(|| {
                let mut html = format!("<a href=\"{}\">{}</a>", escape(url), escape(title.trim()));
                if !link.description.trim().is_empty() {
                    html.push_str(&format!("<br>{}", escape(link.description.trim())));
                }
                html
            });
            text(body, html)
        }
        Card::MiniProgram(program) => {
            let title = if program.title.trim().is_empty() { "(untitled)" } else { program.title.trim() };
            text(lines(&[&format!("Mini program: {title}"), &program.description]), None)
        }
        Card::Contact { name, handle } => {
            let name = name.as_deref().unwrap_or("someone");
            let body = if handle.trim().is_empty() {
                format!("Contact card: {name}")
            } else {
                format!("Contact card: {name} (WeChat ID: {})", handle.trim())
            };
            text(body, None)
        }
        Card::Location(place) => MessageContent::Location {
            latitude: place.latitude,
            longitude: place.longitude,
            description: lines(&[&place.name, &place.address]),
        },
    }
}

/// Converts a message for `login` (whose contact id is `self_id`). `names` maps mentioned
/// ids to their names; `pill` writes a Matrix pill for one; `card` is the fetched card of a
/// link, mini-program, contact card or location message. `None` for payloads that carry
/// nothing to bridge.
pub fn message_event(
    payload: &MessagePayloadResponse,
    login: &LoginId,
    self_id: &str,
    names: &HashMap<String, String>,
    pill: &dyn Fn(&RemoteUserId, &str) -> String,
    card: Option<&Card>,
    now: Timestamp,
) -> Option<RemoteEvent> {
    if payload.id.is_empty() || payload.talker_id.is_empty() {
        return None;
    }
    let conversation = conversation_of(self_id, &payload.room_id, &payload.talker_id, &payload.listener_id);
    if conversation.is_empty() {
        return None;
    }
    let chat = chat_ref(login, conversation);
    let sender = Sender { user: RemoteUserId::from(payload.talker_id.as_str()), is_from_me: payload.talker_id == self_id };
    let kind = MessageKind::from_wire(payload.r#type);
    if kind == MessageKind::Recalled {
        let target = payload.text.trim();
        return (!target.is_empty()).then(|| RemoteEvent::Delete { chat, id: RemoteMessageId::from(target), sender });
    }
    let content = match card {
        Some(card) => card_content(card),
        None => message_content(payload, kind, names, pill),
    };
    Some(RemoteEvent::Message {
        chat,
        id: RemoteMessageId::from(payload.id.as_str()),
        sender,
        timestamp: timestamp_ms(payload, now),
        parts: vec![MessagePart { id: PartId::from(""), content }],
        reply_to: None,
        thread_root: None,
    })
}

fn message_content(
    payload: &MessagePayloadResponse,
    kind: MessageKind,
    names: &HashMap<String, String>,
    pill: &dyn Fn(&RemoteUserId, &str) -> String,
) -> MessageContent {
    let media = |kind: MediaKind, source: MediaSource, default_name: &str| {
        let filename = if payload.filename.is_empty() { default_name.to_owned() } else { payload.filename.clone() };
        MessageContent::Media(Media {
            kind,
            source: source.to_string(),
            mime: mime_for(&filename).map(str::to_owned),
            filename,
            size: None,
            dimensions: None,
            duration_ms: None,
            caption: None,
        })
    };
    let id = payload.id.clone();
    let notice = |what: &str| MessageContent::Notice { body: format!("{what}: open WeChat on your phone to see it.") };
    match kind {
        MessageKind::Text => text_content(&payload.text, &payload.mention_ids, names, pill),
        MessageKind::Image => media(MediaKind::Image, MediaSource::Image(id), "image.jpg"),
        MessageKind::Emoticon => media(MediaKind::Image, MediaSource::File(id), "sticker.gif"),
        MessageKind::Attachment => media(MediaKind::File, MediaSource::File(id), "file"),
        MessageKind::Video => media(MediaKind::Video, MediaSource::File(id), "video.mp4"),
        MessageKind::Audio => media(MediaKind::Voice, MediaSource::File(id), "voice.silk"),
        MessageKind::Url | MessageKind::MiniProgram | MessageKind::Contact | MessageKind::Location
        | MessageKind::ChatHistory | MessageKind::GroupNote | MessageKind::Post
            if !payload.text.trim().is_empty() =>
        {
            MessageContent::Text { body: payload.text.clone(), html: None, mentions: Vec::new() }
        }
        MessageKind::Transfer => notice("A money transfer"),
        MessageKind::RedEnvelope => notice("A red envelope"),
        _ => notice("A message of a kind the bridge cannot show"),
    }
}

/// A text with `@name` mentions: the mentioned users, and HTML with a pill for each
/// `@name` found in the text.
fn text_content(
    text: &str,
    mention_ids: &[String],
    names: &HashMap<String, String>,
    pill: &dyn Fn(&RemoteUserId, &str) -> String,
) -> MessageContent {
    let mentions: Vec<RemoteUserId> = mention_ids.iter().map(|m| RemoteUserId::from(m.as_str())).collect();
    let mut html = escape(text);
    let mut replaced = false;
    for id in &mentions {
        let Some(name) = names.get(id.as_str()) else { continue };
        let needle = escape(&format!("@{name}"));
        if let Some(at) = html.find(&needle) {
            html.replace_range(at..at + needle.len(), &pill(id, name));
            replaced = true;
        }
    }
    MessageContent::Text { body: text.to_owned(), html: replaced.then_some(html), mentions }
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The MIME type for a file name's extension, for the common kinds WeChat sends.
pub fn mime_for(filename: &str) -> Option<&'static str> {
    let ext = filename.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "silk" | "sil" => "audio/silk",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "zip" => "application/zip",
        _ => return None,
    })
}

/// The WeChat text of an outgoing Matrix message: the HTML (when there are mentions) with
/// each pill written as `@name` plus WeChat's mention separator and other tags dropped;
/// otherwise the plain body.
pub fn outgoing_text(body: &str, html: Option<&str>, has_mentions: bool) -> String {
    match html {
        Some(html) if has_mentions => html_to_wechat(html),
        _ => body.to_owned(),
    }
}

fn html_to_wechat(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    let mut in_pill = false;
    // Whether the open pill starts the message: clients write `<pill>: text` there, and
    // WeChat's own mention separator takes the colon's place.
    let mut leading = false;
    while let Some(start) = rest.find('<') {
        out.push_str(&unescape(&rest[..start]));
        let Some(end) = rest[start..].find('>') else {
            out.push_str(&unescape(&rest[start..]));
            return out;
        };
        let tag = &rest[start + 1..start + end];
        let name = tag.trim_start_matches('/').split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
        match name.to_ascii_lowercase().as_str() {
            "a" if !tag.starts_with('/') && tag.contains("https://matrix.to/#/@") => {
                in_pill = true;
                leading = out.trim().is_empty();
                if !rest[start + end + 1..].starts_with('@') {
                    out.push('@');
                }
            }
            "a" if tag.starts_with('/') && in_pill => {
                in_pill = false;
                out.push(MENTION_SEPARATOR);
                let after = &rest[start + end + 1..];
                if let Some(text) = after.strip_prefix(':').filter(|_| leading) {
                    rest = text.strip_prefix(' ').unwrap_or(text);
                    continue;
                }
            }
            "br" => out.push('\n'),
            "p" | "div" if tag.starts_with('/') => out.push('\n'),
            _ => {}
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(&unescape(rest));
    out.trim_end_matches('\n').to_owned()
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::network::events::ChatRef;
    use bridge_core::network::RemoteChatId;

    fn pill(id: &RemoteUserId, name: &str) -> String {
        format!("<a href=\"https://matrix.to/#/@wechat_{id}:hs\">{name}</a>")
    }

    fn payload(kind: i32, text: &str) -> MessagePayloadResponse {
        MessagePayloadResponse {
            id: "m1".to_owned(),
            text: text.to_owned(),
            r#type: kind,
            talker_id: "wxid_zhang".to_owned(),
            listener_id: "wxid_me".to_owned(),
            timestamp_deprecated: 1_700_000_000_000,
            ..Default::default()
        }
    }

    fn convert(p: &MessagePayloadResponse, names: &HashMap<String, String>) -> Option<RemoteEvent> {
        message_event(p, &LoginId::from("wxid_me"), "wxid_me", names, &pill, None, 42)
    }

    #[test]
    fn a_dm_text_goes_to_the_talkers_chat_for_this_login() {
        let event = convert(&payload(7, "你好"), &HashMap::new()).expect("event");
        let RemoteEvent::Message { chat, sender, timestamp, parts, .. } = event else { panic!("not a message") };
        assert_eq!(chat, ChatRef { id: RemoteChatId::from("wxid_zhang"), receiver: Some(LoginId::from("wxid_me")) });
        assert!(!sender.is_from_me);
        assert_eq!(timestamp, 1_700_000_000_000);
        assert_eq!(parts[0].content, MessageContent::Text { body: "你好".to_owned(), html: None, mentions: vec![] });
    }

    #[test]
    fn a_room_text_with_a_mention_gets_a_pill() {
        let mut p = payload(7, "@李四\u{2005}开会了");
        p.room_id = "r1@chatroom".to_owned();
        p.mention_ids = vec!["wxid_li".to_owned()];
        let names = HashMap::from([("wxid_li".to_owned(), "李四".to_owned())]);
        let Some(RemoteEvent::Message { chat, parts, .. }) = convert(&p, &names) else { panic!("not a message") };
        assert_eq!(chat.receiver, None);
        let MessageContent::Text { html, mentions, .. } = &parts[0].content else { panic!("not text") };
        assert_eq!(mentions, &vec![RemoteUserId::from("wxid_li")]);
        assert_eq!(html.as_deref(), Some("<a href=\"https://matrix.to/#/@wechat_wxid_li:hs\">李四</a>\u{2005}开会了"));
    }

    #[test]
    fn media_and_other_kinds() {
        let cases: [(i32, &str, &str); 6] = [
            (6, "a.png", "image:m1"),
            (1, "报告.pdf", "file:m1"),
            (15, "v.mp4", "file:m1"),
            (2, "", "file:m1"),
            (5, "", "file:m1"),
            (11, "", ""),
        ];
        for (kind, filename, source) in cases {
            let mut p = payload(kind, "");
            p.filename = filename.to_owned();
            let Some(RemoteEvent::Message { parts, .. }) = convert(&p, &HashMap::new()) else { panic!("{kind}") };
            match &parts[0].content {
                MessageContent::Media(media) => assert_eq!(media.source, source, "{kind}"),
                MessageContent::Notice { body } => assert!(source.is_empty() && body.contains("open WeChat"), "{kind}"),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn avatar_versions_follow_the_image_or_its_address() {
        let inline = r#"{"metadata":{},"name":"a.png","size":5,"base64":"aGVsbG8=","type":1,"boxType":1}"#;
        let version = avatar_version(&FileBox::parse(inline).expect("box")).expect("a version");
        let other = inline.replace("aGVsbG8=", "aGVsbG9v");
        assert_ne!(avatar_version(&FileBox::parse(&other).expect("box")), Some(version.clone()));
        let url = |u: &str| FileBox::Url { name: String::new(), url: u.to_owned(), headers: Vec::new() };
        assert_eq!(avatar_version(&url("https://x/a.png")), avatar_version(&url("https://x/a.png")));
        assert_ne!(avatar_version(&url("https://x/a.png")), avatar_version(&url("https://x/b.png")));
        assert_eq!(avatar_version(&FileBox::QrCode("x".to_owned())), None);
        assert_eq!(avatar_version(&FileBox::Uuid { name: String::new(), uuid: "u".to_owned() }), None);
        let avatar = avatar_ref("wxid_a", version);
        assert_eq!(avatar.source.as_deref(), Some("avatar:wxid_a"));
    }

    #[test]
    fn cards_become_readable_text_or_locations() {
        let link = UrlLinkPayload {
            title: "新闻".to_owned(),
            description: "今天 <b>".to_owned(),
            url: "https://example.com/a?b=1&c=2".to_owned(),
            ..Default::default()
        };
        let place = LocationPayload { name: "天安门".to_owned(), address: "北京".to_owned(), latitude: 39.9, longitude: 116.4, accuracy: 1.0 };
        let text = |body: &str, html: Option<&str>| MessageContent::Text {
            body: body.to_owned(),
            html: html.map(str::to_owned),
            mentions: Vec::new(),
        };
        let cases = [
            (
                Card::Url(link),
                text(
                    "新闻\n今天 <b>\nhttps://example.com/a?b=1&c=2",
                    Some("<a href=\"https://example.com/a?b=1&amp;c=2\">新闻</a><br>今天 &lt;b&gt;"),
                ),
            ),
            (Card::Url(UrlLinkPayload { url: "javascript:x".to_owned(), ..Default::default() }), text("javascript:x", None)),
            (
                Card::MiniProgram(MiniProgramPayload { title: "小程序".to_owned(), description: "点我".to_owned(), ..Default::default() }),
                text("Mini program: 小程序\n点我", None),
            ),
            (
                Card::Contact { name: Some("老王".to_owned()), handle: "wang123".to_owned() },
                text("Contact card: 老王 (WeChat ID: wang123)", None),
            ),
            (Card::Contact { name: None, handle: String::new() }, text("Contact card: someone", None)),
            (
                Card::Location(place),
                MessageContent::Location { latitude: 39.9, longitude: 116.4, description: "天安门\n北京".to_owned() },
            ),
        ];
        for (card, want) in cases {
            assert_eq!(card_content(&card), want, "{card:?}");
        }
        let p = payload(14, "<xml/>");
        let card = Card::Contact { name: Some("x".to_owned()), handle: String::new() };
        let event = message_event(&p, &LoginId::from("wxid_me"), "wxid_me", &HashMap::new(), &pill, Some(&card), 1);
        let Some(RemoteEvent::Message { parts, .. }) = event else { panic!("not a message") };
        assert_eq!(parts[0].content, text("Contact card: x", None));
    }

    #[test]
    fn a_recall_deletes_the_original_and_echoes_are_from_me() {
        let mut p = payload(13, "m0");
        p.talker_id = "wxid_me".to_owned();
        p.listener_id = "wxid_zhang".to_owned();
        let Some(RemoteEvent::Delete { chat, id, sender }) = convert(&p, &HashMap::new()) else { panic!("no delete") };
        assert_eq!(chat.id.as_str(), "wxid_zhang");
        assert_eq!(id.as_str(), "m0");
        assert!(sender.is_from_me);
    }

    #[test]
    fn timestamps_in_seconds_milliseconds_or_missing() {
        let mut p = payload(7, "x");
        for (deprecated, want) in [(1_700_000_000, 1_700_000_000_000), (1_700_000_000_123, 1_700_000_000_123), (0, 42)] {
            p.timestamp_deprecated = deprecated;
            assert_eq!(timestamp_ms(&p, 42), want);
        }
        p.receive_time = Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 5_000_000 });
        assert_eq!(timestamp_ms(&p, 42), 1_800_000_000_005);
    }

    #[test]
    fn names_prefer_the_remark() {
        let cases = [("老张", "张三", "zhang3", Some("老张")), ("", "张三", "zhang3", Some("张三")), (" ", "", "zhang3", Some("zhang3")), ("", "", "", None)];
        for (alias, name, handle, want) in cases {
            assert_eq!(display_name(alias, name, handle).as_deref(), want);
        }
    }

    #[test]
    fn outgoing_pills_become_at_mentions() {
        let cases = [
            ("hi", None, false, "hi"),
            // A leading mention's colon (as clients write it) gives way to WeChat's separator.
            ("张三: hi", Some("<a href=\"https://matrix.to/#/@wechat_z:hs\">张三</a>: hi &amp; bye"), true, "@张三\u{2005}hi & bye"),
            ("x", Some("<a href=\"https://matrix.to/#/@wechat_z:hs\">张三</a>:hi"), true, "@张三\u{2005}hi"),
            ("x", Some("see <a href=\"https://matrix.to/#/@wechat_z:hs\">张三</a>: hi"), true, "see @张三\u{2005}: hi"),
            ("x", Some("<a href=\"https://matrix.to/#/@wechat_z:hs\">张三</a> hi"), true, "@张三\u{2005} hi"),
            ("x", Some("<b>bold</b> <a href=\"https://example.org\">link</a>"), true, "bold link"),
            ("x", Some("<p>a</p><p>b</p>"), true, "a\nb"),
        ];
        for (body, html, mentions, want) in cases {
            assert_eq!(outgoing_text(body, html, mentions), want, "{html:?}");
        }
    }

    #[test]
    fn event_payloads_parse() {
        let scan: ScanEvent = serde_json::from_str(r#"{"qrcode":"https://qr","status":2}"#).expect("scan");
        assert_eq!(scan, ScanEvent { qrcode: "https://qr".to_owned(), status: scan_status::WAITING });
        let login: LoginEvent = serde_json::from_str(r#"{"contactId":"wxid_me"}"#).expect("login");
        assert_eq!(login.contact_id, "wxid_me");
        let topic: RoomTopicEvent =
            serde_json::from_str(r#"{"roomId":"r@chatroom","newTopic":"新","oldTopic":"旧","changerId":"x","timestamp":1}"#)
                .expect("topic");
        assert_eq!(topic.new_topic, "新");
        let join: RoomMembersEvent = serde_json::from_str(r#"{"roomId":"r","inviteeIdList":["a"],"inviterId":"b"}"#).expect("join");
        assert_eq!(join.invitee_id_list, vec!["a".to_owned()]);
    }
}
