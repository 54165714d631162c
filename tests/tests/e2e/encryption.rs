//! End-to-bridge encryption, end to end: a real Olm/Megolm client (matrix-nio) talks to the
//! bot in the encrypted DM Element X creates, against a real Synapse.

use std::time::Duration;

use bridge_tests::e2ee::E2eeClient;
use reqwest::Method;

use crate::env::Options;
use crate::messages::{ghost, log_on_error, login, portal, start_with, with_log, ME};

/// Generous: the first message of a session waits for key queries, claims and sharing.
const E2EE_WAIT: Duration = Duration::from_secs(45);

#[tokio::test]
async fn encrypted_dm_like_element_x_is_answered_encrypted_and_survives_a_restart() -> anyhow::Result<()> {
    let (mut env, _plain_management) = start_with(false, Options::default()).await?;
    let mut client = E2eeClient::login(&env.bridge.synapse, &env.user).await?;
    let bot = env.bridge.bot.clone();
    let env = &mut env;
    let result = async {
        // A DM created as Element X creates it: encrypted from the start, is_direct.
        let room = client.create_dm(&bot).await?;
        client.wait_joined(&room, &bot, E2EE_WAIT).await?;
        let greeting = client.wait_message(&room, &bot, "management room", E2EE_WAIT).await?;
        assert!(greeting.encrypted, "the bot greets in the encrypted room encrypted: {greeting:?}");

        client.send(&room, "help").await?;
        let help = client.wait_message(&room, &bot, "`login", E2EE_WAIT).await?;
        assert!(help.encrypted, "the answer to help is encrypted: {help:?}");

        // A login in the encrypted DM: the token is taken and redacted from the room.
        client.send(&room, "login token").await?;
        client.wait_message(&room, &bot, "token", E2EE_WAIT).await?;
        let token_event = client.send(&room, "token-me").await?;
        let done = client.wait_message(&room, &bot, "Logged in", E2EE_WAIT).await?;
        assert!(done.encrypted && done.body.contains("Me Myself"), "{done:?}");
        let path = format!("/_matrix/client/v3/rooms/{room}/event/{token_event}");
        let user = &env.user;
        bridge_tests::wait_until(E2EE_WAIT, "the token message to be redacted", async || {
            let (_, token) = user.call_raw(Method::GET, &path, None).await?;
            Ok((token["content"] == serde_json::json!({})).then_some(()))
        })
        .await?;
        assert!(env.bridge.log().find("token-me").is_none(), "the token never reaches the log");

        // The bridge is down while the next message is sent; restarted, it decrypts it with
        // the keys it kept, and still answers encrypted.
        let runs = env.bridge.runs();
        env.bridge.kill()?;
        client.send(&room, "ping").await?;
        env.bridge.spawn(&[])?;
        env.bridge.wait_running(runs).await?;
        let ping = client.wait_message(&room, &bot, "Me Myself", E2EE_WAIT).await?;
        assert!(ping.encrypted, "{ping:?}");
        client.send(&room, "version").await?;
        let version = client.wait_message(&room, &bot, "Test bridge", E2EE_WAIT).await?;
        assert!(version.encrypted, "{version:?}");
        // The message that waited out the crash was handled once: one answer, not two.
        assert_eq!(client.count(&room, &bot, "The bridge is running").await?, 1, "ping answered exactly once");
        assert!(
            !env.bridge.log().contains("replacing the device"),
            "the restarted bridge kept its device"
        );
        anyhow::Ok(())
    }
    .await;
    log_on_error(&env.bridge, result)
}

#[tokio::test]
async fn with_encryption_off_an_encrypted_dm_is_told_so_never_silence() -> anyhow::Result<()> {
    let options = Options { config_edits: vec![("    allow: true".to_owned(), "    allow: false".to_owned())], ..Options::default() };
    let (env, _) = start_with(false, options).await?;
    let mut client = E2eeClient::login(&env.bridge.synapse, &env.user).await?;
    let bot = env.bridge.bot.clone();
    let result = async {
        let room = client.create_dm(&bot).await?;
        client.wait_joined(&room, &bot, E2EE_WAIT).await?;
        let notice = client.wait_message(&room, &bot, "encryption is turned off", E2EE_WAIT).await?;
        assert!(!notice.encrypted && notice.body.contains("bridge.encryption.allow"), "{notice:?}");
        client.send(&room, "help").await?;
        let again = client.wait_message(&room, &bot, "encryption is turned off", E2EE_WAIT).await?;
        assert!(!again.encrypted, "{again:?}");
        anyhow::Ok(())
    };
    with_log(&env.bridge, result).await
}

