//! The Discord network crate against the Discord simulator, in process: the real serenity
//! client of `bridge-discord` logs in, connects to the simulated gateway and REST API,
//! reports Discord events as remote events and sends Matrix messages (as the bot and through
//! webhooks); then the `bridge-discord` process itself with Synapse and the simulator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::bridge::ids::GhostNamer;
use bridge_core::network::events::{ChatRef, LoginState, MediaKind, MessageContent};
use bridge_core::network::login::{FieldKind, LoginStep};
use bridge_core::network::{
    EventSender, LoginId, NetworkClient, NetworkConnector, NetworkError, OutgoingContent, OutgoingMessage,
    RemoteChatId, RemoteEvent, RemoteMessageId, RemoteUserId, StoredLogin,
};
use bridge_discord::{DiscordConfig, DiscordConnector};
use bridge_tests::discord_sim::{DiscordSim, Recorded, SimFile};
use bridge_tests::{free_port, random_localpart, wait_until, BridgeCommand, BridgeProcess, Synapse, SynapseOptions};
use tokio::sync::mpsc;

use crate::env::{edit, tail};

mod channels;
mod content;
mod full;
mod outage;

const WAIT: Duration = Duration::from_secs(15);

type Events = mpsc::Receiver<(LoginId, RemoteEvent)>;

/// A simulator with a bot, users alice and bob, a guild with channel `general`.
struct World {
    sim: DiscordSim,
    bot: u64,
    token: String,
    alice: u64,
    guild: u64,
    general: u64,
}

async fn world() -> anyhow::Result<World> {
    let sim = DiscordSim::start().await?;
    let (bot, token) = sim.add_bot("Bridge Bot");
    let alice = sim.add_user("alice", Some("Alice Liddell"));
    let bob = sim.add_user("bob", None);
    let guild = sim.add_guild("Wonderland", &[alice, bob, bot]);
    let general = sim.add_channel(guild, "general", Some("Talk here"));
    Ok(World { sim, bot, token, alice, guild, general })
}

fn connector(sim: &DiscordSim) -> anyhow::Result<DiscordConnector> {
    DiscordConnector::new(DiscordConfig { api_base_url: sim.url(), ..DiscordConfig::default() })
}

fn ghosts() -> GhostNamer {
    GhostNamer::new("discord_{id}", "test.localhost")
}

/// A connected client of the world's bot and its event stream (already `Connected`).
async fn connected(w: &World) -> anyhow::Result<(Arc<dyn NetworkClient>, Events)> {
    let (client, mut rx) = load(w, &w.token).await?;
    client.connect().await;
    recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected))).await?;
    Ok((client, rx))
}

async fn load(w: &World, token: &str) -> anyhow::Result<(Arc<dyn NetworkClient>, Events)> {
    load_with(&connector(&w.sim)?, w.bot, token).await
}

async fn load_with(connector: &DiscordConnector, bot: u64, token: &str) -> anyhow::Result<(Arc<dyn NetworkClient>, Events)> {
    let (tx, rx) = mpsc::channel(256);
    let login = LoginId(bot.to_string());
    let stored = StoredLogin {
        id: login.clone(),
        user: ruma::OwnedUserId::try_from("@owner:test.localhost")?,
        remote_name: "Bridge Bot".to_owned(),
        session: serde_json::json!({ "token": token }),
    };
    let client = connector.load_login(stored, EventSender::new(login, tx, ghosts())).await?;
    Ok((client, rx))
}

/// Receives events until one matches `pred` (others are skipped); fails after [`WAIT`].
async fn recv(rx: &mut Events, pred: impl Fn(&RemoteEvent) -> bool) -> anyhow::Result<RemoteEvent> {
    bridge_tests::next_remote_event(rx, WAIT, pred).await
}

fn is_message(event: &RemoteEvent, id: u64) -> bool {
    matches!(event, RemoteEvent::Message { id: m, .. } if m.as_str() == id.to_string())
}

fn guild_chat(channel: u64) -> ChatRef {
    ChatRef { id: RemoteChatId(channel.to_string()), receiver: None }
}

fn text(body: &str, html: Option<&str>) -> OutgoingContent {
    OutgoingContent::Text { body: body.to_owned(), html: html.map(str::to_owned), mentions: vec![], emote: false }
}

fn outgoing(chat: ChatRef, content: OutgoingContent, relayed_from: Option<&str>) -> OutgoingMessage {
    OutgoingMessage { chat, content, reply_to: None, thread_root: None, relayed_from: relayed_from.map(str::to_owned), avatar_url: None }
}

