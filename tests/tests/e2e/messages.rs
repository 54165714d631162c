//! The bridging engine end to end: portals, ghosts and messages both ways, relay, and a
//! bridge restart — the `bridge-test` binary over the test network, against Synapse.

use bridge_core::network::events::MediaKind;
use bridge_tests::{
    testnet::{Action, ChatSpec, MediaSpec, MessageSpec, Sent, TestNet},
    wait_until, TestUser,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::env::{body, tail, Options, TestBridge, WAIT};

/// A bridge over a fresh test network with a logged-in Matrix user.
pub(crate) struct Env {
    pub(crate) bridge: TestBridge,
    pub(crate) net: TestNet,
    pub(crate) user: TestUser,
}

/// The test network account of the Matrix user (also its login ID).
pub(crate) const ME: &str = "me";

/// [`start`] then [`login`].
async fn setup(relay: bool) -> anyhow::Result<Env> {
    let (env, management) = start(relay).await?;
    login(&env, &management).await?;
    Ok(env)
}

/// A bridge over a fresh test network with a Matrix user and their management room.
async fn start(relay: bool) -> anyhow::Result<(Env, String)> {
    start_with(relay, Options::default()).await
}

/// [`start`] with further options (their config edits are applied after the test
/// network's and relay's).
pub(crate) async fn start_with(relay: bool, options: Options) -> anyhow::Result<(Env, String)> {
    let net = TestNet::start().await?;
    let mut config_edits = vec![("server: \"\"".to_owned(), format!("server: \"{}\"", net.url()))];
    if relay {
        config_edits.push(("  relay:\n    enabled: false".to_owned(), "  relay:\n    enabled: true".to_owned()));
    }
    config_edits.extend(options.config_edits.iter().cloned());
    let bridge = TestBridge::start(Options { config_edits, ..options }).await?;
    let user = bridge.user("alice").await?;
    let management = bridge.management_room(&user).await?;
    net.add_bot_account("token-me", ME, "Me Myself");
    Ok((Env { bridge, net, user }, management))
}

/// Logs the user in as [`ME`] with the `token` flow.
pub(crate) async fn login(env: &Env, management: &str) -> anyhow::Result<()> {
    let Env { bridge, user, .. } = env;
    bridge.command(user, management, "login token").await?;
    user.send_text(management, "token-me").await?;
    user.wait_for_event(management, |e| bridge.is_bot_notice(e) && body(e).contains("Logged in"), WAIT).await?;
    Ok(())
}

/// Runs a test body; on failure prints the end of the bridge's log.
pub(crate) async fn with_log(bridge: &TestBridge, body: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    log_on_error(bridge, body.await)
}

/// Prints the end of the bridge's log if `result` is an error (for tests whose body needs
/// the bridge mutably, to kill and restart it), and passes `result` on.
pub(crate) fn log_on_error(bridge: &TestBridge, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&bridge.log(), 150));
    }
    result
}

pub(crate) fn ghost(remote: &str) -> String {
    format!("@test_{remote}:test.localhost")
}

/// Incremental `/sync` for one user (full syncs are cached by Synapse for a while, so
/// polling them would see stale data).
pub(crate) struct Syncer {
    since: Option<String>,
}

impl Syncer {
    /// Starts from the beginning: the first batch is a full sync.
    pub(crate) fn start_full() -> Self {
        Self { since: None }
    }

    /// Starts from now: only what happens after this call is seen.
    pub(crate) async fn start(user: &TestUser) -> anyhow::Result<Self> {
        let sync = user.sync_once(None).await?;
        Ok(Self { since: sync["next_batch"].as_str().map(str::to_owned) })
    }

    /// The next batch.
    pub(crate) async fn next(&mut self, user: &TestUser) -> anyhow::Result<Value> {
        let sync = user.sync_once(self.since.as_deref()).await?;
        if let Some(next) = sync["next_batch"].as_str() {
            self.since = Some(next.to_owned());
        }
        Ok(sync)
    }
}

/// Joins every invite `user` gets and returns the portal room of `chat` (found by its
/// `m.bridge` state key).
pub(crate) async fn portal(user: &TestUser, chat: &str, receiver: &str) -> anyhow::Result<String> {
    user.wait_for_bridged_room(&format!("test://{receiver}/{chat}"), WAIT).await
}

/// Waits for a message from `sender` in `room` with this body; returns the event.
pub(crate) async fn wait_message(user: &TestUser, room: &str, sender: &str, text: &str) -> anyhow::Result<Value> {
    user.wait_for_event(room, |e| e["sender"] == sender && body(e) == text, WAIT).await
}

