//! Messages between a Matrix user and a WhatsApp contact, end to end: Synapse, the
//! `bridge-whatsapp` process (real whatsapp-rust, linked through the management room), the
//! simulator relaying Signal-encrypted stanzas, and the contact as a second real
//! whatsapp-rust client. Text with formatting, replies, edits, reactions, deletions, read
//! receipts and typing both ways; a message that could not be decrypted shown as a notice
//! until WhatsApp's retry brings it; then a message sent while the bridge was killed
//! arrives once after the restart (WhatsApp's offline queue, acknowledged only once
//! bridged); `start-chat +number` opens a DM with someone who never wrote.

use bridge_tests::whatsapp_sim::{Contact, WhatsappSim};
use bridge_tests::{wait_until, TestUser};
use reqwest::Method;
use serde_json::{json, Value};

use super::synapse::{command_answer, linked_user, run_scenario, WhatsappBridge};
use super::{random_phone, WAIT};
use crate::env::body;
use crate::messages::{event_id, wait_ephemeral, Syncer};

#[tokio::test]
async fn whatsapp_messages_flow_both_ways_with_formatting_replies_edits_reactions_deletions_receipts_typing_retries_and_a_restart(
) -> anyhow::Result<()> {
    run_scenario(scenario).await
}

/// Waits until the contact received a message that `want` accepts.
pub(super) async fn received<T>(
    contact: &Contact,
    what: &str,
    want: impl Fn(&bridge_tests::whatsapp_sim::Received) -> Option<T>,
) -> anyhow::Result<T> {
    wait_until(WAIT, what, async || {
        Ok(contact.messages().iter().find_map(&want))
    })
    .await
}

/// The WhatsApp ID of the message the contact received with this text.
async fn received_id(contact: &Contact, text: &str) -> anyhow::Result<String> {
    received(contact, &format!("the contact to receive {text:?}"), |m| {
        (m.text() == Some(text)).then(|| m.id.clone())
    })
    .await
}

/// Whether `event` was redacted (its content is gone).
fn redacted(event: &Value) -> bool {
    event["content"]
        .as_object()
        .is_some_and(serde_json::Map::is_empty)
}

