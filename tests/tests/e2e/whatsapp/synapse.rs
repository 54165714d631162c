//! The `bridge-whatsapp` process against Synapse and the WhatsApp simulator: `login qr` in
//! the management room shows the QR code as an image (replaced in place when WhatsApp
//! rotates it), the simulated phone scans the image, the bot says who is logged in; a
//! restart reconnects without pairing; a logout from the phone is reported.

use bridge_tests::whatsapp_sim::{read_qr_png, Unlink, WhatsappSim};
use bridge_tests::{
    free_port, random_localpart, wait_until, BridgeCommand, BridgeProcess, Synapse, SynapseOptions,
    TestUser,
};
use serde_json::Value;

use super::{random_phone, whatsapp_bin, whatsapp_cli, WAIT};
use crate::env::{body, edit, tail};

pub(super) const BOT: &str = "@whatsappbot:test.localhost";

/// The WhatsApp bridge process over a simulator, with its own Synapse.
pub(super) struct WhatsappBridge {
    dir: tempfile::TempDir,
    pub(super) synapse: Synapse,
    process: Option<BridgeProcess>,
}

impl WhatsappBridge {
    /// Generates the config and registration as a user would, points the config at the
    /// simulator, starts Synapse and the bridge.
    pub(super) async fn start(sim: &WhatsappSim) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("bridge-whatsapp-")
            .tempdir()?;
        let config = dir.path().join("config.yaml");
        let port = free_port()?;
        whatsapp_cli(dir.path(), &["generate-config"]).await?;
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
            (
                "websocket_url: \"\"".to_owned(),
                format!("websocket_url: \"{}\"", sim.url()),
            ),
        ];
        for (from, to) in &edits {
            edit(&config, from, to)?;
        }
        whatsapp_cli(dir.path(), &["generate-registration"]).await?;
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
        let mut bridge = Self {
            dir,
            synapse,
            process: None,
        };
        bridge.run().await?;
        Ok(bridge)
    }

    /// Starts the bridge process and waits until it runs.
    pub(super) async fn run(&mut self) -> anyhow::Result<()> {
        let runs = self.log().matches("bridge is running").count();
        let process = BridgeCommand::new(whatsapp_bin())
            .args(["-c", "config.yaml", "-r", "registration.yaml", "run"])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "bridge_core=debug,bridge_whatsapp=debug,info")
            .name("bridge")
            .spawn()?;
        self.process = Some(process);
        wait_until(WAIT, "the bridge to run", async || {
            Ok((self.log().matches("bridge is running").count() > runs).then_some(()))
        })
        .await
    }

    /// Kills the bridge process (SIGKILL).
    pub(super) fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default()
    }
}

/// The URL of the QR image in a bot message (a new image, or the edit replacing it).
fn qr_url(event: &Value) -> Option<&str> {
    let content = &event["content"];
    let content = if content["m.new_content"].is_object() {
        &content["m.new_content"]
    } else {
        content
    };
    (content["msgtype"] == "m.image")
        .then(|| content["url"].as_str())
        .flatten()
}

/// Waits for a QR image from the bot other than those in `seen`, reads it as a phone
/// would and returns its text.
async fn next_qr(user: &TestUser, room: &str, seen: &[String]) -> anyhow::Result<String> {
    let url = wait_until(WAIT, "a new QR code from the bot", async || {
        let events = user.messages(room, 50).await?;
        Ok(events
            .iter()
            .filter(|e| e["sender"] == BOT)
            .find_map(qr_url)
            .filter(|url| !seen.iter().any(|s| s == url))
            .map(str::to_owned))
    })
    .await?;
    read_qr_png(&user.download_media(&url).await?)
}

/// Polls with `ping` until the login is listed with `state` (`connected`, `bad credentials`).
pub(super) async fn wait_state(user: &TestUser, room: &str, state: &str) -> anyhow::Result<()> {
    let needle = format!(": {state}");
    wait_until(WAIT, &format!("the login to be {state}"), async || {
        let answer = command_answer(user, room, "ping", "The bridge is running").await?;
        Ok(body(&answer).contains(&needle).then_some(()))
    })
    .await
}

/// Sends `command` and returns the bot's first answer after it that contains `marker`.
pub(super) async fn command_answer(
    user: &TestUser,
    room: &str,
    command: &str,
    marker: &str,
) -> anyhow::Result<Value> {
    let sent = user.send_text(room, command).await?;
    wait_until(WAIT, &format!("the answer to {command}"), async || {
        let events = user.messages(room, 50).await?;
        let Some(at) = events.iter().position(|e| e["event_id"] == sent.as_str()) else {
            return Ok(None);
        };
        Ok(events[..at]
            .iter()
            .rev()
            .find(|e| e["sender"] == BOT && body(e).contains(marker))
            .cloned())
    })
    .await
}

/// Runs `scenario` against a new simulator and bridge process (with its Synapse); when it
/// fails, prints what explains it.
pub(super) async fn run_scenario(
    scenario: impl AsyncFnOnce(&WhatsappSim, &mut WhatsappBridge) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let sim = WhatsappSim::start().await?;
    let mut bridge = WhatsappBridge::start(&sim).await?;
    let result = scenario(&sim, &mut bridge).await;
    if result.is_err() {
        print_failure(&sim, &bridge);
    }
    result
}