pub(crate) fn event_id(event: &Value) -> String {
    event["event_id"].as_str().unwrap_or_default().to_owned()
}

/// Polls `/sync` until the room's ephemeral events hold one matching `predicate`.
pub(crate) async fn wait_ephemeral(user: &TestUser, syncer: &mut Syncer, room: &str, predicate: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    wait_until(WAIT, "an ephemeral event", async || {
        let sync = syncer.next(user).await?;
        let events = sync["rooms"]["join"][room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
        Ok(events.into_iter().find(|e| predicate(e)))
    })
    .await
}

pub(crate) fn sent_text(action: &Action) -> Option<(&str, &str)> {
    match action {
        Action::Send { chat, content: Sent::Text { body, .. }, .. } => Some((chat.as_str(), body.as_str())),
        _ => None,
    }
}

/// The remote ID the bridge assigned to a message it sent with this body.
pub(crate) async fn sent_id(net: &TestNet, text: &str) -> anyhow::Result<String> {
    let action = net.wait_action(WAIT, |a| sent_text(a).is_some_and(|(_, b)| b == text)).await?;
    match action {
        Action::Send { id, .. } => Ok(id),
        _ => anyhow::bail!("not a send"),
    }
}

#[tokio::test]
async fn remote_messages_reach_matrix() -> anyhow::Result<()> {
    let env = setup(false).await?;
    with_log(&env.bridge, remote_to_matrix(&env)).await
}

async fn remote_to_matrix(env: &Env) -> anyhow::Result<()> {
    let (net, user) = (&env.net, &env.user);
    net.add_user("bob", "Bob Builder");
    net.add_chat(ChatSpec::direct("d1", ME, "bob"));
    let bob = ghost("bob");

    // The first message creates the DM portal, named after the person, with their ghost.
    let m1 = net.push_message("d1", "bob", MessageSpec::text("hello"))?;
    let room = portal(user, "d1", ME).await?;
    let e1 = wait_message(user, &room, &bob, "hello").await?;
    assert_eq!(user.room_state(&room, "m.room.name", "").await?.unwrap_or_default()["name"], "Bob Builder");
    assert_eq!(user.profile(&bob).await?["displayname"], "Bob Builder");
    let bridge_info = user.room_state(&room, "m.bridge", "test://me/d1").await?.unwrap_or_default();
    assert_eq!(bridge_info["protocol"]["id"], "test");
    assert_eq!(bridge_info["channel"]["id"], "d1");

    // Formatted text with a mention, and a reply.
    let html = "<b>hi</b> <a href=\"https://matrix.to/#/@test_bob:test.localhost\">Bob</a>";
    let spec = MessageSpec { text: "hi Bob".into(), html: Some(html.into()), mentions: vec!["bob".into()], reply_to: Some(m1.clone()), media: None };
    let m2 = net.push_message("d1", "bob", spec)?;
    let e2 = wait_message(user, &room, &bob, "hi Bob").await?;
    assert_eq!(e2["content"]["format"], "org.matrix.custom.html");
    assert_eq!(e2["content"]["formatted_body"], html);
    assert_eq!(e2["content"]["m.mentions"]["user_ids"], json!([bob]));
    assert_eq!(e2["content"]["m.relates_to"]["m.in_reply_to"]["event_id"], event_id(&e1));
    // A mention of the user's own account notifies the user, not a ghost of it.
    let spec = MessageSpec { text: "hey you".into(), mentions: vec![ME.into()], ..MessageSpec::default() };
    net.push_message("d1", "bob", spec)?;
    let mentioned = wait_message(user, &room, &bob, "hey you").await?;
    assert_eq!(mentioned["content"]["m.mentions"]["user_ids"], json!([user.user_id()]));

    // Edit, reaction add and remove, delete.
    net.push_edit("d1", &m1, "bob", "hello again", None)?;
    let edit = wait_message(user, &room, &bob, "* hello again").await?;
    assert_eq!(edit["content"]["m.new_content"]["body"], "hello again");
    assert_eq!(edit["content"]["m.relates_to"], json!({"rel_type": "m.replace", "event_id": event_id(&e1)}));
    net.push_reaction("d1", &m1, "bob", "👍", true)?;
    let reaction = user.wait_for_event(&room, |e| e["type"] == "m.reaction" && e["sender"] == bob.as_str(), WAIT).await?;
    assert_eq!(reaction["content"]["m.relates_to"], json!({"rel_type": "m.annotation", "event_id": event_id(&e1), "key": "👍"}));
    net.push_reaction("d1", &m1, "bob", "👍", false)?;
    let reaction_id = event_id(&reaction);
    user.wait_for_event(&room, |e| e["event_id"] == reaction_id.as_str() && e["unsigned"]["redacted_because"].is_object(), WAIT).await?;
    net.push_delete("d1", &m2, "bob")?;
    let e2_id = event_id(&e2);
    user.wait_for_event(&room, |e| e["event_id"] == e2_id.as_str() && e["unsigned"]["redacted_because"].is_object(), WAIT).await?;

    // An image and a file, with their bytes.
    let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
    let image = MediaSpec { kind: MediaKind::Image, filename: "cat.png".into(), mime: "image/png".into(), bytes: png.clone() };
    net.push_message("d1", "bob", MessageSpec { media: Some(image), ..MessageSpec::default() })?;
    let event = user.wait_for_event(&room, |e| e["content"]["msgtype"] == "m.image", WAIT).await?;
    assert_eq!(event["content"]["body"], "cat.png");
    assert_eq!(event["content"]["info"]["mimetype"], "image/png");
    assert_eq!(user.download_media(event["content"]["url"].as_str().unwrap_or_default()).await?, png);
    let file = MediaSpec { kind: MediaKind::File, filename: "notes.txt".into(), mime: "text/plain".into(), bytes: b"notes".to_vec() };
    net.push_message("d1", "bob", MessageSpec { text: "my notes".into(), media: Some(file), ..MessageSpec::default() })?;
    let event = user.wait_for_event(&room, |e| e["content"]["msgtype"] == "m.file", WAIT).await?;
    assert_eq!(event["content"]["body"], "my notes");
    assert_eq!(event["content"]["filename"], "notes.txt");
    assert_eq!(user.download_media(event["content"]["url"].as_str().unwrap_or_default()).await?, b"notes");

    // Typing and a read receipt by the ghost.
    let mut syncer = Syncer::start(user).await?;
    net.push_typing("d1", "bob", 20_000)?;
    wait_ephemeral(user, &mut syncer, &room, |e| e["type"] == "m.typing" && e["content"]["user_ids"].as_array().is_some_and(|u| u.contains(&json!(bob)))).await?;
    net.push_read_receipt("d1", "bob", &m1)?;
    let e1_id = event_id(&e1);
    wait_ephemeral(user, &mut syncer, &room, |e| e["type"] == "m.receipt" && e["content"][e1_id.as_str()]["m.read"][bob.as_str()].is_object()).await?;

    // A group chat gets its own portal with its name and members.
    net.add_user("carol", "Carol");
    net.add_chat(ChatSpec::group("g1", "Friends", &[ME, "bob", "carol"]));
    net.push_message("g1", "carol", MessageSpec::text("group hello"))?;
    let group = portal(user, "g1", "").await?;
    wait_message(user, &group, &ghost("carol"), "group hello").await?;
    assert_eq!(user.room_state(&group, "m.room.name", "").await?.unwrap_or_default()["name"], "Friends");
    let members = user.joined_members(&group).await?;
    assert!(members.contains(&bob) && members.contains(&ghost("carol")), "{members:?}");

    // Profile changes reach the ghost: name, and avatar (uploaded once).
    net.set_user_name("carol", "Carol Danvers");
    let png = vec![0x89, b'P', b'N', b'G', 7, 7, 7];
    net.set_user_avatar("carol", &png);
    net.push_user_info_changed("carol")?;
    let carol = ghost("carol");
    let profile = wait_until(WAIT, "carol's new profile", async || {
        let profile = user.profile(&carol).await?;
        Ok((profile["displayname"] == "Carol Danvers" && profile["avatar_url"].is_string()).then_some(profile))
    })
    .await?;
    assert_eq!(user.download_media(profile["avatar_url"].as_str().unwrap_or_default()).await?, png);

    // Chat changes reach the room: name, topic, members joining and leaving.
    net.add_user("dan", "Dan");
    net.set_chat_name("g1", Some("Best friends"))?;
    net.set_chat_topic("g1", Some("plans"))?;
    net.add_member("g1", "dan", false)?;
    net.remove_member("g1", "carol")?;
    net.push_chat_info_changed("g1")?;
    wait_until(WAIT, "the new room name, topic and m.bridge", async || {
        let name = user.room_state(&group, "m.room.name", "").await?.unwrap_or_default();
        let topic = user.room_state(&group, "m.room.topic", "").await?.unwrap_or_default();
        let info = user.room_state(&group, "m.bridge", "test:///g1").await?.unwrap_or_default();
        let done = name["name"] == "Best friends" && topic["topic"] == "plans" && info["channel"]["displayname"] == "Best friends";
        Ok(done.then_some(()))
    })
    .await?;
    user.wait_for_membership(&group, &ghost("dan"), "join", WAIT).await?;
    user.wait_for_membership(&group, &carol, "leave", WAIT).await?;

    // A deleted chat is announced and no longer bridged.
    net.push_chat_deleted("g1")?;
    user.wait_for_event(&group, |e| e["sender"] == env.bridge.bot.as_str() && body(e).contains("no longer bridged"), WAIT).await?;
    Ok(())
}

#[tokio::test]
async fn matrix_messages_reach_the_network() -> anyhow::Result<()> {
    let env = setup(false).await?;
    with_log(&env.bridge, matrix_to_remote(&env)).await
}

async fn matrix_to_remote(env: &Env) -> anyhow::Result<()> {
    let (net, user) = (&env.net, &env.user);
    net.add_user("bob", "Bob");
    net.add_chat(ChatSpec::group("g1", "Friends", &[ME, "bob"]));
    let from_bob = net.push_message("g1", "bob", MessageSpec::text("hi from bob"))?;
    let room = portal(user, "g1", "").await?;
    let bob_event = event_id(&wait_message(user, &room, &ghost("bob"), "hi from bob").await?);

    // Plain text goes out through the user's login; its echo is not bridged back.
    let text_event = user.send_text(&room, "from matrix").await?;
    let sent = sent_id(net, "from matrix").await?;
    assert!(net.actions().iter().any(|a| matches!(a, Action::Send { login, chat, .. } if login == ME && chat == "g1")));

    // Formatted text with a pill of a ghost, as a reply.
    let content = json!({
        "msgtype": "m.text", "body": "hey Bob",
        "format": "org.matrix.custom.html",
        "formatted_body": "hey <a href=\"https://matrix.to/#/@test_bob:test.localhost\">Bob</a>",
        "m.relates_to": {"m.in_reply_to": {"event_id": bob_event}},
    });
    user.send_event(&room, "m.room.message", content).await?;
    let action = net.wait_action(WAIT, |a| sent_text(a).is_some_and(|(_, b)| b == "hey Bob")).await?;
    match action {
        Action::Send { content: Sent::Text { html, mentions, .. }, reply_to, .. } => {
            assert_eq!(mentions, vec!["bob".to_owned()]);
            assert!(html.unwrap_or_default().contains("matrix.to/#/@test_bob"));
            assert_eq!(reply_to.as_deref(), Some(from_bob.as_str()));
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }

    // Edit, reaction add and remove, delete.
    let edit = json!({
        "msgtype": "m.text", "body": "* edited", "m.new_content": {"msgtype": "m.text", "body": "edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": text_event},
    });
    user.send_event(&room, "m.room.message", edit).await?;
    net.wait_action(WAIT, |a| matches!(a, Action::Edit { id, content: Sent::Text { body, .. }, .. } if *id == sent && body == "edited")).await?;
    let reaction = user.send_event(&room, "m.reaction", json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": bob_event, "key": "🎉"}})).await?;
    net.wait_action(WAIT, |a| matches!(a, Action::Reaction { target, emoji, add: true, .. } if *target == from_bob && emoji == "🎉")).await?;
    user.redact(&room, &reaction, None).await?;
    net.wait_action(WAIT, |a| matches!(a, Action::Reaction { target, add: false, .. } if *target == from_bob)).await?;
    user.redact(&room, &text_event, None).await?;
    net.wait_action(WAIT, |a| matches!(a, Action::Delete { id, .. } if *id == sent)).await?;

    // An image with its bytes.
    let png = vec![0x89, b'P', b'N', b'G', 9, 9];
    let mxc = user.upload_media("image/png", png.clone()).await?;
    user.send_event(&room, "m.room.message", json!({"msgtype": "m.image", "body": "pic.png", "url": mxc, "info": {"mimetype": "image/png"}})).await?;
    let action = net.wait_action(WAIT, |a| matches!(a, Action::Send { content: Sent::Media { .. }, .. })).await?;
    match action {
        Action::Send { content: Sent::Media { kind, data, filename, .. }, .. } => {
            assert_eq!((kind, data, filename.as_str()), (MediaKind::Image, png, "pic.png"));
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }

    // Typing and a read receipt.
    let path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", user.user_id());
    user.call(Method::PUT, &path, Some(&json!({"typing": true, "timeout": 10_000}))).await?;
    net.wait_action(WAIT, |a| matches!(a, Action::Typing { chat, typing: true, .. } if chat == "g1")).await?;
    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{bob_event}");
    user.call(Method::POST, &path, Some(&json!({}))).await?;
    net.wait_action(WAIT, |a| matches!(a, Action::Read { up_to, .. } if *up_to == from_bob)).await?;

    // Nothing came back twice: a later remote message arrives after every echo.
    net.push_message("g1", "bob", MessageSpec::text("last"))?;
    wait_message(user, &room, &ghost("bob"), "last").await?;
    let events = user.messages(&room, 100).await?;
    let from_matrix = events.iter().filter(|e| body(e) == "hey Bob").count();
    assert_eq!(from_matrix, 1, "the echo of a sent message is not bridged back");
    let sends = net.actions().iter().filter(|a| sent_text(a).is_some_and(|(_, b)| b == "hey Bob")).count();
    assert_eq!(sends, 1);
    Ok(())
}

#[tokio::test]
async fn relay_and_restart_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let mut env = setup(true).await?;
    let result = relay_and_restart(&mut env).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&env.bridge.log(), 150));
    }
    result
}

