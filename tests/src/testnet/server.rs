//! The test network's HTTP server: the JSON API the client half ([`super::client`]) speaks.
//!
//! Every `/logins/{login}/...` route needs `Authorization: Bearer <token of that login>`;
//! `/chats`, `/users` and `/media` need the token of any login. Errors are
//! `{"error": "..."}` with 400 (bad input), 401 (bad token) or 404 (unknown object).
//! Long polls (`events`, login `wait`) end early with 503 when the server stops.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::state::{Fail, Inner};
use super::wire::{
    Ack, ChatQuery, EditRequest, EventBatch, EventsQuery, LoginInput, LoginStarted, LoginWaitQuery, PageQuery,
    ReadRequest, ResolveRequest, ResolveResponse, SendRequest, TypingRequest, WireChatRef, WireEvent, WireError,
};
use super::Action;

/// The default and largest hold time of a long poll.
const DEFAULT_HOLD: Duration = Duration::from_secs(20);
const MAX_HOLD: Duration = Duration::from_secs(25);

/// What every handler gets: the shared state and the stop signal of this server run.
#[derive(Clone)]
pub(crate) struct App {
    pub inner: Arc<Inner>,
    pub stop: CancellationToken,
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            Fail::BadInput(message) => (StatusCode::BAD_REQUEST, message),
            Fail::Unauthorized => (StatusCode::UNAUTHORIZED, "unknown or revoked token".to_owned()),
            Fail::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
        };
        (status, Json(WireError { error })).into_response()
    }
}

type Reply = Result<Response, Fail>;

fn ok() -> Reply {
    Ok(Json(json!({})).into_response())
}

fn stopping() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(WireError { error: "server is stopping".to_owned() })).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

fn hold(timeout_ms: Option<u64>) -> Duration {
    timeout_ms.map_or(DEFAULT_HOLD, Duration::from_millis).min(MAX_HOLD)
}

/// The router over `app`.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/login/{flow}", post(login_start))
        .route("/login/process/{id}/submit", post(login_submit))
        .route("/login/process/{id}/wait", get(login_wait))
        .route("/login/process/{id}", delete(login_cancel))
        .route("/logins/{login}/events", get(events))
        .route("/logins/{login}/ack", post(ack))
        .route("/logins/{login}/messages", post(send))
        .route("/logins/{login}/messages/{id}", put(edit).delete(remove))
        .route("/logins/{login}/messages/{id}/reactions/{emoji}", put(react_add).delete(react_remove))
        .route("/logins/{login}/typing", post(typing))
        .route("/logins/{login}/read", post(read))
        .route("/logins/{login}/chats", get(recent_chats))
        .route("/logins/{login}/resolve", post(resolve))
        .route("/logins/{login}/logout", post(logout))
        .route("/chats/{id}", get(chat))
        .route("/chats/{id}/messages", get(history))
        .route("/users/{id}", get(user))
        .route("/media/{id}", get(media))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(app)
}

async fn login_start(State(app): State<App>, Path(flow): Path<String>) -> Reply {
    let (process, step) = app.inner.update(|s| s.login_start(&flow))?;
    Ok(Json(LoginStarted { process, step }).into_response())
}

async fn login_submit(State(app): State<App>, Path(id): Path<String>, Json(input): Json<LoginInput>) -> Reply {
    let step = app.inner.update(|s| s.login_submit(&id, &input.fields))?;
    Ok(Json(step).into_response())
}

async fn login_wait(State(app): State<App>, Path(id): Path<String>, Query(q): Query<LoginWaitQuery>) -> Reply {
    let deadline = tokio::time::Instant::now() + hold(q.timeout_ms);
    let mut changes = app.inner.changed.subscribe();
    loop {
        changes.borrow_and_update();
        if let Some(step) = app.inner.update(|s| s.login_poll(&id, q.shown.as_deref()))? {
            return Ok(Json(step).into_response());
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep_until(deadline) => {
                // Unchanged: answer with the step the client already shows.
                let current = app.inner.read().processes.get(&id).map(|p| p.step.clone());
                return match current {
                    Some(_) => Ok(Json(super::wire::WireLoginStep::Qr { code: q.shown.unwrap_or_default() }).into_response()),
                    None => Err(Fail::NotFound(format!("login process {id}"))),
                };
            }
            () = app.stop.cancelled() => return Ok(stopping()),
        }
    }
}