/// Prints what explains a failed scenario: the bridge's log (without the pings) and what
/// the simulator relayed and was asked.
fn print_failure(sim: &WhatsappSim, bridge: &WhatsappBridge) {
    let log = bridge.log();
    let log: Vec<&str> = log.lines().filter(|l| !l.contains("\"ping\"")).collect();
    eprintln!("bridge log:\n{}", tail(&log.join("\n"), 200));
    eprintln!("relayed: {:?}\niqs: {:?}", sim.relayed(), sim.iqs());
}

/// A new Matrix user, linked as account `phone` from their management room with the bot,
/// once the bridge's device published its keys (so contacts can write to it); returns the
/// user and the management room.
pub(super) async fn linked_user(
    sim: &WhatsappSim,
    bridge: &WhatsappBridge,
    phone: &str,
) -> anyhow::Result<(TestUser, String)> {
    let user = bridge
        .synapse
        .register_user(&random_localpart("alice"), false)
        .await?;
    let management = user.create_dm(BOT).await?;
    user.wait_for_membership(&management, BOT, "join", WAIT)
        .await?;
    link(sim, &user, &management, phone).await?;
    wait_until(
        WAIT,
        "the bridge's device to publish its keys",
        async || Ok((sim.devices_with_keys(phone) == [1]).then_some(())),
    )
    .await?;
    Ok((user, management))
}

/// Logs `user` in from the management room `room` with a QR code the phone of account
/// `phone` scans, and waits until the login is connected.
pub(super) async fn link(
    sim: &WhatsappSim,
    user: &TestUser,
    room: &str,
    phone: &str,
) -> anyhow::Result<()> {
    user.send_text(room, "login qr").await?;
    let qr = next_qr(user, room, &[]).await?;
    sim.scan(&qr, phone, WAIT).await?;
    user.wait_for_event(
        room,
        |e| e["sender"] == BOT && body(e).contains("Logged in to WhatsApp"),
        WAIT,
    )
    .await?;
    wait_state(user, room, "connected").await
}

#[tokio::test]
async fn whatsapp_bridge_process_links_with_a_qr_code_reconnects_after_a_restart_and_reports_an_unlink(
) -> anyhow::Result<()> {
    let sim = WhatsappSim::start().await?;
    let mut bridge = WhatsappBridge::start(&sim).await?;
    let result = scenario(&sim, &mut bridge).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&bridge.log(), 150));
    }
    result
}

async fn scenario(sim: &WhatsappSim, bridge: &mut WhatsappBridge) -> anyhow::Result<()> {
    let phone = random_phone();
    let user = bridge
        .synapse
        .register_user(&random_localpart("alice"), false)
        .await?;
    let room = user.create_dm(BOT).await?;
    user.wait_for_membership(&room, BOT, "join", WAIT).await?;
    user.send_text(&room, "login qr").await?;

    // The QR code is an image in the DM; when WhatsApp rotates it, the image is replaced.
    let first = next_qr(&user, &room, &[]).await?;
    let first_url = user
        .messages(&room, 50)
        .await?
        .iter()
        .filter(|e| e["sender"] == BOT)
        .find_map(qr_url)
        .map(str::to_owned);
    sim.wait_pairing(WAIT).await?;
    assert_eq!(sim.refresh_qr(), 1);
    let second = next_qr(&user, &room, &first_url.into_iter().collect::<Vec<_>>()).await?;
    assert_ne!(first, second);
    let edits = user.messages(&room, 50).await?;
    assert!(
        edits
            .iter()
            .any(|e| e["sender"] == BOT && e["content"]["m.relates_to"]["rel_type"] == "m.replace"),
        "the QR image was not replaced in place"
    );

    // The phone scans the image: the bot says who is logged in, and the login connects.
    sim.scan(&second, &phone, WAIT).await?;
    let done = user
        .wait_for_event(
            &room,
            |e| e["sender"] == BOT && body(e).contains("Logged in to WhatsApp"),
            WAIT,
        )
        .await?;
    assert!(body(&done).contains(&format!("+{phone}")), "{done}");
    wait_state(&user, &room, "connected").await?;
    assert_eq!(sim.linked_devices(&phone), vec![1]);

    // A restart reconnects the stored device: no new pairing, no new QR code.
    let logins = sim.logins().len();
    bridge.kill()?;
    bridge.run().await?;
    wait_until(WAIT, "the device to log in again", async || {
        Ok((sim.logins().len() > logins).then_some(()))
    })
    .await?;
    wait_state(&user, &room, "connected").await?;
    assert_eq!(
        sim.linked_devices(&phone),
        vec![1],
        "a new device was linked"
    );
    assert!(
        sim.logins()
            .last()
            .is_some_and(|l| l.phone == phone && l.ik),
        "{:?}",
        sim.logins()
    );

    // The phone unlinks the bridge: the user is told, and the bridge never relinks by itself.
    assert_eq!(sim.unlink(&phone, Unlink::DeviceRemoved), 1);
    let notice = user
        .wait_for_event(
            &room,
            |e| e["sender"] == BOT && body(e).contains("stopped working"),
            WAIT,
        )
        .await?;
    assert!(
        body(&notice).contains("unlinked") && body(&notice).contains(&format!("+{phone}")),
        "{notice}"
    );
    wait_state(&user, &room, "bad credentials").await?;
    Ok(())
}
