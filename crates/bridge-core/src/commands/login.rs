//! Login commands: `login`, `logout`, `list-logins`, `relogin`, `cancel`.

use super::CommandSpec;

/// The login commands.
pub(super) const COMMANDS: &[CommandSpec] = &[];
