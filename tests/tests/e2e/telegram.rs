//! The Telegram network crate against the Telegram simulator, in process: the real grammers
//! client of `bridge-telegram` logs in by phone (a wrong code and a wrong cloud password
//! asked again), reloads its session from the login store, follows the updates and sends;
//! then the `bridge-telegram` process itself with Synapse and the simulator (`full`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::bridge::ids::GhostNamer;
use bridge_core::network::events::{ChatRef, LoginState, MessageContent};
use bridge_core::network::login::{Display, FieldKind, LoginStep};
use bridge_core::network::{
    EventSender, LoginId, LoginStore, NetworkClient, NetworkConnector, NetworkError,
    OutgoingContent, OutgoingMessage, RemoteChatId, RemoteEvent, RemoteMessageId, RemoteUserId,
    StoredLogin,
};
use bridge_telegram::{TelegramConfig, TelegramConnector};
use bridge_tests::telegram_sim::{SimAccount, TelegramSim};
use tokio::sync::mpsc;

mod full;

const WAIT: Duration = Duration::from_secs(20);

type Events = mpsc::Receiver<(LoginId, RemoteEvent)>;

/// A simulator with an account (with a cloud password) and a contact.
struct World {
    sim: TelegramSim,
    account: SimAccount,
    contact: i64,
}

const PASSWORD: &str = "correct horse 電池 staple";

async fn world() -> anyhow::Result<World> {
    let sim = TelegramSim::start().await?;
    let account = sim.add_account("+44 7700 900123", "Alice", Some("Liddell"), Some(PASSWORD));
    let contact = sim.add_user("Bob", Some("Brown"), Some("bobby"));
    Ok(World {
        sim,
        account,
        contact,
    })
}

fn config(sim: &TelegramSim) -> TelegramConfig {
    TelegramConfig {
        api_id: 12345,
        api_hash: "0123456789abcdef".to_owned(),
        device_model: "Bridge test rig".to_owned(),
        test_dc_address: sim.address(),
        test_auth_key: sim.auth_key_hex(),
        ..TelegramConfig::default()
    }
}

fn one(key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_owned(), value.to_owned())])
}

fn step_id(step: &LoginStep) -> &str {
    step.step_id()
}

/// Logs the world's account in by phone; returns the completed login's session.
async fn phone_login(
    w: &World,
    connector: &TelegramConnector,
) -> anyhow::Result<(String, serde_json::Value)> {
    let mut login = connector.create_login("phone").await?;
    let step = login.start().await?;
    assert_eq!(step_id(&step), "phone");
    let step = login.submit_input(one("phone", "+44 7700 900123")).await?;
    assert_eq!(step_id(&step), "code");
    let LoginStep::UserInput { fields, .. } = &step else {
        panic!("{step:?}")
    };
    assert_eq!(fields[0].kind, FieldKind::Code);
    let code = w.sim.login_code(&w.account.phone).expect("a code was sent");
    let wrong = if code == "00000" { "11111" } else { "00000" };
    match login.submit_input(one("code", wrong)).await {
        Err(NetworkError::BadInput(message)) => assert!(message.contains("code"), "{message}"),
        other => panic!("a wrong code must be re-asked: {other:?}"),
    }
    let step = login.submit_input(one("code", &code)).await?;
    assert_eq!(step_id(&step), "password");
    let LoginStep::UserInput {
        fields,
        instructions,
        ..
    } = &step
    else {
        panic!("{step:?}")
    };
    assert_eq!(fields[0].kind, FieldKind::Password);
    assert!(
        instructions.contains("simulated"),
        "the hint is shown: {instructions}"
    );
    match login.submit_input(one("password", "wrong password")).await {
        Err(NetworkError::BadInput(message)) => assert!(message.contains("password"), "{message}"),
        other => panic!("a wrong password must be re-asked: {other:?}"),
    }
    let done = login.submit_input(one("password", PASSWORD)).await?;
    let LoginStep::Complete {
        login: completed,
        instructions,
        ..
    } = done
    else {
        panic!("{done:?}")
    };
    assert!(instructions.contains("Alice Liddell"), "{instructions}");
    assert_eq!(completed.remote_id, w.account.id.to_string());
    assert_eq!(completed.remote_name, "Alice Liddell");
    Ok((completed.remote_id, completed.session))
}

fn ghosts() -> GhostNamer {
    GhostNamer::new("telegram_{id}", "test.localhost")
}

