//! Media: WhatsApp attachments ↔ the core's media, and the HTTP client whatsapp-rust uses
//! for them (and for the app version when it is fetched), over reqwest, every request with
//! a timeout.
//!
//! An incoming image, video, audio or voice note (PTT), document or sticker becomes the
//! core's [`Media`] whose `source` names the file on WhatsApp's media host and its keys
//! ([`incoming`]); the core has it downloaded ([`download`]): whatsapp-rust fetches the
//! encrypted file, checks its hash and MAC and decrypts it with the keys HKDF expands from
//! the message's media key. An outgoing file is encrypted and uploaded by whatsapp-rust
//! with a new media key ([`upload`]) and sent in the message of its kind.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bridge_core::network::events::{Media, MediaKind};
use bridge_core::network::NetworkError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use whatsapp_rust::download::{DownloadParams, Downloadable, MediaType};
use whatsapp_rust::media as builders;
use whatsapp_rust::wacore::net::{HttpRequest, HttpResponse};
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, UploadOptions};

use crate::handle_matrix::timed;

/// The longest one HTTP request may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The reqwest-backed [`whatsapp_rust::wacore::net::HttpClient`].
#[derive(Debug, Clone)]
pub struct HttpClient {
    http: reqwest::Client,
}

impl HttpClient {
    /// A client with the bridge's timeouts.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self { http }
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

/// whatsapp-rust writes every media URL as `https://<host>…`; in a build for the test
/// simulator only, its media host on 127.0.0.1 is reached over plain HTTP.
fn simulator_url(url: &str) -> String {
    match url.strip_prefix("https://127.0.0.1:") {
        Some(rest) if crate::TEST_SIMULATOR_BUILD => format!("http://127.0.0.1:{rest}"),
        _ => url.to_owned(),
    }
}

#[async_trait::async_trait]
impl whatsapp_rust::wacore::net::HttpClient for HttpClient {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())?;
        let mut builder = self.http.request(method, simulator_url(&request.url));
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await?;
        let status_code = response.status().as_u16();
        let body = response.bytes().await?.to_vec();
        Ok(HttpResponse { status_code, body })
    }
}

/// The kinds of WhatsApp attachments the bridge carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

impl Kind {
    /// whatsapp-rust's media type: it names the keys HKDF derives and the upload path.
    fn media_type(self) -> MediaType {
        match self {
            Kind::Image => MediaType::Image,
            Kind::Video => MediaType::Video,
            Kind::Audio => MediaType::Audio,
            Kind::Document => MediaType::Document,
            Kind::Sticker => MediaType::Sticker,
        }
    }
}

/// What an attachment is downloaded and decrypted with: the `source` of the core's
/// [`Media`], as JSON (the keys and hashes in base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Source {
    kind: Kind,
    direct_path: String,
    media_key: String,
    file_sha256: String,
    file_enc_sha256: String,
    file_length: u64,
    mime: Option<String>,
}

impl Source {
    /// The source of an attachment message, if it names one.
    fn of(kind: Kind, media: &dyn Downloadable, mime: Option<&str>) -> Option<String> {
        let source = Source {
            kind,
            direct_path: media.direct_path()?.to_owned(),
            media_key: BASE64.encode(media.media_key()?),
            file_sha256: BASE64.encode(media.file_sha256()?),
            file_enc_sha256: BASE64.encode(media.file_enc_sha256()?),
            file_length: media.file_length().unwrap_or_default(),
            mime: mime.map(str::to_owned),
        };
        serde_json::to_string(&source).ok()
    }

    fn params(&self) -> Option<DownloadParams> {
        Some(DownloadParams::encrypted(
            self.direct_path.clone(),
            &BASE64.decode(&self.media_key).ok()?,
            &BASE64.decode(&self.file_sha256).ok()?,
            &BASE64.decode(&self.file_enc_sha256).ok()?,
            self.file_length,
            self.kind.media_type(),
        ))
    }
}

