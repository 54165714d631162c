//! The `bridge-wechat` process against Synapse and the real npm puppet service, for files:
//! video, voice and emoticons both ways, files of several MB both ways (through the
//! service's `Upload` and `Download` streams), avatars given as URLs the bridge downloads,
//! and a login on the user's own puppet service (endpoint and token as the first step).

use bridge_tests::wechaty::{ScanStatus, To, WechatyPuppet};
use bridge_tests::{free_port, random_localpart, wait_until, TestUser};
use serde_json::json;

use super::synapse::{ghost, logged, portal, session, wait_connected, wait_from, Session, BOT};
use super::{WechatBridge, WAIT};
use crate::env::{body, tail};

/// Sends a media event of `msgtype` with `data` as `name` from Matrix; returns its event ID.
async fn send_media(user: &TestUser, room: &str, msgtype: &str, name: &str, mime: &str, data: &[u8]) -> anyhow::Result<String> {
    let mxc = user.upload_media(mime, data.to_vec()).await?;
    let content = json!({"msgtype": msgtype, "body": name, "url": mxc, "info": {"mimetype": mime, "size": data.len()}});
    user.send_event(room, "m.room.message", content).await
}

/// Waits until the puppet received a file named `name`; returns its bytes and box type.
async fn wait_file(puppet: &WechatyPuppet, name: &str) -> anyhow::Result<(Vec<u8>, u8)> {
    use base64::Engine as _;
    let file = wait_until(WAIT, &format!("the puppet to receive {name}"), async || {
        Ok(puppet.sent().await?.into_iter().filter_map(|s| s.file).find(|f| f.name == name))
    })
    .await?;
    Ok((base64::engine::general_purpose::STANDARD.decode(&file.base64)?, file.box_type))
}

/// Bytes that look like nothing in particular, `len` long.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn wechat_video_voice_and_emoticons_both_ways() -> anyhow::Result<()> {
    let s = session().await?;
    let result = video_voice_emoticons(&s).await;
    logged(&s, result).await
}

async fn video_voice_emoticons(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, user, me, .. } = s;
    let zhang = puppet.create_contact("张三", None).await?;
    let mut video = b"\0\0\0\x18ftypmp42".to_vec();
    video.extend(noise(40_000, 1));
    let voice = b"#!SILK_V3 voice message".to_vec();
    let sticker = b"GIF89a sticker".to_vec();

    // WeChat → Matrix: a video, a voice message and an emoticon (shown as an image).
    puppet.send_file(&zhang, To::Me, "视频.mp4", &video).await?;
    let room = portal(user, &zhang, me).await?;
    puppet.send_file(&zhang, To::Me, "语音.silk", &voice).await?;
    puppet.send_file_typed(&zhang, To::Me, "表情.gif", &sticker, 5).await?;
    for (name, data, msgtype) in [("视频.mp4", &video, "m.video"), ("语音.silk", &voice, "m.audio"), ("表情.gif", &sticker, "m.image")] {
        let event = wait_from(user, &room, &ghost(&zhang), |e| e["content"]["msgtype"] == msgtype).await?;
        assert_eq!(body(&event), name, "{event}");
        let mxc = event["content"]["url"].as_str().unwrap_or_default();
        assert_eq!(&user.download_media(mxc).await?, data, "{name}: {event}");
    }

    // Matrix → WeChat: a video and a voice clip reach the puppet intact.
    let clip = noise(30_000, 2);
    let ogg = b"OggS voice from matrix".to_vec();
    send_media(user, &room, "m.video", "clip.mp4", "video/mp4", &clip).await?;
    send_media(user, &room, "m.audio", "voice.ogg", "audio/ogg", &ogg).await?;
    assert_eq!(wait_file(puppet, "clip.mp4").await?.0, clip);
    assert_eq!(wait_file(puppet, "voice.ogg").await?.0, ogg);
    let sent = puppet.sent().await?;
    assert!(sent.iter().all(|s| s.conversation_id == zhang), "{sent:?}");
    Ok(())
}

#[tokio::test]
async fn wechat_large_files_go_through_upload_and_download() -> anyhow::Result<()> {
    let s = session().await?;
    let result = large_files(&s).await;
    logged(&s, result).await
}

async fn large_files(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, bridge, user, me, .. } = s;
    let zhang = puppet.create_contact("张三", None).await?;

    // WeChat → Matrix: the service hands a large file out by UUID; the bridge reads it
    // with `Download`.
    let big = noise(3 * 1024 * 1024 + 17, 3);
    puppet.send_file(&zhang, To::Me, "资料.zip", &big).await?;
    let room = portal(user, &zhang, me).await?;
    let event = wait_from(user, &room, &ghost(&zhang), |e| e["content"]["msgtype"] == "m.file").await?;
    assert_eq!(body(&event), "资料.zip");
    let mxc = event["content"]["url"].as_str().unwrap_or_default();
    assert!(user.download_media(mxc).await? == big, "the large file changed on the way: {event}");
    assert!(bridge.log().contains("reading a file stored on the puppet service"), "no Download");

    // Matrix → WeChat: a large file is stored on the service with `Upload` and sent as a
    // UUID file box; a small one goes inline.
    let upload = noise(4 * 1024 * 1024 + 5, 4);
    send_media(user, &room, "m.file", "备份.bin", "application/octet-stream", &upload).await?;
    let (data, box_type) = wait_file(puppet, "备份.bin").await?;
    assert!(data == upload, "the large file changed on the way ({} bytes arrived)", data.len());
    assert_eq!(box_type, 7, "not sent as a UUID file box");
    send_media(user, &room, "m.file", "小.txt", "text/plain", b"small").await?;
    assert_eq!(wait_file(puppet, "小.txt").await?, (b"small".to_vec(), 1));
    Ok(())
}