/// Loads and connects the login; waits until it is `Connected`.
async fn connected(
    connector: &TelegramConnector,
    id: &str,
    session: serde_json::Value,
    store: LoginStore,
) -> anyhow::Result<(Arc<dyn NetworkClient>, Events)> {
    let (tx, mut rx) = mpsc::channel(256);
    let login = LoginId(id.to_owned());
    let stored = StoredLogin {
        id: login.clone(),
        user: ruma::OwnedUserId::try_from("@owner:test.localhost")?,
        remote_name: "Alice".to_owned(),
        session,
    };
    let client = connector
        .load_login(
            stored,
            EventSender::new(login, tx, ghosts()).with_store(store),
        )
        .await?;
    client.connect().await;
    bridge_tests::next_remote_event(&mut rx, WAIT, |e| {
        matches!(e, RemoteEvent::StateChanged(LoginState::Connected))
    })
    .await?;
    Ok((client, rx))
}

/// Receives events until one matches `pred`; fails after [`WAIT`].
async fn recv(rx: &mut Events, pred: impl Fn(&RemoteEvent) -> bool) -> anyhow::Result<RemoteEvent> {
    bridge_tests::next_remote_event(rx, WAIT, pred).await
}

fn text_content(body: &str, html: Option<&str>) -> OutgoingContent {
    OutgoingContent::Text {
        body: body.to_owned(),
        html: html.map(str::to_owned),
        mentions: vec![],
        emote: false,
    }
}

/// The body of the next text message the client reports.
async fn next_text(rx: &mut Events) -> anyhow::Result<String> {
    let event =
        bridge_tests::next_remote_event(rx, WAIT, |e| matches!(e, RemoteEvent::Message { .. }))
            .await?;
    let RemoteEvent::Message { parts, .. } = event else {
        unreachable!()
    };
    match &parts[0].content {
        MessageContent::Text { body, .. } => Ok(body.clone()),
        other => anyhow::bail!("not text: {other:?}"),
    }
}

