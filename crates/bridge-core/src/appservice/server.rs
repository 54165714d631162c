//! The HTTP server the homeserver talks to (`/_matrix/app/v1/...`), and the health endpoint.
//!
//! Handlers go from a request to a response with nothing in between but the token check:
//! transactions are stored durably by the [`Inbox`] and answered at once, so the
//! homeserver never waits on a remote network.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use ruma::{OwnedRoomAliasId, OwnedUserId};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{inbox::Inbox, AppserviceHandler};
use crate::metrics::{Gauges, Metrics, TxnOutcome};

/// Shared state of the appservice server.
#[derive(Clone)]
pub struct ServerState {
    hs_token: Arc<str>,
    inbox: Inbox,
    handler: Arc<dyn AppserviceHandler>,
    metrics: Arc<Metrics>,
    live_gauges: Arc<dyn Fn(&mut Gauges) + Send + Sync>,
}

impl ServerState {
    /// State for a server that accepts `hs_token`, stores into `inbox`, answers queries
    /// through `handler` and counts into `metrics`; `live_gauges` fills in what the running
    /// bridge has (logins, portal actors).
    pub fn new(
        hs_token: &str,
        inbox: Inbox,
        handler: Arc<dyn AppserviceHandler>,
        metrics: Arc<Metrics>,
        live_gauges: Arc<dyn Fn(&mut Gauges) + Send + Sync>,
    ) -> Self {
        Self { hs_token: hs_token.into(), inbox, handler, metrics, live_gauges }
    }
}

/// Builds the router with every appservice route, the health endpoint and a body limit
/// of `max_body_bytes`.
pub fn router(state: ServerState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/_matrix/app/v1/transactions/{txn_id}", put(put_transaction))
        .route("/transactions/{txn_id}", put(put_transaction))
        .route("/_matrix/app/v1/users/{user_id}", get(get_user))
        .route("/users/{user_id}", get(get_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(get_alias))
        .route("/rooms/{alias}", get(get_alias))
        .route("/_matrix/app/v1/ping", post(post_ping))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(unknown_endpoint)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::map_response(matrix_shaped))
        .with_state(state)
}

/// Gives every error answer the Matrix shape (`{"errcode", "error"}`), including the ones
/// the HTTP framework writes itself in plain text: a body over the limit (413), a method the
/// route does not take (405), a path that does not decode (400).
async fn matrix_shaped(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (errcode, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("M_TOO_LARGE", "the request body is too large (appservice.max_body_bytes)"),
        StatusCode::URI_TOO_LONG => ("M_TOO_LARGE", "the request URI is too long"),
        StatusCode::METHOD_NOT_ALLOWED => ("M_UNRECOGNIZED", "this endpoint does not take this method"),
        StatusCode::NOT_FOUND => ("M_NOT_FOUND", "not found"),
        StatusCode::BAD_REQUEST => ("M_INVALID_PARAM", "the request path or query could not be read"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("M_NOT_JSON", "the request body must be JSON"),
        s if s.is_server_error() => ("M_UNKNOWN", "internal error"),
        _ => ("M_UNKNOWN", "the request was refused"),
    };
    matrix_error(status, errcode, message)
}

/// Serves `router` on an already bound `listener` until `shutdown` is cancelled, then
/// finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "appservice server listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// A Matrix-style error response: `{"errcode": ..., "error": ...}` with a status.
pub(crate) fn matrix_error(status: StatusCode, errcode: &str, message: &str) -> Response {
    (status, Json(json!({ "errcode": errcode, "error": message }))).into_response()
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// Checks the homeserver's token from the `Authorization` header or, for older
/// homeservers, the `access_token` query parameter.
fn check_token(state: &ServerState, headers: &HeaderMap, query: &TokenQuery) -> Result<(), Box<Response>> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = from_header.or(query.access_token.as_deref()) else {
        return Err(Box::new(matrix_error(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "missing hs_token: the homeserver must send the registration's hs_token",
        )));
    };
    if !constant_time_eq(token.as_bytes(), state.hs_token.as_bytes()) {
        tracing::warn!("rejected a request with a wrong hs_token");
        return Err(Box::new(matrix_error(
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "wrong hs_token: the registration file loaded by the homeserver does not match this bridge's config",
        )));
    }
    Ok(())
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The parts of a transaction body the bridge reads.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedTransaction {
    /// Timeline and state events, each with its event ID and its JSON text as stored.
    pub events: Vec<(String, String)>,
    /// The `(sender, type)` of each event in `events`, in the same order.
    pub heads: Vec<(String, String)>,
    /// Ephemeral events (stable and MSC2409 keys).
    pub ephemeral: Vec<Value>,
    /// What the transaction carries for the bot's encryption device.
    pub crypto: crate::crypto::TransactionCrypto,
}

/// A transaction body as read: events are kept as their raw JSON text (no value tree of
/// a large transaction is built), with only the fields the inbox needs looked at.
#[derive(Deserialize)]
struct RawTransaction<'a> {
    #[serde(borrow, default)]
    events: Option<Vec<&'a serde_json::value::RawValue>>,
    #[serde(borrow, default)]
    ephemeral: Option<Vec<&'a serde_json::value::RawValue>>,
    #[serde(borrow, default, rename = "de.sorunome.msc2409.ephemeral")]
    unstable_ephemeral: Option<Vec<&'a serde_json::value::RawValue>>,
    #[serde(default, rename = "de.sorunome.msc2409.to_device")]
    unstable_to_device: Option<Vec<Value>>,
    #[serde(default, rename = "to_device")]
    to_device: Option<Vec<Value>>,
    #[serde(default, rename = "org.matrix.msc3202.device_lists")]
    device_lists: Option<DeviceLists>,
    #[serde(default, rename = "org.matrix.msc3202.device_one_time_keys_count")]
    otk_counts: Option<Value>,
    #[serde(default, rename = "org.matrix.msc3202.device_one_time_key_counts")]
    otk_counts_alt: Option<Value>,
    #[serde(default, rename = "org.matrix.msc3202.device_unused_fallback_key_types")]
    fallback_types: Option<Value>,
}

/// MSC3202's device-list changes.
#[derive(Deserialize, Default)]
struct DeviceLists {
    #[serde(default)]
    changed: Vec<String>,
    #[serde(default)]
    left: Vec<String>,
}

/// The fields of an event the inbox checks.
#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(borrow, default)]
    event_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, rename = "type")]
    kind: Option<Value>,
    #[serde(default)]
    room_id: Option<Value>,
    #[serde(default)]
    sender: Option<Value>,
}

