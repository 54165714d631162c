//! The foundation: CLI and registration, the appservice server, the inbox, bot commands.

use bridge_tests::{wait_until, BridgeCommand, Synapse, SynapseOptions};
use anyhow::Context as _;
use serde_json::{json, Value};

use crate::env::{bridge_bin, cli, edit, message_event, yaml_value, Options, TestBridge, WAIT};

#[tokio::test]
async fn generated_config_and_registration_are_accepted_by_synapse() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    let registration = dir.path().join("registration.yaml");
    cli(&dir, &["generate-config"]).await?;
    edit(&config, "domain: \"example.com\"", "domain: \"test.localhost\"")?;

    // Refuses to run before the registration exists, and says what to do.
    let refused = BridgeCommand::new(bridge_bin()).args(["-c", "config.yaml", "run"]).current_dir(dir.path()).output().await?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("generate-registration"));

    cli(&dir, &["generate-registration"]).await?;
    let as_token = yaml_value(&registration, "as_token")?;
    let hs_token = yaml_value(&registration, "hs_token")?;
    assert_eq!(as_token.len(), 64);
    assert_ne!(as_token, hs_token);
    assert_eq!(yaml_value(&config, "as_token")?, as_token, "the config holds the registration's tokens");

    // A second run keeps the tokens; --rotate replaces them.
    cli(&dir, &["generate-registration"]).await?;
    assert_eq!(yaml_value(&registration, "as_token")?, as_token);
    assert_eq!(yaml_value(&registration, "hs_token")?, hs_token);
    cli(&dir, &["generate-registration", "--rotate"]).await?;
    let rotated = yaml_value(&registration, "as_token")?;
    assert_ne!(rotated, as_token);

    // A fresh Synapse loads the registration, and knows the bot by the as_token.
    let synapse = Synapse::start(SynapseOptions { appservice_files: vec![registration], ..SynapseOptions::default() }).await?;
    let bot = synapse.user_with_token("@testbot:test.localhost", &rotated)?;
    assert_eq!(bot.whoami().await?, "@testbot:test.localhost");
    // The ghost namespace is exclusive to the bridge: a user cannot register in it.
    let ghost = bot.impersonate("@test_someone:test.localhost");
    let (status, _) = ghost
        .call_raw(
            reqwest::Method::POST,
            "/_matrix/client/v3/register",
            Some(&json!({"type": "m.login.application_service", "username": "test_someone", "inhibit_login": true})),
        )
        .await?;
    assert!(status.is_success(), "the appservice registers its own ghost: {status}");
    Ok(())
}

#[tokio::test]
async fn bot_joins_a_dm_and_answers_commands() -> anyhow::Result<()> {
    let mut bridge = TestBridge::start(Options::default()).await?;
    bridge.wait_log("homeserver can reach the bridge").await?;
    let user = bridge.user("alice").await?;
    let room = bridge.management_room(&user).await?;

    let help = bridge.command(&user, &room, "help").await?;
    for command in ["help", "ping", "version"] {
        assert!(help.contains(&format!("`{command}")), "help lists {command}: {help}");
    }
    let unknown = bridge.command(&user, &room, "frobnicate").await?;
    // Never echoed (it could be a secret pasted late), but a near miss gets a hint.
    assert!(unknown.contains("Unknown command") && !unknown.contains("frobnicate") && unknown.contains("help"), "{unknown}");
    let near = bridge.command(&user, &room, "pnig").await?;
    assert!(near.contains("Did you mean `ping`?"), "{near}");
    let ping = bridge.command(&user, &room, "ping").await?;
    assert!(ping.contains("not logged in"), "{ping}");

    // Outside the management room the prefix is needed, and other text is ignored.
    let group = user.create_room(json!({"name": "group", "invite": [bridge.bot]})).await?;
    user.wait_for_membership(&group, &bridge.bot, "join", WAIT).await?;
    let ignored = user.send_text(&group, "help").await?;
    let prefixed = bridge.command(&user, &group, "!test version").await?;
    assert!(prefixed.starts_with("Test bridge"), "{prefixed}");
    assert_eq!(bridge.count_replies(&user, &group, &ignored).await?, 0);
    Ok(())
}

