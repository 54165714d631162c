//! The server side of WhatsApp's Noise handshake (XX for a first connect, IK for a device
//! that kept the server's certificate) and the encrypted frames after it.
//!
//! Built on whatsapp-rust's own primitives (`NoiseHandshake`, `framing`, the protobuf
//! types); the certificate chain is `wacore-noise`'s test chain, which only a client built
//! with `danger-skip-cert-chain-verify` accepts.

use anyhow::{anyhow, Context as _};
use whatsapp_rust::buffa::{Message as _, MessageField};
use whatsapp_rust::wacore::handshake::{NoiseCipher, NoiseHandshake};
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore_binary::consts::{NOISE_PATTERN_IK, NOISE_PATTERN_XX, WA_CONN_HEADER};
use whatsapp_rust::wacore_binary::{marshal::marshal, util::unpack, Node, OwnedNodeRef};
use whatsapp_rust::waproto::whatsapp as wa;

/// The simulator's long-lived Noise identity and its certificate chain.
pub(crate) struct ServerKeys {
    static_kp: KeyPair,
    cert_chain: Vec<u8>,
}

impl ServerKeys {
    /// A fresh identity.
    pub(crate) fn generate() -> Self {
        let static_kp = KeyPair::generate(&mut rand_wa::rng());
        let cert_chain = wacore_noise::test_util::build_cert_chain_bytes(&public(&static_kp));
        Self {
            static_kp,
            cert_chain,
        }
    }
}

fn public(kp: &KeyPair) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(kp.public_key.public_key_bytes());
    out
}

/// What the client sent in the handshake: its static key and its login or registration.
pub(crate) struct Hello {
    /// The client's static Noise key (a device's identity towards the server).
    pub(crate) client_static: [u8; 32],
    /// The `ClientPayload`.
    pub(crate) payload: wa::ClientPayload,
}

/// The handshake's first message, and whether it is IK (the client knew our key).
pub(crate) fn parse_client_hello(
    frame: &[u8],
) -> anyhow::Result<wa::handshake_message::ClientHello> {
    let message = wa::HandshakeMessage::decode_from_slice(frame).context("decode ClientHello")?;
    message
        .client_hello
        .into_option()
        .ok_or_else(|| anyhow!("no ClientHello"))
}

/// A handshake in progress on the server side.
pub(crate) enum Responder {
    /// XX: the ServerHello was sent; the ClientFinish is awaited.
    Xx {
        noise: NoiseHandshake,
        ephemeral: KeyPair,
    },
}

/// After the ServerHello: the finished IK handshake, or the XX one awaiting the ClientFinish.
pub(crate) type Answered = Result<(Hello, Ciphers), Responder>;

/// Answers a ClientHello. For XX returns the ServerHello and the state awaiting the
/// ClientFinish; for IK returns the ServerHello and the finished handshake.
pub(crate) fn answer_hello(
    keys: &ServerKeys,
    hello: wa::handshake_message::ClientHello,
) -> anyhow::Result<(Vec<u8>, Answered)> {
    let client_ephemeral: [u8; 32] = hello
        .ephemeral
        .ok_or_else(|| anyhow!("no ephemeral key"))?
        .try_into()
        .map_err(|_| anyhow!("bad ephemeral"))?;
    let ephemeral = KeyPair::generate(&mut rand_wa::rng());
    match (hello.r#static, hello.payload) {
        (Some(encrypted_static), Some(encrypted_payload)) => {
            // IK: -> e, es, s, ss (payload) / <- e, ee, se (certificate).
            let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
            noise.authenticate(&public(&keys.static_kp));
            noise.authenticate(&client_ephemeral);
            noise.mix_shared_secret(keys.static_kp.private_key.serialize(), &client_ephemeral)?;
            let client_static: [u8; 32] = noise
                .decrypt(&encrypted_static)?
                .try_into()
                .map_err(|_| anyhow!("bad client static key"))?;
            noise.mix_shared_secret(keys.static_kp.private_key.serialize(), &client_static)?;
            let payload = noise.decrypt(&encrypted_payload)?;
            noise.authenticate(&public(&ephemeral));
            noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_ephemeral)?;
            noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
            let certificate = noise.encrypt(&keys.cert_chain)?;
            let reply = server_hello(&ephemeral, None, certificate);
            let payload =
                wa::ClientPayload::decode_from_slice(&payload).context("decode ClientPayload")?;
            Ok((
                reply,
                Ok((
                    Hello {
                        client_static,
                        payload,
                    },
                    Ciphers::from(noise)?,
                )),
            ))
        }
        _ => {
            // XX: -> e / <- e, ee, s, es (certificate) / -> s, se (payload).
            let mut noise = NoiseHandshake::new(NOISE_PATTERN_XX, &WA_CONN_HEADER)?;
            noise.authenticate(&client_ephemeral);
            noise.authenticate(&public(&ephemeral));
            noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_ephemeral)?;
            let encrypted_static = noise.encrypt(&public(&keys.static_kp))?;
            noise.mix_shared_secret(keys.static_kp.private_key.serialize(), &client_ephemeral)?;
            let certificate = noise.encrypt(&keys.cert_chain)?;
            let reply = server_hello(&ephemeral, Some(encrypted_static), certificate);
            Ok((reply, Err(Responder::Xx { noise, ephemeral })))
        }
    }
}

