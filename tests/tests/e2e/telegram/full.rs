//! The whole Telegram bridge: the `bridge-telegram` process, Synapse and the simulator,
//! driven as a Matrix user would (`login phone` in the management room, messages in the DM
//! portal) and checked on both sides.

use serde_json::Value;

use bridge_tests::{
    free_port, random_localpart, wait_until, BridgeCommand, BridgeProcess, Synapse, SynapseOptions,
    TestUser,
};

use super::{world, World, PASSWORD, WAIT};
use crate::env::{body, edit, replied_to, tail};
use crate::login::wait_redacted;

const BOT: &str = "@telegrambot:test.localhost";

/// The line the bridge logs once it serves.
const RUNNING: &str = "bridge is running";

fn telegram_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_bridge-telegram-e2e"))
}

/// The `bridge-telegram` process pointed at a simulator (through environment overrides of
/// the test-only `network.test_dc_address` / `test_auth_key`), with its own Synapse.
struct TelegramBridge {
    dir: tempfile::TempDir,
    synapse: Synapse,
    process: Option<BridgeProcess>,
    env: Vec<(String, String)>,
}

impl TelegramBridge {
    async fn start(w: &World) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("bridge-telegram-")
            .tempdir()?;
        let config = dir.path().join("config.yaml");
        let port = free_port()?;
        cli(dir.path(), &["generate-config"]).await?;
        let edits = [
            (
                "domain: \"example.com\"".to_owned(),
                "domain: \"test.localhost\"".to_owned(),
            ),
            (
                "\"example.com\": user".to_owned(),
                "\"test.localhost\": user".to_owned(),
            ),
            (
                "address: \"http://127.0.0.1:29317/\"".to_owned(),
                format!("address: \"http://127.0.0.1:{port}/\""),
            ),
            ("port: 29317".to_owned(), format!("port: {port}")),
        ];
        for (from, to) in &edits {
            edit(&config, from, to)?;
        }
        cli(dir.path(), &["generate-registration"]).await?;
        let synapse = Synapse::start(SynapseOptions {
            appservice_files: vec![dir.path().join("registration.yaml")],
            ..SynapseOptions::default()
        })
        .await?;
        edit(
            &config,
            "address: \"http://127.0.0.1:8008/\"",
            &format!("address: \"{}/\"", synapse.url().trim_end_matches('/')),
        )?;
        let env = vec![
            (
                "RUST_LOG".to_owned(),
                "bridge_core=debug,bridge_telegram=debug,info".to_owned(),
            ),
            (
                "TELEGRAM_BRIDGE__NETWORK__API_ID".to_owned(),
                "12345".to_owned(),
            ),
            (
                "TELEGRAM_BRIDGE__NETWORK__KEEPALIVE_SECONDS".to_owned(),
                "1".to_owned(),
            ),
            (
                "TELEGRAM_BRIDGE__NETWORK__API_HASH".to_owned(),
                "0123456789abcdef".to_owned(),
            ),
            (
                "TELEGRAM_BRIDGE__NETWORK__TEST_DC_ADDRESS".to_owned(),
                w.sim.address(),
            ),
            (
                "TELEGRAM_BRIDGE__NETWORK__TEST_AUTH_KEY".to_owned(),
                w.sim.auth_key_hex(),
            ),
        ];
        let mut bridge = Self {
            dir,
            synapse,
            process: None,
            env,
        };
        bridge.run().await?;
        Ok(bridge)
    }

    /// Starts the process and waits until it serves (its log is appended to across runs).
    async fn run(&mut self) -> anyhow::Result<()> {
        let before = self.log().matches(RUNNING).count();
        let mut command = BridgeCommand::new(telegram_bin())
            .args(["-c", "config.yaml", "-r", "registration.yaml", "run"])
            .current_dir(self.dir.path())
            .name("bridge");
        for (key, value) in &self.env {
            command = command.env(key, value);
        }
        self.process = Some(command.spawn()?);
        wait_until(WAIT, "the bridge to run", async || {
            Ok((self.log().matches(RUNNING).count() > before).then_some(()))
        })
        .await
    }

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
    let output = BridgeCommand::new(telegram_bin())
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

fn is_bot_notice(event: &Value) -> bool {
    event["sender"] == BOT && event["content"]["msgtype"] == "m.notice"
}