/// A member's name in one chat (a group alias) shows in that room only, survives a change of
/// their global profile, and gives way to the global name when it is removed.
#[tokio::test]
async fn chat_specific_names_stay_in_their_room() -> anyhow::Result<()> {
    let env = setup(false).await?;
    with_log(&env.bridge, async {
        let Env { net, user, .. } = &env;
        net.add_user("bob", "Bob");
        net.add_chat(ChatSpec::group("g1", "Friends", &[ME, "bob"]));
        net.add_chat(ChatSpec::group("g2", "Work", &[ME, "bob"]));
        net.set_nickname("g1", "bob", Some("Bobby"))?;
        net.push_message("g1", "bob", MessageSpec::text("in g1"))?;
        net.push_message("g2", "bob", MessageSpec::text("in g2"))?;
        let g1 = portal(user, "g1", "").await?;
        let g2 = portal(user, "g2", "").await?;
        wait_message(user, &g2, &ghost("bob"), "in g2").await?;
        let bob = ghost("bob");
        let name_in = async |room: &str| -> anyhow::Result<String> {
            let member = user.room_state(room, "m.room.member", &bob).await?.unwrap_or_default();
            Ok(member["displayname"].as_str().unwrap_or_default().to_owned())
        };
        wait_until(WAIT, "Bobby in g1", async || Ok((name_in(&g1).await? == "Bobby").then_some(()))).await?;
        assert_eq!(name_in(&g2).await?, "Bob");

        // The global name changes: the homeserver copies it into every room; g1 keeps Bobby.
        net.set_user_name("bob", "Robert");
        net.push_user_info_changed("bob")?;
        wait_until(WAIT, "Robert in g2", async || Ok((name_in(&g2).await? == "Robert").then_some(()))).await?;
        wait_until(WAIT, "Bobby back in g1", async || Ok((name_in(&g1).await? == "Bobby").then_some(()))).await?;
        assert_eq!(user.profile(&bob).await?["displayname"], "Robert");

        // The alias is removed: the global name again.
        net.set_nickname("g1", "bob", None)?;
        net.push_chat_info_changed("g1")?;
        wait_until(WAIT, "Robert in g1", async || Ok((name_in(&g1).await? == "Robert").then_some(()))).await?;
        Ok(())
    })
    .await
}

