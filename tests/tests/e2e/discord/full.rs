//! The whole Discord bridge: the `bridge-discord` process, Synapse and the simulator, driven
//! as a Matrix user would (bot commands in the management room, messages in portals) and
//! checked on both sides: what the Matrix user sees and what the simulator received.

use reqwest::Method;
use serde_json::{json, Value};

use bridge_tests::TestUser;

use super::{body, world, DiscordBridge, World, WAIT};
use crate::env::{replied_to, tail};
use crate::messages::{wait_ephemeral, Syncer};
use bridge_tests::discord_sim::SimFile;
use bridge_tests::{random_localpart, wait_until};

pub(super) const BOT: &str = "@discordbot:test.localhost";

/// A simulator world, the bridge process, and a Matrix user logged in with the world's bot.
pub(super) struct Stack {
    pub(super) w: World,
    pub(super) bridge: DiscordBridge,
    pub(super) user: TestUser,
    pub(super) management: String,
}

pub(super) fn ghost(id: u64) -> String {
    format!("@discord_{id}:test.localhost")
}

pub(super) fn is_bot_notice(event: &Value) -> bool {
    event["sender"] == BOT && event["content"]["msgtype"] == "m.notice"
}

/// Runs a test body; on failure prints the end of the bridge's log.
pub(super) async fn logged<T, F: std::future::Future<Output = anyhow::Result<T>>>(stack: &Stack, body: F) -> anyhow::Result<T> {
    let result = body.await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&stack.bridge.log(), 150));
    }
    result
}

impl Stack {
    /// Starts everything and logs the user in with the world's bot token.
    pub(super) async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// [`Stack::start`] with extra environment for the bridge (config overrides).
    pub(super) async fn start_with(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let w = world().await?;
        let bridge = DiscordBridge::start_with(&w.sim, env).await?;
        let user = bridge.synapse.register_user(&random_localpart("alice"), false).await?;
        let management = user.create_dm(BOT).await?;
        user.wait_for_membership(&management, BOT, "join", WAIT).await?;
        let stack = Self { w, bridge, user, management };
        let result = log_in(&stack.user, &stack.management, &stack.w.token, "Bridge Bot").await;
        let result = match result {
            Ok(()) => wait_until(WAIT, "the gateway session", || async { Ok((stack.w.sim.gateway_sessions() == 1).then_some(())) }).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("bridge log:\n{}", tail(&stack.bridge.log(), 150));
            return Err(e);
        }
        Ok(stack)
    }

    /// Sends a command in the management room and returns the bot's reply to it.
    pub(super) async fn command(&self, text: &str) -> anyhow::Result<String> {
        self.command_in(&self.management, text).await
    }

    pub(super) async fn command_in(&self, room: &str, text: &str) -> anyhow::Result<String> {
        let sent = self.user.send_text(room, text).await?;
        let reply = self.user.wait_for_event(room, |e| is_bot_notice(e) && replied_to(e) == Some(sent.as_str()), WAIT).await?;
        Ok(body(&reply).to_owned())
    }

    /// Joins every invite and returns the portal room of a guild channel (found by its
    /// `m.bridge` state key).
    pub(super) async fn portal(&self, channel: u64) -> anyhow::Result<String> {
        bridged_room(&self.user, &format!("discord:///{channel}")).await
    }

    /// The bridged `general` channel: `bridgeguild` then its portal.
    pub(super) async fn bridged(&self) -> anyhow::Result<String> {
        let answer = self.command(&format!("bridgeguild {}", self.w.guild)).await?;
        anyhow::ensure!(answer.contains("#general"), "{answer}");
        self.portal(self.w.general).await
    }

    /// Waits for an event in `room` matching `predicate`.
    pub(super) async fn wait(&self, room: &str, predicate: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        self.user.wait_for_event(room, predicate, WAIT).await
    }

