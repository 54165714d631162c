//! The appservice's HTTP client for the homeserver's client-server API.
//!
//! One generic sender ([`MatrixClient::send`]) turns any ruma request into an HTTP request
//! carrying the `as_token` and, for ghosts, the identity assertion `?user_id=`; it applies a
//! timeout to every attempt and retries rate limits, server errors and lost connections
//! through [`crate::backoff::Backoff`] as [`super::retry::decide`] says. The client also holds
//! the caches of registered users and joined rooms that keep [`Intent`]s off the hot path.

use std::{
    borrow::Cow,
    collections::HashSet,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use ruma::{
    api::{
        client::{account::whoami, appservice::request_ping, discovery::get_supported_versions},
        path_builder::{PathBuilder, SinglePath, VersionHistory},
        IncomingResponseExt, MatrixVersion, OutgoingBody, OutgoingRequest, SupportedVersions,
    },
    OwnedRoomId, OwnedServerName, OwnedTransactionId, OwnedUserId, RoomId, ServerName, UserId,
};
use url::Url;

use super::{
    error::MatrixError,
    intent::Intent,
    retry::{decide, retry_after_header, Decision, Outcome, RetryPolicy},
};
use crate::backoff::Backoff;

/// Timeouts and retry limits of a [`MatrixClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The timeout of one attempt of an ordinary call.
    pub request_timeout: Duration,
    /// The timeout of one attempt of a media upload or download.
    pub media_timeout: Duration,
    /// When and how often to retry.
    pub retry: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            media_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }
}

/// Per-call overrides of the client's [`ClientOptions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// The timeout of each attempt, instead of the client's `request_timeout`.
    pub timeout: Option<Duration>,
    /// The retry limits, instead of the client's.
    pub retry: Option<RetryPolicy>,
}

/// The path-builder input ruma wants for an endpoint, derived from the versions the client
/// speaks.
///
/// Implemented for both of ruma's path builders, so every ruma request can be sent.
pub trait PathInput: PathBuilder {
    /// The input for this endpoint's path builder.
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Self::Input<'_> {
        Cow::Borrowed(versions)
    }
}

impl PathInput for SinglePath {
    fn input(_versions: &SupportedVersions) -> Self::Input<'_> {}
}

/// A request the client sends without a ruma type (media, and anything ruma lacks).
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The HTTP method.
    pub method: Method,
    /// The path segments after the homeserver URL, unencoded (`["_matrix", "media", …]`).
    pub path: Vec<String>,
    /// Query parameters, unencoded.
    pub query: Vec<(String, String)>,
    /// The `Content-Type` of the body, if there is one.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// A successful answer to a [`RawRequest`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The HTTP status (below 400).
    pub status: StatusCode,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The answer's body.
    pub body: Bytes,
}

/// A request ready to be sent (and re-sent on retry).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The appservice's client for the homeserver. Cheap to clone: everything is behind an `Arc`.
#[derive(Clone)]
pub struct MatrixClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    homeserver: Url,
    server_name: OwnedServerName,
    as_token: String,
    bot: OwnedUserId,
    options: ClientOptions,
    versions: SupportedVersions,
    registered: Mutex<HashSet<OwnedUserId>>,
    joined: Mutex<HashSet<(OwnedUserId, OwnedRoomId)>>,
    /// Whether the homeserver is known to be unreachable: an outage is logged once when it
    /// starts and once when it ends, not once per attempt.
    outage: std::sync::atomic::AtomicBool,
    /// Encrypts what is sent to encrypted rooms, once end-to-bridge encryption is running.
    encryptor: std::sync::OnceLock<Arc<dyn RoomEncryptor>>,
}

/// Turns message content for an encrypted room into `m.room.encrypted` content. Set on the
/// client once ([`MatrixClient::set_encryptor`]); every [`Intent`] send goes through it.
#[async_trait::async_trait]
pub trait RoomEncryptor: Send + Sync {
    /// The `m.room.encrypted` content to send instead of `content` (of `event_type`) when
    /// `room` is encrypted; `None` when it is not.
    async fn encrypt_for_room(
        &self,
        room: &RoomId,
        event_type: &str,
        content: &ruma::serde::Raw<ruma::events::AnyMessageLikeEventContent>,
    ) -> Result<Option<ruma::serde::Raw<ruma::events::AnyMessageLikeEventContent>>, MatrixError>;
}

