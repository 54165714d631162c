//! The provisioning HTTP API: the login flows over HTTP, for GUIs, at
//! `/_matrix/provision/v3/...` in the shapes of mautrix-go's bridgev2.
//!
//! Every request carries `Authorization: Bearer <bridge.provisioning.shared_secret>` and
//! `?user_id=@user:domain`; the user needs the `user` permission level. Login processes
//! are kept in memory under a random ID, each driven by a [`LoginDriver`] (the same driver
//! as the management room) behind a `tokio::sync::Mutex`, and expire after
//! `bridge.login_timeout_secs` without a request. Errors are `{"errcode", "error"}`.

pub mod types;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use rand::{distr::Alphanumeric, Rng};
use ruma::OwnedUserId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    bridge::Bridge,
    config::PermissionLevel,
    login::{Advance, LoginDriver, LoginError},
    network::{LoginId, NetworkError},
};
use types::{ApiError, FlowsResponse, LoginsResponse, StepJson, StepResponse};

/// The routes of the provisioning API, or no routes when `bridge.provisioning` turns it
/// off. Merged into the appservice server's router.
pub fn router(bridge: Arc<Bridge>) -> Router {
    let Some(secret) = bridge.settings.provisioning.active_secret().map(str::to_owned) else {
        tracing::info!("the provisioning API is off (bridge.provisioning)");
        return Router::new();
    };
    let state = Arc::new(Api { bridge, secret, processes: Mutex::new(HashMap::new()) });
    Router::new()
        .route("/_matrix/provision/v3/login/flows", get(get_flows))
        .route("/_matrix/provision/v3/login/start/{flow_id}", post(post_start))
        .route("/_matrix/provision/v3/login/step/{process_id}/{step_id}/{step_type}", post(post_step))
        .route("/_matrix/provision/v3/login/cancel/{process_id}", post(post_cancel))
        .route("/_matrix/provision/v3/logins", get(get_logins))
        .route("/_matrix/provision/v3/logout/{login_id}", post(post_logout))
        .with_state(state)
}

/// How many unfinished login processes one user may have at once.
const MAX_PROCESSES_PER_USER: usize = 3;

/// The API's state.
struct Api {
    bridge: Arc<Bridge>,
    secret: String,
    processes: Mutex<HashMap<String, Arc<Process>>>,
}

/// A login process started through the API.
struct Process {
    id: String,
    user: OwnedUserId,
    driver: tokio::sync::Mutex<LoginDriver>,
    /// Cancelled when the process ends early (cancel, timeout, shutdown).
    ended: CancellationToken,
    timed_out: AtomicBool,
    deadline: Mutex<Instant>,
}

type ApiResult = Result<Response, ApiError>;
type QueryMap = Query<HashMap<String, String>>;