    /// The Discord ID of the newest simulator message in `channel` with this content.
    pub(super) fn discord_message(&self, channel: u64, content: &str) -> Option<u64> {
        self.w.sim.messages(channel).iter().rev().find(|m| m["content"] == content).and_then(|m| m["id"].as_str()?.parse().ok())
    }
}

/// Joins every invite of `user` until one of their rooms has the `m.bridge` state `key`;
/// returns that room.
pub(super) async fn bridged_room(user: &TestUser, key: &str) -> anyhow::Result<String> {
    user.wait_for_bridged_room(key, WAIT).await
}

/// `login token` in `management` with a bot token; waits for the confirmation naming the bot.
pub(super) async fn log_in(user: &TestUser, management: &str, token: &str, bot_name: &str) -> anyhow::Result<()> {
    let sent = user.send_text(management, "login token").await?;
    let asked = user.wait_for_event(management, |e| is_bot_notice(e) && replied_to(e) == Some(sent.as_str()), WAIT).await?;
    anyhow::ensure!(body(&asked).contains("token"), "{asked}");
    let sent = user.send_text(management, token).await?;
    user.wait_for_event(management, |e| is_bot_notice(e) && body(e).contains(bot_name) && e["event_id"] != sent.as_str(), WAIT).await?;
    Ok(())
}

pub(super) fn event_id(event: &Value) -> String {
    event["event_id"].as_str().unwrap_or_default().to_owned()
}

pub(super) fn state_keys(state: &[Value], event_type: &str) -> Vec<String> {
    state.iter().filter(|e| e["type"] == event_type).filter_map(|e| e["state_key"].as_str().map(str::to_owned)).collect()
}

