//! Discord markdown ↔ Matrix HTML: any input converts without a panic, both ways.
#![no_main]

use bridge_discord::convert::html_to_md::{html_to_markdown, GhostResolver};
use bridge_discord::convert::md_to_html::{markdown_to_matrix, MentionResolver};
use libfuzzer_sys::fuzz_target;

struct Names;

impl MentionResolver for Names {
    fn user(&self, id: &str) -> (String, String) {
        (format!("user {id}"), format!("<a href=\"https://matrix.to/#/@discord_{id}:example.com\">user {id}</a>"))
    }
    fn role(&self, id: &str) -> Option<String> {
        (id.len() % 2 == 0).then(|| format!("role {id}"))
    }
    fn channel(&self, id: &str) -> Option<String> {
        (id.len() % 2 == 1).then(|| format!("channel {id}"))
    }
}

impl GhostResolver for Names {
    fn discord_user(&self, matrix_user_id: &str) -> Option<String> {
        matrix_user_id.strip_prefix("@discord_").and_then(|rest| rest.split(':').next()).map(str::to_owned)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let converted = markdown_to_matrix(text, &Names);
    let _ = html_to_markdown(text, &Names);
    if let Some(html) = converted.html.as_deref() {
        let _ = html_to_markdown(html, &Names);
    }
});
