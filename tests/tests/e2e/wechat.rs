//! The WeChat client (`bridge-wechat`) in-process against the real npm Wechaty puppet
//! service (PuppetServer over PuppetMock, see `bridge_tests::wechaty`): QR login, incoming
//! texts, room messages, files and recalls, outgoing texts, mentions and images, topic
//! changes, the service going away and coming back (with sends waiting in the queue), the
//! heartbeat watchdog. The bridge process against Synapse is in [`synapse`] (sessions,
//! groups, restarts), [`files`] (video, voice, emoticons, large files, URL avatars, the
//! user's own puppet service), [`queue`] (the queue across restarts, the pacing warning
//! across restarts) and [`resilience`] (a logout from the phone, resets of the puppet).

use std::sync::Arc;
use std::time::Duration;

use bridge_core::bridge::ids::GhostNamer;
use bridge_core::network::events::{ChatRef, LoginState, MediaKind, MessageContent};
use bridge_core::network::login::{CompletedLogin, Display, LoginStep};
use bridge_core::network::{
    EventSender, LoginId, LoginProcess, NetworkClient, NetworkConnector, OutgoingContent, OutgoingMessage,
    RemoteChatId, RemoteEvent, RemoteMessageId, RemoteUserId, StoredLogin,
};
use bridge_tests::wechaty::{ScanStatus, To, WechatyPuppet};
use bridge_tests::{free_port, wait_until, BridgeCommand, BridgeProcess, Synapse, SynapseOptions};
use bridge_wechat::config::PacingConfig;
use bridge_wechat::{WechatConfig, WechatConnector};
use tokio::sync::mpsc;

use crate::env::edit;

/// How long a test waits for something that should happen promptly.
const WAIT: Duration = Duration::from_secs(30);

/// A logged-in client on a fresh puppet service, with the queue its events arrive on.
struct Logged {
    puppet: WechatyPuppet,
    client: Arc<dyn NetworkClient>,
    events: mpsc::Receiver<(LoginId, RemoteEvent)>,
    login: LoginId,
}

fn config(puppet: &WechatyPuppet) -> WechatConfig {
    WechatConfig {
        endpoint: puppet.endpoint(),
        token: puppet.token().to_owned(),
        pacing: PacingConfig { min_interval_ms: 0, jitter_ms: 0, daily_warning: 0 },
        heartbeat_interval_secs: 2,
        heartbeat_timeout_secs: 6,
        call_timeout_secs: 10,
        ..WechatConfig::default()
    }
}

/// Runs one step of a login process in a task, so the test can script the puppet meanwhile.
fn step_in_background(
    mut process: Box<dyn LoginProcess>,
    start: bool,
) -> tokio::task::JoinHandle<(Box<dyn LoginProcess>, Result<LoginStep, bridge_core::network::NetworkError>)> {
    tokio::spawn(async move {
        let step = if start { process.start().await } else { process.wait().await };
        (process, step)
    })
}

async fn finish(
    task: tokio::task::JoinHandle<(Box<dyn LoginProcess>, Result<LoginStep, bridge_core::network::NetworkError>)>,
) -> anyhow::Result<(Box<dyn LoginProcess>, LoginStep)> {
    let (process, step) = tokio::time::timeout(WAIT, task).await??;
    Ok((process, step?))
}

/// Logs in through the `qr` flow as a new contact named `name`; returns the completed login.
async fn qr_login(puppet: &WechatyPuppet, connector: &WechatConnector, name: &str) -> anyhow::Result<CompletedLogin> {
    let me = puppet.create_contact(name, None).await?;
    let process = connector.create_login("qr").await?;
    let task = step_in_background(process, true);
    puppet.wait_streaming(WAIT).await?;
    puppet.scan("https://login.weixin.qq.com/l/first", ScanStatus::Waiting).await?;
    let (process, step) = finish(task).await?;
    assert!(
        matches!(&step, LoginStep::DisplayAndWait { step_id, display: Display::Qr(code), .. }
            if step_id == "qr" && code == "https://login.weixin.qq.com/l/first"),
        "{step:?}"
    );

    // The code refreshes: a new QR step. Then scanned, then logged in.
    let task = step_in_background(process, false);
    puppet.scan("https://login.weixin.qq.com/l/second", ScanStatus::Waiting).await?;
    let (process, step) = finish(task).await?;
    assert!(matches!(&step, LoginStep::DisplayAndWait { display: Display::Qr(code), .. } if code.ends_with("second")), "{step:?}");
    let task = step_in_background(process, false);
    puppet.scan("", ScanStatus::Scanned).await?;
    let (process, step) = finish(task).await?;
    assert_eq!(step.step_id(), "qr-scanned");
    let task = step_in_background(process, false);
    puppet.login(&me).await?;
    let (_process, step) = finish(task).await?;
    let LoginStep::Complete { login, .. } = step else { anyhow::bail!("not complete: {step:?}") };
    assert_eq!(login.remote_id, me);
    Ok(login)
}