#[tokio::test]
async fn phone_login_re_asks_wrong_codes_and_passwords_and_the_session_survives_a_restart(
) -> anyhow::Result<()> {
    let w = world().await?;
    let connector = TelegramConnector::new(config(&w.sim))?;
    assert_eq!(
        connector
            .login_flows()
            .iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>(),
        ["phone", "qr", "bot"]
    );
    let (id, session) = phone_login(&w, &connector).await?;
    assert_eq!(w.sim.signed_in(), Some(w.account.id));
    assert!(w.sim.calls().contains(&"auth.checkPassword".to_owned()));
    let init = w.sim.inits().last().cloned().expect("initConnection");
    assert_eq!(
        (init.api_id, init.device_model.as_str()),
        (12345, "Bridge test rig")
    );
    bridge_tests::wait_until(WAIT, "the login's own connection to close", || async {
        Ok((w.sim.connections(w.account.id) == 0).then_some(()))
    })
    .await?;

    let store = LoginStore::in_memory(&LoginId(id.clone()));
    let (client, mut rx) = connected(&connector, &id, session.clone(), store.clone()).await?;
    assert_eq!(
        w.sim.connections(w.account.id),
        1,
        "one connection per login"
    );

    // A message from the contact arrives with the contact's real name on the ghost.
    let text = "你好, Alice! 👋 **not bold**";
    let bold: grammers_tl_types::enums::MessageEntity =
        grammers_tl_types::types::MessageEntityBold {
            offset: 0,
            length: 2,
        }
        .into();
    let incoming = w
        .sim
        .send_private(w.contact, w.account.id, text, vec![bold]);
    let event = bridge_tests::next_remote_event(&mut rx, WAIT, |e| {
        matches!(e, RemoteEvent::Message { .. })
    })
    .await?;
    let RemoteEvent::Message {
        chat,
        sender,
        parts,
        ..
    } = event
    else {
        unreachable!()
    };
    assert_eq!(
        chat,
        ChatRef {
            id: RemoteChatId(w.contact.to_string()),
            receiver: Some(LoginId(id.clone()))
        }
    );
    assert_eq!(sender.user, RemoteUserId(w.contact.to_string()));
    assert!(!sender.is_from_me);
    let MessageContent::Text { body, html, .. } = &parts[0].content else {
        panic!("{parts:?}")
    };
    assert_eq!(body, text);
    assert_eq!(
        html.as_deref(),
        Some("<strong>你好</strong>, Alice! 👋 **not bold**")
    );
    let info = client.user_info(&sender.user).await?;
    assert_eq!(info.name.as_deref(), Some("Bob Brown"));
    let chat_info = client.chat_info(&chat).await?;
    assert!(chat_info.is_direct);

    // Matrix → Telegram, with formatting.
    let outgoing = OutgoingMessage {
        chat: chat.clone(),
        content: OutgoingContent::Text {
            body: "**hi** 🎉".to_owned(),
            html: Some("<strong>hi</strong> 🎉 <code>x</code>".to_owned()),
            mentions: vec![],
            emote: false,
        },
        reply_to: Some(RemoteMessageId(incoming.to_string())),
        thread_root: None,
        relayed_from: None,
        avatar_url: None,
    };
    let sent = client.send_message(outgoing).await?;
    let messages = w.sim.messages(w.account.id, w.contact);
    let last = messages.last().expect("sent");
    assert_eq!(last.id.to_string(), sent.id.as_str());
    assert!(last.out);
    assert_eq!(last.text, "hi 🎉 x");
    assert_eq!(
        last.entities,
        vec![("bold".to_owned(), 0, 2), ("code".to_owned(), 6, 1)]
    );
    assert_eq!(
        last.reply_to,
        Some(incoming),
        "a Matrix reply is a Telegram reply"
    );
    // The contact answers the bridged message with a reply.
    w.sim
        .reply_private(w.contact, w.account.id, "re: hi", vec![], Some(last.id));
    let reply = recv(&mut rx, |e| matches!(e, RemoteEvent::Message { .. })).await?;
    let RemoteEvent::Message { reply_to, .. } = reply else {
        unreachable!()
    };
    assert_eq!(reply_to, Some(sent.id.clone()));

    // Edits and deletions both ways; what the account sends from its phone.
    w.sim.edit_private(w.account.id, incoming, "你好 (edited)");
    let edit = recv(&mut rx, |e| matches!(e, RemoteEvent::Edit { .. })).await?;
    let RemoteEvent::Edit {
        id: edited,
        chat: edit_chat,
        parts,
        ..
    } = edit
    else {
        unreachable!()
    };
    assert_eq!(
        (edited.as_str(), &edit_chat),
        (incoming.to_string().as_str(), &chat)
    );
    assert!(
        matches!(&parts[0].content, MessageContent::Text { body, .. } if body == "你好 (edited)")
    );
    let edit_as = client.edits().expect("edits");
    edit_as
        .edit_message(&chat, &sent.id, text_content("fixed *typo*", None))
        .await?;
    let mine = w.sim.messages(w.account.id, w.contact);
    let mine = mine
        .iter()
        .find(|m| m.id.to_string() == sent.id.as_str())
        .expect("still there");
    assert!(mine.edited && mine.text == "fixed *typo*", "{mine:?}");
    w.sim.delete_private(w.account.id, incoming);
    // Nothing but the deletion comes first: the bridge's own edit is not echoed back.
    let deleted = recv(&mut rx, |e| {
        assert!(
            !matches!(e, RemoteEvent::Edit { .. }),
            "the bridge's own edit came back: {e:?}"
        );
        matches!(e, RemoteEvent::Delete { .. })
    })
    .await?;
    assert!(
        matches!(&deleted, RemoteEvent::Delete { id, chat: c, .. } if id.as_str() == incoming.to_string() && c == &chat),
        "{deleted:?}"
    );
    client
        .deletions()
        .expect("deletions")
        .delete_message(&chat, &sent.id)
        .await?;
    assert!(w
        .sim
        .messages(w.account.id, w.contact)
        .iter()
        .all(|m| m.id.to_string() != sent.id.as_str()));
    w.sim
        .send_private(w.account.id, w.contact, "from my phone", vec![]);
    let own = recv(&mut rx, |e| matches!(e, RemoteEvent::Message { .. })).await?;
    let RemoteEvent::Message {
        chat: own_chat,
        sender,
        parts,
        ..
    } = own
    else {
        unreachable!()
    };
    assert_eq!(own_chat, chat, "the private chat with the contact");
    assert!(sender.is_from_me);
    assert!(
        matches!(&parts[0].content, MessageContent::Text { body, .. } if body == "from my phone"),
        "the bridge's own sends are not echoed: {parts:?}"
    );

    // A restart: the session comes back from the store, and what was sent while the
    // client was away arrives once.
    client.disconnect().await;
    w.sim
        .send_private(w.contact, w.account.id, "while you were away", vec![]);
    // Long enough that the difference comes gzip-packed.
    let long = "长".repeat(400) + " end";
    w.sim.send_private(w.contact, w.account.id, &long, vec![]);
    let (client, mut rx) = connected(&connector, &id, session, store).await?;
    assert_eq!(next_text(&mut rx).await?, "while you were away");
    assert_eq!(next_text(&mut rx).await?, long);
    // A long message to Telegram goes gzip-packed too.
    let chat = ChatRef {
        id: RemoteChatId(w.contact.to_string()),
        receiver: Some(LoginId(id.clone())),
    };
    let outgoing = OutgoingMessage {
        chat,
        content: text_content(&long, None),
        reply_to: None,
        thread_root: None,
        relayed_from: None,
        avatar_url: None,
    };
    client.send_message(outgoing).await?;
    assert!(w
        .sim
        .messages(w.account.id, w.contact)
        .iter()
        .any(|m| m.out && m.text == long));
    w.sim
        .send_private(w.contact, w.account.id, "and now", vec![]);
    assert_eq!(
        next_text(&mut rx).await?,
        "and now",
        "no duplicate of the caught-up message"
    );
    client.disconnect().await;
    Ok(())
}

