//! Discord markdown → Matrix HTML.
//!
//! Follows the rules of Discord's own parser where they matter for what users see:
//! `**bold**`, `*italic*` / `_italic_` (underscores only at word boundaries), `__underline__`,
//! `~~strike~~`, `||spoiler||`, `` `code` ``, fenced code blocks with a language, `> ` and
//! `>>> ` quotes, `#`/`##`/`###` headings, `-# ` subtext, `- `/`1. ` lists, links, masked
//! links, mentions (`<@id>`, `<@&id>`, `<#id>`), `@everyone`/`@here` and custom emoji.
//! The content of a delimiter pair is found first and then parsed again, so the work is
//! bounded; a step budget turns pathological input into escaped text instead of spinning.
//! Unterminated markers stay literal; nothing inside code is interpreted.

use bridge_core::network::RemoteUserId;

use super::escape_html;

/// Looks up what mentions in a Discord message point at.
pub trait MentionResolver {
    /// A user's display name and the HTML pill for them (usually
    /// [`bridge_core::network::EventSender::mention_pill`]).
    fn user(&self, id: &str) -> (String, String);
    /// A role's name, if known.
    fn role(&self, id: &str) -> Option<String>;
    /// A channel's name, if known.
    fn channel(&self, id: &str) -> Option<String>;
}

/// A Discord message converted for Matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Plain text: the markdown with mentions and custom emoji replaced by names.
    pub body: String,
    /// Matrix HTML, when the message has any formatting or mentions.
    pub html: Option<String>,
    /// The users mentioned, in order of first mention, without duplicates.
    pub mentions: Vec<RemoteUserId>,
}

/// Converts a Discord message's markdown to Matrix text and HTML.
pub fn markdown_to_matrix(text: &str, resolver: &dyn MentionResolver) -> Converted {
    let mut parser = Parser {
        resolver,
        mentions: Vec::new(),
        formatted: false,
        steps: 0,
        max_steps: 200_000 + 64 * text.len(),
    };
    let mut html = String::new();
    parser.blocks(text, &mut html, true);
    let body = plain_body(text, resolver);
    Converted { body, html: parser.formatted.then_some(html), mentions: parser.mentions }
}

