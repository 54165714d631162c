//! [`TestUser`]: a minimal Matrix client-server API client for tests.
//!
//! It is written with reqwest and `serde_json` on purpose, not with `bridge-core`, so that the
//! tests look at a bridge from outside, the way a person's client would. Events come back as
//! raw JSON (`serde_json::Value`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::synapse::error_summary;

/// A logged-in Matrix user (or an appservice token) talking to the homeserver.
///
/// Cloning is cheap; clones share the HTTP client and the transaction counter.
#[derive(Clone)]
pub struct TestUser {
    http: reqwest::Client,
    base_url: String,
    user_id: String,
    access_token: String,
    device_id: Option<String>,
    password: Option<String>,
    /// Identity assertion (`?user_id=`) for appservice tokens.
    asserted_user: Option<String>,
    txn_prefix: String,
    txn_counter: Arc<AtomicU64>,
}

impl fmt::Debug for TestUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No token or password here: Debug output ends up in test logs.
        f.debug_struct("TestUser")
            .field("base_url", &self.base_url)
            .field("user_id", &self.user_id)
            .field("asserted_user", &self.asserted_user)
            .finish_non_exhaustive()
    }
}

impl TestUser {
    /// A client for `user_id` at `base_url` (such as [`crate::Synapse::url`]) with an access
    /// token.
    pub fn new(
        base_url: impl Into<String>,
        user_id: impl Into<String>,
        access_token: impl Into<String>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("build HTTP client")?;
        Ok(Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            user_id: user_id.into(),
            access_token: access_token.into(),
            device_id: None,
            password: None,
            asserted_user: None,
            txn_prefix: crate::random_lowercase(8),
            txn_counter: Arc::new(AtomicU64::new(0)),
        })
    }

    pub(crate) fn set_password(&mut self, password: impl Into<String>) {
        self.password = Some(password.into());
    }

    pub(crate) fn set_device_id(&mut self, device_id: impl Into<String>) {
        self.device_id = Some(device_id.into());
    }

    /// For an appservice token: a client acting as `user_id` (a ghost in the namespace) through
    /// identity assertion (`?user_id=` on every request).
    pub fn impersonate(&self, user_id: &str) -> Self {
        let mut other = self.clone();
        other.user_id = user_id.to_owned();
        other.asserted_user = Some(user_id.to_owned());
        other
    }

    /// The full Matrix user ID, such as `@alice-x1y2:test.localhost`.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The access token (for a bridge login flow that takes one).
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The password, when this user was registered or logged in by the harness.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The device ID of this login, if known.
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    /// The homeserver base URL this client talks to.
    pub fn homeserver_url(&self) -> &str {
        &self.base_url
    }

    /// Calls any endpoint (`path` starts with `/_matrix/...`) and returns status and JSON body
    /// (`Value::Null` when the body is not JSON), whatever the status.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url))
            .bearer_auth(&self.access_token);
        if let Some(user) = &self.asserted_user {
            request = request.query(&[("user_id", user)]);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("read body of {method} {path}"))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Calls any endpoint and returns the JSON body; a non-2xx answer is an error carrying the
    /// Matrix `errcode`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call_raw(method.clone(), path, body).await?;
        if !status.is_success() {
            anyhow::bail!(
                "{method} {path} as {}: {status} {}",
                self.user_id,
                error_summary(&value)
            );
        }
        Ok(value)
    }

    /// `GET /account/whoami`: the user ID the token (and assertion) stands for.
    pub async fn whoami(&self) -> anyhow::Result<String> {
        let body = self
            .call(Method::GET, "/_matrix/client/v3/account/whoami", None)
            .await?;
        Ok(body["user_id"]
            .as_str()
            .context("whoami without user_id")?
            .to_owned())
    }

    /// Creates a room from a `/createRoom` request body and returns its room ID.
    pub async fn create_room(&self, body: Value) -> anyhow::Result<String> {
        let body = self
            .call(Method::POST, "/_matrix/client/v3/createRoom", Some(&body))
            .await?;
        string_field(&body, "room_id")
    }

    /// Creates a direct chat (`is_direct`, trusted private preset) inviting `with`.
    pub async fn create_dm(&self, with: &str) -> anyhow::Result<String> {
        self.create_room(json!({
            "is_direct": true,
            "preset": "trusted_private_chat",
            "invite": [with],
        }))
        .await
    }

    /// Invites `user` to `room`.
    pub async fn invite(&self, room: &str, user: &str) -> anyhow::Result<()> {
        let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(room));
        self.call(Method::POST, &path, Some(&json!({"user_id": user})))
            .await?;
        Ok(())
    }

    /// Joins a room by ID or alias and returns the room ID.
    pub async fn join(&self, room_or_alias: &str) -> anyhow::Result<String> {
        let path = format!("/_matrix/client/v3/join/{}", enc(room_or_alias));
        let body = self.call(Method::POST, &path, Some(&json!({}))).await?;
        string_field(&body, "room_id")
    }

    /// Leaves `room`.
    pub async fn leave(&self, room: &str) -> anyhow::Result<()> {
        let path = format!("/_matrix/client/v3/rooms/{}/leave", enc(room));
        self.call(Method::POST, &path, Some(&json!({}))).await?;
        Ok(())
    }

    /// Kicks `user` from `room`.
    pub async fn kick(&self, room: &str, user: &str, reason: Option<&str>) -> anyhow::Result<()> {
        let path = format!("/_matrix/client/v3/rooms/{}/kick", enc(room));
        let mut body = json!({"user_id": user});
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        self.call(Method::POST, &path, Some(&body)).await?;
        Ok(())
    }

    /// Sends an `m.text` message and returns its event ID.
    pub async fn send_text(&self, room: &str, body: &str) -> anyhow::Result<String> {
        self.send_event(
            room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": body}),
        )
        .await
    }

    /// Sends a message event of `event_type` with `content`; returns its event ID.
    pub async fn send_event(
        &self,
        room: &str,
        event_type: &str,
        content: Value,
    ) -> anyhow::Result<String> {
        let txn = self.next_txn_id();
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/{txn}",
            enc(room),
            enc(event_type)
        );
        let body = self.call(Method::PUT, &path, Some(&content)).await?;
        string_field(&body, "event_id")
    }

    /// Sets a state event; returns its event ID.
    pub async fn send_state(
        &self,
        room: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> anyhow::Result<String> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            enc(room),
            enc(event_type),
            enc(state_key)
        );
        let body = self.call(Method::PUT, &path, Some(&content)).await?;
        string_field(&body, "event_id")
    }

    /// Redacts `event_id`; returns the redaction's event ID.
    pub async fn redact(
        &self,
        room: &str,
        event_id: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<String> {
        let txn = self.next_txn_id();
        let path = format!(
            "/_matrix/client/v3/rooms/{}/redact/{}/{txn}",
            enc(room),
            enc(event_id)
        );
        let body = match reason {
            Some(reason) => json!({"reason": reason}),
            None => json!({}),
        };
        let body = self.call(Method::PUT, &path, Some(&body)).await?;
        string_field(&body, "event_id")
    }

    /// The latest `limit` timeline events of `room`, newest first (`/messages?dir=b`).
    pub async fn messages(&self, room: &str, limit: u32) -> anyhow::Result<Vec<Value>> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}",
            enc(room)
        );
        let body = self.call(Method::GET, &path, None).await?;
        Ok(body["chunk"].as_array().cloned().unwrap_or_default())
    }

    /// One `/sync` with `timeout=0`, from `since` if given; returns the whole response.
    pub async fn sync_once(&self, since: Option<&str>) -> anyhow::Result<Value> {
        let mut path = "/_matrix/client/v3/sync?timeout=0".to_owned();
        if let Some(since) = since {
            path.push_str("&since=");
            path.push_str(&enc(since));
        }
        self.call(Method::GET, &path, None).await
    }

    /// The IDs of the rooms this user is invited to (from a full sync).
    pub async fn invites(&self) -> anyhow::Result<Vec<String>> {
        let body = self.sync_once(None).await?;
        let mut rooms: Vec<String> = body["rooms"]["invite"]
            .as_object()
            .map(|rooms| rooms.keys().cloned().collect())
            .unwrap_or_default();
        rooms.sort();
        Ok(rooms)
    }

    /// The IDs of the rooms this user has joined.
    pub async fn joined_rooms(&self) -> anyhow::Result<Vec<String>> {
        let body = self
            .call(Method::GET, "/_matrix/client/v3/joined_rooms", None)
            .await?;
        Ok(string_array(&body["joined_rooms"]))
    }

    /// The user IDs of the joined members of `room`, sorted.
    pub async fn joined_members(&self, room: &str) -> anyhow::Result<Vec<String>> {
        let path = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room));
        let body = self.call(Method::GET, &path, None).await?;
        let mut members: Vec<String> = body["joined"]
            .as_object()
            .map(|joined| joined.keys().cloned().collect())
            .unwrap_or_default();
        members.sort();
        Ok(members)
    }

    /// The content of the state event `(event_type, state_key)` in `room`, or `None` if there
    /// is none.
    pub async fn room_state(
        &self,
        room: &str,
        event_type: &str,
        state_key: &str,
    ) -> anyhow::Result<Option<Value>> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            enc(room),
            enc(event_type),
            enc(state_key)
        );
        let (status, body) = self.call_raw(Method::GET, &path, None).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(body)),
            status => anyhow::bail!("GET {path}: {status} {}", error_summary(&body)),
        }
    }

    /// The global profile (`displayname`, `avatar_url`) of `user`.
    pub async fn profile(&self, user: &str) -> anyhow::Result<Value> {
        let path = format!("/_matrix/client/v3/profile/{}", enc(user));
        self.call(Method::GET, &path, None).await
    }

    /// Sets this user's display name.
    pub async fn set_display_name(&self, name: &str) -> anyhow::Result<()> {
        let path = format!(
            "/_matrix/client/v3/profile/{}/displayname",
            enc(&self.user_id)
        );
        self.call(Method::PUT, &path, Some(&json!({"displayname": name})))
            .await?;
        Ok(())
    }

    /// Sets this user's avatar to an `mxc://` URI.
    pub async fn set_avatar(&self, mxc: &str) -> anyhow::Result<()> {
        let path = format!("/_matrix/client/v3/profile/{}/avatar_url", enc(&self.user_id));
        self.call(Method::PUT, &path, Some(&json!({"avatar_url": mxc}))).await?;
        Ok(())
    }

    /// Uploads media and returns its `mxc://` URI.
    pub async fn upload_media(&self, content_type: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
        let mut request = self
            .http
            .post(format!("{}/_matrix/media/v3/upload", self.base_url))
            .bearer_auth(&self.access_token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        if let Some(user) = &self.asserted_user {
            request = request.query(&[("user_id", user)]);
        }
        let response = request.send().await.context("upload media")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("upload media: {status} {}", error_summary(&body));
        }
        string_field(&body, "content_uri")
    }

    /// Downloads the media behind an `mxc://server/id` URI (authenticated media endpoint).
    pub async fn download_media(&self, mxc: &str) -> anyhow::Result<Vec<u8>> {
        let (server, media_id) = mxc
            .strip_prefix("mxc://")
            .and_then(|rest| rest.split_once('/'))
            .with_context(|| format!("not an mxc URI: {mxc}"))?;
        let url = format!(
            "{}/_matrix/client/v1/media/download/{}/{}",
            self.base_url,
            enc(server),
            enc(media_id)
        );
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.access_token)
            .send()
            .await
            .context("download media")?;
        let status = response.status();
        let bytes = response.bytes().await.context("read media")?;
        if !status.is_success() {
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            anyhow::bail!("download {mxc}: {status} {}", error_summary(&body));
        }
        Ok(bytes.to_vec())
    }

    /// Polls the newest 50 events of `room` until one matches `predicate`, and returns it;
    /// fails after `timeout`. Errors (such as 403 before this user has joined) count as
    /// "not yet".
    pub async fn wait_for_event<P>(
        &self,
        room: &str,
        predicate: P,
        timeout: Duration,
    ) -> anyhow::Result<Value>
    where
        P: Fn(&Value) -> bool,
    {
        let what = format!("a matching event in {room} as {}", self.user_id);
        crate::wait_until(timeout, &what, || async {
            let events = self.messages(room, 50).await?;
            Ok(events.into_iter().find(|event| predicate(event)))
        })
        .await
    }

    /// Joins every invite this user gets until one of their rooms is the portal whose
    /// `m.bridge` state key is `key` (`<protocol>://<receiver>/<chat>`); returns that room.
    /// Reads incremental syncs from the start: a repeated full sync may come from Synapse's
    /// cache and miss new invites.
    pub async fn wait_for_bridged_room(&self, key: &str, timeout: Duration) -> anyhow::Result<String> {
        let since = std::sync::Mutex::new(None::<String>);
        crate::wait_until(timeout, &format!("the room bridged as {key}"), || async {
            let previous = since.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let sync = self.sync_once(previous.as_deref()).await?;
            if let Some(next) = sync["next_batch"].as_str() {
                *since.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(next.to_owned());
            }
            let invited: Vec<String> = sync["rooms"]["invite"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
            for room in invited {
                self.join(&room).await?;
            }
            for room in self.joined_rooms().await? {
                if self.room_state(&room, "m.bridge", key).await.ok().flatten().is_some() {
                    return Ok(Some(room));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Polls until `user`'s membership in `room` is `membership` (`join`, `invite`, `leave`,
    /// `ban`) and returns that member event's content; fails after `timeout`.
    pub async fn wait_for_membership(
        &self,
        room: &str,
        user: &str,
        membership: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let what = format!("{user} to have membership {membership} in {room}");
        crate::wait_until(timeout, &what, || async {
            let content = self.room_state(room, "m.room.member", user).await?;
            Ok(content.filter(|content| content["membership"] == membership))
        })
        .await
    }

    /// Polls until this user has an invite to some room not in `ignore`; returns its room ID.
    pub async fn wait_for_invite(
        &self,
        ignore: &[String],
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let what = format!("an invite for {}", self.user_id);
        crate::wait_until(timeout, &what, || async {
            let invites = self.invites().await?;
            Ok(invites.into_iter().find(|room| !ignore.contains(room)))
        })
        .await
    }

    fn next_txn_id(&self) -> String {
        let n = self.txn_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.txn_prefix)
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn string_field(body: &Value, field: &str) -> anyhow::Result<String> {
    body[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("response without {field}: {body}"))
}

fn string_array(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        let cases = [
            ("!abc:test.localhost", "%21abc%3Atest.localhost"),
            ("#alias:hs", "%23alias%3Ahs"),
            ("$event/id+x", "%24event%2Fid%2Bx"),
            ("m.room.message", "m.room.message"),
            ("", ""),
            ("é", "%C3%A9"),
        ];
        for (input, expected) in cases {
            assert_eq!(enc(input), expected, "{input}");
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let user = TestUser::new("http://127.0.0.1:1/", "@a:hs", "syt_secret").expect("client");
        let text = format!("{user:?}");
        assert!(!text.contains("syt_secret"), "{text}");
        assert_eq!(user.homeserver_url(), "http://127.0.0.1:1");
    }

    #[test]
    fn transaction_ids_are_unique_across_clones() {
        let user = TestUser::new("http://127.0.0.1:1", "@a:hs", "t").expect("client");
        let clone = user.impersonate("@ghost:hs");
        let ids = [user.next_txn_id(), clone.next_txn_id(), user.next_txn_id()];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_eq!(clone.user_id(), "@ghost:hs");
    }
}
