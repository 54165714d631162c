//! A contact: a second, real whatsapp-rust client that a test drives, linked to its own
//! account on the simulator ([`super::WhatsappSim::contact`]). Signal sessions between it
//! and the bridge are real on both ends; the test reads what it received.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use bridge_whatsapp::client::{build_bot, BotOptions};
use bridge_whatsapp::device_store::DeviceStore;
use bridge_whatsapp::WhatsappConfig;
use whatsapp_rust::bot::BotHandle;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore_binary::Jid;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::Client;

/// A message the contact received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message ID.
    pub id: String,
    /// The sending account (phone number).
    pub from: String,
    /// The chat: the group's JID, or the other account's phone number in a DM.
    pub chat: String,
    /// The message.
    pub message: wa::Message,
}

impl Received {
    /// Its text, if it is a text message.
    pub fn text(&self) -> Option<&str> {
        use whatsapp_rust::wacore::proto_helpers::MessageExt as _;
        self.message.text_content()
    }

    /// The accounts (JIDs) its text mentions.
    pub fn mentions(&self) -> Vec<String> {
        self.message
            .extended_text_message
            .as_option()
            .and_then(|text| text.context_info.as_option())
            .map(|context| context.mentioned_jid.clone())
            .unwrap_or_default()
    }

    /// The message it quotes (replies to), if any.
    pub fn quoted(&self) -> Option<&str> {
        self.message
            .extended_text_message
            .as_option()?
            .context_info
            .as_option()?
            .stanza_id
            .as_deref()
    }

    /// For an edit: the edited message and its new text.
    pub fn edit(&self) -> Option<(&str, &str)> {
        use whatsapp_rust::wacore::proto_helpers::MessageExt as _;
        let protocol = self.message.protocol_message.as_option()?;
        let edited = protocol.edited_message.as_option()?.text_content()?;
        Some((protocol.key.as_option()?.id.as_deref()?, edited))
    }

    /// For a revoke: the message deleted.
    pub fn revoked(&self) -> Option<&str> {
        use wa::message::protocol_message::Type;
        let protocol = self.message.protocol_message.as_option()?;
        (protocol.r#type == Some(Type::Revoke))
            .then(|| protocol.key.as_option()?.id.as_deref())
            .flatten()
    }

    /// For a reaction: the message reacted to and the emoji (empty: removed).
    pub fn reaction(&self) -> Option<(&str, &str)> {
        let reaction = self.message.reaction_message.as_option()?;
        Some((
            reaction.key.as_option()?.id.as_deref()?,
            reaction.text.as_deref().unwrap_or_default(),
        ))
    }
}

/// What [`Contact::send_media`] sends.
#[derive(Debug, Clone, Copy)]
pub enum SendMedia<'a> {
    /// An image of this MIME type, with a caption.
    Image {
        /// The MIME type.
        mime: &'a str,
        /// The caption.
        caption: &'a str,
    },
    /// A voice note (push to talk) of this length, Opus in Ogg.
    Voice {
        /// Its length.
        seconds: u32,
    },
    /// A document.
    Document {
        /// The MIME type.
        mime: &'a str,
        /// The file name.
        file_name: &'a str,
    },
}

/// A receipt the contact received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptSeen {
    /// The messages it names.
    pub ids: Vec<String>,
    /// Its type (`delivered`, `read`, …).
    pub kind: String,
}

#[derive(Default)]
struct Seen {
    messages: Vec<Received>,
    receipts: Vec<ReceiptSeen>,
    typing: Vec<(String, bool)>,
}

/// A linked contact client.
pub struct Contact {
    /// Its account's phone number.
    pub phone: String,
    bot: Option<BotHandle>,
    client: Arc<Client>,
    seen: Arc<Mutex<Seen>>,
}

/// The JID of account `phone`.
pub fn user_jid(phone: &str) -> Jid {
    Jid::pn(phone)
}

/// The JID of a chat: a group's JID as it is, else account `to`'s.
fn chat_jid(to: &str) -> anyhow::Result<Jid> {
    if to.contains('@') {
        return to.parse().map_err(|e| anyhow!("{to}: {e:?}"));
    }
    Ok(user_jid(to))
}

