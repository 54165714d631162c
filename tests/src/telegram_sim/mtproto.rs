//! MTProto 2.0, the server's side of one TCP connection: grammers' `transport::Full` framing,
//! the key derivation and AES-IGE of both directions (x = 0 for what the client sends, 8 for
//! what the server sends), and the message layer: the session ID, server msg_ids (≡ 1 mod 4
//! for answers, ≡ 3 for pushed updates), seq_no (odd for content-related messages),
//! `msg_container`, `gzip_packed` both ways, `msgs_ack`, `rpc_result` and `pong`.
//!
//! An unknown authorization key gets the transport error -404, as from Telegram (a plain,
//! unencrypted key exchange cannot happen: grammers only trusts Telegram's RSA keys).

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use grammers_crypto::{aes, DequeBuffer};
use grammers_mtproto::transport::{self, Full, Transport as _};
use grammers_tl_types as tl;
use sha1::Digest as _;
use tl::{Deserializable as _, Serializable as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::rpc::{self, Answer};
use super::state::Inner;

/// `msg_container#73f1f8dc`.
const MSG_CONTAINER: u32 = 0x73f1_f8dc;
/// `gzip_packed#3072cfa1`.
const GZIP_PACKED: u32 = 0x3072_cfa1;
/// `rpc_result#f35c6d01`.
const RPC_RESULT: u32 = 0xf35c_6d01;
/// `msgs_ack#62d6b459`.
const MSGS_ACK: u32 = 0x62d6_b459;
/// Answers at least this long go gzip-packed, as Telegram does.
const GZIP_THRESHOLD: usize = 512;

/// The ID of an authorization key: the low 64 bits of its SHA-1.
pub(super) fn key_id(key: &[u8; 256]) -> [u8; 8] {
    let sha = sha1::Sha1::digest(key);
    let mut id = [0; 8];
    id.copy_from_slice(&sha[12..20]);
    id
}

/// MTProto 2.0's AES key and IV for `msg_key`; `x` is 0 client → server, 8 server → client.
fn aes_key_iv(key: &[u8; 256], msg_key: &[u8], x: usize) -> ([u8; 32], [u8; 32]) {
    let a = sha2::Sha256::new()
        .chain_update(msg_key)
        .chain_update(&key[x..x + 36])
        .finalize();
    let b = sha2::Sha256::new()
        .chain_update(&key[40 + x..76 + x])
        .chain_update(msg_key)
        .finalize();
    let mut aes_key = [0; 32];
    aes_key[..8].copy_from_slice(&a[..8]);
    aes_key[8..24].copy_from_slice(&b[8..24]);
    aes_key[24..].copy_from_slice(&a[24..32]);
    let mut iv = [0; 32];
    iv[..8].copy_from_slice(&b[..8]);
    iv[8..24].copy_from_slice(&a[8..24]);
    iv[24..].copy_from_slice(&b[24..32]);
    (aes_key, iv)
}

/// `msg_key` of a padded plaintext: the middle of SHA-256(part of the key + plaintext).
fn msg_key(key: &[u8; 256], plaintext: &[u8], x: usize) -> [u8; 16] {
    let large = sha2::Sha256::new()
        .chain_update(&key[88 + x..120 + x])
        .chain_update(plaintext)
        .finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&large[8..24]);
    out
}

/// Decrypts what a client sent (after the 8-byte key ID); `None` if it does not check out.
pub(super) fn decrypt_from_client(key: &[u8; 256], payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() < 24 + 32 || !(payload.len() - 24).is_multiple_of(16) {
        return None;
    }
    let key_in_message = &payload[8..24];
    let (aes_key, iv) = aes_key_iv(key, key_in_message, 0);
    let mut plaintext = payload[24..].to_vec();
    aes::ige_decrypt(&mut plaintext, &aes_key, &iv);
    (msg_key(key, &plaintext, 0) == key_in_message).then_some(plaintext)
}

