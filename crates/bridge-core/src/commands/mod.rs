//! Bot commands in the management room (no prefix) and in other rooms (with the prefix).
//!
//! Commands are declared as data ([`CommandSpec`]): `help` is generated from the table
//! and shows each user only what their permission level allows.

mod general;
mod login;
mod portal;

use std::{future::Future, pin::Pin, sync::Arc};

use ruma::{
    events::{
        relation::{InReplyTo, Reply},
        room::message::{Relation, RoomMessageEventContent},
    },
    EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId,
};

use crate::{bridge::Bridge, config::PermissionLevel, network::NetworkCommand};

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

/// The future a command handler returns.
pub type CommandFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A command as declared in a table: its name, who may run it, its help line and its
/// handler (which gets the context and the words after the command name).
#[derive(Clone, Copy)]
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
    /// Runs the command.
    pub handler: fn(CommandContext, Vec<String>) -> CommandFuture,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec").field("name", &self.name).finish_non_exhaustive()
    }
}

impl CommandSpec {
    fn matches(&self, word: &str) -> bool {
        self.name == word || self.aliases.contains(&word)
    }
}

/// Every command of the core, in the order `help` lists them.
pub fn all_commands() -> impl Iterator<Item = &'static CommandSpec> {
    general::COMMANDS.iter().chain(login::COMMANDS).chain(portal::COMMANDS)
}

/// Runs the command in `text` (without prefix) for `ctx`.
pub async fn dispatch(ctx: CommandContext, text: &str) -> anyhow::Result<()> {
    let mut words = text.split_whitespace();
    let Some(word) = words.next() else {
        return ctx.reply("Send `help` for the list of commands.").await;
    };
    let word = word.to_lowercase();
    let args: Vec<String> = words.map(str::to_owned).collect();
    if ctx.level < PermissionLevel::Commands {
        return ctx.reply("You are not allowed to use this bridge's commands.").await;
    }
    let Some(spec) = all_commands().find(|c| c.matches(&word)) else {
        let network_command = ctx.bridge.connector.commands().into_iter().find(|c| c.name == word || c.aliases.contains(&word.as_str()));
        if let Some(command) = network_command {
            let span = tracing::info_span!("command", command = command.name, sender = %ctx.sender);
            return tracing::Instrument::instrument(run_network_command(ctx, command, args), span).await;
        }
        // The input is never echoed: it may be a secret pasted after its prompt ended.
        let names = all_commands().flat_map(|c| std::iter::once(c.name).chain(c.aliases.iter().copied()));
        let text = match closest_command(&word, names) {
            Some(name) => format!("Unknown command. Did you mean `{name}`? Send `help` for the list of commands."),
            None => "Unknown command. Send `help` for the list of commands.".to_owned(),
        };
        return ctx.reply(&text).await;
    };
    if ctx.level < spec.level {
        return ctx
            .reply(&format!("`{}` needs the {} permission level.", spec.name, level_name(spec.level)))
            .await;
    }
    let span = tracing::info_span!("command", command = spec.name, sender = %ctx.sender);
    tracing::Instrument::instrument((spec.handler)(ctx, args), span).await
}

/// Runs a command the network declared: checks the level and the login, calls the
/// connector, creates the portals it asks for, and shows its reply or error.
async fn run_network_command(ctx: CommandContext, command: NetworkCommand, args: Vec<String>) -> anyhow::Result<()> {
    if ctx.level < PermissionLevel::User {
        return ctx.reply(&format!("`{}` needs the user permission level.", command.name)).await;
    }
    let login = ctx.bridge.logins.of_user(&ctx.sender).into_iter().next();
    if command.needs_login && login.is_none() {
        return ctx.reply(&format!("`{}` needs a login: send `login` first.", command.name)).await;
    }
    let client = login.as_ref().map(|l| (l.id.clone(), l.client.clone()));
    match ctx.bridge.connector.run_command(command.name, &args, client).await {
        Ok(result) => {
            if !result.reply.is_empty() {
                ctx.reply(&result.reply).await?;
            }
            if let Some(login) = login {
                let mut failed = 0;
                for chat in &result.create_portals {
                    if let Err(e) = ctx.bridge.portals.ensure_room(&ctx.bridge, &login.id, chat, None).await {
                        tracing::warn!(chat = %chat.id, error = %e, "could not create a portal");
                        failed += 1;
                    }
                }
                if failed > 0 {
                    ctx.reply(&format!("{failed} of {} rooms could not be created; see the bridge log.", result.create_portals.len())).await?;
                }
            }
            Ok(())
        }
        Err(e) => ctx.reply(&format!("`{}` failed: {e}", command.name)).await,
    }
}

