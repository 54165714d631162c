//! Login commands: `login`, `logout`, `list-logins`, `relogin`, `cancel`.
//!
//! The flows themselves run in [`crate::login`]; these commands start, cancel and list
//! them, and manage the stored logins.

use super::{CommandContext, CommandFuture, CommandSpec};
use crate::{config::PermissionLevel, login::LoginError, network::LoginFlow, store::UserLogin};

/// The login commands.
pub(super) const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "login", aliases: &["link"], args: "[flow]", help: "Log in to your account; with several ways to log in, lists them.", level: PermissionLevel::User, handler: login },
    CommandSpec { name: "cancel", aliases: &[], args: "", help: "Cancel the login in progress.", level: PermissionLevel::User, handler: cancel },
    CommandSpec { name: "logout", aliases: &[], args: "[login id]", help: "Log out of an account and forget it.", level: PermissionLevel::User, handler: logout },
    CommandSpec { name: "list-logins", aliases: &[], args: "", help: "List your logins and their state.", level: PermissionLevel::User, handler: list_logins },
    CommandSpec { name: "relogin", aliases: &[], args: "[login id]", help: "Log in to one of your accounts again.", level: PermissionLevel::User, handler: relogin },
];

/// The list of flows, one per line, for `login` without a flow and for errors.
pub(crate) fn flow_list(flows: &[LoginFlow]) -> String {
    flows.iter().map(|f| format!("- `{}` — {}: {}", f.id, f.name, f.description)).collect::<Vec<_>>().join("\n")
}

/// A user's stored logins, one per line.
pub(crate) fn login_list(logins: &[UserLogin]) -> String {
    logins
        .iter()
        .map(|l| format!("- {} (`{}`): {}", l.remote_name, l.id, l.state.replace('_', " ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `login` says first to a user who already has `logins`: who they are logged in as,
/// that this adds another account, and how to log in to one of theirs again instead.
pub(crate) fn already_logged_in(logins: &[UserLogin]) -> Option<String> {
    let names: Vec<String> = logins.iter().map(|l| format!("{} (`{}`)", l.remote_name, l.id)).collect();
    let (again, command) = match logins {
        [] => return None,
        [only] => (only.remote_name.as_str(), "`relogin`"),
        _ => ("one of them", "`relogin <login id>`"),
    };
    Some(format!(
        "You are already logged in as {}. This login adds another account; to log in to {again} again instead, send `cancel`, then {command}.",
        names.join(", ")
    ))
}

/// Picks the login a command acts on: the one named by `arg` (ID or remote ID), or the
/// only one. `Err` carries the message to answer with.
pub(crate) fn pick_login<'a>(logins: &'a [UserLogin], arg: Option<&str>, command: &str) -> Result<&'a UserLogin, String> {
    match (arg, logins) {
        (_, []) => Err("You are not logged in.".to_owned()),
        (Some(id), _) => logins
            .iter()
            .find(|l| l.id == id || l.remote_id == id)
            .ok_or_else(|| format!("You have no login `{id}`. Your logins:\n{}", login_list(logins))),
        (None, [only]) => Ok(only),
        (None, _) => Err(format!("You have several logins; send `{command} <login id>` with one of:\n{}", login_list(logins))),
    }
}

/// Starts flow `flow` for the context's user and answers errors.
async fn start(ctx: &CommandContext, flow: Option<&str>) -> anyhow::Result<()> {
    if !ctx.management {
        return ctx.reply("Log in from your management room (a direct chat with me).").await;
    }
    let sessions = &ctx.bridge.login_sessions;
    match sessions.start_in_room(&ctx.bridge, &ctx.sender, &ctx.room, &ctx.event_id, flow).await {
        Ok(()) => Ok(()),
        Err(LoginError::NotAllowed) => ctx.reply("You need the user permission level to log in.").await,
        Err(LoginError::InProgress) => {
            ctx.reply("A login is already in progress. Send `cancel` to stop it first.").await
        }
        Err(LoginError::UnknownFlow { flow, .. }) => {
            let flows = ctx.bridge.connector.login_flows();
            ctx.reply(&format!("There is no login flow `{flow}`. Send `login <flow>` with one of:\n{}", flow_list(&flows))).await
        }
        Err(e) => ctx.reply(&format!("Could not start the login: {e}.")).await,
    }
}

fn login(ctx: CommandContext, args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        if ctx.level < PermissionLevel::User {
            return ctx.reply("You need the user permission level to log in.").await;
        }
        if ctx.bridge.login_sessions.in_progress(&ctx.sender).is_some() {
            return ctx.reply("A login is already in progress. Send `cancel` to stop it first.").await;
        }
        let flows = ctx.bridge.connector.login_flows();
        let logins = ctx.bridge.store.user_logins().list_for_user(ctx.sender.as_str()).await?;
        let already = already_logged_in(&logins).filter(|_| ctx.management);
        match args.first() {
            None if flows.len() > 1 => {
                let choose = format!("Choose how to log in: send `login <flow>` with one of:\n{}", flow_list(&flows));
                let text = match already {
                    Some(already) => format!("{already}\n{choose}"),
                    None => choose,
                };
                ctx.reply(&text).await
            }
            requested => {
                if let Some(already) = already {
                    ctx.reply(&already).await?;
                }
                start(&ctx, requested.map(String::as_str)).await
            }
        }
    })
}

