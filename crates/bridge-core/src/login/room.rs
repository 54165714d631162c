//! The management-room front end of a login: one task per flow that owns its
//! [`LoginDriver`], asks for input field by field, shows QR codes and codes, and ends the
//! flow on completion, failure, `cancel` or inactivity.
//!
//! The task receives the user's messages through a channel fed by
//! [`super::LoginSessions::intercept`]; the flag `awaiting_input` tells `intercept` whether
//! the next message is an answer (it is set just before each prompt is sent, and cleared by
//! `intercept` when it hands a message over, so exactly one message answers each prompt).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use ruma::{events::MessageLikeEventType, serde::Raw, OwnedEventId, OwnedRoomId};
use tokio::{sync::mpsc, time::Instant};

use super::{
    driver::{Advance, LoginDriver, LoginError},
    prompt::InputCollector,
    qr,
};
use crate::{
    bridge::Bridge,
    commands,
    network::login::{Display, LoginStep},
};

/// A message from the user to their login task.
#[derive(Debug)]
pub(super) enum RoomInput {
    /// The answer to the current prompt.
    Answer {
        /// The message's event (redacted if the field is a secret).
        event_id: OwnedEventId,
        /// The message's text. Never logged.
        body: String,
    },
    /// `cancel`, from the command or typed at a prompt.
    Cancel {
        /// The `cancel` message, which the confirmation replies to.
        event_id: OwnedEventId,
    },
}

/// How a flow ended.
enum End {
    Completed,
    Cancelled,
    TimedOut,
    Failed,
    Shutdown,
}

/// What the task waited for.
enum Waited<T> {
    Done(T),
    Cancel(OwnedEventId),
    TimedOut,
    Shutdown,
}

/// Runs a login flow in `room` until it ends. `reply_to` is the `login` command's event.
pub(super) async fn run(
    bridge: Arc<Bridge>,
    mut driver: LoginDriver,
    room: OwnedRoomId,
    reply_to: OwnedEventId,
    mut inputs: mpsc::Receiver<RoomInput>,
    awaiting_input: Arc<AtomicBool>,
    ended: impl FnOnce(),
) {
    let timeout = Duration::from_secs(bridge.settings.login_timeout_secs.max(1));
    let mut view = RoomView { bridge: bridge.clone(), room, reply_to, qr_events: Vec::new() };
    let mut deadline = Instant::now() + timeout;
    let shutdown = bridge.shutdown.clone();

    let mut outcome = race(driver.start(), &mut inputs, deadline, &shutdown).await;
    let end = loop {
        // Why the network rejected the last answer; said before the step is asked again.
        let mut rejection = None;
        let step = match outcome {
            Waited::Done(Ok(Advance::Next(step))) => step,
            Waited::Done(Ok(Advance::Rejected { message, step })) => {
                rejection = Some(message);
                step
            }
            Waited::Done(Ok(Advance::Completed { step, login })) => {
                let mut text = format!("Logged in as {}.", login.remote_name);
                if let LoginStep::Complete { instructions, .. } = &step {
                    let instructions = instructions.trim();
                    if instructions.contains(&login.remote_name) {
                        // The network's own words already say who: one message, not two.
                        text = instructions.to_owned();
                    } else if !instructions.is_empty() {
                        text = format!("{text}\n{instructions}");
                    }
                }
                view.notice(&text).await;
                break End::Completed;
            }
            Waited::Done(Err(e)) => {
                view.notice(&format!("Login failed: {e}.")).await;
                break End::Failed;
            }
            Waited::Cancel(event_id) => {
                view.reply_to = event_id;
                break End::Cancelled;
            }
            Waited::TimedOut => break End::TimedOut,
            Waited::Shutdown => break End::Shutdown,
        };
        outcome = match step {
            LoginStep::UserInput { instructions, fields, .. } => {
                let mut collector = InputCollector::new(&instructions, fields);
                let answers = loop {
                    let Some(mut prompt) = collector.prompt() else { break Waited::Done(Default::default()) };
                    if let Some(message) = rejection.take() {
                        prompt = format!("{}\n{prompt}", capitalize(&message));
                    }
                    let secret = collector.current().map(|f| (f.kind.is_secret(), f.name.clone()));
                    awaiting_input.store(true, Ordering::SeqCst);
                    view.notice(&prompt).await;
                    let answer = tokio::select! {
                        input = inputs.recv() => input,
                        _ = tokio::time::sleep_until(deadline) => break Waited::TimedOut,
                        _ = shutdown.cancelled() => break Waited::Shutdown,
                    };
                    match answer {
                        Some(RoomInput::Answer { event_id, body }) => {
                            deadline = Instant::now() + timeout;
                            if let Some((true, name)) = &secret {
                                view.redact_answer(&event_id, name).await;
                            }
                            view.reply_to = event_id;
                            if let Some(values) = collector.accept(&body) {
                                break Waited::Done(values);
                            }
                        }
                        Some(RoomInput::Cancel { event_id }) => break Waited::Cancel(event_id),
                        None => break Waited::Shutdown,
                    }
                };
                awaiting_input.store(false, Ordering::SeqCst);
                match answers {
                    Waited::Done(values) => race(driver.submit(values), &mut inputs, deadline, &shutdown).await,
                    Waited::Cancel(e) => Waited::Cancel(e),
                    Waited::TimedOut => Waited::TimedOut,
                    Waited::Shutdown => Waited::Shutdown,
                }
            }
            LoginStep::DisplayAndWait { instructions, display, .. } => {
                if let Some(message) = rejection.take() {
                    view.notice(&capitalize(&message)).await;
                }
                if let Err(e) = view.show(&instructions, &display).await {
                    view.notice(&format!("Login failed: could not show the login step: {e}.")).await;
                    break End::Failed;
                }
                race(driver.wait(), &mut inputs, deadline, &shutdown).await
            }
            LoginStep::Complete { .. } => break End::Completed,
        };
    };

    awaiting_input.store(false, Ordering::SeqCst);
    if !matches!(end, End::Completed | End::Failed) {
        driver.cancel().await;
    }
    // A new `login` may start from here on, while the last messages are sent.
    ended();
    match end {
        End::Cancelled => view.notice("Login cancelled.").await,
        End::TimedOut => {
            let waited = commands::human_duration(timeout);
            view.notice(&format!("The login timed out after {waited} without an answer and was cancelled. Send `login` to start again.")).await;
        }
        End::Shutdown | End::Completed | End::Failed => {}
    }
    view.redact_qr().await;
}

