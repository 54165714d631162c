//! Channels of a bridged server as they come and go, a second Matrix user bridging the same
//! server, and each server's bridge mode across a restart of the bridge; the whole stack
//! (the `bridge-discord` process, Synapse and the simulator).

use serde_json::Value;

use bridge_tests::{random_localpart, wait_until};

use super::full::{bridged_room, full_state, ghost, is_bot_notice, log_in, logged, state_keys, Stack, BOT};
use super::{body, WAIT};

/// The rooms listed as children of a space (removed children keep an empty state event).
async fn space_children(user: &bridge_tests::TestUser, space: &str) -> anyhow::Result<Vec<String>> {
    let state = full_state(user, space).await?;
    Ok(state
        .iter()
        .filter(|e| e["type"] == "m.space.child" && e["content"]["via"].is_array())
        .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
        .collect())
}

/// Stops the bridge process and starts it again; returns once it has a new gateway session
/// (the second identify of the test's bot).
async fn restart(stack: &mut Stack) -> anyhow::Result<()> {
    stack.bridge.stop().await?;
    stack.bridge.run().await?;
    let sim = &stack.w.sim;
    wait_until(WAIT, "a new gateway session", || async { Ok((sim.identified() == 2).then_some(())) }).await
}

fn string_at<'a>(value: &'a Option<Value>, key: &str) -> Option<&'a str> {
    value.as_ref().and_then(|v| v[key].as_str())
}

