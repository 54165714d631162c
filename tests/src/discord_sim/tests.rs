//! The simulator's JSON must deserialize into serenity's models (which are strict about
//! required fields), and its REST API must answer serenity's HTTP client.

use serenity::model::prelude::{Channel as SChannel, CurrentUser, Guild as SGuild, Message, Webhook as SWebhook};

use super::*;

fn world() -> (DiscordSim, u64, u64, u64, u64) {
    let sim = DiscordSim::start_blocking_free();
    let (bot, _) = sim.add_bot("bridge");
    let alice = sim.add_user("alice", Some("Alice A."));
    let guild = sim.add_guild("Guild", &[alice, bot]);
    let channel = sim.add_channel(guild, "general", Some("chat"));
    (sim, bot, alice, guild, channel)
}

impl DiscordSim {
    /// A simulator without servers, for pure state tests.
    fn start_blocking_free() -> Self {
        let inner = Arc::new(Inner::new(1));
        Self { inner, stop: Arc::new(StopOnDrop(CancellationToken::new())) }
    }
}

#[test]
fn objects_deserialize_into_serenity_models() {
    let (sim, bot, alice, guild, channel) = world();
    let data = sim.data();
    let g = data.guilds.get(&guild).expect("guild");
    let parsed: SGuild = serde_json::from_value(g.create_json(&data)).expect("guild create");
    assert_eq!(parsed.channels.len(), 1);
    assert_eq!(parsed.members.len(), 2);
    let c = data.channels.get(&channel).expect("channel");
    let _: SChannel = serde_json::from_value(c.json(&data)).expect("channel");
    let _: CurrentUser = serde_json::from_value(data.users[&bot].json()).expect("user");
    drop(data);
    let id = sim.push_message(channel, alice, "hi <@1>");
    let message = sim.messages(channel).pop().expect("message");
    let parsed: Message = serde_json::from_value(message).expect("message");
    assert_eq!(parsed.id.get(), id);
    let reply = sim.push_reply(channel, alice, "re", id);
    let parsed: Message = serde_json::from_value(sim.messages(channel).pop().expect("reply")).expect("reply");
    assert_eq!(parsed.id.get(), reply);
    assert!(parsed.referenced_message.is_some());
    let webhook = state::Webhook { id: 5, token: "t".into(), channel, name: "hook".into(), creator: bot };
    let _: SWebhook = serde_json::from_value(webhook.json(&sim.data())).expect("webhook");
}

#[tokio::test]
async fn serenity_http_talks_to_the_simulator() {
    let sim = DiscordSim::start().await.expect("start");
    let (bot, token) = sim.add_bot("bridge");
    let alice = sim.add_user("alice", None);
    let guild = sim.add_guild("Guild", &[alice, bot]);
    let channel = sim.add_channel(guild, "general", None);
    let http = serenity::http::HttpBuilder::new(&token).proxy(sim.url()).ratelimiter_disabled(true).build();
    let me = http.get_current_user().await.expect("current user");
    assert_eq!(me.id.get(), bot);
    let sent = serenity::model::id::ChannelId::new(channel)
        .say(&http, "**hello**")
        .await
        .expect("send");
    assert_eq!(sent.content, "**hello**");
    let recorded = sim
        .wait_request(Duration::from_secs(5), "the send", |r| r.method == "POST" && r.path.ends_with("/messages"))
        .await
        .expect("recorded");
    assert_eq!(recorded.body["content"], "**hello**");
    assert_eq!(recorded.bot, Some(bot));

    let bad = serenity::http::HttpBuilder::new("nope").proxy(sim.url()).ratelimiter_disabled(true).build();
    let error = bad.get_current_user().await.expect_err("bad token");
    assert!(error.to_string().contains("401") || format!("{error:?}").contains("401"), "{error:?}");
}