/// Encrypts a plaintext (salt, session, message) for the client, with 12 to 1024 bytes of
/// random padding; returns key ID + msg_key + ciphertext.
pub(super) fn encrypt_for_client(key: &[u8; 256], plaintext: &[u8]) -> Vec<u8> {
    let mut padded = plaintext.to_vec();
    let padding =
        12 + (16 - (plaintext.len() + 12) % 16) % 16 + 16 * usize::from(rand::random::<u8>() % 4);
    padded.extend((0..padding).map(|_| rand::random::<u8>()));
    let key_of_message = msg_key(key, &padded, 8);
    let (aes_key, iv) = aes_key_iv(key, &key_of_message, 8);
    aes::ige_encrypt(&mut padded, &aes_key, &iv);
    let mut out = key_id(key).to_vec();
    out.extend_from_slice(&key_of_message);
    out.extend_from_slice(&padded);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// One message of the client: `(msg_id, seq_no, body)`.
type ClientMessage = (i64, i32, Vec<u8>);

/// Reads `msg_id seq_no bytes body` messages; a container is flattened, gzip is unpacked.
fn unpack(msg_id: i64, seq_no: i32, body: Vec<u8>, out: &mut Vec<ClientMessage>) -> Option<()> {
    let constructor = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    match constructor {
        MSG_CONTAINER => {
            let mut cursor = tl::Cursor::from_slice(&body[4..]);
            let count = i32::deserialize(&mut cursor).ok()?;
            for _ in 0..count {
                let id = i64::deserialize(&mut cursor).ok()?;
                let seq = i32::deserialize(&mut cursor).ok()?;
                let len = usize::try_from(i32::deserialize(&mut cursor).ok()?).ok()?;
                let mut inner = vec![0; len];
                cursor.read_exact(&mut inner).ok()?;
                unpack(id, seq, inner, out)?;
            }
        }
        GZIP_PACKED => {
            let packed = Vec::<u8>::from_bytes(&body[4..]).ok()?;
            unpack(msg_id, seq_no, gunzip(&packed)?, out)?;
        }
        _ => out.push((msg_id, seq_no, body)),
    }
    Some(())
}

/// The server's side of one connection's MTProto session.
struct Session {
    key: [u8; 256],
    session_id: Option<i64>,
    last_msg_id: i64,
    content_messages: i32,
    transport: Full,
}

impl Session {
    /// A new server msg_id, greater than the last: ≡ 1 mod 4 for answers, ≡ 3 otherwise.
    fn msg_id(&mut self, answer: bool) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let base = ((now.as_secs() as i64) << 32) | i64::from(now.subsec_nanos() & !3);
        let mut id = base.max(self.last_msg_id + 4) & !3;
        id |= if answer { 1 } else { 3 };
        self.last_msg_id = id;
        id
    }

    fn seq_no(&mut self, content_related: bool) -> i32 {
        if content_related {
            self.content_messages += 1;
            self.content_messages * 2 - 1
        } else {
            self.content_messages * 2
        }
    }

    /// Frames the messages `(body, answer, content_related)` for the wire: one message, or
    /// a container of several.
    fn frame(&mut self, messages: Vec<(Vec<u8>, bool, bool)>) -> Option<Vec<u8>> {
        let session_id = self.session_id?;
        let mut encoded: Vec<(i64, i32, Vec<u8>)> = messages
            .into_iter()
            .map(|(body, answer, content)| (self.msg_id(answer), self.seq_no(content), body))
            .collect();
        let (msg_id, seq_no, body) = if encoded.len() == 1 {
            encoded.pop()?
        } else {
            let mut body = MSG_CONTAINER.to_le_bytes().to_vec();
            (encoded.len() as i32).serialize(&mut body);
            for (id, seq, inner) in &encoded {
                id.serialize(&mut body);
                seq.serialize(&mut body);
                (inner.len() as i32).serialize(&mut body);
                body.extend_from_slice(inner);
            }
            (self.msg_id(false), self.seq_no(false), body)
        };
        let mut plaintext = Vec::with_capacity(body.len() + 32);
        0i64.serialize(&mut plaintext); // salt: the client never asks for another
        session_id.serialize(&mut plaintext);
        msg_id.serialize(&mut plaintext);
        seq_no.serialize(&mut plaintext);
        (body.len() as i32).serialize(&mut plaintext);
        plaintext.extend_from_slice(&body);
        let encrypted = encrypt_for_client(&self.key, &plaintext);
        let mut buffer = DequeBuffer::with_capacity(encrypted.len(), 8);
        buffer.extend(encrypted);
        self.transport.pack(&mut buffer);
        Some(buffer.as_ref().to_vec())
    }
}