/// Parses a transaction body, telling malformed JSON (`M_NOT_JSON`) from JSON of the
/// wrong shape (`M_BAD_JSON`). Public for the fuzz targets (`fuzz/`).
pub fn parse_transaction(body: &[u8]) -> Result<ParsedTransaction, (&'static str, String)> {
    // Syntax first, so that broken JSON is told apart from a wrong shape.
    let raw: &serde_json::value::RawValue = serde_json::from_slice(body)
        .map_err(|e| ("M_NOT_JSON", format!("transaction body is not valid JSON: {e}")))?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(("M_BAD_JSON", "transaction body must be a JSON object".to_owned()));
    }
    let txn: RawTransaction<'_> = serde_json::from_str(raw.get())
        .map_err(|e| ("M_BAD_JSON", format!("`events` and `ephemeral` must be arrays: {e}")))?;
    let mut parsed = ParsedTransaction::default();
    for (i, event) in txn.events.unwrap_or_default().into_iter().enumerate() {
        let head: Option<EventHead<'_>> = serde_json::from_str(event.get()).ok();
        let id = head.as_ref().and_then(|h| h.event_id.as_deref()).filter(|id| id.starts_with('$')).map(str::to_owned);
        let string = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_owned);
        let fields = head.as_ref().and_then(|h| Some((string(&h.sender)?, string(&h.kind)?, string(&h.room_id)?)));
        match (id, fields) {
            (Some(id), Some((sender, kind, _room))) => {
                parsed.events.push((id, event.get().to_owned()));
                parsed.heads.push((sender, kind));
            }
            _ => {
                return Err((
                    "M_BAD_JSON",
                    format!("event {i} lacks a string event_id, type, room_id or sender"),
                ))
            }
        }
    }
    // Homeservers may send the same events under both the stable and the MSC2409 key:
    // take the stable list when present, else the unstable one, never both.
    let ephemeral = txn.ephemeral.or(txn.unstable_ephemeral).unwrap_or_default();
    parsed.ephemeral = ephemeral.into_iter().filter_map(|e| serde_json::from_str(e.get()).ok()).collect();
    let lists = txn.device_lists.unwrap_or_default();
    parsed.crypto = crate::crypto::TransactionCrypto {
        to_device: txn.to_device.or(txn.unstable_to_device).unwrap_or_default(),
        changed: lists.changed,
        left: lists.left,
        otk_counts: txn.otk_counts.or(txn.otk_counts_alt),
        fallback_types: txn.fallback_types,
    };
    Ok(parsed)
}

