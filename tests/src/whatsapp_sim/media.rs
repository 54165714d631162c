//! WhatsApp's media host, as the simulator serves it: `media_conn` (`w:m`) names this host
//! (`127.0.0.1:PORT`) and an auth token; a client uploads the encrypted file to
//! `/mms/<type>/<token>` (the token is the base64url SHA-256 of the encrypted bytes, which
//! the host checks as WhatsApp's does) and gets back its `direct_path`, from which the
//! receiving client downloads it. The host never sees a key: the encryption (HKDF media
//! keys, AES-CBC, the truncated HMAC, the file hashes) is checked only by the client that
//! decrypts, as with WhatsApp.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::Node;

use super::conn::node;

/// The auth token the media host accepts (`media_conn`'s `auth`).
const AUTH: &str = "sim-media-auth";

/// An uploaded (encrypted) file, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The upload path's media type (`image`, `audio`, `document`, …).
    pub kind: String,
    /// The encrypted bytes as uploaded.
    pub encrypted: Vec<u8>,
}

#[derive(Default)]
struct Files {
    by_path: HashMap<String, Uploaded>,
}

/// The media host.
#[derive(Clone)]
pub(crate) struct MediaHost {
    port: u16,
    files: Arc<Mutex<Files>>,
}

#[derive(serde::Deserialize)]
struct Params {
    auth: Option<String>,
    token: Option<String>,
}

impl MediaHost {
    /// Starts the host on a free port of 127.0.0.1, until `stop`.
    pub(crate) async fn start(stop: CancellationToken) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the media host")?;
        let host = Self {
            port: listener.local_addr()?.port(),
            files: Arc::default(),
        };
        let router = axum::Router::new()
            .route("/mms/{kind}/{token}", axum::routing::post(upload))
            .route("/v/t62/{kind}/{token}", axum::routing::get(download))
            .with_state(host.clone());
        tokio::spawn(async move {
            let signal = stop.cancelled_owned();
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(%error, "the WhatsApp media host failed");
            }
        });
        Ok(host)
    }

    /// The `<media_conn>` answer that points clients at this host.
    pub(crate) fn media_conn(&self) -> Node {
        node(
            "media_conn",
            &[
                ("auth", AUTH.to_owned()),
                ("ttl", "3600".to_owned()),
                ("auth_ttl", "3600".to_owned()),
                ("max_buckets", "12".to_owned()),
            ],
        )
        .children([NodeBuilder::new("host")
            .attr("hostname", format!("127.0.0.1:{}", self.port))
            .attr("type", "primary")
            .children([
                NodeBuilder::new("upload").build(),
                NodeBuilder::new("download").build(),
            ])
            .build()])
        .build()
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every file uploaded so far.
    pub(crate) fn uploads(&self) -> Vec<Uploaded> {
        self.files().by_path.values().cloned().collect()
    }

}

/// The base64url (no padding) SHA-256 of `bytes`: the token WhatsApp names a file by.
fn token_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(bytes))
}

async fn upload(
    State(host): State<MediaHost>,
    Path((kind, token)): Path<(String, String)>,
    Query(params): Query<Params>,
    body: Bytes,
) -> impl IntoResponse {
    if params.auth.as_deref() != Some(AUTH) {
        return (StatusCode::UNAUTHORIZED, "bad auth".to_owned()).into_response();
    }
    if token_of(&body) != token || params.token.as_deref() != Some(token.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            "the token is not the file's hash".to_owned(),
        )
            .into_response();
    }
    let direct_path = format!("/v/t62/{kind}/{token}");
    let url = format!("https://127.0.0.1:{}{direct_path}", host.port);
    host.files().by_path.insert(
        direct_path.clone(),
        Uploaded {
            kind,
            encrypted: body.to_vec(),
        },
    );
    axum::Json(serde_json::json!({ "url": url, "direct_path": direct_path })).into_response()
}

async fn download(
    State(host): State<MediaHost>,
    Path((kind, token)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> impl IntoResponse {
    if params.auth.as_deref() != Some(AUTH) || params.token.as_deref() != Some(token.as_str()) {
        return (StatusCode::UNAUTHORIZED, Vec::new()).into_response();
    }
    let path = format!("/v/t62/{kind}/{token}");
    let file = host.files().by_path.get(&path).map(|f| f.encrypted.clone());
    match file {
        Some(file) => (StatusCode::OK, file).into_response(),
        None => (StatusCode::NOT_FOUND, Vec::new()).into_response(),
    }
}