/// Serves `files` (path → bytes) over HTTP on a free port; returns its base URL.
async fn serve(files: Vec<(&'static str, Vec<u8>)>) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let mut router = axum::Router::new();
    for (path, data) in files {
        router = router.route(path, axum::routing::get(move || async move { ([("content-type", "image/png")], data) }));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((format!("http://{address}"), task))
}

#[tokio::test]
async fn wechat_avatars_given_as_urls_are_downloaded() -> anyhow::Result<()> {
    let s = session().await?;
    let result = url_avatars(&s).await;
    logged(&s, result).await
}

async fn url_avatars(s: &Session) -> anyhow::Result<()> {
    let Session { puppet, user, me, .. } = s;
    let face = b"\x89PNG\r\n\x1a\nface of wang, served over http".to_vec();
    let group_face = b"\x89PNG\r\n\x1a\ngroup face, served over http".to_vec();
    let (base, server) = serve(vec![("/wang.png", face.clone()), ("/group.png", group_face.clone())]).await?;
    let wang = puppet.create_contact("王五", None).await?;
    let group = puppet.create_room("同学群", &[me, &wang], &[]).await?;
    puppet.set_avatar_url(&wang, "wang.png", &format!("{base}/wang.png")).await?;
    puppet.set_avatar_url(&group, "group.png", &format!("{base}/group.png")).await?;

    puppet.send_text(&wang, To::Room(&group), "大家好", &[]).await?;
    let room = portal(user, &group, "").await?;
    wait_from(user, &room, &ghost(&wang), |e| body(e) == "大家好").await?;
    let mxc = wait_until(WAIT, "the ghost's avatar", async || {
        Ok(user.profile(&ghost(&wang)).await?["avatar_url"].as_str().map(str::to_owned))
    })
    .await?;
    assert_eq!(user.download_media(&mxc).await?, face);
    let avatar = wait_until(WAIT, "the room's avatar", async || {
        Ok(user.room_state(&room, "m.room.avatar", "").await?.and_then(|a| a["url"].as_str().map(str::to_owned)))
    })
    .await?;
    assert_eq!(user.download_media(&avatar).await?, group_face);
    server.abort();
    Ok(())
}

#[tokio::test]
async fn wechat_login_on_the_users_own_puppet_service() -> anyhow::Result<()> {
    let puppet = WechatyPuppet::start().await?;
    // The bridge's own service is nowhere: only the user's endpoint and token can work.
    let own = (format!("endpoint: {}", puppet.endpoint()), format!("token: \"{}\"", puppet.token()));
    let nowhere = format!("endpoint: http://127.0.0.1:{}", free_port()?);
    let edits = [
        (own.0.as_str(), nowhere.as_str()),
        (own.1.as_str(), "token: \"not-this-one\""),
        ("allow_user_endpoint: false", "allow_user_endpoint: true"),
    ];
    let mut bridge = WechatBridge::start_with(&puppet, &edits).await?;
    let result = own_endpoint(&puppet, &mut bridge).await;
    if result.is_err() {
        eprintln!("bridge log:\n{}\npuppet log:\n{}", tail(&bridge.log(), 150), puppet.log_tail(40));
    }
    result
}

async fn own_endpoint(puppet: &WechatyPuppet, bridge: &mut WechatBridge) -> anyhow::Result<()> {
    let me = puppet.create_contact("自己的服务", None).await?;
    let user = bridge.synapse.register_user(&random_localpart("alice"), false).await?;
    let management = user.create_dm(BOT).await?;
    user.wait_for_membership(&management, BOT, "join", WAIT).await?;
    user.send_text(&management, "login qr").await?;
    wait_from(&user, &management, BOT, |e| body(e).contains("Please send your Endpoint")).await?;
    user.send_text(&management, &puppet.endpoint()).await?;
    wait_from(&user, &management, BOT, |e| body(e).contains("Please send your Token")).await?;
    let token_event = user.send_text(&management, puppet.token()).await?;
    puppet.wait_streaming(WAIT).await?;
    puppet.scan("https://login.weixin.qq.com/l/own", ScanStatus::Waiting).await?;
    wait_from(&user, &management, BOT, |e| e["content"]["msgtype"] == "m.image").await?;
    puppet.scan("", ScanStatus::Scanned).await?;
    wait_from(&user, &management, BOT, |e| body(e).contains("Scanned")).await?;
    puppet.login(&me).await?;
    wait_from(&user, &management, BOT, |e| body(e).contains("Logged in") && body(e).contains("自己的服务")).await?;
    // The token does not stay in the room.
    user.wait_for_event(&management, |e| e["type"] == "m.room.redaction" && e["redacts"] == token_event.as_str(), WAIT).await?;
    wait_connected(&user, &management).await?;

    // Messages flow through the user's service, also after a bridge restart.
    let zhang = puppet.create_contact("张三", None).await?;
    puppet.send_text(&zhang, To::Me, "通过自己的服务", &[]).await?;
    let room = portal(&user, &zhang, &me).await?;
    wait_from(&user, &room, &ghost(&zhang), |e| body(e) == "通过自己的服务").await?;
    bridge.kill()?;
    bridge.run().await?;
    puppet.wait_streaming(WAIT).await?;
    puppet.send_text(&zhang, To::Me, "重启以后", &[]).await?;
    wait_from(&user, &room, &ghost(&zhang), |e| body(e) == "重启以后").await?;
    Ok(())
}