#[tokio::test]
async fn encrypted_portal_bridges_text_and_images_both_ways() -> anyhow::Result<()> {
    use bridge_core::network::events::MediaKind;
    use bridge_tests::testnet::{Action, ChatSpec, MediaSpec, MessageSpec, Sent};

    // `bridge.encryption.default`: new portals are created encrypted; `require`: messages
    // sent there unencrypted are refused.
    let edits = [("    default: false", "    default: true"), ("    require: false", "    require: true")];
    let options = Options { config_edits: edits.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect(), ..Options::default() };
    let (env, management) = start_with(false, options).await?;
    login(&env, &management).await?;
    let mut client = E2eeClient::login(&env.bridge.synapse, &env.user).await?;
    let result = async {
        let (net, user) = (&env.net, &env.user);
        net.add_user("bob", "Bob Builder");
        net.add_chat(ChatSpec::direct("d1", ME, "bob"));
        let bob = ghost("bob");
        net.push_message("d1", "bob", MessageSpec::text("hello, encrypted"))?;
        let room = portal(user, "d1", ME).await?;
        let encryption = user.room_state(&room, "m.room.encryption", "").await?.unwrap_or_default();
        assert_eq!(encryption["algorithm"], "m.megolm.v1.aes-sha2", "the portal is encrypted from the start");

        // Remote → Matrix: the ghost's message is encrypted (by the bot's device) and decrypts.
        let hello = client.wait_message(&room, &bob, "hello, encrypted", E2EE_WAIT).await?;
        assert!(hello.encrypted, "{hello:?}");
        let stored = user.messages(&room, 50).await?;
        let from_bob = |kind: &str| stored.iter().filter(|e| e["sender"] == bob.as_str() && e["type"] == kind).count();
        assert!(
            from_bob("m.room.message") == 0 && from_bob("m.room.encrypted") >= 1,
            "the homeserver holds only ciphertext of the ghost's messages"
        );

        // Matrix → remote: an encrypted message reaches the network as text.
        client.send(&room, "hi bob, from an encrypted room").await?;
        let sent = net
            .wait_action(E2EE_WAIT, |a| matches!(a, Action::Send { content: Sent::Text { body, .. }, .. } if body == "hi bob, from an encrypted room"))
            .await?;
        assert!(matches!(sent, Action::Send { chat, .. } if chat == "d1"));

        // A message sent unencrypted into the encrypted portal is refused, and the sender told.
        user.send_text(&room, "a plaintext secret").await?;
        let refused = client.wait_message(&room, &env.bridge.bot, "requires encrypted messages", E2EE_WAIT).await?;
        assert!(refused.encrypted && refused.body.contains("not bridged"), "{refused:?}");

        // An image each way, encrypted, with identical bytes.
        let png = vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3, 4, 5, 6, 7];
        let image = MediaSpec { kind: MediaKind::Image, filename: "cat.png".into(), mime: "image/png".into(), bytes: png.clone() };
        net.push_message("d1", "bob", MessageSpec { media: Some(image), ..MessageSpec::default() })?;
        let seen = client.wait_image(&room, &bob, E2EE_WAIT).await?;
        assert!(seen.encrypted && seen.file_encrypted, "the image and its file are encrypted: {seen:?}");
        assert_eq!(seen.data, png);

        let photo = b"\xff\xd8\xff\xe0 a jpeg from matrix".to_vec();
        client.send_image(&room, &photo, "photo.jpg", "image/jpeg").await?;
        let action = net.wait_action(E2EE_WAIT, |a| matches!(a, Action::Send { content: Sent::Media { .. }, .. })).await?;
        match action {
            Action::Send { content: Sent::Media { kind, data, filename, .. }, .. } => {
                assert_eq!((kind, data, filename.as_str()), (MediaKind::Image, photo, "photo.jpg"));
            }
            other => anyhow::bail!("unexpected {other:?}"),
        }
        let leaked = net.actions().into_iter().any(|a| matches!(a, Action::Send { content: Sent::Text { body, .. }, .. } if body.contains("plaintext secret")));
        assert!(!leaked, "the refused plaintext message never reached the network");
        anyhow::Ok(())
    };
    with_log(&env.bridge, result).await
}