async fn scenario(sim: &WhatsappSim, bridge: &mut WhatsappBridge) -> anyhow::Result<()> {
    let alice = random_phone();
    let bob = random_phone();
    let (user, management) = linked_user(sim, bridge, &alice).await?;
    let contact = sim.contact(&bob, "Bob Example", WAIT).await?;

    // Bob writes first: a DM portal, his ghost named by his push name, formatting as HTML.
    let hello_id = contact
        .send_text(&alice, "Hello *Alice*, _this_ is ~not~ `code`")
        .await?;
    let portal = user
        .wait_for_bridged_room(&format!("whatsapp://{alice}/{bob}"), WAIT)
        .await?;
    let ghost = format!("@whatsapp_{bob}:test.localhost");
    let hello = user
        .wait_for_event(
            &portal,
            |e| e["sender"] == ghost.as_str() && e["type"] == "m.room.message",
            WAIT,
        )
        .await?;
    assert_eq!(body(&hello), "Hello *Alice*, _this_ is ~not~ `code`");
    assert_eq!(
        hello["content"]["formatted_body"],
        "Hello <strong>Alice</strong>, <em>this</em> is <del>not</del> <code>code</code>"
    );
    assert_eq!(user.profile(&ghost).await?["displayname"], "Bob Example");

    // Alice answers with formatting: WhatsApp's markers reach Bob.
    let html = json!({"msgtype": "m.text", "body": "**ok** 🎉", "format": "org.matrix.custom.html", "formatted_body": "<strong>ok</strong> 🎉"});
    let answer = user.send_event(&portal, "m.room.message", html).await?;
    let answer_id = received_id(&contact, "*ok* 🎉").await?;

    // Replies both ways.
    let reply_id = contact
        .reply(&alice, "right back at you", &answer_id, &alice)
        .await?;
    let reply = user
        .wait_for_event(&portal, |e| body(e) == "right back at you", WAIT)
        .await?;
    assert_eq!(
        reply["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        answer.as_str()
    );
    let quoting = json!({"msgtype": "m.text", "body": "about that", "m.relates_to": {"m.in_reply_to": {"event_id": event_id(&hello)}}});
    user.send_event(&portal, "m.room.message", quoting).await?;
    let quoted = received(&contact, "the reply from Matrix", |m| {
        (m.text() == Some("about that")).then(|| m.quoted().map(str::to_owned))
    })
    .await?;
    assert_eq!(quoted.as_deref(), Some(hello_id.as_str()));

    // Edits both ways.
    contact
        .edit(&alice, &hello_id, "Hello *Alice* (edited)")
        .await?;
    let edited = user
        .wait_for_event(
            &portal,
            |e| e["content"]["m.new_content"]["body"] == "Hello *Alice* (edited)",
            WAIT,
        )
        .await?;
    assert_eq!(edited["sender"], ghost.as_str());
    assert_eq!(
        edited["content"]["m.relates_to"]["event_id"],
        event_id(&hello).as_str()
    );
    let edit = json!({"msgtype": "m.text", "body": "* ok, fine", "m.new_content": {"msgtype": "m.text", "body": "ok, fine"}, "m.relates_to": {"rel_type": "m.replace", "event_id": answer}});
    user.send_event(&portal, "m.room.message", edit).await?;
    let edit_of = received(&contact, "the edit from Matrix", |m| {
        m.edit()
            .filter(|(_, text)| *text == "ok, fine")
            .map(|(id, _)| id.to_owned())
    })
    .await?;
    assert_eq!(edit_of, answer_id);

    // Reactions: one per user, a new one replaces the old; and from Matrix to WhatsApp.
    contact.react(&alice, &answer_id, false, "👍").await?;
    let thumbs = user
        .wait_for_event(
            &portal,
            |e| e["type"] == "m.reaction" && e["content"]["m.relates_to"]["key"] == "👍",
            WAIT,
        )
        .await?;
    assert_eq!(thumbs["sender"], ghost.as_str());
    assert_eq!(
        thumbs["content"]["m.relates_to"]["event_id"],
        answer.as_str()
    );
    contact.react(&alice, &answer_id, false, "❤️").await?;
    user.wait_for_event(
        &portal,
        |e| e["type"] == "m.reaction" && e["content"]["m.relates_to"]["key"] == "❤️",
        WAIT,
    )
    .await?;
    wait_until(WAIT, "the first reaction to be replaced", async || {
        let events = user.messages(&portal, 100).await?;
        Ok(events
            .iter()
            .any(|e| e["event_id"] == thumbs["event_id"] && redacted(e))
            .then_some(()))
    })
    .await?;
    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id(&hello), "key": "😂"}});
    user.send_event(&portal, "m.reaction", reaction).await?;
    let reacted = received(&contact, "the reaction from Matrix", |m| {
        m.reaction()
            .filter(|(_, emoji)| *emoji == "😂")
            .map(|(id, _)| id.to_owned())
    })
    .await?;
    assert_eq!(reacted, hello_id);

    // Deletions both ways: a revoke redacts, a redaction revokes.
    let oops_id = contact.send_text(&alice, "oops").await?;
    let oops = user
        .wait_for_event(&portal, |e| body(e) == "oops", WAIT)
        .await?;
    contact.revoke(&alice, &oops_id).await?;
    wait_until(WAIT, "the revoked message to be redacted", async || {
        let events = user.messages(&portal, 100).await?;
        Ok(events
            .iter()
            .any(|e| e["event_id"] == oops["event_id"] && redacted(e))
            .then_some(()))
    })
    .await?;
    let mistake = user.send_text(&portal, "mistake").await?;
    let mistake_id = received_id(&contact, "mistake").await?;
    user.redact(&portal, &mistake, None).await?;
    let revoked = received(&contact, "the revoke from Matrix", |m| {
        m.revoked().map(str::to_owned)
    })
    .await?;
    assert_eq!(revoked, mistake_id);

    // Read receipts and typing both ways.
    let mut syncer = Syncer::start(&user).await?;
    contact.mark_read(&alice, &[answer_id.as_str()]).await?;
    wait_ephemeral(&user, &mut syncer, &portal, |e| {
        e["type"] == "m.receipt"
            && e["content"][answer.as_str()]["m.read"][ghost.as_str()].is_object()
    })
    .await?;
    contact.typing(&alice, true).await?;
    wait_ephemeral(&user, &mut syncer, &portal, |e| {
        e["type"] == "m.typing"
            && e["content"]["user_ids"]
                .as_array()
                .is_some_and(|u| u.iter().any(|u| u == ghost.as_str()))
    })
    .await?;
    let read = format!(
        "/_matrix/client/v3/rooms/{portal}/receipt/m.read/{}",
        reply["event_id"].as_str().unwrap_or_default()
    );
    user.call(Method::POST, &read, Some(&json!({}))).await?;
    wait_until(WAIT, "the read receipt to reach the contact", async || {
        Ok(contact
            .receipts()
            .iter()
            .any(|r| r.kind == "read" && r.ids.contains(&reply_id))
            .then_some(()))
    })
    .await?;
    let typing = format!(
        "/_matrix/client/v3/rooms/{portal}/typing/{}",
        user.user_id()
    );
    user.call(
        Method::PUT,
        &typing,
        Some(&json!({"typing": true, "timeout": 10_000})),
    )
    .await?;
    wait_until(WAIT, "the contact to see Alice typing", async || {
        Ok(contact
            .typing_seen()
            .iter()
            .any(|(who, typing)| *who == alice && *typing)
            .then_some(()))
    })
    .await?;

    // A message that cannot be decrypted: a notice stands for it while WhatsApp asks the
    // sender again, and becomes the message when the retry brings it.
    sim.corrupt_next(&alice, 1);
    contact.send_text(&alice, "second try").await?;
    let waiting = user
        .wait_for_event(
            &portal,
            |e| body(e).starts_with("⏳ Waiting for this message"),
            WAIT,
        )
        .await?;
    assert_eq!(waiting["content"]["msgtype"], "m.notice");
    assert_eq!(waiting["sender"], ghost.as_str());
    user.wait_for_event(
        &portal,
        |e| {
            e["content"]["m.new_content"]["body"] == "second try"
                && e["content"]["m.relates_to"]["event_id"] == waiting["event_id"]
        },
        WAIT,
    )
    .await?;
    assert!(
        sim.retries().iter().any(|(who, _)| *who == alice),
        "{:?}",
        sim.retries()
    );

    restart(sim, bridge, &user, &portal, &contact, &alice).await?;
    contact.stop().await;

    // `start-chat +number`: a DM portal with someone who never wrote; a number that is not
    // on WhatsApp is refused.
    let carol_phone = random_phone();
    let carol = sim.contact(&carol_phone, "Carol", WAIT).await?;
    let started = command_answer(
        &user,
        &management,
        &format!("start-chat +{carol_phone}"),
        "chat with",
    )
    .await?;
    assert!(body(&started).contains("Your chat with"), "{started}");
    let with_carol = user
        .wait_for_bridged_room(&format!("whatsapp://{alice}/{carol_phone}"), WAIT)
        .await?;
    user.send_text(&with_carol, "hi Carol").await?;
    received_id(&carol, "hi Carol").await?;
    let refused =
        command_answer(&user, &management, "start-chat +19990000001", "chat with").await?;
    assert!(
        body(&refused).contains("Could not start a chat") && body(&refused).contains("not found"),
        "{refused}"
    );
    carol.stop().await;
    Ok(())
}

