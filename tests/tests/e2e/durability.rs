//! Nothing lost, nothing twice: the bridge against restarts and outages of the homeserver
//! and crashes of its own, and secrets that outlive their prompt.
//!
//! Each test here failed on the core before the fix it guards: transaction IDs taken as an
//! identity across Synapse restarts, replies repeated after a SIGKILL, events dropped while
//! Synapse was down, a pasted token echoed into the room, tokens kept in the inbox table.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bridge_tests::{testnet::ChatSpec, testnet::MessageSpec, wait_until, TestUser};
use serde_json::{json, Value};

use crate::env::{body, message_event, replied_to, Options, TestBridge, WAIT};
use crate::messages::{ghost, login, portal, start_with, with_log, ME};

/// Every bot reply in `room` (the latest `limit` events), counted per event replied to.
async fn replies_by_command(bridge: &TestBridge, user: &TestUser, room: &str, limit: u32) -> anyhow::Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for event in user.messages(room, limit).await? {
        if bridge.is_bot_notice(&event) {
            if let Some(to) = replied_to(&event) {
                *counts.entry(to.to_owned()).or_default() += 1;
            }
        }
    }
    Ok(counts)
}

/// Waits until every command in `commands` has a reply.
async fn wait_all_replied(bridge: &TestBridge, user: &TestUser, room: &str, commands: &[String], timeout: Duration) -> anyhow::Result<HashMap<String, usize>> {
    wait_until(timeout, "a reply to every command", async || {
        let counts = replies_by_command(bridge, user, room, 1000).await?;
        Ok(commands.iter().all(|c| counts.contains_key(c)).then_some(counts))
    })
    .await
}

/// Waits until at least `n` commands in `room` have a reply.
async fn wait_replies(bridge: &TestBridge, user: &TestUser, room: &str, n: usize) -> anyhow::Result<()> {
    wait_until(WAIT, "replies", async || Ok((replies_by_command(bridge, user, room, 1000).await?.len() >= n).then_some(()))).await
}

fn assert_once(counts: &HashMap<String, usize>, commands: &[String]) {
    for command in commands {
        assert_eq!(counts.get(command).copied().unwrap_or(0), 1, "replies to {command}: {counts:?}");
    }
}

/// Synapse on SQLite numbers its transactions from 1 again after a restart: commands sent
/// after the restart reuse transaction IDs the bridge saw minutes before, and must be
/// answered all the same.
#[tokio::test]
async fn commands_are_answered_once_across_a_homeserver_restart() -> anyhow::Result<()> {
    let mut bridge = TestBridge::start(Options { persistent_synapse: true, ..Options::default() }).await?;
    let user = bridge.user("hsrestart").await?;
    let room = bridge.management_room(&user).await?;
    let mut commands = Vec::new();
    for _ in 0..5 {
        commands.push(user.send_text(&room, "version").await?);
    }
    wait_all_replied(&bridge, &user, &room, &commands, WAIT).await?;

    bridge.synapse.restart().await?;
    for _ in 0..10 {
        commands.push(user.send_text(&room, "version").await?);
    }
    let counts = wait_all_replied(&bridge, &user, &room, &commands, WAIT).await?;
    assert_once(&counts, &commands);
    Ok(())
}

/// SIGKILLs at several points of a burst of commands (right after it, in the middle of the
/// replies, after them): every command is answered exactly once.
#[tokio::test]
async fn sigkills_during_a_burst_repeat_no_reply() -> anyhow::Result<()> {
    let mut bridge = TestBridge::start(Options::default()).await?;
    let user = bridge.user("burst").await?;
    let room = bridge.management_room(&user).await?;
    let mut commands = Vec::new();
    for _ in 0..40 {
        commands.push(user.send_text(&room, "version").await?);
    }
    // Before the replies (the bridge is busy with the first ones).
    bridge.kill()?;
    bridge.run(&[]).await?;
    // During them.
    wait_replies(&bridge, &user, &room, 10).await?;
    bridge.kill()?;
    bridge.run(&[]).await?;
    for _ in 0..20 {
        commands.push(user.send_text(&room, "version").await?);
    }
    wait_replies(&bridge, &user, &room, 35).await?;
    bridge.kill()?;
    bridge.run(&[]).await?;
    let counts = wait_all_replied(&bridge, &user, &room, &commands, WAIT).await?;
    // After them: a last restart repeats nothing.
    bridge.kill()?;
    bridge.run(&[]).await?;
    let marker = user.send_text(&room, "version").await?;
    bridge.wait_reply(&user, &room, &marker).await?;
    assert_once(&counts, &commands);
    let counts = replies_by_command(&bridge, &user, &room, 1000).await?;
    assert_once(&counts, &commands);
    Ok(())
}