/// Every DM a user opens with the bot is a management room: a second one does not silently
/// take over from the first.
#[tokio::test]
async fn every_dm_with_the_bot_is_a_management_room() -> anyhow::Result<()> {
    let bridge = TestBridge::start(Options::default()).await?;
    let user = bridge.user("twodms").await?;
    let first = bridge.management_room(&user).await?;
    let second = bridge.management_room(&user).await?;
    assert_ne!(first, second);
    for room in [&first, &second, &first] {
        let answer = bridge.command(&user, room, "version").await?;
        assert!(answer.starts_with("Test bridge"), "{answer}");
    }
    Ok(())
}

#[tokio::test]
async fn bot_declines_invites_from_blocked_users() -> anyhow::Result<()> {
    let blocked = bridge_tests::random_localpart("mallory");
    let bridge = TestBridge::start(Options {
        permissions: vec![(format!("@{blocked}:test.localhost"), "block".to_owned())],
        ..Options::default()
    })
    .await?;
    let user = bridge.synapse.register_user(&blocked, false).await?;
    let room = user.create_dm(&bridge.bot).await?;
    let member = user.wait_for_membership(&room, &bridge.bot, "leave", WAIT).await?;
    assert!(member["reason"].as_str().unwrap_or_default().contains("not allowed"), "{member}");
    Ok(())
}

