//! The Discord bridge through a homeserver outage: messages from Discord wait for Synapse,
//! survive a SIGKILL of the bridge during the outage, and arrive once each, in order.

use std::time::{Duration, Instant};

use bridge_tests::{random_localpart, wait_until};

use super::full::{bridged_room, ghost, is_bot_notice, log_in, BOT};
use super::{body, world, DiscordBridge, WAIT};
use crate::env::tail;

#[tokio::test]
async fn discord_messages_wait_for_a_stopped_homeserver_and_survive_a_bridge_restart() -> anyhow::Result<()> {
    let w = world().await?;
    let mut bridge = DiscordBridge::start_with_options(&w.sim, &[], true).await?;
    let result = outage(&w, &mut bridge).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&bridge.log(), 150));
    }
    result
}

async fn outage(w: &super::World, bridge: &mut DiscordBridge) -> anyhow::Result<()> {
    let user = bridge.synapse.register_user(&random_localpart("alice"), false).await?;
    let management = user.create_dm(BOT).await?;
    user.wait_for_membership(&management, BOT, "join", WAIT).await?;
    log_in(&user, &management, &w.token, "Bridge Bot").await?;
    let sent = user.send_text(&management, &format!("bridgeguild {}", w.guild)).await?;
    user.wait_for_event(&management, |e| is_bot_notice(e) && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == sent.as_str(), WAIT).await?;
    let room = bridged_room(&user, &format!("discord:///{}", w.general)).await?;
    let alice = ghost(w.alice);
    w.sim.push_message(w.general, w.alice, "before the outage");
    user.wait_for_event(&room, |e| e["sender"] == alice.as_str() && body(e) == "before the outage", WAIT).await?;

    bridge.synapse.stop().await?;
    let stopped = Instant::now();
    let texts: Vec<String> = (0..7).map(|i| format!("while Matrix is away {i}")).collect();
    for text in &texts[..5] {
        w.sim.push_message(w.general, w.alice, text);
    }
    wait_until(WAIT, "the messages to be kept in the database", async || {
        Ok((bridge.health().await?["remote_backlog"].as_u64() >= Some(5)).then_some(()))
    })
    .await?;
    // The bridge dies during the outage; Discord goes on without it.
    bridge.kill()?;
    let runs = bridge.log().matches(super::RUNNING).count();
    bridge.spawn()?;
    for text in &texts[5..] {
        w.sim.push_message(w.general, w.alice, text);
    }
    tokio::time::sleep(Duration::from_secs(120).saturating_sub(stopped.elapsed())).await;
    bridge.synapse.start_again().await?;
    wait_until(Duration::from_secs(120), "the bridge to run again", async || Ok((bridge.log().matches(super::RUNNING).count() > runs).then_some(()))).await?;

    let seen = wait_until(Duration::from_secs(60), "every message of the outage", async || {
        let mut events = user.messages(&room, 500).await?;
        events.reverse();
        let bodies: Vec<String> = events.iter().filter(|e| e["sender"] == alice.as_str()).map(|e| body(e).to_owned()).collect();
        Ok(texts.iter().all(|t| bodies.contains(t)).then_some(bodies))
    })
    .await?;
    let during: Vec<&String> = seen.iter().filter(|b| b.starts_with("while Matrix is away")).collect();
    anyhow::ensure!(during == texts.iter().collect::<Vec<_>>(), "each once, in order: {during:?}");
    Ok(())
}