async fn login_cancel(State(app): State<App>, Path(id): Path<String>) -> Reply {
    app.inner.update(|s| s.processes.remove(&id));
    ok()
}

async fn events(State(app): State<App>, Path(login): Path<String>, headers: HeaderMap, Query(q): Query<EventsQuery>) -> Reply {
    let deadline = tokio::time::Instant::now() + hold(q.timeout_ms);
    let mut changes = app.inner.changed.subscribe();
    loop {
        changes.borrow_and_update();
        let batch = {
            let state = app.inner.read();
            state.auth(bearer(&headers), Some(&login))?;
            state.events_after(&login, q.after)
        };
        if !batch.is_empty() {
            return Ok(Json(EventBatch { events: batch }).into_response());
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(Json(EventBatch { events: Vec::new() }).into_response()),
            () = app.stop.cancelled() => return Ok(stopping()),
        }
    }
}

async fn ack(State(app): State<App>, Path(login): Path<String>, headers: HeaderMap, Json(a): Json<Ack>) -> Reply {
    app.inner.update(|s| {
        s.auth(bearer(&headers), Some(&login))?;
        s.ack(&login, a.seq);
        Ok::<_, Fail>(())
    })?;
    ok()
}

async fn send(State(app): State<App>, Path(login): Path<String>, headers: HeaderMap, Json(req): Json<SendRequest>) -> Reply {
    let sent = app.inner.update(|s| {
        s.auth(bearer(&headers), Some(&login))?;
        s.send(&login, req)
    })?;
    Ok(Json(sent).into_response())
}