/// A fresh puppet service, a QR login as `name`, and its connected client.
async fn logged_in(name: &str) -> anyhow::Result<Logged> {
    let puppet = WechatyPuppet::start().await?;
    let connector = WechatConnector::new(config(&puppet));
    let completed = qr_login(&puppet, &connector, name).await?;
    let login = LoginId::from(completed.remote_id.as_str());
    let (tx, mut events) = mpsc::channel(64);
    let sender = EventSender::new(login.clone(), tx, GhostNamer::new("wechat_{id}", "test.localhost"));
    let stored = StoredLogin {
        id: login.clone(),
        user: "@alice:test.localhost".try_into()?,
        remote_name: completed.remote_name,
        session: completed.session,
    };
    let client = connector.load_login(stored, sender).await?;
    client.connect().await;
    next_event(&mut events, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected))).await?;
    Ok(Logged { puppet, client, events, login })
}

/// The next event matching `want`, skipping others; fails after [`WAIT`].
async fn next_event(
    events: &mut mpsc::Receiver<(LoginId, RemoteEvent)>,
    want: impl Fn(&RemoteEvent) -> bool,
) -> anyhow::Result<RemoteEvent> {
    bridge_tests::next_remote_event(events, WAIT, want).await
}

fn is_message(id: &str) -> impl Fn(&RemoteEvent) -> bool + '_ {
    move |e| matches!(e, RemoteEvent::Message { id: m, .. } if m.as_str() == id)
}

fn text_of(event: &RemoteEvent) -> Option<&MessageContent> {
    match event {
        RemoteEvent::Message { parts, .. } => parts.first().map(|p| &p.content),
        _ => None,
    }
}

fn dm(login: &LoginId, contact: &str) -> ChatRef {
    ChatRef { id: RemoteChatId::from(contact), receiver: Some(login.clone()) }
}

fn room(id: &str) -> ChatRef {
    ChatRef { id: RemoteChatId::from(id), receiver: None }
}

fn text(chat: ChatRef, body: &str, html: Option<&str>, mentions: &[&str]) -> OutgoingMessage {
    OutgoingMessage {
        chat,
        content: OutgoingContent::Text {
            body: body.to_owned(),
            html: html.map(str::to_owned),
            mentions: mentions.iter().map(|m| RemoteUserId::from(*m)).collect(),
            emote: false,
        },
        reply_to: None,
        thread_root: None,
        relayed_from: None,
        avatar_url: None,
    }
}

/// A login while the bridge's puppet service is down tells the user which address (and
/// config key) cannot be reached, in words without the library's.
#[tokio::test]
async fn wechat_login_names_an_unreachable_endpoint() -> anyhow::Result<()> {
    let endpoint = format!("http://127.0.0.1:{}", free_port()?);
    let connector = WechatConnector::new(WechatConfig {
        endpoint: endpoint.clone(),
        call_timeout_secs: 5,
        ..WechatConfig::default()
    });
    let mut process = connector.create_login("qr").await?;
    let Err(error) = tokio::time::timeout(WAIT, process.start()).await? else {
        anyhow::bail!("a login started without a puppet service");
    };
    let message = error.to_string();
    assert!(message.contains(&endpoint) && message.contains("network.endpoint"), "{message}");
    assert!(!message.contains("puppet"), "{message}");
    Ok(())
}

