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

    /// Kills the process (SIGKILL): no shutdown, as in a crash.
    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
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
    run_logged(|w, bridge| Box::pin(scenario(w, bridge))).await
}

async fn scenario(w: &World, bridge: &mut TelegramBridge) -> anyhow::Result<()> {
    let (user, room) = new_user(bridge).await?;

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

/// The boxed future of a scenario.
type Scenario<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

/// Runs `scenario` on a new world and bridge; shows the bridge's log when it fails.
async fn run_logged(
    scenario: impl for<'a> FnOnce(&'a World, &'a mut TelegramBridge) -> Scenario<'a>,
) -> anyhow::Result<()> {
    let w = world().await?;
    let mut bridge = TelegramBridge::start(&w).await?;
    let result = scenario(&w, &mut bridge).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&bridge.log(), 150));
    }
    result
}

/// A new Matrix user and their management room.
async fn new_user(bridge: &TelegramBridge) -> anyhow::Result<(TestUser, String)> {
    let user = bridge
        .synapse
        .register_user(&random_localpart("alice"), false)
        .await?;
    let room = user.create_dm(BOT).await?;
    user.wait_for_membership(&room, BOT, "join", WAIT).await?;
    Ok((user, room))
}

/// A new Matrix user with a management room, logged in by phone as the world's account.
async fn logged_in(w: &World, bridge: &TelegramBridge) -> anyhow::Result<(TestUser, String)> {
    let (user, room) = new_user(bridge).await?;
    log_in(w, &user, &room).await?;
    Ok((user, room))
}

/// Logs the world's account in by phone from the management room `room`; waits for the
/// login's connection.
async fn log_in(w: &World, user: &TestUser, room: &str) -> anyhow::Result<()> {
    let (_, prompt) = say(user, room, "login phone").await?;
    assert!(prompt.contains("phone number"), "{prompt}");
    say(user, room, "+44 7700 900123").await?;
    let code = w.sim.login_code(&w.account.phone).expect("a code was sent");
    say(user, room, &code).await?;
    let (_, done) = say(user, room, PASSWORD).await?;
    assert!(done.contains("Alice Liddell"), "{done}");
    wait_until(WAIT, "the login's connection", || async {
        Ok((w.sim.connections(w.account.id) == 1).then_some(()))
    })
    .await
}

/// The texts the account sent to `peer` on Telegram, oldest first.
fn sent_texts(w: &World, peer: i64) -> Vec<String> {
    w.sim
        .messages(w.account.id, peer)
        .into_iter()
        .filter(|m| m.out)
        .map(|m| m.text)
        .collect()
}

#[tokio::test]
async fn a_flood_wait_holds_sends_in_order_through_a_crash_and_the_user_is_told(
) -> anyhow::Result<()> {
    run_logged(|w, bridge| Box::pin(flood_scenario(w, bridge))).await
}