impl Api {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.bridge.settings.login_timeout_secs.max(1))
    }

    /// Checks the shared secret and the user's permission; returns the user.
    fn authenticate(&self, headers: &HeaderMap, query: &HashMap<String, String>) -> Result<OwnedUserId, ApiError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(ApiError::new(401, "M_MISSING_TOKEN", "Missing auth token"));
        };
        if !constant_time_eq(token.as_bytes(), self.secret.as_bytes()) {
            return Err(ApiError::new(403, "M_FORBIDDEN", "Invalid auth token"));
        }
        let Some(user) = query.get("user_id").filter(|u| !u.is_empty()) else {
            return Err(ApiError::new(400, "M_MISSING_PARAM", "The user_id query parameter is required"));
        };
        let user = OwnedUserId::try_from(user.as_str())
            .map_err(|e| ApiError::new(400, "M_INVALID_PARAM", format!("Invalid user_id: {e}")))?;
        if self.bridge.is_bridge_user(&user) {
            return Err(ApiError::new(403, "M_FORBIDDEN", "The bridge bot and the bridge's ghosts cannot log in"));
        }
        if self.bridge.permission(&user) < PermissionLevel::User {
            return Err(ApiError::new(403, "M_FORBIDDEN", "You need the user permission level to log in"));
        }
        Ok(user)
    }

    fn process(&self, id: &str, user: &OwnedUserId) -> Result<Arc<Process>, ApiError> {
        let found = self.processes.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        found.filter(|p| &p.user == user).ok_or_else(|| ApiError::new(404, "M_NOT_FOUND", "Login not found"))
    }

    /// Ends a process early: wakes its request, forgets it, and cancels it on the network.
    fn end(&self, process: &Arc<Process>) {
        process.ended.cancel();
        self.processes.lock().unwrap_or_else(|e| e.into_inner()).remove(&process.id);
        let process = process.clone();
        tokio::spawn(async move { process.driver.lock().await.cancel().await });
    }

    /// Forgets a process that has finished by itself.
    fn forget(&self, process: &Process) {
        process.ended.cancel();
        self.processes.lock().unwrap_or_else(|e| e.into_inner()).remove(&process.id);
    }

    /// Cancels `process` once it has seen no request for the timeout, or at shutdown.
    fn spawn_expiry(self: &Arc<Self>, process: Arc<Process>) {
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                let deadline = *process.deadline.lock().unwrap_or_else(|e| e.into_inner());
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = process.ended.cancelled() => return,
                    _ = api.bridge.shutdown.cancelled() => return api.end(&process),
                }
                if Instant::now() >= *process.deadline.lock().unwrap_or_else(|e| e.into_inner()) {
                    tracing::info!(user = %process.user, "provisioning login timed out");
                    process.timed_out.store(true, Ordering::SeqCst);
                    return api.end(&process);
                }
            }
        });
    }

    /// Runs one step of `process` until it finishes or the process ends early, and turns
    /// the outcome into the answer.
    async fn drive(&self, process: &Arc<Process>, op: impl Future<Output = Result<Advance, LoginError>>) -> ApiResult {
        let result = tokio::select! {
            result = op => result,
            _ = process.ended.cancelled() => Err(if process.timed_out.load(Ordering::SeqCst) {
                LoginError::TimedOut
            } else {
                LoginError::Cancelled
            }),
        };
        let step = match result {
            Ok(Advance::Next(step)) => step,
            Ok(Advance::Rejected { message, .. }) => return Err(ApiError::new(400, "M_INVALID_PARAM", message)),
            Ok(Advance::Completed { step, .. }) => {
                self.forget(process);
                step
            }
            Err(e) => {
                self.end(process);
                return Err(login_error(e));
            }
        };
        Ok(Json(StepResponse { login_id: process.id.clone(), step: StepJson::from(&step) }).into_response())
    }
}