#[tokio::test]
async fn wechat_qr_login_completes_with_the_real_name() -> anyhow::Result<()> {
    let puppet = WechatyPuppet::start().await?;
    let connector = WechatConnector::new(config(&puppet));
    assert_eq!(connector.login_flows()[0].id, "qr");
    let login = qr_login(&puppet, &connector, "测试用户").await?;
    assert_eq!(login.remote_name, "测试用户");
    assert_eq!(login.session["self_id"], login.remote_id.as_str());
    assert!(login.session.get("token").is_none(), "the config's token is not copied into the session");
    let health = puppet.health().await?;
    assert_eq!(health.self_id.as_deref(), Some(login.remote_id.as_str()));
    Ok(())
}

#[tokio::test]
async fn wechat_incoming_dm_text_has_a_named_sender() -> anyhow::Result<()> {
    let mut t = logged_in("我").await?;
    let zhang = t.puppet.create_contact("张三", Some("老张")).await?;
    let li = t.puppet.create_contact("李四", None).await?;

    let id = t.puppet.send_text(&zhang, To::Me, "你好，在吗？", &[]).await?;
    let event = next_event(&mut t.events, is_message(&id)).await?;
    let RemoteEvent::Message { chat, sender, .. } = &event else { unreachable!() };
    assert_eq!(chat, &dm(&t.login, &zhang));
    assert_eq!(sender.user.as_str(), zhang);
    assert!(!sender.is_from_me);
    assert!(matches!(text_of(&event), Some(MessageContent::Text { body, .. }) if body == "你好，在吗？"));

    // The remark wins over the nickname; without one, the nickname — never the wxid.
    assert_eq!(t.client.user_info(&RemoteUserId::from(zhang.as_str())).await?.name.as_deref(), Some("老张"));
    assert_eq!(t.client.user_info(&RemoteUserId::from(li.as_str())).await?.name.as_deref(), Some("李四"));
    let info = t.client.chat_info(&dm(&t.login, &zhang)).await?;
    assert!(info.is_direct);
    assert_eq!(info.name.as_deref(), Some("老张"));
    Ok(())
}

#[tokio::test]
async fn wechat_incoming_room_message_uses_room_aliases_and_mentions() -> anyhow::Result<()> {
    let mut t = logged_in("我").await?;
    let me = t.login.as_str().to_owned();
    let wang = t.puppet.create_contact("王五", None).await?;
    let zhao = t.puppet.create_contact("赵六", None).await?;
    let group = t.puppet.create_room("家庭群", &[&me, &wang, &zhao], &[(&wang, "大哥")]).await?;

    let id = t.puppet.send_text(&wang, To::Room(&group), "@赵六\u{2005}晚上吃饭", &[&zhao]).await?;
    let event = next_event(&mut t.events, is_message(&id)).await?;
    let RemoteEvent::Message { chat, sender, .. } = &event else { unreachable!() };
    assert_eq!(chat, &room(&group));
    assert_eq!(sender.user.as_str(), wang);
    let Some(MessageContent::Text { mentions, html, .. }) = text_of(&event) else { anyhow::bail!("not text: {event:?}") };
    assert_eq!(mentions, &vec![RemoteUserId::from(zhao.as_str())]);
    let html = html.as_deref().unwrap_or_default();
    assert!(html.contains("https://matrix.to/#/@wechat_") && html.contains(">赵六</a>"), "{html}");

    let info = t.client.chat_info(&room(&group)).await?;
    assert_eq!(info.name.as_deref(), Some("家庭群"));
    assert!(!info.is_direct);
    let members = info.members.unwrap_or_default();
    assert_eq!(members.len(), 3);
    let wang_member = members.iter().find(|m| m.user.as_str() == wang).expect("member");
    assert_eq!(wang_member.nickname.as_deref(), Some("大哥"));

    t.puppet.set_topic(&group, "家庭群（新）", &wang).await?;
    let event = next_event(&mut t.events, |e| matches!(e, RemoteEvent::ChatInfoChanged { .. })).await?;
    let RemoteEvent::ChatInfoChanged { chat, info } = event else { unreachable!() };
    assert_eq!(chat, room(&group));
    assert_eq!(info.name.as_deref(), Some("家庭群（新）"));
    Ok(())
}