fn posts_to(path: String) -> impl Fn(&Recorded) -> bool {
    move |r: &Recorded| r.method == "POST" && r.path == path
}

#[tokio::test]
async fn token_login_accepts_bot_tokens_and_explains_rejections() -> anyhow::Result<()> {
    let w = world().await?;
    let connector = connector(&w.sim)?;
    assert_eq!(connector.login_flows().iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["token"]);
    assert!(matches!(connector.create_login("qr").await, Err(NetworkError::NotFound(_))));

    let mut login = connector.create_login("token").await?;
    let step = login.start().await?;
    let LoginStep::UserInput { step_id, fields, .. } = &step else { panic!("expected input, got {step:?}") };
    assert_eq!(step_id, "token");
    assert_eq!(fields[0].kind, FieldKind::Token);

    let rejected = login.submit_input(BTreeMap::from([("token".to_owned(), "mfa.user-token".to_owned())])).await;
    match rejected {
        Err(NetworkError::BadInput(message)) => {
            assert!(message.contains("developer portal"), "{message}");
            assert!(message.contains("User account tokens are not supported"), "{message}");
        }
        other => panic!("expected BadInput, got {other:?}"),
    }

    let done = login.submit_input(BTreeMap::from([("token".to_owned(), format!("  {}\n", w.token))])).await?;
    let LoginStep::Complete { login: completed, .. } = done else { panic!("expected completion, got {done:?}") };
    assert_eq!(completed.remote_id, w.bot.to_string());
    assert_eq!(completed.remote_name, "Bridge Bot");
    assert_eq!(completed.session, serde_json::json!({ "token": w.token }));
    let checked = w.sim.requests().into_iter().filter(|r| r.path == "/users/@me").count();
    assert_eq!(checked, 2, "each submitted token is checked once");
    Ok(())
}

#[tokio::test]
async fn guild_messages_arrive_converted() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, mut rx) = connected(&w).await?;
    assert_eq!(client.state(), LoginState::Connected);

    let id = w.sim.push_message(w.general, w.alice, "**hi** <@BOT> see `a*b` ||spoiler||".replace("BOT", &w.bot.to_string()).as_str());
    let event = recv(&mut rx, |e| is_message(e, id)).await?;
    let RemoteEvent::Message { chat, sender, parts, .. } = event else { unreachable!() };
    assert_eq!(chat, guild_chat(w.general));
    assert_eq!(sender.user, RemoteUserId(w.alice.to_string()));
    assert!(!sender.is_from_me);
    let MessageContent::Text { body, html, mentions } = &parts[0].content else { panic!("text expected: {parts:?}") };
    assert_eq!(body, "**hi** @Bridge Bot see `a*b` ||spoiler||");
    let pill = format!("<a href=\"https://matrix.to/#/@discord_{}:test.localhost\">Bridge Bot</a>", w.bot);
    assert_eq!(
        html.as_deref(),
        Some(format!("<strong>hi</strong> {pill} see <code>a*b</code> <span data-mx-spoiler>spoiler</span>").as_str())
    );
    assert_eq!(mentions, &vec![RemoteUserId(w.bot.to_string())]);

    let info = client.user_info(&RemoteUserId(w.alice.to_string())).await?;
    assert_eq!(info.name.as_deref(), Some("Alice Liddell"));
    assert!(info.avatar.is_some());
    let chat = client.chat_info(&guild_chat(w.general)).await?;
    assert_eq!(chat.name.as_deref(), Some("general"));
    assert_eq!(chat.topic.as_deref(), Some("Talk here"));
    let parent = RemoteChatId(format!("guild:{}", w.guild));
    assert_eq!(chat.parent, Some(parent.clone()), "a channel's parent is its server");
    let server = client.chat_info(&ChatRef { id: parent, receiver: None }).await?;
    assert_eq!(server.name.as_deref(), Some("Wonderland"), "the parent's name names its space");
    client.disconnect().await;
    bridge_tests::wait_until(WAIT, "the session to close", || async { Ok((w.sim.gateway_sessions() == 0).then_some(())) }).await?;
    Ok(())
}