/// The API error for a login error.
fn login_error(error: LoginError) -> ApiError {
    match error {
        LoginError::NotAllowed => ApiError::new(403, "M_FORBIDDEN", "You need the user permission level to log in"),
        e @ LoginError::UnknownFlow { .. } => ApiError::new(404, "M_NOT_FOUND", e.to_string()),
        e @ LoginError::InProgress => ApiError::new(409, "M_BAD_STATE", e.to_string()),
        LoginError::Cancelled => ApiError::new(410, "FI.MAU.BRIDGE.LOGIN_CANCELLED", "Login process was cancelled"),
        LoginError::TimedOut => ApiError::new(410, "FI.MAU.BRIDGE.LOGIN_TIMED_OUT", "Login process timed out"),
        LoginError::Finished => {
            ApiError::new(410, "FI.MAU.BRIDGE.LOGIN_ALREADY_FINISHED", "Login process was already finished")
        }
        LoginError::Network(NetworkError::BadInput(message)) => ApiError::new(400, "M_INVALID_PARAM", message),
        LoginError::Network(e @ NetworkError::RateLimited(_)) => ApiError::new(429, "M_LIMIT_EXCEEDED", e.to_string()),
        e @ (LoginError::Network(_) | LoginError::Save(_)) => ApiError::new(500, "M_UNKNOWN", e.to_string()),
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random login process ID.
fn process_id() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect()
}

async fn get_flows(State(api): State<Arc<Api>>, Query(query): QueryMap, headers: HeaderMap) -> ApiResult {
    api.authenticate(&headers, &query)?;
    Ok(Json(FlowsResponse { flows: api.bridge.connector.login_flows() }).into_response())
}

async fn post_start(
    State(api): State<Arc<Api>>,
    Path(flow_id): Path<String>,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> ApiResult {
    let user = api.authenticate(&headers, &query)?;
    let unfinished = api.processes.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|p| p.user == user).count();
    if unfinished >= MAX_PROCESSES_PER_USER {
        return Err(ApiError::new(
            429,
            "M_LIMIT_EXCEEDED",
            format!("You already have {unfinished} unfinished logins; finish or cancel one first"),
        ));
    }
    let driver = LoginDriver::create(&api.bridge, &user, Some(&flow_id)).await.map_err(login_error)?;
    let process = Arc::new(Process {
        id: process_id(),
        user,
        driver: tokio::sync::Mutex::new(driver),
        ended: CancellationToken::new(),
        timed_out: AtomicBool::new(false),
        deadline: Mutex::new(Instant::now() + api.timeout()),
    });
    api.processes.lock().unwrap_or_else(|e| e.into_inner()).insert(process.id.clone(), process.clone());
    api.spawn_expiry(process.clone());
    let mut driver = process.driver.lock().await;
    api.drive(&process, driver.start()).await
}

async fn post_step(
    State(api): State<Arc<Api>>,
    Path((process_id, step_id, step_type)): Path<(String, String, String)>,
    Query(query): QueryMap,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let user = api.authenticate(&headers, &query)?;
    let process = api.process(&process_id, &user)?;
    *process.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + api.timeout();
    let mut driver = tokio::select! {
        driver = process.driver.lock() => driver,
        _ = process.ended.cancelled() => return Err(login_error(LoginError::Cancelled)),
    };
    let Some(current) = driver.current().cloned() else {
        return Err(ApiError::new(400, "M_BAD_STATE", "The login has not started"));
    };
    if current.step_id() != step_id {
        return Err(ApiError::new(400, "M_BAD_STATE", "Step ID does not match"));
    }
    if types::step_type(&current) != step_type {
        return Err(ApiError::new(400, "M_BAD_STATE", "Step type does not match"));
    }
    match step_type.as_str() {
        "user_input" => {
            let input: BTreeMap<String, String> = serde_json::from_slice(&body).map_err(|_| {
                ApiError::new(400, "M_NOT_JSON", "The body must be a JSON object of field IDs to string values")
            })?;
            api.drive(&process, driver.submit(input)).await
        }
        "display_and_wait" => api.drive(&process, driver.wait()).await,
        _ => Err(login_error(LoginError::Finished)),
    }
}

async fn post_cancel(
    State(api): State<Arc<Api>>,
    Path(process_id): Path<String>,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> ApiResult {
    let user = api.authenticate(&headers, &query)?;
    let process = api.process(&process_id, &user)?;
    api.end(&process);
    Ok(Json(serde_json::json!({})).into_response())
}

async fn get_logins(State(api): State<Arc<Api>>, Query(query): QueryMap, headers: HeaderMap) -> ApiResult {
    let user = api.authenticate(&headers, &query)?;
    let logins = api.bridge.store.user_logins().list_for_user(user.as_str()).await.map_err(|e| {
        tracing::warn!(error = %e, "could not list logins");
        ApiError::new(500, "M_UNKNOWN", "Could not list the logins")
    })?;
    Ok(Json(LoginsResponse { login_ids: logins.into_iter().map(|l| l.id).collect() }).into_response())
}

async fn post_logout(
    State(api): State<Arc<Api>>,
    Path(login_id): Path<String>,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> ApiResult {
    let user = api.authenticate(&headers, &query)?;
    let logins = api.bridge.store.user_logins().list_for_user(user.as_str()).await.map_err(|e| {
        tracing::warn!(error = %e, "could not list logins");
        ApiError::new(500, "M_UNKNOWN", "Could not list the logins")
    })?;
    let chosen: Vec<_> = logins.into_iter().filter(|l| login_id == "all" || l.id == login_id).collect();
    if chosen.is_empty() && login_id != "all" {
        return Err(ApiError::new(404, "M_NOT_FOUND", "Login not found"));
    }
    for login in chosen {
        api.bridge.remove_login(&LoginId(login.id.clone()), true).await.map_err(|e| {
            tracing::warn!(login = %login.id, error = %format!("{e:#}"), "could not log out");
            ApiError::new(500, "M_UNKNOWN", "Could not log out")
        })?;
    }
    Ok(Json(serde_json::json!({})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_secrets() {
        let cases = [("abc", "abc", true), ("abc", "abd", false), ("abc", "ab", false), ("", "", true)];
        for (a, b, want) in cases {
            assert_eq!(constant_time_eq(a.as_bytes(), b.as_bytes()), want, "{a} {b}");
        }
    }

    #[test]
    fn login_errors_map_to_statuses() {
        let cases = [
            (LoginError::NotAllowed, 403, "M_FORBIDDEN"),
            (LoginError::UnknownFlow { flow: "x".into(), available: vec![] }, 404, "M_NOT_FOUND"),
            (LoginError::Cancelled, 410, "FI.MAU.BRIDGE.LOGIN_CANCELLED"),
            (LoginError::TimedOut, 410, "FI.MAU.BRIDGE.LOGIN_TIMED_OUT"),
            (LoginError::Network(NetworkError::BadInput("wrong code".into())), 400, "M_INVALID_PARAM"),
            (LoginError::Network(NetworkError::Remote("down".into())), 500, "M_UNKNOWN"),
        ];
        for (error, status, code) in cases {
            let got = login_error(error);
            assert_eq!((got.status, got.errcode), (status, code));
        }
        assert_eq!(process_id().len(), 24);
    }
}