async fn edit(
    State(app): State<App>,
    Path((login, id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(req): Json<EditRequest>,
) -> Reply {
    app.inner.update(|s| {
        s.auth(bearer(&headers), Some(&login))?;
        s.edit(&login, &req.chat, &id, &req.content)
    })?;
    ok()
}

async fn remove(
    State(app): State<App>,
    Path((login, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<ChatQuery>,
) -> Reply {
    app.inner.update(|s| {
        s.auth(bearer(&headers), Some(&login))?;
        s.delete(&login, &q.chat, &id)
    })?;
    ok()
}

async fn react(app: &App, login: &str, target: &str, emoji: &str, headers: &HeaderMap, chat: &str, add: bool) -> Reply {
    app.inner.update(|s| {
        s.auth(bearer(headers), Some(login))?;
        s.react(login, chat, target, emoji, add)
    })?;
    ok()
}

async fn react_add(
    State(app): State<App>,
    Path((login, id, emoji)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Query<ChatQuery>,
) -> Reply {
    react(&app, &login, &id, &emoji, &headers, &q.chat, true).await
}

async fn react_remove(
    State(app): State<App>,
    Path((login, id, emoji)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Query<ChatQuery>,
) -> Reply {
    react(&app, &login, &id, &emoji, &headers, &q.chat, false).await
}

async fn typing(State(app): State<App>, Path(login): Path<String>, headers: HeaderMap, Json(req): Json<TypingRequest>) -> Reply {
    app.inner.update(|s| {
        s.auth(bearer(&headers), Some(&login))?;
        s.member_chat(&login, &req.chat)?;
        let timeout_ms = if req.typing { 5000 } else { 0 };
        s.fanout(&req.chat, Some(&login), WireEvent::Typing { chat: req.chat.clone(), sender: login.clone(), timeout_ms });
        s.actions.push(Action::Typing { login: login.clone(), chat: req.chat, typing: req.typing });
        Ok::<_, Fail>(())
    })?;
    ok()
}

async fn read(State(app): State<App>, Path(login): Path<String>, headers: HeaderMap, Json(req): Json<ReadRequest>) -> Reply {
    app.inner.update(|s| {
        s.auth(bearer(&headers), Some(&login))?;
        s.member_chat(&login, &req.chat)?;
        let event = WireEvent::Read { chat: req.chat.clone(), sender: login.clone(), up_to: req.up_to.clone() };
        s.fanout(&req.chat, Some(&login), event);
        s.actions.push(Action::Read { login: login.clone(), chat: req.chat, up_to: req.up_to });
        Ok::<_, Fail>(())
    })?;
    ok()
}

async fn recent_chats(State(app): State<App>, Path(login): Path<String>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Reply {
    let state = app.inner.read();
    state.auth(bearer(&headers), Some(&login))?;
    let mut chats: Vec<(i64, WireChatRef)> = state
        .chats
        .iter()
        .filter(|(_, c)| c.members.contains(&login))
        .map(|(id, c)| {
            let last = c.messages.iter().rev().find(|m| !m.deleted);
            let last_timestamp = last.map_or(0, |m| m.timestamp);
            let chat = WireChatRef { id: id.clone(), is_direct: c.is_direct, last_message: last.map(|m| m.id.clone()), last_timestamp };
            (last_timestamp, chat)
        })
        .filter(|(last, _)| q.since.is_none_or(|since| *last > since))
        .collect();
    chats.sort_by_key(|c| std::cmp::Reverse(c.0));
    let list: Vec<WireChatRef> = chats.into_iter().map(|(_, c)| c).take(q.limit.unwrap_or(50)).collect();
    Ok(Json(list).into_response())
}

async fn resolve(State(app): State<App>, Path(login): Path<String>, headers: HeaderMap, Json(req): Json<ResolveRequest>) -> Reply {
    let resolved = app.inner.update(|s| {
        s.auth(bearer(&headers), Some(&login))?;
        let wanted = req.identifier.trim();
        let user = s
            .users
            .iter()
            .find(|(id, u)| id.as_str() == wanted || u.name == wanted)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| Fail::NotFound(format!("user {wanted}")))?;
        let existing = s.chats.iter().find(|(_, c)| {
            c.is_direct && c.members.len() == 2 && c.members.contains(&user) && c.members.contains(&login)
        });
        let chat = match existing {
            Some((id, _)) => id.clone(),
            None => {
                let id = format!("dm-{login}-{user}");
                let members = vec![login.clone(), user.clone()];
                s.chats.insert(id.clone(), super::state::Chat { is_direct: true, members, ..Default::default() });
                id
            }
        };
        Ok::<_, Fail>(ResolveResponse { user, chat })
    })?;
    Ok(Json(resolved).into_response())
}

async fn logout(State(app): State<App>, Path(login): Path<String>, headers: HeaderMap) -> Reply {
    app.inner.update(|s| {
        s.auth(bearer(&headers), Some(&login))?;
        if let Some(l) = s.logins.get_mut(&login) {
            l.token = None;
        }
        s.actions.push(Action::Logout { login: login.clone() });
        Ok::<_, Fail>(())
    })?;
    ok()
}

async fn chat(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Reply {
    let state = app.inner.read();
    state.auth(bearer(&headers), None)?;
    let chat = state.wire_chat(&id).ok_or_else(|| Fail::NotFound(format!("chat {id}")))?;
    Ok(Json(chat).into_response())
}

async fn history(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Reply {
    let mut state = app.inner.read();
    state.auth(bearer(&headers), None)?;
    *state.history_reads.entry(id.clone()).or_default() += 1;
    let chat = state.chats.get(&id).ok_or_else(|| Fail::NotFound(format!("chat {id}")))?;
    let end = match &q.before {
        Some(before) => chat
            .messages
            .iter()
            .position(|m| &m.id == before)
            .ok_or_else(|| Fail::NotFound(format!("message {before}")))?,
        None => chat.messages.len(),
    };
    let page: Vec<_> = chat.messages[..end].iter().rev().filter(|m| !m.deleted).take(q.limit.unwrap_or(50)).cloned().collect();
    Ok(Json(page).into_response())
}

async fn user(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Reply {
    let state = app.inner.read();
    state.auth(bearer(&headers), None)?;
    let user = state.wire_user(&id).ok_or_else(|| Fail::NotFound(format!("user {id}")))?;
    Ok(Json(user).into_response())
}

async fn media(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Reply {
    let state = app.inner.read();
    state.auth(bearer(&headers), None)?;
    let media = state.media.get(&id).ok_or_else(|| Fail::NotFound(format!("media {id}")))?;
    Ok(([(header::CONTENT_TYPE, media.mime.clone())], media.bytes.clone()).into_response())
}
