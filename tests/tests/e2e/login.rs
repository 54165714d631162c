//! Login flows end to end: the `bridge-test` bridge over the test network, against Synapse.
//! The management-room front end (prompts, redacted secrets, the QR image and its
//! refresh, `cancel`, `list-logins`, `logout`, permissions) and the provisioning API.

use bridge_tests::testnet::TestNet;
use bridge_tests::{random_localpart, wait_until, TestUser};
use serde_json::{json, Value};

use crate::env::{body, Options, TestBridge, WAIT};

/// A test network with the account `alice` (phone +15550001, password `hunter2`).
async fn network() -> anyhow::Result<TestNet> {
    let net = TestNet::start().await?;
    net.add_account("+15550001", "alice", "Alice", Some("hunter2"));
    Ok(net)
}

/// The bridge over `net`, with extra permission entries.
async fn bridge(net: &TestNet, permissions: Vec<(String, String)>, edits: Vec<(String, String)>) -> anyhow::Result<TestBridge> {
    let mut config_edits = vec![("server: \"\"".to_owned(), format!("server: \"{}\"", net.url()))];
    config_edits.extend(edits);
    TestBridge::start(Options { permissions, config_edits, ..Options::default() }).await
}

/// Sends `text` and returns the body of the bot's reply to it.
async fn say(bridge: &TestBridge, user: &TestUser, room: &str, text: &str) -> anyhow::Result<(String, String)> {
    let event_id = user.send_text(room, text).await?;
    let reply = bridge.wait_reply(user, room, &event_id).await?;
    Ok((event_id, body(&reply).to_owned()))
}

/// Waits until `event_id` shows as redacted (empty content) in the user's `/messages`.
pub(crate) async fn wait_redacted(user: &TestUser, room: &str, event_id: &str) -> anyhow::Result<()> {
    wait_until(WAIT, &format!("{event_id} to be redacted"), || async {
        let events = user.messages(room, 100).await?;
        let event = events.iter().find(|e| e["event_id"] == event_id);
        Ok(event
            .filter(|e| e["content"].as_object().is_some_and(|c| c.is_empty()))
            .map(|_| ()))
    })
    .await
}

fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in {text:?}");
}

#[tokio::test]
async fn password_login_reprompts_a_wrong_code_and_redacts_secrets() -> anyhow::Result<()> {
    let net = network().await?;
    let bridge = bridge(&net, Vec::new(), Vec::new()).await?;
    let user = bridge.user("pw").await?;
    let room = bridge.management_room(&user).await?;

    let (_, flows) = say(&bridge, &user, &room, "login").await?;
    for flow in ["`password`", "`qr`", "`token`"] {
        assert_contains(&flows, flow);
    }
    let (_, unknown) = say(&bridge, &user, &room, "login sms").await?;
    assert_contains(&unknown, "no login flow `sms`");

    let (_, prompt) = say(&bridge, &user, &room, "login password").await?;
    assert_contains(&prompt, "Phone number");
    let (phone, prompt) = say(&bridge, &user, &room, "+15550001").await?;
    assert_contains(&prompt, "Code");
    let (wrong, prompt) = say(&bridge, &user, &room, "00000").await?;
    assert_contains(&prompt, "Wrong code");
    assert_contains(&prompt, "Please send your Code");
    let (code, prompt) = say(&bridge, &user, &room, "12345").await?;
    assert_contains(&prompt, "Password");
    let (password, done) = say(&bridge, &user, &room, "hunter2").await?;
    assert_contains(&done, "Logged in as Alice");

    for secret in [&wrong, &code, &password] {
        wait_redacted(&user, &room, secret).await?;
    }
    let events = user.messages(&room, 100).await?;
    let phone_event = events.iter().find(|e| e["event_id"] == phone.as_str()).expect("phone message");
    assert_eq!(body(phone_event), "+15550001", "the phone number is not a secret");
    assert!(!bridge.log().contains("hunter2"), "the password reached the log");

    let (_, list) = say(&bridge, &user, &room, "list-logins").await?;
    assert_contains(&list, "Alice (`alice`)");
    let (_, out) = say(&bridge, &user, &room, "logout").await?;
    assert_eq!(out, "Logged out of Alice.");
    let (_, list) = say(&bridge, &user, &room, "list-logins").await?;
    assert_contains(&list, "not logged in");
    Ok(())
}