/// An event whose room key never arrives: the sender gets one notice after
/// `undecryptable_notice_secs`, and the event stays held across a restart without a second
/// notice.
#[tokio::test]
async fn an_undecryptable_message_gets_one_notice_even_across_a_restart() -> anyhow::Result<()> {
    let options = Options {
        config_edits: vec![("undecryptable_notice_secs: 30".to_owned(), "undecryptable_notice_secs: 2".to_owned())],
        ..Options::default()
    };
    let (mut env, _) = start_with(false, options).await?;
    let (mut client, room) = encrypted_dm(&env).await?;
    let bot = env.bridge.bot.clone();
    let env = &mut env;
    let result = async {
        // A Megolm event of a session the bot never gets the key of (as when a client fails
        // to share it).
        let content = client.undecryptable_content(&room, "lost in transit").await?;
        let held = env.user.send_event(&room, "m.room.encrypted", content).await?;
        let notice = client.wait_message(&room, &bot, "could not decrypt your message", E2EE_WAIT).await?;
        assert!(notice.encrypted, "{notice:?}");
        let told = "told the sender that an event could not be decrypted";
        env.bridge.wait_log_count(told, 1).await?;

        // Restarted, the bridge holds the event again (still not done) and its notice is
        // not repeated: it reuses the transaction ID of the first.
        let runs = env.bridge.runs();
        env.bridge.kill()?;
        env.bridge.spawn(&[])?;
        env.bridge.wait_running(runs).await?;
        env.bridge.wait_log_count(told, 2).await?;
        client.send(&room, "version").await?;
        client.wait_message(&room, &bot, "Test bridge", E2EE_WAIT).await?;
        assert_eq!(client.count(&room, &bot, "could not decrypt your message").await?, 1, "one notice, not one per start");
        assert!(env.bridge.log().contains(&held), "the held event is named in the log");
        anyhow::Ok(())
    }
    .await;
    log_on_error(&env.bridge, result)
}

/// The crypto store is lost (a database restored without it): the bridge makes a new
/// device, deletes the old one, and the encrypted DM keeps working.
#[tokio::test]
async fn a_lost_crypto_store_is_replaced_by_a_new_device_and_the_dm_keeps_working() -> anyhow::Result<()> {
    let (mut env, _) = start_with(false, Options::default()).await?;
    let (mut client, room) = encrypted_dm(&env).await?;
    let bot = env.bridge.bot.clone();
    let env = &mut env;
    let result = async {
        let old_devices = bot_devices(env).await?;
        assert_eq!(old_devices.len(), 1, "{old_devices:?}");

        env.bridge.kill()?;
        let db = env.bridge.dir.path().join("test.db");
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display())).await?;
        let deleted = sqlx::query("DELETE FROM crypto_store").execute(&pool).await?.rows_affected();
        pool.close().await;
        assert!(deleted > 0, "the store had crypto rows");
        env.bridge.run(&[]).await?;

        let new_devices = bot_devices(env).await?;
        assert_eq!(new_devices.len(), 1, "the old device is deleted: {new_devices:?}");
        assert_ne!(new_devices, old_devices, "a new device replaced the old one");
        client.send(&room, "version").await?;
        let answer = client.wait_message(&room, &bot, "Test bridge", E2EE_WAIT).await?;
        assert!(answer.encrypted, "{answer:?}");
        anyhow::Ok(())
    }
    .await;
    log_on_error(&env.bridge, result)
}

/// The bot's devices as the homeserver lists them to other users (a key query).
async fn bot_devices(env: &crate::messages::Env) -> anyhow::Result<Vec<String>> {
    let body = serde_json::json!({ "device_keys": { env.bridge.bot.as_str(): [] } });
    let keys = env.user.call(Method::POST, "/_matrix/client/v3/keys/query", Some(&body)).await?;
    let mut devices: Vec<String> = keys["device_keys"][env.bridge.bot.as_str()].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    devices.sort();
    Ok(devices)
}

/// An encrypted DM with the bot, created as Element X creates it, once the bot greeted in it.
async fn encrypted_dm(env: &crate::messages::Env) -> anyhow::Result<(E2eeClient, String)> {
    let mut client = E2eeClient::login(&env.bridge.synapse, &env.user).await?;
    let bot = &env.bridge.bot;
    let room = client.create_dm(bot).await?;
    client.wait_joined(&room, bot, E2EE_WAIT).await?;
    client.wait_message(&room, bot, "management room", E2EE_WAIT).await?;
    Ok((client, room))
}
