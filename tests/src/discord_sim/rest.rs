//! The Discord simulator's REST API under `/api/v10` (one handler that records each call
//! and routes on method and path segments) and the attachment files it serves itself.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::state::{Channel, Data, File, Inner, Recorded, Webhook};
use super::Author;

/// A Discord-style error response.
fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, axum::Json(json!({ "code": code, "message": message }))).into_response()
}

fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn unknown(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, 10003, &format!("Unknown {what}"))
}

/// `GET /attachments/{id}/{name}`.
pub(crate) async fn attachment(State(inner): State<Arc<Inner>>, uri: Uri) -> Response {
    let id = uri.path().split('/').nth(2).and_then(|s| s.parse::<u64>().ok());
    let file = id.and_then(|id| inner.lock().files.get(&id).cloned());
    match file {
        Some(file) => ([(header::CONTENT_TYPE, file.content_type)], file.bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A 1×1 transparent PNG, served as every user's avatar.
pub(crate) const AVATAR_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// `GET /avatars/{user}/{hash}.png` (Discord's CDN path, which the bridge rewrites to the
/// simulator in tests).
pub(crate) async fn avatar() -> Response {
    ([(header::CONTENT_TYPE, "image/png")], AVATAR_PNG).into_response()
}

/// Every `/api/v10/...` call.
pub(crate) async fn api(State(inner): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().strip_prefix("/api/v10").unwrap_or(uri.path()).to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (json_body, files) = match content_type.split_once("boundary=") {
        Some((_, boundary)) if content_type.starts_with("multipart/") => parse_multipart(&body, boundary.trim_matches('"')),
        _ => (serde_json::from_slice(&body).unwrap_or(Value::Null), Vec::new()),
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bot ").unwrap_or(v).to_owned());
    let mut data = inner.lock();
    let bot = token.and_then(|t| data.tokens.get(&t).copied());
    data.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: json_body.clone(),
        files: files.iter().map(|(field, f)| (field.clone(), f.filename.clone(), f.bytes.clone())).collect(),
        bot,
    });
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments.first() == Some(&"gateway") {
        let url = format!("ws://127.0.0.1:{}/gateway", data.gateway_port);
        return ok(json!({
            "url": url,
            "shards": 1,
            "session_start_limit": { "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1 },
        }));
    }
    if segments.first() == Some(&"webhooks") {
        return webhook_call(&inner, &mut data, &method, &segments, &query, json_body, files);
    }
    let Some(bot) = bot else {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    };
    route(&inner, &mut data, bot, &method, &segments, json_body, files)
}

fn route(
    inner: &Inner,
    data: &mut Data,
    bot: u64,
    method: &Method,
    segments: &[&str],
    body: Value,
    files: Vec<(String, File)>,
) -> Response {
    let num = |i: usize| segments.get(i).and_then(|s| s.parse::<u64>().ok());
    match (method.as_str(), segments) {
        ("GET", ["users", "@me"]) => data.users.get(&bot).map_or_else(|| unknown("User"), |u| ok(u.json())),
        ("GET", ["users", "@me", "guilds"]) => ok(Value::Array(
            data.guilds
                .values()
                .filter(|g| g.members.contains(&bot))
                .map(|g| json!({ "id": g.id.to_string(), "name": g.name, "icon": null, "owner": false, "permissions": "1071698660929", "features": [] }))
                .collect(),
        )),
        ("GET", ["users", _]) => num(1).and_then(|id| data.users.get(&id)).map_or_else(|| unknown("User"), |u| ok(u.json())),
        ("GET", ["guilds", _]) => match num(1).and_then(|g| data.guilds.get(&g)) {
            Some(g) if g.members.contains(&bot) => ok(g.json()),
            _ => unknown("Guild"),
        },
        ("GET", ["guilds", _, "channels"]) => match num(1).and_then(|g| data.guilds.get(&g)) {
            Some(g) if g.members.contains(&bot) => {
                ok(Value::Array(data.channels.values().filter(|c| c.guild == Some(g.id)).map(|c| c.json(data)).collect()))
            }
            _ => unknown("Guild"),
        },
        ("GET", ["guilds", _, "members", _]) => {
            let member = num(1)
                .and_then(|g| data.guilds.get(&g))
                .and_then(|g| num(3).filter(|u| g.members.contains(u)).and_then(|u| data.users.get(&u)).map(|u| g.member_json(u)));
            member.map_or_else(|| unknown("Member"), ok)
        }
        ("GET", ["channels", _]) => match num(1).filter(|c| data.can_see(bot, *c)).and_then(|c| data.channels.get(&c)) {
            Some(c) => ok(c.json(data)),
            None => unknown("Channel"),
        },
        (_, ["channels", _, ..]) => {
            let Some(channel) = num(1).filter(|c| data.can_see(bot, *c)) else {
                return unknown("Channel");
            };
            channel_route(inner, data, bot, channel, method, &segments[2..], body, files)
        }
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}

#[allow(clippy::too_many_arguments)]
fn channel_route(
    inner: &Inner,
    data: &mut Data,
    bot: u64,
    channel: u64,
    method: &Method,
    rest: &[&str],
    body: Value,
    files: Vec<(String, File)>,
) -> Response {
    let message = rest.get(1).and_then(|s| s.parse::<u64>().ok());
    match (method.as_str(), rest) {
        ("GET", ["messages"]) => ok(Value::Array(data.messages.get(&channel).cloned().unwrap_or_default().into_iter().rev().collect())),
        ("POST", ["messages"]) => {
            let content = body["content"].as_str().unwrap_or("").to_owned();
            if content.chars().count() > 2000 {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body: content must be 2000 or fewer in length.");
            }
            if content.is_empty() && files.is_empty() {
                return error(StatusCode::BAD_REQUEST, 50006, "Cannot send an empty message");
            }
            let reply = body["message_reference"]["message_id"].as_str().and_then(|s| s.parse().ok());
            ok(super::create_message(inner, data, channel, Author::User(bot), &content, files, reply))
        }
        ("PATCH", ["messages", _]) => {
            let Some(id) = message else { return unknown("Message") };
            match data.message_mut(channel, id) {
                Some(m) if m["author"]["id"] == json!(bot.to_string()) => {
                    if let Some(content) = body["content"].as_str() {
                        m["content"] = json!(content);
                    }
                    m["edited_timestamp"] = json!(super::state::iso8601(super::state::now_ms()));
                    let m = m.clone();
                    data.dispatch(Some(channel), "MESSAGE_UPDATE", &m);
                    ok(m)
                }
                Some(_) => error(StatusCode::FORBIDDEN, 50005, "Cannot edit a message authored by another user"),
                None => unknown("Message"),
            }
        }
        ("DELETE", ["messages", _]) => {
            let Some(id) = message else { return unknown("Message") };
            delete_message(data, channel, id)
        }
        ("PUT" | "DELETE", ["messages", _, "reactions", emoji, "@me"]) => {
            let Some(id) = message else { return unknown("Message") };
            if data.message_mut(channel, id).is_none() {
                return unknown("Message");
            }
            let event = if method == Method::PUT { "MESSAGE_REACTION_ADD" } else { "MESSAGE_REACTION_REMOVE" };
            let payload = super::reaction_json(data, channel, id, bot, &percent_encoding::percent_decode_str(emoji).decode_utf8_lossy());
            data.dispatch(Some(channel), event, &payload);
            no_content()
        }
        ("POST", ["typing"]) => {
            let payload = json!({
                "channel_id": channel.to_string(),
                "guild_id": data.guild_of(channel).map(|g| g.id.to_string()),
                "user_id": bot.to_string(),
                "timestamp": super::state::now_ms() / 1000,
            });
            data.dispatch(Some(channel), "TYPING_START", &payload);
            no_content()
        }
        ("POST", ["messages", _, "threads"]) => {
            let Some(id) = message else { return unknown("Message") };
            if data.message_mut(channel, id).is_none() {
                return unknown("Message");
            }
            if data.channels.contains_key(&id) {
                return error(StatusCode::BAD_REQUEST, 160004, "A thread has already been created for this message");
            }
            let name = body["name"].as_str().unwrap_or("thread").to_owned();
            let thread = super::start_thread(data, channel, id, &name);
            data.channels.get(&thread).map_or_else(|| unknown("Channel"), |c| ok(c.json(data)))
        }
        ("GET", ["webhooks"]) => ok(Value::Array(
            data.webhooks.values().filter(|w| w.channel == channel).map(|w| w.json(data)).collect(),
        )),
        ("POST", ["webhooks"]) => {
            if data.channels.get(&channel).is_some_and(|c: &Channel| c.webhooks_forbidden || c.guild.is_none()) {
                return error(StatusCode::FORBIDDEN, 50013, "Missing Permissions");
            }
            let name = body["name"].as_str().unwrap_or("").to_owned();
            let lower = name.to_lowercase();
            if name.is_empty() || lower.contains("discord") || lower.contains("clyde") {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body: name");
            }
            if data.webhooks.values().filter(|w| w.channel == channel).count() >= 15 {
                return error(StatusCode::BAD_REQUEST, 30007, "Maximum number of webhooks reached (15)");
            }
            let id = inner.snowflake();
            let webhook = Webhook { id, token: format!("whtoken-{id}"), channel, name, creator: bot };
            let value = webhook.json(data);
            data.webhooks.insert(id, webhook);
            ok(value)
        }
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}

fn delete_message(data: &mut Data, channel: u64, id: u64) -> Response {
    let Some(list) = data.messages.get_mut(&channel) else { return unknown("Message") };
    let before = list.len();
    list.retain(|m| m["id"] != json!(id.to_string()));
    if list.len() == before {
        return unknown("Message");
    }
    let payload = json!({
        "id": id.to_string(),
        "channel_id": channel.to_string(),
        "guild_id": data.guild_of(channel).map(|g| g.id.to_string()),
    });
    data.dispatch(Some(channel), "MESSAGE_DELETE", &payload);
    no_content()
}

/// `/webhooks/{id}/{token}[/messages/{m}]`: no bot token, the webhook's own token.
fn webhook_call(
    inner: &Inner,
    data: &mut Data,
    method: &Method,
    segments: &[&str],
    query: &str,
    body: Value,
    files: Vec<(String, File)>,
) -> Response {
    let id = segments.get(1).and_then(|s| s.parse::<u64>().ok());
    let Some(webhook) = id.and_then(|id| data.webhooks.get(&id)).cloned() else {
        return error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
    };
    if segments.get(2) != Some(&webhook.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
    }
    // `?thread_id=` sends into (or edits in) a thread of the webhook's channel.
    let thread = query.split('&').find_map(|p| p.strip_prefix("thread_id=")).map(|t| t.parse::<u64>().ok());
    let target = match thread {
        None => webhook.channel,
        Some(Some(t)) if data.channels.get(&t).is_some_and(|c| c.thread_parent == Some(webhook.channel)) => t,
        Some(_) => return error(StatusCode::BAD_REQUEST, 10003, "Unknown Channel"),
    };
    let message = segments.get(4).and_then(|s| s.parse::<u64>().ok());
    match (method.as_str(), &segments[3..]) {
        ("POST", []) => {
            let content = body["content"].as_str().unwrap_or("").to_owned();
            if content.chars().count() > 2000 {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body: content must be 2000 or fewer in length.");
            }
            if content.is_empty() && files.is_empty() {
                return error(StatusCode::BAD_REQUEST, 50006, "Cannot send an empty message");
            }
            let username = body["username"].as_str().map_or_else(|| webhook.name.clone(), str::to_owned);
            let avatar = body["avatar_url"].as_str().map(str::to_owned);
            let author = Author::Webhook { id: webhook.id, username, avatar };
            let value = super::create_message(inner, data, target, author, &content, files, None);
            if query.split('&').any(|p| p == "wait=true") {
                ok(value)
            } else {
                no_content()
            }
        }
        ("PATCH", ["messages", _]) => {
            let Some(id) = message else { return unknown("Message") };
            match data.message_mut(target, id) {
                Some(m) if m["webhook_id"] == json!(webhook.id.to_string()) => {
                    if let Some(content) = body["content"].as_str() {
                        m["content"] = json!(content);
                    }
                    m["edited_timestamp"] = json!(super::state::iso8601(super::state::now_ms()));
                    let m = m.clone();
                    data.dispatch(Some(target), "MESSAGE_UPDATE", &m);
                    ok(m)
                }
                _ => unknown("Message"),
            }
        }
        ("DELETE", ["messages", _]) => {
            let Some(id) = message else { return unknown("Message") };
            delete_message(data, target, id)
        }
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}


/// Splits a multipart body into its `payload_json` and its files.
fn parse_multipart(body: &[u8], boundary: &str) -> (Value, Vec<(String, File)>) {
    let delimiter = format!("--{boundary}");
    let mut payload = Value::Null;
    let mut files = Vec::new();
    for part in split_bytes(body, delimiter.as_bytes()) {
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let Some(split) = find(part, b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&part[..split]).to_string();
        let content = &part[split + 4..];
        let content = content.strip_suffix(b"\r\n").unwrap_or(content);
        let param = |name: &str| {
            let key = format!("{name}=\"");
            head.find(&key).and_then(|start| {
                let rest = &head[start + key.len()..];
                rest.find('"').map(|end| rest[..end].to_owned())
            })
        };
        let Some(name) = param("name") else { continue };
        if name == "payload_json" {
            payload = serde_json::from_slice(content).unwrap_or(Value::Null);
        } else {
            let content_type = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: ").or_else(|| l.strip_prefix("content-type: ")))
                .unwrap_or("application/octet-stream")
                .trim()
                .to_owned();
            let filename = param("filename").unwrap_or_else(|| name.clone());
            files.push((name, File { filename, content_type, bytes: content.to_vec() }));
        }
    }
    (payload, files)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split_bytes<'a>(body: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(pos) = find(rest, delimiter) {
        if pos > 0 {
            parts.push(&rest[..pos]);
        }
        rest = &rest[pos + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
    }
    parts
}