/// The QR link a step shows.
fn qr_link(step: &LoginStep) -> String {
    match step {
        LoginStep::DisplayAndWait {
            step_id,
            display: Display::Qr(link),
            ..
        } if step_id == "qr" => link.clone(),
        other => panic!("not a QR step: {other:?}"),
    }
}

#[tokio::test]
async fn qr_login_refreshes_its_code_is_accepted_on_the_phone_then_asks_the_cloud_password(
) -> anyhow::Result<()> {
    let w = world().await?;
    w.sim.set_login_token_lifetime(6);
    let connector = TelegramConnector::new(config(&w.sim))?;
    let mut login = connector.create_login("qr").await?;
    let first = qr_link(&login.start().await?);
    assert!(first.starts_with("tg://login?token="), "{first}");
    // Shown again with a new token before the old one expires.
    let second = qr_link(&tokio::time::timeout(WAIT, login.wait()).await??);
    assert_ne!(first, second);
    assert!(w.sim.login_tokens_issued() >= 2);

    w.sim.accept_login_token(&second, w.account.id)?;
    let step = tokio::time::timeout(WAIT, login.wait()).await??;
    assert_eq!(step_id(&step), "password");
    match login.submit_input(one("password", "wrong password")).await {
        Err(NetworkError::BadInput(message)) => assert!(message.contains("password"), "{message}"),
        other => panic!("a wrong password must be re-asked: {other:?}"),
    }
    let done = login.submit_input(one("password", PASSWORD)).await?;
    let LoginStep::Complete {
        login: completed, ..
    } = done
    else {
        panic!("{done:?}")
    };
    assert_eq!(completed.remote_id, w.account.id.to_string());
    assert_eq!(completed.remote_name, "Alice Liddell");

    // The session works.
    let id = completed.remote_id.clone();
    let store = LoginStore::in_memory(&LoginId(id.clone()));
    let (client, mut rx) = connected(&connector, &id, completed.session, store).await?;
    w.sim
        .send_private(w.contact, w.account.id, "hello by QR", vec![]);
    assert_eq!(next_text(&mut rx).await?, "hello by QR");
    client.disconnect().await;

    // An account without a cloud password is done once the phone accepts.
    let other = w.sim.add_account("+1 555 0100", "Olga", None, None);
    let mut login = connector.create_login("qr").await?;
    let link = qr_link(&login.start().await?);
    w.sim.accept_login_token(&link, other.id)?;
    let done = tokio::time::timeout(WAIT, login.wait()).await??;
    assert!(
        matches!(&done, LoginStep::Complete { login, .. } if login.remote_id == other.id.to_string() && login.remote_name == "Olga"),
        "{done:?}"
    );
    Ok(())
}

