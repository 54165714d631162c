//! Telegram text with entities ↔ Matrix HTML.
//!
//! Telegram sends plain text plus a list of entities (bold from offset 3, length 5), whose
//! offsets and lengths count UTF-16 code units. [`to_matrix`] turns them into nested HTML
//! tags (`<strong>`, `<em>`, `<u>`, `<del>`, `<code>`, `<pre><code class="language-…">`,
//! `<a href>`, `<span data-mx-spoiler>`, `<blockquote>`); [`from_matrix`] walks Matrix HTML
//! (parsed by `ruma-html`) back into text and entities. Entities it does not know are kept
//! as plain text. Text mentions (a mention of a user by ID) and Matrix pills map onto each
//! other through a [`MentionMap`].

use grammers_client::tl;
use ruma::html::{Html, NodeData, NodeRef};

/// How Telegram users and the Matrix users that stand for them (ghosts, or the login's
/// owner for the account itself) map onto each other, for mentions.
pub trait MentionMap {
    /// The `https://matrix.to/#/@…` link of the Matrix user standing for Telegram user `user`.
    fn link(&self, user: i64) -> Option<String>;
    /// The Telegram user the Matrix user of a `https://matrix.to/#/@…` link stands for.
    fn user(&self, link: &str) -> Option<i64>;
}

/// No mentions: text mentions stay plain text, pills their names.
pub struct NoMentions;

impl MentionMap for NoMentions {
    fn link(&self, _: i64) -> Option<String> {
        None
    }

    fn user(&self, _: &str) -> Option<i64> {
        None
    }
}

/// The Matrix user ID a `https://matrix.to/#/…` link names (percent-decoded), if any.
pub fn matrix_to_user(link: &str) -> Option<String> {
    let rest = link.strip_prefix("https://matrix.to/#/")?;
    let rest = rest.split(['?', '/']).next().unwrap_or_default();
    let mut decoded = Vec::with_capacity(rest.len());
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let user = String::from_utf8(decoded).ok()?;
    user.starts_with('@').then_some(user)
}

/// The tags an entity opens and closes, or `None` for entities shown as plain text.
fn tags(
    entity: &tl::enums::MessageEntity,
    text: &str,
    mentions: &dyn MentionMap,
) -> Option<(String, &'static str)> {
    use tl::enums::MessageEntity as E;
    Some(match entity {
        E::MentionName(mention) => (
            format!("<a href=\"{}\">", escape(&mentions.link(mention.user_id)?)),
            "</a>",
        ),
        E::Bold(_) => ("<strong>".to_owned(), "</strong>"),
        E::Italic(_) => ("<em>".to_owned(), "</em>"),
        E::Underline(_) => ("<u>".to_owned(), "</u>"),
        E::Strike(_) => ("<del>".to_owned(), "</del>"),
        E::Spoiler(_) => ("<span data-mx-spoiler>".to_owned(), "</span>"),
        E::Code(_) => ("<code>".to_owned(), "</code>"),
        E::Pre(pre) if pre.language.trim().is_empty() => {
            ("<pre><code>".to_owned(), "</code></pre>")
        }
        E::Pre(pre) => (
            format!(
                "<pre><code class=\"language-{}\">",
                escape(pre.language.trim())
            ),
            "</code></pre>",
        ),
        E::TextUrl(link) => (format!("<a href=\"{}\">", escape(&link.url)), "</a>"),
        E::Url(_) => (format!("<a href=\"{}\">", escape(text)), "</a>"),
        E::Blockquote(_) => ("<blockquote>".to_owned(), "</blockquote>"),
        _ => return None,
    })
}

fn range(entity: &tl::enums::MessageEntity) -> (usize, usize) {
    use tl::enums::MessageEntity as E;
    let (offset, length) = match entity {
        E::Unknown(e) => (e.offset, e.length),
        E::Mention(e) => (e.offset, e.length),
        E::Hashtag(e) => (e.offset, e.length),
        E::BotCommand(e) => (e.offset, e.length),
        E::Url(e) => (e.offset, e.length),
        E::Email(e) => (e.offset, e.length),
        E::Bold(e) => (e.offset, e.length),
        E::Italic(e) => (e.offset, e.length),
        E::Code(e) => (e.offset, e.length),
        E::Pre(e) => (e.offset, e.length),
        E::TextUrl(e) => (e.offset, e.length),
        E::MentionName(e) => (e.offset, e.length),
        E::InputMessageEntityMentionName(e) => (e.offset, e.length),
        E::Phone(e) => (e.offset, e.length),
        E::Cashtag(e) => (e.offset, e.length),
        E::Underline(e) => (e.offset, e.length),
        E::Strike(e) => (e.offset, e.length),
        E::BankCard(e) => (e.offset, e.length),
        E::Spoiler(e) => (e.offset, e.length),
        E::CustomEmoji(e) => (e.offset, e.length),
        E::Blockquote(e) => (e.offset, e.length),
        _ => (0, 0),
    };
    (offset.max(0) as usize, length.max(0) as usize)
}

