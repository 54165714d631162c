//! The width and height of an image from its header (PNG, GIF, JPEG, WebP), for the
//! `info.w` / `info.h` of image events when the network does not give them: clients size
//! the image's placeholder before they download it. Only the header is read, nothing is
//! decoded; anything unrecognised or truncated gives `None`.

/// The (width, height) of the image in `data`, if its format is known and its header whole.
pub(crate) fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    let found = if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(data)
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some((le16(data, 6)?, le16(data, 8)?))
    } else if data.starts_with(&[0xFF, 0xD8]) {
        jpeg(data)
    } else if data.get(0..4) == Some(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        webp(data)
    } else {
        None
    };
    found.filter(|&(w, h)| w > 0 && h > 0)
}

/// PNG: the first chunk is IHDR, starting with the width and height (big-endian).
fn png(data: &[u8]) -> Option<(u32, u32)> {
    (data.get(12..16)? == b"IHDR").then_some(())?;
    Some((be32(data, 16)?, be32(data, 20)?))
}

/// JPEG: walks the marker segments up to the first start-of-frame (SOF0–SOF15 but the
/// DHT, JPG and DAC markers), which holds the height then the width.
fn jpeg(data: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        if *data.get(at)? != 0xFF {
            return None;
        }
        while *data.get(at)? == 0xFF {
            at += 1; // fill bytes
        }
        let marker = *data.get(at)?;
        at += 1;
        match marker {
            0x01 | 0xD0..=0xD8 => continue, // no length
            0xD9 | 0xDA => return None,      // end of image, start of scan: no frame header
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return Some((be16(data, at + 5)?, be16(data, at + 3)?));
            }
            _ => at += usize::try_from(be16(data, at)?).ok()?,
        }
    }
}

/// WebP: lossy (`VP8 `), lossless (`VP8L`) or extended (`VP8X`) first chunk.
fn webp(data: &[u8]) -> Option<(u32, u32)> {
    match data.get(12..16)? {
        b"VP8 " => {
            (data.get(23..26)? == [0x9D, 0x01, 0x2A]).then_some(())?;
            Some((le16(data, 26)? & 0x3FFF, le16(data, 28)? & 0x3FFF))
        }
        b"VP8L" => {
            (*data.get(20)? == 0x2F).then_some(())?;
            let bits = u32::from_le_bytes(data.get(21..25)?.try_into().ok()?);
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => Some((le24(data, 24)? + 1, le24(data, 27)? + 1)),
        _ => None,
    }
}

fn be16(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?)))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn le16(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?)))
}

fn le24(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 3)?;
    Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
}

#[cfg(test)]
mod tests {
    use super::dimensions;

    /// A PNG header of `w`×`h` (signature, IHDR length and type, size).
    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        data.extend(w.to_be_bytes());
        data.extend(h.to_be_bytes());
        data.extend([8, 6, 0, 0, 0]);
        data
    }

    /// A JPEG with an APP0 segment, fill bytes, then SOF2 (progressive) of `w`×`h`.
    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut data = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        data.extend(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        data.extend([0xFF, 0xFF, 0xC2, 0x00, 0x11, 0x08]);
        data.extend(h.to_be_bytes());
        data.extend(w.to_be_bytes());
        data.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        data
    }

    fn webp(chunk: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut data = b"RIFF\0\0\0\0WEBP".to_vec();
        data.extend(chunk);
        data.extend(u32::try_from(body.len()).unwrap_or_default().to_le_bytes());
        data.extend(body);
        data
    }

    #[test]
    fn headers_give_the_size() {
        let vp8l_bits: u32 = (640 - 1) | (480 - 1) << 14;
        let mut vp8l = vec![0x2F];
        vp8l.extend(vp8l_bits.to_le_bytes());
        /// (what, the bytes, the size they give)
        type Case<'a> = (&'a str, Vec<u8>, Option<(u32, u32)>);
        let cases: Vec<Case> = vec![
            ("png", png(800, 600), Some((800, 600))),
            ("gif", b"GIF89a\x40\x01\xf0\x00\x80\0\0".to_vec(), Some((320, 240))),
            ("jpeg", jpeg(1024, 768), Some((1024, 768))),
            ("webp lossy", webp(b"VP8 ", &[0, 0, 0, 0x9D, 0x01, 0x2A, 0x90, 0x01, 0x2C, 0x01]), Some((400, 300))),
            ("webp lossless", webp(b"VP8L", &vp8l), Some((640, 480))),
            ("webp extended", webp(b"VP8X", &[0, 0, 0, 0, 0x7F, 0x07, 0, 0x37, 0x04, 0]), Some((1920, 1080))),
            ("truncated png", png(800, 600)[..20].to_vec(), None),
            ("jpeg without a frame", vec![0xFF, 0xD8, 0xFF, 0xDA, 0, 2], None),
            ("zero size", png(0, 600), None),
            ("not an image", b"%PDF-1.4".to_vec(), None),
            ("empty", Vec::new(), None),
        ];
        for (name, data, want) in cases {
            assert_eq!(dimensions(&data), want, "{name}");
        }
    }

    #[test]
    fn a_rendered_qr_code_has_its_size() {
        let image = crate::login::qr::render_png("https://example.com/qr").expect("png");
        assert_eq!(dimensions(&image.bytes), Some((image.width, image.width)));
    }
}
