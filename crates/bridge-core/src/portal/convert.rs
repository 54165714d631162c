//! Pure conversions between remote message contents and Matrix event contents, and the
//! small decisions the portal makes without I/O: pills in HTML, relay formatting, which
//! login speaks for a Matrix user. Everything here is unit-tested beside the code.

use ruma::{OwnedUserId, UserId};
use serde_json::{json, Map, Value};

use crate::{
    bridge::ids::GhostNamer,
    config::PermissionLevel,
    network::{
        events::{Media, MediaKind, MessageContent},
        LoginId, OutgoingContent, RemoteUserId,
    },
};

/// A Matrix event ready to send: its type and content.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MatrixContent {
    /// `m.room.message` or `m.sticker`.
    pub event_type: &'static str,
    /// The content.
    pub content: Map<String, Value>,
}

/// A media file already uploaded to the homeserver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Uploaded {
    /// The `mxc://` URI.
    pub mxc: String,
    /// The size in bytes.
    pub size: u64,
    /// The MIME type.
    pub mime: String,
    /// For an encrypted room: the `file` object (URL, key, IV, hash) that replaces `url`.
    pub file: Option<Value>,
    /// The width and height read from an image's header, used when the network gives none.
    pub dimensions: Option<(u32, u32)>,
}

/// Builds the Matrix content of one remote message part. `uploaded` is the media file for
/// [`MessageContent::Media`]; without it the part becomes a notice saying the file is missing.
/// `owner` is the login's own remote ID and its Matrix user: a mention of that account
/// mentions the user, not a ghost of their own account.
pub(crate) fn matrix_content(content: &MessageContent, uploaded: Option<&Uploaded>, ghosts: &GhostNamer, owner: Option<(&str, &ruma::UserId)>) -> MatrixContent {
    let message = |content: Value| MatrixContent { event_type: "m.room.message", content: as_map(content) };
    match content {
        MessageContent::Text { body, html, mentions } => {
            let mut c = json!({ "msgtype": "m.text", "body": body });
            if let Some(html) = html {
                c["format"] = json!("org.matrix.custom.html");
                c["formatted_body"] = json!(html);
            }
            let mut ids: Vec<String> = mentions
                .iter()
                .filter_map(|m| match owner {
                    Some((own, user)) if m.as_str() == own => Some(user.to_owned()),
                    _ => ghosts.user_id(m.as_str()),
                })
                .map(|u| u.to_string())
                .collect();
            // Pills of real Matrix users (the login's owner, written by
            // `EventSender::mention_pill` for the login's own account) mention them too.
            for user in html.as_deref().map(pill_users).unwrap_or_default() {
                if ghosts.remote_id(&user).is_none() && !ids.contains(&user.to_string()) {
                    ids.push(user.to_string());
                }
            }
            let mut seen = std::collections::HashSet::new();
            ids.retain(|id| seen.insert(id.clone()));
            c["m.mentions"] = json!({ "user_ids": ids });
            message(c)
        }
        MessageContent::Notice { body } => message(json!({ "msgtype": "m.notice", "body": body })),
        MessageContent::Location { latitude, longitude, description } => {
            let body = if description.is_empty() { format!("Location: {latitude}, {longitude}") } else { description.clone() };
            message(json!({ "msgtype": "m.location", "body": body, "geo_uri": format!("geo:{latitude},{longitude}") }))
        }
        MessageContent::Media(media) => match uploaded {
            Some(up) => media_content(media, up),
            None => message(json!({ "msgtype": "m.notice", "body": format!("{} could not be bridged", describe_media(media)) })),
        },
    }
}

/// A human description of a media part for notices (`the file "a.pdf"`).
pub(crate) fn describe_media(media: &Media) -> String {
    let kind = match media.kind {
        MediaKind::Image => "the image",
        MediaKind::Video => "the video",
        MediaKind::Audio | MediaKind::Voice => "the audio",
        MediaKind::File => "the file",
        MediaKind::Sticker => "the sticker",
    };
    if media.filename.is_empty() { kind.to_owned() } else { format!("{kind} \"{}\"", media.filename) }
}