async fn flood_scenario(w: &World, bridge: &mut TelegramBridge) -> anyhow::Result<()> {
    let (user, room) = logged_in(w, bridge).await?;
    w.sim
        .send_private(w.contact, w.account.id, "hi from Bob", vec![]);
    let key = format!("telegram://{}/{}", w.account.id, w.contact);
    let portal = user.wait_for_bridged_room(&key, WAIT).await?;
    user.wait_for_event(&portal, |e| body(e) == "hi from Bob", WAIT)
        .await?;

    // Telegram holds the account's sends back for 10 s: the messages wait, and the user
    // is told (and `ping` shows them).
    w.sim.flood_for("messages.sendMessage", 10);
    let texts = ["one 一 🐢", "two 二", "three 三"];
    for text in texts {
        user.send_text(&portal, text).await?;
    }
    let told = user
        .wait_for_event(
            &room,
            |e| is_bot_notice(e) && body(e).contains("slow down"),
            WAIT,
        )
        .await?;
    assert!(body(&told).contains("seconds"), "{}", body(&told));
    let status = wait_until(WAIT, "ping to show the three waiting messages", || async {
        let (_, status) = say(&user, &room, "ping").await?;
        Ok(status.contains("3 messages waiting").then_some(status))
    })
    .await?;
    assert!(
        status.contains("Telegram asked the bridge to wait"),
        "{status}"
    );
    assert!(
        sent_texts(w, w.contact).is_empty(),
        "nothing went out early"
    );

    // The bridge crashes during the wait; after the restart the messages go out once,
    // in order, when the wait is over.
    bridge.kill()?;
    bridge.run().await?;
    let sent = wait_until(WAIT, "the waiting messages to reach Telegram", || async {
        let sent = sent_texts(w, w.contact);
        Ok((sent.len() >= texts.len()).then_some(sent))
    })
    .await?;
    assert_eq!(sent, texts, "in order, once each");
    assert!(w
        .sim
        .calls()
        .contains(&"messages.sendMessage (flood wait)".to_owned()));

    // Once the wait is over, sends go straight out again, and nothing came back doubled.
    user.send_text(&portal, "four").await?;
    wait_until(WAIT, "the next message to reach Telegram", || async {
        Ok((sent_texts(w, w.contact).len() > texts.len()).then_some(()))
    })
    .await?;
    assert_eq!(
        sent_texts(w, w.contact).last().map(String::as_str),
        Some("four")
    );
    let events = user.messages(&portal, 100).await?;
    for text in texts.iter().chain(&["four"]) {
        let copies = events.iter().filter(|e| body(e) == *text).count();
        assert_eq!(copies, 1, "{text} is in the portal once");
    }
    let (_, status) = say(&user, &room, "ping").await?;
    assert!(!status.contains("waiting"), "{status}");
    Ok(())
}

/// A channel's ID in Bot API notation, as the bridge names its chat.
fn channel_id(channel: i64) -> i64 {
    -1_000_000_000_000 - channel
}

/// The bodies of the messages in `room` that `keep` accepts, oldest first.
async fn bodies(user: &TestUser, room: &str, keep: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut events = user.messages(room, 100).await?;
    events.reverse();
    Ok(events
        .iter()
        .map(|e| body(e).to_owned())
        .filter(|b| keep.contains(&b.as_str()))
        .collect())
}

#[tokio::test]
async fn groups_supergroups_and_channels_are_portals_with_mentions_and_catch_up(
) -> anyhow::Result<()> {
    run_logged(|w, bridge| Box::pin(groups_scenario(w, bridge))).await
}

