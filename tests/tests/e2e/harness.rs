//! Tests of the harness itself against a real Synapse: users talk in a room, a persistent
//! Synapse keeps its data across a restart, and Synapse loads an appservice registration.
//!
//! Run with `scripts/test harness`.

use std::time::Duration;

use anyhow::Context as _;
use bridge_tests::{free_port, random_localpart, registration_yaml, Synapse, SynapseOptions};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

fn is_text(event: &Value, body: &str) -> bool {
    event["type"] == "m.room.message" && event["content"]["body"] == body
}

#[tokio::test]
async fn two_users_talk_in_a_room() -> anyhow::Result<()> {
    let synapse = Synapse::start(SynapseOptions::default()).await?;
    let alice = synapse
        .register_user(&random_localpart("alice"), true)
        .await?;
    let bob = synapse
        .register_user(&random_localpart("bob"), false)
        .await?;
    assert_eq!(alice.whoami().await?, alice.user_id());
    assert!(alice.user_id().ends_with(":test.localhost"));

    let room = alice
        .create_room(json!({"preset": "private_chat", "name": "harness"}))
        .await?;
    alice.invite(&room, bob.user_id()).await?;
    let invited = bob.wait_for_invite(&[], TIMEOUT).await?;
    assert_eq!(invited, room);
    assert_eq!(bob.join(&room).await?, room);
    alice
        .wait_for_membership(&room, bob.user_id(), "join", TIMEOUT)
        .await?;
    let mut expected = vec![alice.user_id().to_owned(), bob.user_id().to_owned()];
    expected.sort();
    assert_eq!(alice.joined_members(&room).await?, expected);

    let event_id = alice.send_text(&room, "hello bob").await?;
    let seen = bob
        .wait_for_event(&room, |event| is_text(event, "hello bob"), TIMEOUT)
        .await?;
    assert_eq!(seen["event_id"], json!(event_id));
    assert_eq!(seen["sender"], json!(alice.user_id()));

    let redaction = alice.redact(&room, &event_id, Some("test")).await?;
    let redacted = bob
        .wait_for_event(
            &room,
            |event| event["event_id"] == json!(event_id) && event["content"] == json!({}),
            TIMEOUT,
        )
        .await?;
    assert_eq!(
        redacted["unsigned"]["redacted_because"]["event_id"],
        json!(redaction)
    );

    let name = bob.room_state(&room, "m.room.name", "").await?;
    assert_eq!(name.context("room name")?["name"], "harness");
    assert!(bob.room_state(&room, "m.room.topic", "").await?.is_none());

    bob.set_display_name("Bob B").await?;
    assert_eq!(alice.profile(bob.user_id()).await?["displayname"], "Bob B");

    let mxc = alice
        .upload_media("text/plain", b"file body".to_vec())
        .await?;
    assert_eq!(bob.download_media(&mxc).await?, b"file body");

    bob.leave(&room).await?;
    alice
        .wait_for_membership(&room, bob.user_id(), "leave", TIMEOUT)
        .await?;
    Ok(())
}

#[tokio::test]
async fn persistent_synapse_keeps_data_across_restart() -> anyhow::Result<()> {
    let mut synapse = Synapse::start(SynapseOptions {
        persistent: true,
        ..SynapseOptions::default()
    })
    .await?;
    let localpart = random_localpart("carol");
    let carol = synapse.register_user(&localpart, false).await?;
    let room = carol.create_room(json!({"preset": "private_chat"})).await?;
    let event_id = carol.send_text(&room, "before restart").await?;
    let port = synapse.port();

    synapse.restart().await?;
    assert!(synapse.is_running());
    assert_eq!(synapse.port(), port);

    // The old access token and the password both still work.
    assert_eq!(carol.whoami().await?, carol.user_id());
    let password = carol.password().context("password")?;
    let again = synapse.login(&localpart, password).await?;
    let seen = again
        .wait_for_event(&room, |event| is_text(event, "before restart"), TIMEOUT)
        .await?;
    assert_eq!(seen["event_id"], json!(event_id));

    synapse.stop().await?;
    assert!(!synapse.is_running());
    Ok(())
}

#[tokio::test]
async fn synapse_loads_an_appservice_registration() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let as_token = random_localpart("as");
    let registration = dir.path().join("registration.yaml");
    // Nobody listens on this port: Synapse only needs the registration to be valid.
    let unused_port = free_port()?;
    let url = format!("http://127.0.0.1:{unused_port}");
    std::fs::write(
        &registration,
        registration_yaml("harness", Some(&url), &as_token, "harnessbot", "@harness_.*:test\\.localhost", true),
    )?;
    let synapse = Synapse::start(SynapseOptions {
        appservice_files: vec![registration],
        ..SynapseOptions::default()
    })
    .await?;

    let bot = synapse.user_with_token(&synapse.user_id("harnessbot"), &as_token)?;
    assert_eq!(bot.whoami().await?, "@harnessbot:test.localhost");

    // A ghost in the namespace can be registered and acted as.
    let ghost_localpart = format!("harness_{}", random_localpart("ghost"));
    bot.call(
        reqwest::Method::POST,
        "/_matrix/client/v3/register",
        Some(&json!({
            "type": "m.login.application_service",
            "username": ghost_localpart,
            "inhibit_login": true,
        })),
    )
    .await?;
    let ghost = bot.impersonate(&synapse.user_id(&ghost_localpart));
    assert_eq!(ghost.whoami().await?, ghost.user_id());

    // The namespace is exclusive: ordinary users can't take names in it.
    let outsider = format!("harness_{}", random_localpart("user"));
    assert!(synapse.register_user(&outsider, false).await.is_err());
    Ok(())
}