/// Telegram text and entities → the Matrix body, HTML if anything was formatted, and the
/// users mentioned by text mentions (in order, once each).
pub fn to_matrix(
    text: &str,
    entities: &[tl::enums::MessageEntity],
    mentions: &dyn MentionMap,
) -> (String, Option<String>, Vec<i64>) {
    let mut mentioned = Vec::new();
    for entity in entities {
        if let tl::enums::MessageEntity::MentionName(mention) = entity {
            if !mentioned.contains(&mention.user_id) {
                mentioned.push(mention.user_id);
            }
        }
    }
    let (body, html) = formatted(text, entities, mentions);
    (body, html, mentioned)
}

fn formatted(
    text: &str,
    entities: &[tl::enums::MessageEntity],
    mentions: &dyn MentionMap,
) -> (String, Option<String>) {
    let units: Vec<u16> = text.encode_utf16().collect();
    // (position in UTF-16 units, is_close, order, tag): closes sort before opens at one point.
    let mut marks: Vec<(usize, bool, usize, String)> = Vec::new();
    for (order, entity) in entities.iter().enumerate() {
        let (start, length) = range(entity);
        let end = (start + length).min(units.len());
        if start >= end {
            continue;
        }
        let inner = String::from_utf16_lossy(&units[start..end]);
        if let Some((open, close)) = tags(entity, &inner, mentions) {
            marks.push((start, false, order, open));
            marks.push((end, true, order, close.to_owned()));
        }
    }
    if marks.is_empty() {
        return (text.to_owned(), None);
    }
    // Opens in entity order; closes in reverse, so tags nest.
    marks.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(b.1.cmp(&a.1))
            .then(if a.1 { b.2.cmp(&a.2) } else { a.2.cmp(&b.2) })
    });
    let mut html = String::new();
    let mut position = 0;
    let mut in_pre = 0usize;
    for (at, _, _, tag) in marks {
        let piece = String::from_utf16_lossy(&units[position..at]);
        html.push_str(&text_html(&piece, in_pre > 0));
        position = at;
        if tag.starts_with("<pre") {
            in_pre += 1;
        } else if tag == "</code></pre>" {
            in_pre = in_pre.saturating_sub(1);
        }
        html.push_str(&tag);
    }
    html.push_str(&text_html(
        &String::from_utf16_lossy(&units[position..]),
        in_pre > 0,
    ));
    (text.to_owned(), Some(html))
}