#[tokio::test]
async fn new_channels_of_a_fully_bridged_guild_get_a_room_at_once_and_deleted_ones_are_unlinked() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let general = s.bridged().await?;
        let space = state_keys(&full_state(&s.user, &general).await?, "m.space.parent");
        anyhow::ensure!(space.len() == 1, "the portal is in one space: {space:?}");

        // A channel created on Discord gets its room before anyone writes in it.
        let news = s.w.sim.add_channel(s.w.guild, "news", Some("Announcements"));
        let room = s.portal(news).await?;
        assert_eq!(string_at(&s.user.room_state(&room, "m.room.name", "").await?, "name"), Some("news"));
        assert_eq!(string_at(&s.user.room_state(&room, "m.room.topic", "").await?, "topic"), Some("Announcements"));
        assert_eq!(state_keys(&full_state(&s.user, &room).await?, "m.space.parent"), space, "the new room is in the guild's space");
        assert!(space_children(&s.user, &space[0]).await?.contains(&room));
        s.w.sim.push_message(news, s.w.alice, "first news");
        let alice = ghost(s.w.alice);
        s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "first news").await?;

        // The channel deleted on Discord: the room says so and leaves the guild's space.
        s.w.sim.delete_channel(news);
        s.wait(&room, |e| is_bot_notice(e) && body(e).contains("no longer bridged")).await?;
        wait_until(WAIT, "the room to leave the guild's space", || async {
            Ok((!space_children(&s.user, &space[0]).await?.contains(&room)).then_some(()))
        })
        .await?;
        // The other channels are still bridged.
        s.w.sim.push_message(s.w.general, s.w.alice, "general still works");
        s.wait(&general, |e| e["sender"] == alice.as_str() && body(e) == "general still works").await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_second_user_bridging_the_same_guild_shares_its_rooms() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let general = s.bridged().await?;

        // Bob logs in with a second bot that is in the same server, and bridges it too.
        let (bot2, token2) = s.w.sim.add_bot("Second Bot");
        s.w.sim.add_member(s.w.guild, bot2);
        let bob = s.bridge.synapse.register_user(&random_localpart("bob"), false).await?;
        let management = bob.create_dm(BOT).await?;
        bob.wait_for_membership(&management, BOT, "join", WAIT).await?;
        log_in(&bob, &management, &token2, "Second Bot").await?;
        wait_until(WAIT, "both gateway sessions", || async { Ok((s.w.sim.gateway_sessions() == 2).then_some(())) }).await?;
        let sent = bob.send_text(&management, &format!("guilds bridge {}", s.w.guild)).await?;
        let reply = bob.wait_for_event(&management, |e| is_bot_notice(e) && crate::env::replied_to(e) == Some(sent.as_str()), WAIT).await?;
        assert!(body(&reply).contains("#general"), "{reply}");

        // Bob is invited to the existing room, not to a copy.
        let bobs_general = bridged_room(&bob, &format!("discord:///{}", s.w.general)).await?;
        assert_eq!(bobs_general, general, "one room per channel, shared by both users");
        // …and to the server's space, which his own login's space lists.
        let space = state_keys(&full_state(&s.user, &general).await?, "m.space.parent");
        anyhow::ensure!(space.len() == 1, "{space:?}");
        let syncer = std::sync::Arc::new(tokio::sync::Mutex::new(crate::messages::Syncer::start_full()));
        wait_until(WAIT, "Bob in the server's space, inside his own space", || async {
            // Incremental syncs: a full one may be served from Synapse's cache.
            let sync = syncer.lock().await.next(&bob).await?;
            for invite in sync["rooms"]["invite"].as_object().map(|r| r.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                bob.join(&invite).await?;
            }
            let joined = bob.joined_rooms().await?;
            let mut listed = false;
            for room in joined.iter().filter(|r| **r != space[0]) {
                listed |= bob.room_state(room, "m.space.child", &space[0]).await.ok().flatten().is_some_and(|c| c["via"].is_array());
            }
            Ok((joined.contains(&space[0]) && listed).then_some(()))
        })
        .await?;

        // A channel created later: one room, both users in it.
        let news = s.w.sim.add_channel(s.w.guild, "news", None);
        let room = s.portal(news).await?;
        assert_eq!(bridged_room(&bob, &format!("discord:///{news}")).await?, room);

        // A third user cannot take over the first user's bot: the login is refused clearly.
        let carol = s.bridge.synapse.register_user(&random_localpart("carol"), false).await?;
        let management = carol.create_dm(BOT).await?;
        carol.wait_for_membership(&management, BOT, "join", WAIT).await?;
        carol.send_text(&management, "login token").await?;
        carol.wait_for_event(&management, |e| is_bot_notice(e) && body(e).contains("token"), WAIT).await?;
        carol.send_text(&management, &s.w.token).await?;
        let refused = carol.wait_for_event(&management, |e| is_bot_notice(e) && body(e).contains("another Matrix user"), WAIT).await?;
        assert!(body(&refused).contains("already logged in"), "{refused}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn guild_modes_survive_a_restart_of_the_bridge() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let lazy = stack.w.sim.add_guild("Lazyland", &[stack.w.alice, stack.w.bot]);
    let quiet = stack.w.sim.add_channel(lazy, "quiet", None);
    let off = stack.w.sim.add_guild("Offland", &[stack.w.alice, stack.w.bot]);
    stack.w.sim.add_channel(off, "muted", None);
    let s = &stack;
    logged(s, async {
        s.bridged().await?;
        let answer = s.command(&format!("bridgeguild {lazy} on-message")).await?;
        assert!(answer.contains("first message"), "{answer}");
        let answer = s.command(&format!("guilds unbridge {off}")).await?;
        assert!(answer.contains("Stopped bridging Offland"), "{answer}");
        Ok(())
    })
    .await?;

    // The bridge stops; meanwhile a channel is created in the server bridged in full.
    let stopped = stack.bridge.stop().await;
    let while_down = stack.w.sim.add_channel(stack.w.guild, "while-down", None);
    let restarted = match stopped {
        Ok(()) => stack.bridge.run().await,
        Err(e) => Err(e),
    };
    let s = &stack;
    logged(s, async {
        restarted?;
        wait_until(WAIT, "a new gateway session", || async {
            Ok((s.w.sim.identified() == 2 && s.w.sim.gateway_sessions() == 1).then_some(()))
        })
        .await?;
        let list = s.command("guilds").await?;
        for (name, id, mode) in [("Wonderland", s.w.guild, "all channels"), ("Lazyland", lazy, "on first message"), ("Offland", off, "not bridged")] {
            assert!(list.contains(&format!("{name} (`{id}`): {mode}")), "{name} is still {mode}: {list}");
        }

        // The server bridged in full still is: the channel created while the bridge was down
        // gets its room at startup, and a new channel gets its room at once.
        s.portal(while_down).await?;
        let fresh = s.w.sim.add_channel(s.w.guild, "fresh", None);
        s.portal(fresh).await?;

        // The on-message server: a channel's first message opens its room.
        s.w.sim.push_message(quiet, s.w.alice, "anyone here?");
        let room = s.portal(quiet).await?;
        let alice = ghost(s.w.alice);
        s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "anyone here?").await?;
        let list = s.command("guilds").await?;
        assert!(list.contains(&format!("Lazyland (`{lazy}`): on first message")), "{list}");
        Ok(())
    })
    .await
}

