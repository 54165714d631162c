//! The WhatsApp client (`bridge-whatsapp`) in-process against the WhatsApp simulator
//! (`bridge_tests::whatsapp_sim`): the `qr` login links a device through the simulated
//! phone, the QR code refreshes, the linked device logs in without pairing (again after a
//! restart, then with the IK handshake), and a logout from the phone is reported. The bridge
//! process against Synapse is in [`synapse`].

use std::time::Duration;

use bridge_core::bridge::ids::GhostNamer;
use bridge_core::network::events::LoginState;
use bridge_core::network::login::{CompletedLogin, Display, LoginStep};
use bridge_core::network::{
    EventSender, LoginId, LoginProcess, LoginStore, NetworkClient, NetworkConnector, NetworkError,
    RemoteEvent, StoredLogin,
};
use bridge_tests::whatsapp_sim::{Unlink, WhatsappSim};
use bridge_tests::{wait_until, BridgeCommand};
use bridge_whatsapp::{WhatsappConfig, WhatsappConnector};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen promptly. A freshly linked
/// device waits up to 10 s for app-state keys the phone would share before it reports
/// itself connected.
const WAIT: Duration = Duration::from_secs(40);

type Step = (Box<dyn LoginProcess>, Result<LoginStep, NetworkError>);

fn config(sim: &WhatsappSim) -> WhatsappConfig {
    WhatsappConfig {
        websocket_url: sim.url(),
        ..WhatsappConfig::default()
    }
}

/// A random phone number, so tests never share an account.
fn random_phone() -> String {
    format!("1555{:07}", rand::random::<u32>() % 10_000_000)
}

/// Runs one step of a login process in a task, so the test can act as the phone meanwhile.
fn step_in_background(
    mut process: Box<dyn LoginProcess>,
    start: bool,
) -> tokio::task::JoinHandle<Step> {
    tokio::spawn(async move {
        let step = if start {
            process.start().await
        } else {
            process.wait().await
        };
        (process, step)
    })
}

async fn finish(
    task: tokio::task::JoinHandle<Step>,
) -> anyhow::Result<(Box<dyn LoginProcess>, LoginStep)> {
    let (process, step) = tokio::time::timeout(WAIT, task).await??;
    Ok((process, step?))
}

fn qr_of(step: &LoginStep) -> anyhow::Result<String> {
    match step {
        LoginStep::DisplayAndWait {
            step_id,
            display: Display::Qr(code),
            ..
        } if step_id == "qr" => Ok(code.clone()),
        other => anyhow::bail!("not a QR step: {other:?}"),
    }
}

/// Links a new device of account `phone` through the `qr` flow, with one refresh of the
/// QR code on the way; returns the completed login.
async fn qr_login(
    sim: &WhatsappSim,
    connector: &WhatsappConnector,
    phone: &str,
) -> anyhow::Result<CompletedLogin> {
    let (process, step) = finish(step_in_background(
        connector.create_login("qr").await?,
        true,
    ))
    .await?;
    let first = qr_of(&step)?;
    // WhatsApp rotates the references: the bridge shows a new code.
    let task = step_in_background(process, false);
    anyhow::ensure!(sim.refresh_qr() == 1, "one device should wait for a scan");
    let (process, step) = finish(task).await?;
    let second = qr_of(&step)?;
    assert_ne!(first, second, "the refreshed QR code must differ");
    // The old code no longer links; the new one does.
    assert!(
        sim.scan(&first, phone, Duration::from_millis(300))
            .await
            .is_err(),
        "a stale QR code was accepted"
    );
    let task = step_in_background(process, false);
    sim.scan(&second, phone, WAIT).await?;
    let (_process, step) = finish(task).await?;
    let LoginStep::Complete {
        login,
        instructions,
        ..
    } = step
    else {
        anyhow::bail!("not complete: {step:?}")
    };
    assert_eq!(login.remote_id, phone);
    assert_eq!(login.remote_name, format!("+{phone}"));
    assert!(
        instructions.contains(&format!("+{phone}")),
        "{instructions}"
    );
    Ok(login)
}

/// A loaded client of `login` over `store`, with the queue its events arrive on.
async fn load(
    connector: &WhatsappConnector,
    login: &CompletedLogin,
    store: &LoginStore,
) -> anyhow::Result<(
    std::sync::Arc<dyn NetworkClient>,
    mpsc::Receiver<(LoginId, RemoteEvent)>,
)> {
    let id = LoginId::from(login.remote_id.as_str());
    let (tx, events) = mpsc::channel(64);
    let sender = EventSender::new(
        id.clone(),
        tx,
        GhostNamer::new("whatsapp_{id}", "test.localhost"),
    )
    .with_store(store.clone());
    let stored = StoredLogin {
        id,
        user: "@alice:test.localhost".try_into()?,
        remote_name: login.remote_name.clone(),
        session: login.session.clone(),
    };
    let client = connector.load_login(stored, sender).await?;
    client.connect().await;
    Ok((client, events))
}

