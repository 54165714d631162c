//! Matrix HTML → Discord markdown.
//!
//! Parses the HTML with `ruma-html` (html5ever) and walks the tree. Literal text is escaped
//! so Discord shows it as written (`*_~|`>` and friends get a backslash, `@everyone`/`@here`
//! are defused), except inside code and bare URLs. Pills of Discord ghosts become `<@id>`
//! through a [`GhostResolver`]; other pills become the name. The `<mx-reply>` fallback is
//! dropped.

use ruma::html::{Html, NodeData, NodeRef};

/// Maps Matrix users back to Discord users.
pub trait GhostResolver {
    /// The Discord user ID of the ghost `matrix_user_id` (`@discord_123:example.com`), or
    /// `None` if it is not one of this bridge's ghosts.
    fn discord_user(&self, matrix_user_id: &str) -> Option<String>;
}

/// Converts Matrix HTML to Discord markdown.
pub fn html_to_markdown(html: &str, resolver: &dyn GhostResolver) -> String {
    let document = Html::parse(html);
    let mut walker = Walker { resolver, list_depth: 0 };
    let mut out = String::new();
    for child in document.children() {
        walker.node(&child, &mut out);
    }
    tidy(&out)
}

/// Escapes plain text (a message without HTML) for Discord.
pub fn text_to_markdown(text: &str) -> String {
    escape_markdown(text, true)
}

struct Walker<'r> {
    resolver: &'r dyn GhostResolver,
    list_depth: usize,
}

impl Walker<'_> {
    fn children(&mut self, node: &NodeRef) -> String {
        let mut out = String::new();
        for child in node.children() {
            self.node(&child, &mut out);
        }
        out
    }

    fn node(&mut self, node: &NodeRef, out: &mut String) {
        match node.data() {
            NodeData::Text(text) => {
                // Newlines in HTML text are whitespace; line breaks come from <br> and blocks.
                let text = text.borrow();
                let at_line_start = out.is_empty() || out.ends_with('\n');
                let text = if at_line_start { text.trim_start_matches(['\n', '\r']) } else { &text[..] };
                let text = text.replace("\r\n", " ").replace('\n', " ");
                out.push_str(&escape_markdown(&text, at_line_start));
            }
            NodeData::Element(element) => {
                let name: &str = &element.name.local;
                let attr = |key: &str| {
                    element.attrs.borrow().iter().find(|a| &*a.name.local == key).map(|a| a.value.to_string())
                };
                match name {
                    "mx-reply" | "script" | "style" | "head" => {}
                    "strong" | "b" => wrap(out, "**", &self.children(node)),
                    "em" | "i" => wrap(out, "*", &self.children(node)),
                    "u" => wrap(out, "__", &self.children(node)),
                    "del" | "s" | "strike" => wrap(out, "~~", &self.children(node)),
                    "span" if attr("data-mx-spoiler").is_some() => wrap(out, "||", &self.children(node)),
                    "code" => out.push_str(&inline_code(&text_content(node))),
                    "pre" => {
                        let (lang, code) = pre_content(node);
                        block_start(out);
                        let code = code.trim_end_matches('\n').replace("```", "`\u{200b}``");
                        out.push_str(&format!("```{lang}\n{code}\n```\n"));
                    }
                    "a" => {
                        let text = self.children(node);
                        out.push_str(&self.link(attr("href").as_deref(), &text, node));
                    }
                    "br" => out.push('\n'),
                    "p" | "div" => {
                        block_start(out);
                        let inner = self.children(node);
                        out.push_str(inner.trim_end_matches('\n'));
                        out.push_str("\n\n");
                    }
                    "h1" | "h2" | "h3" => {
                        block_start(out);
                        let level = name[1..].parse::<usize>().unwrap_or(1);
                        let inner = self.children(node);
                        out.push_str(&format!("{} {}\n", "#".repeat(level), inner.trim().replace('\n', " ")));
                    }
                    "h4" | "h5" | "h6" => {
                        block_start(out);
                        let inner = self.children(node);
                        out.push_str(&format!("**{}**\n", inner.trim().replace('\n', " ")));
                    }
                    "blockquote" => {
                        block_start(out);
                        let inner = self.children(node);
                        for line in tidy(&inner).lines() {
                            out.push_str(if line.starts_with("> ") || line == ">" { "" } else { "> " });
                            out.push_str(line);
                            out.push('\n');
                        }
                    }
                    "ul" | "ol" => {
                        if self.list_depth == 0 {
                            block_start(out);
                        } else if !out.ends_with('\n') {
                            out.push('\n');
                        }
                        self.list(node, name == "ol", attr("start"), out);
                        if self.list_depth == 0 {
                            out.push('\n');
                        }
                    }
                    "hr" => {
                        block_start(out);
                        out.push_str("───\n");
                    }
                    "img" => {
                        let alt = attr("alt").or_else(|| attr("title")).unwrap_or_default();
                        if alt.is_empty() {
                            if let Some(src) = attr("src") {
                                out.push_str(&src);
                            }
                        } else {
                            out.push_str(&escape_markdown(&alt, false));
                        }
                    }
                    "li" => {
                        let inner = self.children(node);
                        out.push_str(&inner);
                    }
                    _ => {
                        let inner = self.children(node);
                        out.push_str(&inner);
                    }
                }
            }
            NodeData::Document | NodeData::Other => {
                let inner = self.children(node);
                out.push_str(&inner);
            }
        }
    }

    fn list(&mut self, node: &NodeRef, ordered: bool, start: Option<String>, out: &mut String) {
        let mut number: u64 = start.and_then(|s| s.parse().ok()).unwrap_or(1);
        let indent = "  ".repeat(self.list_depth);
        self.list_depth += 1;
        for item in node.children() {
            let Some(element) = item.as_element() else { continue };
            if &*element.name.local != "li" {
                continue;
            }
            let inner = self.children(&item);
            let marker = if ordered { format!("{number}. ") } else { "- ".to_owned() };
            number += 1;
            let inner = inner.trim_matches('\n');
            let mut lines = inner.lines();
            out.push_str(&format!("{indent}{marker}{}\n", lines.next().unwrap_or("")));
            for line in lines {
                if line.trim_start().starts_with("- ") || line.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    out.push_str(&format!("{line}\n"));
                } else {
                    out.push_str(&format!("{indent}  {line}\n"));
                }
            }
        }
        self.list_depth -= 1;
    }

    fn link(&self, href: Option<&str>, text: &str, node: &NodeRef) -> String {
        let Some(href) = href else { return text.to_owned() };
        if let Some(target) = href.strip_prefix("https://matrix.to/#/") {
            let target = target.split('?').next().unwrap_or(target);
            let decoded = percent_encoding::percent_decode_str(target).decode_utf8_lossy();
            if decoded.starts_with('@') {
                return match self.resolver.discord_user(&decoded) {
                    Some(id) => format!("<@{id}>"),
                    None => text.to_owned(),
                };
            }
        }
        if !(href.starts_with("https://") || href.starts_with("http://") || href.starts_with("mailto:")) {
            return text.to_owned();
        }
        let plain = text_content(node);
        if plain == href || plain.is_empty() {
            return href.to_owned();
        }
        format!("[{}]({})", text.replace(['[', ']'], ""), href.replace(')', "%29").replace(' ', "%20"))
    }
}

