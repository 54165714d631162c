//! WhatsApp-specific bot commands. None yet: `login` (flows `qr` and `phone`), `logout`,
//! `ping` and the rest come from the core's command table.