/// Messages pushed by the network while the bridge is SIGKILLed in the middle of them
/// appear once each, in order.
#[tokio::test]
async fn remote_messages_appear_once_across_sigkills() -> anyhow::Result<()> {
    let (mut env, management) = start_with(false, Options::default()).await?;
    login(&env, &management).await?;
    env.net.add_user("bob", "Bob");
    env.net.add_chat(ChatSpec::direct("d1", ME, "bob"));
    env.net.push_message("d1", "bob", MessageSpec::text("first"))?;
    let room = portal(&env.user, "d1", ME).await?;
    let texts: Vec<String> = (0..30).map(|i| format!("burst {i}")).collect();
    for (i, text) in texts.iter().enumerate() {
        env.net.push_message("d1", "bob", MessageSpec::text(text))?;
        if i == 10 || i == 20 {
            env.bridge.kill()?;
            env.bridge.run(&[]).await?;
        }
    }
    let bob = ghost("bob");
    let bridge = &env.bridge;
    with_log(bridge, async {
        let seen = wait_until(WAIT, "every message", async || {
            let bodies = room_bodies(&env.user, &room, &bob).await?;
            Ok(texts.iter().all(|t| bodies.contains(t)).then_some(bodies))
        })
        .await?;
        let burst: Vec<&String> = seen.iter().filter(|b| b.starts_with("burst ")).collect();
        assert_eq!(burst, texts.iter().collect::<Vec<_>>(), "each once, in order");
        Ok(())
    })
    .await?;
    env.bridge.kill()?;
    Ok(())
}

/// The bodies `sender` sent in `room`, oldest first.
async fn room_bodies(user: &TestUser, room: &str, sender: &str) -> anyhow::Result<Vec<String>> {
    let mut events = user.messages(room, 1000).await?;
    events.reverse();
    Ok(events.iter().filter(|e| e["sender"] == sender && e["type"] == "m.room.message").map(|e| body(e).to_owned()).collect())
}

/// Synapse stopped for two minutes: commands already in the inbox and messages arriving
/// from the network wait — through a SIGKILL and restart of the bridge in the middle —
/// and reach Matrix once each, in order, when Synapse is back.
#[tokio::test]
async fn events_wait_for_a_stopped_homeserver_and_survive_a_bridge_restart() -> anyhow::Result<()> {
    let (mut env, management) = start_with(false, Options { persistent_synapse: true, ..Options::default() }).await?;
    login(&env, &management).await?;
    env.net.add_user("bob", "Bob");
    env.net.add_chat(ChatSpec::direct("d1", ME, "bob"));
    env.net.push_message("d1", "bob", MessageSpec::text("before the outage"))?;
    let room = portal(&env.user, "d1", ME).await?;
    let bob = ghost("bob");
    crate::messages::wait_message(&env.user, &room, &bob, "before the outage").await?;

    env.bridge.synapse.stop().await?;
    let stopped = Instant::now();
    // Commands the homeserver delivered just before it went away.
    let mut commands = Vec::new();
    for i in 0..3 {
        let id = format!("$outage-command-{i}-{}", bridge_tests::random_localpart("e"));
        let event = message_event(&id, &management, env.user.user_id(), "version");
        let body = serde_json::to_vec(&json!({ "events": [event] }))?;
        let (status, _) = env.bridge.put_transaction(&format!("outage-{i}"), Some(&env.bridge.hs_token), &body).await?;
        assert_eq!(status, 200);
        commands.push(id);
    }
    let texts: Vec<String> = (0..8).map(|i| format!("during the outage {i}")).collect();
    for text in &texts[..5] {
        env.net.push_message("d1", "bob", MessageSpec::text(text))?;
    }
    let bridge = &env.bridge;
    wait_until(WAIT, "the remote messages to be kept in the database", async || {
        let health: Value = bridge.health().await?;
        Ok((health["remote_backlog"].as_u64() >= Some(5)).then_some(()))
    })
    .await?;
    assert!(bridge.log().matches("the homeserver does not answer").count() <= 2, "the outage is logged once, not per attempt");

    // The bridge dies and comes back while the homeserver is still away.
    env.bridge.kill()?;
    let runs = env.bridge.runs();
    env.bridge.spawn(&[])?;
    for text in &texts[5..] {
        env.net.push_message("d1", "bob", MessageSpec::text(text))?;
    }
    tokio::time::sleep(Duration::from_secs(120).saturating_sub(stopped.elapsed())).await;
    env.bridge.synapse.start_again().await?;
    env.bridge.wait_running(runs).await?;

    let bridge = &env.bridge;
    with_log(bridge, async {
        let counts = wait_all_replied(bridge, &env.user, &management, &commands, Duration::from_secs(60)).await?;
        assert_once(&counts, &commands);
        let seen = wait_until(Duration::from_secs(60), "every message of the outage", async || {
            let bodies = room_bodies(&env.user, &room, &bob).await?;
            Ok(texts.iter().all(|t| bodies.contains(t)).then_some(bodies))
        })
        .await?;
        let during: Vec<&String> = seen.iter().filter(|b| b.starts_with("during the outage")).collect();
        assert_eq!(during, texts.iter().collect::<Vec<_>>(), "each once, in order");
        assert_eq!(bridge.health().await?["remote_backlog"], 0);
        Ok(())
    })
    .await
}