/// Wraps an answer to request `req_msg_id` as its `rpc_result` (gzip-packed when large).
fn rpc_result(req_msg_id: i64, result: Result<Vec<u8>, (i32, String)>) -> Vec<u8> {
    let mut body = RPC_RESULT.to_le_bytes().to_vec();
    req_msg_id.serialize(&mut body);
    match result {
        Ok(bytes) if bytes.len() >= GZIP_THRESHOLD => {
            body.extend_from_slice(&GZIP_PACKED.to_le_bytes());
            gzip(&bytes).serialize(&mut body);
        }
        Ok(bytes) => body.extend_from_slice(&bytes),
        Err((error_code, error_message)) => {
            tl::enums::RpcError::Error(tl::types::RpcError {
                error_code,
                error_message,
            })
            .serialize(&mut body);
        }
    }
    body
}

/// Serves one client connection until it closes or the simulator stops.
pub(super) async fn serve(mut stream: TcpStream, inner: Arc<Inner>) {
    let connection = inner.next_connection_id();
    let (push_tx, mut push_rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    let mut session: Option<Session> = None;
    let mut transport = Full::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut read = vec![0u8; 64 * 1024];
    let stop = inner.stop.clone();
    loop {
        // Whole frames first, then more bytes.
        match transport.unpack(&mut buffer) {
            Ok(offset) => {
                let payload = buffer[offset.data_range.clone()].to_vec();
                buffer.drain(..offset.next_offset);
                let reply = handle_frame(&inner, connection, &mut session, &push_tx, &payload);
                match reply {
                    Frame::Send(bytes) => {
                        if stream.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Frame::Nothing => {}
                    Frame::Close(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        break;
                    }
                }
                continue;
            }
            Err(transport::Error::MissingBytes) => {}
            Err(_) => break,
        }
        tokio::select! {
            () = stop.cancelled() => break,
            n = stream.read(&mut read) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => buffer.extend_from_slice(&read[..n]),
            },
            Some(update) = push_rx.recv() => {
                let Some(update) = update else { break };
                let Some(session) = session.as_mut() else { continue };
                let Some(bytes) = session.frame(vec![(update, false, true)]) else { continue };
                if stream.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
    }
    inner.connection_closed(connection);
}

/// What to do after a frame.
enum Frame {
    Send(Vec<u8>),
    Nothing,
    Close(Vec<u8>),
}

fn transport_error(status: i32) -> Vec<u8> {
    (-status).to_le_bytes().to_vec()
}

fn handle_frame(
    inner: &Arc<Inner>,
    connection: u64,
    session: &mut Option<Session>,
    push: &mpsc::UnboundedSender<Option<Vec<u8>>>,
    payload: &[u8],
) -> Frame {
    let Some(id) = payload.get(..8) else {
        return Frame::Close(transport_error(404));
    };
    let Some(key) = inner.auth_key(id) else {
        // Unknown key, or a plain message starting a key exchange: Telegram's 404.
        return Frame::Close(transport_error(404));
    };
    let Some(plaintext) = decrypt_from_client(&key, payload) else {
        return Frame::Close(transport_error(404));
    };
    let mut cursor = tl::Cursor::from_slice(&plaintext);
    let (Ok(_salt), Ok(session_id), Ok(msg_id), Ok(seq_no), Ok(len)) = (
        i64::deserialize(&mut cursor),
        i64::deserialize(&mut cursor),
        i64::deserialize(&mut cursor),
        i32::deserialize(&mut cursor),
        i32::deserialize(&mut cursor),
    ) else {
        return Frame::Close(transport_error(404));
    };
    let Some(body) = plaintext.get(32..32 + len.max(0) as usize) else {
        return Frame::Close(transport_error(404));
    };
    let session = session.get_or_insert_with(|| Session {
        key,
        session_id: None,
        last_msg_id: 0,
        content_messages: 0,
        transport: Full::new(),
    });
    if session.session_id.is_none() {
        session.session_id = Some(session_id);
        inner.connection_opened(connection, &key, push.clone());
    }
    let mut messages = Vec::new();
    if unpack(msg_id, seq_no, body.to_vec(), &mut messages).is_none() {
        return Frame::Nothing;
    }
    let mut out: Vec<(Vec<u8>, bool, bool)> = Vec::new();
    let mut to_ack = Vec::new();
    for (msg_id, seq_no, body) in messages {
        if seq_no % 2 == 1 {
            to_ack.push(msg_id);
        }
        let constructor = body
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes);
        match constructor {
            Some(MSGS_ACK) | None => {}
            _ => match rpc::call(inner, &key, &body) {
                Answer::Result(result) => out.push((rpc_result(msg_id, result), true, true)),
                Answer::Pong(ping_id) => {
                    let pong =
                        tl::enums::Pong::Pong(tl::types::Pong { msg_id, ping_id }).to_bytes();
                    out.push((pong, true, false));
                }
            },
        }
    }
    if !to_ack.is_empty() && !out.is_empty() {
        let ack = tl::enums::MsgsAck::Ack(tl::types::MsgsAck { msg_ids: to_ack }).to_bytes();
        out.insert(0, (ack, false, false));
    }
    if out.is_empty() {
        return Frame::Nothing;
    }
    match session.frame(out) {
        Some(bytes) => Frame::Send(bytes),
        None => Frame::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_grammers_encrypts_the_simulator_decrypts() {
        let key: [u8; 256] = std::array::from_fn(|i| (i * 7 % 256) as u8);
        let auth = grammers_crypto::AuthKey::from_bytes(key);
        let plaintext: Vec<u8> = (0..64u8).collect();
        let mut buffer = DequeBuffer::with_capacity(plaintext.len(), 24);
        buffer.extend(plaintext.iter().copied());
        grammers_crypto::encrypt_data_v2(&mut buffer, &auth);
        let decrypted = decrypt_from_client(&key, buffer.as_ref()).expect("decrypts");
        assert_eq!(&decrypted[..64], &plaintext[..]);

        let mut sent = encrypt_for_client(&key, &plaintext);
        assert_eq!(sent.len() % 16, 8, "key id + msg_key + blocks");
        let back = grammers_crypto::decrypt_data_v2(&mut sent, &auth).expect("grammers decrypts");
        assert_eq!(&back[..64], &plaintext[..]);
    }

    #[test]
    fn containers_and_gzip_are_flattened() {
        let inner_body = tl::functions::updates::GetState {}.to_bytes();
        let mut packed = GZIP_PACKED.to_le_bytes().to_vec();
        gzip(&inner_body).serialize(&mut packed);
        let mut container = MSG_CONTAINER.to_le_bytes().to_vec();
        2i32.serialize(&mut container);
        for (id, body) in [(8i64, &inner_body), (12, &packed)] {
            id.serialize(&mut container);
            1i32.serialize(&mut container);
            (body.len() as i32).serialize(&mut container);
            container.extend_from_slice(body);
        }
        let mut out = Vec::new();
        unpack(4, 0, container, &mut out).expect("parses");
        assert_eq!(out, vec![(8, 1, inner_body.clone()), (12, 1, inner_body)]);
    }
}
