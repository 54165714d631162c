//! The `bridge-wechat` process against Synapse and the real npm puppet service: the puppet
//! service going away mid-session (reported, reconnected, no message from Matrix lost), a
//! group portal with media, mentions, recalls both ways and a topic change, and a bridge
//! restart that needs no new scan.

use bridge_core::bridge::ids::GhostNamer;
use bridge_tests::wechaty::{ScanStatus, To, WechatyPuppet};
use bridge_tests::{random_localpart, wait_until, TestUser};
use serde_json::{json, Value};

use super::{WechatBridge, WAIT};
use crate::env::{body, tail};

/// A bridge over a puppet service with a Matrix user logged in as the contact `me`.
pub(super) struct Session {
    pub(super) puppet: WechatyPuppet,
    pub(super) bridge: WechatBridge,
    pub(super) user: TestUser,
    pub(super) management: String,
    pub(super) me: String,
}

pub(super) const BOT: &str = "@wechatbot:test.localhost";

/// Starts everything and logs in through `login qr` in the management room.
pub(super) async fn session() -> anyhow::Result<Session> {
    session_with(&[]).await
}

/// [`session`] with further `(from, to)` edits of the bridge's generated config.
pub(super) async fn session_with(edits: &[(&str, &str)]) -> anyhow::Result<Session> {
    let puppet = WechatyPuppet::start().await?;
    let bridge = WechatBridge::start_with(&puppet, edits).await?;
    let me = puppet.create_contact("测试用户", None).await?;
    let user = bridge.synapse.register_user(&random_localpart("alice"), false).await?;
    let management = user.create_dm(BOT).await?;
    user.wait_for_membership(&management, BOT, "join", WAIT).await?;
    user.send_text(&management, "login qr").await?;
    puppet.wait_streaming(WAIT).await?;
    puppet.scan("https://login.weixin.qq.com/l/e2e", ScanStatus::Waiting).await?;
    user.wait_for_event(&management, |e| e["sender"] == BOT && e["content"]["msgtype"] == "m.image", WAIT).await?;
    puppet.login(&me).await?;
    // The login is named after the account's real name, never its raw ID.
    user.wait_for_event(&management, |e| e["sender"] == BOT && body(e).contains("Logged in") && body(e).contains("测试用户"), WAIT).await?;
    // The login's client takes over the event stream and reports itself connected (the
    // core tells the user about a lost connection only once it was connected).
    puppet.wait_streaming(WAIT).await?;
    wait_connected(&user, &management).await?;
    Ok(Session { puppet, bridge, user, management, me })
}

/// Polls with `ping` in the management room until the user's login is listed as connected.
pub(super) async fn wait_connected(user: &TestUser, management: &str) -> anyhow::Result<()> {
    wait_until(WAIT, "the login to be connected", async || {
        let answer = command_answer(user, management, "ping", "The bridge is running").await?;
        Ok(body(&answer).contains(": connected").then_some(()))
    })
    .await
}

/// Sends `command` in the management room and returns the bot's answer: its first message
/// after the command that contains `marker`.
pub(super) async fn command_answer(user: &TestUser, management: &str, command: &str, marker: &str) -> anyhow::Result<Value> {
    let sent = user.send_text(management, command).await?;
    wait_until(WAIT, &format!("the answer to {command}"), async || {
        let events = user.messages(management, 50).await?;
        let Some(at) = events.iter().position(|e| e["event_id"] == sent.as_str()) else { return Ok(None) };
        Ok(events[..at].iter().rev().find(|e| e["sender"] == BOT && body(e).contains(marker)).cloned())
    })
    .await
}

/// How many times the bridge's log says a login became connected.
pub(super) fn connections(log: &str) -> usize {
    // The log may be coloured: match the quoted value, not `state=` before it.
    log.lines().filter(|l| l.contains("login state changed") && l.contains("\"connected\"")).count()
}

/// Runs a test body; on failure prints the ends of the bridge's and the puppet's logs.
pub(super) async fn logged(s: &Session, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if result.is_err() {
        eprintln!("bridge log:\n{}\npuppet log:\n{}", tail(&s.bridge.log(), 150), s.puppet.log_tail(40));
    }
    result
}

