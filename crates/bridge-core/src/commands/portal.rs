//! Portal commands: `start-chat`, `set-relay`, `unset-relay`, `delete-portal`.
//!
//! `start-chat` works anywhere; the others act on the portal they are sent in (with the
//! command prefix, since a portal is never a management room).

use super::{CommandContext, CommandFuture, CommandSpec};
use crate::{config::PermissionLevel, network::events::ChatRef};

/// The portal commands.
pub(super) const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "start-chat", aliases: &["pm"], args: "[login id] <identifier>", help: "Start a direct chat with someone (a username, phone number, …).", level: PermissionLevel::User, handler: start_chat },
    CommandSpec { name: "set-relay", aliases: &[], args: "", help: "In a portal: relay messages of users without a login through your login.", level: PermissionLevel::User, handler: set_relay },
    CommandSpec { name: "unset-relay", aliases: &[], args: "", help: "In a portal: stop relaying messages.", level: PermissionLevel::User, handler: unset_relay },
    CommandSpec { name: "delete-portal", aliases: &[], args: "", help: "In a portal: remove everyone and stop bridging the room.", level: PermissionLevel::Admin, handler: delete_portal },
];

fn start_chat(ctx: CommandContext, args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        let network = ctx.bridge.info.display_name;
        let (login_arg, identifier) = match args.as_slice() {
            [identifier] => (None, identifier.clone()),
            [login, identifier] => (Some(login.clone()), identifier.clone()),
            _ => return ctx.reply("Usage: `start-chat [login id] <identifier>`").await,
        };
        let logins = ctx.bridge.logins.of_user(&ctx.sender);
        let login = match &login_arg {
            Some(id) => logins.iter().find(|l| l.id.as_str() == id),
            None => logins.iter().find(|l| l.client.chat_starter().is_some()).or(logins.first()),
        };
        let Some(login) = login else {
            let text = match login_arg {
                Some(id) => format!("You have no connected login `{id}`."),
                None => format!("You are not logged in to {network}. Use `login` first."),
            };
            return ctx.reply(&text).await;
        };
        let Some(starter) = login.client.chat_starter() else {
            return ctx.reply(&format!("Starting chats is not supported on {network}.")).await;
        };
        let (user, chat_id) = match starter.resolve_identifier(&identifier).await {
            Ok(found) => found,
            Err(e) => return ctx.reply(&format!("Could not start a chat with {identifier}: {e}")).await,
        };
        // DMs exist once per login on most networks.
        let chat = ChatRef { id: chat_id, receiver: Some(login.id.clone()) };
        match ctx.bridge.portals.ensure_room(&ctx.bridge, &login.id, &chat, Some(user.clone())).await {
            Ok(room) => {
                let name = ctx.bridge.ghost_name(&user).await.unwrap_or_else(|| identifier.clone());
                ctx.reply(&format!("Your chat with {name} is https://matrix.to/#/{room} — you have been invited.")).await
            }
            Err(e) => ctx.reply(&format!("Could not create the chat with {identifier}: {e}")).await,
        }
    })
}

fn set_relay(ctx: CommandContext, _args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        if !ctx.bridge.settings.relay.enabled {
            return ctx.reply("Relay mode is disabled on this bridge (`bridge.relay.enabled`).").await;
        }
        let Some(key) = ctx.bridge.portals.key_for_room(&ctx.bridge, &ctx.room).await else {
            return ctx.reply("This room is not a portal.").await;
        };
        let logins = ctx.bridge.logins.of_user(&ctx.sender);
        let login = if key.receiver.is_empty() { logins.first() } else { logins.iter().find(|l| l.id.as_str() == key.receiver) };
        let Some(login) = login else {
            return ctx.reply("You have no login in this chat to relay through.").await;
        };
        match ctx.bridge.portals.set_relay(&ctx.bridge, &ctx.room, Some(login.id.clone())).await {
            Ok(()) => ctx.reply(&format!("Messages of users without a login are now relayed through {}.", login.remote_name)).await,
            Err(e) => ctx.reply(&format!("Could not set the relay: {e}")).await,
        }
    })
}

fn unset_relay(ctx: CommandContext, _args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        if ctx.bridge.portals.key_for_room(&ctx.bridge, &ctx.room).await.is_none() {
            return ctx.reply("This room is not a portal.").await;
        }
        match ctx.bridge.portals.set_relay(&ctx.bridge, &ctx.room, None).await {
            Ok(()) => ctx.reply("Messages are no longer relayed in this room.").await,
            Err(e) => ctx.reply(&format!("Could not unset the relay: {e}")).await,
        }
    })
}

fn delete_portal(ctx: CommandContext, _args: Vec<String>) -> CommandFuture {
    Box::pin(async move {
        if ctx.bridge.portals.key_for_room(&ctx.bridge, &ctx.room).await.is_none() {
            return ctx.reply("This room is not a portal.").await;
        }
        ctx.reply("Deleting this portal: everyone will be removed and the room is no longer bridged.").await?;
        if let Err(e) = ctx.bridge.portals.delete(&ctx.bridge, &ctx.room).await {
            ctx.reply(&format!("Could not delete the portal: {e}")).await?;
        }
        Ok(())
    })
}