#[tokio::test]
async fn wechat_incoming_image_and_file_download() -> anyhow::Result<()> {
    let mut t = logged_in("我").await?;
    let zhang = t.puppet.create_contact("张三", None).await?;
    let image: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let cases = [("照片.png", image.clone(), MediaKind::Image), ("报告.pdf", b"%PDF-1.4 test".to_vec(), MediaKind::File)];
    for (name, data, kind) in cases {
        let id = t.puppet.send_file(&zhang, To::Me, name, &data).await?;
        let event = next_event(&mut t.events, is_message(&id)).await?;
        let Some(MessageContent::Media(media)) = text_of(&event) else { anyhow::bail!("not media: {event:?}") };
        assert_eq!(media.kind, kind, "{name}");
        assert_eq!(media.filename, name);
        let (bytes, _mime) = t.client.download_media(&media.source).await?;
        assert_eq!(bytes.as_ref(), data.as_slice(), "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn wechat_outgoing_text_mention_and_image_reach_the_puppet() -> anyhow::Result<()> {
    let mut t = logged_in("我").await?;
    let me = t.login.as_str().to_owned();
    let zhang = t.puppet.create_contact("张三", None).await?;
    let group = t.puppet.create_room("工作群", &[&me, &zhang], &[]).await?;

    let sent = t.client.send_message(text(dm(&t.login, &zhang), "你好 👋", None, &[])).await?;
    let html = format!("<a href=\"https://matrix.to/#/@wechat_{zhang}:test.localhost\">张三</a> 开会了");
    let mention = t.client.send_message(text(room(&group), "张三 开会了", Some(&html), &[&zhang])).await?;
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\nfake image".to_vec();
    let image = t
        .client
        .send_message(OutgoingMessage {
            content: OutgoingContent::Media {
                kind: MediaKind::Image,
                data: png.clone().into(),
                filename: "图.png".to_owned(),
                mime: "image/png".to_owned(),
                caption: None,
            },
            ..text(room(&group), "", None, &[])
        })
        .await?;

    let received = t.puppet.sent().await?;
    assert_eq!(received.len(), 3, "{received:?}");
    assert_eq!((received[0].id.as_str(), received[0].conversation_id.as_str()), (sent.id.as_str(), zhang.as_str()));
    assert_eq!(received[0].text.as_deref(), Some("你好 👋"));
    assert_eq!(received[1].id, mention.id.as_str());
    assert_eq!(received[1].text.as_deref(), Some("@张三\u{2005} 开会了"));
    assert_eq!(received[1].mention_ids, vec![zhang.clone()]);
    assert_eq!(received[2].id, image.id.as_str());
    let file = received[2].file.as_ref().expect("a file");
    assert_eq!((file.name.as_str(), file.size), ("图.png", png.len() as u64));

    // The puppet echoes every sent message; the client drops the echoes, so the next message
    // event is the one sent after them.
    let marker = t.puppet.send_text(&zhang, To::Me, "收到", &[]).await?;
    let first = next_event(&mut t.events, |e| matches!(e, RemoteEvent::Message { .. })).await?;
    assert!(is_message(&marker)(&first), "an echo was bridged: {first:?}");
    Ok(())
}

#[tokio::test]
async fn wechat_recalls_in_both_directions() -> anyhow::Result<()> {
    let mut t = logged_in("我").await?;
    let zhang = t.puppet.create_contact("张三", None).await?;

    // Matrix → WeChat: a redaction recalls the message.
    let sent = t.client.send_message(text(dm(&t.login, &zhang), "发错了", None, &[])).await?;
    let deletions = t.client.deletions().expect("recalls are supported");
    deletions.delete_message(&dm(&t.login, &zhang), &sent.id).await?;
    assert_eq!(t.puppet.recalled().await?, vec![sent.id.as_str().to_owned()]);

    // WeChat → Matrix: the contact recalls a message.
    let id = t.puppet.send_text(&zhang, To::Me, "撤回这条", &[]).await?;
    next_event(&mut t.events, is_message(&id)).await?;
    t.puppet.recall(&id).await?;
    let event = next_event(&mut t.events, |e| matches!(e, RemoteEvent::Delete { .. })).await?;
    assert_eq!(
        event,
        RemoteEvent::Delete {
            chat: dm(&t.login, &zhang),
            id: RemoteMessageId::from(id.as_str()),
            sender: bridge_core::network::events::Sender { user: RemoteUserId::from(zhang.as_str()), is_from_me: false },
        }
    );
    Ok(())
}

#[tokio::test]
async fn wechat_reconnects_when_the_service_comes_back() -> anyhow::Result<()> {
    let mut t = logged_in("我").await?;
    let zhang = t.puppet.create_contact("张三", None).await?;

    t.puppet.stop_server().await?;
    next_event(&mut t.events, |e| matches!(e, RemoteEvent::StateChanged(LoginState::TransientDisconnect { .. }))).await?;
    assert!(matches!(t.client.state(), LoginState::TransientDisconnect { .. }));
    t.puppet.start_server().await?;
    next_event(&mut t.events, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected))).await?;

    let id = t.puppet.send_text(&zhang, To::Me, "又连上了", &[]).await?;
    next_event(&mut t.events, is_message(&id)).await?;
    t.client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn wechat_a_silent_stream_is_reopened_by_the_heartbeat_watchdog() -> anyhow::Result<()> {
    let mut t = logged_in("我").await?;
    let zhang = t.puppet.create_contact("张三", None).await?;
    // Pings go unanswered: after the heartbeat timeout (6 s here) the stream counts as dead.
    t.puppet.freeze(true).await?;
    let event = next_event(&mut t.events, |e| matches!(e, RemoteEvent::StateChanged(LoginState::TransientDisconnect { .. }))).await?;
    let RemoteEvent::StateChanged(LoginState::TransientDisconnect { reason }) = event else { unreachable!() };
    assert!(reason.contains("heartbeat"), "{reason}");
    t.puppet.freeze(false).await?;
    next_event(&mut t.events, |e| matches!(e, RemoteEvent::StateChanged(LoginState::Connected))).await?;
    let id = t.puppet.send_text(&zhang, To::Me, "还在", &[]).await?;
    next_event(&mut t.events, is_message(&id)).await?;
    Ok(())
}

#[tokio::test]
async fn wechat_sends_wait_in_the_queue_while_the_service_is_away() -> anyhow::Result<()> {
    let mut t = logged_in("我").await?;
    let zhang = t.puppet.create_contact("张三", None).await?;
    t.puppet.stop_server().await?;
    next_event(&mut t.events, |e| matches!(e, RemoteEvent::StateChanged(LoginState::TransientDisconnect { .. }))).await?;

    // Sends return at once with provisional ids; a redaction of a waiting one cancels it.
    let chat = dm(&t.login, &zhang);
    let first = t.client.send_message(text(chat.clone(), "一", None, &[])).await?;
    let cancelled = t.client.send_message(text(chat.clone(), "不要了", None, &[])).await?;
    let second = t.client.send_message(text(chat.clone(), "二", None, &[])).await?;
    for sent in [&first, &cancelled, &second] {
        assert!(sent.id.as_str().starts_with("pending-"), "{sent:?}");
    }
    let deletions = t.client.deletions().expect("recalls are supported");
    deletions.delete_message(&chat, &cancelled.id).await?;

    t.puppet.start_server().await?;
    let received = wait_until(WAIT, "the queued messages", async || {
        let sent = t.puppet.sent().await?;
        Ok((sent.len() >= 2).then_some(sent))
    })
    .await?;
    let texts: Vec<&str> = received.iter().filter_map(|s| s.text.as_deref()).collect();
    assert_eq!(texts, ["一", "二"]);

    // The provisional id now stands for the real one: a redaction recalls it.
    deletions.delete_message(&chat, &first.id).await?;
    assert_eq!(t.puppet.recalled().await?, vec![received[0].id.clone()]);
    // Their echoes are not bridged back.
    let marker = t.puppet.send_text(&zhang, To::Me, "好的", &[]).await?;
    let next = next_event(&mut t.events, |e| matches!(e, RemoteEvent::Message { .. })).await?;
    assert!(is_message(&marker)(&next), "an echo was bridged: {next:?}");
    Ok(())
}

#[tokio::test]
async fn wechat_logouts_are_reported() -> anyhow::Result<()> {
    // Logged out from the phone: the session is no longer valid.
    let mut t = logged_in("我").await?;
    t.puppet.logout().await?;
    let event = next_event(&mut t.events, |e| matches!(e, RemoteEvent::StateChanged(LoginState::BadCredentials { .. }))).await?;
    assert!(matches!(t.client.state(), LoginState::BadCredentials { .. }), "{event:?}");

    // `logout` from Matrix logs the puppet out.
    let mut t = logged_in("我").await?;
    t.client.logout().await?;
    assert_eq!(t.client.state(), LoginState::LoggedOut);
    next_event(&mut t.events, |e| matches!(e, RemoteEvent::StateChanged(LoginState::LoggedOut))).await?;
    assert!(!t.puppet.health().await?.logged_in);
    Ok(())
}

/// The WeChat bridge binary (`bridge-wechat`'s `main`, built in this package).
fn wechat_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_bridge-wechat-e2e"))
}