#[tokio::test]
async fn edits_deletions_reactions_typing_and_channel_updates_arrive() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, mut rx) = connected(&w).await?;
    let id = w.sim.push_message(w.general, w.alice, "first");
    recv(&mut rx, |e| is_message(e, id)).await?;

    w.sim.edit_message(w.general, id, "*second*");
    let edit = recv(&mut rx, |e| matches!(e, RemoteEvent::Edit { .. })).await?;
    let RemoteEvent::Edit { id: edited, parts, .. } = edit else { unreachable!() };
    assert_eq!(edited, RemoteMessageId(id.to_string()));
    assert!(matches!(&parts[0].content, MessageContent::Text { html: Some(h), .. } if h == "<em>second</em>"));

    w.sim.react(w.general, id, w.alice, "👍", true);
    let reaction = recv(&mut rx, |e| matches!(e, RemoteEvent::ReactionAdd { .. })).await?;
    assert!(matches!(reaction, RemoteEvent::ReactionAdd { ref emoji, .. } if emoji == "👍"));
    w.sim.react(w.general, id, w.alice, "blob:77", true);
    let custom = recv(&mut rx, |e| matches!(e, RemoteEvent::ReactionAdd { .. })).await?;
    assert!(matches!(custom, RemoteEvent::ReactionAdd { ref emoji, ref emoji_id, .. } if emoji == ":blob:" && emoji_id.as_str() == "blob:77"));
    w.sim.react(w.general, id, w.alice, "👍", false);
    recv(&mut rx, |e| matches!(e, RemoteEvent::ReactionRemove { .. })).await?;

    w.sim.typing(w.general, w.alice);
    recv(&mut rx, |e| matches!(e, RemoteEvent::Typing { sender, .. } if sender.user.as_str() == w.alice.to_string())).await?;

    w.sim.update_channel(w.general, "lobby", Some("New topic"));
    let changed = recv(&mut rx, |e| matches!(e, RemoteEvent::ChatInfoChanged { .. })).await?;
    assert!(matches!(changed, RemoteEvent::ChatInfoChanged { ref info, .. } if info.name.as_deref() == Some("lobby") && info.topic.as_deref() == Some("New topic")));

    w.sim.delete_message(w.general, id);
    let deleted = recv(&mut rx, |e| matches!(e, RemoteEvent::Delete { .. })).await?;
    assert!(matches!(deleted, RemoteEvent::Delete { id: ref d, .. } if d.as_str() == id.to_string()));
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn sending_as_the_bot_converts_html_and_is_not_echoed() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, mut rx) = connected(&w).await?;
    let pill = format!("<a href=\"https://matrix.to/#/@discord_{}:test.localhost\">Alice</a>", w.alice);
    let html = format!("<b>bold</b> {pill}: 2*3 <code>x_y</code>");
    let sent = client.send_message(outgoing(guild_chat(w.general), text("bold Alice: 2*3 x_y", Some(&html)), None)).await?;
    let request = w.sim.wait_request(WAIT, "the bot's message", posts_to(format!("/channels/{}/messages", w.general))).await?;
    assert_eq!(request.body["content"], format!("**bold** <@{}>: 2\\*3 `x_y`", w.alice));
    assert_eq!(request.bot, Some(w.bot));
    assert_eq!(w.sim.messages(w.general).last().map(|m| m["id"].clone()), Some(serde_json::json!(sent.id.as_str())));

    // The gateway echo of our own message is not reported: the next event is Alice's.
    let next = w.sim.push_message(w.general, w.alice, "after");
    let event = recv(&mut rx, |e| matches!(e, RemoteEvent::Message { .. })).await?;
    assert!(is_message(&event, next), "got {event:?}");

    client.edits().expect("edits").edit_message(&guild_chat(w.general), &sent.id, text("changed", None)).await?;
    w.sim.wait_request(WAIT, "the edit", |r| r.method == "PATCH" && r.path.ends_with(sent.id.as_str())).await?;
    client.reactions().expect("reactions").add_reaction(&guild_chat(w.general), &sent.id, &"👍".into()).await?;
    w.sim.wait_request(WAIT, "the reaction", |r| r.method == "PUT" && r.path.contains("/reactions/")).await?;
    client.presence().expect("typing").set_typing(&guild_chat(w.general), true).await?;
    w.sim.wait_request(WAIT, "typing", posts_to(format!("/channels/{}/typing", w.general))).await?;
    client.deletions().expect("deletions").delete_message(&guild_chat(w.general), &sent.id).await?;
    w.sim.wait_request(WAIT, "the deletion", |r| r.method == "DELETE" && r.path.ends_with(sent.id.as_str())).await?;
    // Neither the edit, the reaction nor the deletion comes back as a remote event.
    let last = w.sim.push_message(w.general, w.alice, "last");
    let event = recv(&mut rx, |e| !matches!(e, RemoteEvent::StateChanged(_))).await?;
    assert!(is_message(&event, last), "got {event:?}");
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn relayed_messages_go_through_a_webhook_with_the_name() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, mut rx) = connected(&w).await?;
    let sent = client.send_message(outgoing(guild_chat(w.general), text("hello *there*", None), Some("Mallory (Matrix)"))).await?;
    let hooks = w.sim.webhooks(w.general);
    assert_eq!(hooks.len(), 1);
    let (hook, token, name) = &hooks[0];
    assert_eq!(name, "Matrix Bridge");
    let request = w.sim.wait_request(WAIT, "the webhook execution", posts_to(format!("/webhooks/{hook}/{token}"))).await?;
    assert_eq!(request.body["content"], "hello \\*there\\*");
    assert_eq!(request.body["username"], "Mallory (Matrix)");
    assert!(request.query.contains("wait=true"), "{}", request.query);
    let stored = w.sim.messages(w.general);
    assert_eq!(stored.last().map(|m| m["webhook_id"].clone()), Some(serde_json::json!(hook.to_string())));

    // A second message reuses the webhook; neither is echoed back.
    client.send_message(outgoing(guild_chat(w.general), text("again", None), Some("Mallory (Matrix)"))).await?;
    assert_eq!(w.sim.webhooks(w.general).len(), 1);
    let next = w.sim.push_message(w.general, w.alice, "human");
    let event = recv(&mut rx, |e| matches!(e, RemoteEvent::Message { .. })).await?;
    assert!(is_message(&event, next), "got {event:?}");

    // After a restart (a new client), the bot's existing webhook is found and reused.
    let (restarted, _rx2) = load(&w, &w.token).await?;
    restarted.send_message(outgoing(guild_chat(w.general), text("from the restarted bridge", None), Some("Mallory (Matrix)"))).await?;
    assert_eq!(w.sim.webhooks(w.general).len(), 1);
    let created = w.sim.requests().into_iter().filter(posts_to(format!("/channels/{}/webhooks", w.general))).count();
    assert_eq!(created, 1, "the webhook is created once");

    client.edits().expect("edits").edit_message(&guild_chat(w.general), &sent.id, text("fixed", None)).await?;
    w.sim.wait_request(WAIT, "the webhook edit", |r| r.method == "PATCH" && r.path == format!("/webhooks/{hook}/{token}/messages/{}", sent.id)).await?;

    // Where webhooks are not permitted, the bot sends the (already formatted) text itself.
    let locked = w.sim.add_channel(w.guild, "locked", None);
    w.sim.forbid_webhooks(locked);
    client.send_message(outgoing(guild_chat(locked), text("Mallory: hi", None), Some("Mallory"))).await?;
    let request = w.sim.wait_request(WAIT, "the fallback", posts_to(format!("/channels/{locked}/messages"))).await?;
    assert_eq!(request.body["content"], "Mallory: hi");
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn two_logins_in_one_guild_do_not_bridge_each_others_messages() -> anyhow::Result<()> {
    let w = world().await?;
    let (bot2, token2) = w.sim.add_bot("Second Bot");
    let guild = w.sim.add_guild("Shared", &[w.alice, w.bot, bot2]);
    let channel = w.sim.add_channel(guild, "both", None);
    let connector = connector(&w.sim)?;
    let (first, mut rx1) = load_with(&connector, w.bot, &w.token).await?;
    let (second, mut rx2) = load_with(&connector, bot2, &token2).await?;
    for (client, rx) in [(&first, &mut rx1), (&second, &mut rx2)] {
        client.connect().await;
        recv(rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected))).await?;
    }
    first.send_message(outgoing(guild_chat(channel), text("relayed", None), Some("Mallory"))).await?;
    second.send_message(outgoing(guild_chat(channel), text("as the bot", None), None)).await?;
    let id = w.sim.push_message(channel, w.alice, "human");
    for rx in [&mut rx1, &mut rx2] {
        let event = recv(rx, |e| matches!(e, RemoteEvent::Message { .. })).await?;
        assert!(is_message(&event, id), "got {event:?}");
    }
    first.disconnect().await;
    second.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn long_messages_are_split_and_uploads_are_multipart() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, _rx) = connected(&w).await?;
    let long = "word ".repeat(900);
    client.send_message(outgoing(guild_chat(w.general), text(&long, None), None)).await?;
    let posts: Vec<Recorded> = w.sim.requests().into_iter().filter(posts_to(format!("/channels/{}/messages", w.general))).collect();
    assert_eq!(posts.len(), 3);
    let joined: String = posts.iter().map(|p| p.body["content"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>().join(" ");
    assert_eq!(joined.split_whitespace().count(), 900);
    assert!(posts.iter().all(|p| p.body["content"].as_str().is_some_and(|c| c.chars().count() <= 2000)));

    let media = OutgoingContent::Media {
        kind: MediaKind::Image,
        data: bytes::Bytes::from_static(b"\x89PNG fake"),
        filename: "cat.png".to_owned(),
        mime: "image/png".to_owned(),
        caption: Some("a *cat*".to_owned()),
    };
    client.send_message(outgoing(guild_chat(w.general), media, None)).await?;
    let upload = w.sim.wait_request(WAIT, "the upload", |r| r.method == "POST" && !r.files.is_empty()).await?;
    assert_eq!(upload.files[0].1, "cat.png");
    assert_eq!(upload.files[0].2, b"\x89PNG fake");
    assert_eq!(upload.body["content"], "a \\*cat\\*");

    let too_big = OutgoingContent::Media {
        kind: MediaKind::File,
        data: bytes::Bytes::from(vec![0u8; 11 * 1024 * 1024]),
        filename: "big.bin".to_owned(),
        mime: "application/octet-stream".to_owned(),
        caption: None,
    };
    let refused = client.send_message(outgoing(guild_chat(w.general), too_big, None)).await;
    assert!(matches!(refused, Err(NetworkError::BadInput(ref m)) if m.contains("upload limit")), "{refused:?}");
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn attachments_dms_and_reconnects() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, mut rx) = connected(&w).await?;
    let file = SimFile { filename: "notes.txt".to_owned(), content_type: "text/plain".to_owned(), bytes: b"hello file".to_vec() };
    let id = w.sim.push_message_with_file(w.general, w.alice, "", file);
    let event = recv(&mut rx, |e| is_message(e, id)).await?;
    let RemoteEvent::Message { parts, .. } = event else { unreachable!() };
    let MessageContent::Media(media) = &parts[0].content else { panic!("media expected: {parts:?}") };
    assert_eq!(media.kind, MediaKind::File);
    assert_eq!(media.filename, "notes.txt");
    let (bytes, mime) = client.download_media(&media.source).await?;
    assert_eq!(&bytes[..], b"hello file");
    assert_eq!(mime.as_deref(), Some("text/plain"));

    let dm = w.sim.add_dm(w.bot, w.alice);
    let id = w.sim.push_message(dm, w.alice, "psst");
    let event = recv(&mut rx, |e| is_message(e, id)).await?;
    let RemoteEvent::Message { chat, .. } = event else { unreachable!() };
    assert_eq!(chat.receiver, Some(LoginId(w.bot.to_string())));
    let info = client.chat_info(&chat).await?;
    assert!(info.is_direct);

    // The gateway drops the session: serenity resumes it and events flow again.
    assert_eq!(w.sim.identified(), 1);
    w.sim.drop_gateway_sessions();
    bridge_tests::wait_until(WAIT, "a resumed gateway session", || async {
        Ok((w.sim.resumed() == 1 && w.sim.gateway_sessions() == 1).then_some(()))
    })
    .await?;
    let id = w.sim.push_message(w.general, w.alice, "back");
    recv(&mut rx, |e| is_message(e, id)).await?;
    client.disconnect().await;
    bridge_tests::wait_until(WAIT, "the session to close", || async { Ok((w.sim.gateway_sessions() == 0).then_some(())) }).await?;
    Ok(())
}

