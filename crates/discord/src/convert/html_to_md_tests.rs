//! Table-driven tests of Matrix HTML → Discord markdown.

use super::*;

/// Ghosts are `@discord_<id>:x`.
struct Fixture;

impl GhostResolver for Fixture {
    fn discord_user(&self, matrix_user_id: &str) -> Option<String> {
        let localpart = matrix_user_id.strip_prefix("@discord_")?.strip_suffix(":x")?;
        Some(localpart.to_owned())
    }
}

fn md(html: &str) -> String {
    html_to_markdown(html, &Fixture)
}

#[test]
fn inline_formatting() {
    let cases = [
        ("<strong>bold</strong>", "**bold**"),
        ("<b>bold</b> and <i>it</i>", "**bold** and *it*"),
        ("<em>it</em>", "*it*"),
        ("<u>under</u>", "__under__"),
        ("<del>gone</del> <s>too</s>", "~~gone~~ ~~too~~"),
        ("<span data-mx-spoiler>secret</span>", "||secret||"),
        ("<span data-mx-spoiler=\"why\">secret</span>", "||secret||"),
        ("<strong><em>both</em></strong>", "***both***"),
        ("<strong>bold <em>it</em> bold</strong>", "**bold *it* bold**"),
        ("<strong> spaced </strong>x", " **spaced** x"),
        ("<code>a*b_c</code>", "`a*b_c`"),
        ("<code>a`b</code>", "``a`b``"),
        ("<code>`x</code>", "`` `x ``"),
        ("<font color=\"red\">red</font>", "red"),
    ];
    for (html, want) in cases {
        assert_eq!(md(html), want, "input {html:?}");
    }
}

#[test]
fn escaping() {
    let cases = [
        ("2*3*4 = snake_case ~~x~~ a|b", "2\\*3\\*4 = snake\\_case \\~\\~x\\~\\~ a\\|b"),
        ("&lt;@123&gt; `tick`", "\\<@123\\> \\`tick\\`"),
        ("&gt; not a quote", "\\> not a quote"),
        ("# not a heading", "\\# not a heading"),
        ("- not a list", "\\- not a list"),
        ("1. not a list", "1\\. not a list"),
        ("C# and 1.5", "C# and 1.5"),
        ("back\\slash", "back\\\\slash"),
        ("@everyone and @here", "@\u{200b}everyone and @\u{200b}here"),
        ("see https://e.com/a_b*c", "see https://e.com/a_b*c"),
        ("[not](a link)", "\\[not\\](a link)"),
    ];
    for (html, want) in cases {
        assert_eq!(md(html), want, "input {html:?}");
    }
}

#[test]
fn blocks() {
    let cases = [
        ("a<br>b", "a\nb"),
        ("<p>one</p><p>two</p>", "one\n\ntwo"),
        ("<pre><code class=\"language-rust\">let x = *y;\n</code></pre>", "```rust\nlet x = *y;\n```"),
        ("<pre><code>plain &lt;b&gt;</code></pre>", "```\nplain <b>\n```"),
        ("text<pre><code>x</code></pre>more", "text\n```\nx\n```\nmore"),
        ("<blockquote>quoted<br>two</blockquote>after", "> quoted\n> two\nafter"),
        ("<blockquote><p>para</p></blockquote>", "> para"),
        ("<h1>Title</h1>body", "# Title\nbody"),
        ("<h2>Sub</h2>", "## Sub"),
        ("<h5>Tiny</h5>", "**Tiny**"),
        ("<ul><li>a</li><li><strong>b</strong></li></ul>", "- a\n- **b**"),
        ("<ol start=\"3\"><li>c</li><li>d</li></ol>", "3. c\n4. d"),
        ("<ul><li>a<ul><li>nested</li></ul></li></ul>", "- a\n  - nested"),
        ("intro<ul><li>x</li></ul>outro", "intro\n- x\n\noutro"),
    ];
    for (html, want) in cases {
        assert_eq!(md(html), want, "input {html:?}");
    }
}

