//! End-to-end tests of `bridge_core::matrix` (the appservice's client and intents) against a
//! real Synapse: what a ghost or the bot does is checked from outside, by a real user.
//!
//! Run with `cargo test -p bridge-tests --test e2e matrix::` (needs the Synapse venv, see
//! `scripts/test`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bridge_core::matrix::{CreateRoomOptions, MatrixClient, MatrixError};
use bridge_tests::{free_port, random_localpart, registration_yaml, Synapse, SynapseOptions};
use ruma::{
    events::{
        room::{message::RoomMessageEventContent, topic::RoomTopicEventContent},
        StateEventType,
    },
    int,
    room::RoomType,
    serde::Raw,
    MilliSecondsSinceUnixEpoch, OwnedMxcUri, OwnedServerName, OwnedUserId, TransactionId, UInt,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TIMEOUT: Duration = Duration::from_secs(30);
const APPSERVICE_ID: &str = "mxtest";
const BOT: &str = "mxtestbot";

/// A Synapse with one appservice registration whose `url` is `127.0.0.1:as_port`.
struct Setup {
    synapse: Synapse,
    as_token: String,
    as_port: u16,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let as_token = random_localpart("as");
        let as_port = free_port()?;
        let registration: PathBuf = dir.path().join("registration.yaml");
        let url = format!("http://127.0.0.1:{as_port}");
        std::fs::write(
            &registration,
            registration_yaml(APPSERVICE_ID, Some(&url), &as_token, BOT, "@mxtest_.*:test\\.localhost", true),
        )?;
        let synapse = Synapse::start(SynapseOptions {
            appservice_files: vec![registration],
            ..SynapseOptions::default()
        })
        .await?;
        Ok(Self {
            synapse,
            as_token,
            as_port,
            _dir: dir,
        })
    }

    fn client(&self) -> anyhow::Result<MatrixClient> {
        let server_name: OwnedServerName = self.synapse.server_name().try_into()?;
        Ok(MatrixClient::new(
            self.synapse.url().parse()?,
            server_name,
            self.as_token.clone(),
            BOT,
        )?)
    }

    fn ghost_id(&self) -> anyhow::Result<OwnedUserId> {
        let localpart = format!("mxtest_{}", random_localpart("ghost"));
        Ok(self.synapse.user_id(&localpart).try_into()?)
    }
}