#[tokio::test]
async fn disconnect_closes_the_gateway_after_an_invalid_session() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, mut rx) = connected(&w).await?;
    w.sim.refuse_resume(true);
    w.sim.drop_gateway_sessions();
    // serenity identifies again (after its 5-second pause between IDENTIFYs).
    bridge_tests::wait_until(Duration::from_secs(20), "a new IDENTIFY", || async {
        Ok((w.sim.identified() == 2 && w.sim.gateway_sessions() == 1).then_some(()))
    })
    .await?;
    let id = w.sim.push_message(w.general, w.alice, "after re-identify");
    recv(&mut rx, |e| is_message(e, id)).await?;
    client.disconnect().await;
    bridge_tests::wait_until(WAIT, "the session to close", || async { Ok((w.sim.gateway_sessions() == 0).then_some(())) }).await?;
    Ok(())
}

#[tokio::test]
async fn a_revoked_token_reports_bad_credentials() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, mut rx) = load(&w, "revoked-token").await?;
    client.connect().await;
    let event = recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::BadCredentials { .. }))).await?;
    assert!(matches!(event, RemoteEvent::StateChanged(LoginState::BadCredentials { ref reason }) if reason.contains("token")));
    client.disconnect().await;
    Ok(())
}

/// The Discord bridge binary (`bridge-discord`'s `main`, built in this package).
fn discord_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_bridge-discord-e2e"))
}

