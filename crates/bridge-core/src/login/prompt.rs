//! Asking for the fields of a user-input step one at a time, in the management room.
//!
//! Pure logic: [`InputCollector`] says what to ask next and gathers the answers; the room
//! front end sends the prompts and feeds it the user's messages.

use std::collections::BTreeMap;

use crate::network::login::{FieldKind, InputField};

/// Collects the values of one user-input step, field by field, in the step's order.
#[derive(Debug, Clone)]
pub struct InputCollector {
    instructions: String,
    fields: Vec<InputField>,
    values: BTreeMap<String, String>,
}

impl InputCollector {
    /// A collector for a step with these instructions and fields.
    pub fn new(instructions: &str, fields: Vec<InputField>) -> Self {
        Self { instructions: instructions.to_owned(), fields, values: BTreeMap::new() }
    }

    /// The field asked for now, or `None` when every field has a value.
    pub fn current(&self) -> Option<&InputField> {
        self.fields.get(self.values.len())
    }

    /// The message asking for the current field: the step's instructions before the first
    /// field, then the field's name and description, and how to stop.
    pub fn prompt(&self) -> Option<String> {
        let field = self.current()?;
        let mut text = String::new();
        if self.values.is_empty() && !self.instructions.trim().is_empty() {
            text.push_str(self.instructions.trim_end());
            text.push('\n');
        }
        text.push_str(&format!("Please send your {}", field.name));
        match field.description.as_deref().map(str::trim) {
            Some(description) if !description.is_empty() => text.push_str(&format!(" ({description})")),
            _ => {}
        }
        text.push('.');
        if field.kind.is_secret() {
            text.push_str(" I will delete your message once I have read it.");
        }
        text.push_str(" Send `cancel` to stop.");
        Some(text)
    }

    /// Takes the user's answer to the current field. Returns every value, keyed by field
    /// ID, once the last field is answered.
    pub fn accept(&mut self, value: &str) -> Option<BTreeMap<String, String>> {
        let field = self.current()?;
        let value = match field.kind {
            FieldKind::Password => value.to_owned(),
            _ => value.trim().to_owned(),
        };
        self.values.insert(field.id.clone(), value);
        self.current().is_none().then(|| self.values.clone())
    }

    /// Forgets the answers (after the network rejected them) to ask again from the start.
    pub fn restart(&mut self) {
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(id: &str, kind: FieldKind, description: Option<&str>) -> InputField {
        InputField { id: id.into(), kind, name: id.replace('_', " "), description: description.map(Into::into) }
    }

    #[test]
    fn asks_fields_in_order_and_collects_them() {
        let mut collector = InputCollector::new(
            "Log in with your phone.",
            vec![
                field("phone_number", FieldKind::PhoneNumber, Some("international format")),
                field("password", FieldKind::Password, None),
            ],
        );
        let steps = [
            (
                "Log in with your phone.\nPlease send your phone number (international format). Send `cancel` to stop.",
                " +15550001 ",
                None,
            ),
            (
                "Please send your password. I will delete your message once I have read it. Send `cancel` to stop.",
                " pa ss ",
                Some([("password", " pa ss "), ("phone_number", "+15550001")]),
            ),
        ];
        for (want_prompt, answer, want_done) in steps {
            assert_eq!(collector.prompt().as_deref(), Some(want_prompt));
            let done = collector.accept(answer);
            let want = want_done.map(|pairs| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
            assert_eq!(done, want);
        }
        assert_eq!(collector.prompt(), None);
        collector.restart();
        assert_eq!(collector.current().map(|f| f.id.as_str()), Some("phone_number"));
    }

    #[test]
    fn a_step_without_fields_is_complete_at_once() {
        let mut collector = InputCollector::new("", Vec::new());
        assert_eq!(collector.prompt(), None);
        assert_eq!(collector.accept("x"), None);
    }
}
