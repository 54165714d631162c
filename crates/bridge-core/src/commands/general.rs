//! General commands: `help`, `ping`, `version`.

use super::{help_text, CommandContext, CommandFuture, CommandSpec};
use crate::config::PermissionLevel;

/// The general commands.
pub(super) const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "help", aliases: &[], args: "", help: "Show this list.", level: PermissionLevel::Commands, handler: help },
    CommandSpec { name: "ping", aliases: &["status"], args: "", help: "Show the bridge's state and your logins.", level: PermissionLevel::Commands, handler: ping },
    CommandSpec { name: "version", aliases: &[], args: "", help: "Show the bridge's version.", level: PermissionLevel::Commands, handler: version },
];

fn help(ctx: CommandContext, _args: Vec<String>) -> CommandFuture {
    Box::pin(async move { ctx.reply(&help_text(&ctx)).await })
}

fn version(ctx: CommandContext, _args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        let info = &ctx.bridge.info;
        ctx.reply(&format!("{} bridge {} ({})", info.display_name, env!("CARGO_PKG_VERSION"), info.url)).await
    })
}

fn ping(ctx: CommandContext, _args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        let logins = ctx.bridge.store.user_logins().list_for_user(ctx.sender.as_str()).await?;
        let uptime = ctx.bridge.started.elapsed().as_secs();
        let mut text = format!("The bridge is running (up {}m {}s).", uptime / 60, uptime % 60);
        if logins.is_empty() {
            text.push_str(" You are not logged in.");
        } else {
            text.push_str(&format!(" You have {} login(s):", logins.len()));
            for login in logins {
                text.push_str(&format!("\n- {} ({}): {}", login.remote_name, login.remote_id, login.state.replace('_', " ")));
                let live = ctx.bridge.logins.get(&crate::network::LoginId(login.id.clone()));
                if let Some(status) = live.and_then(|live| live.client.status()) {
                    text.push_str(&format!(" ({status})"));
                }
            }
        }
        ctx.reply(&text).await
    })
}