/// Sends `text` in `room` and returns the event ID and the bot's reply to it.
async fn say(user: &TestUser, room: &str, text: &str) -> anyhow::Result<(String, String)> {
    let sent = user.send_text(room, text).await?;
    let reply = user
        .wait_for_event(
            room,
            |e| is_bot_notice(e) && replied_to(e) == Some(sent.as_str()),
            WAIT,
        )
        .await?;
    Ok((sent, body(&reply).to_owned()))
}

#[tokio::test]
async fn phone_login_in_the_management_room_then_messages_both_ways_a_restart_without_login_and_a_relogin(
) -> anyhow::Result<()> {
    let w = world().await?;
    let mut bridge = TelegramBridge::start(&w).await?;
    let result = scenario(&w, &mut bridge).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&bridge.log(), 150));
    }
    result
}

async fn scenario(w: &World, bridge: &mut TelegramBridge) -> anyhow::Result<()> {
    let user = bridge
        .synapse
        .register_user(&random_localpart("alice"), false)
        .await?;
    let room = user.create_dm(BOT).await?;
    user.wait_for_membership(&room, BOT, "join", WAIT).await?;

    let (_, flows) = say(&user, &room, "login").await?;
    assert!(
        flows.contains("`phone`") && flows.contains("`bot`"),
        "{flows}"
    );
    let (_, prompt) = say(&user, &room, "login phone").await?;
    assert!(prompt.contains("phone number"), "{prompt}");
    let (phone, prompt) = say(&user, &room, "+44 7700 900123").await?;
    assert!(prompt.contains("code"), "{prompt}");
    let code = w.sim.login_code(&w.account.phone).expect("a code was sent");
    let wrong_code = if code == "00000" { "11111" } else { "00000" };
    let (wrong, prompt) = say(&user, &room, wrong_code).await?;
    assert!(prompt.contains("not right"), "{prompt}");
    let (right, prompt) = say(&user, &room, &code).await?;
    assert!(prompt.contains("cloud password"), "{prompt}");
    let (wrong_password, prompt) = say(&user, &room, "not my password").await?;
    assert!(prompt.contains("password is not right"), "{prompt}");
    let (password, done) = say(&user, &room, PASSWORD).await?;
    assert!(done.contains("Alice Liddell"), "{done}");
    for secret in [&wrong, &right, &wrong_password, &password] {
        wait_redacted(&user, &room, secret).await?;
    }
    let events = user.messages(&room, 100).await?;
    let phone_event = events
        .iter()
        .find(|e| e["event_id"] == phone.as_str())
        .expect("the phone message");
    assert_eq!(
        body(phone_event),
        "+44 7700 900123",
        "the phone number is not a secret"
    );
    assert!(
        !bridge.log().contains(PASSWORD),
        "the password reached the log"
    );
    wait_until(WAIT, "the login's connection", || async {
        Ok((w.sim.connections(w.account.id) == 1).then_some(()))
    })
    .await?;

    // Bob writes: a DM portal named after him, his real name on the ghost.
    w.sim
        .send_private(w.contact, w.account.id, "你好 Alice 👋", vec![]);
    let key = format!("telegram://{}/{}", w.account.id, w.contact);
    let portal = user.wait_for_bridged_room(&key, WAIT).await?;
    let ghost = format!("@telegram_{}:test.localhost", w.contact);
    let seen = user
        .wait_for_event(&portal, |e| body(e) == "你好 Alice 👋", WAIT)
        .await?;
    assert_eq!(seen["sender"], ghost.as_str());
    let profile = user.profile(&ghost).await?;
    assert_eq!(profile["displayname"], "Bob Brown");

    // Alice answers from Matrix, with formatting.
    let html = serde_json::json!({"msgtype": "m.text", "body": "**ok** 🎉", "format": "org.matrix.custom.html", "formatted_body": "<strong>ok</strong> 🎉"});
    let answer = user.send_event(&portal, "m.room.message", html).await?;
    wait_until(WAIT, "Bob to receive the answer", || async {
        let messages = w.sim.messages(w.account.id, w.contact);
        Ok(messages
            .iter()
            .find(|m| m.out && m.text == "ok 🎉")
            .map(|m| m.entities.clone()))
    })
    .await
    .map(|entities| assert_eq!(entities, vec![("bold".to_owned(), 0, 2)]))?;

    // Edits and deletions from Matrix reach Telegram; Bob's edit reaches Matrix.
    let edit = serde_json::json!({
        "msgtype": "m.text",
        "body": "* ok, fine",
        "m.new_content": {"msgtype": "m.text", "body": "ok, fine"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": answer},
    });
    user.send_event(&portal, "m.room.message", edit).await?;
    wait_until(WAIT, "the edit to reach Telegram", || async {
        let messages = w.sim.messages(w.account.id, w.contact);
        Ok(messages
            .iter()
            .any(|m| m.out && m.text == "ok, fine" && m.edited)
            .then_some(()))
    })
    .await?;
    let oops = user.send_text(&portal, "oops").await?;
    wait_until(WAIT, "the message to reach Telegram", || async {
        Ok(w.sim
            .messages(w.account.id, w.contact)
            .iter()
            .any(|m| m.out && m.text == "oops")
            .then_some(()))
    })
    .await?;
    user.redact(&portal, &oops, None).await?;
    wait_until(WAIT, "the deletion to reach Telegram", || async {
        Ok((!w
            .sim
            .messages(w.account.id, w.contact)
            .iter()
            .any(|m| m.text == "oops"))
        .then_some(()))
    })
    .await?;
    let hello = w
        .sim
        .messages(w.account.id, w.contact)
        .iter()
        .find(|m| !m.out)
        .map(|m| m.id)
        .expect("Bob's message");
    w.sim
        .edit_private(w.account.id, hello, "你好 Alice 👋 (edited)");
    let edited = user
        .wait_for_event(
            &portal,
            |e| e["content"]["m.new_content"]["body"] == "你好 Alice 👋 (edited)",
            WAIT,
        )
        .await?;
    assert_eq!(edited["sender"], ghost.as_str());

    // A restart needs no login: messages keep flowing both ways.
    bridge.stop().await?;
    w.sim
        .send_private(w.contact, w.account.id, "while you were away", vec![]);
    bridge.run().await?;
    user.wait_for_event(&portal, |e| body(e) == "while you were away", WAIT)
        .await?;
    user.send_text(&portal, "back again").await?;
    wait_until(WAIT, "Bob to receive the second answer", || async {
        Ok(w.sim
            .messages(w.account.id, w.contact)
            .iter()
            .any(|m| m.out && m.text == "back again")
            .then_some(()))
    })
    .await?;
    assert_eq!(
        w.sim
            .messages(w.account.id, w.contact)
            .iter()
            .filter(|m| m.text == "while you were away")
            .count(),
        1
    );
    let copies = user
        .messages(&portal, 100)
        .await?
        .iter()
        .filter(|e| body(e) == "while you were away")
        .count();
    assert_eq!(copies, 1, "caught up once");

    // Telegram ends the session ("Terminate session" on the phone): the user is told, and
    // a new login brings the bridging back into the same portal, with what was missed.
    w.sim.revoke_sessions(w.account.id);
    let told = user
        .wait_for_event(
            &room,
            |e| is_bot_notice(e) && body(e).contains("SESSION_REVOKED"),
            WAIT,
        )
        .await?;
    assert!(body(&told).contains("relogin"), "{}", body(&told));
    w.sim
        .send_private(w.contact, w.account.id, "sent while logged out", vec![]);
    let (_, answer) = say(&user, &room, "relogin").await?;
    if !answer.contains("phone number") {
        let (_, prompt) = say(&user, &room, "login phone").await?;
        assert!(prompt.contains("phone number"), "{prompt}");
    }
    say(&user, &room, "+44 7700 900123").await?;
    let code = w
        .sim
        .login_code(&w.account.phone)
        .expect("a new code was sent");
    say(&user, &room, &code).await?;
    let (_, done) = say(&user, &room, PASSWORD).await?;
    assert!(done.contains("Alice Liddell"), "{done}");
    user.wait_for_event(&portal, |e| body(e) == "sent while logged out", WAIT)
        .await?;
    user.send_text(&portal, "after relogin").await?;
    wait_until(
        WAIT,
        "Bob to receive the message sent after the relogin",
        || async {
            Ok(w.sim
                .messages(w.account.id, w.contact)
                .iter()
                .any(|m| m.out && m.text == "after relogin")
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}