fn media_content(media: &Media, up: &Uploaded) -> MatrixContent {
    let mut info = json!({ "mimetype": up.mime, "size": up.size });
    if let Some((w, h)) = media.dimensions.or(up.dimensions) {
        info["w"] = json!(w);
        info["h"] = json!(h);
    }
    if let Some(duration) = media.duration_ms {
        info["duration"] = json!(duration);
    }
    let filename = if media.filename.is_empty() { "file".to_owned() } else { media.filename.clone() };
    let (event_type, msgtype) = match media.kind {
        MediaKind::Image => ("m.room.message", Some("m.image")),
        MediaKind::Video => ("m.room.message", Some("m.video")),
        MediaKind::Audio | MediaKind::Voice => ("m.room.message", Some("m.audio")),
        MediaKind::File => ("m.room.message", Some("m.file")),
        MediaKind::Sticker => ("m.sticker", None),
    };
    let caption = media.caption.as_deref().filter(|c| !c.is_empty());
    let mut c = json!({ "body": caption.unwrap_or(&filename), "info": info });
    match &up.file {
        Some(file) => c["file"] = file.clone(),
        None => c["url"] = json!(up.mxc),
    }
    if let Some(msgtype) = msgtype {
        c["msgtype"] = json!(msgtype);
        c["filename"] = json!(filename);
    }
    if media.kind == MediaKind::Voice {
        c["org.matrix.msc3245.voice"] = json!({});
    }
    MatrixContent { event_type, content: as_map(c) }
}

/// Adds reply and thread relations to a content (`reply_to` and `thread_root` are Matrix
/// event IDs already looked up in the message map).
pub(crate) fn add_relations(content: &mut Map<String, Value>, reply_to: Option<&str>, thread_root: Option<&str>) {
    let relation = match (thread_root, reply_to) {
        (Some(root), reply) => json!({
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": reply.is_none(),
            "m.in_reply_to": { "event_id": reply.unwrap_or(root) },
        }),
        (None, Some(reply)) => json!({ "m.in_reply_to": { "event_id": reply } }),
        (None, None) => return,
    };
    content.insert("m.relates_to".to_owned(), relation);
}

/// Wraps new content as an edit (`m.replace`) of `target`.
pub(crate) fn edit_content(new: &Map<String, Value>, target: &str) -> Map<String, Value> {
    let mut outer = new.clone();
    let mut inner = new.clone();
    inner.remove("m.relates_to");
    inner.remove("m.mentions");
    for key in ["body", "formatted_body"] {
        if let Some(Value::String(text)) = outer.get(key) {
            let starred = format!("* {text}");
            outer.insert(key.to_owned(), Value::String(starred));
        }
    }
    outer.insert("m.new_content".to_owned(), Value::Object(inner));
    outer.insert("m.relates_to".to_owned(), json!({ "rel_type": "m.replace", "event_id": target }));
    outer
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// What a Matrix message becomes on its way out, before any download.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Incoming {
    /// Content ready to send.
    Ready(OutgoingContent),
    /// A file to download from the homeserver first.
    Media {
        /// The file's `mxc://` URI.
        mxc: String,
        /// The kind.
        kind: MediaKind,
        /// The file name.
        filename: String,
        /// The MIME type, if given.
        mime: Option<String>,
        /// A caption, when the body differs from the file name.
        caption: Option<String>,
        /// The `file` object of encrypted media (key, IV, hash), to decrypt it with.
        file: Option<Value>,
    },
}