impl Contact {
    /// Links a new device of account `phone` (named `name`) through `sim`'s phone and
    /// waits until it is connected.
    pub(crate) async fn link(
        sim: &super::WhatsappSim,
        phone: &str,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let config = WhatsappConfig {
            websocket_url: sim.url(),
            ..WhatsappConfig::default()
        };
        let options = BotOptions::default().with_push_name(name);
        sim.set_push_name(phone, name);
        let (bot, mut events) = build_bot(&config, DeviceStore::in_memory(), options)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let client = bot.client();
        let bot = bot.spawn();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let linking = async {
            while let Some(event) = events.recv().await {
                match &*event {
                    Event::PairingQrCode(qr) => sim.scan(&qr.code, phone, timeout).await?,
                    Event::Connected(_) => return Ok(()),
                    _ => {}
                }
            }
            Err(anyhow!("the contact's client stopped"))
        };
        tokio::time::timeout(timeout, linking)
            .await
            .context("the contact to link and connect")??;
        let recorder = seen.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                record(&recorder, &event);
            }
        });
        Ok(Self {
            phone: phone.to_owned(),
            bot: Some(bot),
            client,
            seen,
        })
    }

    /// Sends `message` to account `to` (or the group with JID `to`); returns its ID.
    pub async fn send(&self, to: &str, message: wa::Message) -> anyhow::Result<String> {
        let sent = self.client.send_message(chat_jid(to)?, message).await?;
        Ok(sent.message_id)
    }

    /// Sends a text to account `to` (or the group with JID `to`); returns its ID.
    pub async fn send_text(&self, to: &str, text: &str) -> anyhow::Result<String> {
        let sent = self.client.send_text(chat_jid(to)?, text).await?;
        Ok(sent.message_id)
    }

    /// Sends a text that mentions the accounts `mentioned` (their `@<phone>` should be in
    /// it) to account or group `to`; returns its ID.
    pub async fn send_mentioning(
        &self,
        to: &str,
        text: &str,
        mentioned: &[&str],
    ) -> anyhow::Result<String> {
        use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt as _;
        let context = wa::ContextInfo {
            mentioned_jid: mentioned.iter().map(|p| user_jid(p).to_string()).collect(),
            ..Default::default()
        };
        self.send(to, wa::Message::text_with_context(text, context))
            .await
    }

    /// Sends `text` to account `to` as a reply to message `quoted` of account `author`;
    /// returns its ID.
    pub async fn reply(
        &self,
        to: &str,
        text: &str,
        quoted: &str,
        author: &str,
    ) -> anyhow::Result<String> {
        use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt as _;
        let context = wa::ContextInfo {
            stanza_id: Some(quoted.to_owned()),
            participant: Some(user_jid(author).to_string()),
            quoted_message: whatsapp_rust::buffa::MessageField::some(wa::Message::text("")),
            ..Default::default()
        };
        self.send(to, wa::Message::text_with_context(text, context))
            .await
    }

    /// Uploads `data` as WhatsApp does (whatsapp-rust encrypts it with a new media key)
    /// and sends it to account or group `to` as an image (`caption`), a voice note, or a
    /// document named `file_name`, by `kind`; returns the message's ID.
    pub async fn send_media(
        &self,
        to: &str,
        kind: SendMedia<'_>,
        data: &[u8],
    ) -> anyhow::Result<String> {
        use whatsapp_rust::download::MediaType;
        use whatsapp_rust::media;
        let media_type = match kind {
            SendMedia::Image { .. } => MediaType::Image,
            SendMedia::Voice { .. } => MediaType::Audio,
            SendMedia::Document { .. } => MediaType::Document,
        };
        let uploaded = self
            .client
            .upload(
                data.to_vec(),
                media_type,
                whatsapp_rust::UploadOptions::default(),
            )
            .await?;
        let message = match kind {
            SendMedia::Image { mime, caption } => media::image_message(
                uploaded,
                media::ImageOptions {
                    caption: Some(caption.to_owned()),
                    mimetype: Some(mime.to_owned()),
                    ..Default::default()
                },
            ),
            SendMedia::Voice { seconds } => media::audio_message(
                uploaded,
                media::AudioOptions {
                    ptt: Some(true),
                    duration_seconds: Some(seconds),
                    ..Default::default()
                },
            ),
            SendMedia::Document { mime, file_name } => media::document_message(
                uploaded,
                media::DocumentOptions {
                    mimetype: Some(mime.to_owned()),
                    file_name: Some(file_name.to_owned()),
                    ..Default::default()
                },
            ),
        };
        self.send(to, message).await
    }

    /// Downloads and decrypts the attachment of a received message, as the WhatsApp app
    /// would: whatsapp-rust checks its MAC and hashes against the message's keys.
    pub async fn download(&self, received: &Received) -> anyhow::Result<Vec<u8>> {
        let message = &received.message;
        let file: &dyn whatsapp_rust::download::Downloadable =
            if let Some(m) = message.image_message.as_option() {
                m
            } else if let Some(m) = message.audio_message.as_option() {
                m
            } else if let Some(m) = message.document_message.as_option() {
                m
            } else if let Some(m) = message.video_message.as_option() {
                m
            } else {
                anyhow::bail!("message {} has no attachment", received.id)
            };
        self.client.download(file).await
    }

    /// Replaces the text of message `id` the contact sent to `to`.
    pub async fn edit(&self, to: &str, id: &str, text: &str) -> anyhow::Result<()> {
        let content = wa::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        self.client.edit_message(user_jid(to), id, content).await?;
        Ok(())
    }

    /// Deletes message `id` the contact sent to `to`, for everyone.
    pub async fn revoke(&self, to: &str, id: &str) -> anyhow::Result<()> {
        self.client
            .revoke_message(user_jid(to), id, whatsapp_rust::send::RevokeType::Sender)
            .await?;
        Ok(())
    }

    /// Reacts with `emoji` (empty: removes the reaction) to message `id` of the chat with
    /// `to`, sent by the contact (`from_me`) or by `to`.
    pub async fn react(
        &self,
        to: &str,
        id: &str,
        from_me: bool,
        emoji: &str,
    ) -> anyhow::Result<()> {
        let key = wa::MessageKey {
            remote_jid: Some(user_jid(to).to_string()),
            from_me: Some(from_me),
            id: Some(id.to_owned()),
            ..Default::default()
        };
        self.client.send_reaction(user_jid(to), key, emoji).await?;
        Ok(())
    }

    /// Marks messages of account `from` read.
    pub async fn mark_read(&self, from: &str, ids: &[&str]) -> anyhow::Result<()> {
        self.client.mark_as_read(&user_jid(from), None, ids).await
    }

    /// Shows "typing…" (or stops) in the chat with `to`.
    pub async fn typing(&self, to: &str, typing: bool) -> anyhow::Result<()> {
        let chatstate = self.client.chatstate();
        if typing {
            chatstate.send_composing(&user_jid(to)).await?;
        } else {
            chatstate.send_paused(&user_jid(to)).await?;
        }
        Ok(())
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        lock(&self.seen).messages.clone()
    }

    /// Every receipt received so far, oldest first.
    pub fn receipts(&self) -> Vec<ReceiptSeen> {
        lock(&self.seen).receipts.clone()
    }

    /// Every chat state received so far: (account, typing).
    pub fn typing_seen(&self) -> Vec<(String, bool)> {
        lock(&self.seen).typing.clone()
    }

    /// Waits for a received message that `want` accepts and returns it.
    pub async fn wait_message(
        &self,
        timeout: Duration,
        what: &str,
        want: impl Fn(&Received) -> bool,
    ) -> anyhow::Result<Received> {
        crate::wait_until(timeout, what, async || {
            Ok(self.messages().into_iter().find(|m| want(m)))
        })
        .await
    }

    /// Disconnects the contact's client.
    pub async fn stop(mut self) {
        if let Some(bot) = self.bot.take() {
            bot.shutdown().await;
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn record(seen: &Mutex<Seen>, event: &Event) {
    match event {
        Event::Messages(batch) => {
            let mut seen = lock(seen);
            for inbound in batch.iter() {
                seen.messages.push(Received {
                    id: inbound.info.id.clone(),
                    from: inbound.info.source.sender.user.to_string(),
                    chat: if inbound.info.source.is_group {
                        inbound.info.source.chat.to_non_ad().to_string()
                    } else {
                        inbound.info.source.chat.user.to_string()
                    },
                    message: (*inbound.message).clone(),
                });
            }
        }
        Event::Receipt(receipt) => lock(seen).receipts.push(ReceiptSeen {
            ids: receipt
                .message_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
            kind: format!("{:?}", receipt.r#type).to_lowercase(),
        }),
        Event::ChatPresence(presence) => lock(seen).typing.push((
            presence.source.sender.user.to_string(),
            matches!(
                presence.state,
                whatsapp_rust::wacore::types::presence::ChatPresence::Composing
            ),
        )),
        _ => {}
    }
}
