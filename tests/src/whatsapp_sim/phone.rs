//! The simulated phone (the account's primary device): it reads a companion's QR code and
//! vouches for the companion as WhatsApp's phones do, with an `ADVSignedDeviceIdentityHMAC`
//! (HMAC-SHA256 keyed by the QR's ADV secret over an `ADVSignedDeviceIdentity` whose account
//! signature is the phone identity's XEdDSA signature over `[6, 0] ‖ device identity ‖
//! companion identity key`).

use anyhow::{anyhow, Context as _};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use whatsapp_rust::buffa::Message as _;
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore::pair_code::PairCodeUtils;
use whatsapp_rust::waproto::whatsapp as wa;

/// What a companion's QR code says.
#[derive(Debug, Clone)]
pub struct Qr {
    /// The pairing reference the server gave the companion.
    pub reference: String,
    /// The companion's Noise static key.
    pub noise_key: [u8; 32],
    /// The companion's Signal identity key.
    pub identity_key: [u8; 32],
    /// The secret shared between phone and companion, never seen by the server.
    adv_secret: [u8; 32],
}

/// Reads a QR code's text: `ref,noise,identity,adv[,platform]`, keys in base64.
pub fn parse_qr(text: &str) -> anyhow::Result<Qr> {
    let parts: Vec<&str> = text.trim().split(',').collect();
    let [reference, noise, identity, adv, ..] = parts[..] else {
        return Err(anyhow!(
            "a WhatsApp QR code has at least 4 fields, this has {}",
            parts.len()
        ));
    };
    let key = |b64: &str, what: &str| -> anyhow::Result<[u8; 32]> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("{what} is not base64"))?;
        bytes
            .try_into()
            .map_err(|_| anyhow!("{what} is not 32 bytes"))
    };
    Ok(Qr {
        reference: reference.to_owned(),
        noise_key: key(noise, "the noise key")?,
        identity_key: key(identity, "the identity key")?,
        adv_secret: key(adv, "the ADV secret")?,
    })
}

/// An account's phone: its number and its identity key.
pub(crate) struct Phone {
    identity: KeyPair,
}

impl Phone {
    /// A phone with a fresh identity.
    pub(crate) fn new() -> Self {
        Self {
            identity: KeyPair::generate(&mut rand_wa::rng()),
        }
    }

    /// The `device-identity` of a `pair-success` for the companion of `qr`, as device
    /// number `key_index` of the account.
    pub(crate) fn vouch(&self, qr: &Qr, key_index: u32) -> anyhow::Result<Vec<u8>> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let details = wa::ADVDeviceIdentity {
            raw_id: Some(rand::random::<u32>() >> 1),
            timestamp: Some(timestamp),
            key_index: Some(key_index),
            ..Default::default()
        }
        .encode_to_vec();
        let mut signed_message = vec![6, 0];
        signed_message.extend_from_slice(&details);
        signed_message.extend_from_slice(&qr.identity_key);
        let signature = self
            .identity
            .private_key
            .calculate_signature(&signed_message, &mut rand_wa::rng())
            .map_err(|e| anyhow!("signing the device identity: {e}"))?;
        let signed = wa::ADVSignedDeviceIdentity {
            details: Some(details),
            account_signature_key: Some(self.identity.public_key.public_key_bytes().to_vec()),
            account_signature: Some(signature.to_vec()),
            ..Default::default()
        }
        .encode_to_vec();
        let mut mac = Hmac::<Sha256>::new_from_slice(&qr.adv_secret).map_err(|e| anyhow!("{e}"))?;
        mac.update(&signed);
        let hmac = mac.finalize().into_bytes().to_vec();
        Ok(wa::ADVSignedDeviceIdentityHMAC {
            details: Some(signed),
            hmac: Some(hmac),
            ..Default::default()
        }
        .encode_to_vec())
    }
}