async fn put_transaction(
    State(state): State<ServerState>,
    Path(txn_id): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = check_token(&state, &headers, &query) {
        state.metrics.transaction(TxnOutcome::Unauthorized, 0, 0);
        return *response;
    }
    let span = tracing::info_span!("transaction", txn_id = %txn_id);
    let _enter = span.enter();
    let parsed = match parse_transaction(&body) {
        Ok(parsed) => parsed,
        Err((errcode, message)) => {
            tracing::warn!(errcode, %message, "rejected a malformed transaction");
            state.metrics.transaction(TxnOutcome::Malformed, 0, 0);
            return matrix_error(StatusCode::BAD_REQUEST, errcode, &message);
        }
    };
    drop(_enter);
    // Room keys first: the transaction's encrypted events can then be decrypted when they
    // are handled. Not acknowledged if they cannot be kept: the homeserver sends them again.
    if !parsed.crypto.is_empty() {
        if let Err(e) = state.handler.handle_crypto(parsed.crypto).await {
            tracing::error!(txn_id = %txn_id, error = %format!("{e:#}"), "could not take in the transaction's encryption keys");
            state.metrics.transaction(TxnOutcome::Failed, 0, 0);
            return matrix_error(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "could not store the encryption keys; retry later");
        }
    }
    let ephemeral = parsed.ephemeral;
    // The bridge's own echoes (what its ghosts and bot sent) are never acted upon: they are
    // not stored at all. A crash cannot make this lose anything: what the bridge sent is
    // recorded by the send itself, and a replay is deduplicated by its transaction ID.
    let events: Vec<(String, String)> = parsed
        .events
        .into_iter()
        .zip(parsed.heads)
        .filter(|(_, (sender, kind))| !state.handler.ignores(sender, kind))
        .map(|(event, _)| event)
        .collect();
    match state.inbox.accept(&txn_id, &body, events).await {
        Ok(outcome) => {
            tracing::debug!(txn_id = %txn_id, ?outcome, "transaction stored");
            let kind = if outcome.duplicate_transaction { TxnOutcome::Duplicate } else { TxnOutcome::Accepted };
            state.metrics.transaction(kind, outcome.new as u64, outcome.duplicate as u64);
            if !outcome.duplicate_transaction {
                for event in ephemeral {
                    state.handler.handle_ephemeral(event).await;
                }
            }
            (StatusCode::OK, Json(json!({}))).into_response()
        }
        Err(e) => {
            // Not acknowledged: the homeserver keeps the transaction and retries.
            tracing::error!(txn_id = %txn_id, error = %e, "could not store a transaction");
            state.metrics.transaction(TxnOutcome::Failed, 0, 0);
            matrix_error(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "could not store the transaction; retry later")
        }
    }
}

async fn get_user(
    State(state): State<ServerState>,
    Path(user_id): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_token(&state, &headers, &query) {
        return *response;
    }
    let Ok(user_id) = OwnedUserId::try_from(user_id.as_str()) else {
        return matrix_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "not a valid user ID");
    };
    if state.handler.query_user(user_id).await {
        (StatusCode::OK, Json(json!({}))).into_response()
    } else {
        matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "no such user on this bridge")
    }
}

async fn get_alias(
    State(state): State<ServerState>,
    Path(alias): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_token(&state, &headers, &query) {
        return *response;
    }
    let Ok(alias) = OwnedRoomAliasId::try_from(alias.as_str()) else {
        return matrix_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "not a valid room alias");
    };
    if state.handler.query_alias(alias).await {
        (StatusCode::OK, Json(json!({}))).into_response()
    } else {
        matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "no such room alias on this bridge")
    }
}

async fn post_ping(
    State(state): State<ServerState>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = check_token(&state, &headers, &query) {
        return *response;
    }
    let txn = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("transaction_id").and_then(Value::as_str).map(str::to_owned));
    tracing::debug!(transaction_id = ?txn, "ping from the homeserver");
    (StatusCode::OK, Json(json!({}))).into_response()
}

async fn health(State(state): State<ServerState>) -> Response {
    match state.inbox.backlog().await {
        Ok(backlog) => {
            let remote = state.inbox.remote_backlog().await.unwrap_or_default();
            (StatusCode::OK, Json(json!({ "status": "ok", "inbox_backlog": backlog, "remote_backlog": remote }))).into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "database unavailable", "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let mut gauges = Gauges {
        inbox_backlog: state.inbox.backlog().await.unwrap_or_default() as u64,
        remote_backlog: state.inbox.remote_backlog().await.unwrap_or_default(),
        ..Gauges::default()
    };
    (state.live_gauges)(&mut gauges);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(gauges),
    )
        .into_response()
}

async fn unknown_endpoint() -> Response {
    matrix_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "unrecognized endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transactions_and_classifies_errors() {
        let ok = br#"{"events":[{"event_id":"$a","type":"m.room.message","room_id":"!r:x","sender":"@u:x","content":{}}],
                      "de.sorunome.msc2409.ephemeral":[{"type":"m.typing"}]}"#;
        let parsed = parse_transaction(ok).expect("valid transaction");
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.events[0].0, "$a");
        assert_eq!(parsed.ephemeral.len(), 1);

        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "M_NOT_JSON"),
            (b"", "M_NOT_JSON"),
            (b"[1,2]", "M_BAD_JSON"),
            (br#"{"events": {}}"#, "M_BAD_JSON"),
            (br#"{"events": [{"type":"m.room.message"}]}"#, "M_BAD_JSON"),
            (br#"{"events": [{"event_id":"nodollar","type":"t","room_id":"!r:x","sender":"@u:x"}]}"#, "M_BAD_JSON"),
        ];
        for (body, code) in cases {
            let err = parse_transaction(body).expect_err("must be rejected");
            assert_eq!(err.0, *code, "body {:?}", String::from_utf8_lossy(body));
        }
        assert_eq!(parse_transaction(b"{}").expect("empty is fine"), ParsedTransaction::default());

        let both = br#"{"ephemeral":[{"type":"m.typing"}],"de.sorunome.msc2409.ephemeral":[{"type":"m.typing"}]}"#;
        assert_eq!(parse_transaction(both).expect("valid").ephemeral.len(), 1, "the same events are not taken twice");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