/// Runs a bridge subcommand in `dir` and requires success.
async fn wechat_cli(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["-c", "config.yaml", "-r", "registration.yaml"];
    full.extend_from_slice(args);
    let output = BridgeCommand::new(wechat_bin()).args(&full).current_dir(dir).name("cli").output().await?;
    anyhow::ensure!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

mod files;
mod queue;
mod resilience;
mod synapse;

/// The WeChat bridge process over `puppet`, with its own Synapse.
struct WechatBridge {
    dir: tempfile::TempDir,
    synapse: Synapse,
    process: Option<BridgeProcess>,
}

impl WechatBridge {
    /// Generates the config and registration as a user would, points the config at the
    /// puppet service (no pacing), starts Synapse and the bridge.
    /// Further `(from, to)` edits of the generated config are applied after the usual ones.
    async fn start_with(puppet: &WechatyPuppet, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bridge-wechat-").tempdir()?;
        let config = dir.path().join("config.yaml");
        let port = free_port()?;
        wechat_cli(dir.path(), &["generate-config"]).await?;
        let edits = [
            ("domain: \"example.com\"".to_owned(), "domain: \"test.localhost\"".to_owned()),
            ("\"example.com\": user".to_owned(), "\"test.localhost\": user".to_owned()),
            ("address: \"http://127.0.0.1:29318/\"".to_owned(), format!("address: \"http://127.0.0.1:{port}/\"")),
            ("port: 29318".to_owned(), format!("port: {port}")),
            ("endpoint: http://127.0.0.1:8788".to_owned(), format!("endpoint: {}", puppet.endpoint())),
            ("token: \"\"".to_owned(), format!("token: \"{}\"", puppet.token())),
            ("min_interval_ms: 1000".to_owned(), "min_interval_ms: 0".to_owned()),
            ("jitter_ms: 1000".to_owned(), "jitter_ms: 0".to_owned()),
            ("heartbeat_interval_secs: 30".to_owned(), "heartbeat_interval_secs: 2".to_owned()),
            ("heartbeat_timeout_secs: 90".to_owned(), "heartbeat_timeout_secs: 6".to_owned()),
            ("call_timeout_secs: 15".to_owned(), "call_timeout_secs: 5".to_owned()),
            // Every drop is told at once: the tests follow each one.
            ("notify_disconnect_after_secs: 30".to_owned(), "notify_disconnect_after_secs: 0".to_owned()),
        ];
        for (from, to) in &edits {
            edit(&config, from, to)?;
        }
        for (from, to) in extra {
            edit(&config, from, to)?;
        }
        wechat_cli(dir.path(), &["generate-registration"]).await?;
        let synapse = Synapse::start(SynapseOptions {
            appservice_files: vec![dir.path().join("registration.yaml")],
            ..SynapseOptions::default()
        })
        .await?;
        edit(&config, "address: \"http://127.0.0.1:8008/\"", &format!("address: \"{}/\"", synapse.url().trim_end_matches('/')))?;
        let mut bridge = Self { dir, synapse, process: None };
        bridge.run().await?;
        Ok(bridge)
    }

    /// Starts the bridge process and waits until it runs.
    async fn run(&mut self) -> anyhow::Result<()> {
        let runs = self.log().matches("bridge is running").count();
        let process = BridgeCommand::new(wechat_bin())
            .args(["-c", "config.yaml", "-r", "registration.yaml", "run"])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "bridge_core=debug,bridge_wechat=debug,info")
            .name("bridge")
            .spawn()?;
        self.process = Some(process);
        wait_until(WAIT, "the bridge to run", async || Ok((self.log().matches("bridge is running").count() > runs).then_some(()))).await
    }

    /// Kills the bridge process (SIGKILL).
    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default()
    }
}