pub(super) async fn full_state(user: &TestUser, room: &str) -> anyhow::Result<Vec<Value>> {
    let path = format!("/_matrix/client/v3/rooms/{}/state", room.replace('!', "%21").replace(':', "%3A"));
    let state = user.call(Method::GET, &path, None).await?;
    Ok(state.as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn guild_commands_list_bridge_into_a_space_and_unbridge() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let random = stack.w.sim.add_channel(stack.w.guild, "random", Some("Off topic"));
    let s = &stack;
    logged(s, async {
        let help = s.command("help").await?;
        assert!(help.contains("guilds") && help.contains("bridgeguild"), "{help}");

        let list = s.command("guilds").await?;
        assert!(list.contains("Wonderland") && list.contains(&s.w.guild.to_string()), "{list}");
        assert!(list.contains("on first message"), "{list}");

        let bad = s.command("guilds bridge 4242").await?;
        assert!(bad.contains("not in a Discord server with the ID `4242`"), "{bad}");
        let usage = s.command("guilds frobnicate").await?;
        assert!(usage.contains("Usage"), "{usage}");

        let answer = s.command(&format!("guilds bridge {}", s.w.guild)).await?;
        assert!(answer.contains("Wonderland") && answer.contains("#general") && answer.contains("#random"), "{answer}");
        let general = s.portal(s.w.general).await?;
        let room = s.portal(random).await?;
        let name = s.user.room_state(&room, "m.room.name", "").await?;
        assert_eq!(name.as_ref().and_then(|n| n["name"].as_str()), Some("random"));
        let topic = s.user.room_state(&room, "m.room.topic", "").await?;
        assert_eq!(topic.as_ref().and_then(|t| t["topic"].as_str()), Some("Off topic"));

        // Both channels sit in one space named after the guild, itself in the login's space.
        let parents = state_keys(&full_state(&s.user, &room).await?, "m.space.parent");
        assert_eq!(parents.len(), 1, "{parents:?}");
        let space = parents[0].clone();
        assert_eq!(state_keys(&full_state(&s.user, &general).await?, "m.space.parent"), vec![space.clone()]);
        let space_name = s.user.room_state(&space, "m.room.name", "").await?;
        assert_eq!(space_name.as_ref().and_then(|n| n["name"].as_str()), Some("Wonderland"));
        let children = state_keys(&full_state(&s.user, &space).await?, "m.space.child");
        assert!(children.contains(&room) && children.contains(&general), "{children:?}");
        let login_space = state_keys(&full_state(&s.user, &space).await?, "m.space.parent");
        assert_eq!(login_space.len(), 1, "the guild space is in the login's space");
        let login_children = state_keys(&full_state(&s.user, &login_space[0]).await?, "m.space.child");
        assert!(login_children.contains(&space), "{login_children:?}");

        let listed = s.command("listguilds").await?;
        assert!(listed.contains("all channels"), "{listed}");

        // Unbridging unlinks the rooms and drops the guild's messages.
        let answer = s.command(&format!("guilds unbridge {}", s.w.guild)).await?;
        assert!(answer.contains("Stopped bridging Wonderland"), "{answer}");
        s.wait(&general, |e| is_bot_notice(e) && body(e).contains("no longer bridged")).await?;
        let listed = s.command("guilds").await?;
        assert!(listed.contains("not bridged"), "{listed}");

        // In on-message mode a channel gets its room with its first message.
        let answer = s.command(&format!("bridgeguild {} on-message", s.w.guild)).await?;
        assert!(answer.contains("first message"), "{answer}");
        let news = s.w.sim.add_channel(s.w.guild, "news", None);
        s.w.sim.push_message(news, s.w.alice, "extra extra");
        let news_room = s.portal(news).await?;
        s.wait(&news_room, |e| body(e) == "extra extra").await?;
        let parents = state_keys(&full_state(&s.user, &news_room).await?, "m.space.parent");
        assert_eq!(parents, vec![space], "the new channel joins the guild's space");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn discord_messages_reach_matrix_with_replies_edits_reactions_deletions_files_and_typing() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        // History from before the channel was bridged is backfilled into the new room.
        s.w.sim.push_message(s.w.general, s.w.alice, "from before the bridge");
        let room = s.bridged().await?;
        let alice = ghost(s.w.alice);
        s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "from before the bridge").await?;

        let first_id = s.w.sim.push_message(s.w.general, s.w.alice, "**bold** and *it* `code`");
        let first = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "**bold** and *it* `code`").await?;
        let html = first["content"]["formatted_body"].as_str().unwrap_or_default();
        assert!(html.contains("<strong>bold</strong>") && html.contains("<em>it</em>") && html.contains("<code>code</code>"), "{html}");

        let reply_id = s.w.sim.push_reply(s.w.general, s.w.alice, "a reply", first_id);
        let reply = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "a reply").await?;
        assert_eq!(replied_to(&reply), Some(event_id(&first).as_str()), "{reply}");

        s.w.sim.edit_message(s.w.general, first_id, "**bold** edited");
        let edit = s.wait(&room, |e| e["content"]["m.relates_to"]["rel_type"] == "m.replace").await?;
        assert_eq!(edit["content"]["m.relates_to"]["event_id"], event_id(&first));
        assert_eq!(edit["content"]["m.new_content"]["body"], "**bold** edited", "{edit}");

        s.w.sim.react(s.w.general, first_id, s.w.alice, "👍", true);
        let reaction = s.wait(&room, |e| e["type"] == "m.reaction").await?;
        assert_eq!(reaction["sender"], alice.as_str());
        assert_eq!(reaction["content"]["m.relates_to"]["key"], "👍");
        assert_eq!(reaction["content"]["m.relates_to"]["event_id"], event_id(&first));

        // A custom emoji arrives as its image, and reacting with that image goes back as it.
        s.w.sim.react(s.w.general, first_id, s.w.alice, "blob:777", true);
        let custom = s.wait(&room, |e| e["type"] == "m.reaction" && e["content"]["com.beeper.reaction.shortcode"] == ":blob:").await?;
        let key = custom["content"]["m.relates_to"]["key"].as_str().unwrap_or_default().to_owned();
        assert!(key.starts_with("mxc://"), "{custom}");
        assert!(s.user.download_media(&key).await?.starts_with(b"\x89PNG"), "the emoji's image is on Matrix");
        let react = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": event_id(&reply), "key": key } });
        s.user.send_event(&room, "m.reaction", react).await?;
        let put = s.w.sim.wait_request(WAIT, "the custom reaction", |r| r.method == "PUT" && r.path.contains("/reactions/")).await?;
        assert!(put.path.contains("blob") && put.path.contains("777"), "{}", put.path);

        s.w.sim.delete_message(s.w.general, reply_id);
        let reply_event = event_id(&reply);
        s.wait(&room, |e| e["type"] == "m.room.redaction" && (e["redacts"] == reply_event.as_str() || e["content"]["redacts"] == reply_event.as_str()))
            .await?;

        let bytes: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
        let file = SimFile { filename: "notes.bin".to_owned(), content_type: "application/octet-stream".to_owned(), bytes: bytes.clone() };
        s.w.sim.push_message_with_file(s.w.general, s.w.alice, "", file);
        let media = s.wait(&room, |e| e["content"]["msgtype"] == "m.file").await?;
        assert_eq!(body(&media), "notes.bin", "{media}");
        let mxc = media["content"]["url"].as_str().unwrap_or_default();
        assert_eq!(s.user.download_media(mxc).await?, bytes, "the attachment's bytes are downloadable from Matrix");

        let mut syncer = Syncer::start(&s.user).await?;
        s.w.sim.typing(s.w.general, s.w.alice);
        wait_ephemeral(&s.user, &mut syncer, &room, |e| {
            e["type"] == "m.typing" && e["content"]["user_ids"].as_array().is_some_and(|u| u.iter().any(|u| u == alice.as_str()))
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn matrix_messages_reach_discord_with_replies_edits_reactions_deletions_files_and_typing() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let room = s.bridged().await?;
        let general = s.w.general;
        let alice = ghost(s.w.alice);
        let posts = format!("/channels/{general}/messages");

        let first_id = s.w.sim.push_message(general, s.w.alice, "question?");
        let first = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "question?").await?;

        // Formatted text with a reply to a Discord message.
        let content = json!({
            "msgtype": "m.text",
            "body": "> question?\n\nsee **this**",
            "format": "org.matrix.custom.html",
            "formatted_body": "<mx-reply><blockquote>question?</blockquote></mx-reply>see <strong>this</strong> <del>not</del>",
            "m.relates_to": { "m.in_reply_to": { "event_id": event_id(&first) } },
        });
        let sent = s.user.send_event(&room, "m.room.message", content).await?;
        let request = s.w.sim.wait_request(WAIT, "the reply", |r| r.method == "POST" && r.path == posts).await?;
        assert_eq!(request.body["content"], "see **this** ~~not~~", "{:?}", request.body);
        assert_eq!(request.body["message_reference"]["message_id"], first_id.to_string(), "{:?}", request.body);
        let discord_id = wait_until(WAIT, "the sent message", || async { Ok(s.discord_message(general, "see **this** ~~not~~")) }).await?;

        // An edit of it.
        let edit = json!({
            "msgtype": "m.text",
            "body": "* see that",
            "m.new_content": { "msgtype": "m.text", "body": "see _that_" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": sent },
        });
        s.user.send_event(&room, "m.room.message", edit).await?;
        let patch = s
            .w
            .sim
            .wait_request(WAIT, "the edit", |r| r.method == "PATCH" && r.path == format!("{posts}/{discord_id}"))
            .await?;
        assert_eq!(patch.body["content"], "see \\_that\\_", "{:?}", patch.body);

        // A reaction on the Discord message, then the deletion of the sent one.
        let reaction = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": event_id(&first), "key": "🎉" } });
        s.user.send_event(&room, "m.reaction", reaction).await?;
        let put = s.w.sim.wait_request(WAIT, "the reaction", |r| r.method == "PUT" && r.path.contains("/reactions/")).await?;
        assert!(put.path.starts_with(&format!("{posts}/{first_id}/reactions/")), "{}", put.path);
        s.user.redact(&room, &sent, None).await?;
        s.w.sim.wait_request(WAIT, "the deletion", |r| r.method == "DELETE" && r.path == format!("{posts}/{discord_id}")).await?;
        let discord_id_text = discord_id.to_string();
        let gone = |m: &Value| m["id"] == discord_id_text.as_str();
        wait_until(WAIT, "the message to be gone", || async { Ok((!s.w.sim.messages(general).iter().any(gone)).then_some(())) }).await?;

        // A file: multipart bytes at the simulator.
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
        let mxc = s.user.upload_media("application/pdf", bytes.clone()).await?;
        let file = json!({ "msgtype": "m.file", "body": "report.pdf", "url": mxc, "info": { "mimetype": "application/pdf", "size": bytes.len() } });
        s.user.send_event(&room, "m.room.message", file).await?;
        let upload = s.w.sim.wait_request(WAIT, "the upload", |r| r.method == "POST" && r.path == posts && !r.files.is_empty()).await?;
        assert_eq!(upload.files[0].1, "report.pdf");
        assert_eq!(upload.files[0].2, bytes, "the simulator received the file's bytes");

        // A file over Discord's limit: a clear notice, and the bridge keeps working.
        let big = vec![7u8; 10 * 1024 * 1024 + 1024];
        let mxc = s.user.upload_media("application/octet-stream", big).await?;
        let file = json!({ "msgtype": "m.file", "body": "huge.bin", "url": mxc });
        let too_big = s.user.send_event(&room, "m.room.message", file).await?;
        let notice = s.wait(&room, |e| is_bot_notice(e) && replied_to(e) == Some(too_big.as_str())).await?;
        assert!(body(&notice).contains("huge.bin") && body(&notice).contains("upload limit"), "{notice}");
        s.user.send_text(&room, "still here").await?;
        wait_until(WAIT, "the next message", || async { Ok(s.discord_message(general, "still here")) }).await?;

        // Typing.
        let path = format!(
            "/_matrix/client/v3/rooms/{}/typing/{}",
            room.replace('!', "%21").replace(':', "%3A"),
            s.user.user_id().replace('@', "%40").replace(':', "%3A")
        );
        s.user.call(Method::PUT, &path, Some(&json!({ "typing": true, "timeout": 5000 }))).await?;
        s.w.sim.wait_request(WAIT, "typing", |r| r.method == "POST" && r.path == format!("/channels/{general}/typing")).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn relayed_matrix_messages_use_a_webhook_with_the_senders_name() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let room = s.bridged().await?;
        let answer = s.command_in(&room, "!dc set-relay").await?;
        assert!(answer.to_lowercase().contains("relay"), "{answer}");

        let bob = s.bridge.synapse.register_user(&random_localpart("bob"), false).await?;
        bob.set_display_name("Bob the Builder").await?;
        s.user.invite(&room, bob.user_id()).await?;
        bob.join(&room).await?;
        bob.send_text(&room, "hello from bob").await?;
        let request = s
            .w
            .sim
            .wait_request(WAIT, "the webhook execution", |r| r.method == "POST" && r.path.starts_with("/webhooks/"))
            .await?;
        assert_eq!(request.body["username"], "Bob the Builder", "{:?}", request.body);
        assert_eq!(request.body["content"], "hello from bob", "the webhook shows the name, not the text: {:?}", request.body);
        let hooks = s.w.sim.webhooks(s.w.general);
        assert_eq!(hooks.len(), 1, "one webhook is created for the channel: {hooks:?}");
        // The webhook's echo is not bridged back into the room.
        let events = s.user.messages(&room, 30).await?;
        let echoes = events.iter().filter(|e| body(e) == "hello from bob").count();
        assert_eq!(echoes, 1, "only Bob's own message is in the room");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn discord_threads_are_matrix_threads_both_ways() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let room = s.bridged().await?;
        let general = s.w.general;
        let alice = ghost(s.w.alice);

        // A thread started on Discord: its messages are a Matrix thread on the starter.
        let starter = s.w.sim.push_message(general, s.w.alice, "start here");
        let root = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "start here").await?;
        let thread = s.w.sim.add_thread(general, starter, "side talk");
        s.w.sim.push_message(thread, s.w.alice, "in the thread");
        let inside = s.wait(&room, |e| body(e) == "in the thread").await?;
        assert_eq!(inside["content"]["m.relates_to"]["rel_type"], "m.thread", "{inside}");
        assert_eq!(inside["content"]["m.relates_to"]["event_id"], event_id(&root), "{inside}");

        // A Matrix thread reply goes into that Discord thread.
        let reply = json!({
            "msgtype": "m.text",
            "body": "answer in thread",
            "m.relates_to": { "rel_type": "m.thread", "event_id": event_id(&root), "is_falling_back": true, "m.in_reply_to": { "event_id": event_id(&root) } },
        });
        let sent = s.user.send_event(&room, "m.room.message", reply).await?;
        let post = s
            .w
            .sim
            .wait_request(WAIT, "the thread reply", |r| r.method == "POST" && r.body["content"] == "answer in thread")
            .await?;
        assert_eq!(post.path, format!("/channels/{thread}/messages"));
        // An edit of it reaches the thread's channel.
        let id = wait_until(WAIT, "the thread message", || async { Ok(s.discord_message(thread, "answer in thread")) }).await?;
        let edit = json!({
            "msgtype": "m.text",
            "body": "* answer edited",
            "m.new_content": { "msgtype": "m.text", "body": "answer edited" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": sent },
        });
        s.user.send_event(&room, "m.room.message", edit).await?;
        s.w.sim.wait_request(WAIT, "the edit in the thread", |r| r.method == "PATCH" && r.path == format!("/channels/{thread}/messages/{id}")).await?;

        // A Matrix thread on a message without a Discord thread starts one.
        let other = s.w.sim.push_message(general, s.w.alice, "no thread yet");
        let other_root = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e) == "no thread yet").await?;
        let reply = json!({
            "msgtype": "m.text",
            "body": "first in new thread",
            "m.relates_to": { "rel_type": "m.thread", "event_id": event_id(&other_root), "is_falling_back": true, "m.in_reply_to": { "event_id": event_id(&other_root) } },
        });
        s.user.send_event(&room, "m.room.message", reply).await?;
        s.w.sim.wait_request(WAIT, "the new thread", |r| r.method == "POST" && r.path == format!("/channels/{general}/messages/{other}/threads")).await?;
        let post = s
            .w
            .sim
            .wait_request(WAIT, "the message in the new thread", |r| r.method == "POST" && r.body["content"] == "first in new thread")
            .await?;
        assert_eq!(post.path, format!("/channels/{other}/messages"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn dms_mentions_and_channel_changes_reach_matrix() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let room = s.bridged().await?;
        let alice = ghost(s.w.alice);

        // Mentions: a Discord mention is a pill; a pill of a Discord ghost is `<@id>`.
        s.w.sim.push_message(s.w.general, s.w.alice, &format!("hey <@{}>!", s.w.bot));
        let mention = s.wait(&room, |e| e["sender"] == alice.as_str() && body(e).starts_with("hey ")).await?;
        let html = mention["content"]["formatted_body"].as_str().unwrap_or_default();
        // The bot's own account is the login: its pill is the bot's ghost or the user.
        assert!(html.starts_with("hey <a href=\"https://matrix.to/#/@") && html.ends_with(">Bridge Bot</a>!"), "{html}");
        let pill = json!({
            "msgtype": "m.text",
            "body": "Alice Liddell: look",
            "format": "org.matrix.custom.html",
            "formatted_body": format!("<a href=\"https://matrix.to/#/{alice}\">Alice Liddell</a>: look"),
        });
        s.user.send_event(&room, "m.room.message", pill).await?;
        let post = s.w.sim.wait_request(WAIT, "the mention", |r| r.method == "POST" && r.body["content"].as_str().is_some_and(|c| c.ends_with(": look"))).await?;
        assert_eq!(post.body["content"], format!("<@{}>: look", s.w.alice), "{:?}", post.body);

        // A channel's new name and topic reach its room.
        s.w.sim.update_channel(s.w.general, "general-chat", Some("New topic"));
        // Name and topic are two state events: wait for both.
        wait_until(WAIT, "the new room name and topic", || async {
            let name = s.user.room_state(&room, "m.room.name", "").await?;
            let topic = s.user.room_state(&room, "m.room.topic", "").await?;
            let name_ok = name.is_some_and(|n| n["name"] == "general-chat");
            let topic_ok = topic.is_some_and(|t| t["topic"] == "New topic");
            Ok((name_ok && topic_ok).then_some(()))
        })
        .await?;

        // A DM to the bot opens a direct portal with the sender's ghost.
        let dm = s.w.sim.add_dm(s.w.bot, s.w.alice);
        s.w.sim.push_message(dm, s.w.alice, "psst, private");
        let dm_room = bridged_room(&s.user, &format!("discord://{}/{dm}", s.w.bot)).await?;
        s.wait(&dm_room, |e| e["sender"] == alice.as_str() && body(e) == "psst, private").await?;
        s.user.send_text(&dm_room, "got it").await?;
        let reply = s.w.sim.wait_request(WAIT, "the DM reply", |r| r.method == "POST" && r.path == format!("/channels/{dm}/messages")).await?;
        assert_eq!(reply.body["content"], "got it");
        Ok(())
    })
    .await
}

