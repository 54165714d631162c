//! Conversions between WhatsApp messages and the core's message contents. Empty in stage 1
//! of the bridge (the connection and login); text, formatting and media come with stage 2.
