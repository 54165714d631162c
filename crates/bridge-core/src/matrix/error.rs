//! The error type of the Matrix client, and parsing of the standard `{errcode, error}` body.

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

/// Everything that can go wrong when the bridge talks to the homeserver.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The request could not be sent or its response could not be read (DNS, TCP, TLS, …).
    #[error("http request to the homeserver failed: {0}")]
    Http(#[source] reqwest::Error),

    /// The homeserver did not answer within the time allowed for the call.
    #[error("the homeserver did not answer within {0:?}")]
    Timeout(Duration),

    /// The homeserver answered with an error status and a Matrix error body.
    #[error("the homeserver refused the request: {status} {errcode}: {error}")]
    Api {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The Matrix error code, such as `M_FORBIDDEN`; `M_UNKNOWN` if the body had none.
        errcode: String,
        /// The human-readable message of the homeserver.
        error: String,
    },

    /// The homeserver answered with success but the body was not what the endpoint promises.
    #[error("could not parse the homeserver's response: {0}")]
    Deserialize(String),

    /// The request could not be built (a bug, or an argument that cannot be sent).
    #[error("could not build the request: {0}")]
    InvalidRequest(String),

    /// The client was given a configuration it cannot work with.
    #[error("invalid matrix client configuration: {0}")]
    Config(String),

    /// A message for an encrypted room could not be encrypted.
    #[error("could not encrypt the message: {0}")]
    Encryption(String),

    /// `POST /appservice/{id}/ping` showed that the homeserver cannot reach the bridge.
    #[error(
        "the homeserver cannot reach the bridge at its appservice address ({errcode}: {error}); \
         check `url` in the registration file and that the bridge listens there"
    )]
    AppserviceUnreachable {
        /// `M_CONNECTION_FAILED`, `M_CONNECTION_TIMEOUT` or `M_BAD_STATUS`.
        errcode: String,
        /// The homeserver's description of the failure.
        error: String,
    },
}

impl MatrixError {
    /// The Matrix error code if the homeserver answered with one, such as `M_FORBIDDEN`.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            MatrixError::Api { errcode, .. }
            | MatrixError::AppserviceUnreachable { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// The HTTP status of the homeserver's error answer, if there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            MatrixError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the failure is the homeserver being unreachable or overloaded (no answer, a
    /// timeout, a 5xx or a 429) rather than a refusal: what failed may succeed later, so an
    /// event whose handling failed this way waits and is tried again.
    pub fn is_transient(&self) -> bool {
        match self {
            MatrixError::Http(_) | MatrixError::Timeout(_) => true,
            MatrixError::Api { status, .. } => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
            _ => false,
        }
    }

    /// Whether any error in `error`'s chain is a transient homeserver failure
    /// ([`MatrixError::is_transient`]).
    pub fn is_transient_cause(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(e) = current {
            if e.downcast_ref::<MatrixError>().is_some_and(MatrixError::is_transient) {
                return true;
            }
            current = e.source();
        }
        false
    }

    /// Whether the homeserver answered with the given Matrix error code.
    pub fn is(&self, errcode: &str) -> bool {
        self.errcode() == Some(errcode)
    }

    /// Builds an [`MatrixError::Api`] from an error answer's status and body.
    pub(crate) fn from_response(status: StatusCode, body: &[u8]) -> Self {
        let parsed = ErrorBody::parse(body);
        MatrixError::Api {
            status,
            errcode: parsed.errcode.unwrap_or_else(|| "M_UNKNOWN".to_owned()),
            error: parsed.error.unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("no error message")
                    .to_lowercase()
            }),
        }
    }
}

/// The standard Matrix error body: `{"errcode": "M_…", "error": "…", "retry_after_ms": …}`.
///
/// Every field is optional so that a proxy's HTML error page still parses (to nothing).
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    /// The Matrix error code.
    pub errcode: Option<String>,
    /// The human-readable message.
    pub error: Option<String>,
    /// For `M_LIMIT_EXCEEDED`: how long to wait before retrying.
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    /// Parses an error body; anything that is not the standard JSON object gives empty fields.
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_parse_leniently() {
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<u64>);
        let cases: &[Case<'_>] = &[
            (
                r#"{"errcode":"M_FORBIDDEN","error":"no"}"#,
                Some("M_FORBIDDEN"),
                Some("no"),
                None,
            ),
            (
                r#"{"errcode":"M_LIMIT_EXCEEDED","error":"slow","retry_after_ms":1500}"#,
                Some("M_LIMIT_EXCEEDED"),
                Some("slow"),
                Some(1500),
            ),
            (r#"{"errcode":"M_UNKNOWN"}"#, Some("M_UNKNOWN"), None, None),
            ("<html>bad gateway</html>", None, None, None),
            ("", None, None, None),
            (r#"{"errcode":5}"#, None, None, None),
        ];
        for (body, errcode, error, retry) in cases {
            let parsed = ErrorBody::parse(body.as_bytes());
            assert_eq!(parsed.errcode.as_deref(), *errcode, "{body}");
            assert_eq!(parsed.error.as_deref(), *error, "{body}");
            assert_eq!(parsed.retry_after_ms, *retry, "{body}");
        }
    }

    #[test]
    fn api_errors_expose_their_code() {
        let err = MatrixError::from_response(
            StatusCode::FORBIDDEN,
            br#"{"errcode":"M_FORBIDDEN","error":"not invited"}"#,
        );
        assert_eq!(err.errcode(), Some("M_FORBIDDEN"));
        assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
        assert!(err.is("M_FORBIDDEN"));
        assert_eq!(
            err.to_string(),
            "the homeserver refused the request: 403 Forbidden M_FORBIDDEN: not invited"
        );

        let err = MatrixError::from_response(StatusCode::BAD_GATEWAY, b"<html/>");
        assert_eq!(err.errcode(), Some("M_UNKNOWN"));
        assert!(err.to_string().contains("bad gateway"));
        assert_eq!(MatrixError::Timeout(Duration::from_secs(1)).errcode(), None);
    }
}
