//! Rendering a login QR code as a PNG image, and the `m.image` content that shows it.
//!
//! The QR code's content is a credential (whoever scans it first logs in), so neither the
//! data nor the image is ever logged.

use ruma::{EventId, MxcUri};
use serde_json::{json, Value};

/// Pixels per QR module.
pub const MODULE_PX: u32 = 8;
/// Width of the white border around the code, in modules (the QR standard asks for 4).
pub const QUIET_ZONE: u32 = 4;

/// Errors while rendering a QR code.
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    /// The data does not fit in a QR code.
    #[error("cannot encode the QR code: {0}")]
    Encode(String),
    /// The PNG encoder failed.
    #[error("cannot write the QR image: {0}")]
    Png(String),
}

/// A rendered QR code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrPng {
    /// The PNG file.
    pub bytes: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels (the same as the width).
    pub height: u32,
}

/// Renders `data` as a black-on-white 8-bit grayscale PNG, [`MODULE_PX`] pixels per
/// module with a [`QUIET_ZONE`]-module border.
pub fn render_png(data: &str) -> Result<QrPng, QrError> {
    let code = qrcode::QrCode::new(data.as_bytes()).map_err(|e| QrError::Encode(e.to_string()))?;
    let modules = u32::try_from(code.width()).map_err(|e| QrError::Encode(e.to_string()))?;
    let colors = code.to_colors();
    let side_modules = modules + 2 * QUIET_ZONE;
    let side = side_modules * MODULE_PX;
    let mut pixels = vec![0xFFu8; (side * side) as usize];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let index = index as u32;
        let (mx, my) = (index % modules + QUIET_ZONE, index / modules + QUIET_ZONE);
        for y in my * MODULE_PX..(my + 1) * MODULE_PX {
            let row = (y * side) as usize;
            let start = row + (mx * MODULE_PX) as usize;
            pixels[start..start + MODULE_PX as usize].fill(0);
        }
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| QrError::Png(e.to_string()))?;
        writer.write_image_data(&pixels).map_err(|e| QrError::Png(e.to_string()))?;
        writer.finish().map_err(|e| QrError::Png(e.to_string()))?;
    }
    Ok(QrPng { bytes, width: side, height: side })
}

/// The `m.image` content showing an uploaded QR code: the body is the step's instructions
/// followed by "QR code", with the image's size and type in `info`.
pub fn image_content(instructions: &str, url: &MxcUri, image: &QrPng) -> Value {
    let body = if instructions.trim().is_empty() {
        "QR code".to_owned()
    } else {
        format!("{}\nQR code", instructions.trim_end())
    };
    json!({
        "msgtype": "m.image",
        "body": body,
        "filename": "qr.png",
        "url": url.as_str(),
        "info": {
            "mimetype": "image/png",
            "size": image.bytes.len(),
            "w": image.width,
            "h": image.height,
        },
    })
}

/// An edit of the QR image event `original` that replaces it with `new_content`
/// (as made by [`image_content`]); the fallback body is prefixed with `* `.
pub fn edit_content(original: &EventId, new_content: &Value) -> Value {
    let mut content = new_content.clone();
    let body = new_content.get("body").and_then(Value::as_str).unwrap_or_default();
    content["body"] = Value::String(format!("* {body}"));
    content["m.new_content"] = new_content.clone();
    content["m.relates_to"] = json!({ "rel_type": "m.replace", "event_id": original.as_str() });
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("png frame");
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn renders_a_png_of_the_expected_size() {
        let cases = ["short", "2@AbCdEfGhIjKlMnOpQrStUvWxYz0123456789,abcdefghijklmnopqrstuvwxyz==,more,data"];
        for data in cases {
            let image = render_png(data).expect("renders");
            let modules = qrcode::QrCode::new(data.as_bytes()).expect("encodes").width() as u32;
            let side = (modules + 2 * QUIET_ZONE) * MODULE_PX;
            let (w, h, pixels) = decode(&image.bytes);
            assert_eq!((w, h), (side, side), "{data}");
            assert_eq!((image.width, image.height), (side, side));
            // The quiet zone is white, the finder pattern's corner is black.
            assert_eq!(pixels[0], 0xFF);
            let corner = (QUIET_ZONE * MODULE_PX) as usize;
            assert_eq!(pixels[corner * side as usize + corner], 0);
        }
    }

    #[test]
    fn image_and_edit_contents_have_the_expected_shape() {
        let image = QrPng { bytes: vec![1, 2, 3], width: 10, height: 10 };
        let url = <&MxcUri>::from("mxc://example.com/abc");
        let content = image_content("Scan this with your phone", url, &image);
        assert_eq!(content["msgtype"], "m.image");
        assert_eq!(content["body"], "Scan this with your phone\nQR code");
        assert_eq!(content["info"], json!({"mimetype": "image/png", "size": 3, "w": 10, "h": 10}));
        let original = ruma::event_id!("$first:example.com");
        let edit = edit_content(original, &content);
        assert_eq!(edit["body"], "* Scan this with your phone\nQR code");
        assert_eq!(edit["m.new_content"], content);
        assert_eq!(edit["m.relates_to"], json!({"rel_type": "m.replace", "event_id": "$first:example.com"}));
        assert_eq!(image_content("", url, &image)["body"], "QR code");
    }
}