/// The name a Matrix client shows for `sender`'s event `event_id` in `room`: the
/// `displayname` of the sender's latest member event before it in the timeline.
async fn shown_name(user: &TestUser, room: &str, sender: &str, event_id: &str) -> anyhow::Result<Option<String>> {
    let events = user.messages(room, 100).await?;
    let at = events.iter().position(|e| e["event_id"] == event_id).ok_or_else(|| anyhow::anyhow!("{event_id} not in the timeline"))?;
    let member = events[at..].iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == sender);
    Ok(member.and_then(|m| m["content"]["displayname"].as_str()).map(str::to_owned))
}

/// Server nicknames (issue 11, first hour): a member whose nickname in the server is
/// `小明同学` and whose global name is `Xiao Ming` shows as `小明同学` in that server's rooms,
/// from their first message on, and with a new nickname after it changed; their global
/// profile keeps their global name.
#[tokio::test]
async fn server_nicknames_name_members_in_the_servers_rooms() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let s = &stack;
    logged(s, async {
        let ming = s.w.sim.add_user("xiaoming", Some("Xiao Ming"));
        s.w.sim.add_member(s.w.guild, ming);
        s.w.sim.set_nick(s.w.guild, ming, "小明同学");
        let room = s.bridged().await?;
        let sender = ghost(ming);
        s.w.sim.push_message(s.w.general, ming, "大家好");
        let first = s.wait(&room, |e| e["sender"] == sender.as_str() && body(e) == "大家好").await?;
        assert_eq!(shown_name(&s.user, &room, &sender, &event_id(&first)).await?.as_deref(), Some("小明同学"));
        let member = s.user.room_state(&room, "m.room.member", &sender).await?.unwrap_or_default();
        assert_eq!(member["displayname"], "小明同学", "{member}");
        let profile = s.user.profile(&sender).await?;
        assert_eq!(profile["displayname"], "Xiao Ming", "{profile}");

        s.w.sim.set_nick(s.w.guild, ming, "小明");
        s.w.sim.push_message(s.w.general, ming, "改名了");
        let second = s.wait(&room, |e| e["sender"] == sender.as_str() && body(e) == "改名了").await?;
        assert_eq!(shown_name(&s.user, &room, &sender, &event_id(&second)).await?.as_deref(), Some("小明"));
        assert_eq!(s.user.profile(&sender).await?["displayname"], "Xiao Ming");
        Ok(())
    })
    .await
}
