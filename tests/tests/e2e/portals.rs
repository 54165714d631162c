//! Portals on demand: a quiet portal keeps no task in the bridge, and wakes up with its
//! next event, in either direction.

use bridge_tests::{testnet::ChatSpec, testnet::MessageSpec, wait_until};
use bridge_tests::testnet::Action;

use crate::env::{Options, WAIT};
use crate::messages::{ghost, login, portal, start_with, wait_message, with_log, ME};

/// The portal actors the bridge runs, from `/metrics`.
async fn running_actors(bridge: &crate::env::TestBridge) -> anyhow::Result<u64> {
    let text = bridge.http().get(format!("{}/metrics", bridge.url())).send().await?.text().await?;
    let line = text.lines().find(|l| l.starts_with("bridge_portal_actors ")).unwrap_or_default();
    Ok(line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX))
}

#[tokio::test]
async fn quiet_portals_keep_no_actor_and_wake_up_with_the_next_event() -> anyhow::Result<()> {
    let (mut env, management) = start_with(false, Options::default()).await?;
    env.bridge.kill()?;
    env.bridge.run(&[("BRIDGE_DEBUG_PORTAL_IDLE_SECS", "2")]).await?;
    login(&env, &management).await?;
    let (net, user, bridge) = (&env.net, &env.user, &env.bridge);
    with_log(bridge, async {
        net.add_user("bob", "Bob");
        net.add_chat(ChatSpec::direct("d1", ME, "bob"));
        net.push_message("d1", "bob", MessageSpec::text("first"))?;
        let room = portal(user, "d1", ME).await?;
        wait_message(user, &room, &ghost("bob"), "first").await?;
        wait_until(WAIT, "the quiet portal's actor to stop", async || Ok((running_actors(bridge).await? == 0).then_some(()))).await?;

        // Remote → Matrix wakes it up.
        net.push_message("d1", "bob", MessageSpec::text("second"))?;
        wait_message(user, &room, &ghost("bob"), "second").await?;
        wait_until(WAIT, "the actor to stop again", async || Ok((running_actors(bridge).await? == 0).then_some(()))).await?;

        // So does Matrix → remote.
        user.send_text(&room, "from matrix").await?;
        net.wait_action(WAIT, |a| matches!(a, Action::Send { content: bridge_tests::testnet::Sent::Text { body, .. }, .. } if body == "from matrix")).await?;
        Ok(())
    })
    .await
}