pub(super) fn ghost(remote: &str) -> String {
    GhostNamer::new("wechat_{id}", "test.localhost").user_id(remote).map(|u| u.to_string()).unwrap_or_default()
}

/// Joins every invite and returns the portal of `chat` (`receiver` is the login for DMs,
/// empty for groups), found by its `m.bridge` state key.
pub(super) async fn portal(user: &TestUser, chat: &str, receiver: &str) -> anyhow::Result<String> {
    user.wait_for_bridged_room(&format!("wechat://{receiver}/{chat}"), WAIT).await
}

/// Waits for an event from `sender` in `room` matching `want`.
pub(super) async fn wait_from(user: &TestUser, room: &str, sender: &str, want: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    user.wait_for_event(room, |e| e["sender"] == sender && want(e), WAIT).await
}

/// A grey PNG picture of `width`×`height`.
fn png_image(width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&vec![128; usize::try_from(width * height)?])?;
    writer.finish()?;
    Ok(out)
}

/// How many of the puppet's received texts equal `text`.
async fn sent_count(puppet: &WechatyPuppet, text: &str) -> anyhow::Result<usize> {
    Ok(puppet.sent().await?.iter().filter(|s| s.text.as_deref() == Some(text)).count())
}

/// Waits until the puppet received `text` from the bridge; returns its id.
pub(super) async fn wait_sent(puppet: &WechatyPuppet, text: &str) -> anyhow::Result<String> {
    wait_until(WAIT, &format!("the puppet to receive {text:?}"), async || {
        Ok(puppet.sent().await?.into_iter().find(|s| s.text.as_deref() == Some(text)).map(|s| s.id))
    })
    .await
}

#[tokio::test]
async fn wechat_bridge_process_logs_in_and_bridges_a_dm_through_synapse() -> anyhow::Result<()> {
    let s = session().await?;
    let result = direct_chat(&s).await;
    logged(&s, result).await
}

/// A DM from a contact opens a portal where the ghost carries the contact's remark as its
/// name; a reply from Matrix reaches the contact.
async fn direct_chat(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, user, me, .. } = s;
    let zhang = puppet.create_contact("张三", Some("老张")).await?;
    puppet.send_text(&zhang, To::Me, "你好，世界", &[]).await?;
    let room = portal(user, &zhang, me).await?;
    wait_from(user, &room, &ghost(&zhang), |e| body(e) == "你好，世界").await?;
    let profile = user.profile(&ghost(&zhang)).await?;
    assert_eq!(profile["displayname"], "老张", "{profile}");

    user.send_text(&room, "Matrix 这边收到").await?;
    let sent = wait_until(WAIT, "the puppet to receive the reply", async || {
        Ok(puppet.sent().await?.into_iter().find(|s| s.text.as_deref() == Some("Matrix 这边收到")))
    })
    .await?;
    assert_eq!(sent.conversation_id, zhang);
    Ok(())
}

#[tokio::test]
async fn wechat_messages_from_matrix_wait_while_the_puppet_service_is_away() -> anyhow::Result<()> {
    let s = session().await?;
    let result = service_away(&s).await;
    logged(&s, result).await
}

async fn service_away(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, bridge, user, management, me } = s;
    let zhang = puppet.create_contact("张三", Some("老张")).await?;
    puppet.send_text(&zhang, To::Me, "在吗", &[]).await?;
    let room = portal(user, &zhang, me).await?;
    wait_from(user, &room, &ghost(&zhang), |e| body(e) == "在吗").await?;

    // The service goes away: the user is told in the management room.
    puppet.stop_server().await?;
    wait_from(user, management, BOT, |e| body(e).contains("Lost the connection")).await?;

    // Two messages sent meanwhile wait in the login's queue, in order.
    user.send_text(&room, "第一条").await?;
    user.send_text(&room, "第二条").await?;
    wait_until(WAIT, "both messages to be queued", async || {
        Ok((bridge.log().matches("messages waiting for the puppet service").count() >= 2).then_some(()))
    })
    .await?;
    assert_eq!(puppet.sent().await?.len(), 0);

    // The service comes back: the login reconnects and both arrive, in order, once.
    puppet.start_server().await?;
    wait_from(user, management, BOT, |e| body(e).contains("Reconnected")).await?;
    wait_sent(puppet, "第二条").await?;
    user.send_text(&room, "第三条").await?;
    wait_sent(puppet, "第三条").await?;
    let texts: Vec<String> = puppet.sent().await?.into_iter().filter_map(|s| s.text).collect();
    assert_eq!(texts, ["第一条", "第二条", "第三条"]);
    assert!(puppet.sent().await?.iter().all(|s| s.conversation_id == zhang));
    Ok(())
}

