//! One client connection to the simulator: the WebSocket, the Noise handshake, then the
//! stanzas — a new device is sent pairing references, a paired one gets `<success>`, and
//! the IQs after login are answered ([`answer_iq`]).

use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use whatsapp_rust::wacore::framing::FrameDecoder;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::consts::WA_CONN_HEADER;
use whatsapp_rust::wacore_binary::{Node, NodeRef};

use super::noise::{self, Responder};
use super::state::{Inner, Out};

/// The server's JID, as stanzas name it.
pub(crate) const SERVER: &str = "s.whatsapp.net";

/// A stanza builder with attributes given as pairs.
pub(crate) fn node(tag: &'static str, attrs: &[(&'static str, String)]) -> NodeBuilder {
    NodeBuilder::new(tag).attrs(attrs.iter().cloned())
}

/// Reads WebSocket messages into Noise frames.
struct Frames {
    ws: WebSocketStream<TcpStream>,
    decoder: FrameDecoder,
    header_seen: bool,
    pending: Vec<u8>,
}

impl Frames {
    /// The next frame, or `None` when the client went away.
    async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(frame) = self.decoder.decode_frame() {
                return Ok(Some(frame.to_vec()));
            }
            let Some(message) = self.ws.next().await else {
                return Ok(None);
            };
            match message? {
                WsMessage::Binary(data) => self.feed(&data),
                WsMessage::Close(_) => return Ok(None),
                _ => {}
            }
        }
    }

    /// Feeds bytes, dropping the connection header the client sends first.
    fn feed(&mut self, data: &[u8]) {
        if self.header_seen {
            self.decoder.feed(data);
            return;
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= WA_CONN_HEADER.len() {
            self.header_seen = true;
            let pending = std::mem::take(&mut self.pending);
            let rest = pending
                .strip_prefix(&WA_CONN_HEADER[..])
                .unwrap_or(&pending);
            self.decoder.feed(rest);
        }
    }

    async fn send(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.ws
            .send(WsMessage::Binary(bytes))
            .await
            .context("websocket send")
    }
}

/// Serves one TCP connection until the client or the simulator closes it.
pub(crate) async fn serve(inner: Arc<Inner>, stream: TcpStream) {
    let id = inner.next_connection_id();
    if let Err(error) = serve_inner(&inner, stream, id).await {
        tracing::debug!(connection = id, error = %format!("{error:#}"), "simulator connection ended");
    }
    inner.connection_closed(id);
}

async fn serve_inner(inner: &Arc<Inner>, stream: TcpStream, id: u64) -> anyhow::Result<()> {
    let ws = tokio_tungstenite::accept_async(stream)
        .await
        .context("websocket handshake")?;
    let mut frames = Frames {
        ws,
        decoder: FrameDecoder::new(),
        header_seen: false,
        pending: Vec::new(),
    };

    let first = frames
        .next()
        .await?
        .ok_or_else(|| anyhow!("closed before the handshake"))?;
    let (reply, outcome) = noise::answer_hello(inner.keys(), noise::parse_client_hello(&first)?)?;
    frames
        .send(whatsapp_rust::wacore::framing::encode_frame(&reply, None)?)
        .await?;
    let ik = outcome.is_ok();
    let (hello, mut ciphers) = match outcome {
        Ok(done) => done,
        Err(responder @ Responder::Xx { .. }) => {
            let finish = frames
                .next()
                .await?
                .ok_or_else(|| anyhow!("closed during the handshake"))?;
            noise::finish_xx(responder, &finish)?
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    for stanza in inner.connection_opened(id, &hello, ik, tx)? {
        frames.send(ciphers.seal(&stanza)?).await?;
    }

    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Stanza(stanza)) => frames.send(ciphers.seal(&stanza)?).await?,
                Some(Out::Close) | None => {
                    let _ = frames.ws.close(None).await;
                    return Ok(());
                }
            },
            frame = frames.next() => {
                let Some(frame) = frame? else { return Ok(()) };
                let stanza = ciphers.open(&frame)?;
                for reply in handle(inner, id, stanza.get()) {
                    frames.send(ciphers.seal(&reply)?).await?;
                }
            }
        }
    }
}

