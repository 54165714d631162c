//! Bot commands in the management room (no prefix) and in other rooms (with the prefix).
//!
//! Commands are declared as data ([`CommandSpec`]): `help` is generated from the table
//! and shows each user only what their permission level allows.

use std::sync::Arc;

use ruma::{
    events::{
        relation::{InReplyTo, Reply},
        room::message::{Relation, RoomMessageEventContent},
    },
    EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId,
};

use crate::{bridge::Bridge, config::PermissionLevel};

/// Who ran a command, where, and with what rights.
pub struct CommandContext {
    /// The running bridge.
    pub bridge: Arc<Bridge>,
    /// The room the command was sent in.
    pub room: OwnedRoomId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// The command's event, which the answer replies to.
    pub event_id: OwnedEventId,
    /// The sender's permission level.
    pub level: PermissionLevel,
    /// Whether the room is the sender's management room.
    pub management: bool,
}

impl CommandContext {
    /// Answers the command in its room, as a reply to it.
    pub async fn reply(&self, text: &str) -> anyhow::Result<()> {
        reply(&self.bridge, &self.room, Some(&self.event_id), text).await
    }
}

/// A command as declared in the table: its name, who may run it and its help line.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// The name typed by the user.
    pub name: &'static str,
    /// Other names that run the same command.
    pub aliases: &'static [&'static str],
    /// Argument synopsis for `help` (`<identifier>`), or empty.
    pub args: &'static str,
    /// One line for `help`.
    pub help: &'static str,
    /// The lowest permission level that may run it.
    pub level: PermissionLevel,
}

impl CommandSpec {
    fn matches(&self, word: &str) -> bool {
        self.name == word || self.aliases.contains(&word)
    }
}

/// The commands every bridge has.
pub const CORE_COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "help", aliases: &[], args: "", help: "Show this list.", level: PermissionLevel::Commands },
    CommandSpec { name: "ping", aliases: &["status"], args: "", help: "Show the bridge's state and your logins.", level: PermissionLevel::Commands },
    CommandSpec { name: "version", aliases: &[], args: "", help: "Show the bridge's version.", level: PermissionLevel::Commands },
];

/// Runs the command in `text` (without prefix) for `ctx`.
pub async fn dispatch(ctx: CommandContext, text: &str) -> anyhow::Result<()> {
    let mut words = text.split_whitespace();
    let Some(word) = words.next() else {
        return ctx.reply("Send `help` for the list of commands.").await;
    };
    let word = word.to_lowercase();
    let span = tracing::info_span!("command", command = %word, sender = %ctx.sender);
    let _guard = span.enter();
    drop(_guard);
    if ctx.level < PermissionLevel::Commands {
        return ctx.reply("You are not allowed to use this bridge's commands.").await;
    }
    let Some(spec) = CORE_COMMANDS.iter().find(|c| c.matches(&word)) else {
        return ctx
            .reply(&format!("Unknown command `{word}`. Send `help` for the list of commands."))
            .await;
    };
    if ctx.level < spec.level {
        return ctx.reply(&format!("`{}` needs the {:?} permission level.", spec.name, spec.level)).await;
    }
    match spec.name {
        "help" => ctx.reply(&help_text(&ctx)).await,
        "ping" => ping(&ctx).await,
        "version" => {
            let info = &ctx.bridge.info;
            ctx.reply(&format!("{} bridge {} ({})", info.display_name, env!("CARGO_PKG_VERSION"), info.url)).await
        }
        other => ctx.reply(&format!("`{other}` is not available.")).await,
    }
}

/// The `help` text for the context's user: only the commands they may run.
fn help_text(ctx: &CommandContext) -> String {
    let prefix = if ctx.management { String::new() } else { format!("{} ", ctx.bridge.settings.command_prefix) };
    let mut out = format!("{} bridge commands:\n", ctx.bridge.info.display_name);
    for spec in CORE_COMMANDS.iter().filter(|c| ctx.level >= c.level) {
        let args = if spec.args.is_empty() { String::new() } else { format!(" {}", spec.args) };
        let aliases = if spec.aliases.is_empty() { String::new() } else { format!(" (alias: {})", spec.aliases.join(", ")) };
        out.push_str(&format!("- `{prefix}{}{args}` — {}{aliases}\n", spec.name, spec.help));
    }
    if !ctx.management {
        out.push_str("\nIn your management room (a direct chat with me) no prefix is needed.");
    }
    out
}

async fn ping(ctx: &CommandContext) -> anyhow::Result<()> {
    let logins = ctx.bridge.store.user_logins().list_for_user(ctx.sender.as_str()).await?;
    let uptime = ctx.bridge.started.elapsed().as_secs();
    let mut text = format!("The bridge is running (up {}m {}s).", uptime / 60, uptime % 60);
    if logins.is_empty() {
        text.push_str(" You are not logged in.");
    } else {
        text.push_str(&format!(" You have {} login(s):", logins.len()));
        for login in logins {
            text.push_str(&format!("\n- {} ({})", login.remote_name, login.remote_id));
        }
    }
    ctx.reply(&text).await
}

/// Sends a notice from the bot to `room`, optionally as a reply. `text` may use
/// `` `code` ``; it is sent as plain text and as HTML.
pub async fn reply(bridge: &Bridge, room: &RoomId, in_reply_to: Option<&EventId>, text: &str) -> anyhow::Result<()> {
    let mut content = RoomMessageEventContent::notice_html(text, simple_html(text));
    if let Some(event_id) = in_reply_to {
        content.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(event_id.to_owned()))));
    }
    bridge.bot_intent().send_message_event(room, content, None).await?;
    Ok(())
}

/// Escapes HTML and turns `` `code` `` spans and line breaks into HTML.
pub(crate) fn simple_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_code = false;
    for ch in text.chars() {
        match ch {
            '`' => {
                out.push_str(if in_code { "</code>" } else { "<code>" });
                in_code = !in_code;
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    if in_code {
        out.push_str("</code>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_html_escapes_and_codes() {
        let cases = [
            ("plain", "plain"),
            ("send `help`", "send <code>help</code>"),
            ("a <b> & c", "a &lt;b&gt; &amp; c"),
            ("line1\nline2", "line1<br>line2"),
            ("open `code", "open <code>code</code>"),
        ];
        for (input, want) in cases {
            assert_eq!(simple_html(input), want);
        }
    }

    #[test]
    fn aliases_match() {
        let ping = CORE_COMMANDS.iter().find(|c| c.name == "ping").expect("ping exists");
        assert!(ping.matches("status"));
        assert!(!ping.matches("pong"));
    }
}