/// With `appservice.public_media` on, a message carries a public URL of the sender's
/// avatar that anyone can fetch without a token, and a forged URL gives nothing.
#[tokio::test]
async fn messages_carry_a_public_url_of_the_senders_avatar() -> anyhow::Result<()> {
    let options = Options {
        config_edits: vec![("  public_media:\n    enabled: false".to_owned(), "  public_media:\n    enabled: true".to_owned())],
        ..Options::default()
    };
    let (env, management) = start_with(true, options).await?;
    login(&env, &management).await?;
    let result = async {
        env.net.add_user("bob", "Bob");
        env.net.add_chat(ChatSpec::group("g1", "Friends", &[ME, "bob"]));
        env.net.push_message("g1", "bob", MessageSpec::text("hello"))?;
        let room = portal(&env.user, "g1", "").await?;
        let picture = b"\x89PNG\r\n\x1a\navatar of alice".to_vec();
        let mxc = env.user.upload_media("image/png", picture.clone()).await?;
        env.user.set_avatar(&mxc).await?;
        env.user.send_text(&room, "with my face").await?;
        let action = env.net.wait_action(WAIT, |a| sent_text(a).is_some_and(|(_, b)| b.contains("with my face"))).await?;
        let Action::Send { avatar_url: Some(url), .. } = action else { anyhow::bail!("no avatar URL in {action:?}") };
        let anonymous = reqwest::Client::new();
        let fetched = anonymous.get(&url).send().await?;
        anyhow::ensure!(fetched.status().is_success(), "{url}: {}", fetched.status());
        assert_eq!(fetched.headers()["content-type"], "image/png");
        assert_eq!(fetched.bytes().await?.to_vec(), picture);
        // Another media ID under the same signature is refused.
        let (base, sig) = url.rsplit_once('/').expect("signed url");
        let (base, _) = base.rsplit_once('/').expect("media id");
        let forged = anonymous.get(format!("{base}/someoneelse/{sig}")).send().await?;
        assert_eq!(forged.status(), reqwest::StatusCode::NOT_FOUND);
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&env.bridge.log(), 150));
    }
    result
}

