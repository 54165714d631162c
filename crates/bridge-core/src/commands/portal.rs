//! Portal commands: `start-chat`, `set-relay`, `unset-relay`, `delete-portal`.

use super::CommandSpec;

/// The portal commands.
pub(super) const COMMANDS: &[CommandSpec] = &[];
