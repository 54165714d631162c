//! Media between a Matrix user and a WhatsApp contact, end to end, through WhatsApp's media
//! encryption: Synapse, the `bridge-whatsapp` process, the simulator's media host (named by
//! `media_conn`, on 127.0.0.1) and the contact as a real whatsapp-rust client. An image, a
//! voice note and a document each way arrive with identical bytes; the receiving real
//! client (or the bridge's) decrypts and checks them (HKDF-expanded media keys, AES-CBC, the
//! truncated HMAC-SHA256, both file hashes), and the host only ever held ciphertext.

use bridge_tests::whatsapp_sim::{Contact, Received, SendMedia, WhatsappSim};
use bridge_tests::TestUser;
use serde_json::{json, Value};

use super::messages::received;
use super::synapse::{linked_user, run_scenario, WhatsappBridge};
use super::{random_phone, WAIT};
use crate::env::body;

#[tokio::test]
async fn whatsapp_images_voice_notes_and_documents_flow_both_ways_with_media_encryption(
) -> anyhow::Result<()> {
    run_scenario(scenario).await
}

/// Bytes no two test files share, `len` long.
fn file_bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    bytes.extend((0..len).map(|i| u8::try_from(i % 251).unwrap_or_default()));
    bytes
}

/// Waits for a media event of the ghost with `msgtype` and returns it with its file.
async fn media_event(
    user: &TestUser,
    room: &str,
    sender: &str,
    msgtype: &str,
) -> anyhow::Result<(Value, Vec<u8>)> {
    let event = user
        .wait_for_event(
            room,
            |e| e["sender"] == sender && e["content"]["msgtype"] == msgtype,
            WAIT,
        )
        .await?;
    let url = event["content"]["url"].as_str().unwrap_or_default();
    let bytes = user.download_media(url).await?;
    Ok((event, bytes))
}

/// Sends a Matrix file event with `content` (its `url` filled in with `data` uploaded).
async fn send_file(
    user: &TestUser,
    room: &str,
    mime: &str,
    data: &[u8],
    mut content: Value,
) -> anyhow::Result<()> {
    let mxc = user.upload_media(mime, data.to_vec()).await?;
    content["url"] = json!(mxc);
    content["info"] = json!({"mimetype": mime, "size": data.len()});
    user.send_event(room, "m.room.message", content).await?;
    Ok(())
}

/// Waits until the contact received a message that `want` accepts, then downloads and
/// decrypts its attachment as the WhatsApp app would.
async fn download(
    contact: &Contact,
    what: &str,
    want: impl Fn(&Received) -> bool,
) -> anyhow::Result<(Received, Vec<u8>)> {
    let message = received(contact, what, |m| want(m).then(|| m.clone())).await?;
    let bytes = contact.download(&message).await?;
    Ok((message, bytes))
}

async fn scenario(sim: &WhatsappSim, bridge: &mut WhatsappBridge) -> anyhow::Result<()> {
    let (alice, bob) = (random_phone(), random_phone());
    let (user, _) = linked_user(sim, bridge, &alice).await?;
    let contact = sim.contact(&bob, "Bob Example", WAIT).await?;
    let ghost = format!("@whatsapp_{bob}:test.localhost");

    // WhatsApp → Matrix: an image with a caption, a voice note, a document.
    let image = file_bytes("\u{89}PNG cat", 40_000);
    let image_mime = "image/png";
    let caption = "our cat";
    contact
        .send_media(
            &alice,
            SendMedia::Image {
                mime: image_mime,
                caption,
            },
            &image,
        )
        .await?;
    let portal = user
        .wait_for_bridged_room(&format!("whatsapp://{alice}/{bob}"), WAIT)
        .await?;
    let (event, bytes) = media_event(&user, &portal, &ghost, "m.image").await?;
    assert!(bytes == image, "the image changed on the way");
    assert_eq!(body(&event), caption);
    assert_eq!(event["content"]["info"]["mimetype"], image_mime);
    let voice = file_bytes("OggS voice", 12_000);
    contact
        .send_media(&alice, SendMedia::Voice { seconds: 3 }, &voice)
        .await?;
    let (event, bytes) = media_event(&user, &portal, &ghost, "m.audio").await?;
    assert!(bytes == voice, "the voice note changed on the way");
    assert!(
        event["content"]["org.matrix.msc3245.voice"].is_object(),
        "{event}"
    );
    assert_eq!(event["content"]["info"]["duration"], 3000);
    let document = file_bytes("%PDF-1.7 plans", 70_000);
    contact
        .send_media(
            &alice,
            SendMedia::Document {
                mime: "application/pdf",
                file_name: "plans.pdf",
            },
            &document,
        )
        .await?;
    let (event, bytes) = media_event(&user, &portal, &ghost, "m.file").await?;
    assert!(bytes == document, "the document changed on the way");
    assert_eq!(event["content"]["filename"], "plans.pdf");

    // Matrix → WhatsApp: the contact's client decrypts what the bridge encrypted.
    let photo = file_bytes("\u{ff}\u{d8} jpeg", 30_000);
    let content = json!({"msgtype": "m.image", "body": "sunset.jpg"});
    send_file(&user, &portal, "image/jpeg", &photo, content).await?;
    let (message, bytes) = download(&contact, "the image from Matrix", |m| {
        m.from == alice && m.message.image_message.is_set()
    })
    .await?;
    assert!(bytes == photo, "the image changed on the way");
    let sent = message.message.image_message.as_option();
    assert_eq!(sent.and_then(|i| i.mimetype.as_deref()), Some("image/jpeg"));
    let note = file_bytes("OggS note", 9_000);
    let content =
        json!({"msgtype": "m.audio", "body": "Voice message", "org.matrix.msc3245.voice": {}});
    send_file(&user, &portal, "audio/ogg", &note, content).await?;
    let (message, bytes) = download(&contact, "the voice note from Matrix", |m| {
        m.from == alice && m.message.audio_message.is_set()
    })
    .await?;
    assert!(bytes == note, "the voice note changed on the way");
    let sent = message.message.audio_message.as_option();
    assert_eq!(sent.and_then(|a| a.ptt), Some(true), "not a voice note");
    let report = file_bytes("report v2", 50_000);
    let content = json!({"msgtype": "m.file", "body": "report.txt", "filename": "report.txt"});
    send_file(&user, &portal, "text/plain", &report, content).await?;
    let (message, bytes) = download(&contact, "the document from Matrix", |m| {
        m.from == alice && m.message.document_message.is_set()
    })
    .await?;
    assert!(bytes == report, "the document changed on the way");
    let sent = message.message.document_message.as_option();
    assert_eq!(
        sent.and_then(|d| d.file_name.as_deref()),
        Some("report.txt")
    );

    // The media host held six files and never their plaintext.
    let uploads = sim.media_uploads();
    assert_eq!(
        uploads.len(),
        6,
        "{:?}",
        uploads.iter().map(|u| &u.kind).collect::<Vec<_>>()
    );
    for plain in [&image, &voice, &document, &photo, &note, &report] {
        assert!(
            uploads
                .iter()
                .all(|u| !u.encrypted.windows(64).any(|w| plain.starts_with(w))),
            "plaintext reached the media host"
        );
    }
    contact.stop().await;
    Ok(())
}