async fn relay_and_restart(env: &mut Env) -> anyhow::Result<()> {
    env.net.add_user("bob", "Bob");
    env.net.add_chat(ChatSpec::group("g1", "Friends", &[ME, "bob"]));
    env.net.push_message("g1", "bob", MessageSpec::text("first"))?;
    let room = portal(&env.user, "g1", "").await?;
    wait_message(&env.user, &room, &ghost("bob"), "first").await?;

    // A user without a login speaks through the relay once it is set.
    let dave = env.bridge.user("dave").await?;
    dave.set_display_name("Dave").await?;
    env.user.invite(&room, dave.user_id()).await?;
    dave.join(&room).await?;
    let refused = dave.send_text(&room, "no relay yet").await?;
    let notice = env.bridge.wait_reply(&dave, &room, &refused).await?;
    assert!(body(&notice).contains("not logged in"), "{}", body(&notice));
    let status = dave.wait_for_event(&room, |e| e["type"] == "com.beeper.message_send_status", WAIT).await?;
    assert_eq!(status["content"]["status"], "FAIL");
    assert_eq!(status["content"]["m.relates_to"]["event_id"], refused.as_str());
    let answer = env.bridge.command(&env.user, &room, "!test set-relay").await?;
    assert!(answer.contains("relayed"), "{answer}");
    dave.send_text(&room, "via relay").await?;
    let action = env.net.wait_action(WAIT, |a| sent_text(a).is_some_and(|(_, b)| b.contains("via relay"))).await?;
    match action {
        Action::Send { login, content: Sent::Text { body, .. }, relayed_from, .. } => {
            assert_eq!(login, ME);
            assert_eq!(body, "Dave: via relay");
            assert_eq!(relayed_from.as_deref(), Some("Dave"));
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }

    // While the bridge is down, both sides send; after the restart both arrive once.
    env.bridge.kill()?;
    env.net.push_message("g1", "bob", MessageSpec::text("while down"))?;
    env.user.send_text(&room, "sent while down").await?;
    env.bridge.run(&[]).await?;
    wait_message(&env.user, &room, &ghost("bob"), "while down").await?;
    sent_id(&env.net, "sent while down").await?;
    env.net.push_message("g1", "bob", MessageSpec::text("after restart"))?;
    wait_message(&env.user, &room, &ghost("bob"), "after restart").await?;
    let events = env.user.messages(&room, 100).await?;
    for text in ["first", "while down", "sent while down", "Dave: via relay"] {
        let n = events.iter().filter(|e| body(e) == text).count();
        assert!(n <= 1, "{text} appears {n} times");
    }
    assert_eq!(events.iter().filter(|e| body(e) == "first").count(), 1);
    let sends = env.net.actions().iter().filter(|a| sent_text(a).is_some_and(|(_, b)| b == "sent while down")).count();
    assert_eq!(sends, 1);
    Ok(())
}

#[tokio::test]
async fn backfill_start_chat_and_delete_portal() -> anyhow::Result<()> {
    let (env, management) = start(false).await?;
    with_log(&env.bridge, backfill_start_delete(&env, &management)).await
}

async fn backfill_start_delete(env: &Env, management: &str) -> anyhow::Result<()> {
    let (net, user, bridge) = (&env.net, &env.user, &env.bridge);
    // History from before the login is backfilled, oldest first, when the login syncs.
    net.add_user("bob", "Bob");
    net.add_chat(ChatSpec::group("old", "Old friends", &[ME, "bob"]));
    net.push_message("old", "bob", MessageSpec::text("old one"))?;
    net.push_message("old", "bob", MessageSpec::text("old two"))?;
    login(env, management).await?;
    let room = portal(user, "old", "").await?;
    wait_message(user, &room, &ghost("bob"), "old two").await?;
    let events = user.messages(&room, 50).await?;
    let bodies: Vec<&str> = events.iter().rev().filter(|e| e["type"] == "m.room.message").map(body).collect();
    assert_eq!(bodies, ["old one", "old two"]);
    let history = net.history("old");
    let first = events.iter().find(|e| body(e) == "old one").map(|e| e["origin_server_ts"].clone());
    assert_eq!(first, Some(json!(history[0].timestamp)), "backfill keeps the original timestamp");

    // start-chat creates the DM portal and invites the user.
    net.add_user("erin", "Erin");
    let answer = bridge.command(user, management, "start-chat erin").await?;
    assert!(answer.contains("Erin") && answer.contains("matrix.to"), "{answer}");
    let dm = answer.split("matrix.to/#/").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default().to_owned();
    wait_until(WAIT, "joining the new DM", async || Ok(Some(user.join(&dm).await?))).await?;
    assert_eq!(user.room_state(&dm, "m.room.name", "").await?.unwrap_or_default()["name"], "Erin");
    assert!(user.joined_members(&dm).await?.contains(&ghost("erin")));

    // An admin deletes a portal: everyone is removed and the room is no longer bridged.
    let admin = bridge.synapse.register_user("admin", false).await?;
    user.invite(&room, admin.user_id()).await?;
    admin.join(&room).await?;
    let answer = bridge.command(&admin, &room, "!test delete-portal").await?;
    assert!(answer.contains("Deleting"), "{answer}");
    // The state as of their removal is still readable by each of them.
    user.wait_for_membership(&room, user.user_id(), "leave", WAIT).await?;
    admin.wait_for_membership(&room, admin.user_id(), "leave", WAIT).await?;
    assert!(!user.joined_rooms().await?.contains(&room));
    Ok(())
}

#[tokio::test]
async fn missed_messages_are_caught_up_from_history_after_downtime() -> anyhow::Result<()> {
    let mut env = setup(false).await?;
    let result = catch_up_from_history(&mut env).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}", tail(&env.bridge.log(), 150));
    }
    result
}

