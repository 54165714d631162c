//! Public media: unauthenticated URLs, served by the bridge, for Matrix media that a remote
//! network must fetch by itself (a Discord webhook's avatar, say). Matrix media needs an
//! access token since authenticated media, so a network cannot be given an `mxc://` URI.
//!
//! A URL names the media and carries an HMAC of it, keyed by a secret derived from the
//! appservice token, so nobody can use the bridge to read other media from the homeserver.
//! Off unless `appservice.public_media.enabled`.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use base64::Engine;
use hmac::{Hmac, Mac};
use ruma::MxcUri;
use sha2::{Digest, Sha256};
use url::Url;

use crate::bridge::Bridge;

/// Route prefix of public media URLs.
const PREFIX: &str = "_bridge/media/v1";

/// Signs and checks public media URLs.
#[derive(Clone)]
pub struct PublicMedia {
    base: Url,
    key: [u8; 32],
}

impl std::fmt::Debug for PublicMedia {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicMedia").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

impl PublicMedia {
    /// URLs under `base` (the bridge's public address), signed with a key derived from
    /// `as_token`.
    pub fn new(base: Url, as_token: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"bridge public media v1\0");
        hasher.update(as_token.as_bytes());
        Self { base, key: hasher.finalize().into() }
    }

    /// The public URL of `mxc`, `None` for an invalid URI.
    pub fn url_for(&self, mxc: &MxcUri) -> Option<String> {
        let (server, media_id) = mxc.parts().ok()?;
        let sig = self.signature(server.as_str(), media_id);
        let mut url = self.base.clone();
        url.path_segments_mut().ok()?.pop_if_empty().extend(PREFIX.split('/')).extend([server.as_str(), media_id, &sig]);
        Some(url.to_string())
    }

    /// Whether `sig` is the signature of `server`/`media_id`.
    pub fn verify(&self, server: &str, media_id: &str, sig: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else { return false };
        sig.len() >= 16 && self.mac(server, media_id).verify_truncated_left(&sig).is_ok()
    }

    fn signature(&self, server: &str, media_id: &str) -> String {
        let full = self.mac(server, media_id).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&full[..16])
    }

    fn mac(&self, server: &str, media_id: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(server.as_bytes());
        mac.update(b"/");
        mac.update(media_id.as_bytes());
        mac
    }
}

/// The route serving public media, when enabled.
pub(crate) fn router(bridge: Arc<Bridge>) -> Router {
    if bridge.public_media.is_none() {
        return Router::new();
    }
    Router::new().route(&format!("/{PREFIX}/{{server}}/{{media_id}}/{{sig}}"), get(get_media)).with_state(bridge)
}

async fn get_media(State(bridge): State<Arc<Bridge>>, Path((server, media_id, sig)): Path<(String, String, String)>) -> Response {
    let Some(public) = &bridge.public_media else { return StatusCode::NOT_FOUND.into_response() };
    if !public.verify(&server, &media_id, &sig) {
        return (StatusCode::NOT_FOUND, "no such media").into_response();
    }
    let mxc = ruma::OwnedMxcUri::from(format!("mxc://{server}/{media_id}"));
    match bridge.bot_intent().download_stream(&mxc).await {
        Ok((response, content_type)) => {
            // As the homeserver serves media: nothing it serves may run as a page of ours.
            let disposition = if is_inline_safe(&content_type) { "inline" } else { "attachment" };
            let length = response.content_length();
            let mut answer = (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "public, max-age=86400, immutable".to_owned()),
                    (header::CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';".to_owned()),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition.to_owned()),
                ],
                axum::body::Body::from_stream(response.bytes_stream()),
            )
                .into_response();
            if let Some(length) = length {
                answer.headers_mut().insert(header::CONTENT_LENGTH, length.into());
            }
            answer
        }
        Err(e) => {
            tracing::warn!(%mxc, error = %e, "could not fetch public media from the homeserver");
            (StatusCode::BAD_GATEWAY, "the homeserver did not return this media").into_response()
        }
    }
}

/// Whether media of this type may be shown inline (images and media that cannot carry
/// script); everything else is served as an attachment.
fn is_inline_safe(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "image/jpeg" | "image/gif" | "image/png" | "image/apng" | "image/webp" | "image/avif" | "video/mp4" | "video/webm" | "video/ogg" | "video/quicktime" | "audio/mp4" | "audio/webm" | "audio/aac" | "audio/mpeg" | "audio/ogg" | "audio/wave" | "audio/wav" | "audio/x-wav" | "audio/x-pn-wav" | "audio/flac" | "audio/x-flac"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_types_are_inline() {
        for t in ["image/png", "image/jpeg; charset=x", "video/mp4", "AUDIO/OGG"] {
            assert!(is_inline_safe(t), "{t}");
        }
        for t in ["image/svg+xml", "text/html", "application/octet-stream", "application/javascript", ""] {
            assert!(!is_inline_safe(t), "{t}");
        }
    }

    #[test]
    fn urls_are_signed_and_checked() {
        let media = PublicMedia::new(Url::parse("https://bridge.example.com/sub/").expect("url"), "secret-token");
        let mxc = ruma::OwnedMxcUri::from("mxc://example.com/abcDEF");
        let url = media.url_for(&mxc).expect("url");
        let prefix = "https://bridge.example.com/sub/_bridge/media/v1/example.com/abcDEF/";
        assert!(url.starts_with(prefix), "{url}");
        let sig = &url[prefix.len()..];
        assert!(media.verify("example.com", "abcDEF", sig));
        assert!(!media.verify("example.com", "other", sig));
        assert!(!media.verify("example.com", "abcDEF", "AAAA"));
        assert!(!media.verify("example.com", "abcDEF", "not base64!"));
        let other_key = PublicMedia::new(Url::parse("https://bridge.example.com/").expect("url"), "another-token");
        assert!(!other_key.verify("example.com", "abcDEF", sig));
        assert!(!format!("{media:?}").contains("key"));
    }
}
