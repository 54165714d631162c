//! The JSON bodies of the provisioning API, in the shapes mautrix-go's bridgev2
//! provisioning API uses, so that existing login GUIs understand them.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::network::login::{Display, FieldKind, LoginFlow, LoginStep};

/// `GET /v3/login/flows`.
#[derive(Debug, Clone, Serialize)]
pub struct FlowsResponse {
    /// The flows, default first.
    pub flows: Vec<LoginFlow>,
}

/// A step, as `POST /v3/login/start` and `/v3/login/step` return it.
#[derive(Debug, Clone, Serialize)]
pub struct StepResponse {
    /// The login process ID to use in the next `/login/step` call.
    pub login_id: String,
    /// The step.
    #[serde(flatten)]
    pub step: StepJson,
}

/// One login step: `type` says which of the parameter objects is present.
#[derive(Debug, Clone, Serialize)]
pub struct StepJson {
    /// `user_input`, `display_and_wait` or `complete`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The step's stable ID, to echo in the next call's path.
    pub step_id: String,
    /// What to tell the user.
    pub instructions: String,
    /// The fields of a `user_input` step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_input: Option<UserInputJson>,
    /// What a `display_and_wait` step shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_and_wait: Option<DisplayJson>,
    /// The login a `complete` step created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<CompleteJson>,
}

/// The parameters of a `user_input` step.
#[derive(Debug, Clone, Serialize)]
pub struct UserInputJson {
    /// The fields, in order.
    pub fields: Vec<FieldJson>,
}

/// One input field.
#[derive(Debug, Clone, Serialize)]
pub struct FieldJson {
    /// `username`, `phone_number`, `2fa_code`, `password`, `token` or `url`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The key under which the value is submitted.
    pub id: String,
    /// Human label.
    pub name: String,
    /// Longer explanation (may be empty).
    pub description: String,
}

/// The parameters of a `display_and_wait` step.
#[derive(Debug, Clone, Serialize)]
pub struct DisplayJson {
    /// `qr`, `code` or `nothing`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The QR code's content or the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// The parameters of a `complete` step.
#[derive(Debug, Clone, Serialize)]
pub struct CompleteJson {
    /// The new login's ID (as `GET /v3/logins` lists it).
    pub user_login_id: String,
}

/// `GET /v3/logins`.
#[derive(Debug, Clone, Serialize)]
pub struct LoginsResponse {
    /// The user's login IDs.
    pub login_ids: Vec<String>,
}

/// The wire name of a field kind (bridgev2's input field types).
pub fn field_type(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "username",
        FieldKind::PhoneNumber => "phone_number",
        FieldKind::Code => "2fa_code",
        FieldKind::Password => "password",
        FieldKind::Token => "token",
        FieldKind::Url => "url",
    }
}

/// The wire name of a step's type, as in the `/login/step/.../{stepType}` path.
pub fn step_type(step: &LoginStep) -> &'static str {
    match step {
        LoginStep::UserInput { .. } => "user_input",
        LoginStep::DisplayAndWait { .. } => "display_and_wait",
        LoginStep::Complete { .. } => "complete",
    }
}

impl From<&LoginStep> for StepJson {
    fn from(step: &LoginStep) -> Self {
        let mut json = StepJson {
            kind: step_type(step),
            step_id: step.step_id().to_owned(),
            instructions: String::new(),
            user_input: None,
            display_and_wait: None,
            complete: None,
        };
        match step {
            LoginStep::UserInput { instructions, fields, .. } => {
                json.instructions = instructions.clone();
                let fields = fields
                    .iter()
                    .map(|f| FieldJson {
                        kind: field_type(f.kind),
                        id: f.id.clone(),
                        name: f.name.clone(),
                        description: f.description.clone().unwrap_or_default(),
                    })
                    .collect();
                json.user_input = Some(UserInputJson { fields });
            }
            LoginStep::DisplayAndWait { instructions, display, .. } => {
                json.instructions = instructions.clone();
                json.display_and_wait = Some(match display {
                    Display::Qr(data) => DisplayJson { kind: "qr", data: Some(data.clone()) },
                    Display::Code(code) => DisplayJson { kind: "code", data: Some(code.clone()) },
                    Display::Nothing => DisplayJson { kind: "nothing", data: None },
                });
            }
            LoginStep::Complete { instructions, login, .. } => {
                json.instructions = instructions.clone();
                json.complete = Some(CompleteJson { user_login_id: login.remote_id.clone() });
            }
        }
        json
    }
}

