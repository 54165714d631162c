//! Fetching files for Matrix: message files (through `MessageFile` and, for large ones, the
//! service's `Download` stream; the older chunk streams as a fallback) and avatars, whose
//! file boxes may be inline, stored on the service under a UUID, or a URL the bridge
//! downloads itself.

use std::time::Duration;

use bridge_core::network::events::AvatarRef;
use bridge_core::network::NetworkError;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;

use crate::client::Shared;
use crate::convert;
use crate::file_box::{stable_hash, FileBox};
use crate::ids::is_room;
use crate::puppet::PuppetError;

/// Largest file fetched from a URL file box.
const MAX_URL_FILE: usize = 50 * 1024 * 1024;

/// Timeout of one URL download.
const URL_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client for URL file boxes: no cookies, a few redirects, a timeout.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(URL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("bridge-wechat/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// A client for `url` that connects only to the public addresses its host resolves to
/// (pinned, so a second lookup cannot change them) and follows no redirects: a puppet
/// service run by a user must not make the bridge fetch from the bridge's own network.
async fn public_only_client(url: &str) -> Result<reqwest::Client, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = parsed.port_or_known_default().ok_or("no port")?;
    let addresses: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| e.to_string())?.collect();
    if addresses.is_empty() || !addresses.iter().all(|a| is_public(a.ip())) {
        return Err("the address is not public".to_owned());
    }
    reqwest::Client::builder()
        .timeout(URL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addresses)
        .build()
        .map_err(|e| e.to_string())
}

/// Whether `ip` is a public unicast address (not loopback, private, link-local, shared,
/// documentation, multicast or unspecified).
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || v6.is_unique_local() || v6.is_unicast_link_local()),
        },
    }
}

impl Shared {
    /// The bytes of a file box (`None` for QR-code boxes, which hold no file).
    pub(crate) async fn fetch_file_box(&self, file_box: &FileBox) -> Result<Option<Bytes>, NetworkError> {
        match file_box {
            FileBox::Inline { data, .. } => Ok(Some(data.clone())),
            FileBox::Uuid { uuid, name } => {
                tracing::debug!(uuid, name, "reading a file stored on the puppet service");
                Ok(Some(self.puppet.download(uuid).await?))
            }
            FileBox::Url { url, headers, .. } => self.fetch_url(url, headers).await.map(Some),
            FileBox::QrCode(_) => Ok(None),
        }
    }

    /// Downloads a URL file box.
    async fn fetch_url(&self, url: &str, headers: &[(String, String)]) -> Result<Bytes, NetworkError> {
        let failed = |what: String| NetworkError::Remote(format!("could not download {url}: {what}"));
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(failed("not an http(s) address".to_owned()));
        }
        let client = if self.users_own_service { public_only_client(url).await.map_err(failed)? } else { self.http.clone() };
        let mut request = client.get(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| failed(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(failed(response.status().to_string()));
        }
        if response.content_length().is_some_and(|len| len > MAX_URL_FILE as u64) {
            return Err(failed("larger than 50 MiB".to_owned()));
        }
        let mut data = BytesMut::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| failed(e.without_url().to_string()))?;
            if data.len() + chunk.len() > MAX_URL_FILE {
                return Err(failed("larger than 50 MiB".to_owned()));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data.freeze())
    }

    /// A message's file: its name and bytes. Tries `MessageFile` first (the 1.x call; large
    /// files come as UUID boxes read with `Download`), then the older chunk streams (for an
    /// image, the HD image stream last).
    pub(crate) async fn message_file(&self, id: &str, image: bool) -> Result<(String, Bytes), NetworkError> {
        match self.puppet.message_file_box(id).await {
            Ok(json) => match FileBox::parse(&json) {
                Some(file_box) => {
                    if let Some(data) = self.fetch_file_box(&file_box).await? {
                        return Ok((file_box.name().to_owned(), data));
                    }
                }
                None => tracing::debug!(message = id, "MessageFile gave no usable file box"),
            },
            Err(error @ (PuppetError::Unavailable(_) | PuppetError::Timeout(_) | PuppetError::Unauthenticated)) => {
                return Err(error.into())
            }
            Err(error) => tracing::debug!(%error, message = id, "MessageFile failed; trying the file stream"),
        }
        match self.puppet.message_file_stream(id, false).await {
            Ok(file) if !file.1.is_empty() || !image => Ok(file),
            Err(error) if !image => Err(error.into()),
            _ => Ok(self.puppet.message_file_stream(id, true).await?),
        }
    }

    /// The file box of a contact's or room's avatar (`None` if it has none).
    async fn avatar_box(&self, id: &str) -> Result<Option<FileBox>, NetworkError> {
        let json = if is_room(id) { self.puppet.room_avatar(id).await? } else { self.puppet.contact_avatar(id).await? };
        Ok(FileBox::parse(&json).filter(|b| !matches!(b, FileBox::QrCode(_))))
    }

    /// The avatar of a contact or room, versioned by its image (or its address), for user
    /// and chat info; `None` if it has none or it cannot be read.
    pub(crate) async fn avatar(&self, id: &str) -> Option<AvatarRef> {
        let file_box = match self.avatar_box(id).await {
            Ok(file_box) => file_box?,
            Err(error) => {
                tracing::debug!(%error, id, "no avatar");
                return None;
            }
        };
        let version = match convert::avatar_version(&file_box) {
            Some(version) => version,
            // A UUID names a copy the service made for this call: only the content says
            // whether the image changed.
            None => match self.fetch_file_box(&file_box).await {
                Ok(Some(data)) if !data.is_empty() => format!("{}-{}", stable_hash(&data), data.len()),
                Ok(_) => return None,
                Err(error) => {
                    tracing::debug!(%error, id, "could not read an avatar");
                    return None;
                }
            },
        };
        Some(convert::avatar_ref(id, version))
    }

    /// The image of a contact's or room's avatar.
    pub(crate) async fn avatar_image(&self, id: &str) -> Result<(String, Bytes), NetworkError> {
        let missing = || NetworkError::NotFound(format!("the avatar of {id}"));
        let file_box = self.avatar_box(id).await?.ok_or_else(missing)?;
        let data = self.fetch_file_box(&file_box).await?.filter(|d| !d.is_empty()).ok_or_else(missing)?;
        Ok((file_box.name().to_owned(), data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_count_as_public() {
        for (ip, public) in [
            ("8.8.8.8", true),
            ("2001:4860:4860::8888", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("192.168.0.1", false),
            ("172.16.5.4", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
        ] {
            assert_eq!(is_public(ip.parse().expect("ip")), public, "{ip}");
        }
    }

    #[tokio::test]
    async fn a_users_own_service_cannot_point_the_bridge_at_its_own_network() {
        let error = public_only_client("http://127.0.0.1:1/avatar.png").await.expect_err("loopback");
        assert!(error.contains("not public"), "{error}");
    }
}