/// The plain-text body: the markdown as written, with mentions and custom emoji named.
fn plain_body(text: &str, resolver: &dyn MentionResolver) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('<') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        match parse_angle(rest) {
            Some((Angle::User(id), len)) => {
                out.push('@');
                out.push_str(&resolver.user(id).0);
                rest = &rest[len..];
            }
            Some((Angle::Role(id), len)) => {
                out.push('@');
                out.push_str(&resolver.role(id).unwrap_or_else(|| "unknown-role".to_owned()));
                rest = &rest[len..];
            }
            Some((Angle::Channel(id), len)) => {
                out.push('#');
                out.push_str(&resolver.channel(id).unwrap_or_else(|| "unknown-channel".to_owned()));
                rest = &rest[len..];
            }
            Some((Angle::Emoji(name), len)) => {
                out.push(':');
                out.push_str(name);
                out.push(':');
                rest = &rest[len..];
            }
            Some((Angle::Url(url), len)) => {
                out.push_str(url);
                rest = &rest[len..];
            }
            None => {
                out.push('<');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What a `<…>` construct is.
enum Angle<'a> {
    User(&'a str),
    Role(&'a str),
    Channel(&'a str),
    Emoji(&'a str),
    Url(&'a str),
}

/// Parses a `<…>` construct at the start of `s`, returning it and its length.
fn parse_angle(s: &str) -> Option<(Angle<'_>, usize)> {
    let end = s.find('>')?;
    let inner = &s[1..end];
    let digits = |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
    let angle = if let Some(id) = inner.strip_prefix("@&") {
        digits(id).then_some(Angle::Role(id))?
    } else if let Some(id) = inner.strip_prefix("@!").or_else(|| inner.strip_prefix('@')) {
        digits(id).then_some(Angle::User(id))?
    } else if let Some(id) = inner.strip_prefix('#') {
        digits(id).then_some(Angle::Channel(id))?
    } else if let Some(emoji) = inner.strip_prefix("a:").or_else(|| inner.strip_prefix(':')) {
        let (name, id) = emoji.split_once(':')?;
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        (valid_name && digits(id)).then_some(Angle::Emoji(name))?
    } else if inner.starts_with("https://") || inner.starts_with("http://") {
        (!inner.contains(char::is_whitespace)).then_some(Angle::Url(inner))?
    } else {
        return None;
    };
    Some((angle, end + 1))
}

struct Parser<'r> {
    resolver: &'r dyn MentionResolver,
    mentions: Vec<RemoteUserId>,
    formatted: bool,
    steps: usize,
    max_steps: usize,
}

/// A list item's kind and start number.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Bullet,
    Ordered,
}

impl Parser<'_> {
    fn tag(&mut self, out: &mut String, tag: &str) {
        self.formatted = true;
        out.push_str(tag);
    }

    /// Block structure: code blocks first, then line-based blocks between them.
    fn blocks(&mut self, text: &str, out: &mut String, allow_quote: bool) {
        let mut rest = text;
        while let Some((start, end, lang, code)) = find_code_block(rest) {
            let before = rest[..start].strip_suffix('\n').unwrap_or(&rest[..start]);
            if !before.is_empty() {
                self.lines(before, out, allow_quote);
            }
            self.formatted = true;
            match lang {
                Some(lang) => out.push_str(&format!("<pre><code class=\"language-{}\">", escape_html(lang))),
                None => out.push_str("<pre><code>"),
            }
            out.push_str(&escape_html(code));
            out.push_str("</code></pre>");
            rest = &rest[end..];
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        }
        if !rest.is_empty() {
            self.lines(rest, out, allow_quote);
        }
    }

    /// Line-based blocks: quotes, headings, subtext, lists and paragraphs.
    fn lines(&mut self, text: &str, out: &mut String, allow_quote: bool) {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut paragraph: Vec<String> = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            if allow_quote {
                if let Some(first) = line.strip_prefix(">>> ") {
                    self.flush(&mut paragraph, out);
                    let mut quoted = first.to_owned();
                    for more in &lines[i + 1..] {
                        quoted.push('\n');
                        quoted.push_str(more);
                    }
                    self.tag(out, "<blockquote>");
                    self.lines(&quoted, out, false);
                    out.push_str("</blockquote>");
                    return;
                }
                if quote_line(line).is_some() {
                    self.flush(&mut paragraph, out);
                    let mut quoted = Vec::new();
                    while let Some(content) = lines.get(i).and_then(|l| quote_line(l)) {
                        quoted.push(content);
                        i += 1;
                    }
                    self.tag(out, "<blockquote>");
                    self.lines(&quoted.join("\n"), out, false);
                    out.push_str("</blockquote>");
                    continue;
                }
            }
            if let Some((level, content)) = heading(line) {
                self.flush(&mut paragraph, out);
                self.tag(out, &format!("<h{level}>"));
                let inner = self.inline(content);
                out.push_str(&inner);
                out.push_str(&format!("</h{level}>"));
                i += 1;
                continue;
            }
            if let Some(content) = line.strip_prefix("-# ") {
                let inner = self.inline(content);
                self.formatted = true;
                paragraph.push(format!("<sub>{inner}</sub>"));
                i += 1;
                continue;
            }
            if let Some((kind, number, _)) = list_item(line) {
                self.flush(&mut paragraph, out);
                let tag = match kind {
                    ListKind::Bullet => "ul".to_owned(),
                    ListKind::Ordered if number != 1 => format!("ol start=\"{number}\""),
                    ListKind::Ordered => "ol".to_owned(),
                };
                self.tag(out, &format!("<{tag}>"));
                while let Some((item_kind, _, content)) = lines.get(i).and_then(|l| list_item(l)) {
                    if item_kind != kind {
                        break;
                    }
                    let inner = self.inline(content);
                    out.push_str(&format!("<li>{inner}</li>"));
                    i += 1;
                }
                out.push_str(if kind == ListKind::Bullet { "</ul>" } else { "</ol>" });
                continue;
            }
            let inner = self.inline(line);
            paragraph.push(inner);
            i += 1;
        }
        self.flush(&mut paragraph, out);
    }

    fn flush(&mut self, paragraph: &mut Vec<String>, out: &mut String) {
        if !paragraph.is_empty() {
            out.push_str(&paragraph.join("<br>"));
            paragraph.clear();
        }
    }

    /// Inline formatting of one line (or the content of a delimiter pair).
    fn inline(&mut self, s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len() + 16);
        let mut i = 0;
        while i < b.len() {
            self.steps += 1;
            if self.steps > self.max_steps {
                out.push_str(&escape_html(&s[i..]));
                break;
            }
            let rest = &s[i..];
            let prev = s[..i].chars().next_back();
            match b[i] {
                b'\\' if b.get(i + 1).is_some_and(u8::is_ascii_punctuation) => {
                    self.formatted = true;
                    out.push_str(&escape_html(&s[i + 1..i + 2]));
                    i += 2;
                    continue;
                }
                b'`' => {
                    let n = run_len(b, i, b'`');
                    match find_run(b, i + n, n, b'`') {
                        Some(close) => {
                            let code = &s[i + n..close];
                            let code = match code.strip_prefix(' ').and_then(|c| c.strip_suffix(' ')) {
                                Some(inner) if !inner.trim().is_empty() => inner,
                                _ => code,
                            };
                            self.tag(&mut out, "<code>");
                            out.push_str(&escape_html(code));
                            out.push_str("</code>");
                            i = close + n;
                        }
                        None => {
                            out.push_str(&s[i..i + n]);
                            i += n;
                        }
                    }
                    continue;
                }
                b'*' | b'_' | b'~' | b'|' => {
                    if let Some((html, len)) = self.delimited(s, i, prev) {
                        out.push_str(&html);
                        i += len;
                        continue;
                    }
                }
                b'<' => {
                    if let Some((angle, len)) = parse_angle(rest) {
                        let html = self.angle(angle);
                        out.push_str(&html);
                        i += len;
                        continue;
                    }
                }
                b'[' => {
                    if let Some((text, url, len)) = masked_link(rest) {
                        let inner = self.inline(text);
                        self.formatted = true;
                        out.push_str(&format!("<a href=\"{}\">{inner}</a>", escape_html(url)));
                        i += len;
                        continue;
                    }
                }
                b'h' if !prev.is_some_and(char::is_alphanumeric) => {
                    if let Some(len) = autolink(rest) {
                        let url = &rest[..len];
                        self.formatted = true;
                        out.push_str(&format!("<a href=\"{0}\">{0}</a>", escape_html(url)));
                        i += len;
                        continue;
                    }
                }
                b'@' => {
                    let word = if rest.starts_with("@everyone") {
                        Some("@everyone".len())
                    } else if rest.starts_with("@here") {
                        Some("@here".len())
                    } else {
                        None
                    };
                    if let Some(len) = word {
                        out.push_str("@room");
                        i += len;
                        continue;
                    }
                }
                b'\n' => {
                    self.formatted = true;
                    out.push_str("<br>");
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let c = rest.chars().next().unwrap_or(' ');
            let mut buf = [0u8; 4];
            out.push_str(&escape_html(c.encode_utf8(&mut buf)));
            i += c.len_utf8();
        }
        out
    }

    /// A delimiter pair starting at `i`: its HTML and length, or `None` if unterminated.
    fn delimited(&mut self, s: &str, i: usize, prev: Option<char>) -> Option<(String, usize)> {
        let b = s.as_bytes();
        let rest = &s[i..];
        let (open, close_tag, tag) = if rest.starts_with("**") {
            ("**", "</strong>", "<strong>")
        } else if rest.starts_with("__") {
            ("__", "</u>", "<u>")
        } else if rest.starts_with("~~") {
            ("~~", "</del>", "<del>")
        } else if rest.starts_with("||") {
            ("||", "</span>", "<span data-mx-spoiler>")
        } else if rest.starts_with('*') {
            ("*", "</em>", "<em>")
        } else if rest.starts_with('_') {
            ("_", "</em>", "<em>")
        } else {
            return None;
        };
        let start = i + open.len();
        let close = match open {
            "*" => {
                if b.get(start).is_none_or(|c| c.is_ascii_whitespace()) {
                    return None;
                }
                self.find_closer(b, start, Some(b'*'), |b, j| {
                    b[j] == b'*' && b.get(j + 1) != Some(&b'*') && !b[j - 1].is_ascii_whitespace()
                })?
            }
            "_" => {
                if prev.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    return None;
                }
                self.find_closer(b, start, Some(b'_'), |b, j| {
                    b[j] == b'_' && b.get(j + 1).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                })?
            }
            _ => {
                let d = open.as_bytes()[0];
                let no_follow = if d == b'|' { 0 } else { d };
                self.find_closer(b, start, None, |b, j| {
                    b[j] == d && b.get(j + 1) == Some(&d) && (no_follow == 0 || b.get(j + 2) != Some(&no_follow))
                })?
            }
        };
        let inner = self.inline(&s[start..close]);
        self.formatted = true;
        Some((format!("{tag}{inner}{close_tag}"), close + open.len() - i))
    }

    /// Finds the first position after `start` (content non-empty) where `is_closer` holds,
    /// skipping escapes, code spans and doubled markers of single-character delimiters.
    fn find_closer(
        &mut self,
        b: &[u8],
        start: usize,
        skip_double: Option<u8>,
        is_closer: impl Fn(&[u8], usize) -> bool,
    ) -> Option<usize> {
        let mut j = start + 1;
        while j < b.len() {
            self.steps += 1;
            if self.steps > self.max_steps {
                return None;
            }
            match b[j] {
                b'\\' => j += 2,
                b'`' => {
                    let n = run_len(b, j, b'`');
                    j = find_run(b, j + n, n, b'`').map_or(j + n, |close| close + n);
                }
                _ if is_closer(b, j) => return Some(j),
                c if Some(c) == skip_double && b.get(j + 1) == Some(&c) => j += 2,
                _ => j += 1,
            }
        }
        None
    }

    fn angle(&mut self, angle: Angle<'_>) -> String {
        self.formatted = true;
        match angle {
            Angle::User(id) => {
                let (_, pill) = self.resolver.user(id);
                let user = RemoteUserId::from(id);
                if !self.mentions.contains(&user) {
                    self.mentions.push(user);
                }
                pill
            }
            Angle::Role(id) => {
                let name = self.resolver.role(id).unwrap_or_else(|| "unknown-role".to_owned());
                format!("@{}", escape_html(&name))
            }
            Angle::Channel(id) => {
                let name = self.resolver.channel(id).unwrap_or_else(|| "unknown-channel".to_owned());
                format!("#{}", escape_html(&name))
            }
            Angle::Emoji(name) => format!(":{}:", escape_html(name)),
            Angle::Url(url) => format!("<a href=\"{0}\">{0}</a>", escape_html(url)),
        }
    }
}

/// The content of a `> ` quote line.
fn quote_line(line: &str) -> Option<&str> {
    if line == ">" {
        return Some("");
    }
    line.strip_prefix("> ")
}

/// A `#`, `##` or `###` heading.
fn heading(line: &str) -> Option<(usize, &str)> {
    let hashes = line.bytes().take_while(|b| *b == b'#').count();
    if !(1..=3).contains(&hashes) {
        return None;
    }
    let content = line[hashes..].strip_prefix(' ')?;
    (!content.trim().is_empty()).then_some((hashes, content))
}

/// A list item (`- x`, `* x`, `12. x`, optionally indented): kind, number and content.
fn list_item(line: &str) -> Option<(ListKind, u64, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if let Some(content) = trimmed.strip_prefix("- ").or_else(|| trimmed.strip_prefix("* ")) {
        return (!content.trim().is_empty()).then_some((ListKind::Bullet, 1, content));
    }
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let content = trimmed[digits..].strip_prefix(". ")?;
    let number = trimmed[..digits].parse().ok()?;
    (!content.trim().is_empty()).then_some((ListKind::Ordered, number, content))
}

/// Finds the first fenced code block: (start, end, language, code).
fn find_code_block(s: &str) -> Option<(usize, usize, Option<&str>, &str)> {
    let mut from = 0;
    while let Some(offset) = s[from..].find("```") {
        let open = from + offset;
        let body_start = open + 3;
        if let Some(close_offset) = s[body_start..].find("```") {
            let close = body_start + close_offset;
            let inner = &s[body_start..close];
            if inner.trim().is_empty() {
                from = open + 3;
                continue;
            }
            let (lang, code) = match inner.split_once('\n') {
                Some((first, code))
                    if !first.is_empty()
                        && first.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.#".contains(&b)) =>
                {
                    (Some(first), code)
                }
                _ => (None, inner),
            };
            let code = code.trim_start_matches('\n').trim_end_matches('\n');
            return Some((open, close + 3, lang, code));
        }
        return None;
    }
    None
}

/// The length of the run of `c` at `i`.
fn run_len(b: &[u8], i: usize, c: u8) -> usize {
    b[i..].iter().take_while(|x| **x == c).count()
}

/// The start of the next run of exactly `n` bytes `c` at or after `from`.
fn find_run(b: &[u8], from: usize, n: usize, c: u8) -> Option<usize> {
    let mut j = from;
    while j < b.len() {
        if b[j] == c {
            let len = run_len(b, j, c);
            if len == n {
                return Some(j);
            }
            j += len;
        } else {
            j += 1;
        }
    }
    None
}

/// A masked link `[text](https://…)` at the start of `s`: text, URL and length.
fn masked_link(s: &str) -> Option<(&str, &str, usize)> {
    let close = s.find("](")?;
    let text = &s[1..close];
    if text.is_empty() || text.contains(['[', '\n']) {
        return None;
    }
    let after = &s[close + 2..];
    let mut depth = 0usize;
    let mut end = None;
    for (k, c) in after.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                end = Some(k);
                break;
            }
            ')' => depth -= 1,
            c if c.is_whitespace() => return None,
            _ => {}
        }
    }
    let end = end?;
    let url = after[..end].trim_start_matches('<').trim_end_matches('>');
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() <= "https://".len() {
        return None;
    }
    Some((text, url, close + 2 + end + 1))
}

/// The length of a bare URL at the start of `s`, without trailing punctuation.
fn autolink(s: &str) -> Option<usize> {
    let scheme = if s.starts_with("https://") {
        8
    } else if s.starts_with("http://") {
        7
    } else {
        return None;
    };
    let mut end = s.find(|c: char| c.is_whitespace() || c == '<').unwrap_or(s.len());
    loop {
        let url = &s[..end];
        let last = url.chars().next_back()?;
        let unbalanced_paren = last == ')' && url.matches('(').count() < url.matches(')').count();
        if ".,:;!?'\"*_~|".contains(last) || unbalanced_paren {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    (end > scheme).then_some(end)
}

#[cfg(test)]
#[path = "md_to_html_tests.rs"]
mod tests;