/// Converts the content of a Matrix `m.room.message` or `m.sticker` to what the network
/// is sent. `Err` names the unsupported message type, for the error notice.
pub(crate) fn incoming_content(event_type: &str, content: &Value, ghosts: &GhostNamer) -> Result<Incoming, String> {
    let str_of = |key: &str| content.get(key).and_then(Value::as_str);
    let body = str_of("body").unwrap_or_default();
    let msgtype = if event_type == "m.sticker" { "m.sticker" } else { str_of("msgtype").unwrap_or_default() };
    match msgtype {
        "m.text" | "m.notice" | "m.emote" => {
            let html = (str_of("format") == Some("org.matrix.custom.html"))
                .then(|| str_of("formatted_body"))
                .flatten()
                .map(strip_reply_fallback_html);
            let mut mentions: Vec<RemoteUserId> = Vec::new();
            if let Some(html) = &html {
                mentions.extend(pills(html, ghosts).into_iter().map(|(_, remote)| remote));
            }
            let listed = content.pointer("/m.mentions/user_ids").and_then(Value::as_array).into_iter().flatten();
            for user in listed.filter_map(Value::as_str).filter_map(|u| UserId::parse(u).ok()) {
                if let Some(remote) = ghosts.remote_id(&user).map(RemoteUserId) {
                    if !mentions.contains(&remote) {
                        mentions.push(remote);
                    }
                }
            }
            Ok(Incoming::Ready(OutgoingContent::Text {
                body: strip_reply_fallback_text(body),
                html,
                mentions,
                emote: msgtype == "m.emote",
            }))
        }
        "m.image" | "m.video" | "m.audio" | "m.file" | "m.sticker" => {
            let file = content.get("file").filter(|f| f.is_object()).cloned();
            let url = str_of("url").or_else(|| file.as_ref().and_then(|f| f.get("url")).and_then(Value::as_str));
            let Some(mxc) = url else {
                return Err("media without a URL".to_owned());
            };
            let voice = content.get("org.matrix.msc3245.voice").is_some();
            let kind = match msgtype {
                "m.image" => MediaKind::Image,
                "m.video" => MediaKind::Video,
                "m.audio" if voice => MediaKind::Voice,
                "m.audio" => MediaKind::Audio,
                "m.sticker" => MediaKind::Sticker,
                _ => MediaKind::File,
            };
            let filename = str_of("filename").filter(|f| !f.is_empty()).unwrap_or(body).to_owned();
            let caption = (str_of("filename").is_some_and(|f| !f.is_empty() && f != body) && !body.is_empty()).then(|| body.to_owned());
            let mime = content.pointer("/info/mimetype").and_then(Value::as_str).map(str::to_owned);
            Ok(Incoming::Media { mxc: mxc.to_owned(), kind, filename, mime, caption, file })
        }
        "m.location" => {
            let geo = str_of("geo_uri").unwrap_or_default();
            parse_geo_uri(geo)
                .map(|(latitude, longitude)| Incoming::Ready(OutgoingContent::Location { latitude, longitude }))
                .ok_or_else(|| "a location without coordinates".to_owned())
        }
        "" => Err("a message without a type".to_owned()),
        other => Err(format!("{other} messages")),
    }
}

/// `geo:52.5,13.4;u=35` → `(52.5, 13.4)`.
fn parse_geo_uri(uri: &str) -> Option<(f64, f64)> {
    let coords = uri.strip_prefix("geo:")?.split(';').next()?;
    let mut parts = coords.split(',');
    let lat = parts.next()?.trim().parse().ok()?;
    let lon = parts.next()?.trim().parse().ok()?;
    Some((lat, lon))
}

/// Removes a `<mx-reply>` reply fallback from HTML.
fn strip_reply_fallback_html(html: &str) -> String {
    match (html.find("<mx-reply>"), html.find("</mx-reply>")) {
        (Some(start), Some(end)) if end > start => format!("{}{}", &html[..start], &html[end + "</mx-reply>".len()..]),
        _ => html.to_owned(),
    }
}

/// Removes the `> ` quoted reply fallback lines at the start of a plain body.
fn strip_reply_fallback_text(body: &str) -> String {
    if !body.starts_with("> ") {
        return body.to_owned();
    }
    let mut lines = body.lines().skip_while(|l| l.starts_with('>'));
    let mut out: Vec<&str> = Vec::new();
    if let Some(first) = lines.next() {
        if !first.is_empty() {
            out.push(first);
        }
    }
    out.extend(lines);
    out.join("\n")
}