#[tokio::test]
async fn wechat_group_portal_media_mentions_recalls_and_topic() -> anyhow::Result<()> {
    let s = session().await?;
    let result = group(&s).await;
    logged(&s, result).await
}

async fn group(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, user, me, .. } = s;
    let wang = puppet.create_contact("王五", None).await?;
    let zhao = puppet.create_contact("赵六", None).await?;
    let group = puppet.create_room("家庭群", &[me, &wang, &zhao], &[(&wang, "大哥")]).await?;
    let group_avatar = b"\x89PNG\r\n\x1a\ngroup avatar".to_vec();
    puppet.set_avatar(&group, "group.png", &group_avatar).await?;

    // A member's message opens the group portal, named by the topic; its mention is a pill.
    puppet.send_text(&wang, To::Room(&group), "@赵六\u{2005}晚上吃饭", &[&zhao]).await?;
    let room = portal(user, &group, "").await?;
    let event = wait_from(user, &room, &ghost(&wang), |e| body(e).contains("晚上吃饭")).await?;
    let html = event["content"]["formatted_body"].as_str().unwrap_or_default();
    assert!(html.contains(&format!("https://matrix.to/#/{}", ghost(&zhao))) && html.contains(">赵六</a>"), "{event}");
    assert_eq!(event["content"]["m.mentions"]["user_ids"], json!([ghost(&zhao)]), "{event}");
    let name = user.room_state(&room, "m.room.name", "").await?.unwrap_or_default();
    assert_eq!(name["name"], "家庭群", "{name}");
    let avatar = user.room_state(&room, "m.room.avatar", "").await?.unwrap_or_default();
    let avatar_url = avatar["url"].as_str().unwrap_or_default();
    assert_eq!(user.download_media(avatar_url).await?, group_avatar, "{avatar}");
    assert_eq!(user.profile(&ghost(&wang)).await?["displayname"], "王五");
    // In the group, the member's group alias is their name; elsewhere their own name stays.
    let member = user.room_state(&room, "m.room.member", &ghost(&wang)).await?.unwrap_or_default();
    assert_eq!(member["displayname"], "大哥", "{member}");
    let other = user.room_state(&room, "m.room.member", &ghost(&zhao)).await?.unwrap_or_default();
    assert_eq!(other["displayname"], "赵六", "{other}");

    // An image and a file from WeChat can be downloaded in Matrix; the image carries its
    // size, read from the picture (WeChat does not say it), so clients can lay it out.
    let image = png_image(96, 54)?;
    let pdf = b"%PDF-1.4 e2e".to_vec();
    for (name, data, msgtype) in [("照片.png", &image, "m.image"), ("报告.pdf", &pdf, "m.file")] {
        puppet.send_file(&wang, To::Room(&group), name, data).await?;
        let event = wait_from(user, &room, &ghost(&wang), |e| e["content"]["msgtype"] == msgtype).await?;
        let mxc = event["content"]["url"].as_str().unwrap_or_default();
        assert_eq!(&user.download_media(mxc).await?, data, "{name}: {event}");
        let size = (&event["content"]["info"]["w"], &event["content"]["info"]["h"]);
        match msgtype {
            "m.image" => assert_eq!(size, (&json!(96), &json!(54)), "{event}"),
            _ => assert_eq!(size, (&Value::Null, &Value::Null), "{event}"),
        }
    }

    // An image from Matrix reaches the puppet.
    let png = b"\x89PNG\r\n\x1a\nmatrix image".to_vec();
    let mxc = user.upload_media("image/png", png.clone()).await?;
    let content = json!({"msgtype": "m.image", "body": "图.png", "url": mxc, "info": {"mimetype": "image/png", "size": png.len()}});
    user.send_event(&room, "m.room.message", content).await?;
    let file = wait_until(WAIT, "the puppet to receive the image", async || {
        Ok(puppet.sent().await?.into_iter().find_map(|s| s.file))
    })
    .await?;
    assert_eq!((file.name.as_str(), file.size), ("图.png", png.len() as u64));

    // A recall in WeChat redacts the message in Matrix.
    let id = puppet.send_text(&wang, To::Room(&group), "撤回这条", &[]).await?;
    let event = wait_from(user, &room, &ghost(&wang), |e| body(e) == "撤回这条").await?;
    let event_id = event["event_id"].as_str().unwrap_or_default().to_owned();
    puppet.recall(&id).await?;
    user.wait_for_event(&room, |e| e["type"] == "m.room.redaction" && e["redacts"] == event_id.as_str(), WAIT).await?;

    // A redaction in Matrix recalls the message in WeChat.
    let event_id = user.send_text(&room, "发错了").await?;
    let sent = wait_sent(puppet, "发错了").await?;
    user.redact(&room, &event_id, None).await?;
    wait_until(WAIT, "the puppet to see the recall", async || Ok(puppet.recalled().await?.contains(&sent).then_some(()))).await?;

    // A topic change renames the portal.
    puppet.set_topic(&group, "家庭群（新）", &wang).await?;
    wait_until(WAIT, "the portal to be renamed", async || {
        let name = user.room_state(&room, "m.room.name", "").await?.unwrap_or_default();
        Ok((name["name"] == "家庭群（新）").then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn wechat_bridge_restart_keeps_the_login_without_a_new_scan() -> anyhow::Result<()> {
    let mut s = session().await?;
    let result = restart(&mut s).await;
    logged(&s, result).await
}

async fn restart(s: &mut Session) -> anyhow::Result<()> {
    let zhang = s.puppet.create_contact("张三", None).await?;
    s.puppet.send_text(&zhang, To::Me, "重启前", &[]).await?;
    let room = portal(&s.user, &zhang, &s.me).await?;
    wait_from(&s.user, &room, &ghost(&zhang), |e| body(e) == "重启前").await?;

    let qr_codes = async |user: &TestUser, management: &str| -> anyhow::Result<usize> {
        let events = user.messages(management, 50).await?;
        Ok(events.iter().filter(|e| e["sender"] == BOT && e["content"]["msgtype"] == "m.image").count())
    };
    let qr_before = qr_codes(&s.user, &s.management).await?;

    s.bridge.kill()?;
    s.bridge.run().await?;
    // The stored login reconnects to the puppet (which kept its session): no new scan.
    s.puppet.wait_streaming(WAIT).await?;
    s.puppet.send_text(&zhang, To::Me, "重启后", &[]).await?;
    let (user, puppet) = (&s.user, &s.puppet);
    wait_from(user, &room, &ghost(&zhang), |e| body(e) == "重启后").await?;
    user.send_text(&room, "回复").await?;
    wait_sent(puppet, "回复").await?;

    let events = user.messages(&room, 50).await?;
    let count = |text: &str| events.iter().filter(|e| body(e) == text).count();
    assert_eq!((count("重启前"), count("重启后")), (1, 1), "duplicates after the restart");
    assert_eq!(sent_count(puppet, "回复").await?, 1);
    assert_eq!(qr_codes(user, &s.management).await?, qr_before, "a new QR code was shown after the restart");
    let notices = user.messages(&s.management, 50).await?;
    assert!(!notices.iter().any(|e| body(e).contains("stopped working")), "the login broke after the restart");
    Ok(())
}

#[tokio::test]
async fn wechat_cards_notices_and_avatars() -> anyhow::Result<()> {
    let s = session().await?;
    let result = cards(&s).await;
    logged(&s, result).await
}

async fn cards(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, user, me, .. } = s;
    let avatar = b"\x89PNG\r\n\x1a\navatar of wang".to_vec();
    let wang = puppet.create_contact_with_avatar("老王", "wang123", ("wang.png", &avatar)).await?;
    let zhang = puppet.create_contact("张三", None).await?;

    // Links, mini-programs and contact cards as readable text; places as locations.
    let link = json!({"title": "新闻", "description": "今天的新闻", "url": "https://example.com/n"});
    puppet.send_card(&zhang, To::Me, "url", link).await?;
    let room = portal(user, &zhang, me).await?;
    let from_zhang = ghost(&zhang);
    let event = wait_from(user, &room, &from_zhang, |e| body(e).contains("https://example.com/n")).await?;
    assert_eq!(body(&event), "新闻\n今天的新闻\nhttps://example.com/n");
    let html = event["content"]["formatted_body"].as_str().unwrap_or_default();
    assert!(html.contains("<a href=\"https://example.com/n\">新闻</a>"), "{event}");
    puppet.send_card(&zhang, To::Me, "miniProgram", json!({"title": "小程序", "description": "点我"})).await?;
    wait_from(user, &room, &from_zhang, |e| body(e) == "Mini program: 小程序\n点我").await?;
    puppet.send_card(&zhang, To::Me, "contact", json!(wang)).await?;
    wait_from(user, &room, &from_zhang, |e| body(e) == "Contact card: 老王 (WeChat ID: wang123)").await?;
    let place = json!({"latitude": 39.9, "longitude": 116.4, "name": "天安门", "address": "北京", "accuracy": 1});
    puppet.send_card(&zhang, To::Me, "location", place).await?;
    let event = wait_from(user, &room, &from_zhang, |e| e["content"]["msgtype"] == "m.location").await?;
    assert!(event["content"]["geo_uri"].as_str().unwrap_or_default().starts_with("geo:39.9"), "{event}");

    // A transfer cannot be bridged: a notice asks to open WeChat.
    puppet.send_typed(&zhang, To::Me, 11, "").await?;
    wait_from(user, &room, &from_zhang, |e| e["content"]["msgtype"] == "m.notice" && body(e).contains("open WeChat")).await?;

    // A contact's avatar becomes its ghost's avatar.
    puppet.send_text(&wang, To::Me, "你好", &[]).await?;
    let wang_room = portal(user, &wang, me).await?;
    wait_from(user, &wang_room, &ghost(&wang), |e| body(e) == "你好").await?;
    let mxc = wait_until(WAIT, "the ghost's avatar", async || {
        Ok(user.profile(&ghost(&wang)).await?["avatar_url"].as_str().map(str::to_owned))
    })
    .await?;
    assert_eq!(user.download_media(&mxc).await?, avatar);
    Ok(())
}

/// `login` while logged in (issue 11, first hour): the bot says who the user is logged in
/// as and how to log in to that account again; the bridge's service, which carries one
/// account, is said to be in use; no message shows library words; the login keeps working.
#[tokio::test]
async fn wechat_login_while_logged_in_says_who_and_how() -> anyhow::Result<()> {
    let s = session().await?;
    let result = login_while_logged_in(&s).await;
    logged(&s, result).await
}

async fn login_while_logged_in(s: &Session) -> anyhow::Result<()> {
    let Session { user, management, .. } = s;
    user.send_text(management, "login").await?;
    let already = wait_from(user, management, BOT, |e| body(e).contains("already logged in")).await?;
    let text = body(&already);
    assert!(text.contains("测试用户") && text.contains("another account") && text.contains("`relogin`"), "{already}");
    let failed = wait_from(user, management, BOT, |e| body(e).starts_with("Login failed")).await?;
    assert!(body(&failed).contains("This bridge's WeChat service is already in use by a logged-in WeChat account"), "{failed}");
    for event in user.messages(management, 100).await? {
        let text = body(&event).to_lowercase();
        assert!(
            event["sender"] != BOT || !(text.contains("remote error") || text.contains("puppet")),
            "library words in a message to the user: {event}"
        );
    }
    wait_connected(user, management).await
}