async fn groups_scenario(w: &World, bridge: &mut TelegramBridge) -> anyhow::Result<()> {
    let (user, _) = logged_in(w, bridge).await?;
    let (bob, me) = (w.contact, w.account.id);
    let carol = w.sim.add_user("Carol", Some("Chen"), Some("carol"));
    let group = w
        .sim
        .add_group(bob, "Book club 读书会", "We read slowly", &[me, carol]);
    let supergroup = w.sim.add_channel(carol, "Hikers 🥾", "", true, &[me, bob]);
    let channel = w
        .sim
        .add_channel(bob, "News 📰", "Daily news", false, &[me, carol]);
    let ghost = |id: i64| format!("@telegram_{id}:test.localhost");

    // Bob mentions Alice in the group: a portal with the group's title, topic and members,
    // and the mention as a pill of Alice's own Matrix account.
    let mention: grammers_tl_types::enums::MessageEntity =
        grammers_tl_types::types::MessageEntityMentionName {
            offset: 0,
            length: 5,
            user_id: me,
        }
        .into();
    w.sim
        .send_group(bob, group, "Alice, 你好 👋", vec![mention])?;
    let group_room = user
        .wait_for_bridged_room(&format!("telegram:///-{group}"), WAIT)
        .await?;
    let seen = user
        .wait_for_event(&group_room, |e| body(e) == "Alice, 你好 👋", WAIT)
        .await?;
    assert_eq!(seen["sender"], ghost(bob).as_str());
    let html = seen["content"]["formatted_body"]
        .as_str()
        .unwrap_or_default();
    assert!(
        html.contains(&format!("https://matrix.to/#/{}", user.user_id())),
        "{html}"
    );
    let name = user.room_state(&group_room, "m.room.name", "").await?;
    assert_eq!(
        name.map(|n| n["name"].clone()),
        Some("Book club 读书会".into())
    );
    let topic = user.room_state(&group_room, "m.room.topic", "").await?;
    assert_eq!(
        topic.map(|t| t["topic"].clone()),
        Some("We read slowly".into())
    );
    wait_until(WAIT, "Carol's ghost in the group", || async {
        let members = user.joined_members(&group_room).await?;
        Ok(members.contains(&ghost(carol)).then_some(()))
    })
    .await?;

    // Alice answers with a pill of Bob: a text mention of Bob on Telegram.
    let answer = serde_json::json!({
        "msgtype": "m.text",
        "body": "Bob: thanks 谢谢",
        "format": "org.matrix.custom.html",
        "formatted_body": format!("<a href=\"https://matrix.to/#/{}\">Bob</a>: thanks 谢谢", ghost(bob)),
    });
    user.send_event(&group_room, "m.room.message", answer)
        .await?;
    let sent = wait_until(WAIT, "the answer in the group", || async {
        Ok(w.sim
            .group_messages(me, group)
            .into_iter()
            .find(|m| m.out && m.text == "Bob: thanks 谢谢"))
    })
    .await?;
    assert_eq!(sent.entities, vec![(format!("mention:{bob}"), 0, 3)]);

    // A supergroup both ways; a channel's posts come from the channel itself.
    w.sim
        .send_channel(carol, supergroup, "summit at 9 ⛰", vec![])?;
    let super_room = user
        .wait_for_bridged_room(&format!("telegram:///{}", channel_id(supergroup)), WAIT)
        .await?;
    let seen = user
        .wait_for_event(&super_room, |e| body(e) == "summit at 9 ⛰", WAIT)
        .await?;
    assert_eq!(seen["sender"], ghost(carol).as_str());
    user.send_text(&super_room, "see you there").await?;
    wait_until(WAIT, "the answer in the supergroup", || async {
        Ok(w.sim
            .channel_messages(me, supergroup)
            .iter()
            .any(|m| m.out && m.text == "see you there")
            .then_some(()))
    })
    .await?;
    w.sim
        .send_channel(bob, channel, "Breaking: 新闻 1", vec![])?;
    let channel_room = user
        .wait_for_bridged_room(&format!("telegram:///{}", channel_id(channel)), WAIT)
        .await?;
    let post = user
        .wait_for_event(&channel_room, |e| body(e) == "Breaking: 新闻 1", WAIT)
        .await?;
    let channel_ghost = format!("@telegram_{}:test.localhost", channel_id(channel));
    assert_eq!(post["sender"], channel_ghost.as_str());
    let profile = user.profile(&channel_ghost).await?;
    assert_eq!(profile["displayname"], "News 📰");

    // The bridge is down while people write everywhere; after the restart every message
    // arrives once, in order.
    bridge.stop().await?;
    w.sim.send_group(bob, group, "g1 一", vec![])?;
    w.sim.send_channel(bob, channel, "c1 一", vec![])?;
    w.sim.send_group(carol, group, "g2 二", vec![])?;
    w.sim.send_channel(carol, supergroup, "s1 一", vec![])?;
    w.sim.send_channel(bob, channel, "c2 二", vec![])?;
    w.sim.send_channel(bob, supergroup, "s2 二", vec![])?;
    bridge.run().await?;
    for (portal, texts) in [
        (&group_room, ["g1 一", "g2 二"]),
        (&channel_room, ["c1 一", "c2 二"]),
        (&super_room, ["s1 一", "s2 二"]),
    ] {
        user.wait_for_event(portal, |e| body(e) == texts[1], WAIT)
            .await?;
        assert_eq!(bodies(&user, portal, &texts).await?, texts, "{portal}");
    }
    // And it keeps flowing.
    w.sim.send_channel(bob, channel, "c3 三", vec![])?;
    user.wait_for_event(&channel_room, |e| body(e) == "c3 三", WAIT)
        .await?;
    assert_eq!(
        bodies(&user, &channel_room, &["c1 一", "c2 二", "c3 三"]).await?,
        ["c1 一", "c2 二", "c3 三"]
    );
    Ok(())
}