/// The users pilled in Matrix HTML (`<a href="https://matrix.to/#/@user:server">`) that are
/// ghosts of this bridge, with their remote IDs, in order of appearance, without repeats.
pub(crate) fn pills(html: &str, ghosts: &GhostNamer) -> Vec<(OwnedUserId, RemoteUserId)> {
    pill_users(html)
        .into_iter()
        .filter_map(|user| ghosts.remote_id(&user).map(|remote| (user, RemoteUserId(remote))))
        .collect()
}

/// Every user pill (`https://matrix.to/#/@…`) in `html`, once each, in order.
pub(crate) fn pill_users(html: &str) -> Vec<OwnedUserId> {
    const PREFIX: &str = "https://matrix.to/#/";
    let mut found: Vec<OwnedUserId> = Vec::new();
    let mut rest = html;
    while let Some(pos) = rest.find(PREFIX) {
        rest = &rest[pos + PREFIX.len()..];
        let end = rest.find(['"', '\'', '?', '>', ' ']).unwrap_or(rest.len());
        let target = percent_encoding::percent_decode_str(&rest[..end]).decode_utf8_lossy();
        let Ok(user) = UserId::parse(target.as_ref()) else { continue };
        if !found.contains(&user) {
            found.push(user);
        }
    }
    found
}


/// Escapes text for HTML.
pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Applies `bridge.relay.message_format` to a relayed message's content: the text (or the
/// caption of a file) gets the sender's name as the format says.
pub(crate) fn relay_format(content: OutgoingContent, format: &str, name: &str, sender_id: &str) -> OutgoingContent {
    let fill = |message: &str, name: &str, id: &str| {
        format.replace("{sender_displayname}", name).replace("{sender_id}", id).replace("{message}", message)
    };
    match content {
        OutgoingContent::Text { body, html, mentions, emote } => {
            let html = html.map(|h| fill(&h, &escape_html(name), &escape_html(sender_id)));
            OutgoingContent::Text { body: fill(&body, name, sender_id), html, mentions, emote }
        }
        OutgoingContent::Media { kind, data, filename, mime, caption } => {
            let caption = Some(fill(caption.as_deref().unwrap_or_default(), name, sender_id).trim_end().to_owned());
            OutgoingContent::Media { kind, data, filename, mime, caption }
        }
        other => other,
    }
}

/// Through which login a Matrix user's event goes to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoginChoice {
    /// The sender's own login.
    Own(LoginId),
    /// The portal's relay login, speaking for the sender.
    Relay(LoginId),
    /// None: the text tells the sender why.
    Refused(String),
}

