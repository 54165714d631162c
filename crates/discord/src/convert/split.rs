//! Splitting long markdown into messages Discord accepts (at most [`MESSAGE_LIMIT`]
//! characters each): cuts at line breaks, else at spaces, else anywhere; a code block cut
//! in two is closed at the end of one part and reopened (with its language) in the next.
//! Nothing is dropped except the one line break or space a cut falls on.

/// The most characters Discord accepts in one message.
pub const MESSAGE_LIMIT: usize = 2000;

/// Splits `text` into parts of at most `limit` characters (`limit` ≥ 64).
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(64);
    if text.chars().count() <= limit {
        return vec![text.to_owned()];
    }
    let mut parts = Vec::new();
    let mut rest = text;
    // The language of the code block open at the start of `rest`, if one is.
    let mut open_block: Option<String> = None;
    while !rest.is_empty() {
        let prefix = open_block.as_ref().map(|lang| format!("```{lang}\n")).unwrap_or_default();
        let room = limit - prefix.chars().count();
        if rest.chars().count() <= room {
            parts.push(format!("{prefix}{rest}"));
            break;
        }
        // Leave room for a closing fence.
        let budget = room - 4;
        let hard = byte_index(rest, budget);
        let window = &rest[..hard];
        let (cut, skip) = match window.rfind('\n') {
            Some(pos) if pos > 0 => (pos, 1),
            _ => match window.rfind(' ') {
                Some(pos) if pos > 0 => (pos, 1),
                _ => (hard, 0),
            },
        };
        let piece = &rest[..cut];
        let mut state = open_block.clone();
        for line in piece.split('\n') {
            state = fence_state(line, state);
        }
        let mut part = format!("{prefix}{piece}");
        if state.is_some() {
            part.push_str("\n```");
        }
        parts.push(part);
        open_block = state;
        rest = &rest[cut + skip..];
    }
    parts
}

/// The code-block state after one line: fences toggle it (counting every ``` in the line).
fn fence_state(line: &str, mut state: Option<String>) -> Option<String> {
    let mut rest = line;
    while let Some(pos) = rest.find("```") {
        let after = &rest[pos + 3..];
        state = match state {
            Some(_) => None,
            None => {
                let lang: String =
                    after.chars().take_while(|c| c.is_ascii_alphanumeric() || "_+-.#".contains(*c)).collect();
                let whole_line = lang.len() == after.len();
                Some(if whole_line { lang } else { String::new() })
            }
        };
        rest = after;
    }
    state
}

/// The byte index of the `chars`-th character (or the end).
fn byte_index(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().filter(|w| !w.starts_with("```")).collect()
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_message("hello", MESSAGE_LIMIT), vec!["hello"]);
        let exact = "x".repeat(MESSAGE_LIMIT);
        assert_eq!(split_message(&exact, MESSAGE_LIMIT), vec![exact.clone()]);
    }

    #[test]
    fn splits_on_lines_then_words_then_anywhere() {
        let cases: [(String, usize); 4] = [
            ("line of text\n".repeat(400), 100),
            ("word ".repeat(1000), 100),
            ("é".repeat(5000), 100),
            (format!("{}\n{}", "a ".repeat(300), "b".repeat(3000)), 2000),
        ];
        for (text, limit) in cases {
            let parts = split_message(&text, limit);
            assert!(parts.len() > 1);
            for part in &parts {
                assert!(part.chars().count() <= limit, "part too long: {}", part.chars().count());
                assert!(!part.is_empty());
            }
            let joined: String = parts.concat();
            assert_eq!(joined.replace([' ', '\n'], ""), text.replace([' ', '\n'], ""), "nothing lost");
        }
    }

    #[test]
    fn code_blocks_are_closed_and_reopened() {
        let code: String = (0..200).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("intro\n```rust\n{code}```\noutro");
        let parts = split_message(&text, 500);
        assert!(parts.len() > 2);
        for (i, part) in parts.iter().enumerate() {
            assert!(part.chars().count() <= 500);
            assert_eq!(part.matches("```").count() % 2, 0, "part {i} has unbalanced fences: {part}");
            if i > 0 && i + 1 < parts.len() {
                assert!(part.starts_with("```rust\n"), "part {i} reopens the block: {part}");
            }
        }
        let all: Vec<&str> = parts.iter().flat_map(|p| words(p)).collect();
        assert_eq!(all, words(&text));
        assert!(parts.last().is_some_and(|p| p.ends_with("outro")));
    }
}