impl fmt::Debug for MatrixClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatrixClient")
            .field("homeserver", &self.inner.homeserver.as_str())
            .field("bot", &self.inner.bot)
            .finish_non_exhaustive()
    }
}

/// Locks a cache; a poisoned lock still holds a usable set, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MatrixClient {
    /// A client for the homeserver at `homeserver`, whose users live on `server_name`,
    /// authenticating with the registration's `as_token`; the bot is `@bot_localpart:server_name`.
    pub fn new(
        homeserver: Url,
        server_name: OwnedServerName,
        as_token: String,
        bot_localpart: &str,
    ) -> Result<MatrixClient, MatrixError> {
        Self::with_options(
            homeserver,
            server_name,
            as_token,
            bot_localpart,
            ClientOptions::default(),
        )
    }

    /// Like [`MatrixClient::new`], with explicit timeouts and retry limits.
    pub fn with_options(
        homeserver: Url,
        server_name: OwnedServerName,
        as_token: String,
        bot_localpart: &str,
        options: ClientOptions,
    ) -> Result<MatrixClient, MatrixError> {
        if homeserver.cannot_be_a_base() || !matches!(homeserver.scheme(), "http" | "https") {
            return Err(MatrixError::Config(format!(
                "homeserver url {homeserver} is not http(s)"
            )));
        }
        if as_token.is_empty() || HeaderValue::from_str(&format!("Bearer {as_token}")).is_err() {
            return Err(MatrixError::Config(
                "as_token is empty or not a valid header value".into(),
            ));
        }
        let valid_localpart = !bot_localpart.is_empty()
            && bot_localpart
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=/+-".contains(&b));
        if !valid_localpart {
            return Err(MatrixError::Config(format!(
                "invalid bot localpart {bot_localpart:?}"
            )));
        }
        let bot = UserId::parse(format!("@{bot_localpart}:{server_name}")).map_err(|e| {
            MatrixError::Config(format!("invalid bot localpart {bot_localpart:?}: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("matrix-bridges/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| MatrixError::Config(format!("cannot build the http client: {e}")))?;
        let versions = SupportedVersions {
            versions: [MatrixVersion::V1_11].into_iter().collect(),
            features: Default::default(),
        };
        Ok(MatrixClient {
            inner: Arc::new(Inner {
                http,
                homeserver,
                server_name,
                as_token,
                bot,
                options,
                versions,
                registered: Mutex::new(HashSet::new()),
                joined: Mutex::new(HashSet::new()),
                outage: std::sync::atomic::AtomicBool::new(false),
                encryptor: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Sets what encrypts sends to encrypted rooms (once; later calls are ignored).
    pub fn set_encryptor(&self, encryptor: Arc<dyn RoomEncryptor>) {
        let _ = self.inner.encryptor.set(encryptor);
    }

    /// What encrypts sends to encrypted rooms, if encryption runs.
    pub fn encryptor(&self) -> Option<&Arc<dyn RoomEncryptor>> {
        self.inner.encryptor.get()
    }

    /// The appservice's bot user.
    pub fn bot(&self) -> &UserId {
        &self.inner.bot
    }

    /// The server name of the homeserver's users.
    pub fn server_name(&self) -> &ServerName {
        &self.inner.server_name
    }

    /// The homeserver's client-server API URL.
    pub fn homeserver(&self) -> &Url {
        &self.inner.homeserver
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// An intent acting as the bot.
    pub fn bot_intent(&self) -> Intent {
        Intent::new(self.clone(), self.inner.bot.clone())
    }

    /// An intent acting as `user_id` (a ghost in the appservice's namespace, or the bot).
    pub fn intent(&self, user_id: OwnedUserId) -> Intent {
        Intent::new(self.clone(), user_id)
    }

    /// Sends a ruma request as the appservice, or as `as_user` through identity assertion,
    /// with the client's timeout and retries.
    pub async fn send<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
    ) -> Result<R::IncomingResponse, MatrixError>
    where
        R: OutgoingRequest,
        R::PathBuilder: PathInput,
    {
        self.send_with(request, as_user, SendOptions::default())
            .await
    }

    /// Like [`MatrixClient::send`], with per-call timeout and retry overrides.
    pub async fn send_with<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
        options: SendOptions,
    ) -> Result<R::IncomingResponse, MatrixError>
    where
        R: OutgoingRequest,
        R::PathBuilder: PathInput,
    {
        let prepared = self.prepare(request, as_user)?;
        let response = self.execute(prepared, options).await?;
        let mut builder = http::Response::builder().status(response.status);
        if let Some(headers) = builder.headers_mut() {
            *headers = response.headers;
        }
        let http_response = builder
            .body(response.body.as_ref())
            .map_err(|e| MatrixError::Deserialize(e.to_string()))?;
        R::IncomingResponse::try_from_http_response(http_response)
            .map_err(|e| MatrixError::Deserialize(e.to_string()))
    }

    /// Sends a request that has no ruma type, with the same authentication, identity
    /// assertion, timeout and retries as [`MatrixClient::send`].
    pub async fn send_raw(
        &self,
        request: RawRequest,
        as_user: Option<&UserId>,
        options: SendOptions,
    ) -> Result<RawResponse, MatrixError> {
        let prepared = self.prepare_raw(request, as_user)?;
        self.execute(prepared, options).await
    }

    /// Sends a raw request once and hands back the response without reading its body, so
    /// that a large download streams through instead of being held in memory. An error
    /// status becomes [`MatrixError::Api`].
    pub async fn send_raw_streaming(&self, request: RawRequest, as_user: Option<&UserId>, timeout: Duration) -> Result<reqwest::Response, MatrixError> {
        let prepared = self.prepare_raw(request, as_user)?;
        let response = self
            .inner
            .http
            .request(prepared.method.clone(), prepared.url.clone())
            .headers(prepared.headers.clone())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| if e.is_timeout() { MatrixError::Timeout(timeout) } else { MatrixError::Http(e) })?;
        let status = response.status();
        if status.as_u16() >= 400 {
            let body = response.bytes().await.unwrap_or_default();
            return Err(MatrixError::from_response(status, &body));
        }
        Ok(response)
    }

    /// Builds a raw request with authentication and identity assertion.
    fn prepare_raw(&self, request: RawRequest, as_user: Option<&UserId>) -> Result<Prepared, MatrixError> {
        let mut url = self.inner.homeserver.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| MatrixError::InvalidRequest("homeserver url has no path".into()))?;
            segments.pop_if_empty().extend(&request.path);
        }
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&request.query);
        }
        let mut headers = HeaderMap::new();
        if let Some(content_type) = &request.content_type {
            let value = HeaderValue::from_str(content_type)
                .map_err(|e| MatrixError::InvalidRequest(format!("content type: {e}")))?;
            headers.insert(header::CONTENT_TYPE, value);
        }
        self.finish(
            Prepared {
                method: request.method,
                url,
                headers,
                body: request.body,
            },
            as_user,
        )
    }

    /// `GET /_matrix/client/versions`: the versions the homeserver speaks. Also the call to
    /// poll at startup until the homeserver answers.
    pub async fn versions(&self) -> Result<get_supported_versions::Response, MatrixError> {
        self.send(get_supported_versions::Request::new(), None)
            .await
    }

    /// Who the homeserver takes the `as_token` for (`GET /account/whoami`): the bot if the
    /// registration is loaded and up to date.
    pub async fn whoami(&self) -> Result<OwnedUserId, MatrixError> {
        Ok(self.send(whoami::v3::Request::new(), None).await?.user_id)
    }

    /// `POST /_matrix/client/v1/appservice/{appservice_id}/ping`: asks the homeserver to call
    /// the bridge back, and returns how long the round trip took.
    ///
    /// When the homeserver cannot reach the bridge the error is
    /// [`MatrixError::AppserviceUnreachable`]. Not retried: the caller decides.
    pub async fn appservice_ping(
        &self,
        appservice_id: &str,
        txn_id: Option<OwnedTransactionId>,
    ) -> Result<Duration, MatrixError> {
        let mut request = request_ping::v1::Request::new(appservice_id.to_owned());
        request.transaction_id = txn_id;
        let options = SendOptions {
            timeout: None,
            retry: Some(RetryPolicy {
                max_attempts: 1,
                ..self.inner.options.retry
            }),
        };
        match self.send_with(request, None, options).await {
            Ok(response) => Ok(response.duration),
            Err(MatrixError::Api { errcode, error, .. })
                if matches!(
                    errcode.as_str(),
                    "M_CONNECTION_FAILED" | "M_CONNECTION_TIMEOUT" | "M_BAD_STATUS"
                ) =>
            {
                Err(MatrixError::AppserviceUnreachable { errcode, error })
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `user` is known to be registered (the bot always is).
    pub fn is_known_registered(&self, user: &UserId) -> bool {
        user == self.bot() || lock(&self.inner.registered).contains(user)
    }

    /// Records that `user` exists on the homeserver.
    pub fn mark_registered(&self, user: &UserId) {
        lock(&self.inner.registered).insert(user.to_owned());
    }

    /// Whether `user` is known to be joined to `room`.
    pub fn is_known_joined(&self, user: &UserId, room: &RoomId) -> bool {
        lock(&self.inner.joined).contains(&(user.to_owned(), room.to_owned()))
    }

    /// Records that `user` is joined to `room`; call it when a transaction shows the join.
    pub fn mark_joined(&self, user: &UserId, room: &RoomId) {
        lock(&self.inner.joined).insert((user.to_owned(), room.to_owned()));
    }

    /// Forgets that `user` is joined to `room`; call it when a transaction shows a leave,
    /// kick or ban of one of the appservice's users.
    pub fn mark_left(&self, user: &UserId, room: &RoomId) {
        lock(&self.inner.joined).remove(&(user.to_owned(), room.to_owned()));
    }

    /// Turns a ruma request into the HTTP request to send.
    pub(crate) fn prepare<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
    ) -> Result<Prepared, MatrixError>
    where
        R: OutgoingRequest,
        R::PathBuilder: PathInput,
    {
        let base = self.inner.homeserver.as_str();
        let input = <R::PathBuilder as PathInput>::input(&self.inner.versions);
        let (parts, body) = request
            .try_into_http_request_inner(base, input)
            .map_err(|e| MatrixError::InvalidRequest(e.to_string()))?
            .into_parts();
        let content_type = body.content_type();
        let body: Vec<u8> = body
            .try_into_buf()
            .map_err(|e| MatrixError::InvalidRequest(e.into().to_string()))?;
        let mut headers = parts.headers;
        if let Some(content_type) = content_type {
            headers.entry(header::CONTENT_TYPE).or_insert(content_type);
        }
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|e| MatrixError::InvalidRequest(format!("endpoint url: {e}")))?;
        self.finish(
            Prepared {
                method: parts.method,
                url,
                headers,
                body: Bytes::from(body),
            },
            as_user,
        )
    }

    /// Adds the appservice token and the identity assertion to a request.
    fn finish(
        &self,
        mut prepared: Prepared,
        as_user: Option<&UserId>,
    ) -> Result<Prepared, MatrixError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.inner.as_token))
            .map_err(|_| MatrixError::Config("as_token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        prepared.headers.insert(header::AUTHORIZATION, auth);
        if let Some(user) = as_user.filter(|user| *user != self.bot()) {
            prepared
                .url
                .query_pairs_mut()
                .append_pair("user_id", user.as_str());
        }
        Ok(prepared)
    }

    /// Sends a prepared request, retrying as the policy allows; error answers become
    /// [`MatrixError::Api`].
    async fn execute(
        &self,
        prepared: Prepared,
        options: SendOptions,
    ) -> Result<RawResponse, MatrixError> {
        let timeout = options
            .timeout
            .unwrap_or(self.inner.options.request_timeout);
        let policy = options.retry.unwrap_or(self.inner.options.retry);
        let idempotent = matches!(
            prepared.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let started = Instant::now();
        let mut backoff = Backoff::http();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.attempt(&prepared, timeout).await;
            let down = match &result {
                Ok(response) => response.status.is_server_error(),
                Err(_) => true,
            };
            self.note_reachability(!down, &prepared);
            let (error, decision) = match result {
                Ok(response) if response.status.as_u16() < 400 => return Ok(response),
                Ok(response) => {
                    let outcome = Outcome::Status {
                        status: response.status,
                        retry_after: retry_after_header(&response.headers),
                        body: &response.body,
                    };
                    let decision = decide(
                        &policy,
                        outcome,
                        idempotent,
                        attempt,
                        started.elapsed(),
                        backoff.next_delay(),
                    );
                    (
                        MatrixError::from_response(response.status, &response.body),
                        decision,
                    )
                }
                Err(e) => {
                    let outcome = if e.is_connect() {
                        Outcome::Connect
                    } else {
                        Outcome::Lost
                    };
                    let decision = decide(
                        &policy,
                        outcome,
                        idempotent,
                        attempt,
                        started.elapsed(),
                        backoff.next_delay(),
                    );
                    let error = if e.is_timeout() {
                        MatrixError::Timeout(timeout)
                    } else {
                        MatrixError::Http(e)
                    };
                    (error, decision)
                }
            };
            match decision {
                Decision::Retry(delay) if self.is_in_outage() => {
                    tracing::debug!(method = %prepared.method, path = prepared.url.path(), attempt, ?delay, error = %error, "homeserver call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Decision::Retry(delay) => {
                    tracing::warn!(
                        method = %prepared.method,
                        path = prepared.url.path(),
                        attempt,
                        ?delay,
                        error = %error,
                        "homeserver call failed; retrying",
                    );
                    tokio::time::sleep(delay).await;
                }
                Decision::Fail => return Err(error),
            }
        }
    }

    /// Whether the homeserver is currently known to be unreachable.
    pub fn is_in_outage(&self) -> bool {
        self.inner.outage.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records whether the last attempt reached the homeserver, logging the start and the
    /// end of an outage once each.
    fn note_reachability(&self, reached: bool, prepared: &Prepared) {
        let was_down = self.inner.outage.swap(!reached, std::sync::atomic::Ordering::Relaxed);
        match (was_down, reached) {
            (false, false) => tracing::warn!(
                method = %prepared.method,
                path = prepared.url.path(),
                homeserver = %self.inner.homeserver,
                "the homeserver does not answer; calls are retried and events wait until it is back"
            ),
            (true, true) => tracing::info!("the homeserver answers again"),
            _ => {}
        }
    }

    /// One attempt: sends the request and reads the whole answer.
    async fn attempt(
        &self,
        prepared: &Prepared,
        timeout: Duration,
    ) -> Result<RawResponse, reqwest::Error> {
        let response = self
            .inner
            .http
            .request(prepared.method.clone(), prepared.url.clone())
            .headers(prepared.headers.clone())
            .body(prepared.body.clone())
            .timeout(timeout)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        tracing::debug!(method = %prepared.method, path = prepared.url.path(), %status, "homeserver call");
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        api::client::message::send_message_event, events::room::message::RoomMessageEventContent,
        owned_room_id, owned_server_name, owned_user_id, MilliSecondsSinceUnixEpoch, TransactionId,
        UInt,
    };

    use super::*;

    fn client(homeserver: &str) -> MatrixClient {
        let url = Url::parse(homeserver).expect("url");
        MatrixClient::new(
            url,
            owned_server_name!("example.org"),
            "secret-token".into(),
            "bridgebot",
        )
        .expect("client")
    }

    #[test]
    fn requests_carry_token_identity_and_timestamp() {
        let ghost = owned_user_id!("@tg_42:example.org");
        let cases = [
            (
                "http://hs:8008",
                Some(ghost.clone()),
                Some(1_700_000_000_000_u64),
            ),
            ("http://hs:8008/", None, None),
            (
                "https://hs.example.org/prefix/",
                Some(owned_user_id!("@bridgebot:example.org")),
                None,
            ),
        ];
        for (homeserver, as_user, ts) in cases {
            let client = client(homeserver);
            let content = RoomMessageEventContent::text_plain("hi");
            let mut request = send_message_event::v3::Request::new(
                owned_room_id!("!room:example.org"),
                TransactionId::new(),
                &content,
            )
            .expect("request");
            request.timestamp =
                ts.map(|ts| MilliSecondsSinceUnixEpoch(UInt::new(ts).expect("uint")));
            let prepared = client
                .prepare(request, as_user.as_deref())
                .expect("prepare");
            assert_eq!(prepared.method, Method::PUT);
            let url = prepared.url.as_str();
            let base = homeserver.trim_end_matches('/');
            assert!(
                url.starts_with(&format!(
                    "{base}/_matrix/client/v3/rooms/!room:example.org/send/m.room.message/"
                )),
                "{url}"
            );
            let query: Vec<(String, String)> = prepared.url.query_pairs().into_owned().collect();
            let has = |k: &str, v: &str| query.iter().any(|(qk, qv)| qk == k && qv == v);
            match (&as_user, ts) {
                (Some(user), _) if user.localpart() != "bridgebot" => {
                    assert!(has("user_id", user.as_str()), "{url}")
                }
                _ => assert!(!query.iter().any(|(k, _)| k == "user_id"), "{url}"),
            }
            if let Some(ts) = ts {
                assert!(has("ts", &ts.to_string()), "{url}");
            }
            assert_eq!(
                prepared
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer secret-token")
            );
            assert_eq!(
                prepared
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                Some("application/json")
            );
            let body: serde_json::Value = serde_json::from_slice(&prepared.body).expect("json");
            assert_eq!(body["body"], "hi");
        }
    }

    #[test]
    fn bodyless_requests_have_no_content_type() {
        let prepared = client("http://hs:8008")
            .prepare(whoami::v3::Request::new(), None)
            .expect("prepare");
        assert_eq!(
            prepared.url.as_str(),
            "http://hs:8008/_matrix/client/v3/account/whoami"
        );
        assert!(prepared.body.is_empty());
    }

    #[test]
    fn constructor_rejects_bad_configuration() {
        let url = Url::parse("http://hs:8008").expect("url");
        let server = owned_server_name!("example.org");
        let bad = [
            (url.clone(), "tok".to_owned(), ""),
            (url.clone(), "tok".to_owned(), "with space"),
            (url.clone(), "tok".to_owned(), "Upper"),
            (url.clone(), String::new(), "bot"),
            (url.clone(), "tok\n".to_owned(), "bot"),
            (
                Url::parse("mailto:x@y").expect("url"),
                "tok".to_owned(),
                "bot",
            ),
        ];
        for (url, token, localpart) in bad {
            let result = MatrixClient::new(url, server.clone(), token, localpart);
            assert!(matches!(result, Err(MatrixError::Config(_))), "{localpart}");
        }
        let ok = client("http://hs:8008");
        assert_eq!(ok.bot().as_str(), "@bridgebot:example.org");
        assert!(!format!("{ok:?}").contains("secret-token"));
    }

    #[test]
    fn caches_remember_and_forget() {
        let client = client("http://hs:8008");
        let user = owned_user_id!("@tg_1:example.org");
        let room = owned_room_id!("!r:example.org");
        assert!(client.is_known_registered(client.bot()));
        assert!(!client.is_known_registered(&user));
        client.mark_registered(&user);
        assert!(client.is_known_registered(&user));
        assert!(!client.is_known_joined(&user, &room));
        client.mark_joined(&user, &room);
        assert!(client.clone().is_known_joined(&user, &room));
        client.mark_left(&user, &room);
        assert!(!client.is_known_joined(&user, &room));
    }
}
