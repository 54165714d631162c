//! Media upload and download for [`Intent`].
//!
//! Both go through [`MatrixClient::send_raw`] so that file bodies are not copied into ruma's
//! request types, and use the client's longer media timeout. Downloads use authenticated
//! media (`/_matrix/client/v1/media/download`) and fall back to the legacy
//! `/_matrix/media/v3/download` on homeservers that do not know it.

use bytes::Bytes;
use http::{header, Method};
use ruma::{MxcUri, OwnedMxcUri};
use serde::Deserialize;

use super::{
    client::{MatrixClient, RawRequest, SendOptions},
    error::MatrixError,
    intent::Intent,
};

/// The body of a successful upload.
#[derive(Deserialize)]
struct UploadResponse {
    content_uri: OwnedMxcUri,
}

/// Whether a failed authenticated download should be retried on the legacy endpoint: the
/// homeserver does not know the endpoint at all.
fn should_fall_back(error: &MatrixError) -> bool {
    error.is("M_UNRECOGNIZED")
        || matches!(error.status(), Some(status) if status == http::StatusCode::METHOD_NOT_ALLOWED)
}

/// The per-call options of media transfers: the client's media timeout.
fn media_options(client: &MatrixClient) -> SendOptions {
    SendOptions {
        timeout: Some(client.options().media_timeout),
        retry: None,
    }
}

impl Intent {
    /// Uploads a file (`POST /_matrix/media/v3/upload`) and returns its `mxc://` URI.
    /// `data` is anything that turns into [`Bytes`] (`Vec<u8>`, `&'static [u8]`, `String`).
    pub async fn upload(
        &self,
        data: impl Into<Bytes>,
        content_type: &str,
        filename: Option<&str>,
    ) -> Result<OwnedMxcUri, MatrixError> {
        self.ensure_registered().await?;
        let request = RawRequest {
            method: Method::POST,
            path: ["_matrix", "media", "v3", "upload"]
                .map(String::from)
                .to_vec(),
            query: filename
                .map(|name| ("filename".to_owned(), name.to_owned()))
                .into_iter()
                .collect(),
            content_type: Some(content_type.to_owned()),
            body: data.into(),
        };
        let client = self.client();
        let response = client
            .send_raw(request, self.as_user(), media_options(client))
            .await?;
        let parsed: UploadResponse = serde_json::from_slice(&response.body)
            .map_err(|e| MatrixError::Deserialize(format!("upload response: {e}")))?;
        Ok(parsed.content_uri)
    }

    /// Downloads the file behind `mxc`; returns its bytes and content type
    /// (`application/octet-stream` when the homeserver gives none).
    pub async fn download(&self, mxc: &MxcUri) -> Result<(Bytes, String), MatrixError> {
        let (server, media_id) = mxc
            .parts()
            .map_err(|e| MatrixError::InvalidRequest(format!("invalid mxc uri {mxc}: {e}")))?;
        let path = |prefix: &[&str]| {
            prefix
                .iter()
                .copied()
                .chain(["download", server.as_str(), media_id])
                .map(String::from)
                .collect()
        };
        let authenticated = RawRequest {
            method: Method::GET,
            path: path(&["_matrix", "client", "v1", "media"]),
            query: Vec::new(),
            content_type: None,
            body: Bytes::new(),
        };
        let client = self.client();
        let options = media_options(client);
        let response = match client
            .send_raw(authenticated, self.as_user(), options)
            .await
        {
            Err(e) if should_fall_back(&e) => {
                tracing::debug!(%mxc, "authenticated media unsupported; using the legacy endpoint");
                let legacy = RawRequest {
                    method: Method::GET,
                    path: path(&["_matrix", "media", "v3"]),
                    query: vec![("allow_redirect".to_owned(), "true".to_owned())],
                    content_type: None,
                    body: Bytes::new(),
                };
                client.send_raw(legacy, self.as_user(), options).await?
            }
            other => other?,
        };
        let content_type = response
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        Ok((response.body, content_type))
    }

    /// Like [`Intent::download`], streaming: the response is handed back unread, with its
    /// content type, so that large media pass through without being held in memory.
    pub async fn download_stream(&self, mxc: &MxcUri) -> Result<(reqwest::Response, String), MatrixError> {
        let (server, media_id) = mxc.parts().map_err(|e| MatrixError::InvalidRequest(format!("invalid mxc uri {mxc}: {e}")))?;
        let request = |prefix: &[&str], query: Vec<(String, String)>| RawRequest {
            method: Method::GET,
            path: prefix.iter().copied().chain(["download", server.as_str(), media_id]).map(String::from).collect(),
            query,
            content_type: None,
            body: Bytes::new(),
        };
        let client = self.client();
        let timeout = media_options(client).timeout.unwrap_or(std::time::Duration::from_secs(120));
        let response = match client.send_raw_streaming(request(&["_matrix", "client", "v1", "media"], Vec::new()), self.as_user(), timeout).await {
            Err(e) if should_fall_back(&e) => {
                let legacy = request(&["_matrix", "media", "v3"], vec![("allow_redirect".to_owned(), "true".to_owned())]);
                client.send_raw_streaming(legacy, self.as_user(), timeout).await?
            }
            other => other?,
        };
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        Ok((response, content_type))
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn falls_back_only_when_the_endpoint_is_unknown() {
        let api =
            |status: StatusCode, body: &str| MatrixError::from_response(status, body.as_bytes());
        let cases = [
            (
                api(
                    StatusCode::NOT_FOUND,
                    r#"{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}"#,
                ),
                true,
            ),
            (
                api(
                    StatusCode::METHOD_NOT_ALLOWED,
                    r#"{"errcode":"M_UNRECOGNIZED"}"#,
                ),
                true,
            ),
            (api(StatusCode::METHOD_NOT_ALLOWED, ""), true),
            (
                api(
                    StatusCode::NOT_FOUND,
                    r#"{"errcode":"M_NOT_FOUND","error":"no such media"}"#,
                ),
                false,
            ),
            (
                api(StatusCode::FORBIDDEN, r#"{"errcode":"M_FORBIDDEN"}"#),
                false,
            ),
            (
                MatrixError::Timeout(std::time::Duration::from_secs(1)),
                false,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(should_fall_back(&error), expected, "{error}");
        }
    }
}