fn text_html(text: &str, in_pre: bool) -> String {
    let escaped = escape(text);
    if in_pre {
        escaped
    } else {
        escaped.replace('\n', "<br>")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Matrix body and HTML → Telegram text and entities (pills of mapped users as text
/// mentions). Without HTML the body goes as it is.
pub fn from_matrix(
    body: &str,
    html: Option<&str>,
    mentions: &dyn MentionMap,
) -> (String, Vec<tl::enums::MessageEntity>) {
    let Some(html) = html else {
        return (body.to_owned(), Vec::new());
    };
    let document = Html::parse(html);
    let mut walker = Walker {
        text: String::new(),
        entities: Vec::new(),
        in_pre: false,
        mentions,
    };
    for child in document.children() {
        walker.node(&child);
    }
    let text = walker.text.trim_end_matches('\n').to_owned();
    let length = utf16_len(&text);
    let entities = walker
        .entities
        .into_iter()
        .filter_map(|(kind, start, end)| {
            let end = end.min(length);
            (start < end).then(|| kind.entity(start as i32, (end - start) as i32))
        })
        .collect();
    (text, entities)
}

fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// An entity kind found in HTML.
#[derive(Debug, Clone)]
enum Kind {
    Bold,
    Italic,
    Underline,
    Strike,
    Spoiler,
    Code,
    Pre(String),
    Link(String),
    Mention(i64),
    Blockquote,
}

impl Kind {
    fn entity(self, offset: i32, length: i32) -> tl::enums::MessageEntity {
        use tl::types as t;
        match self {
            Self::Bold => t::MessageEntityBold { offset, length }.into(),
            Self::Italic => t::MessageEntityItalic { offset, length }.into(),
            Self::Underline => t::MessageEntityUnderline { offset, length }.into(),
            Self::Strike => t::MessageEntityStrike { offset, length }.into(),
            Self::Spoiler => t::MessageEntitySpoiler { offset, length }.into(),
            Self::Code => t::MessageEntityCode { offset, length }.into(),
            Self::Pre(language) => t::MessageEntityPre {
                offset,
                length,
                language,
            }
            .into(),
            Self::Link(url) => t::MessageEntityTextUrl {
                offset,
                length,
                url,
            }
            .into(),
            Self::Mention(user_id) => t::MessageEntityMentionName {
                offset,
                length,
                user_id,
            }
            .into(),
            Self::Blockquote => t::MessageEntityBlockquote {
                collapsed: false,
                offset,
                length,
            }
            .into(),
        }
    }
}

struct Walker<'a> {
    text: String,
    entities: Vec<(Kind, usize, usize)>,
    in_pre: bool,
    mentions: &'a dyn MentionMap,
}

impl Walker<'_> {
    fn node(&mut self, node: &NodeRef) {
        match node.data() {
            NodeData::Text(text) => {
                let text = text.borrow();
                if self.in_pre {
                    self.text.push_str(&text);
                } else {
                    self.text
                        .push_str(&text.replace("\r\n", " ").replace('\n', " "));
                }
            }
            NodeData::Element(element) => {
                let name: &str = &element.name.local;
                let attr = |key: &str| {
                    element
                        .attrs
                        .borrow()
                        .iter()
                        .find(|a| &*a.name.local == key)
                        .map(|a| a.value.to_string())
                };
                let kind = match name {
                    "mx-reply" => return,
                    "br" => {
                        self.text.push('\n');
                        return;
                    }
                    "strong" | "b" => Some(Kind::Bold),
                    "em" | "i" => Some(Kind::Italic),
                    "u" => Some(Kind::Underline),
                    "del" | "s" | "strike" => Some(Kind::Strike),
                    "code" if !self.in_pre => Some(Kind::Code),
                    "pre" => {
                        let language = node
                            .children()
                            .find_map(|child| match child.data() {
                                NodeData::Element(code) if &*code.name.local == "code" => code
                                    .attrs
                                    .borrow()
                                    .iter()
                                    .find(|a| &*a.name.local == "class")
                                    .and_then(|a| {
                                        a.value.strip_prefix("language-").map(str::to_owned)
                                    }),
                                _ => None,
                            })
                            .unwrap_or_default();
                        Some(Kind::Pre(language))
                    }
                    "a" => attr("href").and_then(|href| {
                        if href.starts_with("https://matrix.to/") {
                            self.mentions.user(&href).map(Kind::Mention)
                        } else {
                            Some(Kind::Link(href))
                        }
                    }),
                    "span" if attr("data-mx-spoiler").is_some() => Some(Kind::Spoiler),
                    "blockquote" => Some(Kind::Blockquote),
                    _ => None,
                };
                let block = matches!(
                    name,
                    "p" | "div"
                        | "pre"
                        | "blockquote"
                        | "li"
                        | "h1"
                        | "h2"
                        | "h3"
                        | "h4"
                        | "h5"
                        | "h6"
                );
                if block && !self.text.is_empty() && !self.text.ends_with('\n') {
                    self.text.push('\n');
                }
                let was_pre = self.in_pre;
                self.in_pre |= name == "pre";
                let start = utf16_len(&self.text);
                for child in node.children() {
                    self.node(&child);
                }
                self.in_pre = was_pre;
                if let Some(kind) = kind {
                    let end = utf16_len(self.text.trim_end_matches('\n'));
                    self.entities.push((kind, start, end.max(start)));
                }
                if block && !self.text.ends_with('\n') {
                    self.text.push('\n');
                }
            }
            _ => {
                for child in node.children() {
                    self.node(&child);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl::types as t;

    fn bold(offset: i32, length: i32) -> tl::enums::MessageEntity {
        t::MessageEntityBold { offset, length }.into()
    }

    #[test]
    fn entities_become_nested_html_with_utf16_offsets() {
        let link: tl::enums::MessageEntity = t::MessageEntityTextUrl {
            offset: 12,
            length: 4,
            url: "https://example.com/?a=1&b=2".to_owned(),
        }
        .into();
        let italic: tl::enums::MessageEntity = t::MessageEntityItalic {
            offset: 3,
            length: 2,
        }
        .into();
        let cases: Vec<(&str, Vec<tl::enums::MessageEntity>, Option<&str>)> = vec![
            ("plain <text>", vec![], None),
            ("你好 world", vec![bold(3, 5)], Some("你好 <strong>world</strong>")),
            // The emoji is two UTF-16 units.
            ("😀 big 😀", vec![bold(3, 3)], Some("😀 <strong>big</strong> 😀")),
            ("hi bold\nsee here", vec![bold(3, 4), italic, link], Some("hi <strong><em>bo</em>ld</strong><br>see <a href=\"https://example.com/?a=1&amp;b=2\">here</a>")),
            ("x = 1 < 2", vec![t::MessageEntityPre { offset: 0, length: 9, language: "rust".to_owned() }.into()], Some("<pre><code class=\"language-rust\">x = 1 &lt; 2</code></pre>")),
            ("secret", vec![t::MessageEntitySpoiler { offset: 0, length: 6 }.into()], Some("<span data-mx-spoiler>secret</span>")),
        ];
        for (text, entities, want) in cases {
            let (body, html, _) = to_matrix(text, &entities, &NoMentions);
            assert_eq!(body, text);
            assert_eq!(html.as_deref(), want, "{text}");
        }
    }

    #[test]
    fn html_becomes_text_and_entities() {
        let (text, entities) = from_matrix("ignored", Some("你好 <strong>world</strong> 😀 <em>x</em> <a href=\"https://e.com\">link</a> <code>a&lt;b</code>"), &NoMentions);
        assert_eq!(text, "你好 world 😀 x link a<b");
        let want: Vec<tl::enums::MessageEntity> = vec![
            bold(3, 5),
            t::MessageEntityItalic {
                offset: 12,
                length: 1,
            }
            .into(),
            t::MessageEntityTextUrl {
                offset: 14,
                length: 4,
                url: "https://e.com".to_owned(),
            }
            .into(),
            t::MessageEntityCode {
                offset: 19,
                length: 3,
            }
            .into(),
        ];
        assert_eq!(format!("{entities:?}"), format!("{want:?}"));
        assert_eq!(
            from_matrix("just text", None, &NoMentions),
            ("just text".to_owned(), Vec::new())
        );
        let (text, _) = from_matrix(
            "",
            Some("<mx-reply>quoted</mx-reply>line one<br>line two"),
            &NoMentions,
        );
        assert_eq!(text, "line one\nline two");
    }

    #[test]
    fn formatting_round_trips() {
        for html in [
            "a <strong>b</strong> <em>c</em> <del>d</del> <u>e</u> <code>f</code>",
            "<pre><code class=\"language-py\">print(1)\nprint(2)</code></pre>",
        ] {
            let (text, entities) = from_matrix("", Some(html), &NoMentions);
            let (_, back, _) = to_matrix(&text, &entities, &NoMentions);
            assert_eq!(back.as_deref(), Some(html));
        }
    }

    /// Ghosts `@telegram_<id>:example.com`.
    struct Ghosts;

    impl MentionMap for Ghosts {
        fn link(&self, user: i64) -> Option<String> {
            Some(format!("https://matrix.to/#/@telegram_{user}:example.com"))
        }

        fn user(&self, link: &str) -> Option<i64> {
            matrix_to_user(link)?
                .strip_prefix("@telegram_")?
                .strip_suffix(":example.com")?
                .parse()
                .ok()
        }
    }

    #[test]
    fn text_mentions_and_pills_map_onto_each_other() {
        let mention: tl::enums::MessageEntity = t::MessageEntityMentionName {
            offset: 3,
            length: 3,
            user_id: 42,
        }
        .into();
        let (body, html, mentioned) = to_matrix("hi Bob 你好", &[mention.clone()], &Ghosts);
        assert_eq!(body, "hi Bob 你好");
        assert_eq!(
            html.as_deref(),
            Some("hi <a href=\"https://matrix.to/#/@telegram_42:example.com\">Bob</a> 你好")
        );
        assert_eq!(mentioned, [42]);
        let (_, plain, _) = to_matrix("hi Bob", &[mention.clone()], &NoMentions);
        assert_eq!(plain, None, "an unmapped mention is plain text");

        let (text, entities) = from_matrix(
            "",
            Some("hi <a href=\"https://matrix.to/#/%40telegram_42%3Aexample.com\">Bob</a> 你好 <a href=\"https://matrix.to/#/@someone:else.org\">Eve</a>"),
            &Ghosts,
        );
        assert_eq!(text, "hi Bob 你好 Eve");
        assert_eq!(format!("{entities:?}"), format!("{:?}", vec![mention]));
        assert_eq!(
            matrix_to_user("https://matrix.to/#/%40a%3Ab.c?via=b.c").as_deref(),
            Some("@a:b.c")
        );
        assert_eq!(matrix_to_user("https://matrix.to/#/!room:b.c"), None);
    }
}