#[tokio::test]
async fn wrong_tokens_and_malformed_bodies_are_rejected_and_the_bridge_keeps_serving() -> anyhow::Result<()> {
    let bridge = TestBridge::start(Options::default()).await?;
    let user = bridge.user("bob").await?;
    let room = bridge.management_room(&user).await?;
    let event = message_event("$forged-1", &room, user.user_id(), "help");
    let body = serde_json::to_vec(&json!({ "events": [event] }))?;

    let (status, err) = bridge.put_transaction("t1", None, &body).await?;
    assert_eq!((status, err["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")));
    let (status, err) = bridge.put_transaction("t2", Some("not-the-token"), &body).await?;
    assert_eq!((status, err["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, err) = bridge.put_transaction("t3", Some(&bridge.hs_token), b"{\"events\": [").await?;
    assert_eq!((status, err["errcode"].as_str()), (400, Some("M_NOT_JSON")));
    let (status, err) = bridge.put_transaction("t4", Some(&bridge.hs_token), b"{\"events\": {}}").await?;
    assert_eq!((status, err["errcode"].as_str()), (400, Some("M_BAD_JSON")));
    // Whatever goes wrong, the answer has the Matrix shape.
    let (status, err) = bridge.put_transaction("%FF", Some(&bridge.hs_token), &body).await?;
    assert_eq!((status, err["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{err}");
    let response = bridge.http().get(format!("{}/_matrix/app/v1/transactions/t6", bridge.url())).send().await?;
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.json::<Value>().await?["errcode"], "M_UNRECOGNIZED");
    // (last: the bridge answers before reading such a body, and closes the connection)
    let huge = vec![b' '; 11 * 1024 * 1024];
    let (status, err) = bridge.put_transaction("t5", Some(&bridge.hs_token), &huge).await?;
    assert_eq!((status, err["errcode"].as_str()), (413, Some("M_TOO_LARGE")), "bodies over appservice.max_body_bytes are refused");

    // Still serving: a real command gets its answer, and the rejected one never did.
    assert!(bridge.command(&user, &room, "version").await?.starts_with("Test bridge"));
    assert_eq!(bridge.count_replies(&user, &room, "$forged-1").await?, 0);
    assert_eq!(bridge.health().await?["status"], "ok");
    Ok(())
}

/// A bridge whose as_token the homeserver does not know says so (not "unreachable"), and
/// a stop while it waits for the homeserver is a clean exit.
#[tokio::test]
async fn a_wrong_as_token_is_named_and_sigterm_while_waiting_exits_cleanly() -> anyhow::Result<()> {
    let mut bridge = TestBridge::start(Options::default()).await?;
    bridge.kill()?;
    let config = bridge.dir.path().join("config.yaml");
    let as_token = yaml_value(&config, "as_token")?;
    edit(&config, &as_token, "not-the-registered-token")?;
    bridge.spawn(&[])?;
    bridge.wait_log("rejected the bridge's as_token").await?;
    assert!(bridge.log().contains("generate-registration"), "says how to fix it");
    let mut process = bridge.process.take().context("process")?;
    let status = process.terminate().await?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

#[tokio::test]
async fn repeated_transactions_and_events_are_handled_once() -> anyhow::Result<()> {
    let bridge = TestBridge::start(Options::default()).await?;
    let user = bridge.user("carol").await?;
    let room = bridge.management_room(&user).await?;
    let once = serde_json::to_vec(&json!({ "events": [message_event("$dup-1", &room, user.user_id(), "help")] }))?;

    for txn in ["dup-txn", "dup-txn", "other-txn"] {
        let (status, _) = bridge.put_transaction(txn, Some(&bridge.hs_token), &once).await?;
        assert_eq!(status, 200);
    }
    bridge.wait_reply(&user, &room, "$dup-1").await?;
    // Events are handled in order, so once a later command is answered the repeats were
    // seen too.
    let marker = serde_json::to_vec(&json!({ "events": [message_event("$dup-2", &room, user.user_id(), "version")] }))?;
    bridge.put_transaction("marker-txn", Some(&bridge.hs_token), &marker).await?;
    bridge.wait_reply(&user, &room, "$dup-2").await?;
    assert_eq!(bridge.count_replies(&user, &room, "$dup-1").await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_acknowledged_event_survives_sigkill_and_is_handled_once() -> anyhow::Result<()> {
    let mut bridge = TestBridge::start(Options::default()).await?;
    let user = bridge.user("dave").await?;
    let room = bridge.management_room(&user).await?;

    // Restart with the inbox held (a debug-build switch): events are stored and
    // acknowledged but not handled, as if the bridge died right after the 200.
    bridge.process.take().map(|mut p| p.kill()).transpose()?;
    bridge.run(&[("BRIDGE_DEBUG_HOLD_INBOX", "1")]).await?;
    let event_id = user.send_text(&room, "help").await?;
    wait_until(WAIT, "the event to be stored", || async {
        Ok((bridge.health().await?["inbox_backlog"].as_u64() >= Some(1)).then_some(()))
    })
    .await?;
    bridge.kill()?;
    assert_eq!(bridge.count_replies(&user, &room, &event_id).await?, 0, "not handled before the kill");

    bridge.run(&[]).await?;
    bridge.wait_reply(&user, &room, &event_id).await?;
    let marker = user.send_text(&room, "version").await?;
    bridge.wait_reply(&user, &room, &marker).await?;
    assert_eq!(bridge.count_replies(&user, &room, &event_id).await?, 1);
    Ok(())
}

#[tokio::test]
async fn broken_configs_exit_non_zero_naming_file_line_and_key() -> anyhow::Result<()> {
    let cases = [
        ("port: 29399", "port: \"many\"", "appservice.port"),
        ("  hostname: \"127.0.0.1\"", "  hostname: \"127.0.0.1\"\n  colour: blue", "colour"),
        ("  address: \"http://127.0.0.1:8008/\"\n", "", "homeserver.address"),
    ];
    for (from, to, key) in cases {
        let dir = tempfile::tempdir()?;
        cli(&dir, &["generate-config"]).await?;
        edit(&dir.path().join("config.yaml"), from, to)?;
        let output = BridgeCommand::new(bridge_bin())
            .args(["-c", "config.yaml", "run"])
            .current_dir(dir.path())
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains("config.yaml:"), "names the file: {stderr}");
        assert!(stderr.contains(key), "names {key}: {stderr}");
        let has_line = stderr.split("config.yaml:").nth(1).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        assert!(has_line, "names the line: {stderr}");
    }
    Ok(())
}

/// The example configs in `configs/` are what `generate-config` writes, so the docs never
/// drift from the code. `UPDATE_CONFIGS=1` rewrites them.
#[test]
fn example_configs_in_configs_dir_are_in_sync() -> anyhow::Result<()> {
    use bridge_core::config::example_config;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let examples = [
        ("discord.yaml", example_config::<bridge_discord::connector::DiscordNetwork>()?),
        ("wechat.yaml", example_config::<bridge_wechat::WechatNetwork>()?),
        ("telegram.yaml", example_config::<bridge_telegram::TelegramNetwork>()?),
        ("whatsapp.yaml", example_config::<bridge_whatsapp::WhatsappNetwork>()?),
    ];
    for (file, generated) in examples {
        let path = dir.join(file);
        if std::env::var_os("UPDATE_CONFIGS").is_some() {
            std::fs::write(&path, &generated)?;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == generated, "configs/{file} is out of date: run `UPDATE_CONFIGS=1 scripts/test example_configs`");
    }
    Ok(())
}

/// The README's command to run the bridges for real (`scripts/run`) works: it starts
/// Synapse and each bridge on its generated config, and they all answer
/// (`BRIDGE_RUN_CHECK=1` makes it check that and exit; the other variables move it to a
/// temporary directory and free ports).
#[tokio::test]
async fn the_run_script_starts_synapse_and_every_bridge() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let data = tempfile::Builder::new().prefix("bridge-run-").tempdir()?;
    let first_bridge_port = bridge_tests::free_port()?;
    // The bridges as this package builds them (same `main`), so the script need not run
    // cargo inside the test.
    let bins = tempfile::Builder::new().prefix("bridge-bins-").tempdir()?;
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bridge-discord-e2e"), bins.path().join("bridge-discord"))?;
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bridge-wechat-e2e"), bins.path().join("bridge-wechat"))?;
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bridge-telegram-e2e"), bins.path().join("bridge-telegram"))?;
    // The suite's WhatsApp bridge talks to nothing but a simulator (see bridge_whatsapp::config).
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bridge-whatsapp-e2e"), bins.path().join("bridge-whatsapp"))?;
    let whatsapp = bridge_tests::whatsapp_sim::WhatsappSim::start().await?;
    let mut command = tokio::process::Command::new(root.join("scripts/run"));
    command
        .current_dir(&root)
        .env("BRIDGE_RUN_CHECK", "1")
        .env("WHATSAPP_BRIDGE__NETWORK__WEBSOCKET_URL", whatsapp.url())
        .env("BRIDGE_RUN_BIN_DIR", bins.path())
        .env("BRIDGE_RUN_DATA", data.path())
        .env("BRIDGE_RUN_PORT", bridge_tests::free_port()?.to_string())
        // Consecutive ports for the bridges; a clash fails the check, not silently.
        .env("BRIDGE_RUN_BRIDGE_PORT", first_bridge_port.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(600), command.output()).await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "scripts/run failed ({}):\n{stderr}", output.status);
    assert!(stderr.contains("check: bridge-discord is running"), "{stderr}");
    assert!(stderr.contains("check: bridge-wechat is running"), "{stderr}");
    assert!(stderr.contains("check: bridge-telegram is running"), "{stderr}");
    assert!(stderr.contains("check: bridge-whatsapp is running"), "{stderr}");
    assert!(stderr.contains("check passed"), "{stderr}");
    Ok(())
}