/// A file name for an attachment that has none: its kind and the MIME type's extension.
fn default_filename(stem: &str, mime: Option<&str>) -> String {
    let extension = mime
        .and_then(|m| m.split(';').next())
        .and_then(|m| m.split('/').nth(1))
        .map(|e| match e {
            "jpeg" => "jpg",
            "ogg" | "opus" => "ogg",
            "quicktime" => "mov",
            other => other,
        })
        .filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric()));
    match extension {
        Some(extension) => format!("{stem}.{extension}"),
        None => stem.to_owned(),
    }
}

/// An attachment of a WhatsApp message, whichever its kind.
struct Attachment<'m> {
    kind: Kind,
    as_kind: MediaKind,
    file: &'m dyn Downloadable,
    mime: Option<&'m str>,
    /// The file name, or what a name is made of.
    name: Result<String, &'static str>,
    dimensions: Option<(u32, u32)>,
    seconds: Option<u32>,
    caption: Option<String>,
}

/// The attachment of a WhatsApp message, as the core's media (downloaded later, through
/// [`download`]); `None` for a message without one (or one that names no file).
pub(crate) fn incoming(message: &wa::Message) -> Option<Media> {
    let found = if let Some(m) = message.image_message.as_option() {
        Attachment {
            kind: Kind::Image,
            as_kind: MediaKind::Image,
            file: m,
            mime: m.mimetype.as_deref(),
            name: Err("image"),
            dimensions: m.width.zip(m.height),
            seconds: None,
            caption: m.caption.clone(),
        }
    } else if let Some(m) = message.video_message.as_option() {
        Attachment {
            kind: Kind::Video,
            as_kind: MediaKind::Video,
            file: m,
            mime: m.mimetype.as_deref(),
            name: Err("video"),
            dimensions: m.width.zip(m.height),
            seconds: m.seconds,
            caption: m.caption.clone(),
        }
    } else if let Some(m) = message.audio_message.as_option() {
        let voice = m.ptt.unwrap_or(false);
        Attachment {
            kind: Kind::Audio,
            as_kind: if voice {
                MediaKind::Voice
            } else {
                MediaKind::Audio
            },
            file: m,
            mime: m.mimetype.as_deref(),
            name: Err(if voice { "voice message" } else { "audio" }),
            dimensions: None,
            seconds: m.seconds,
            caption: None,
        }
    } else if let Some(m) = message.document_message.as_option() {
        let name = m.file_name.clone().or_else(|| m.title.clone());
        Attachment {
            kind: Kind::Document,
            as_kind: MediaKind::File,
            file: m,
            mime: m.mimetype.as_deref(),
            name: name.filter(|n| !n.is_empty()).ok_or("file"),
            dimensions: None,
            seconds: None,
            caption: m.caption.clone(),
        }
    } else if let Some(m) = message.sticker_message.as_option() {
        Attachment {
            kind: Kind::Sticker,
            as_kind: MediaKind::Sticker,
            file: m,
            mime: m.mimetype.as_deref(),
            name: Err("sticker"),
            dimensions: m.width.zip(m.height),
            seconds: None,
            caption: None,
        }
    } else {
        return None;
    };
    Some(Media {
        kind: found.as_kind,
        source: Source::of(found.kind, found.file, found.mime)?,
        filename: found
            .name
            .unwrap_or_else(|stem| default_filename(stem, found.mime)),
        mime: found.mime.map(str::to_owned),
        size: found.file.file_length(),
        dimensions: found.dimensions,
        duration_ms: found.seconds.map(|s| u64::from(s) * 1000),
        caption: found.caption.filter(|c| !c.is_empty()),
    })
}

/// Downloads and decrypts an attachment named by [`incoming`]'s source: whatsapp-rust
/// checks the MAC and both hashes before anything is returned.
pub(crate) async fn download(
    client: &Client,
    source: &str,
) -> Result<(Bytes, Option<String>), NetworkError> {
    let source: Source = serde_json::from_str(source)
        .map_err(|_| NetworkError::NotFound("that WhatsApp attachment".to_owned()))?;
    let params = source
        .params()
        .ok_or_else(|| NetworkError::NotFound("that WhatsApp attachment".to_owned()))?;
    let data = timed(client.download(&params)).await?;
    Ok((Bytes::from(data), source.mime))
}

