//! Conversions between WhatsApp's text formatting and Matrix HTML.
//!
//! WhatsApp marks formatting in the text itself: `*bold*`, `_italic_`, `~strike~`,
//! `` `inline code` `` and ```` ```monospace``` ````. A marker opens only at the start of a
//! word (after a space, a line break, punctuation or the start) before a non-space, and
//! closes before the end of a word; all but ```` ``` ```` stay within one line, and code
//! is taken literally. [`to_matrix`] renders that as HTML (the body keeps the text as it
//! was written, but for mentions); [`from_matrix`] writes Matrix HTML back as WhatsApp
//! text, pills of the bridge's ghosts as `@<number>` mentions.
//!
//! A WhatsApp mention is `@<number>` in the text with the account's JID in the message's
//! `mentionedJid`: it becomes a pill of the person (their ghost, or the Matrix user for
//! the login's own account) in the HTML and their name in the body.

use bridge_core::network::EventSender;
use ruma::html::{Html, NodeData, NodeRef};

/// A person a WhatsApp message mentions (`@<phone>` in its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The phone number (digits) after the `@`.
    pub phone: String,
    /// Their name, for the body.
    pub name: String,
    /// The HTML pill that stands for them.
    pub pill: String,
}

/// WhatsApp text → the Matrix body and, when it has formatting or mentions, HTML.
/// `mentions` are the people the message's context names: each `@<phone>` of theirs
/// becomes their pill (HTML) and their name (body).
pub fn to_matrix(text: &str, mentions: &[Mention]) -> (String, Option<String>) {
    let chars: Vec<char> = text.chars().collect();
    let mut html = String::new();
    let formatted = render(&chars, mentions, &mut html);
    let mut body = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some((end, mention)) = mention_at(&chars, i, mentions) {
            body.push_str(&mention.name);
            i = end;
            continue;
        }
        body.push(chars[i]);
        i += 1;
    }
    (body, formatted.then_some(html))
}

/// A mention (`@<phone>` of one of `mentions`, at the start of a word) at `i`: where it
/// ends, and whom it names.
fn mention_at<'m>(
    chars: &[char],
    i: usize,
    mentions: &'m [Mention],
) -> Option<(usize, &'m Mention)> {
    if chars[i] != '@' || !is_boundary(i.checked_sub(1).and_then(|p| chars.get(p))) {
        return None;
    }
    let digits = chars[i + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let end = i + 1 + digits;
    if digits == 0 || chars.get(end).is_some_and(|c| c.is_alphanumeric()) {
        return None;
    }
    let phone: String = chars[i + 1..end].iter().collect();
    let mention = mentions.iter().find(|m| m.phone == phone)?;
    Some((end, mention))
}

/// Whether `c` may stand right outside a marker (the start of a word is before it, or
/// its end after it).
fn is_boundary(c: Option<&char>) -> bool {
    c.is_none_or(|c| !c.is_alphanumeric())
}

/// Renders `chars` as HTML into `out`; returns whether any formatting (or mention) was
/// found.
fn render(chars: &[char], mentions: &[Mention], out: &mut String) -> bool {
    let mut formatted = false;
    let mut i = 0;
    while i < chars.len() {
        if let Some((end, mention)) = mention_at(chars, i, mentions) {
            out.push_str(&mention.pill);
            formatted = true;
            i = end;
            continue;
        }
        if let Some((end, html)) = span_at(chars, i, mentions) {
            out.push_str(&html);
            formatted = true;
            i = end;
            continue;
        }
        push_escaped(out, chars[i]);
        i += 1;
    }
    formatted
}

/// A formatted span starting at `i`: where it ends, and its HTML.
fn span_at(chars: &[char], i: usize, mentions: &[Mention]) -> Option<(usize, String)> {
    let before = i.checked_sub(1).and_then(|p| chars.get(p));
    if !is_boundary(before) {
        return None;
    }
    if chars[i..].starts_with(&['`', '`', '`']) {
        let start = i + 3;
        let close = (start..chars.len().saturating_sub(2))
            .find(|&j| chars[j..].starts_with(&['`', '`', '`']) && j > start)?;
        let code: String = chars[start..close].iter().collect();
        let code = escape(&code);
        let html = if code.contains('\n') {
            format!("<pre><code>{code}</code></pre>")
        } else {
            format!("<code>{code}</code>")
        };
        return Some((close + 3, html));
    }
    let marker = chars[i];
    let tag = match marker {
        '*' => "strong",
        '_' => "em",
        '~' => "del",
        '`' => "code",
        _ => return None,
    };
    let first = chars.get(i + 1)?;
    if first.is_whitespace() || *first == marker {
        return None;
    }
    let close = (i + 2..chars.len()).find(|&j| {
        chars[j] == marker && !chars[j - 1].is_whitespace() && is_boundary(chars.get(j + 1))
    })?;
    let inner = &chars[i + 1..close];
    if inner.contains(&'\n') {
        return None;
    }
    let mut html = format!("<{tag}>");
    if marker == '`' {
        html.push_str(&escape(&inner.iter().collect::<String>()));
    } else {
        render(inner, mentions, &mut html);
    }
    html.push_str(&format!("</{tag}>"));
    Some((close + 1, html))
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\n' => out.push_str("<br>"),
        c => out.push(c),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            c => push_escaped(&mut out, c),
        }
    }
    out
}