#[tokio::test]
async fn ghosts_and_the_bot_act_in_rooms() -> anyhow::Result<()> {
    let setup = Setup::start().await?;
    let client = setup.client()?;
    let alice = setup
        .synapse
        .register_user(&random_localpart("alice"), false)
        .await?;

    let versions = client.versions().await?;
    assert!(!versions.versions.is_empty());
    assert_eq!(client.whoami().await?, client.bot());

    // Registration: fresh, cached, `M_USER_IN_USE` through another client, and refused
    // outside the namespace.
    let ghost_id = setup.ghost_id()?;
    let ghost = client.intent(ghost_id.clone());
    ghost.ensure_registered().await?;
    ghost.ensure_registered().await?;
    setup
        .client()?
        .intent(ghost_id.clone())
        .ensure_registered()
        .await?;
    assert_eq!(ghost.whoami().await?, ghost_id);
    let outsider = client.intent(
        setup
            .synapse
            .user_id(&random_localpart("outsider"))
            .try_into()?,
    );
    let err = outsider
        .ensure_registered()
        .await
        .expect_err("outside the namespace");
    assert_eq!(err.errcode(), Some("M_EXCLUSIVE"), "{err}");

    // A portal room: the bot creates it with bridge state and power levels, Alice joins.
    let bot = client.bot_intent();
    let bridge_state = Raw::new(&json!({
        "type": "m.bridge",
        "state_key": "net.example://chat",
        "content": {"protocol": {"id": "example"}},
    }))?
    .cast_unchecked();
    let room = bot
        .create_room(CreateRoomOptions {
            name: Some("Portal".into()),
            topic: Some("first topic".into()),
            invite: vec![alice.user_id().try_into()?],
            power_level_overrides: [
                (client.bot().to_owned(), int!(100)),
                (ghost_id.clone(), int!(50)),
            ]
            .into(),
            initial_state: vec![bridge_state],
            ..Default::default()
        })
        .await?;
    assert_eq!(alice.wait_for_invite(&[], TIMEOUT).await?, room.as_str());
    alice.join(room.as_str()).await?;
    let levels = alice
        .room_state(room.as_str(), "m.room.power_levels", "")
        .await?
        .context("power levels")?;
    assert_eq!(levels["users"][ghost_id.as_str()], 50);
    let bridge = bot
        .get_state_event(&room, "m.bridge".into(), "net.example://chat")
        .await?;
    let bridge: Value = bridge
        .context("m.bridge state")?
        .deserialize_as_unchecked()?;
    assert_eq!(bridge["protocol"]["id"], "example");
    assert!(bot
        .get_state_event(&room, "m.bridge".into(), "missing")
        .await?
        .is_none());

    // The room is invite-only: the ghost gets in through the bot's invite.
    ghost.ensure_joined(&room).await?;
    alice
        .wait_for_membership(room.as_str(), ghost_id.as_str(), "join", TIMEOUT)
        .await?;
    let members = bot.room_members(&room).await?;
    for member in [client.bot().as_str(), ghost_id.as_str(), alice.user_id()] {
        assert!(
            members.keys().any(|user| user == member),
            "{member} not in {members:?}"
        );
    }

    // Profile and media.
    ghost.set_display_name("Ghost (Example)").await?;
    let image: &'static [u8] = b"\x89PNG\r\n\x1a\nnot really a png";
    let mxc = ghost.upload(image, "image/png", Some("avatar.png")).await?;
    ghost.set_avatar_url(Some(&mxc)).await?;
    let profile = alice.profile(ghost_id.as_str()).await?;
    assert_eq!(profile["displayname"], "Ghost (Example)");
    assert_eq!(profile["avatar_url"], mxc.as_str());
    assert_eq!(
        bot.get_profile(&ghost_id).await?.avatar_url.as_deref(),
        Some(&*mxc)
    );
    ghost.set_avatar_url(None).await?;
    assert_eq!(bot.get_profile(&ghost_id).await?.avatar_url, None);
    assert_eq!(alice.download_media(mxc.as_str()).await?, image);
    let (data, content_type) = bot.download(&mxc).await?;
    assert_eq!((data.as_ref(), content_type.as_str()), (image, "image/png"));
    let missing: OwnedMxcUri =
        format!("mxc://{}/doesnotexist", setup.synapse.server_name()).into();
    let err = bot.download(&missing).await.expect_err("no such media");
    assert_eq!(err.errcode(), Some("M_NOT_FOUND"), "{err}");

    // A message with the remote timestamp, a reaction and its redaction.
    let ts = MilliSecondsSinceUnixEpoch(UInt::new(1_600_000_000_000).context("ts")?);
    let hello = ghost
        .send_message_event(
            &room,
            RoomMessageEventContent::text_plain("hello from remote"),
            Some(ts),
        )
        .await?;
    let seen = alice
        .wait_for_event(room.as_str(), |e| e["event_id"] == hello.as_str(), TIMEOUT)
        .await?;
    assert_eq!(seen["sender"], ghost_id.as_str());
    assert_eq!(seen["content"]["body"], "hello from remote");
    assert_eq!(seen["origin_server_ts"], 1_600_000_000_000_u64);
    let reaction = bot.react(&room, &hello, "👍").await?;
    let seen = alice
        .wait_for_event(
            room.as_str(),
            |e| e["event_id"] == reaction.as_str(),
            TIMEOUT,
        )
        .await?;
    assert_eq!(seen["content"]["m.relates_to"]["key"], "👍");
    assert_eq!(seen["content"]["m.relates_to"]["event_id"], hello.as_str());
    bot.redact(&room, &reaction, Some("undo")).await?;
    alice
        .wait_for_event(
            room.as_str(),
            |e| e["event_id"] == reaction.as_str() && e["content"] == json!({}),
            TIMEOUT,
        )
        .await?;
    ghost.typing(&room, true, Duration::from_secs(5)).await?;
    ghost.typing(&room, false, Duration::ZERO).await?;
    ghost.mark_read(&room, &hello).await?;

    // State.
    bot.send_state_event(&room, RoomTopicEventContent::new("second topic".into()), "")
        .await?;
    let topic = alice
        .room_state(room.as_str(), "m.room.topic", "")
        .await?
        .context("topic")?;
    assert_eq!(topic["topic"], "second topic");
    let topic = bot
        .get_state_event(&room, StateEventType::RoomTopic, "")
        .await?
        .context("topic")?;
    assert_eq!(
        topic.deserialize_as_unchecked::<Value>()?["topic"],
        "second topic"
    );

    // Leaving forgets the membership: the next message joins again through an invite.
    ghost.leave(&room, Some("bye")).await?;
    assert!(!client.is_known_joined(&ghost_id, &room));
    alice
        .wait_for_membership(room.as_str(), ghost_id.as_str(), "leave", TIMEOUT)
        .await?;
    let back = ghost
        .send_message_event(&room, RoomMessageEventContent::text_plain("back"), None)
        .await?;
    alice
        .wait_for_event(room.as_str(), |e| e["event_id"] == back.as_str(), TIMEOUT)
        .await?;

    // A kick too; joining without an invite is then refused.
    bot.kick(&room, &ghost_id, Some("test")).await?;
    assert!(!client.is_known_joined(&ghost_id, &room));
    let err = ghost.join(&room).await.expect_err("not invited");
    assert_eq!(err.errcode(), Some("M_FORBIDDEN"), "{err}");

    // Spaces.
    let space = bot
        .create_room(CreateRoomOptions {
            room_type: Some(RoomType::Space),
            ..Default::default()
        })
        .await?;
    let create = bot
        .get_state_event(&space, StateEventType::RoomCreate, "")
        .await?
        .context("create")?;
    assert_eq!(
        create.deserialize_as_unchecked::<Value>()?["type"],
        "m.space"
    );
    Ok(())
}

#[tokio::test]
async fn ping_tells_whether_the_homeserver_reaches_the_bridge() -> anyhow::Result<()> {
    let setup = Setup::start().await?;
    let client = setup.client()?;

    // Nothing listens at the registration's url yet.
    let err = client
        .appservice_ping(APPSERVICE_ID, None)
        .await
        .expect_err("unreachable");
    assert!(
        matches!(err, MatrixError::AppserviceUnreachable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("cannot reach the bridge"), "{err}");

    // A bare listener answering `200 {}` stands in for the bridge's appservice server.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", setup.as_port)).await?;
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0_u8; 16 * 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                      content-length: 2\r\nconnection: close\r\n\r\n{}",
                )
                .await;
        }
    });
    let round_trip = client
        .appservice_ping(APPSERVICE_ID, Some(TransactionId::new()))
        .await?;
    assert!(round_trip < TIMEOUT);
    server.abort();
    Ok(())
}