/// Answers one stanza from the client.
fn handle(inner: &Arc<Inner>, connection: u64, stanza: &NodeRef<'_>) -> Vec<Node> {
    let attr = |name: &str| {
        stanza
            .get_attr(name)
            .map(|v| v.as_str().into_owned())
            .unwrap_or_default()
    };
    match stanza.tag.as_ref() {
        "iq" => {
            let kind = attr("type");
            if kind == "result" || kind == "error" {
                inner.iq_answered(connection, &attr("id"), stanza);
                return Vec::new();
            }
            answer_iq(inner, connection, stanza)
        }
        "message" => inner.route_message(connection, stanza),
        "receipt" => inner.route_receipt(connection, stanza),
        "ack" => {
            inner.client_ack(connection, stanza);
            Vec::new()
        }
        "chatstate" => {
            inner.route_chatstate(connection, stanza);
            Vec::new()
        }
        "presence" => {
            inner.presence(connection, stanza);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// The pairing-code stages a new device sends: `companion_hello` (answered with the
/// pairing reference) and `companion_finish` (the key bundle; the phone then offers the
/// `pair-success`).
fn link_code(
    inner: &Arc<Inner>,
    connection: u64,
    iq: &NodeRef<'_>,
    result: impl Fn(Vec<Node>) -> Node,
) -> Vec<Node> {
    let Some(reg) = iq.get_optional_child("link_code_companion_reg") else {
        return vec![result(Vec::new())];
    };
    let bytes = |tag: &str| {
        reg.get_optional_child(tag)
            .and_then(|n| n.content_bytes())
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    };
    let stage = reg
        .get_attr("stage")
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default();
    match stage.as_str() {
        "companion_hello" => {
            let jid = reg
                .get_attr("jid")
                .map(|v| v.as_str().into_owned())
                .unwrap_or_default();
            let phone = jid.split('@').next().unwrap_or_default().to_owned();
            let reference = inner.companion_hello(
                connection,
                &phone,
                bytes("link_code_pairing_wrapped_companion_ephemeral_pub"),
            );
            let answer = node(
                "link_code_companion_reg",
                &[("stage", "companion_hello".to_owned())],
            )
            .children([NodeBuilder::new("link_code_pairing_ref")
                .bytes(reference.into_bytes())
                .build()])
            .build();
            vec![result(vec![answer])]
        }
        "companion_finish" => {
            let answered = result(Vec::new());
            if let Err(error) =
                inner.companion_finish(connection, &bytes("link_code_pairing_wrapped_key_bundle"))
            {
                tracing::warn!(error = %format!("{error:#}"), "the pairing-code link failed");
            }
            vec![answered]
        }
        _ => vec![result(Vec::new())],
    }
}

/// Answers an IQ the client sent: the requests a client makes after login get plausible
/// empty answers (so nothing blocks `Connected`); anything else an empty result.
fn answer_iq(inner: &Arc<Inner>, connection: u64, iq: &NodeRef<'_>) -> Vec<Node> {
    let attr = |name: &str| {
        iq.get_attr(name)
            .map(|v| v.as_str().into_owned())
            .unwrap_or_default()
    };
    let xmlns = attr("xmlns");
    let child = iq
        .children()
        .and_then(|c| c.first())
        .map(|c| c.tag.to_string())
        .unwrap_or_default();
    inner.record_iq(&xmlns, &child);
    let result = |children: Vec<Node>| {
        node(
            "iq",
            &[
                ("id", attr("id")),
                ("type", "result".to_owned()),
                ("from", SERVER.to_owned()),
            ],
        )
        .children(children)
        .build()
    };
    match (xmlns.as_str(), child.as_str()) {
        ("w:sync:app:state", _) => {
            // Every critical collection exists and is empty at version 0.
            let names: Vec<String> = iq
                .get_optional_child("sync")
                .and_then(|sync| sync.children())
                .map(|collections| {
                    collections
                        .iter()
                        .filter_map(|c| c.get_attr("name").map(|n| n.as_str().into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let collections = names.into_iter().map(|name| {
                node("collection", &[("name", name), ("version", "0".to_owned())]).build()
            });
            vec![result(vec![NodeBuilder::new("sync")
                .children(collections)
                .build()])]
        }
        ("passive", "active") => {
            // Going active: what was queued while the device was away follows.
            let mut answers = vec![result(Vec::new())];
            answers.extend(inner.go_active(connection));
            answers
        }
        ("encrypt", "registration") => {
            inner.upload_keys(connection, iq);
            vec![result(Vec::new())]
        }
        ("encrypt", "count") => {
            let count = inner.prekey_count(connection).to_string();
            vec![result(vec![node("count", &[("value", count)]).build()])]
        }
        ("encrypt", "key") => vec![result(vec![inner.fetch_bundles(iq)])],
        ("usync", "usync") => vec![result(vec![inner.usync(iq)])],
        ("w:m", "media_conn") => vec![result(vec![inner.media.media_conn()])],
        ("w:g2", "query") => match inner.group_query(iq) {
            Some(group) => vec![result(vec![group])],
            None => vec![node(
                "iq",
                &[
                    ("id", attr("id")),
                    ("type", "error".to_owned()),
                    ("from", attr("to")),
                ],
            )
            .children([node(
                "error",
                &[
                    ("code", "404".to_owned()),
                    ("text", "item-not-found".to_owned()),
                ],
            )
            .build()])
            .build()],
        },
        ("md", "link_code_companion_reg") => link_code(inner, connection, iq, result),
        ("md", "remove-companion-device") => {
            inner.device_unlinked_itself(connection);
            vec![result(Vec::new())]
        }
        _ => vec![result(Vec::new())],
    }
}