/// The bridge is killed; what the contact sends meanwhile waits in WhatsApp's offline queue
/// and arrives once after the restart; the queue empties only once it is bridged.
async fn restart(
    sim: &WhatsappSim,
    bridge: &mut WhatsappBridge,
    user: &TestUser,
    portal: &str,
    contact: &Contact,
    alice: &str,
) -> anyhow::Result<()> {
    bridge.kill()?;
    wait_until(WAIT, "the bridge's device to go offline", async || {
        Ok((sim.connected_devices(alice) == 0).then_some(()))
    })
    .await?;
    contact.send_text(alice, "while you were away").await?;
    wait_until(
        WAIT,
        "the message to wait in the offline queue",
        async || Ok((sim.queued(alice) == 1).then_some(())),
    )
    .await?;
    bridge.run().await?;
    user.wait_for_event(portal, |e| body(e) == "while you were away", WAIT)
        .await?;
    wait_until(WAIT, "the offline queue to empty", async || {
        Ok((sim.queued(alice) == 0).then_some(()))
    })
    .await?;
    let copies = user
        .messages(portal, 100)
        .await?
        .iter()
        .filter(|e| body(e) == "while you were away")
        .count();
    assert_eq!(copies, 1, "bridged once");
    user.send_text(portal, "welcome back").await?;
    received_id(contact, "welcome back").await?;
    Ok(())
}