/// A token pasted after its login prompt timed out, or after a restart of the bridge ended
/// the login, is never echoed, is redacted, and the user learns that the login had ended.
#[tokio::test]
async fn a_secret_pasted_after_the_login_ended_is_redacted_and_not_echoed() -> anyhow::Result<()> {
    let edits = vec![("login_timeout_secs: 600".to_owned(), "login_timeout_secs: 3".to_owned())];
    let (mut env, management) = start_with(false, Options { config_edits: edits, ..Options::default() }).await?;
    let (bridge, user) = (&env.bridge, &env.user);
    let token = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.pasted-too-late-0123456789abcdefXYZ";

    bridge.command(user, &management, "login token").await?;
    let timed_out = user.wait_for_event(&management, |e| bridge.is_bot_notice(e) && body(e).contains("timed out"), WAIT).await?;
    assert!(body(&timed_out).contains("3 seconds"), "the real duration: {}", body(&timed_out));
    check_stray_secret(bridge, user, &management, token).await?;

    // A login in progress ends with a restart of the bridge.
    let before_restart = bridge.command(user, &management, "login token").await?;
    assert!(!before_restart.is_empty());
    env.bridge.kill()?;
    env.bridge.run(&[]).await?;
    check_stray_secret(&env.bridge, &env.user, &management, "8f3kd93kslq0vn2m4b7x9z1p").await?;

    // Unknown commands are not echoed either.
    let answer = env.bridge.command(&env.user, &management, "hunter2").await?;
    assert!(!answer.contains("hunter2"), "{answer}");
    let answer = env.bridge.command(&env.user, &management, "lgoin").await?;
    assert!(answer.contains("`login`") && !answer.contains("lgoin"), "{answer}");
    Ok(())
}

async fn check_stray_secret(bridge: &TestBridge, user: &TestUser, room: &str, secret: &str) -> anyhow::Result<()> {
    let pasted = user.send_text(room, secret).await?;
    let notice = user.wait_for_event(room, |e| bridge.is_bot_notice(e) && body(e).contains("No login is waiting"), WAIT).await?;
    assert!(body(&notice).contains("removed it"), "{}", body(&notice));
    user.wait_for_event(room, |e| e["event_id"] == pasted.as_str() && e["unsigned"]["redacted_because"].is_object(), WAIT).await?;
    for event in user.messages(room, 200).await? {
        if event["sender"] == bridge.bot.as_str() {
            assert!(!event.to_string().contains(secret), "the bot repeated the secret: {event}");
        }
    }
    Ok(())
}

/// After a login with a token, the token is in no table but the login's own session: the
/// inbox forgets handled events' content.
#[tokio::test]
async fn a_login_token_is_kept_only_in_the_login_session() -> anyhow::Result<()> {
    let (env, management) = start_with(false, Options::default()).await?;
    let (bridge, user, net) = (&env.bridge, &env.user, &env.net);
    let token = format!("secret-token-{}", bridge_tests::random_localpart("t"));
    net.add_bot_account(&token, "tokenuser", "Token User");
    bridge.command(user, &management, "login token").await?;
    user.send_text(&management, &token).await?;
    user.wait_for_event(&management, |e| bridge.is_bot_notice(e) && body(e).contains("Logged in"), WAIT).await?;
    // A later command, so that the token's event is certainly handled.
    bridge.command(user, &management, "version").await?;

    let path = bridge.dir.path().join("test.db");
    let pool = sqlx::sqlite::SqlitePool::connect(&format!("sqlite:{}", path.display())).await?;
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(&pool).await?;
    let mut found = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)").bind(&table).fetch_all(&pool).await?;
        for column in columns {
            let sql = format!("SELECT COUNT(*) FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE '%' || $1 || '%'");
            // Table and column names come from the schema itself, not from input.
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(&token).fetch_one(&pool).await?;
            if n > 0 {
                found.push(format!("{table}.{column}"));
            }
        }
    }
    pool.close().await;
    assert!(found.iter().all(|place| place == "user_logins.session"), "the token is stored in {found:?}");
    Ok(())
}
