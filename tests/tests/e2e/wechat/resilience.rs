//! The `bridge-wechat` process against Synapse and the real npm puppet service, for what the
//! puppet service does to a running login: the account logged out from the phone (LOGOUT),
//! and resets (a RESET event on the stream, and the puppet resetting itself, which the npm
//! service shows as LOGOUT "puppet stop()" and, for a puppet that keeps its session, a new
//! LOGIN). Each is told to the user in the management room; the bridge keeps running.

use bridge_tests::wechaty::{ScanStatus, To};
use bridge_tests::{wait_until, TestUser};

use super::synapse::{command_answer, ghost, logged, portal, session, wait_connected, wait_from, wait_sent, Session, BOT};
use super::WAIT;
use crate::env::body;

/// Waits until the bot has said something containing `needle` at least `count` times in `room`.
async fn wait_notices(user: &TestUser, room: &str, needle: &str, count: usize) -> anyhow::Result<()> {
    wait_until(WAIT, &format!("notice #{count} saying {needle:?}"), async || {
        let events = user.messages(room, 100).await?;
        let seen = events.iter().filter(|e| e["sender"] == BOT && body(e).contains(needle)).count();
        Ok((seen >= count).then_some(()))
    })
    .await
}

/// Opens the DM portal of a new contact 张三; returns (contact, room).
async fn dm(s: &Session) -> anyhow::Result<(String, String)> {
    let zhang = s.puppet.create_contact("张三", None).await?;
    s.puppet.send_text(&zhang, To::Me, "你好", &[]).await?;
    let room = portal(&s.user, &zhang, &s.me).await?;
    wait_from(&s.user, &room, &ghost(&zhang), |e| body(e) == "你好").await?;
    Ok((zhang, room))
}

#[tokio::test]
async fn wechat_logout_from_the_phone_is_reported_and_the_bridge_keeps_running() -> anyhow::Result<()> {
    let s = session().await?;
    let result = phone_logout(&s).await;
    logged(&s, result).await
}

async fn phone_logout(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, user, management, me, .. } = s;
    let (zhang, room) = dm(s).await?;

    // The account is logged out on the phone: the user is told to log in again.
    puppet.logout().await?;
    let notice = wait_from(user, management, BOT, |e| body(e).contains("stopped working")).await?;
    let text = body(&notice);
    assert!(text.contains("测试用户") && text.contains("logged out of WeChat") && text.contains("log in again"), "{notice}");
    assert_eq!(notice["content"]["msgtype"], "m.notice", "{notice}");

    // The bridge still answers, and lists the login as not connected.
    let ping = command_answer(user, management, "ping", "The bridge is running").await?;
    assert!(body(&ping).contains("测试用户") && body(&ping).contains(": bad credentials"), "{ping}");
    let list = command_answer(user, management, "list-logins", "Your logins").await?;
    assert!(body(&list).contains("测试用户") && body(&list).contains(": bad credentials"), "{list}");

    // Logging in again works without restarting anything, and messages flow again.
    user.send_text(management, "login qr").await?;
    puppet.wait_streaming(WAIT).await?;
    puppet.scan("https://login.weixin.qq.com/l/again", ScanStatus::Waiting).await?;
    puppet.login(me).await?;
    wait_notices(user, management, "Logged in", 2).await?;
    puppet.wait_streaming(WAIT).await?;
    wait_connected(user, management).await?;
    puppet.send_text(&zhang, To::Me, "又登录了", &[]).await?;
    wait_from(user, &room, &ghost(&zhang), |e| body(e) == "又登录了").await?;
    user.send_text(&room, "好的").await?;
    wait_sent(puppet, "好的").await?;
    Ok(())
}

#[tokio::test]
async fn wechat_resets_are_reported_and_the_stream_comes_back() -> anyhow::Result<()> {
    let s = session().await?;
    let result = resets(&s).await;
    logged(&s, result).await
}

async fn resets(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, user, management, .. } = s;
    let (zhang, room) = dm(s).await?;

    // A RESET event on the stream: the user is told, the bridge opens a new stream.
    puppet.send_reset_event("e2e reset").await?;
    let lost = wait_from(user, management, BOT, |e| body(e).contains("Lost the connection")).await?;
    assert!(body(&lost).contains("reset the connection: e2e reset"), "{lost}");
    wait_notices(user, management, "Reconnected", 1).await?;
    puppet.send_text(&zhang, To::Me, "重置之后", &[]).await?;
    wait_from(user, &room, &ghost(&zhang), |e| body(e) == "重置之后").await?;
    wait_connected(user, management).await?;

    // The puppet resets itself and resumes its session: a passing loss, not a logout.
    puppet.reset_puppet(true).await?;
    wait_notices(user, management, "the WeChat service restarted", 1).await?;
    wait_notices(user, management, "Reconnected", 2).await?;
    puppet.send_text(&zhang, To::Me, "再次重置之后", &[]).await?;
    wait_from(user, &room, &ghost(&zhang), |e| body(e) == "再次重置之后").await?;
    user.send_text(&room, "收到").await?;
    wait_sent(puppet, "收到").await?;
    let notices = user.messages(management, 100).await?;
    assert!(!notices.iter().any(|e| body(e).contains("stopped working")), "a reset was reported as a logout");

    // The puppet resets and comes back wanting a new scan: the login stopped working.
    puppet.reset_puppet(false).await?;
    wait_notices(user, management, "the WeChat service restarted", 2).await?;
    puppet.wait_streaming(WAIT).await?;
    puppet.scan("https://login.weixin.qq.com/l/after-reset", ScanStatus::Waiting).await?;
    let broken = wait_from(user, management, BOT, |e| body(e).contains("stopped working")).await?;
    assert!(body(&broken).contains("QR code"), "{broken}");
    let ping = command_answer(user, management, "ping", "The bridge is running").await?;
    assert!(body(&ping).contains(": bad credentials"), "{ping}");
    Ok(())
}