/// Wraps `inner` in a markdown delimiter, keeping surrounding whitespace outside (Discord
/// does not format `** x**`).
fn wrap(out: &mut String, delimiter: &str, inner: &str) {
    let trimmed = inner.trim();
    if trimmed.is_empty() {
        out.push_str(inner);
        return;
    }
    let leading = &inner[..inner.len() - inner.trim_start().len()];
    let trailing = &inner[inner.trim_end().len()..];
    out.push_str(leading);
    out.push_str(delimiter);
    out.push_str(trimmed);
    out.push_str(delimiter);
    out.push_str(trailing);
}

/// Ensures a block starts on its own line.
fn block_start(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Inline code. Discord's inline fences are one or two backticks, so content with a run of
/// two or more backticks has them replaced by look-alike quotes.
fn inline_code(code: &str) -> String {
    if code.is_empty() {
        return String::new();
    }
    let longest = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    match longest {
        0 => format!("`{code}`"),
        1 => {
            let pad = if code.starts_with('`') || code.ends_with('`') { " " } else { "" };
            format!("``{pad}{code}{pad}``")
        }
        _ => format!("`{}`", code.replace('`', "\u{2018}")),
    }
}

/// The language and text of a `<pre>` block.
fn pre_content(node: &NodeRef) -> (String, String) {
    let mut lang = String::new();
    for child in node.children() {
        if let Some(element) = child.as_element() {
            if &*element.name.local == "code" {
                if let Some(class) = element.attrs.borrow().iter().find(|a| &*a.name.local == "class") {
                    if let Some(l) = class.value.split_whitespace().find_map(|c| c.strip_prefix("language-")) {
                        lang = l.chars().filter(|c| c.is_ascii_alphanumeric() || "_+-.#".contains(*c)).collect();
                    }
                }
            }
        }
    }
    (lang, text_content(node))
}

/// All text under a node, unescaped.
fn text_content(node: &NodeRef) -> String {
    let mut out = String::new();
    if let Some(text) = node.as_text() {
        out.push_str(&text.borrow());
    }
    for child in node.children() {
        if child.as_element().is_some_and(|e| &*e.name.local == "br") {
            out.push('\n');
        } else {
            out.push_str(&text_content(&child));
        }
    }
    out
}

/// Escapes Discord markdown in literal text, leaving URLs intact.
fn escape_markdown(text: &str, at_line_start: bool) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut line_start = at_line_start;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("https://") || rest.starts_with("http://") {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            i += end;
            line_start = false;
            continue;
        }
        if rest.starts_with("@everyone") || rest.starts_with("@here") {
            out.push_str("@\u{200b}");
            i += 1;
            line_start = false;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        match c {
            '\\' | '*' | '_' | '~' | '|' | '`' | '>' | '<' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '#' | '-' | '+' if line_start => {
                out.push('\\');
                out.push(c);
            }
            '0'..='9' if line_start => {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                out.push_str(&digits);
                i += digits.len();
                if text[i..].starts_with(". ") {
                    out.push('\\');
                }
                line_start = false;
                continue;
            }
            _ => out.push(c),
        }
        line_start = c == '\n' || (line_start && c == ' ');
        i += c.len_utf8();
    }
    out
}


/// Trims trailing spaces on lines, collapses runs of blank lines and trims the ends.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim_matches('\n').split('\n') {
        let line = line.trim_end_matches(' ');
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end_matches('\n').to_owned()
}

#[cfg(test)]
#[path = "html_to_md_tests.rs"]
mod tests;