#[tokio::test]
async fn qr_login_sends_the_image_replaces_it_once_and_redacts_it() -> anyhow::Result<()> {
    let net = network().await?;
    let bridge = bridge(&net, Vec::new(), Vec::new()).await?;
    let user = bridge.user("qr").await?;
    let room = bridge.management_room(&user).await?;

    user.send_text(&room, "login qr").await?;
    let is_image = |e: &Value| e["sender"] == bridge.bot.as_str() && e["content"]["msgtype"] == "m.image";
    let image = user
        .wait_for_event(&room, |e| is_image(e) && e["content"]["m.relates_to"].is_null(), WAIT)
        .await?;
    let image_id = image["event_id"].as_str().unwrap_or_default().to_owned();
    let content = &image["content"];
    assert_contains(body(&image), "QR code");
    assert_eq!(content["info"]["mimetype"], "image/png");
    let url = content["url"].as_str().unwrap_or_default();
    let png = user.download_media(url).await?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(content["info"]["size"], png.len());
    assert!(content["info"]["w"].as_u64().unwrap_or(0) > 100);
    assert_eq!(net.pending_qr_codes(), ["testnet-qr-1"]);

    let (_, busy) = say(&bridge, &user, &room, "login").await?;
    assert_contains(&busy, "already in progress");

    net.refresh_qr();
    let edit = user
        .wait_for_event(&room, |e| is_image(e) && e["content"]["m.relates_to"]["event_id"] == image_id.as_str(), WAIT)
        .await?;
    assert_eq!(edit["content"]["m.relates_to"]["rel_type"], "m.replace");
    let new_content = &edit["content"]["m.new_content"];
    assert_eq!(new_content["msgtype"], "m.image");
    assert_ne!(new_content["url"], content["url"], "the refreshed code is a new image");
    assert!(body(&edit).starts_with("* "));

    net.scan_qr("alice")?;
    user.wait_for_event(&room, |e| bridge.is_bot_notice(e) && body(e).contains("Logged in as Alice"), WAIT)
        .await?;
    // The image and its edit hold credentials: both are redacted; there was one edit.
    wait_redacted(&user, &room, &image_id).await?;
    wait_redacted(&user, &room, edit["event_id"].as_str().unwrap_or_default()).await?;
    let events = user.messages(&room, 100).await?;
    let from_bot_redacted = events
        .iter()
        .filter(|e| e["sender"] == bridge.bot.as_str() && e["type"] == "m.room.message")
        .filter(|e| e["content"].as_object().is_some_and(|c| c.is_empty()))
        .count();
    assert_eq!(from_bot_redacted, 2, "the image and its one replacement");
    Ok(())
}

