//! The test network itself, without Synapse or a bridge: the login flows through the
//! `LoginProcess` trait, events both ways through a `TestClient`, catch-up after a
//! disconnect, reconnecting after a server restart, revoked sessions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::bridge::ids::GhostNamer;
use bridge_core::network::events::{ChatRef, LoginState, MediaKind, MessageContent};
use bridge_core::network::login::{Display, FieldKind, LoginStep};
use bridge_core::network::{
    EventSender, LoginId, NetworkClient, NetworkConnector, NetworkError, OutgoingContent, OutgoingMessage,
    RemoteChatId, RemoteEvent, RemoteMessageId, RemoteUserId, StoredLogin,
};
use bridge_tests::testnet::{Action, ChatSpec, MediaSpec, MessageSpec, Sent, TestConnector, TestNet};
use bridge_tests::wait_until;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

fn input(key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_owned(), value.to_owned())])
}

fn bad_input(result: Result<LoginStep, NetworkError>) -> String {
    match result {
        Err(NetworkError::BadInput(message)) => message,
        other => panic!("expected BadInput, got {other:?}"),
    }
}

fn field_kind(step: &LoginStep) -> (String, FieldKind) {
    match step {
        LoginStep::UserInput { step_id, fields, .. } => (step_id.clone(), fields[0].kind),
        other => panic!("expected user input, got {other:?}"),
    }
}

/// A network with accounts `alice` (phone +15550001, password `hunter2`) and `bob`, users
/// `carol`, a group `g1` of all three and a DM `d1` between alice and carol.
async fn network() -> anyhow::Result<TestNet> {
    let net = TestNet::start().await?;
    net.add_account("+15550001", "alice", "Alice", Some("hunter2"));
    net.add_account("+15550002", "bob", "Bob", None);
    net.add_user("carol", "Carol");
    net.add_chat(ChatSpec::group("g1", "Group one", &["alice", "bob", "carol"]));
    net.add_chat(ChatSpec::direct("d1", "alice", "carol"));
    Ok(net)
}

/// A client for `account` (logged in directly) connected to a fresh event channel.
async fn client(
    net: &TestNet,
    account: &str,
) -> anyhow::Result<(Arc<dyn NetworkClient>, mpsc::Receiver<(LoginId, RemoteEvent)>)> {
    let session = net.create_session(account)?;
    load(net, account, session).await
}

async fn load(
    net: &TestNet,
    account: &str,
    session: serde_json::Value,
) -> anyhow::Result<(Arc<dyn NetworkClient>, mpsc::Receiver<(LoginId, RemoteEvent)>)> {
    let connector = TestConnector::new(&net.url())?;
    let (tx, rx) = mpsc::channel(64);
    let login = StoredLogin {
        id: LoginId::from(account),
        user: ruma::OwnedUserId::try_from("@someone:test.localhost")?,
        remote_name: account.to_owned(),
        session,
    };
    let client = connector.load_login(login, EventSender::new(LoginId::from(account), tx, GhostNamer::new("test_{id}", "test.localhost"))).await?;
    Ok((client, rx))
}

/// Receives events until one matches `pred` (others are skipped); fails after [`WAIT`].
async fn recv(rx: &mut mpsc::Receiver<(LoginId, RemoteEvent)>, pred: impl Fn(&RemoteEvent) -> bool) -> anyhow::Result<RemoteEvent> {
    bridge_tests::next_remote_event(rx, WAIT, pred).await
}

fn is_state(event: &RemoteEvent, want: fn(&LoginState) -> bool) -> bool {
    matches!(event, RemoteEvent::StateChanged(state) if want(state))
}

fn text_of(event: &RemoteEvent) -> Option<&str> {
    match event {
        RemoteEvent::Message { parts, .. } => match &parts.first()?.content {
            MessageContent::Text { body, .. } => Some(body),
            _ => None,
        },
        _ => None,
    }
}

fn group() -> ChatRef {
    ChatRef { id: RemoteChatId::from("g1"), receiver: None }
}

fn text(body: &str) -> OutgoingContent {
    OutgoingContent::Text { body: body.to_owned(), html: None, mentions: Vec::new(), emote: false }
}

