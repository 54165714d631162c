//! Serialized file boxes: the JSON a Wechaty puppet service uses for files (message files,
//! avatars). A box carries its bytes inline (base64), points at a URL, names a file the
//! service stores under a UUID (fetched with `Download`; services turn every file over
//! [`INLINE_MAX`] into one), or holds a QR code's text.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

/// Files up to this size go inline (base64) in a file box; larger ones by UUID after
/// `Upload`, as wechaty-puppet-service does.
pub const INLINE_MAX: usize = 20 * 1024;

/// file-box's `FileBoxType` numbers.
mod kind {
    pub const BASE64: u8 = 1;
    pub const URL: u8 = 2;
    pub const QRCODE: u8 = 3;
    pub const UUID: u8 = 7;
}

/// A parsed file box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileBox {
    /// The bytes themselves.
    Inline {
        /// The file name.
        name: String,
        /// The content.
        data: Bytes,
    },
    /// A file to fetch over HTTP(S).
    Url {
        /// The file name.
        name: String,
        /// Where it is.
        url: String,
        /// Headers to send with the request.
        headers: Vec<(String, String)>,
    },
    /// A file the puppet service stores (fetched with `Download`).
    Uuid {
        /// The file name.
        name: String,
        /// Its UUID.
        uuid: String,
    },
    /// A QR code (its text), not a file (puppets answer this for "no avatar").
    QrCode(String),
}

impl FileBox {
    /// Parses a serialized file box; `None` for empty text, unknown kinds or bad JSON.
    pub fn parse(json: &str) -> Option<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default, rename = "type")]
            kind: Option<u8>,
            #[serde(default)]
            box_type: Option<u8>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            base64: Option<String>,
            #[serde(default)]
            url: Option<String>,
            #[serde(default)]
            headers: Option<serde_json::Map<String, serde_json::Value>>,
            #[serde(default)]
            uuid: Option<String>,
            #[serde(default)]
            qr_code: Option<String>,
        }
        if json.trim().is_empty() {
            return None;
        }
        let raw: Raw = serde_json::from_str(json).ok()?;
        let name = raw.name.unwrap_or_default();
        match raw.kind.filter(|k| *k != 0).or(raw.box_type)? {
            kind::BASE64 => {
                let data = base64::engine::general_purpose::STANDARD.decode(raw.base64?.trim()).ok()?;
                Some(Self::Inline { name, data: data.into() })
            }
            kind::URL => {
                let headers = raw
                    .headers
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                    .collect();
                Some(Self::Url { name, url: raw.url.filter(|u| !u.is_empty())?, headers })
            }
            kind::UUID => Some(Self::Uuid { name, uuid: raw.uuid.filter(|u| !u.is_empty())? }),
            kind::QRCODE => Some(Self::QrCode(raw.qr_code.unwrap_or_default())),
            _ => None,
        }
    }

    /// The file name the box gives.
    pub fn name(&self) -> &str {
        match self {
            Self::Inline { name, .. } | Self::Url { name, .. } | Self::Uuid { name, .. } => name,
            Self::QrCode(_) => "",
        }
    }
}

/// A file box carrying `data` inline.
pub fn inline_json(name: &str, data: &[u8]) -> String {
    let base64 = base64::engine::general_purpose::STANDARD.encode(data);
    json!({"type": kind::BASE64, "boxType": kind::BASE64, "name": name, "base64": base64, "size": data.len(), "metadata": {}})
        .to_string()
}

/// A file box naming a file stored on the service under `uuid`.
pub fn uuid_json(name: &str, uuid: &str, size: usize) -> String {
    json!({"type": kind::UUID, "boxType": kind::UUID, "name": name, "uuid": uuid, "size": size, "metadata": {}}).to_string()
}

/// FNV-1a of `data`, as 16 hex digits: stable across builds, unlike the standard
/// library's hasher (used for avatar versions).
pub fn stable_hash(data: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses() {
        let inline = inline_json("a.png", b"png bytes");
        assert_eq!(FileBox::parse(&inline), Some(FileBox::Inline { name: "a.png".to_owned(), data: Bytes::from_static(b"png bytes") }));
        let uuid = uuid_json("big.bin", "6f88b03c-1237-4f46-8db2-98ef23200551", 3_000_000);
        assert_eq!(
            FileBox::parse(&uuid),
            Some(FileBox::Uuid { name: "big.bin".to_owned(), uuid: "6f88b03c-1237-4f46-8db2-98ef23200551".to_owned() })
        );
        let url = r#"{"type":2,"name":"face.jpg","url":"https://example.com/f.jpg","headers":{"x-a":"1"}}"#;
        assert_eq!(
            FileBox::parse(url),
            Some(FileBox::Url {
                name: "face.jpg".to_owned(),
                url: "https://example.com/f.jpg".to_owned(),
                headers: vec![("x-a".to_owned(), "1".to_owned())]
            })
        );
        // Old services write `boxType` only.
        assert_eq!(FileBox::parse(r#"{"boxType":3,"qrCode":"avatar:x"}"#), Some(FileBox::QrCode("avatar:x".to_owned())));
    }

    #[test]
    fn broken_boxes_are_none() {
        for bad in ["", "  ", "not json", r#"{"type":9}"#, r#"{"type":1,"base64":"%%%"}"#, r#"{"type":2}"#, r#"{"type":7,"uuid":""}"#] {
            assert_eq!(FileBox::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hashes_are_stable() {
        assert_eq!(stable_hash(b""), "cbf29ce484222325");
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
    }
}