/// The `bridge-discord` process pointed at a simulator (through the environment override of
/// `network.api_base_url`), with its own Synapse. It can be restarted on the same config and
/// database.
struct DiscordBridge {
    dir: tempfile::TempDir,
    synapse: Synapse,
    process: Option<BridgeProcess>,
    /// Where the bridge listens.
    port: u16,
    /// The environment of every run.
    env: Vec<(String, String)>,
}

/// The line the bridge logs once it serves.
const RUNNING: &str = "bridge is running";

impl DiscordBridge {
    async fn start(sim: &DiscordSim) -> anyhow::Result<Self> {
        Self::start_with(sim, &[]).await
    }

    /// Starts the bridge with extra environment (config overrides such as
    /// `DISCORD_BRIDGE__APPSERVICE__PUBLIC_MEDIA__ENABLED`).
    async fn start_with(sim: &DiscordSim, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with_options(sim, extra_env, false).await
    }

    /// [`DiscordBridge::start_with`], with Synapse's database on disk when `persistent`
    /// (for tests that stop and start it).
    async fn start_with_options(sim: &DiscordSim, extra_env: &[(&str, &str)], persistent: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bridge-discord-").tempdir()?;
        let config = dir.path().join("config.yaml");
        let port = free_port()?;
        cli(dir.path(), &["generate-config"]).await?;
        let edits = [
            ("domain: \"example.com\"".to_owned(), "domain: \"test.localhost\"".to_owned()),
            ("\"example.com\": user".to_owned(), "\"test.localhost\": user".to_owned()),
            ("address: \"http://127.0.0.1:29334/\"".to_owned(), format!("address: \"http://127.0.0.1:{port}/\"")),
            ("port: 29334".to_owned(), format!("port: {port}")),
        ];
        for (from, to) in &edits {
            edit(&config, from, to)?;
        }
        cli(dir.path(), &["generate-registration"]).await?;
        let synapse = Synapse::start(SynapseOptions {
            appservice_files: vec![dir.path().join("registration.yaml")],
            persistent,
            ..SynapseOptions::default()
        })
        .await?;
        edit(&config, "address: \"http://127.0.0.1:8008/\"", &format!("address: \"{}/\"", synapse.url().trim_end_matches('/')))?;
        let mut env: Vec<(String, String)> = vec![
            ("RUST_LOG".to_owned(), "bridge_core=debug,bridge_discord=debug,info".to_owned()),
            ("DISCORD_BRIDGE__NETWORK__API_BASE_URL".to_owned(), sim.url()),
            ("DISCORD_BRIDGE__BRIDGE__RELAY__ENABLED".to_owned(), "true".to_owned()),
            // The client's own grace (network.disconnect_grace_seconds) already delays it.
            ("DISCORD_BRIDGE__BRIDGE__NOTIFY_DISCONNECT_AFTER_SECS".to_owned(), "0".to_owned()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut bridge = Self { dir, synapse, process: None, port, env };
        bridge.run().await?;
        Ok(bridge)
    }

    /// Starts the process and waits until it serves (its log is appended to across runs).
    async fn run(&mut self) -> anyhow::Result<()> {
        let before = self.log().matches(RUNNING).count();
        self.spawn()?;
        wait_until(WAIT, "the bridge to run", async || Ok((self.log().matches(RUNNING).count() > before).then_some(()))).await
    }

    /// Starts the process without waiting for it to serve.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = BridgeCommand::new(discord_bin())
            .args(["-c", "config.yaml", "-r", "registration.yaml", "run"])
            .current_dir(self.dir.path())
            .name("bridge");
        for (key, value) in &self.env {
            command = command.env(key, value);
        }
        self.process = Some(command.spawn()?);
        Ok(())
    }

    /// Kills the process with SIGKILL.
    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// The bridge's `/health` answer.
    async fn health(&self) -> anyhow::Result<serde_json::Value> {
        Ok(reqwest::get(format!("http://127.0.0.1:{}/health", self.port)).await?.error_for_status()?.json().await?)
    }

    /// Stops the process (SIGTERM) and waits for it to exit.
    async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.terminate().await?;
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default()
    }
}