/// A device of account `phone` linked by QR code, loaded over a fresh store and connected.
async fn connected(
    sim: &WhatsappSim,
    connector: &WhatsappConnector,
    phone: &str,
) -> anyhow::Result<(
    CompletedLogin,
    LoginStore,
    std::sync::Arc<dyn NetworkClient>,
    mpsc::Receiver<(LoginId, RemoteEvent)>,
)> {
    let login = qr_login(sim, connector, phone).await?;
    let store = LoginStore::in_memory(&LoginId::from(phone));
    let (client, mut events) = load(connector, &login, &store).await?;
    next_state(&mut events, |s| *s == LoginState::Connected).await?;
    Ok((login, store, client, events))
}

async fn next_state(
    events: &mut mpsc::Receiver<(LoginId, RemoteEvent)>,
    want: impl Fn(&LoginState) -> bool,
) -> anyhow::Result<LoginState> {
    let event = bridge_tests::next_remote_event(
        events,
        WAIT,
        |e| matches!(e, RemoteEvent::StateChanged(s) if want(s)),
    )
    .await?;
    match event {
        RemoteEvent::StateChanged(state) => Ok(state),
        other => anyhow::bail!("not a state: {other:?}"),
    }
}

#[tokio::test]
async fn whatsapp_qr_login_links_a_device_that_logs_in_again_without_pairing() -> anyhow::Result<()>
{
    let sim = WhatsappSim::start().await?;
    let connector = WhatsappConnector::new(config(&sim));
    let phone = random_phone();
    let login = qr_login(&sim, &connector, &phone).await?;
    assert_eq!(sim.linked_devices(&phone), vec![1]);

    // The login's client takes the device from the session into its store and logs in.
    let store = LoginStore::in_memory(&LoginId::from(phone.as_str()));
    let (client, mut events) = load(&connector, &login, &store).await?;
    next_state(&mut events, |s| *s == LoginState::Connected).await?;
    assert_eq!(client.state(), LoginState::Connected);
    let iqs = sim.iqs();
    assert!(
        iqs.iter().any(|(xmlns, _)| xmlns == "w:sync:app:state"),
        "no app-state sync: {iqs:?}"
    );
    client.disconnect().await;
    wait_until(WAIT, "the device to disconnect", async || {
        Ok((sim.connected_devices(&phone) == 0).then_some(()))
    })
    .await?;

    // A restart: the same store logs in again with no pairing, now with Noise IK.
    let (client, mut events) = load(&connector, &login, &store).await?;
    next_state(&mut events, |s| *s == LoginState::Connected).await?;
    let logins = sim.logins();
    assert!(
        logins.len() >= 2 && logins.iter().all(|l| l.phone == phone && l.device == 1),
        "{logins:?}"
    );
    assert!(
        logins.last().is_some_and(|l| l.ik),
        "the reconnect should use IK: {logins:?}"
    );
    assert_eq!(
        sim.linked_devices(&phone),
        vec![1],
        "no new device was linked"
    );

    // The phone unlinks the device: reported as bad credentials, never relinked.
    assert_eq!(sim.unlink(&phone, Unlink::DeviceRemoved), 1);
    let state = next_state(&mut events, |s| {
        matches!(s, LoginState::BadCredentials { .. })
    })
    .await?;
    assert!(
        matches!(&state, LoginState::BadCredentials { reason } if reason.contains("unlinked")),
        "{state:?}"
    );
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn whatsapp_an_unauthorized_stream_error_logs_the_device_out_and_it_is_refused_after(
) -> anyhow::Result<()> {
    let sim = WhatsappSim::start().await?;
    let connector = WhatsappConnector::new(config(&sim));
    let phone = random_phone();
    let (login, store, client, mut events) = connected(&sim, &connector, &phone).await?;
    assert_eq!(sim.unlink(&phone, Unlink::Unauthorized), 1);
    next_state(&mut events, |s| {
        matches!(s, LoginState::BadCredentials { .. })
    })
    .await?;
    client.disconnect().await;

    // Loading it again: WhatsApp refuses the device, which the user is told.
    let refused = sim.refused_logins();
    let (client, mut events) = load(&connector, &login, &store).await?;
    next_state(&mut events, |s| {
        matches!(s, LoginState::BadCredentials { .. })
    })
    .await?;
    assert!(sim.refused_logins() > refused);
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn whatsapp_phone_login_links_a_device_with_a_pairing_code() -> anyhow::Result<()> {
    let sim = WhatsappSim::start().await?;
    let connector = WhatsappConnector::new(config(&sim));
    let phone = random_phone();
    let mut process = connector.create_login("phone").await?;
    let step = process.start().await?;
    assert_eq!(step.step_id(), "phone");
    let bad = process
        .submit_input([("phone".to_owned(), "call me".to_owned())].into())
        .await;
    assert!(matches!(bad, Err(NetworkError::BadInput(_))), "{bad:?}");
    let input = [("phone".to_owned(), format!("+{phone}"))].into();
    let step = tokio::time::timeout(WAIT, process.submit_input(input)).await??;
    let LoginStep::DisplayAndWait {
        step_id,
        display: Display::Code(code),
        ..
    } = &step
    else {
        anyhow::bail!("no code: {step:?}")
    };
    assert_eq!(step_id, "code");
    assert_eq!(code.len(), 8, "{code}");

    // The user types the code on the phone.
    let task = step_in_background(process, false);
    sim.enter_code(&phone, code, WAIT).await?;
    let (_process, step) = finish(task).await?;
    let LoginStep::Complete { login, .. } = step else {
        anyhow::bail!("not complete: {step:?}")
    };
    assert_eq!(login.remote_id, phone);
    assert_eq!(sim.linked_devices(&phone), vec![1]);

    let store = LoginStore::in_memory(&LoginId::from(phone.as_str()));
    let (client, mut events) = load(&connector, &login, &store).await?;
    next_state(&mut events, |s| *s == LoginState::Connected).await?;
    client.disconnect().await;
    Ok(())
}

#[tokio::test]
async fn whatsapp_messages_are_relayed_end_to_end_encrypted_between_the_bridge_and_a_contact(
) -> anyhow::Result<()> {
    use bridge_core::network::events::{ChatRef, MessageContent};
    use bridge_core::network::{OutgoingContent, OutgoingMessage, RemoteChatId};

    let sim = WhatsappSim::start().await?;
    let connector = WhatsappConnector::new(config(&sim));
    let phone = random_phone();
    let (_login, _store, client, mut events) = connected(&sim, &connector, &phone).await?;
    let bob = random_phone();
    let contact = sim.contact(&bob, "Bob Example", WAIT).await?;

    // The contact writes first: a pkmsg to the bridge's device, decrypted by the bridge.
    contact.send_text(&phone, "Hello *Alice*").await?;
    let event = bridge_tests::next_remote_event(&mut events, WAIT, |e| {
        matches!(e, RemoteEvent::Message { .. })
    })
    .await?;
    let RemoteEvent::Message {
        chat,
        sender,
        parts,
        ..
    } = &event
    else {
        anyhow::bail!("not a message: {event:?}")
    };
    assert_eq!(chat.id.as_str(), bob);
    assert_eq!(
        chat.receiver.as_ref().map(LoginId::as_str),
        Some(phone.as_str())
    );
    assert_eq!(sender.user.as_str(), bob);
    assert!(
        matches!(&parts[0].content, MessageContent::Text { body, html: Some(html), .. }
            if body == "Hello *Alice*" && html == "Hello <strong>Alice</strong>"),
        "{parts:?}"
    );
    assert_eq!(
        client.user_info(&sender.user).await?.name.as_deref(),
        Some("Bob Example"),
        "the ghost is named by the push name"
    );

    // The bridge answers: the contact decrypts it.
    let chat = ChatRef {
        id: RemoteChatId::from(bob.as_str()),
        receiver: Some(LoginId::from(phone.as_str())),
    };
    let sent = client
        .send_message(OutgoingMessage {
            chat,
            content: OutgoingContent::Text {
                body: "ok".to_owned(),
                html: Some("<strong>ok</strong>".to_owned()),
                mentions: Vec::new(),
                emote: false,
            },
            reply_to: None,
            thread_root: None,
            relayed_from: None,
            avatar_url: None,
        })
        .await?;
    let received = contact
        .wait_message(WAIT, "the bridge's answer", |m| m.from == phone)
        .await?;
    assert_eq!(received.message.conversation.as_deref(), Some("*ok*"));
    assert_eq!(sent.id.as_str(), format!("{phone}:{}", received.id));
    assert!(
        sim.relayed()
            .iter()
            .any(|r| r.from == bob && r.to == phone && r.devices == 1),
        "{:?}",
        sim.relayed()
    );
    contact.stop().await;
    client.disconnect().await;
    Ok(())
}

/// The WhatsApp bridge binary (`bridge-whatsapp`'s `main`, built in this package with the
/// simulator-only certificate switch).
fn whatsapp_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_bridge-whatsapp-e2e"))
}

/// Runs a bridge subcommand in `dir` and requires success.
async fn whatsapp_cli(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["-c", "config.yaml", "-r", "registration.yaml"];
    full.extend_from_slice(args);
    let output = BridgeCommand::new(whatsapp_bin())
        .args(&full)
        .current_dir(dir)
        .name("cli")
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

mod groups;
mod media;
mod messages;
mod synapse;