/// The known command closest to `word` (at most two edits away), for a hint.
fn closest_command<'a>(word: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names.map(|name| (edit_distance(word, name), name)).filter(|(d, _)| *d <= 2).min_by_key(|(d, _)| *d).map(|(_, name)| name)
}

/// The Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Whether a message in the management room looks like a credential rather than a command:
/// one word that is long and mixes letters and digits (a token, a password), has a bot
/// token's three dot-separated parts, or is a login code of 5 to 8 digits.
pub fn looks_like_secret(body: &str) -> bool {
    let text = body.trim();
    if text.is_empty() || text.contains(char::is_whitespace) {
        return false;
    }
    let len = text.chars().count();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    let long_and_mixed = len >= 20 && digits > 0 && letters > 0;
    let bot_token = len >= 40 && text.split('.').count() == 3 && text.split('.').all(|p| !p.is_empty());
    let code = digits == len && (5..=8).contains(&len);
    long_and_mixed || bot_token || code
}

/// The name of a permission level as written in the config.
pub fn level_name(level: PermissionLevel) -> &'static str {
    match level {
        PermissionLevel::Block => "block",
        PermissionLevel::Relay => "relay",
        PermissionLevel::Commands => "commands",
        PermissionLevel::User => "user",
        PermissionLevel::Admin => "admin",
    }
}

/// The `help` text for the context's user: only the commands they may run.
pub(crate) fn help_text(ctx: &CommandContext) -> String {
    let prefix = if ctx.management { String::new() } else { format!("{} ", ctx.bridge.settings.command_prefix) };
    let mut out = format!("{} bridge commands:\n", ctx.bridge.info.display_name);
    for spec in all_commands().filter(|c| ctx.level >= c.level) {
        let args = if spec.args.is_empty() { String::new() } else { format!(" {}", spec.args) };
        let aliases = if spec.aliases.is_empty() { String::new() } else { format!(" (alias: {})", spec.aliases.join(", ")) };
        out.push_str(&format!("- `{prefix}{}{args}` — {}{aliases}\n", spec.name, spec.help));
    }
    if ctx.level >= PermissionLevel::User {
        for command in ctx.bridge.connector.commands() {
            let args = if command.args.is_empty() { String::new() } else { format!(" {}", command.args) };
            let aliases = if command.aliases.is_empty() { String::new() } else { format!(" (alias: {})", command.aliases.join(", ")) };
            out.push_str(&format!("- `{prefix}{}{args}` — {}{aliases}\n", command.name, command.help));
        }
    }
    if !ctx.management {
        out.push_str("\nIn your management room (a direct chat with me) no prefix is needed.");
    }
    out
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

/// A duration for people: "45 seconds", "10 minutes".
pub fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        1 => "1 second".to_owned(),
        s if s < 60 => format!("{s} seconds"),
        s if s % 60 == 0 && s / 60 == 1 => "1 minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{} minutes {} seconds", s / 60, s % 60),
    }
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
    fn aliases_match_and_names_are_unique() {
        let ping = all_commands().find(|c| c.name == "ping").expect("ping exists");
        assert!(ping.matches("status"));
        assert!(!ping.matches("pong"));
        let mut seen = std::collections::HashSet::new();
        for spec in all_commands() {
            for word in std::iter::once(&spec.name).chain(spec.aliases) {
                assert!(seen.insert(*word), "{word} is declared twice");
            }
        }
    }
}