#[test]
fn links_and_pills() {
    let cases = [
        ("<a href=\"https://matrix.to/#/@discord_42:x\">Bob</a>: hi", "<@42>: hi"),
        ("<a href=\"https://matrix.to/#/%40discord_42%3Ax\">Bob</a>", "<@42>"),
        ("(<a href=\"https://matrix.to/#/@alice:x\">Alice</a>)", "(Alice)"),
        ("<a href=\"https://e.com\">https://e.com</a>", "https://e.com"),
        ("<a href=\"https://e.com/x\">the <b>site</b></a>", "[the **site**](https://e.com/x)"),
        ("<a href=\"javascript:alert(1)\">bad</a>", "bad"),
        ("<a href=\"https://e.com/a(b)\">w</a>", "[w](https://e.com/a(b%29)"),
    ];
    for (html, want) in cases {
        assert_eq!(md(html), want, "input {html:?}");
    }
}

#[test]
fn html_whitespace() {
    let cases = [
        ("a<br>\nb", "a\nb"),
        ("<p>one</p>\n<p>two</p>\n", "one\n\ntwo"),
        ("soft\nwrapped", "soft wrapped"),
        ("<pre><code>keep\n  indent\n</code></pre>", "```\nkeep\n  indent\n```"),
    ];
    for (html, want) in cases {
        assert_eq!(md(html), want, "input {html:?}");
    }
}

#[test]
fn tricky_nesting_and_punctuation() {
    let cases = [
        ("<b><a href=\"https://matrix.to/#/@discord_7:x\">B</a></b>!", "**<@7>**!"),
        ("<em>a</em><em>b</em>", "*a**b*"),
        ("<code>&lt;b&gt; &amp;</code>", "`<b> &`"),
        ("<del><code>x</code></del>", "~~`x`~~"),
        ("<ul><li><code>a*b</code></li><li>c_d</li></ul>", "- `a*b`\n- c\\_d"),
        ("<b></b>empty", "empty"),
        ("trailing <b>bold </b>space", "trailing **bold** space"),
    ];
    for (html, want) in cases {
        assert_eq!(md(html), want, "input {html:?}");
    }
}

#[test]
fn reply_fallback_is_dropped() {
    let html = "<mx-reply><blockquote><a href=\"https://matrix.to/#/!r:x/$e\">In reply to</a> \
                <a href=\"https://matrix.to/#/@a:x\">@a:x</a><br>old</blockquote></mx-reply>new *text*";
    assert_eq!(md(html), "new \\*text\\*");
}

#[test]
fn images_and_emoticons() {
    assert_eq!(md("<img data-mx-emoticon src=\"mxc://x/y\" alt=\":blob:\">"), ":blob:");
    assert_eq!(md("<img src=\"mxc://x/y\">"), "mxc://x/y");
}

#[test]
fn plain_text_escaping() {
    assert_eq!(text_to_markdown("**not bold** _x_"), "\\*\\*not bold\\*\\* \\_x\\_");
    assert_eq!(text_to_markdown("> q\n# h"), "\\> q\n\\# h");
}

#[test]
fn round_trip_keeps_formatting() {
    use crate::convert::md_to_html::{markdown_to_matrix, MentionResolver};
    struct Names;
    impl MentionResolver for Names {
        fn user(&self, id: &str) -> (String, String) {
            (id.to_owned(), format!("<a href=\"https://matrix.to/#/@discord_{id}:x\">{id}</a>"))
        }
        fn role(&self, _: &str) -> Option<String> {
            None
        }
        fn channel(&self, _: &str) -> Option<String> {
            None
        }
    }
    let cases = [
        "**bold** *it* __u__ ~~s~~ ||sp||",
        "<@12> `code *x*`",
        "```rust\nfn main() {}\n```",
        "> quote",
        "- a\n- b",
        "[site](https://e.com/x)",
    ];
    for original in cases {
        let html = markdown_to_matrix(original, &Names).html.expect("formatted");
        assert_eq!(md(&html), original, "via {html:?}");
    }
}
