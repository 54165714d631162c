//! The Discord simulator's gateway: a websocket server (plain JSON text frames) that says
//! HELLO, checks the IDENTIFY token (closing with 4004 on a bad one), sends READY and a
//! GUILD_CREATE per guild of the bot, answers heartbeats, accepts resumes (RESUMED; events
//! sent while no session was open are not replayed) and forwards the dispatches queued for
//! the session. Tests can close a session ([`CLOSE`]) or ask the client to reconnect
//! ([`RECONNECT`], op 7). While "closing", every websocket is accepted and closed at once.

use std::borrow::Cow;
use std::sync::Arc;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::state::{Inner, Session};

/// The queued "event" that makes a session close with 4000 (resumable).
pub(crate) const CLOSE: &str = "__CLOSE__";
/// The queued "event" that makes a session send RECONNECT (op 7).
pub(crate) const RECONNECT: &str = "__RECONNECT__";

/// Accepts gateway connections until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let inner = inner.clone();
        let stop = stop.clone();
        let (down, closing) = {
            let mut data = inner.lock();
            data.connections += 1;
            (data.gateway_down, data.gateway_closing)
        };
        if down {
            // An outage: the connection is dropped before the websocket handshake.
            drop(stream);
            continue;
        }
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
            if closing {
                // A failing gateway: the websocket opens and is closed straight away.
                let _ = ws.close(Some(CloseFrame { code: CloseCode::from(4000), reason: Cow::Borrowed("simulated failure") })).await;
                return;
            }
            session(ws, inner, stop).await;
        });
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn send(ws: &mut Ws, value: &Value) -> bool {
    ws.send(Message::Text(value.to_string())).await.is_ok()
}

async fn session(mut ws: Ws, inner: Arc<Inner>, stop: CancellationToken) {
    if !send(&mut ws, &json!({ "op": 10, "d": { "heartbeat_interval": 41250 } })).await {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Value)>();
    let mut tx = Some(tx);
    let mut seq: u64 = 0;
    let mut session_id = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = ws.close(None).await;
                break;
            }
            outgoing = rx.recv(), if session_id.is_some() => {
                let Some((event, payload)) = outgoing else { break };
                if event == CLOSE {
                    let _ = ws.close(Some(CloseFrame { code: CloseCode::from(4000), reason: Cow::Borrowed("simulated disconnect") })).await;
                    break;
                }
                if event == RECONNECT {
                    // Discord sends op 7 and then expects the client to close and resume.
                    if !send(&mut ws, &json!({ "op": 7, "d": null })).await {
                        break;
                    }
                    continue;
                }
                seq += 1;
                if !send(&mut ws, &json!({ "op": 0, "s": seq, "t": event, "d": payload })).await {
                    break;
                }
            }
            incoming = ws.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                match frame["op"].as_u64() {
                    Some(1) if !send(&mut ws, &json!({ "op": 11 })).await => break,
                    Some(2) => {
                        let token = frame["d"]["token"].as_str().unwrap_or("");
                        let token = token.strip_prefix("Bot ").unwrap_or(token);
                        let bot = inner.lock().tokens.get(token).copied();
                        let Some(bot) = bot else {
                            let _ = ws.close(Some(CloseFrame { code: CloseCode::from(4004), reason: Cow::Borrowed("Authentication failed.") })).await;
                            break;
                        };
                        // GUILD_MEMBERS (1 << 1), GUILD_PRESENCES (1 << 8), MESSAGE_CONTENT (1 << 15).
                        let privileged = frame["d"]["intents"].as_u64().unwrap_or(0) & (1 << 1 | 1 << 8 | 1 << 15) != 0;
                        if privileged && inner.lock().no_privileged_intents.contains(&bot) {
                            let _ = ws.close(Some(CloseFrame { code: CloseCode::from(4014), reason: Cow::Borrowed("Disallowed intent(s).") })).await;
                            break;
                        }
                        let Some(sender) = tx.take() else { continue };
                        let id = inner.snowflake();
                        session_id = Some(id);
                        let (ready, guilds) = {
                            let mut data = inner.lock();
                            data.sessions.push(Session { id, bot, tx: sender });
                            data.identified += 1;
                            let user = data.users.get(&bot).map(super::state::User::json);
                            let guilds: Vec<Value> = data
                                .guilds
                                .values()
                                .filter(|g| g.members.contains(&bot))
                                .map(|g| g.create_json(&data))
                                .collect();
                            let ready = json!({
                                "v": 10,
                                "user": user,
                                "guilds": guilds.iter().map(|g| json!({ "id": g["id"], "unavailable": true })).collect::<Vec<_>>(),
                                "session_id": format!("session-{id}"),
                                "resume_gateway_url": format!("ws://127.0.0.1:{}/gateway", data.gateway_port),
                                "shard": [0, 1],
                                "application": { "id": bot.to_string(), "flags": 0 },
                                "private_channels": [],
                            });
                            (ready, guilds)
                        };
                        seq += 1;
                        if !send(&mut ws, &json!({ "op": 0, "s": seq, "t": "READY", "d": ready })).await {
                            break;
                        }
                        for guild in guilds {
                            seq += 1;
                            if !send(&mut ws, &json!({ "op": 0, "s": seq, "t": "GUILD_CREATE", "d": guild })).await {
                                break;
                            }
                        }
                    }
                    Some(6) => {
                        // RESUME: accept a known token, continue the sequence, send RESUMED.
                        let token = frame["d"]["token"].as_str().unwrap_or("");
                        let token = token.strip_prefix("Bot ").unwrap_or(token);
                        let bot = {
                            let data = inner.lock();
                            if data.refuse_resume { None } else { data.tokens.get(token).copied() }
                        };
                        let (Some(bot), Some(sender)) = (bot, tx.take()) else {
                            if !send(&mut ws, &json!({ "op": 9, "d": false })).await {
                                break;
                            }
                            continue;
                        };
                        let id = inner.snowflake();
                        session_id = Some(id);
                        seq = frame["d"]["seq"].as_u64().unwrap_or(0);
                        {
                            let mut data = inner.lock();
                            data.sessions.push(Session { id, bot, tx: sender });
                            data.resumed += 1;
                        }
                        seq += 1;
                        if !send(&mut ws, &json!({ "op": 0, "s": seq, "t": "RESUMED", "d": {} })).await {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(id) = session_id {
        inner.lock().sessions.retain(|s| s.id != id);
    }
}