fn outgoing(chat: ChatRef, content: OutgoingContent) -> OutgoingMessage {
    OutgoingMessage { chat, content, reply_to: None, thread_root: None, relayed_from: None, avatar_url: None }
}

#[tokio::test]
async fn qr_login_shows_a_refreshed_code_and_completes_on_scan() -> anyhow::Result<()> {
    let net = network().await?;
    let connector = TestConnector::new(&net.url())?;
    assert_eq!(connector.login_flows().iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["password", "qr", "token"]);
    assert!(net.scan_qr("alice").is_err(), "nothing to scan yet");

    let mut login = connector.create_login("qr").await?;
    let first = login.start().await?;
    assert!(matches!(&first, LoginStep::DisplayAndWait { step_id, display: Display::Qr(code), .. }
        if step_id == "qr" && code == "testnet-qr-1"), "{first:?}");
    assert_eq!(net.pending_qr_codes(), ["testnet-qr-1"]);
    assert_eq!(net.wait_qr(WAIT).await?, "testnet-qr-1");

    let waiter = tokio::spawn(async move { (login.wait().await, login) });
    net.refresh_qr();
    let (refreshed, mut login) = tokio::time::timeout(WAIT, waiter).await??;
    assert!(matches!(refreshed?, LoginStep::DisplayAndWait { display: Display::Qr(code), .. } if code == "testnet-qr-2"));

    let waiter = tokio::spawn(async move { login.wait().await });
    net.scan_qr("alice")?;
    let done = tokio::time::timeout(WAIT, waiter).await??;
    let LoginStep::Complete { login: completed, .. } = done? else { panic!("expected completion") };
    assert_eq!((completed.remote_id.as_str(), completed.remote_name.as_str()), ("alice", "Alice"));
    assert!(completed.session["token"].is_string());
    assert!(net.is_logged_in("alice"));
    assert!(net.pending_qr_codes().is_empty());

    // The completed session works.
    let (client, mut rx) = load(&net, "alice", completed.session).await?;
    client.connect().await;
    recv(&mut rx, |e| is_state(e, |s| *s == LoginState::Connected)).await?;
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn password_and_token_logins_reprompt_on_bad_input() -> anyhow::Result<()> {
    let net = network().await?;
    net.add_bot_account("bot-secret", "helperbot", "Helper");
    let connector = TestConnector::new(&net.url())?;

    let mut login = connector.create_login("password").await?;
    let step = login.start().await?;
    assert_eq!(field_kind(&step), ("phone".to_owned(), FieldKind::PhoneNumber));
    assert!(bad_input(login.submit_input(input("phone", "15550001")).await).contains('+'));
    let step = login.submit_input(input("phone", "+15550001")).await?;
    assert_eq!(field_kind(&step), ("code".to_owned(), FieldKind::Code));
    assert!(bad_input(login.submit_input(input("code", "00000")).await).contains("wrong code"));
    net.set_login_code("777");
    assert!(bad_input(login.submit_input(input("code", "12345")).await).contains("wrong code"));
    let step = login.submit_input(input("code", "777")).await?;
    assert_eq!(field_kind(&step), ("password".to_owned(), FieldKind::Password));
    assert!(bad_input(login.submit_input(input("password", "wrong")).await).contains("wrong password"));
    let done = login.submit_input(input("password", "hunter2")).await?;
    assert!(matches!(&done, LoginStep::Complete { login, .. } if login.remote_id == "alice"), "{done:?}");

    // An account without a password completes after the code.
    let mut login = connector.create_login("password").await?;
    login.start().await?;
    login.submit_input(input("phone", "+15550002")).await?;
    let done = login.submit_input(input("code", "777")).await?;
    assert!(matches!(&done, LoginStep::Complete { login, .. } if login.remote_id == "bob"), "{done:?}");

    let mut login = connector.create_login("token").await?;
    assert_eq!(field_kind(&login.start().await?), ("token".to_owned(), FieldKind::Token));
    assert!(bad_input(login.submit_input(input("token", "guess")).await).contains("invalid token"));
    let done = login.submit_input(input("token", "bot-secret")).await?;
    assert!(matches!(&done, LoginStep::Complete { login, .. } if login.remote_id == "helperbot"), "{done:?}");

    // Cancelling a waiting QR login removes it; unknown flows are refused.
    let mut login = connector.create_login("qr").await?;
    login.start().await?;
    login.cancel().await;
    assert!(net.pending_qr_codes().is_empty());
    assert!(matches!(connector.create_login("carrier-pigeon").await, Err(NetworkError::NotFound(_))));

    // Without network.server the connector builds, but logins say what is missing.
    let unset = TestConnector::new("")?;
    let error = unset.create_login("qr").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("network.server"), "{error}");
    Ok(())
}