fn cancel(ctx: CommandContext, _args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        if ctx.bridge.login_sessions.cancel_in_room(&ctx.sender, &ctx.event_id).await {
            Ok(()) // the login's task confirms
        } else {
            ctx.reply("Nothing to cancel.").await
        }
    })
}

fn logout(ctx: CommandContext, args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        let logins = ctx.bridge.store.user_logins().list_for_user(ctx.sender.as_str()).await?;
        let login = match pick_login(&logins, args.first().map(String::as_str), "logout") {
            Ok(login) => login,
            Err(message) => return ctx.reply(&message).await,
        };
        let id = crate::network::LoginId(login.id.clone());
        match ctx.bridge.remove_login(&id, true).await {
            Ok(()) => ctx.reply(&format!("Logged out of {}.", login.remote_name)).await,
            Err(e) => ctx.reply(&format!("Could not log out of {}: {e:#}", login.remote_name)).await,
        }
    })
}

fn list_logins(ctx: CommandContext, _args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        let logins = ctx.bridge.store.user_logins().list_for_user(ctx.sender.as_str()).await?;
        if logins.is_empty() {
            return ctx.reply("You are not logged in. Send `login` to log in.").await;
        }
        ctx.reply(&format!("Your logins:\n{}", login_list(&logins))).await
    })
}

fn relogin(ctx: CommandContext, args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        let logins = ctx.bridge.store.user_logins().list_for_user(ctx.sender.as_str()).await?;
        let login = match pick_login(&logins, args.first().map(String::as_str), "relogin") {
            Ok(login) => login,
            Err(message) => return ctx.reply(&message).await,
        };
        tracing::info!(login = %login.id, "logging in again");
        start(&ctx, None).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(id: &str, name: &str, state: &str) -> UserLogin {
        UserLogin {
            id: id.into(),
            user_mxid: "@a:example.com".into(),
            remote_id: id.into(),
            remote_name: name.into(),
            session: serde_json::Value::Null,
            state: state.into(),
            created_at: 0,
        }
    }

    #[test]
    fn pick_login_needs_an_id_only_with_several() {
        let one = [login("1", "Alice", "connected")];
        let two = [login("1", "Alice", "connected"), login("2", "Bob", "bad_credentials")];
        type Case<'a> = (&'a [UserLogin], Option<&'a str>, Result<&'a str, &'a str>);
        let cases: [Case; 5] = [
            (&[], None, Err("You are not logged in.")),
            (&one, None, Ok("1")),
            (&two, Some("2"), Ok("2")),
            (&two, None, Err("You have several logins; send `logout <login id>` with one of:\n- Alice (`1`): connected\n- Bob (`2`): bad credentials")),
            (&one, Some("9"), Err("You have no login `9`. Your logins:\n- Alice (`1`): connected")),
        ];
        for (logins, arg, want) in cases {
            let got = pick_login(logins, arg, "logout").map(|l| l.id.as_str());
            assert_eq!(got.as_deref().map_err(String::as_str), want, "{arg:?}");
        }
    }

    #[test]
    fn already_logged_in_names_the_logins_and_how_to_log_in_again() {
        assert_eq!(already_logged_in(&[]), None);
        let one = already_logged_in(&[login("1", "Alice", "connected")]);
        assert_eq!(
            one.as_deref(),
            Some("You are already logged in as Alice (`1`). This login adds another account; to log in to Alice again instead, send `cancel`, then `relogin`.")
        );
        let two = already_logged_in(&[login("1", "Alice", "connected"), login("2", "Bob", "connected")]).unwrap_or_default();
        assert!(two.contains("Alice (`1`), Bob (`2`)") && two.ends_with("`relogin <login id>`."), "{two}");
    }

    #[test]
    fn every_login_command_needs_the_user_level() {
        assert!(COMMANDS.iter().all(|c| c.level == PermissionLevel::User && !c.help.is_empty()));
        let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(names, ["login", "cancel", "logout", "list-logins", "relogin"]);
    }
}