#[tokio::test]
async fn logins_need_the_api_credentials_and_explain_where_to_get_them() -> anyhow::Result<()> {
    let sim = TelegramSim::start().await?;
    let connector = TelegramConnector::new(TelegramConfig {
        api_id: 0,
        ..config(&sim)
    })?;
    match connector.create_login("phone").await {
        Err(NetworkError::BadInput(message)) => {
            assert!(message.contains("https://my.telegram.org"), "{message}")
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a login without api_id must be refused"),
    }
    Ok(())
}

#[tokio::test]
async fn bot_login_with_a_token() -> anyhow::Result<()> {
    let sim = TelegramSim::start().await?;
    let (bot, token) = sim.add_bot("Relay");
    let connector = TelegramConnector::new(config(&sim))?;
    let mut login = connector.create_login("bot").await?;
    assert_eq!(step_id(&login.start().await?), "token");
    match login.submit_input(one("token", "123:wrong")).await {
        Err(NetworkError::BadInput(message)) => assert!(message.contains("BotFather"), "{message}"),
        other => panic!("a wrong token must be re-asked: {other:?}"),
    }
    let done = login.submit_input(one("token", &token)).await?;
    let LoginStep::Complete {
        login: completed, ..
    } = done
    else {
        panic!("{done:?}")
    };
    assert_eq!(completed.remote_id, bot.to_string());
    assert_eq!(completed.remote_name, "Relay");
    Ok(())
}

#[tokio::test]
async fn a_session_ended_on_the_phone_is_reported_and_a_new_login_catches_up() -> anyhow::Result<()>
{
    let w = world().await?;
    let connector = TelegramConnector::new(TelegramConfig {
        keepalive_seconds: 1,
        ..config(&w.sim)
    })?;
    let (id, session) = phone_login(&w, &connector).await?;
    let store = LoginStore::in_memory(&LoginId(id.clone()));
    let (client, mut rx) = connected(&connector, &id, session, store.clone()).await?;

    w.sim.revoke_sessions(w.account.id);
    let event = bridge_tests::next_remote_event(&mut rx, WAIT, |e| {
        matches!(
            e,
            RemoteEvent::StateChanged(LoginState::BadCredentials { .. })
        )
    })
    .await?;
    let RemoteEvent::StateChanged(LoginState::BadCredentials { reason }) = event else {
        unreachable!()
    };
    assert!(reason.contains("SESSION_REVOKED"), "{reason}");
    assert!(matches!(client.state(), LoginState::BadCredentials { .. }));
    bridge_tests::wait_until(WAIT, "the revoked connection to close", || async {
        Ok((w.sim.connections(w.account.id) == 0).then_some(()))
    })
    .await?;
    w.sim
        .send_private(w.contact, w.account.id, "sent while logged out", vec![]);
    client.disconnect().await;

    // Logging in again (a new key on a real Telegram) resumes where the old session stopped.
    let (again, session) = phone_login(&w, &connector).await?;
    assert_eq!(again, id);
    let (client, mut rx) = connected(&connector, &id, session, store).await?;
    assert_eq!(next_text(&mut rx).await?, "sent while logged out");
    client.disconnect().await;
    Ok(())
}

fn outgoing(chat: &ChatRef, body: &str, reply_to: Option<&RemoteMessageId>) -> OutgoingMessage {
    OutgoingMessage {
        chat: chat.clone(),
        content: text_content(body, None),
        reply_to: reply_to.cloned(),
        thread_root: None,
        relayed_from: None,
        avatar_url: None,
    }
}

/// The texts the account sent to `peer`, oldest first.
fn sent_texts(sim: &TelegramSim, account: i64, peer: i64) -> Vec<String> {
    sim.messages(account, peer)
        .into_iter()
        .filter(|m| m.out)
        .map(|m| m.text)
        .collect()
}

#[tokio::test]
async fn sends_held_by_a_flood_wait_wait_in_order_and_their_user_is_told() -> anyhow::Result<()> {
    let w = world().await?;
    let connector = TelegramConnector::new(config(&w.sim))?;
    let (id, session) = phone_login(&w, &connector).await?;
    let store = LoginStore::in_memory(&LoginId(id.clone()));
    let (client, mut rx) = connected(&connector, &id, session.clone(), store.clone()).await?;
    w.sim.send_private(w.contact, w.account.id, "hello", vec![]);
    assert_eq!(next_text(&mut rx).await?, "hello");
    let chat = ChatRef {
        id: RemoteChatId(w.contact.to_string()),
        receiver: Some(LoginId(id.clone())),
    };

    // Telegram holds sends back for 3 s: each send returns at once with a provisional ID.
    w.sim.flood_for("messages.sendMessage", 3);
    let started = std::time::Instant::now();
    let first = client.send_message(outgoing(&chat, "first", None)).await?;
    let second = client
        .send_message(outgoing(&chat, "second", Some(&first.id)))
        .await?;
    let third = client.send_message(outgoing(&chat, "third", None)).await?;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no send waits for the flood"
    );
    assert!(first.id.as_str().starts_with("queued-"), "{:?}", first.id);
    let status = client.status().expect("ping shows the queue");
    assert!(status.starts_with("3 messages waiting"), "{status}");
    let notice = recv(&mut rx, |e| matches!(e, RemoteEvent::Notice(_))).await?;
    let RemoteEvent::Notice(text) = notice else {
        unreachable!()
    };
    assert!(text.contains("3 seconds"), "{text}");
    // A waiting message can still be edited or deleted.
    client
        .edits()
        .expect("edits")
        .edit_message(&chat, &second.id, text_content("second (edited)", None))
        .await?;
    client
        .deletions()
        .expect("deletions")
        .delete_message(&chat, &third.id)
        .await?;

    bridge_tests::wait_until(WAIT, "the queued messages to be sent", || async {
        Ok((sent_texts(&w.sim, w.account.id, w.contact).len() >= 2).then_some(()))
    })
    .await?;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "sent after the wait"
    );
    assert_eq!(
        sent_texts(&w.sim, w.account.id, w.contact),
        ["first", "second (edited)"]
    );
    let messages = w.sim.messages(w.account.id, w.contact);
    let first_real = messages.iter().find(|m| m.text == "first").expect("first");
    let second_real = messages
        .iter()
        .find(|m| m.text == "second (edited)")
        .expect("second");
    assert_eq!(
        second_real.reply_to,
        Some(first_real.id),
        "a reply to a queued message"
    );
    assert_eq!(client.status(), None, "nothing waits");

    // Telegram's news about a queued message names it by the ID the core knows; an edit
    // from Matrix reaches the real message. The sends themselves are not echoed.
    w.sim.reply_private(
        w.contact,
        w.account.id,
        "re: first",
        vec![],
        Some(first_real.id),
    );
    let reply = recv(&mut rx, |e| {
        assert!(
            !matches!(e, RemoteEvent::Message { sender, .. } if sender.is_from_me),
            "an own send came back: {e:?}"
        );
        matches!(e, RemoteEvent::Message { .. })
    })
    .await?;
    assert!(
        matches!(&reply, RemoteEvent::Message { reply_to: Some(r), .. } if r == &first.id),
        "{reply:?}"
    );
    client
        .edits()
        .expect("edits")
        .edit_message(&chat, &first.id, text_content("first (fixed)", None))
        .await?;
    assert!(w
        .sim
        .messages(w.account.id, w.contact)
        .iter()
        .any(|m| m.id == first_real.id && m.edited && m.text == "first (fixed)"));

    // What waits survives a restart, and goes out once.
    w.sim.flood_for("messages.sendMessage", 2);
    client.send_message(outgoing(&chat, "fourth", None)).await?;
    client.send_message(outgoing(&chat, "fifth", None)).await?;
    client.disconnect().await;
    drop(client);
    let (client, _rx) = connected(&connector, &id, session, store).await?;
    bridge_tests::wait_until(WAIT, "the messages from before the restart", || async {
        Ok((sent_texts(&w.sim, w.account.id, w.contact).len() >= 4).then_some(()))
    })
    .await?;
    assert_eq!(
        sent_texts(&w.sim, w.account.id, w.contact),
        ["first (fixed)", "second (edited)", "fourth", "fifth"]
    );
    client.disconnect().await;
    Ok(())
}

