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

/// After a restart, catch-up fetches the history of the chats with news only: one request
/// per such chat, none for the quiet ones, none for a chat the login can no longer see; and
/// the quiet portals start no actor.
#[tokio::test]
async fn a_restart_catches_up_only_the_chats_with_news() -> anyhow::Result<()> {
    let (mut env, management) = start_with(false, Options::default()).await?;
    login(&env, &management).await?;
    let chats: Vec<String> = (1..=10).map(|i| format!("g{i}")).collect();
    let mut rooms = Vec::new();
    env.net.add_user("bob", "Bob");
    for chat in &chats {
        env.net.add_chat(ChatSpec::group(chat, chat, &[ME, "bob"]));
        env.net.push_message(chat, "bob", MessageSpec::text(&format!("hello {chat}")))?;
    }
    for chat in &chats {
        let room = portal(&env.user, chat, "").await?;
        wait_message(&env.user, &room, &ghost("bob"), &format!("hello {chat}")).await?;
        rooms.push(room);
    }

    // While the bridge is down: news in g3 and g7; g9 has news too, but the account left it.
    env.bridge.kill()?;
    for chat in ["g3", "g7", "g9"] {
        env.net.push_message(chat, "bob", MessageSpec::text(&format!("missed in {chat}")))?;
    }
    env.net.remove_member("g9", ME)?;
    env.net.drop_pending(ME);
    let reads_before = env.net.history_reads();
    env.bridge.run(&[]).await?;
    let (net, user, bridge) = (&env.net, &env.user, &env.bridge);
    with_log(bridge, async {
        wait_message(user, &rooms[2], &ghost("bob"), "missed in g3").await?;
        wait_message(user, &rooms[6], &ghost("bob"), "missed in g7").await?;
        // A live message after the catch-up, as a barrier.
        net.push_message("g1", "bob", MessageSpec::text("live again"))?;
        wait_message(user, &rooms[0], &ghost("bob"), "live again").await?;

        let reads = net.history_reads();
        let new_reads: Vec<(String, usize)> = reads
            .iter()
            .map(|(chat, n)| (chat.clone(), n - reads_before.get(chat).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(new_reads, [("g3".to_owned(), 1), ("g7".to_owned(), 1)], "history read once for each chat with news, for no other");
        for (room, chat) in rooms.iter().zip(&chats) {
            let events = user.messages(room, 50).await?;
            let bodies: Vec<&str> = events.iter().rev().filter(|e| e["type"] == "m.room.message").filter_map(|e| e["content"]["body"].as_str()).collect();
            let mut expected = vec![format!("hello {chat}")];
            if chat == "g3" || chat == "g7" {
                expected.push(format!("missed in {chat}"));
            }
            if chat == "g1" {
                expected.push("live again".to_owned());
            }
            assert_eq!(bodies, expected, "{chat}: each message once, in order");
        }
        // Only the portals that had work run an actor.
        assert!(running_actors(bridge).await? <= 3, "quiet portals started no actor");
        Ok(())
    })
    .await
}