async fn catch_up_from_history(env: &mut Env) -> anyhow::Result<()> {
    env.net.add_user("bob", "Bob");
    env.net.add_chat(ChatSpec::group("g1", "Friends", &[ME, "bob"]));
    env.net.push_message("g1", "bob", MessageSpec::text("before"))?;
    let room = portal(&env.user, "g1", "").await?;
    wait_message(&env.user, &room, &ghost("bob"), "before").await?;

    // While the bridge is down the network only keeps history: the live events are gone.
    env.bridge.kill()?;
    let missed = ["missed one", "missed two", "missed three"];
    for text in missed {
        env.net.push_message("g1", "bob", MessageSpec::text(text))?;
    }
    assert_eq!(env.net.drop_pending(ME), missed.len());
    env.bridge.run(&[]).await?;
    wait_message(&env.user, &room, &ghost("bob"), "missed three").await?;

    // A live message after the catch-up, as a barrier: everything before it is in.
    env.net.push_message("g1", "bob", MessageSpec::text("live again"))?;
    wait_message(&env.user, &room, &ghost("bob"), "live again").await?;
    let events = env.user.messages(&room, 100).await?;
    let bodies: Vec<&str> = events.iter().rev().filter(|e| e["type"] == "m.room.message").map(body).collect();
    assert_eq!(bodies, ["before", "missed one", "missed two", "missed three", "live again"], "once each, in order");
    let history = env.net.history("g1");
    for text in missed {
        let original = history.iter().find(|m| m.text == text).map(|m| m.timestamp);
        let bridged = events.iter().find(|e| body(e) == text).and_then(|e| e["origin_server_ts"].as_i64());
        assert_eq!(bridged, original, "{text} keeps its original timestamp");
    }
    Ok(())
}