fn server_hello(
    ephemeral: &KeyPair,
    encrypted_static: Option<Vec<u8>>,
    payload: Vec<u8>,
) -> Vec<u8> {
    wa::HandshakeMessage {
        server_hello: MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(public(ephemeral).to_vec()),
            r#static: encrypted_static,
            payload: Some(payload),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Reads the XX ClientFinish: the client's static key and its payload.
pub(crate) fn finish_xx(responder: Responder, frame: &[u8]) -> anyhow::Result<(Hello, Ciphers)> {
    let Responder::Xx {
        mut noise,
        ephemeral,
    } = responder;
    let message = wa::HandshakeMessage::decode_from_slice(frame).context("decode ClientFinish")?;
    let finish = message
        .client_finish
        .into_option()
        .ok_or_else(|| anyhow!("no ClientFinish"))?;
    let encrypted_static = finish
        .r#static
        .ok_or_else(|| anyhow!("no static key in ClientFinish"))?;
    let client_static: [u8; 32] = noise
        .decrypt(&encrypted_static)?
        .try_into()
        .map_err(|_| anyhow!("bad client static key"))?;
    noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
    let payload = noise.decrypt(
        &finish
            .payload
            .ok_or_else(|| anyhow!("no payload in ClientFinish"))?,
    )?;
    let payload = wa::ClientPayload::decode_from_slice(&payload).context("decode ClientPayload")?;
    Ok((
        Hello {
            client_static,
            payload,
        },
        Ciphers::from(noise)?,
    ))
}

/// The two directions of an established connection, each with its frame counter.
pub(crate) struct Ciphers {
    read: NoiseCipher,
    write: NoiseCipher,
    read_count: u32,
    write_count: u32,
}

impl Ciphers {
    fn from(noise: NoiseHandshake) -> anyhow::Result<Self> {
        // The initiator writes with the first key; we read with it.
        let (first, second) = noise.finish()?;
        Ok(Self {
            read: first,
            write: second,
            read_count: 0,
            write_count: 0,
        })
    }

    /// Decrypts one frame from the client into its stanza.
    pub(crate) fn open(&mut self, frame: &[u8]) -> anyhow::Result<OwnedNodeRef> {
        let mut buffer = frame.to_vec();
        self.read
            .decrypt_in_place_with_counter(self.read_count, &mut buffer)?;
        self.read_count += 1;
        let plain = unpack(&buffer)?.into_owned();
        OwnedNodeRef::new(plain).context("unmarshal stanza")
    }

    /// Encrypts a stanza into one frame for the client (with its length prefix).
    pub(crate) fn seal(&mut self, node: &Node) -> anyhow::Result<Vec<u8>> {
        // `marshal` writes the frame's flags byte (0: not compressed) first.
        let plain = marshal(node)?;
        let sealed = self.write.encrypt_with_counter(self.write_count, &plain)?;
        self.write_count += 1;
        whatsapp_rust::wacore::framing::encode_frame(&sealed, None)
    }
}