/// Picks the login for a Matrix user's event in a portal: their own login that sees this
/// chat (the receiver for a per-login portal; any of theirs for a shared one), else the
/// portal's relay login if relaying is enabled and the sender may use it.
pub(crate) fn choose_login(
    receiver: &str,
    own_logins: &[LoginId],
    relay: Option<&LoginId>,
    relay_enabled: bool,
    level: PermissionLevel,
    network: &str,
) -> LoginChoice {
    let own = if receiver.is_empty() { own_logins.first() } else { own_logins.iter().find(|l| l.as_str() == receiver) };
    if let Some(login) = own {
        return LoginChoice::Own(login.clone());
    }
    match relay {
        Some(relay) if relay_enabled && level >= PermissionLevel::Relay => LoginChoice::Relay(relay.clone()),
        _ if !own_logins.is_empty() && !receiver.is_empty() => {
            LoginChoice::Refused(format!("This chat belongs to another {network} account; your message was not sent."))
        }
        _ => LoginChoice::Refused(format!("You are not logged in to {network}, so your message was not sent. Use `login` in your management room with the bridge bot.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namer() -> GhostNamer {
        GhostNamer::new("test_{id}", "example.com")
    }

    fn text(body: &str, html: Option<&str>, mentions: &[&str]) -> MessageContent {
        MessageContent::Text {
            body: body.into(),
            html: html.map(Into::into),
            mentions: mentions.iter().map(|m| RemoteUserId::from(*m)).collect(),
        }
    }

    fn media(kind: MediaKind, caption: Option<&str>) -> MessageContent {
        MessageContent::Media(Media {
            kind,
            source: "src".into(),
            filename: "cat.png".into(),
            mime: Some("image/png".into()),
            size: Some(3),
            dimensions: Some((4, 5)),
            duration_ms: None,
            caption: caption.map(Into::into),
        })
    }

    #[test]
    fn matrix_content_from_remote_parts() {
        let up = Uploaded { mxc: "mxc://example.com/abc".into(), size: 3, mime: "image/png".into(), file: None, dimensions: None };
        let cases: Vec<(MessageContent, Option<&Uploaded>, &str, Value)> = vec![
            (text("hi", None, &[]), None, "m.room.message", json!({"msgtype": "m.text", "body": "hi", "m.mentions": {"user_ids": []}})),
            (
                text("hi bob", Some("hi <b>bob</b>"), &["Bob"]),
                None,
                "m.room.message",
                json!({"msgtype": "m.text", "body": "hi bob", "format": "org.matrix.custom.html", "formatted_body": "hi <b>bob</b>",
                       "m.mentions": {"user_ids": ["@test__bob:example.com"]}}),
            ),
            (
                text("hi me", Some(r#"hi <a href="https://matrix.to/#/@alice:example.com">me</a>"#), &["me"]),
                None,
                "m.room.message",
                json!({"msgtype": "m.text", "body": "hi me", "format": "org.matrix.custom.html",
                       "formatted_body": r#"hi <a href="https://matrix.to/#/@alice:example.com">me</a>"#,
                       "m.mentions": {"user_ids": ["@alice:example.com"]}}),
            ),
            (MessageContent::Notice { body: "n".into() }, None, "m.room.message", json!({"msgtype": "m.notice", "body": "n"})),
            (
                MessageContent::Location { latitude: 1.5, longitude: -2.0, description: String::new() },
                None,
                "m.room.message",
                json!({"msgtype": "m.location", "body": "Location: 1.5, -2", "geo_uri": "geo:1.5,-2"}),
            ),
            (
                media(MediaKind::Image, None),
                Some(&up),
                "m.room.message",
                json!({"msgtype": "m.image", "body": "cat.png", "filename": "cat.png", "url": "mxc://example.com/abc",
                       "info": {"mimetype": "image/png", "size": 3, "w": 4, "h": 5}}),
            ),
            (
                media(MediaKind::File, Some("look")),
                Some(&up),
                "m.room.message",
                json!({"msgtype": "m.file", "body": "look", "filename": "cat.png", "url": "mxc://example.com/abc",
                       "info": {"mimetype": "image/png", "size": 3, "w": 4, "h": 5}}),
            ),
            (
                media(MediaKind::Sticker, None),
                Some(&up),
                "m.sticker",
                json!({"body": "cat.png", "url": "mxc://example.com/abc", "info": {"mimetype": "image/png", "size": 3, "w": 4, "h": 5}}),
            ),
            (
                media(MediaKind::Image, None),
                None,
                "m.room.message",
                json!({"msgtype": "m.notice", "body": "the image \"cat.png\" could not be bridged"}),
            ),
        ];
        for (input, uploaded, event_type, want) in cases {
            let alice = ruma::user_id!("@alice:example.com");
            let got = matrix_content(&input, uploaded, &namer(), Some(("me", alice)));
            assert_eq!(got.event_type, event_type, "{input:?}");
            assert_eq!(Value::Object(got.content), want, "{input:?}");
        }
    }

    #[test]
    fn relations_and_edits() {
        let base = as_map(json!({"msgtype": "m.text", "body": "x"}));
        let cases = [
            (None, None, Value::Null),
            (Some("$r"), None, json!({"m.in_reply_to": {"event_id": "$r"}})),
            (None, Some("$t"), json!({"rel_type": "m.thread", "event_id": "$t", "is_falling_back": true, "m.in_reply_to": {"event_id": "$t"}})),
            (Some("$r"), Some("$t"), json!({"rel_type": "m.thread", "event_id": "$t", "is_falling_back": false, "m.in_reply_to": {"event_id": "$r"}})),
        ];
        for (reply, thread, want) in cases {
            let mut c = base.clone();
            add_relations(&mut c, reply, thread);
            assert_eq!(c.get("m.relates_to").cloned().unwrap_or(Value::Null), want);
        }
        let new = as_map(json!({"msgtype": "m.text", "body": "new", "format": "org.matrix.custom.html", "formatted_body": "<i>new</i>", "m.mentions": {}}));
        let edit = Value::Object(edit_content(&new, "$orig"));
        assert_eq!(edit["body"], "* new");
        assert_eq!(edit["formatted_body"], "* <i>new</i>");
        assert_eq!(edit["m.new_content"], json!({"msgtype": "m.text", "body": "new", "format": "org.matrix.custom.html", "formatted_body": "<i>new</i>"}));
        assert_eq!(edit["m.relates_to"], json!({"rel_type": "m.replace", "event_id": "$orig"}));
    }

    #[test]
    fn pills_are_found_for_ghosts_only() {
        let cases: [(&str, &[&str]); 5] = [
            ("no pills", &[]),
            (r#"hi <a href="https://matrix.to/#/@test__bob:example.com">Bob</a>"#, &["Bob"]),
            (r#"<a href="https://matrix.to/#/%40test_carol%3Aexample.com?via=x">C</a> and <a href='https://matrix.to/#/@test_carol:example.com'>again</a>"#, &["carol"]),
            (r#"<a href="https://matrix.to/#/@alice:example.com">A</a> <a href="https://matrix.to/#/@test_x:other.org">X</a>"#, &[]),
            (r#"<a href="https://matrix.to/#/!room:example.com">room</a><a href="https://matrix.to/#/@test_1:example.com">1</a>"#, &["1"]),
        ];
        for (html, want) in cases {
            let got: Vec<String> = pills(html, &namer()).into_iter().map(|(_, r)| r.0).collect();
            assert_eq!(got, want, "{html}");
        }
    }

    #[test]
    fn incoming_content_from_matrix() {
        let cases: Vec<(&str, Value, Result<Incoming, String>)> = vec![
            (
                "m.room.message",
                json!({"msgtype": "m.text", "body": "hi"}),
                Ok(Incoming::Ready(OutgoingContent::Text { body: "hi".into(), html: None, mentions: vec![], emote: false })),
            ),
            (
                "m.room.message",
                json!({"msgtype": "m.emote", "body": "> <@a:b> old\n\nwaves at Bob", "format": "org.matrix.custom.html",
                       "formatted_body": "<mx-reply>old</mx-reply>waves at <a href=\"https://matrix.to/#/@test__bob:example.com\">Bob</a>",
                       "m.mentions": {"user_ids": ["@test__bob:example.com", "@test_z:example.com", "@alice:example.com"]}}),
                Ok(Incoming::Ready(OutgoingContent::Text {
                    body: "waves at Bob".into(),
                    html: Some("waves at <a href=\"https://matrix.to/#/@test__bob:example.com\">Bob</a>".into()),
                    mentions: vec!["Bob".into(), "z".into()],
                    emote: true,
                })),
            ),
            (
                "m.room.message",
                json!({"msgtype": "m.image", "body": "nice", "filename": "a.png", "url": "mxc://s/m", "info": {"mimetype": "image/png"}}),
                Ok(Incoming::Media { mxc: "mxc://s/m".into(), kind: MediaKind::Image, filename: "a.png".into(), mime: Some("image/png".into()), caption: Some("nice".into()), file: None }),
            ),
            (
                "m.room.message",
                json!({"msgtype": "m.file", "body": "doc.pdf", "url": "mxc://s/d"}),
                Ok(Incoming::Media { mxc: "mxc://s/d".into(), kind: MediaKind::File, filename: "doc.pdf".into(), mime: None, caption: None, file: None }),
            ),
            (
                "m.sticker",
                json!({"body": "wave", "url": "mxc://s/w", "info": {"mimetype": "image/webp"}}),
                Ok(Incoming::Media { mxc: "mxc://s/w".into(), kind: MediaKind::Sticker, filename: "wave".into(), mime: Some("image/webp".into()), caption: None, file: None }),
            ),
            (
                "m.room.message",
                json!({"msgtype": "m.location", "body": "here", "geo_uri": "geo:52.5,13.25;u=10"}),
                Ok(Incoming::Ready(OutgoingContent::Location { latitude: 52.5, longitude: 13.25 })),
            ),
            ("m.room.message", json!({"msgtype": "m.image", "body": "x", "file": {}}), Err("media without a URL".into())),
            (
                "m.room.message",
                json!({"msgtype": "m.image", "body": "e.png", "file": {"url": "mxc://s/e", "v": "v2"}}),
                Ok(Incoming::Media { mxc: "mxc://s/e".into(), kind: MediaKind::Image, filename: "e.png".into(), mime: None, caption: None, file: Some(json!({"url": "mxc://s/e", "v": "v2"})) }),
            ),
            ("m.room.message", json!({"msgtype": "m.poll", "body": "x"}), Err("m.poll messages".into())),
        ];
        for (event_type, content, want) in cases {
            assert_eq!(incoming_content(event_type, &content, &namer()), want, "{content}");
        }
    }

    #[test]
    fn relay_formatting() {
        let format = "{sender_displayname}: {message}";
        let got = relay_format(
            OutgoingContent::Text { body: "hi".into(), html: Some("<b>hi</b>".into()), mentions: vec![], emote: false },
            format,
            "A <x>",
            "@a:example.com",
        );
        assert_eq!(got, OutgoingContent::Text { body: "A <x>: hi".into(), html: Some("A &lt;x&gt;: <b>hi</b>".into()), mentions: vec![], emote: false });
        let got = relay_format(OutgoingContent::Location { latitude: 1.0, longitude: 2.0 }, format, "A", "@a:b");
        assert_eq!(got, OutgoingContent::Location { latitude: 1.0, longitude: 2.0 });
        let got = relay_format(
            OutgoingContent::Media { kind: MediaKind::File, data: bytes::Bytes::new(), filename: "f".into(), mime: "x/y".into(), caption: None },
            "{sender_id} sent {message}",
            "A",
            "@a:b",
        );
        assert!(matches!(got, OutgoingContent::Media { caption: Some(c), .. } if c == "@a:b sent"));
    }

    #[test]
    fn choosing_the_login() {
        let l = |s: &str| LoginId::from(s);
        use PermissionLevel::*;
        /// receiver, own logins, relay, relay enabled, level → the choice (`None`: refused).
        type Case = (&'static str, Vec<LoginId>, Option<LoginId>, bool, PermissionLevel, Option<LoginChoice>);
        let cases: Vec<Case> = vec![
            ("", vec![l("a"), l("b")], None, false, User, Some(LoginChoice::Own(l("a")))),
            ("b", vec![l("a"), l("b")], None, false, User, Some(LoginChoice::Own(l("b")))),
            ("c", vec![l("a")], Some(l("c")), true, User, Some(LoginChoice::Relay(l("c")))),
            ("", vec![], Some(l("r")), true, Relay, Some(LoginChoice::Relay(l("r")))),
            ("", vec![], Some(l("r")), false, Relay, None),
            ("", vec![], Some(l("r")), true, Block, None),
            ("", vec![], None, true, User, None),
            ("c", vec![l("a")], None, true, User, None),
        ];
        for (receiver, own, relay, enabled, level, want) in cases {
            let got = choose_login(receiver, &own, relay.as_ref(), enabled, level, "Test");
            match want {
                Some(want) => assert_eq!(got, want, "{receiver} {own:?}"),
                None => assert!(matches!(got, LoginChoice::Refused(_)), "{receiver} {own:?}: {got:?}"),
            }
        }
    }
}
