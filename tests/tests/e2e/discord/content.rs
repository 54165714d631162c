//! Discord stickers and embeds as Matrix sees them, long Matrix messages split for Discord,
//! relayed users' avatars on webhook messages, and the gateway dropping under the bridge;
//! the whole stack (the `bridge-discord` process, Synapse and the simulator).

use reqwest::Method;
use serde_json::json;

use bridge_tests::{random_localpart, wait_until};

use super::full::{ghost, is_bot_notice, logged, Stack};
use super::{body, WAIT};

#[tokio::test]
async fn stickers_and_embeds_from_discord_are_readable_in_matrix() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let room = s.bridged().await?;
        let alice = ghost(s.w.alice);
        let embed = json!({
            "type": "rich",
            "title": "Release 2.0",
            "description": "Faster and smaller.",
            "url": "https://example.org/release",
        });
        s.w.sim.push_message_with_extras(s.w.general, s.w.alice, "look at this", &[(4242, "Wave")], vec![embed]);
        s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "look at this").await?;
        let sticker = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e).contains("Wave")).await?;
        assert!(body(&sticker).contains("sticker"), "{sticker}");
        let embed = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e).contains("Release 2.0")).await?;
        let text = body(&embed);
        assert!(text.contains("Faster and smaller.") && text.contains("https://example.org/release"), "{embed}");

        // A message that is only an embed (a shared link's preview) shows the preview.
        let link = json!({ "type": "link", "title": "Example Domain", "description": "For use in examples." });
        s.w.sim.push_message_with_extras(s.w.general, s.w.alice, "", &[], vec![link]);
        let preview = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e).contains("Example Domain")).await?;
        assert!(body(&preview).contains("For use in examples."), "{preview}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_long_matrix_message_reaches_discord_split_in_order_with_nothing_lost() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let room = s.bridged().await?;
        let words: Vec<String> = (0..1000).map(|i| format!("w{i:04}")).collect();
        // 5,999 characters, with a few line breaks.
        let text: String = words.chunks(100).map(|c| c.join(" ")).collect::<Vec<_>>().join("\n");
        assert!(text.chars().count() > 4000);
        s.user.send_text(&room, &text).await?;
        let posts = format!("/channels/{}/messages", s.w.general);
        let received = wait_until(WAIT, "every part of the long message", || async {
            let parts: Vec<String> = s
                .w
                .sim
                .requests()
                .into_iter()
                .filter(|r| r.method == "POST" && r.path == posts)
                .filter_map(|r| r.body["content"].as_str().map(str::to_owned))
                .collect();
            let count: usize = parts.iter().map(|p| p.split_whitespace().count()).sum();
            Ok((count >= words.len()).then_some(parts))
        })
        .await?;
        assert!(received.len() >= 3, "{} parts", received.len());
        for part in &received {
            assert!(part.chars().count() <= 2000, "a part of {} characters", part.chars().count());
        }
        let got: Vec<&str> = received.iter().flat_map(|p| p.split_whitespace()).collect();
        assert_eq!(got, words, "every word arrives once, in order");
        // Discord shows them in the same order.
        let shown: Vec<String> = s.w.sim.messages(s.w.general).iter().filter_map(|m| m["content"].as_str().map(str::to_owned)).collect();
        assert_eq!(shown, received);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn relayed_messages_carry_the_matrix_users_avatar() -> anyhow::Result<()> {
    let stack = Stack::start_with(&[("DISCORD_BRIDGE__APPSERVICE__PUBLIC_MEDIA__ENABLED", "true")]).await?;
    let s = &stack;
    logged(s, async {
        let room = s.bridged().await?;
        let answer = s.command_in(&room, "!dc set-relay").await?;
        assert!(answer.to_lowercase().contains("relay"), "{answer}");

        let bob = s.bridge.synapse.register_user(&random_localpart("bob"), false).await?;
        bob.set_display_name("Bob the Builder").await?;
        let avatar: Vec<u8> = b"\x89PNG\r\n\x1a\n".iter().copied().chain((0..512u32).map(|i| (i * 13 % 256) as u8)).collect();
        let mxc = bob.upload_media("image/png", avatar.clone()).await?;
        let path = format!("/_matrix/client/v3/profile/{}/avatar_url", bob.user_id().replace('@', "%40").replace(':', "%3A"));
        bob.call(Method::PUT, &path, Some(&json!({ "avatar_url": mxc }))).await?;
        s.user.invite(&room, bob.user_id()).await?;
        bob.join(&room).await?;
        bob.send_text(&room, "hello with a face").await?;

        let request = s
            .w
            .sim
            .wait_request(WAIT, "the webhook execution", |r| r.method == "POST" && r.path.starts_with("/webhooks/") && r.body["content"] == "hello with a face")
            .await?;
        assert_eq!(request.body["username"], "Bob the Builder", "{:?}", request.body);
        let url = request.body["avatar_url"].as_str().ok_or_else(|| anyhow::anyhow!("no avatar_url: {:?}", request.body))?;
        assert!(url.starts_with("http"), "{url}");
        // Discord fetches it without any credentials.
        let response = reqwest::Client::new().get(url).timeout(WAIT).send().await?;
        assert!(response.status().is_success(), "{url} answered {}", response.status());
        assert_eq!(response.bytes().await?.to_vec(), avatar, "the URL serves the avatar Bob uploaded");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_bridge_comes_back_after_the_gateway_drops_without_a_reconnect_storm() -> anyhow::Result<()> {
    let stack = Stack::start_with(&[("DISCORD_BRIDGE__NETWORK__DISCONNECT_GRACE_SECONDS", "1")]).await?;
    let s = &stack;
    logged(s, async {
        let room = s.bridged().await?;
        let alice = ghost(s.w.alice);
        let sim = &s.w.sim;
        let connections = sim.gateway_connections();

        // Discord closes the session: the bridge resumes it and messages flow again.
        sim.drop_gateway_sessions();
        wait_until(WAIT, "a resumed session", || async { Ok((sim.resumed() == 1 && sim.gateway_sessions() == 1).then_some(())) }).await?;
        sim.push_message(s.w.general, s.w.alice, "after the drop");
        s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "after the drop").await?;

        // Discord asks for a reconnect (op 7): same again.
        sim.request_reconnect();
        wait_until(WAIT, "a second resumed session", || async { Ok((sim.resumed() == 2 && sim.gateway_sessions() == 1).then_some(())) }).await?;
        sim.push_message(s.w.general, s.w.alice, "after the reconnect");
        s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "after the reconnect").await?;

        // Twice more in a row while the bridge is busy sending.
        sim.drop_gateway_sessions();
        s.user.send_text(&room, "sent while reconnecting").await?;
        wait_until(WAIT, "the Matrix message", || async { Ok(s.discord_message(s.w.general, "sent while reconnecting")) }).await?;
        wait_until(WAIT, "a third resumed session", || async { Ok((sim.resumed() == 3 && sim.gateway_sessions() == 1).then_some(())) }).await?;
        sim.push_message(s.w.general, s.w.alice, "still here");
        s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "still here").await?;

        // One new connection per disruption, all resumed: no storm, no second session.
        let opened = sim.gateway_connections() - connections;
        assert!(opened <= 4, "{opened} gateway connections for 3 disruptions");
        assert_eq!(sim.identified(), 1, "every reconnect resumed the first session");
        assert_eq!(sim.gateway_sessions(), 1);

        // An outage: the user is told, the bridge retries at a slow pace, and comes back.
        let connections = sim.gateway_connections();
        sim.set_gateway_down(true);
        sim.drop_gateway_sessions();
        s.wait(&s.management, |e| is_bot_notice(e) && body(e).contains("Lost the connection")).await?;
        sim.set_gateway_down(false);
        s.wait(&s.management, |e| is_bot_notice(e) && body(e).contains("Reconnected")).await?;
        sim.push_message(s.w.general, s.w.alice, "after the outage");
        s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "after the outage").await?;
        let opened = sim.gateway_connections() - connections;
        assert!(opened <= 6, "{opened} gateway connections for one short outage");
        assert_eq!(sim.identified(), 2, "one new session after the outage");
        assert_eq!(sim.gateway_sessions(), 1);
        Ok(())
    })
    .await
}
