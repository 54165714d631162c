//! Double puppeting end to end: with a second appservice registration whose non-exclusive
//! namespace covers the homeserver's users, what the user sends from the network's own app
//! appears as sent by their real Matrix account, and none of it comes back to the network.

use bridge_tests::{random_localpart, registration_yaml, testnet::{Action, ChatSpec, MessageSpec}};
use serde_json::json;

use crate::env::{body, Options, WAIT};
use crate::messages::{event_id, ghost, login, portal, sent_id, start_with, wait_ephemeral, wait_message, with_log, Env, Syncer, ME};

/// The double-puppeting registration an operator adds to Synapse, with `as_token`.
fn registration(as_token: &str) -> String {
    registration_yaml("doublepuppet", None, as_token, &random_localpart("puppeteer"), "@.*:test\\.localhost", false)
}

#[tokio::test]
async fn own_messages_from_the_network_appear_as_the_real_user_and_do_not_echo() -> anyhow::Result<()> {
    let token = random_localpart("dptoken");
    let options = Options {
        extra_registrations: vec![registration(&token)],
        config_edits: vec![("    secrets: {}".to_owned(), format!("    secrets:\n      \"test.localhost\": \"as_token:{token}\""))],
        ..Options::default()
    };
    let (env, management) = start_with(false, options).await?;
    login(&env, &management).await?;
    with_log(&env.bridge, double_puppet(&env)).await
}

async fn double_puppet(env: &Env) -> anyhow::Result<()> {
    let (net, user, bridge) = (&env.net, &env.user, &env.bridge);
    let me = user.user_id().to_owned();
    assert!(bridge.log().contains("double puppeting is set up"), "the startup check accepted the token");
    net.add_user("bob", "Bob");
    net.add_chat(ChatSpec::direct("d1", ME, "bob"));
    let from_bob = net.push_message("d1", "bob", MessageSpec::text("hi from bob"))?;
    let room = portal(user, "d1", ME).await?;
    let bob_event = event_id(&wait_message(user, &room, &ghost("bob"), "hi from bob").await?);
    assert!(user.joined_members(&room).await?.contains(&me), "the double puppet joined the portal");

    // A message the user sent from the network's app: sent as them, at its original time.
    let mine = net.push_message("d1", ME, MessageSpec::text("from my phone"))?;
    let event = wait_message(user, &room, &me, "from my phone").await?;
    let original = net.history("d1").iter().find(|m| m.id == mine).map(|m| m.timestamp);
    assert_eq!(event["origin_server_ts"].as_i64(), original);
    assert_eq!(event["content"]["fi.mau.double_puppet_source"], "test");
    let my_event = event_id(&event);

    // Their edit, reaction (added and removed), read receipt and deletion: all as them.
    net.push_edit("d1", &mine, ME, "edited on my phone", None)?;
    let edit = wait_message(user, &room, &me, "* edited on my phone").await?;
    assert_eq!(edit["content"]["m.relates_to"], json!({"rel_type": "m.replace", "event_id": my_event}));
    net.push_reaction("d1", &from_bob, ME, "👍", true)?;
    let reaction = user.wait_for_event(&room, |e| e["type"] == "m.reaction" && e["sender"] == me.as_str(), WAIT).await?;
    assert_eq!(reaction["content"]["m.relates_to"], json!({"rel_type": "m.annotation", "event_id": bob_event, "key": "👍"}));
    net.push_reaction("d1", &from_bob, ME, "👍", false)?;
    let reaction_id = event_id(&reaction);
    user.wait_for_event(&room, |e| e["event_id"] == reaction_id.as_str() && e["unsigned"]["redacted_because"]["sender"] == me.as_str(), WAIT).await?;
    let mut syncer = Syncer::start(user).await?;
    net.push_own_read_receipt("d1", ME, &from_bob)?;
    wait_ephemeral(user, &mut syncer, &room, |e| e["type"] == "m.receipt" && e["content"][bob_event.as_str()]["m.read"][me.as_str()].is_object()).await?;
    net.push_delete("d1", &mine, ME)?;
    user.wait_for_event(&room, |e| e["event_id"] == my_event.as_str() && e["unsigned"]["redacted_because"]["sender"] == me.as_str(), WAIT).await?;

    // A message the user sends on Matrix still goes out; it is the barrier behind which
    // every echo of the above has been handled — and none reached the network.
    user.send_text(&room, "typed on matrix").await?;
    sent_id(net, "typed on matrix").await?;
    let actions = net.actions();
    let echoes: Vec<&Action> = actions
        .iter()
        .filter(|a| !matches!(a, Action::Send { content, .. } if content.body() == Some("typed on matrix")))
        .filter(|a| !matches!(a, Action::Typing { .. }))
        .collect();
    assert!(echoes.is_empty(), "echoes reached the network: {echoes:?}");
    let events = user.messages(&room, 100).await?;
    assert_eq!(events.iter().filter(|e| body(e) == "typed on matrix").count(), 1, "not bridged back either");
    Ok(())
}