/// A logged-in client that received `text` from the contact: the world, the client, its
/// events, the private chat and the message's number.
async fn chatting(
    text: &str,
) -> anyhow::Result<(World, Arc<dyn NetworkClient>, Events, ChatRef, i32)> {
    let w = world().await?;
    let connector = TelegramConnector::new(config(&w.sim))?;
    let (id, session) = phone_login(&w, &connector).await?;
    let store = LoginStore::in_memory(&LoginId(id.clone()));
    let (client, mut rx) = connected(&connector, &id, session, store).await?;
    let incoming = w.sim.send_private(w.contact, w.account.id, text, vec![]);
    assert_eq!(next_text(&mut rx).await?, text);
    let chat = ChatRef {
        id: RemoteChatId(w.contact.to_string()),
        receiver: Some(LoginId(id)),
    };
    Ok((w, client, rx, chat, incoming))
}

#[tokio::test]
async fn typing_read_receipts_and_name_changes() -> anyhow::Result<()> {
    let (w, client, mut rx, chat, incoming) = chatting("are you there?").await?;

    w.sim.typing(w.contact, w.account.id);
    let typing = recv(&mut rx, |e| matches!(e, RemoteEvent::Typing { .. })).await?;
    assert!(
        matches!(&typing, RemoteEvent::Typing { chat: c, sender, timeout_ms } if c == &chat && sender.user.as_str() == w.contact.to_string() && *timeout_ms > 0),
        "{typing:?}"
    );
    let presence = client.presence().expect("presence");
    w.sim
        .rename(w.contact, "Robert", Some("Brown"), w.account.id);
    let renamed = recv(&mut rx, |e| {
        matches!(e, RemoteEvent::UserInfoChanged { .. })
    })
    .await?;
    assert!(
        matches!(&renamed, RemoteEvent::UserInfoChanged { user, info } if user.as_str() == w.contact.to_string() && info.name.as_deref() == Some("Robert Brown")),
        "{renamed:?}"
    );
    presence.set_typing(&chat, true).await?;
    assert_eq!(w.sim.typing_of(w.account.id, w.contact), Some(true));
    presence.set_typing(&chat, false).await?;
    assert_eq!(w.sim.typing_of(w.account.id, w.contact), Some(false));
    presence
        .mark_read(&chat, &RemoteMessageId(incoming.to_string()))
        .await?;
    assert_eq!(w.sim.read_up_to(w.account.id, w.contact), Some(incoming));

    let outgoing = OutgoingMessage {
        chat: chat.clone(),
        content: text_content("yes!", None),
        reply_to: None,
        thread_root: None,
        relayed_from: None,
        avatar_url: None,
    };
    let sent = client.send_message(outgoing).await?;
    w.sim.read_private(w.contact, w.account.id);
    let read = recv(&mut rx, |e| matches!(e, RemoteEvent::ReadReceipt { .. })).await?;
    assert!(
        matches!(&read, RemoteEvent::ReadReceipt { chat: c, sender, up_to } if c == &chat && sender.user.as_str() == w.contact.to_string() && up_to == &sent.id),
        "{read:?}"
    );
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn reactions_both_ways_and_unknown_ones_are_refused() -> anyhow::Result<()> {
    let (w, client, mut rx, chat, incoming) = chatting("react to me").await?;
    let target = RemoteMessageId(incoming.to_string());
    let reactions = client.reactions().expect("reactions");
    assert!(
        reactions.emoji_id("🦆").is_none(),
        "not a Telegram reaction"
    );
    let heart = reactions.emoji_id("❤️").expect("a Telegram reaction");

    // Matrix → Telegram; its echo is not reported back.
    reactions.add_reaction(&chat, &target, &heart).await?;
    let reacted = |account: i64| {
        w.sim
            .messages(account, w.contact)
            .into_iter()
            .find(|m| m.id == incoming)
            .map(|m| m.reactions)
            .unwrap_or_default()
    };
    assert_eq!(reacted(w.account.id), [(w.account.id, "❤".to_owned())]);

    // Telegram → Matrix: Bob reacts, then takes it back.
    w.sim.react(w.contact, w.account.id, incoming, Some("👍"));
    let added = recv(&mut rx, |e| {
        assert!(
            !matches!(e, RemoteEvent::ReactionAdd { sender, .. } if sender.is_from_me),
            "the bridge's own reaction came back: {e:?}"
        );
        matches!(e, RemoteEvent::ReactionAdd { .. })
    })
    .await?;
    assert!(
        matches!(&added, RemoteEvent::ReactionAdd { target: t, sender, emoji, .. } if t == &target && sender.user.as_str() == w.contact.to_string() && emoji == "👍"),
        "{added:?}"
    );
    w.sim.react(w.contact, w.account.id, incoming, None);
    let removed = recv(&mut rx, |e| matches!(e, RemoteEvent::ReactionRemove { .. })).await?;
    assert!(
        matches!(&removed, RemoteEvent::ReactionRemove { sender, emoji_id, .. } if sender.user.as_str() == w.contact.to_string() && emoji_id.0 == "👍"),
        "{removed:?}"
    );
    reactions.remove_reaction(&chat, &target, &heart).await?;
    assert!(reacted(w.account.id).is_empty());
    client.disconnect().await;
    Ok(())
}
