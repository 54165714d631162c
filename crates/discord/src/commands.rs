//! Discord-specific bot commands (`guilds`, `guilds bridge <id>`, …). None yet: the core's
//! commands (`login`, `logout`, `ping`, …) cover what this crate offers so far.