/// `text` with its first letter in upper case (network messages are often lowercase).
fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Runs `op` until it finishes, the user cancels, the deadline passes or the bridge stops.
/// Answers that arrive meanwhile are dropped (`intercept` only forwards them while a
/// prompt is open, so there are none).
async fn race<T>(
    op: impl std::future::Future<Output = T>,
    inputs: &mut mpsc::Receiver<RoomInput>,
    deadline: Instant,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Waited<T> {
    tokio::pin!(op);
    loop {
        tokio::select! {
            result = &mut op => return Waited::Done(result),
            input = inputs.recv() => match input {
                Some(RoomInput::Cancel { event_id }) => return Waited::Cancel(event_id),
                Some(RoomInput::Answer { .. }) => continue,
                None => return Waited::Shutdown,
            },
            _ = tokio::time::sleep_until(deadline) => return Waited::TimedOut,
            _ = shutdown.cancelled() => return Waited::Shutdown,
        }
    }
}

/// What the flow shows in the management room.
struct RoomView {
    bridge: Arc<Bridge>,
    room: OwnedRoomId,
    /// The user's latest message in the flow, which notices reply to.
    reply_to: OwnedEventId,
    /// The QR image event and its edits (refreshes edit the first); all are redacted at
    /// the end, since each holds a credential.
    qr_events: Vec<OwnedEventId>,
}

impl RoomView {
    async fn notice(&self, text: &str) {
        if let Err(e) = commands::reply(&self.bridge, &self.room, Some(&self.reply_to), text).await {
            tracing::warn!(room = %self.room, error = %format!("{e:#}"), "could not send a login message");
        }
    }

    /// Shows a display-and-wait step: a QR image (edited in place on refreshes), a code,
    /// or just the instructions.
    async fn show(&mut self, instructions: &str, display: &Display) -> Result<(), LoginError> {
        match display {
            Display::Qr(data) => self.show_qr(instructions, data).await,
            Display::Code(code) => {
                self.notice(&format!("{}\n{code}", instructions.trim_end())).await;
                Ok(())
            }
            Display::Nothing => {
                self.notice(instructions).await;
                Ok(())
            }
        }
    }

    async fn show_qr(&mut self, instructions: &str, data: &str) -> Result<(), LoginError> {
        let fail = |e: String| LoginError::Save(e);
        let image = qr::render_png(data).map_err(|e| fail(e.to_string()))?;
        let bot = self.bridge.bot_intent();
        let url = bot.upload(image.bytes.clone(), "image/png", Some("qr.png")).await.map_err(|e| fail(e.to_string()))?;
        let content = qr::image_content(instructions, &url, &image);
        let body = match self.qr_events.first() {
            Some(first) => qr::edit_content(first, &content),
            None => content,
        };
        let raw = serde_json::value::to_raw_value(&body).map_err(|e| fail(e.to_string()))?;
        let event_id = bot
            .send_message_raw(&self.room, MessageLikeEventType::RoomMessage, Raw::from_json(raw), None)
            .await
            .map_err(|e| fail(e.to_string()))?;
        self.qr_events.push(event_id);
        Ok(())
    }

    /// Redacts the user's answer to a secret field; if the bot may not, asks the user to.
    async fn redact_answer(&self, event_id: &OwnedEventId, field: &str) {
        let bot = self.bridge.bot_intent();
        if let Err(e) = bot.redact(&self.room, event_id, Some("login secret")).await {
            tracing::info!(room = %self.room, error = %e, "could not redact a login secret");
            let text = format!("I could not delete your message with the {field}; please delete it yourself.");
            if let Err(e) = commands::reply(&self.bridge, &self.room, None, &text).await {
                tracing::warn!(error = %format!("{e:#}"), "could not send a login message");
            }
        }
    }

    /// Redacts the QR image and its edits (they are credentials) once the flow has ended.
    async fn redact_qr(&mut self) {
        let bot = self.bridge.bot_intent();
        for event_id in std::mem::take(&mut self.qr_events) {
            if let Err(e) = bot.redact(&self.room, &event_id, Some("login finished")).await {
                tracing::warn!(room = %self.room, error = %e, "could not redact the login QR code");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capitalize;

    #[test]
    fn capitalize_upper_cases_the_first_letter() {
        for (input, want) in [("wrong code, try again", "Wrong code, try again"), ("", ""), ("É", "É"), ("ok", "Ok")] {
            assert_eq!(capitalize(input), want);
        }
    }
}