/// A relayed message sent through the channel's webhook is edited and deleted through that
/// same webhook after a restart of the bridge (the webhook and the message's origin are
/// stored), and the bridge does not list or create webhooks again.
#[tokio::test]
async fn relayed_messages_keep_their_webhook_across_a_restart() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let s = &stack;
    let (room, bob, original) = logged(s, async {
        let room = s.bridged().await?;
        s.command_in(&room, "!dc set-relay").await?;
        let bob = s.bridge.synapse.register_user(&random_localpart("bob"), false).await?;
        bob.set_display_name("Bob").await?;
        s.user.invite(&room, bob.user_id()).await?;
        bob.join(&room).await?;
        let original = bob.send_text(&room, "first version").await?;
        s.w.sim.wait_request(WAIT, "the webhook execution", |r| r.method == "POST" && r.path.starts_with("/webhooks/")).await?;
        Ok((room, bob, original))
    })
    .await?;
    let hooks = stack.w.sim.webhooks(stack.w.general);
    assert_eq!(hooks.len(), 1, "{hooks:?}");

    let before_restart = stack.w.sim.requests().len();
    let restarted = restart(&mut stack).await;
    let s = &stack;
    logged(s, async {
        restarted?;
        let edit = serde_json::json!({
            "msgtype": "m.text",
            "body": "* second version",
            "m.new_content": { "msgtype": "m.text", "body": "second version" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        });
        bob.send_event(&room, "m.room.message", edit).await?;
        let patched = s
            .w
            .sim
            .wait_request(WAIT, "the edit through the webhook", |r| r.method == "PATCH" && r.path.starts_with("/webhooks/"))
            .await?;
        assert!(patched.body["content"].as_str().is_some_and(|c| c.contains("second version")), "{:?}", patched.body);
        bob.redact(&room, &original, None).await?;
        s.w.sim
            .wait_request(WAIT, "the deletion through the webhook", |r| r.method == "DELETE" && r.path.starts_with("/webhooks/"))
            .await?;
        let after: Vec<_> = s.w.sim.requests().into_iter().skip(before_restart).collect();
        assert!(
            !after.iter().any(|r| r.path.ends_with("/webhooks") && r.path.starts_with("/channels/")),
            "no webhook is listed or created after the restart: {:?}",
            after.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>()
        );
        assert_eq!(s.w.sim.webhooks(s.w.general).len(), 1);
        Ok(())
    })
    .await
}

/// A Matrix thread reply sent into a Discord thread is still edited, reacted to and deleted
/// in that thread after a restart of the bridge (which thread a message sits in is stored).
#[tokio::test]
async fn thread_messages_are_found_in_their_thread_after_a_restart() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let s = &stack;
    let (room, thread, sent, id) = logged(s, async {
        let room = s.bridged().await?;
        let alice = ghost(s.w.alice);
        let starter = s.w.sim.push_message(s.w.general, s.w.alice, "start here");
        let root = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "start here").await?;
        let thread = s.w.sim.add_thread(s.w.general, starter, "side talk");
        let root_id = root["event_id"].as_str().unwrap_or_default().to_owned();
        let reply = serde_json::json!({
            "msgtype": "m.text",
            "body": "answer in thread",
            "m.relates_to": { "rel_type": "m.thread", "event_id": root_id, "is_falling_back": true, "m.in_reply_to": { "event_id": root_id } },
        });
        let sent = s.user.send_event(&room, "m.room.message", reply).await?;
        let id = wait_until(WAIT, "the thread message", || async { Ok(s.discord_message(thread, "answer in thread")) }).await?;
        Ok((room, thread, sent, id))
    })
    .await?;

    let restarted = restart(&mut stack).await;
    let s = &stack;
    logged(s, async {
        restarted?;
        let edit = serde_json::json!({
            "msgtype": "m.text",
            "body": "* answer edited",
            "m.new_content": { "msgtype": "m.text", "body": "answer edited" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": sent },
        });
        s.user.send_event(&room, "m.room.message", edit).await?;
        s.w.sim.wait_request(WAIT, "the edit in the thread", |r| r.method == "PATCH" && r.path == format!("/channels/{thread}/messages/{id}")).await?;
        let reaction = serde_json::json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": sent, "key": "👍" } });
        s.user.send_event(&room, "m.reaction", reaction).await?;
        let prefix = format!("/channels/{thread}/messages/{id}/reactions/");
        s.w.sim.wait_request(WAIT, "the reaction in the thread", |r| r.method == "PUT" && r.path.starts_with(&prefix)).await?;
        s.user.redact(&room, &sent, None).await?;
        s.w.sim.wait_request(WAIT, "the deletion in the thread", |r| r.method == "DELETE" && r.path == format!("/channels/{thread}/messages/{id}")).await?;
        Ok(())
    })
    .await
}