/// An error answer: `{"errcode": ..., "error": ...}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP status (not part of the body).
    #[serde(skip)]
    pub status: u16,
    /// The Matrix-style error code (`M_FORBIDDEN`, `FI.MAU.BRIDGE.LOGIN_CANCELLED`, …).
    pub errcode: &'static str,
    /// A human-readable message.
    pub error: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: u16, errcode: &'static str, error: impl Into<String>) -> Self {
        Self { status, errcode, error: error.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::network::login::{CompletedLogin, InputField};

    #[test]
    fn steps_serialize_like_bridgev2() {
        let cases = [
            (
                LoginStep::UserInput {
                    step_id: "phone".into(),
                    instructions: "Enter your phone".into(),
                    fields: vec![InputField {
                        id: "phone_number".into(),
                        kind: FieldKind::PhoneNumber,
                        name: "Phone number".into(),
                        description: None,
                    }],
                },
                json!({
                    "login_id": "abc",
                    "type": "user_input",
                    "step_id": "phone",
                    "instructions": "Enter your phone",
                    "user_input": {"fields": [{"type": "phone_number", "id": "phone_number", "name": "Phone number", "description": ""}]},
                }),
            ),
            (
                LoginStep::DisplayAndWait { step_id: "qr".into(), instructions: "Scan".into(), display: Display::Qr("2@xyz".into()) },
                json!({
                    "login_id": "abc", "type": "display_and_wait", "step_id": "qr", "instructions": "Scan",
                    "display_and_wait": {"type": "qr", "data": "2@xyz"},
                }),
            ),
            (
                LoginStep::DisplayAndWait { step_id: "wait".into(), instructions: "Approve".into(), display: Display::Nothing },
                json!({
                    "login_id": "abc", "type": "display_and_wait", "step_id": "wait", "instructions": "Approve",
                    "display_and_wait": {"type": "nothing"},
                }),
            ),
            (
                LoginStep::Complete {
                    step_id: "done".into(),
                    instructions: "".into(),
                    login: CompletedLogin { remote_id: "42".into(), remote_name: "Alice".into(), session: json!({"secret": 1}) },
                },
                json!({
                    "login_id": "abc", "type": "complete", "step_id": "done", "instructions": "",
                    "complete": {"user_login_id": "42"},
                }),
            ),
        ];
        for (step, want) in cases {
            let response = StepResponse { login_id: "abc".into(), step: StepJson::from(&step) };
            assert_eq!(serde_json::to_value(&response).expect("serializes"), want);
        }
    }

    #[test]
    fn other_bodies_serialize_as_expected() {
        let flows = FlowsResponse {
            flows: vec![LoginFlow { id: "qr".into(), name: "QR".into(), description: "Scan a code".into() }],
        };
        assert_eq!(
            serde_json::to_value(&flows).expect("serializes"),
            json!({"flows": [{"id": "qr", "name": "QR", "description": "Scan a code"}]})
        );
        let logins = LoginsResponse { login_ids: vec!["1".into()] };
        assert_eq!(serde_json::to_value(&logins).expect("serializes"), json!({"login_ids": ["1"]}));
        let error = ApiError::new(403, "M_FORBIDDEN", "nope");
        assert_eq!(serde_json::to_value(&error).expect("serializes"), json!({"errcode": "M_FORBIDDEN", "error": "nope"}));
    }
}