#[tokio::test]
async fn events_flow_both_ways_between_the_network_and_the_client() -> anyhow::Result<()> {
    let net = network().await?;
    let (client, mut rx) = client(&net, "alice").await?;
    client.connect().await;
    recv(&mut rx, |e| is_state(e, |s| *s == LoginState::Connected)).await?;
    assert_eq!(client.state(), LoginState::Connected);

    // Remote → client: group and DM messages, HTML, media, edits, reactions, deletes, receipts.
    let m1 = net.push_message("g1", "carol", MessageSpec { html: Some("<b>hi</b>".into()), ..MessageSpec::text("hi") })?;
    let event = recv(&mut rx, |e| text_of(e) == Some("hi")).await?;
    let RemoteEvent::Message { chat, id, sender, parts, .. } = &event else { unreachable!() };
    assert_eq!((chat, id.as_str(), sender.user.as_str(), sender.is_from_me), (&group(), m1.as_str(), "carol", false));
    assert!(matches!(&parts[0].content, MessageContent::Text { html: Some(h), .. } if h == "<b>hi</b>"));

    net.push_message("d1", "carol", MessageSpec::text("psst"))?;
    let event = recv(&mut rx, |e| text_of(e) == Some("psst")).await?;
    let RemoteEvent::Message { chat, .. } = &event else { unreachable!() };
    assert_eq!(chat.receiver.as_ref().map(LoginId::as_str), Some("alice"), "DMs are per login");

    net.push_message("g1", "alice", MessageSpec::text("from my phone"))?;
    let event = recv(&mut rx, |e| text_of(e) == Some("from my phone")).await?;
    assert!(matches!(&event, RemoteEvent::Message { sender, .. } if sender.is_from_me));

    let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
    let media = MediaSpec { kind: MediaKind::Image, filename: "cat.png".into(), mime: "image/png".into(), bytes: png.clone() };
    let cat = net.push_message("g1", "carol", MessageSpec { media: Some(media), ..MessageSpec::text("a cat") })?;
    let event = recv(&mut rx, |e| matches!(e, RemoteEvent::Message { parts, .. } if matches!(parts[0].content, MessageContent::Media(_)))).await?;
    let RemoteEvent::Message { parts, .. } = &event else { unreachable!() };
    let MessageContent::Media(m) = &parts[0].content else { unreachable!() };
    assert_eq!((m.filename.as_str(), m.caption.as_deref(), m.size), ("cat.png", Some("a cat"), Some(png.len() as u64)));
    let (bytes, mime) = client.download_media(&m.source).await?;
    assert_eq!((bytes.as_ref(), mime.as_deref()), (png.as_slice(), Some("image/png")));

    net.push_edit("g1", &m1, "carol", "hi!", None)?;
    recv(&mut rx, |e| matches!(e, RemoteEvent::Edit { id, .. } if id.as_str() == m1)).await?;
    net.push_reaction("g1", &m1, "carol", "👍", true)?;
    recv(&mut rx, |e| matches!(e, RemoteEvent::ReactionAdd { emoji, .. } if emoji == "👍")).await?;
    net.push_reaction("g1", &m1, "carol", "👍", false)?;
    recv(&mut rx, |e| matches!(e, RemoteEvent::ReactionRemove { .. })).await?;
    net.push_typing("g1", "carol", 3000)?;
    recv(&mut rx, |e| matches!(e, RemoteEvent::Typing { timeout_ms: 3000, .. })).await?;
    net.push_read_receipt("g1", "carol", &m1)?;
    recv(&mut rx, |e| matches!(e, RemoteEvent::ReadReceipt { up_to, .. } if up_to.as_str() == m1)).await?;
    net.set_chat_topic("g1", Some("news"))?;
    net.push_chat_info_changed("g1")?;
    recv(&mut rx, |e| matches!(e, RemoteEvent::ChatInfoChanged { info, .. } if info.topic.as_deref() == Some("news"))).await?;
    net.set_user_name("carol", "Caroline");
    let avatar = net.set_user_avatar("carol", &png);
    net.push_user_info_changed("carol")?;
    let event = recv(&mut rx, |e| matches!(e, RemoteEvent::UserInfoChanged { .. })).await?;
    let RemoteEvent::UserInfoChanged { info, .. } = event else { unreachable!() };
    assert_eq!((info.name.as_deref(), info.avatar.map(|a| a.id)), (Some("Caroline"), Some(avatar)));
    net.push_delete("g1", &m1, "carol")?;
    recv(&mut rx, |e| matches!(e, RemoteEvent::Delete { id, .. } if id.as_str() == m1)).await?;

    // Client → remote: every call shows up in the action log.
    let sent = client.send_message(outgoing(group(), text("hello from matrix"))).await?;
    let action = net.wait_action(WAIT, |a| matches!(a, Action::Send { content, .. } if content.body() == Some("hello from matrix"))).await?;
    assert!(matches!(&action, Action::Send { login, chat, id, .. } if login == "alice" && chat == "g1" && *id == sent.id.0));
    let empty = client.send_message(outgoing(group(), text(" "))).await;
    assert!(matches!(empty, Err(NetworkError::BadInput(ref m)) if m.contains("empty")), "{empty:?}");
    let file = OutgoingContent::Media {
        kind: MediaKind::File,
        data: bytes::Bytes::from_static(b"report"),
        filename: "r.txt".into(),
        mime: "text/plain".into(),
        caption: None,
    };
    client.send_message(outgoing(group(), file)).await?;
    net.wait_action(WAIT, |a| matches!(a, Action::Send { content: Sent::Media { data, .. }, .. } if data == b"report")).await?;

    let edits = client.edits().expect("edits");
    edits.edit_message(&group(), &sent.id, text("hello, edited")).await?;
    let reactions = client.reactions().expect("reactions");
    let emoji = reactions.emoji_id("🎉").expect("emoji");
    reactions.add_reaction(&group(), &sent.id, &emoji).await?;
    reactions.remove_reaction(&group(), &sent.id, &emoji).await?;
    let presence = client.presence().expect("presence");
    presence.set_typing(&group(), true).await?;
    presence.mark_read(&group(), &sent.id).await?;
    client.deletions().expect("deletions").delete_message(&group(), &sent.id).await?;
    let kinds: Vec<&'static str> = net
        .actions()
        .iter()
        .map(|a| match a {
            Action::Send { .. } => "send",
            Action::Edit { .. } => "edit",
            Action::Delete { .. } => "delete",
            Action::Reaction { add: true, .. } => "react",
            Action::Reaction { add: false, .. } => "unreact",
            Action::Typing { .. } => "typing",
            Action::Read { .. } => "read",
            Action::Logout { .. } => "logout",
        })
        .collect();
    assert_eq!(kinds, ["send", "send", "edit", "react", "unreact", "typing", "read", "delete"]);
    let stale = edits.edit_message(&group(), &sent.id, text("again")).await;
    assert!(matches!(stale, Err(NetworkError::NotFound(_))), "{stale:?}");

    // Lookups: chat and user info, history, recent chats, starting a chat.
    let info = client.chat_info(&group()).await?;
    assert_eq!((info.name.as_deref(), info.members.map(|m| m.len())), (Some("Group one"), Some(3)));
    assert_eq!(client.user_info(&RemoteUserId::from("alice")).await?.name.as_deref(), Some("Alice"));
    let history = client.history().expect("history");
    let page = history.fetch_history(&group(), None, 3).await?;
    assert_eq!(page.len(), 3);
    assert_eq!(text_of(&page[2]), Some("from my phone"), "newest first, deleted messages left out");
    let older = history.fetch_history(&group(), Some(&RemoteMessageId::from(cat.as_str())), 10).await?;
    assert_eq!(older.iter().map(|e| text_of(e)).collect::<Vec<_>>(), [Some("from my phone")]);
    let recent = history.recent_chats(10).await?;
    assert_eq!(recent.first().map(|c| c.id.as_str()), Some("g1"));
    let (user, chat) = client.chat_starter().expect("starter").resolve_identifier("Caroline").await?;
    assert_eq!((user.as_str(), chat.as_str()), ("carol", "d1"));
    assert!(matches!(client.user_info(&RemoteUserId::from("nobody")).await, Err(NetworkError::NotFound(_))));

    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn events_queued_while_disconnected_arrive_after_reconnect() -> anyhow::Result<()> {
    let net = network().await?;
    let session = net.create_session("alice")?;
    let (client, mut rx) = load(&net, "alice", session.clone()).await?;
    client.connect().await;
    net.push_message("g1", "carol", MessageSpec::text("before"))?;
    recv(&mut rx, |e| text_of(e) == Some("before")).await?;
    wait_until(WAIT, "the ack", || async { Ok((net.pending_events("alice") == 0).then_some(())) }).await?;
    client.disconnect().await;

    for n in 1..=3 {
        net.push_message("g1", "carol", MessageSpec::text(&format!("while down {n}")))?;
    }
    assert_eq!(net.pending_events("alice"), 3);

    // A new client, as after a bridge restart, gets exactly the missed events, in order.
    let (client, mut rx) = load(&net, "alice", session).await?;
    client.connect().await;
    let mut texts = Vec::new();
    while texts.len() < 3 {
        let event = recv(&mut rx, |e| text_of(e).is_some()).await?;
        texts.push(text_of(&event).unwrap_or_default().to_owned());
    }
    assert_eq!(texts, ["while down 1", "while down 2", "while down 3"]);
    wait_until(WAIT, "the ack", || async { Ok((net.pending_events("alice") == 0).then_some(())) }).await?;
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn the_client_reconnects_after_a_server_restart() -> anyhow::Result<()> {
    let net = network().await?;
    let (client, mut rx) = client(&net, "alice").await?;
    client.connect().await;
    recv(&mut rx, |e| is_state(e, |s| *s == LoginState::Connected)).await?;

    net.stop().await;
    assert!(!net.is_running());
    recv(&mut rx, |e| is_state(e, |s| matches!(s, LoginState::TransientDisconnect { .. }))).await?;
    net.push_message("g1", "carol", MessageSpec::text("sent during the outage"))?;
    net.start_again().await?;
    recv(&mut rx, |e| is_state(e, |s| *s == LoginState::Connected)).await?;
    recv(&mut rx, |e| text_of(e) == Some("sent during the outage")).await?;

    net.restart().await?;
    net.push_message("g1", "carol", MessageSpec::text("after restart"))?;
    recv(&mut rx, |e| text_of(e) == Some("after restart")).await?;
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn revoked_sessions_report_bad_credentials_and_logout_is_logged() -> anyhow::Result<()> {
    let net = network().await?;
    let (alice, mut alice_rx) = client(&net, "alice").await?;
    alice.connect().await;
    recv(&mut alice_rx, |e| is_state(e, |s| *s == LoginState::Connected)).await?;
    net.revoke_login("alice");
    recv(&mut alice_rx, |e| is_state(e, |s| matches!(s, LoginState::BadCredentials { .. }))).await?;
    assert!(matches!(alice.state(), LoginState::BadCredentials { .. }));
    let refused = alice.send_message(outgoing(group(), text("still there?"))).await;
    assert!(matches!(refused, Err(NetworkError::NotLoggedIn)), "{refused:?}");
    alice.disconnect().await;

    let (bob, mut bob_rx) = client(&net, "bob").await?;
    bob.connect().await;
    recv(&mut bob_rx, |e| is_state(e, |s| *s == LoginState::Connected)).await?;
    bob.disconnect().await;
    bob.logout().await?;
    assert_eq!(bob.state(), LoginState::LoggedOut);
    assert!(!net.is_logged_in("bob"));
    net.wait_action(WAIT, |a| matches!(a, Action::Logout { login } if login == "bob")).await?;
    Ok(())
}
