//! The `bridge-wechat` process against Synapse and the real npm puppet service, for the
//! outgoing queue: messages from Matrix that wait for the puppet service survive a restart
//! of the bridge (delivered once, in order, and recallable), and the daily pacing warning
//! reaches the user once, its count kept across restarts.

use bridge_tests::wechaty::To;
use bridge_tests::wait_until;

use super::synapse::{connections, ghost, logged, portal, session, session_with, wait_from, wait_sent, Session, BOT};
use super::WAIT;
use crate::env::body;

#[tokio::test]
async fn wechat_queued_messages_survive_a_bridge_restart() -> anyhow::Result<()> {
    let mut s = session().await?;
    let result = durable_queue(&mut s).await;
    logged(&s, result).await
}

async fn durable_queue(s: &mut Session) -> anyhow::Result<()> {
    let zhang = s.puppet.create_contact("张三", Some("老张")).await?;
    s.puppet.send_text(&zhang, To::Me, "在吗", &[]).await?;
    let room = portal(&s.user, &zhang, &s.me).await?;
    wait_from(&s.user, &room, &ghost(&zhang), |e| body(e) == "在吗").await?;

    // The service goes away; three messages from Matrix wait in the queue.
    s.puppet.stop_server().await?;
    wait_from(&s.user, &s.management, BOT, |e| body(e).contains("Lost the connection")).await?;
    let mut events = Vec::new();
    for text in ["第一条", "第二条", "第三条"] {
        events.push(s.user.send_text(&room, text).await?);
    }
    wait_until(WAIT, "the messages to be queued", async || {
        Ok((s.bridge.log().matches("messages waiting for the puppet service").count() >= 3).then_some(()))
    })
    .await?;

    // The bridge itself restarts while the service is still away, and finds them again.
    s.bridge.kill()?;
    s.bridge.run().await?;
    wait_until(WAIT, "the restarted bridge to load the queue", async || {
        Ok(s.bridge.log().contains("messages from before the restart").then_some(()))
    })
    .await?;
    assert_eq!(s.puppet.sent().await?.len(), 0);

    // The service comes back: each arrives once, in order.
    s.puppet.start_server().await?;
    wait_sent(&s.puppet, "第三条").await?;
    let sent = s.puppet.sent().await?;
    let texts: Vec<&str> = sent.iter().filter_map(|m| m.text.as_deref()).collect();
    assert_eq!(texts, ["第一条", "第二条", "第三条"]);
    assert!(sent.iter().all(|m| m.conversation_id == zhang), "{sent:?}");

    // A redaction of one of them recalls the right message in WeChat.
    let second = sent[1].id.clone();
    s.user.redact(&room, &events[1], None).await?;
    let (user, puppet) = (&s.user, &s.puppet);
    wait_until(WAIT, "the puppet to see the recall", async || Ok(puppet.recalled().await?.contains(&second).then_some(()))).await?;
    assert_eq!(puppet.recalled().await?, vec![second]);
    // Nothing was sent twice, and the echoes did not come back to Matrix.
    user.send_text(&room, "第四条").await?;
    wait_sent(puppet, "第四条").await?;
    assert_eq!(puppet.sent().await?.len(), 4);
    let timeline = user.messages(&room, 50).await?;
    let copies = timeline.iter().filter(|e| body(e) == "第一条").count();
    assert_eq!(copies, 1, "an echo was bridged");
    Ok(())
}

#[tokio::test]
async fn wechat_daily_pacing_warning_reaches_the_user_once() -> anyhow::Result<()> {
    let mut s = session_with(&[("daily_warning: 300", "daily_warning: 2")]).await?;
    let result = pacing_warning(&mut s).await;
    logged(&s, result).await
}

/// The day's count is kept across restarts of the bridge: the warning comes with the third
/// message although the bridge restarted after the second, and is not repeated after a
/// second restart.
async fn pacing_warning(s: &mut Session) -> anyhow::Result<()> {
    let zhang = s.puppet.create_contact("张三", None).await?;
    s.puppet.send_text(&zhang, To::Me, "你好", &[]).await?;
    let room = portal(&s.user, &zhang, &s.me).await?;
    wait_from(&s.user, &room, &ghost(&zhang), |e| body(e) == "你好").await?;

    let is_warning = |e: &serde_json::Value| e["sender"] == BOT && body(e).contains("more than 2 messages");
    for text in ["一", "二"] {
        s.user.send_text(&room, text).await?;
        wait_sent(&s.puppet, text).await?;
    }
    assert!(!s.user.messages(&s.management, 50).await?.iter().any(is_warning), "warned too early");

    // The bridge restarts; the third message of the day passes the threshold: the user is warned.
    restart_bridge(s).await?;
    s.user.send_text(&room, "三").await?;
    wait_sent(&s.puppet, "三").await?;
    let warning = s.user.wait_for_event(&s.management, is_warning, WAIT).await?;
    assert_eq!(warning["content"]["msgtype"], "m.notice", "{warning}");
    assert!(body(&warning).contains("WeChat"), "{warning}");

    // Another restart: more messages, still one warning.
    restart_bridge(s).await?;
    for text in ["四", "五"] {
        s.user.send_text(&room, text).await?;
        wait_sent(&s.puppet, text).await?;
    }
    // A second warning would have been sent before "四" went out; the bridge logs each one.
    assert_eq!(s.bridge.log().matches("more messages today (UTC) than the warning threshold").count(), 1);
    assert_eq!(s.user.messages(&s.management, 50).await?.iter().filter(|e| is_warning(e)).count(), 1);
    let texts: Vec<String> = s.puppet.sent().await?.into_iter().filter_map(|m| m.text).collect();
    assert_eq!(texts, ["一", "二", "三", "四", "五"]);
    Ok(())
}

/// Kills the bridge and starts it again; waits until its login is connected again.
async fn restart_bridge(s: &mut Session) -> anyhow::Result<()> {
    s.bridge.kill()?;
    let before = connections(&s.bridge.log());
    s.bridge.run().await?;
    wait_until(WAIT, "the restarted login to connect", async || Ok((connections(&s.bridge.log()) > before).then_some(()))).await
}
