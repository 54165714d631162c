//! Telegram-specific bot commands. None yet: `login`, `logout`, `ping` and the rest come from
//! the core's command table, which hides commands whose capability the client lacks.