/// Matrix body and HTML → WhatsApp text, and the accounts (phone numbers) it mentions.
/// Without HTML the body goes as it is.
pub fn from_matrix(body: &str, html: Option<&str>, events: &EventSender) -> (String, Vec<String>) {
    let Some(html) = html else {
        return (body.to_owned(), Vec::new());
    };
    let document = Html::parse(html);
    let mut walker = Walker {
        events,
        text: String::new(),
        mentions: Vec::new(),
        in_pre: false,
    };
    for child in document.children() {
        walker.node(&child);
    }
    let text = walker.text.trim_end_matches('\n').to_owned();
    (text, walker.mentions)
}

/// Elements that start and end a line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "pre",
    "blockquote",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
];

/// The value of an element's attribute.
fn attribute(element: &ruma::html::ElementData, key: &str) -> Option<String> {
    let attrs = element.attrs.borrow();
    let found = attrs.iter().find(|a| &*a.name.local == key)?;
    Some(found.value.to_string())
}

struct Walker<'e> {
    events: &'e EventSender,
    text: String,
    mentions: Vec<String>,
    in_pre: bool,
}

impl Walker<'_> {
    fn children(&mut self, node: &NodeRef) {
        for child in node.children() {
            self.node(&child);
        }
    }

    /// Wraps what `node`'s children write in `marker`s (trailing spaces stay outside).
    fn wrapped(&mut self, node: &NodeRef, marker: &str) {
        let start = self.text.len();
        self.text.push_str(marker);
        self.children(node);
        let inner = &self.text[start + marker.len()..];
        if inner.trim().is_empty() {
            self.text.replace_range(start..start + marker.len(), "");
            return;
        }
        let trailing = inner.len() - inner.trim_end().len();
        let cut = self.text.len() - trailing;
        let tail = self.text.split_off(cut);
        self.text.push_str(marker);
        self.text.push_str(&tail);
    }

    /// Text as it reads: line breaks in HTML text are spaces, except in `<pre>`.
    fn push_text(&mut self, text: &str) {
        if self.in_pre {
            self.text.push_str(text);
        } else {
            self.text
                .push_str(&text.replace("\r\n", " ").replace('\n', " "));
        }
    }

    fn node(&mut self, node: &NodeRef) {
        match node.data() {
            NodeData::Text(text) => self.push_text(&text.borrow()),
            NodeData::Element(element) => {
                let name: &str = &element.name.local;
                let block = BLOCKS.contains(&name);
                if block && !self.text.is_empty() && !self.text.ends_with('\n') {
                    self.text.push('\n');
                }
                match name {
                    "mx-reply" => return,
                    "br" => self.text.push('\n'),
                    "strong" | "b" => self.wrapped(node, "*"),
                    "em" | "i" => self.wrapped(node, "_"),
                    "del" | "s" | "strike" => self.wrapped(node, "~"),
                    "code" if !self.in_pre => self.wrapped(node, "`"),
                    "pre" => {
                        self.in_pre = true;
                        self.text.push_str("```");
                        self.children(node);
                        if self.text.ends_with('\n') {
                            self.text.pop();
                        }
                        self.text.push_str("```");
                        self.in_pre = false;
                    }
                    "li" => {
                        self.text.push_str("- ");
                        self.children(node);
                    }
                    "blockquote" => {
                        let start = self.text.len();
                        self.children(node);
                        let quoted: String = self.text[start..]
                            .trim_end_matches('\n')
                            .lines()
                            .map(|line| format!("> {line}\n"))
                            .collect();
                        self.text.truncate(start);
                        self.text.push_str(&quoted);
                    }
                    "a" => self.link(node, attribute(element, "href")),
                    _ => self.children(node),
                }
                if block && !self.text.ends_with('\n') {
                    self.text.push('\n');
                }
            }
            _ => self.children(node),
        }
    }

    /// A link: a pill of one of the bridge's ghosts becomes `@<number>`; another link its
    /// text, with the address after it when they differ.
    fn link(&mut self, node: &NodeRef, href: Option<String>) {
        let Some(href) = href else {
            return self.children(node);
        };
        let pill = href
            .strip_prefix("https://matrix.to/#/")
            .and_then(|user| ruma::UserId::parse(user).ok())
            .and_then(|user| self.events.remote_user_id(&user));
        if let Some(user) = pill {
            self.text.push('@');
            self.text.push_str(user.as_str());
            if !self.mentions.iter().any(|m| m == user.as_str()) {
                self.mentions.push(user.0);
            }
            return;
        }
        let start = self.text.len();
        self.children(node);
        let text = self.text[start..].trim().to_owned();
        if text != href && !href.starts_with("https://matrix.to/") {
            self.text.push_str(&format!(" ({href})"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::bridge::ids::GhostNamer;
    use bridge_core::network::LoginId;

    #[test]
    fn whatsapp_formatting_becomes_html() {
        let cases = [
            ("plain text", None),
            ("*bold*", Some("<strong>bold</strong>")),
            (
                "_italic_ and ~gone~",
                Some("<em>italic</em> and <del>gone</del>"),
            ),
            ("`a<b`", Some("<code>a&lt;b</code>")),
            ("```x *y*```", Some("<code>x *y*</code>")),
            (
                "```\nfn main() {}\n```",
                Some("<pre><code>\nfn main() {}\n</code></pre>"),
            ),
            ("*bold _both_*", Some("<strong>bold <em>both</em></strong>")),
            ("2*3*4", None),
            ("snake_case_name", None),
            ("* not bold *", None),
            ("a *b\nc* d", None),
            (
                "line *one*\nline two",
                Some("line <strong>one</strong><br>line two"),
            ),
            ("(*in parens*)", Some("(<strong>in parens</strong>)")),
            ("5 < 6 *&*", Some("5 &lt; 6 <strong>&amp;</strong>")),
        ];
        for (text, html) in cases {
            let (body, got) = to_matrix(text, &[]);
            assert_eq!(body, text);
            assert_eq!(got.as_deref(), html, "{text:?}");
        }
    }

    #[test]
    fn mentions_become_pills_and_names() {
        let carol = Mention {
            phone: "15550000003".to_owned(),
            name: "Carol".to_owned(),
            pill: "<a href=\"https://matrix.to/#/@whatsapp_15550000003:example.com\">Carol</a>"
                .to_owned(),
        };
        let pill = carol.pill.clone();
        let cases = [
            (
                "@15550000003 brings *cake*",
                "Carol brings *cake*",
                Some(format!("{pill} brings <strong>cake</strong>")),
            ),
            (
                "ask @15550000003.",
                "ask Carol.",
                Some(format!("ask {pill}.")),
            ),
            (
                "*@15550000003*",
                "*Carol*",
                Some(format!("<strong>{pill}</strong>")),
            ),
            // Not mentioned in the context, or not a whole number: left as it is.
            ("@15550000004 hi", "@15550000004 hi", None),
            ("@155500000031 hi", "@155500000031 hi", None),
            ("mail@15550000003", "mail@15550000003", None),
        ];
        for (text, body, html) in cases {
            let got = to_matrix(text, std::slice::from_ref(&carol));
            assert_eq!(got, (body.to_owned(), html), "{text:?}");
        }
    }

    fn sender() -> EventSender {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        EventSender::new(
            LoginId::from("15550000001"),
            tx,
            GhostNamer::new("whatsapp_{id}", "example.com"),
        )
    }

    #[test]
    fn matrix_html_becomes_whatsapp_text() {
        let events = sender();
        let cases = [
            ("<strong>ok</strong> 🎉", "*ok* 🎉"),
            ("<em>a</em> <del>b</del> <code>c</code>", "_a_ ~b~ `c`"),
            ("<b>bold </b>then", "*bold* then"),
            ("<pre><code>x = 1\n</code></pre>", "```x = 1```"),
            ("<p>one</p><p>two</p>", "one\ntwo"),
            ("a<br>b", "a\nb"),
            ("<ul><li>x</li><li>y</li></ul>", "- x\n- y"),
            ("<blockquote>said</blockquote>reply", "> said\nreply"),
            (
                "<a href=\"https://example.com\">site</a>",
                "site (https://example.com)",
            ),
            (
                "<mx-reply><blockquote>old</blockquote></mx-reply>new",
                "new",
            ),
        ];
        for (html, want) in cases {
            let (text, mentions) = from_matrix("ignored", Some(html), &events);
            assert_eq!(text, want, "{html:?}");
            assert!(mentions.is_empty());
        }
        let (text, mentions) = from_matrix(
            "hi Bob",
            Some("hi <a href=\"https://matrix.to/#/@whatsapp_15550000002:example.com\">Bob</a>"),
            &events,
        );
        assert_eq!(text, "hi @15550000002");
        assert_eq!(mentions, vec!["15550000002".to_owned()]);
        assert_eq!(
            from_matrix("plain *as is*", None, &events).0,
            "plain *as is*"
        );
    }
}