/// Encrypts and uploads a Matrix file to WhatsApp (whatsapp-rust derives the media keys,
/// encrypts and MACs it); returns the message that carries it. A Matrix sticker goes as an
/// image, a voice message as a voice note (PTT).
pub(crate) async fn upload(
    client: &Client,
    kind: MediaKind,
    data: Bytes,
    filename: &str,
    mime: &str,
    caption: Option<String>,
) -> Result<wa::Message, NetworkError> {
    let kind_of_file = match kind {
        MediaKind::Image | MediaKind::Sticker => Kind::Image,
        MediaKind::Video => Kind::Video,
        MediaKind::Audio | MediaKind::Voice => Kind::Audio,
        MediaKind::File => Kind::Document,
    };
    let upload = client.upload(
        data.to_vec(),
        kind_of_file.media_type(),
        UploadOptions::default(),
    );
    let uploaded = timed(upload).await?;
    let mimetype = Some(mime.to_owned());
    let message = match kind_of_file {
        Kind::Image | Kind::Sticker => builders::image_message(
            uploaded,
            builders::ImageOptions {
                caption,
                mimetype,
                ..Default::default()
            },
        ),
        Kind::Video => builders::video_message(
            uploaded,
            builders::VideoOptions {
                caption,
                mimetype,
                ..Default::default()
            },
        ),
        Kind::Audio => builders::audio_message(
            uploaded,
            builders::AudioOptions {
                mimetype,
                ptt: Some(kind == MediaKind::Voice),
                ..Default::default()
            },
        ),
        Kind::Document => builders::document_message(
            uploaded,
            builders::DocumentOptions {
                mimetype,
                file_name: Some(filename.to_owned()),
                title: Some(filename.to_owned()),
                caption,
                ..Default::default()
            },
        ),
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_without_a_name_are_named_by_kind_and_type() {
        let cases = [
            ("image", Some("image/jpeg"), "image.jpg"),
            (
                "voice message",
                Some("audio/ogg; codecs=opus"),
                "voice message.ogg",
            ),
            ("file", Some("application/pdf"), "file.pdf"),
            ("file", None, "file"),
            ("file", Some("application/vnd.ms-excel+x"), "file"),
        ];
        for (stem, mime, want) in cases {
            assert_eq!(default_filename(stem, mime), want, "{mime:?}");
        }
    }

    #[test]
    fn a_source_names_the_file_and_its_keys() {
        let image = wa::message::ImageMessage {
            direct_path: Some("/v/t62/image/abc".to_owned()),
            media_key: Some(vec![1; 32]),
            file_sha256: Some(vec![2; 32]),
            file_enc_sha256: Some(vec![3; 32]),
            file_length: Some(1234),
            mimetype: Some("image/png".to_owned()),
            width: Some(10),
            height: Some(20),
            caption: Some("cat".to_owned()),
            ..Default::default()
        };
        let message = wa::Message {
            image_message: whatsapp_rust::buffa::MessageField::some(image),
            ..Default::default()
        };
        let media = incoming(&message).expect("an image");
        assert_eq!(media.kind, MediaKind::Image);
        assert_eq!(media.filename, "image.png");
        assert_eq!(media.dimensions, Some((10, 20)));
        assert_eq!(media.caption.as_deref(), Some("cat"));
        let source: Source = serde_json::from_str(&media.source).expect("a source");
        let params = source.params().expect("download parameters");
        assert_eq!(params.direct_path, "/v/t62/image/abc");
        assert_eq!(params.media_key, Some(vec![1; 32]));
        assert_eq!(params.file_length, 1234);
        assert!(incoming(&wa::Message::default()).is_none());
    }
}