#[tokio::test]
async fn cancel_stops_a_flow_at_a_prompt_and_while_waiting() -> anyhow::Result<()> {
    let net = network().await?;
    let bridge = bridge(&net, Vec::new(), Vec::new()).await?;
    let user = bridge.user("cancel").await?;
    let room = bridge.management_room(&user).await?;

    let (_, nothing) = say(&bridge, &user, &room, "cancel").await?;
    assert_eq!(nothing, "Nothing to cancel.");

    // At a prompt, `cancel` is not taken as the answer.
    let (_, prompt) = say(&bridge, &user, &room, "login password").await?;
    assert_contains(&prompt, "Phone number");
    let (_, cancelled) = say(&bridge, &user, &room, "cancel").await?;
    assert_eq!(cancelled, "Login cancelled.");
    let (_, nothing) = say(&bridge, &user, &room, "cancel").await?;
    assert_eq!(nothing, "Nothing to cancel.");

    // While a QR code is shown, `cancel` is the command; the image is redacted.
    user.send_text(&room, "login qr").await?;
    let image = user
        .wait_for_event(&room, |e| e["sender"] == bridge.bot.as_str() && e["content"]["msgtype"] == "m.image", WAIT)
        .await?;
    let (_, cancelled) = say(&bridge, &user, &room, "cancel").await?;
    assert_eq!(cancelled, "Login cancelled.");
    wait_redacted(&user, &room, image["event_id"].as_str().unwrap_or_default()).await?;
    wait_until(WAIT, "the test network process to be cancelled", || async {
        Ok(net.pending_qr_codes().is_empty().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_login_without_answers_times_out() -> anyhow::Result<()> {
    let net = network().await?;
    let edits = vec![("login_timeout_secs: 600".to_owned(), "login_timeout_secs: 2".to_owned())];
    let bridge = bridge(&net, Vec::new(), edits).await?;
    let user = bridge.user("slow").await?;
    let room = bridge.management_room(&user).await?;
    say(&bridge, &user, &room, "login password").await?;
    user.wait_for_event(&room, |e| bridge.is_bot_notice(e) && body(e).contains("timed out"), WAIT)
        .await?;
    let (_, nothing) = say(&bridge, &user, &room, "cancel").await?;
    assert_eq!(nothing, "Nothing to cancel.");
    Ok(())
}

#[tokio::test]
async fn users_below_the_user_level_cannot_log_in() -> anyhow::Result<()> {
    let net = network().await?;
    let server = "test.localhost";
    let names = [random_localpart("cmd"), random_localpart("relay"), random_localpart("blocked")];
    let [commands, relay, blocked] = names.clone().map(|n| format!("@{n}:{server}"));
    let permissions = vec![
        (commands.clone(), "commands".to_owned()),
        (relay.clone(), "relay".to_owned()),
        (blocked.clone(), "block".to_owned()),
    ];
    let bridge = bridge(&net, permissions, Vec::new()).await?;

    // A commands-level user has a management room but may not log in.
    let user = bridge.synapse.register_user(&names[0], false).await?;
    let room = bridge.management_room(&user).await?;
    let (_, refused) = say(&bridge, &user, &room, "login password").await?;
    assert_contains(&refused, "user permission level");

    // Relay and blocked users are refused by the provisioning API too.
    let api = Provisioning::new(&bridge)?;
    for who in [&relay, &blocked, &commands] {
        let (status, answer) = api.call(reqwest::Method::GET, "login/flows", who, None).await?;
        assert_eq!((status, answer["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{who}");
    }
    Ok(())
}

/// A client of the bridge's provisioning API.
struct Provisioning<'a> {
    bridge: &'a TestBridge,
    secret: String,
}

impl<'a> Provisioning<'a> {
    fn new(bridge: &'a TestBridge) -> anyhow::Result<Self> {
        Ok(Self { bridge, secret: bridge.provisioning_secret()? })
    }

    /// Calls `path` (after `/_matrix/provision/v3/`) as `user`; returns status and body.
    async fn call(&self, method: reqwest::Method, path: &str, user: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        self.call_with(&self.secret, method, path, Some(user), body).await
    }

    async fn call_with(
        &self,
        secret: &str,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/_matrix/provision/v3/{path}", self.bridge.url());
        let mut request = self.bridge.http().request(method, url).bearer_auth(secret);
        if let Some(user) = user {
            request = request.query(&[("user_id", user)]);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }
}

#[tokio::test]
async fn the_provisioning_api_runs_the_password_login() -> anyhow::Result<()> {
    use reqwest::Method;
    let net = network().await?;
    let bridge = bridge(&net, Vec::new(), Vec::new()).await?;
    let user = bridge.user("prov").await?;
    let who = user.user_id();
    let api = Provisioning::new(&bridge)?;

    let (status, answer) = api.call_with("wrong-secret", Method::GET, "login/flows", Some(who), None).await?;
    assert_eq!((status, answer["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, _) = api.call_with(&api.secret, Method::GET, "login/flows", None, None).await?;
    assert_eq!(status, 400, "user_id is required");
    // The bridge's own users cannot log in.
    for own in [bridge.bot.clone(), "@test_someone:test.localhost".to_owned()] {
        let (status, answer) = api.call(Method::GET, "login/flows", &own, None).await?;
        assert_eq!((status, answer["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{own}: {answer}");
    }
    // A user has at most three unfinished logins at once.
    let other = bridge.user("many").await?;
    for _ in 0..3 {
        let (status, step) = api.call(Method::POST, "login/start/password", other.user_id(), None).await?;
        assert_eq!(status, 200, "{step}");
    }
    let (status, answer) = api.call(Method::POST, "login/start/password", other.user_id(), None).await?;
    assert_eq!((status, answer["errcode"].as_str()), (429, Some("M_LIMIT_EXCEEDED")), "{answer}");

    let (status, flows) = api.call(Method::GET, "login/flows", who, None).await?;
    assert_eq!(status, 200);
    let ids: Vec<&str> = flows["flows"].as_array().into_iter().flatten().filter_map(|f| f["id"].as_str()).collect();
    assert_eq!(ids, ["password", "qr", "token"]);

    let (status, step) = api.call(Method::POST, "login/start/password", who, None).await?;
    assert_eq!(status, 200, "{step}");
    let process = step["login_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!((step["type"].as_str(), step["step_id"].as_str()), (Some("user_input"), Some("phone")));
    assert_eq!(step["user_input"]["fields"][0]["type"], "phone_number");

    let step_path = |id: &str| format!("login/step/{process}/{id}/user_input");
    let (status, step) = api.call(Method::POST, &step_path("phone"), who, Some(json!({"phone": "+15550001"}))).await?;
    assert_eq!((status, step["step_id"].as_str()), (200, Some("code")), "{step}");
    let (status, answer) = api.call(Method::POST, &step_path("phone"), who, Some(json!({"phone": "+15550001"}))).await?;
    assert_eq!((status, answer["errcode"].as_str()), (400, Some("M_BAD_STATE")), "a stale step ID");
    let (status, answer) = api.call(Method::POST, &step_path("code"), who, Some(json!({"code": "00000"}))).await?;
    assert_eq!(status, 400, "{answer}");
    assert_contains(answer["error"].as_str().unwrap_or_default(), "wrong code");
    let (status, step) = api.call(Method::POST, &step_path("code"), who, Some(json!({"code": "12345"}))).await?;
    assert_eq!((status, step["step_id"].as_str()), (200, Some("password")), "{step}");
    assert_eq!(step["user_input"]["fields"][0]["type"], "password");
    let (status, step) = api.call(Method::POST, &step_path("password"), who, Some(json!({"password": "hunter2"}))).await?;
    assert_eq!((status, step["type"].as_str()), (200, Some("complete")), "{step}");
    assert_eq!(step["complete"]["user_login_id"], "alice");

    let (status, answer) = api.call(Method::POST, &step_path("password"), who, Some(json!({"password": "x"}))).await?;
    assert_eq!(status, 404, "a finished process is gone: {answer}");
    let (_, logins) = api.call(Method::GET, "logins", who, None).await?;
    assert_eq!(logins, json!({"login_ids": ["alice"]}));
    let (status, _) = api.call(Method::POST, "logout/alice", who, None).await?;
    assert_eq!(status, 200);
    let (_, logins) = api.call(Method::GET, "logins", who, None).await?;
    assert_eq!(logins, json!({"login_ids": []}));
    Ok(())
}

#[tokio::test]
async fn the_provisioning_api_waits_for_qr_refreshes_and_the_scan() -> anyhow::Result<()> {
    use reqwest::Method;
    let net = network().await?;
    let bridge = bridge(&net, Vec::new(), Vec::new()).await?;
    let user = bridge.user("provqr").await?;
    let who = user.user_id().to_owned();
    let api = Provisioning::new(&bridge)?;

    let (status, step) = api.call(Method::POST, "login/start/qr", &who, None).await?;
    assert_eq!(status, 200, "{step}");
    assert_eq!(step["type"], "display_and_wait");
    assert_eq!(step["display_and_wait"], json!({"type": "qr", "data": "testnet-qr-1"}));
    let process = step["login_id"].as_str().unwrap_or_default().to_owned();
    let wait_path = format!("login/step/{process}/qr/display_and_wait");

    // The wait blocks until the network moves on: a refreshed code, then the scan.
    let (refreshed, ()) = tokio::join!(api.call(Method::POST, &wait_path, &who, None), async {
        let _ = wait_until(WAIT, "the bridge to wait", || async { Ok((!net.pending_qr_codes().is_empty()).then_some(())) }).await;
        net.refresh_qr();
    });
    let (status, step) = refreshed?;
    assert_eq!((status, &step["display_and_wait"]["data"]), (200, &json!("testnet-qr-2")), "{step}");
    let (done, scanned) = tokio::join!(api.call(Method::POST, &wait_path, &who, None), async { net.scan_qr("alice") });
    scanned?;
    let (status, step) = done?;
    assert_eq!((status, step["type"].as_str()), (200, Some("complete")), "{step}");
    assert_eq!(step["complete"]["user_login_id"], "alice");

    // Cancelling a process ends it.
    let (_, step) = api.call(Method::POST, "login/start/qr", &who, None).await?;
    let process = step["login_id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = api.call(Method::POST, &format!("login/cancel/{process}"), &who, None).await?;
    assert_eq!(status, 200);
    let (status, _) = api.call(Method::POST, &format!("login/step/{process}/qr/display_and_wait"), &who, None).await?;
    assert_eq!(status, 404);
    Ok(())
}

/// The states the bridge logged for its logins, in order (`connected`, `transient_disconnect`…).
fn logged_states(log: &str) -> Vec<&'static str> {
    let labels = ["connecting", "connected", "transient_disconnect", "bad_credentials", "logged_out"];
    log.lines()
        .filter(|l| l.contains("login state changed"))
        .filter_map(|l| labels.into_iter().find(|label| l.contains(&format!("\"{label}\"")) || l.contains(&format!("={label}"))))
        .collect()
}

/// Waits until the bridge has logged the login's state `state` `count` times in all.
async fn wait_logged_state(bridge: &TestBridge, state: &str, count: usize) -> anyhow::Result<()> {
    wait_until(WAIT, &format!("the state {state} logged {count} times"), || async {
        Ok((logged_states(&bridge.log()).iter().filter(|s| **s == state).count() >= count).then_some(()))
    })
    .await
}

/// How many of the bot's messages in `room` contain `needle`.
async fn told(user: &TestUser, room: &str, bot: &str, needle: &str) -> anyhow::Result<usize> {
    Ok(user.messages(room, 100).await?.iter().filter(|e| e["sender"] == bot && body(e).contains(needle)).count())
}

/// Bridge state notices (issue 11): the owner hears of a lost connection once it lasted
/// `bridge.notify_disconnect_after_secs` — not of a shorter drop, nor of each retry — and
/// once of its end; of bad credentials once, also when the restarted bridge finds them
/// still bad.
#[tokio::test]
async fn login_state_changes_are_told_once_each() -> anyhow::Result<()> {
    let net = network().await?;
    let grace = ("notify_disconnect_after_secs: 30".to_owned(), "notify_disconnect_after_secs: 8".to_owned());
    let mut bridge = bridge(&net, Vec::new(), vec![grace]).await?;
    let user = bridge.user("state").await?;
    let room = bridge.management_room(&user).await?;
    say(&bridge, &user, &room, "login password").await?;
    say(&bridge, &user, &room, "+15550001").await?;
    say(&bridge, &user, &room, "12345").await?;
    let (_, done) = say(&bridge, &user, &room, "hunter2").await?;
    assert_contains(&done, "Logged in as Alice");
    wait_logged_state(&bridge, "connected", 1).await?;

    // A drop shorter than the grace period passes in silence.
    net.stop().await;
    wait_logged_state(&bridge, "transient_disconnect", 1).await?;
    net.start_again().await?;
    wait_logged_state(&bridge, "connected", 2).await?;

    // An outage: one notice once it lasted the grace period (the client retries meanwhile),
    // one when it is over.
    net.stop().await;
    wait_logged_state(&bridge, "transient_disconnect", 2).await?;
    let bot = bridge.bot.clone();
    let lost = user.wait_for_event(&room, |e| e["sender"] == bot.as_str() && body(e).contains("Lost the connection"), WAIT).await?;
    assert_contains(body(&lost), "Lost the connection for Alice");
    net.start_again().await?;
    user.wait_for_event(&room, |e| e["sender"] == bot.as_str() && body(e) == "Reconnected Alice.", WAIT).await?;
    assert_eq!(told(&user, &room, &bot, "Lost the connection").await?, 1, "the short drop or a retry was told");
    assert_eq!(told(&user, &room, &bot, "Reconnected").await?, 1);

    // Bad credentials: told once, and not again by the restarted bridge.
    net.revoke_login("alice");
    let stopped = user.wait_for_event(&room, |e| e["sender"] == bot.as_str() && body(e).contains("stopped working"), WAIT).await?;
    assert_contains(body(&stopped), "Your login Alice stopped working");
    assert_contains(body(&stopped), "`relogin`");
    bridge.kill()?;
    bridge.run(&[]).await?;
    wait_logged_state(&bridge, "bad_credentials", 2).await?;
    // The answer to a command sent after the restart comes after any notice of the start.
    let (_, list) = say(&bridge, &user, &room, "list-logins").await?;
    assert_contains(&list, "Alice (`alice`): bad credentials");
    assert_eq!(told(&user, &room, &bot, "stopped working").await?, 1, "bad credentials told twice");
    Ok(())
}
