//! A WhatsApp group end to end: Synapse, the `bridge-whatsapp` process, the simulator
//! fanning out sender-key messages, and two contacts as real whatsapp-rust clients. The
//! group becomes a portal named after its subject, its description the topic, its admins
//! moderators; messages flow both ways, a WhatsApp mention becomes a pill of the ghost and
//! a pill becomes a WhatsApp mention of the right account; a mention in a DM too.

use bridge_tests::whatsapp_sim::WhatsappSim;
use serde_json::{json, Value};

use super::messages::received;
use super::synapse::{linked_user, run_scenario, WhatsappBridge};
use super::{random_phone, WAIT};
use crate::env::body;

#[tokio::test]
async fn whatsapp_group_portal_with_subject_admins_and_mentions_both_ways() -> anyhow::Result<()> {
    run_scenario(scenario).await
}

/// The pill of `user` in Matrix HTML.
fn pill(user: &str) -> String {
    format!("https://matrix.to/#/{user}")
}

/// The users an event's `m.mentions` lists.
fn mentioned(event: &Value) -> Vec<&str> {
    event["content"]["m.mentions"]["user_ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

async fn scenario(sim: &WhatsappSim, bridge: &mut WhatsappBridge) -> anyhow::Result<()> {
    let (alice, bob, carol) = (random_phone(), random_phone(), random_phone());
    let (user, _) = linked_user(sim, bridge, &alice).await?;
    let bob_client = sim.contact(&bob, "Bob Example", WAIT).await?;
    let carol_client = sim.contact(&carol, "Carol", WAIT).await?;
    let group = sim.create_group(
        "Weekend plans",
        "Who brings what",
        &[(&bob, true), (&alice, false), (&carol, false)],
    );
    let bob_ghost = format!("@whatsapp_{bob}:test.localhost");
    let carol_ghost = format!("@whatsapp_{carol}:test.localhost");

    // Carol writes first, so the bridge knows her name; then Bob mentions her.
    carol_client.send_text(&group, "hello everyone").await?;
    let portal = user
        .wait_for_bridged_room(&format!("whatsapp:///{group}"), WAIT)
        .await?;
    user.wait_for_event(
        &portal,
        |e| e["sender"] == carol_ghost.as_str() && body(e) == "hello everyone",
        WAIT,
    )
    .await?;
    let name = user.room_state(&portal, "m.room.name", "").await?;
    assert_eq!(
        name.as_ref().map(|n| &n["name"]),
        Some(&json!("Weekend plans"))
    );
    let topic = user.room_state(&portal, "m.room.topic", "").await?;
    assert_eq!(
        topic.as_ref().map(|t| &t["topic"]),
        Some(&json!("Who brings what"))
    );
    let levels = user
        .room_state(&portal, "m.room.power_levels", "")
        .await?
        .unwrap_or_default();
    assert_eq!(levels["users"][bob_ghost.as_str()], 50, "{levels}");
    assert!(levels["users"][carol_ghost.as_str()].is_null(), "{levels}");

    // A WhatsApp mention becomes a pill of the ghost (and an `m.mentions` entry).
    bob_client
        .send_mentioning(&group, &format!("@{carol} brings the cake"), &[&carol])
        .await?;
    let mention = user
        .wait_for_event(
            &portal,
            |e| e["sender"] == bob_ghost.as_str() && body(e).ends_with("brings the cake"),
            WAIT,
        )
        .await?;
    assert_eq!(body(&mention), "Carol brings the cake");
    let html = mention["content"]["formatted_body"]
        .as_str()
        .unwrap_or_default();
    assert!(html.contains(&pill(&carol_ghost)), "{mention}");
    assert_eq!(mentioned(&mention), [carol_ghost.as_str()]);
    assert_eq!(
        user.profile(&bob_ghost).await?["displayname"],
        "Bob Example"
    );
    // Both other members got it: the sender key reached each device.
    received(&carol_client, "Carol to see Bob's message", |m| {
        (m.chat == group && m.text().is_some_and(|t| t.ends_with("brings the cake"))).then_some(())
    })
    .await?;

    // A pill from Matrix is a WhatsApp mention of the right account, in the group.
    let html = format!(
        "<a href=\"{}\">Bob Example</a> sounds good",
        pill(&bob_ghost)
    );
    let answer = json!({"msgtype": "m.text", "body": "Bob Example sounds good", "format": "org.matrix.custom.html", "formatted_body": html});
    user.send_event(&portal, "m.room.message", answer).await?;
    for (client, who) in [(&bob_client, "Bob"), (&carol_client, "Carol")] {
        let got = received(client, &format!("{who} to get Alice's answer"), |m| {
            (m.chat == group
                && m.from == alice
                && m.text() == Some(&*format!("@{bob} sounds good")))
            .then(|| m.mentions())
        })
        .await?;
        assert_eq!(got, [format!("{bob}@s.whatsapp.net")], "{who}");
    }

    // A mention in a DM is a pill too.
    bob_client
        .send_mentioning(&alice, &format!("did you ask @{carol}?"), &[&carol])
        .await?;
    let dm = user
        .wait_for_bridged_room(&format!("whatsapp://{alice}/{bob}"), WAIT)
        .await?;
    let asked = user
        .wait_for_event(&dm, |e| body(e) == "did you ask Carol?", WAIT)
        .await?;
    let html = asked["content"]["formatted_body"]
        .as_str()
        .unwrap_or_default();
    assert!(html.contains(&pill(&carol_ghost)), "{asked}");
    bob_client.stop().await;
    carol_client.stop().await;
    Ok(())
}
