//! Core → WhatsApp: sending what Matrix users write. Stage 1 of the bridge (the connection
//! and login) sends nothing yet: [`crate::client::WhatsappClient`] answers "not supported".