/// Reads the QR code in a PNG image (8-bit grayscale or RGB(A)), as a phone's camera would.
pub fn read_qr_png(png_bytes: &[u8]) -> anyhow::Result<String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().context("read the PNG header")?;
    let mut pixels = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| anyhow!("the PNG is too large"))?
    ];
    let frame = reader.next_frame(&mut pixels).context("decode the PNG")?;
    let channels = frame.color_type.samples();
    let (width, height) = (frame.width as usize, frame.height as usize);
    let luma = |x: usize, y: usize| pixels[(y * width + x) * channels];
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, luma);
    let grid = image
        .detect_grids()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no QR code in the image"))?;
    let (_, text) = grid
        .decode()
        .map_err(|e| anyhow!("unreadable QR code: {e}"))?;
    Ok(text)
}

/// The phone's half of a pairing-code link, between the code being typed and the
/// companion's key bundle.
pub(crate) struct CodeLink {
    ephemeral: KeyPair,
    companion_ephemeral: [u8; 32],
}

impl Phone {
    /// The user typed `code` for the companion whose wrapped ephemeral key is `wrapped`:
    /// returns the phone's own wrapped ephemeral key and identity key for `primary_hello`,
    /// and what finishing the link needs.
    pub(crate) fn enter_code(
        &self,
        wrapped: &[u8],
        code: &str,
    ) -> anyhow::Result<(Vec<u8>, Vec<u8>, CodeLink)> {
        let companion_ephemeral = PairCodeUtils::decrypt_primary_ephemeral_pub(wrapped, code)
            .map_err(|e| anyhow!("{e}"))?;
        let ephemeral = KeyPair::generate(&mut rand_wa::rng());
        let mut public = [0; 32];
        public.copy_from_slice(ephemeral.public_key.public_key_bytes());
        let wrapped_own = PairCodeUtils::encrypt_ephemeral_pub(&public, code).to_vec();
        let identity = self.identity.public_key.public_key_bytes().to_vec();
        Ok((
            wrapped_own,
            identity,
            CodeLink {
                ephemeral,
                companion_ephemeral,
            },
        ))
    }

    /// Opens the companion's key bundle (`companion_finish`) and derives the ADV secret the
    /// phone and companion now share, as a [`Qr`] the phone can vouch with.
    pub(crate) fn finish_code(
        &self,
        link: &CodeLink,
        wrapped_bundle: &[u8],
        noise_key: [u8; 32],
    ) -> anyhow::Result<Qr> {
        use whatsapp_rust::wacore::crypto::hkdf_sha256_into;
        use whatsapp_rust::wacore::libsignal::protocol::PublicKey;
        let companion_ephemeral = PublicKey::from_djb_public_key_bytes(&link.companion_ephemeral)?;
        let ephemeral_shared = link
            .ephemeral
            .private_key
            .calculate_agreement(&companion_ephemeral)?;
        anyhow::ensure!(wrapped_bundle.len() > 44, "the key bundle is too short");
        let (salt, rest) = wrapped_bundle.split_at(32);
        let (iv, sealed) = rest.split_at(12);
        let iv: [u8; 12] = iv.try_into()?;
        let mut key = [0; 32];
        hkdf_sha256_into(
            &ephemeral_shared,
            Some(salt),
            b"link_code_pairing_key_bundle_encryption_key",
            &mut key,
        )
        .map_err(|_| anyhow!("hkdf"))?;
        let mut bundle = Vec::new();
        whatsapp_rust::wacore::libsignal::crypto::aes_256_gcm_decrypt(
            &key,
            &iv,
            b"",
            sealed,
            &mut bundle,
        )
        .map_err(|e| anyhow!("the key bundle does not open (wrong code?): {e:?}"))?;
        anyhow::ensure!(
            bundle.len() == 96,
            "the key bundle is {} bytes",
            bundle.len()
        );
        let identity_key: [u8; 32] = bundle[..32].try_into()?;
        let companion_identity = PublicKey::from_djb_public_key_bytes(&identity_key)?;
        let identity_shared = self
            .identity
            .private_key
            .calculate_agreement(&companion_identity)?;
        let mut combined = ephemeral_shared.to_vec();
        combined.extend_from_slice(&identity_shared);
        combined.extend_from_slice(&bundle[64..96]);
        let mut adv_secret = [0; 32];
        hkdf_sha256_into(&combined, None, b"adv_secret", &mut adv_secret)
            .map_err(|_| anyhow!("hkdf"))?;
        Ok(Qr {
            reference: String::new(),
            noise_key,
            identity_key,
            adv_secret,
        })
    }
}
