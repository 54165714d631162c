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
    logins_gauge: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl ServerState {
    /// State for a server that accepts `hs_token`, stores into `inbox`, answers queries
    /// through `handler` and counts into `metrics`; `logins_gauge` reports live logins.
    pub fn new(
        hs_token: &str,
        inbox: Inbox,
        handler: Arc<dyn AppserviceHandler>,
        metrics: Arc<Metrics>,
        logins_gauge: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        Self { hs_token: hs_token.into(), inbox, handler, metrics, logins_gauge }
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
        .with_state(state)
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
pub(crate) struct ParsedTransaction {
    /// Timeline and state events, each with its event ID.
    pub events: Vec<(String, Value)>,
    /// Ephemeral events (stable and MSC2409 keys).
    pub ephemeral: Vec<Value>,
}

/// Parses a transaction body, telling malformed JSON (`M_NOT_JSON`) from JSON of the
/// wrong shape (`M_BAD_JSON`).
pub(crate) fn parse_transaction(body: &[u8]) -> Result<ParsedTransaction, (&'static str, String)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ("M_NOT_JSON", format!("transaction body is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(("M_BAD_JSON", "transaction body must be a JSON object".to_owned()));
    };
    let events = match obj.remove("events") {
        None => Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(("M_BAD_JSON", "`events` must be an array".to_owned())),
    };
    let mut parsed = ParsedTransaction::default();
    for (i, event) in events.into_iter().enumerate() {
        let id = event
            .get("event_id")
            .and_then(Value::as_str)
            .filter(|id| id.starts_with('$'))
            .map(str::to_owned);
        let well_formed = event.get("type").is_some_and(Value::is_string)
            && event.get("room_id").is_some_and(Value::is_string)
            && event.get("sender").is_some_and(Value::is_string);
        match id {
            Some(id) if well_formed => parsed.events.push((id, event)),
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
    let stable = obj.remove("ephemeral");
    let unstable = obj.remove("de.sorunome.msc2409.ephemeral");
    if let Some(Value::Array(list)) = stable.or(unstable) {
        parsed.ephemeral = list;
    }
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
    let ephemeral = parsed.ephemeral;
    match state.inbox.accept(&txn_id, parsed.events).await {
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
        Ok(backlog) => (StatusCode::OK, Json(json!({ "status": "ok", "inbox_backlog": backlog }))).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "database unavailable", "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let gauges = Gauges {
        inbox_backlog: state.inbox.backlog().await.unwrap_or_default() as u64,
        logins: (state.logins_gauge)(),
    };
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