/// Runs a bridge subcommand in `dir` and requires success.
async fn cli(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["-c", "config.yaml", "-r", "registration.yaml"];
    full.extend_from_slice(args);
    let output = BridgeCommand::new(discord_bin()).args(&full).current_dir(dir).name("cli").output().await?;
    anyhow::ensure!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

fn body(event: &serde_json::Value) -> &str {
    event["content"]["body"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn discord_bridge_process_logs_in_and_bridges_a_guild_channel() -> anyhow::Result<()> {
    let w = world().await?;
    let bridge = DiscordBridge::start(&w.sim).await?;
    let result = bridge_guild(&w, &bridge).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&bridge.log(), 120));
    }
    result
}

async fn bridge_guild(w: &World, bridge: &DiscordBridge) -> anyhow::Result<()> {
    let bot = "@discordbot:test.localhost";
    let user = bridge.synapse.register_user(&random_localpart("alice"), false).await?;
    let management = user.create_dm(bot).await?;
    user.wait_for_membership(&management, bot, "join", WAIT).await?;

    // `login token`: a rejected token is explained, a bot token completes the login.
    user.send_text(&management, "login token").await?;
    user.wait_for_event(&management, |e| e["sender"] == bot && body(e).contains("token"), WAIT).await?;
    user.send_text(&management, "not-a-bot-token").await?;
    user.wait_for_event(&management, |e| e["sender"] == bot && body(e).contains("developer portal"), WAIT).await?;
    user.send_text(&management, &w.token).await?;
    user.wait_for_event(&management, |e| e["sender"] == bot && body(e).contains("Bridge Bot"), WAIT).await?;
    assert!(!bridge.log().contains(&w.token), "the token must never be logged");

    // The bot connects; a guild message opens a portal with the converted formatting.
    wait_until(WAIT, "the gateway session", || async { Ok((w.sim.gateway_sessions() == 1).then_some(())) }).await?;
    w.sim.push_message(w.general, w.alice, "hello **Matrix**");
    let ghost = GhostNamer::new("discord_{id}", "test.localhost")
        .user_id(&w.alice.to_string())
        .ok_or_else(|| anyhow::anyhow!("no ghost for alice"))?
        .to_string();
    // Join every invite (the login's space and the portal) until a room shows the message.
    let mut since: Option<String> = None;
    let (portal, event) = wait_until(WAIT, "the portal with the message", async || {
        // Incremental syncs: Synapse caches identical full syncs for a while.
        let sync = user.sync_once(since.as_deref()).await?;
        since = sync["next_batch"].as_str().map(str::to_owned).or(since.take());
        let invites: Vec<String> = sync["rooms"]["invite"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        for room in invites {
            user.join(&room).await?;
        }
        for room in user.joined_rooms().await? {
            if room == management {
                continue;
            }
            let found = user.messages(&room, 20).await?.into_iter().find(|e| e["sender"] == ghost.as_str() && body(e) == "hello **Matrix**");
            if let Some(event) = found {
                return Ok(Some((room, event)));
            }
        }
        Ok(None)
    })
    .await?;
    assert_eq!(event["content"]["formatted_body"], "hello <strong>Matrix</strong>", "{event}");
    let profile = user.profile(&ghost).await?;
    assert_eq!(profile["displayname"], "Alice Liddell", "{profile}");

    // A Matrix reply reaches the channel as markdown.
    user.send_event(
        &portal,
        "m.room.message",
        serde_json::json!({
            "msgtype": "m.text",
            "body": "hi *there*",
            "format": "org.matrix.custom.html",
            "formatted_body": "hi <em>there</em> 2*2",
        }),
    )
    .await?;
    let request = w.sim.wait_request(WAIT, "the Matrix message", |r| r.method == "POST" && r.path == format!("/channels/{}/messages", w.general)).await?;
    assert_eq!(request.body["content"], "hi *there* 2\\*2");
    Ok(())
}

#[tokio::test]
async fn refused_privileged_intents_are_explained_and_not_retried() -> anyhow::Result<()> {
    let w = world().await?;
    w.sim.disallow_privileged_intents(w.bot);
    let (client, mut rx) = load(&w, &w.token).await?;
    client.connect().await;
    let event = recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::BadCredentials { .. }))).await?;
    let RemoteEvent::StateChanged(LoginState::BadCredentials { reason }) = event else { unreachable!() };
    assert!(reason.contains("Message Content Intent") && reason.contains("developer portal"), "{reason}");
    assert_eq!(client.state(), LoginState::BadCredentials { reason });
    assert_eq!(w.sim.identified(), 0, "the refused IDENTIFY opened no session");
    // Without the privileged intents in the config, the same bot connects.
    let connector = DiscordConnector::new(DiscordConfig {
        api_base_url: w.sim.url(),
        message_content_intent: false,
        guild_members_intent: false,
        ..DiscordConfig::default()
    })?;
    let (relaxed, mut rx) = load_with(&connector, w.bot, &w.token).await?;
    relaxed.connect().await;
    recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected))).await?;
    relaxed.disconnect().await;
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn a_gateway_outage_is_reported_and_retried_at_a_slow_pace() -> anyhow::Result<()> {
    let w = world().await?;
    let config = DiscordConfig { api_base_url: w.sim.url(), disconnect_grace_seconds: 1, ..DiscordConfig::default() };
    let (client, mut rx) = load_with(&DiscordConnector::new(config)?, w.bot, &w.token).await?;
    client.connect().await;
    recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected))).await?;

    // The gateway goes away (connections dropped before the websocket handshake).
    let before = w.sim.gateway_connections();
    w.sim.set_gateway_down(true);
    w.sim.drop_gateway_sessions();
    let lost = tokio::time::Instant::now();
    recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::TransientDisconnect { .. })))
        .await
        .map_err(|e| e.context(format!("the outage report ({} connections)", w.sim.gateway_connections() - before)))?;
    // Three attempts while it is down take seconds, not milliseconds: no reconnect storm.
    wait_until(Duration::from_secs(30), "three reconnect attempts", || async {
        Ok((w.sim.gateway_connections() >= before + 3).then_some(()))
    })
    .await?;
    let elapsed = lost.elapsed();
    assert!(elapsed >= Duration::from_secs(4), "three attempts within {elapsed:?}");
    assert_eq!(w.sim.identified(), 1, "no session was opened while down");

    // Back up: one new session, reported, and events flow.
    w.sim.set_gateway_down(false);
    recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected)))
        .await
        .map_err(|e| e.context(format!("the reconnection ({} connections, {} identified)", w.sim.gateway_connections() - before, w.sim.identified())))?;
    let id = w.sim.push_message(w.general, w.alice, "after the outage");
    recv(&mut rx, |e| is_message(e, id)).await?;
    assert_eq!(w.sim.identified(), 2);
    assert_eq!(w.sim.gateway_sessions(), 1);
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn a_gateway_that_closes_every_connection_causes_no_reconnect_storm() -> anyhow::Result<()> {
    let w = world().await?;
    let (client, mut rx) = connected(&w).await?;

    // The gateway accepts websockets and closes them at once; serenity alone would resume
    // in a tight loop (thousands of connections a second) until its heartbeat check fails.
    w.sim.set_gateway_closing(true);
    let before = w.sim.gateway_connections();
    let dropped = tokio::time::Instant::now();
    w.sim.drop_gateway_sessions();
    recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::TransientDisconnect { .. })))
        .await
        .map_err(|e| e.context(format!("the disconnect report ({} connections)", w.sim.gateway_connections() - before)))?;
    assert!(matches!(client.state(), LoginState::TransientDisconnect { .. } | LoginState::Connecting), "{:?}", client.state());
    // Count the connections over a measured 10-second window.
    tokio::time::sleep_until(dropped + Duration::from_secs(10)).await;
    let seen = w.sim.gateway_connections() - before;
    assert!(seen <= 10, "{seen} gateway connections in 10 s");
    assert!(seen >= 2, "the bridge kept trying ({seen} connections)");

    // The gateway recovers: a new session, reported, and events flow.
    w.sim.set_gateway_closing(false);
    recv(&mut rx, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected)))
        .await
        .map_err(|e| e.context(format!("the reconnection ({} connections)", w.sim.gateway_connections() - before)))?;
    let id = w.sim.push_message(w.general, w.alice, "after the storm");
    recv(&mut rx, |e| is_message(e, id)).await?;
    assert_eq!(w.sim.gateway_sessions(), 1);
    client.disconnect().await;
    // The disconnect closes the session for good: serenity does not resume it.
    bridge_tests::wait_until(WAIT, "the session to close", || async { Ok((w.sim.gateway_sessions() == 0).then_some(())) }).await?;
    assert_eq!(w.sim.resumed(), 0);
    Ok(())
}