#[tokio::test]
async fn permission_levels_hold_in_a_relayed_portal() -> anyhow::Result<()> {
    let relayer = bridge_tests::random_localpart("relayer");
    let blocked = bridge_tests::random_localpart("blocked");
    let permissions = vec![
        (format!("@{relayer}:test.localhost"), "relay".to_owned()),
        (format!("@{blocked}:test.localhost"), "block".to_owned()),
    ];
    let (env, management) = start_with(true, Options { permissions, ..Options::default() }).await?;
    login(&env, &management).await?;
    with_log(&env.bridge, permission_levels(&env, &relayer, &blocked)).await
}

async fn permission_levels(env: &Env, relayer: &str, blocked: &str) -> anyhow::Result<()> {
    let (net, user, bridge) = (&env.net, &env.user, &env.bridge);
    net.add_user("bob", "Bob");
    net.add_chat(ChatSpec::group("g1", "Friends", &[ME, "bob"]));
    net.push_message("g1", "bob", MessageSpec::text("first"))?;
    let room = portal(user, "g1", "").await?;
    wait_message(user, &room, &ghost("bob"), "first").await?;
    let answer = bridge.command(user, &room, "!test set-relay").await?;
    assert!(answer.contains("relayed"), "{answer}");

    let relay_user = bridge.synapse.register_user(relayer, false).await?;
    relay_user.set_display_name("Randy").await?;
    let blocked_user = bridge.synapse.register_user(blocked, false).await?;
    for member in [&relay_user, &blocked_user] {
        user.invite(&room, member.user_id()).await?;
        member.join(&room).await?;
    }

    // A relay-level user may not run commands, so not log in…
    let refused = bridge.command(&relay_user, &room, "!test login").await?;
    assert!(refused.contains("not allowed"), "{refused}");
    // …but speaks through the relay, with their name.
    relay_user.send_text(&room, "hello via relay").await?;
    let action = net.wait_action(WAIT, |a| sent_text(a).is_some_and(|(_, b)| b.contains("hello via relay"))).await?;
    match action {
        Action::Send { content: Sent::Text { body, .. }, relayed_from, .. } => {
            assert_eq!(body, "Randy: hello via relay");
            assert_eq!(relayed_from.as_deref(), Some("Randy"));
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }

    // A blocked user's message is not relayed: a failed send status, no notice.
    let blocked_event = blocked_user.send_text(&room, "blocked words").await?;
    let status = user
        .wait_for_event(&room, |e| e["type"] == "com.beeper.message_send_status" && e["content"]["m.relates_to"]["event_id"] == blocked_event.as_str(), WAIT)
        .await?;
    assert_eq!(status["content"]["status"], "FAIL");
    assert_eq!(status["content"]["reason"], "m.no_permission");
    relay_user.send_text(&room, "after the blocked one").await?;
    net.wait_action(WAIT, |a| sent_text(a).is_some_and(|(_, b)| b.contains("after the blocked one"))).await?;
    assert!(!net.actions().iter().any(|a| sent_text(a).is_some_and(|(_, b)| b.contains("blocked words"))), "a blocked user was relayed");
    assert_eq!(bridge.count_replies(user, &room, &blocked_event).await?, 0, "no notice for a blocked user");

    // A user-level user cannot delete the portal; it stays bridged.
    let answer = bridge.command(user, &room, "!test delete-portal").await?;
    assert!(answer.contains("needs the admin permission level"), "{answer}");
    net.push_message("g1", "bob", MessageSpec::text("still bridged"))?;
    wait_message(user, &room, &ghost("bob"), "still bridged").await?;
    assert!(user.room_state(&room, "m.bridge", "test:///g1").await?.is_some());
    assert!(user.joined_members(&room).await?.contains(&bridge.bot));
    Ok(())
}

/// A network's own command (`open <chat>`, declared by the test network) is listed by `help`
/// and creates the portal it asks for; a user without a login is told to log in first.
#[tokio::test]
async fn network_commands_are_listed_and_create_portals() -> anyhow::Result<()> {
    let (env, management) = start(false).await?;
    let Env { bridge, net, user } = &env;
    with_log(bridge, async {
        let refused = bridge.command(user, &management, "open quiet").await?;
        assert!(refused.contains("needs a login"), "{refused}");
        login(&env, &management).await?;
        let help = bridge.command(user, &management, "help").await?;
        assert!(help.contains("`open <chat id>`"), "help lists the network's command: {help}");

        net.add_user("bob", "Bob Builder");
        net.add_chat(ChatSpec::group("quiet", "Quiet Corner", &[ME, "bob"]));
        let answer = bridge.command(user, &management, "open quiet").await?;
        assert!(answer.contains("Quiet Corner"), "{answer}");
        let room = portal(user, "quiet", "").await?;
        let name = user.room_state(&room, "m.room.name", "").await?;
        assert_eq!(name.as_ref().and_then(|n| n["name"].as_str()), Some("Quiet Corner"));
        // The chat's members are ghosts in the room (they join right after it is created).
        user.wait_for_membership(&room, &ghost("bob"), "join", WAIT).await?;

        let bad = bridge.command(user, &management, "open").await?;
        assert!(bad.contains("usage: open <chat id>"), "{bad}");
        Ok(())
    })
    .await
}
