//! Table-driven tests of Discord markdown → Matrix HTML.

use super::*;

/// Users `1` = Alice, `2` = B<o>b; role `7` = mods; channel `9` = general.
struct Fixture;

impl MentionResolver for Fixture {
    fn user(&self, id: &str) -> (String, String) {
        let name = match id {
            "1" => "Alice",
            "2" => "B<o>b",
            _ => "someone",
        };
        (name.to_owned(), format!("<a href=\"https://matrix.to/#/@discord_{id}:x\">{}</a>", escape_html(name)))
    }
    fn role(&self, id: &str) -> Option<String> {
        (id == "7").then(|| "mods".to_owned())
    }
    fn channel(&self, id: &str) -> Option<String> {
        (id == "9").then(|| "general".to_owned())
    }
}

fn html(md: &str) -> String {
    let converted = markdown_to_matrix(md, &Fixture);
    converted.html.unwrap_or_else(|| format!("PLAIN:{}", converted.body))
}

#[test]
fn inline_formatting() {
    let cases = [
        ("**bold**", "<strong>bold</strong>"),
        ("*it*", "<em>it</em>"),
        ("_it_", "<em>it</em>"),
        ("__under__", "<u>under</u>"),
        ("~~gone~~", "<del>gone</del>"),
        ("||secret||", "<span data-mx-spoiler>secret</span>"),
        ("`a*b*c`", "<code>a*b*c</code>"),
        ("``a`b``", "<code>a`b</code>"),
        ("***both***", "<strong><em>both</em></strong>"),
        ("**bold *and it* here**", "<strong>bold <em>and it</em> here</strong>"),
        ("*it **bold** it*", "<em>it <strong>bold</strong> it</em>"),
        ("__*under it*__", "<u><em>under it</em></u>"),
        ("||**spoiled bold**||", "<span data-mx-spoiler><strong>spoiled bold</strong></span>"),
        ("~~__x__~~", "<del><u>x</u></del>"),
        ("a **b** c", "a <strong>b</strong> c"),
    ];
    for (md, want) in cases {
        assert_eq!(html(md), want, "input {md:?}");
    }
}

#[test]
fn literal_and_unterminated_markers() {
    let cases = [
        ("plain text", "PLAIN:plain text"),
        ("**not closed", "PLAIN:**not closed"),
        ("snake_case_name", "PLAIN:snake_case_name"),
        ("2 * 3 * 4", "PLAIN:2 * 3 * 4"),
        ("a ~~b", "PLAIN:a ~~b"),
        ("`unclosed code", "PLAIN:`unclosed code"),
        ("||", "PLAIN:||"),
        ("****", "PLAIN:****"),
        ("\\*not it\\*", "*not it*"),
        ("\\_\\_x\\_\\_", "__x__"),
    ];
    for (md, want) in cases {
        assert_eq!(html(md), want, "input {md:?}");
    }
}

#[test]
fn tricky_combinations() {
    let cases = [
        ("___x___", "<u><em>x</em></u>"),
        ("**bold**text", "<strong>bold</strong>text"),
        ("<@1>,<@2>.", "<a href=\"https://matrix.to/#/@discord_1:x\">Alice</a>,<a href=\"https://matrix.to/#/@discord_2:x\">B&lt;o&gt;b</a>."),
        ("~~**a**~~", "<del><strong>a</strong></del>"),
        ("*a*b*", "<em>a</em>b*"),
        ("**héllo** wörld ✨", "<strong>héllo</strong> wörld ✨"),
        ("\\\\*a*", "\\<em>a</em>"),
        ("`**` not bold **", "<code>**</code> not bold **"),
        ("|| a `||` b ||", "<span data-mx-spoiler> a <code>||</code> b </span>"),
        ("_under_score_", "<em>under_score</em>"),
        ("a*b*c", "a<em>b</em>c"),
        ("a_b_c", "PLAIN:a_b_c"),
    ];
    for (md, want) in cases {
        assert_eq!(html(md), want, "input {md:?}");
    }
}

#[test]
fn html_is_escaped() {
    assert_eq!(html("**<b>&amp;</b>**"), "<strong>&lt;b&gt;&amp;amp;&lt;/b&gt;</strong>");
    assert_eq!(html("`<script>`"), "<code>&lt;script&gt;</code>");
    assert_eq!(html("a <not a tag> b\n**c**"), "a &lt;not a tag&gt; b<br><strong>c</strong>");
}

#[test]
fn code_blocks_keep_markup() {
    let cases = [
        ("```rust\nlet x = **y**;\n```", "<pre><code class=\"language-rust\">let x = **y**;</code></pre>"),
        ("```\n<@1> *x*\n```", "<pre><code>&lt;@1&gt; *x*</code></pre>"),
        ("```one line```", "<pre><code>one line</code></pre>"),
        (
            "before\n```py\nprint(1)\n```\nafter *it*",
            "before<pre><code class=\"language-py\">print(1)</code></pre>after <em>it</em>",
        ),
        ("```\nunterminated", "PLAIN:```\nunterminated"),
    ];
    for (md, want) in cases {
        assert_eq!(html(md), want, "input {md:?}");
    }
}

#[test]
fn blocks() {
    let cases = [
        ("> quoted\n> more\nafter", "<blockquote>quoted<br>more</blockquote>after"),
        (">>> all\nof\nthis", "<blockquote>all<br>of<br>this</blockquote>"),
        ("# Title", "<h1>Title</h1>"),
        ("### **Small**", "<h3><strong>Small</strong></h3>"),
        ("#nope", "PLAIN:#nope"),
        ("#### four", "PLAIN:#### four"),
        ("-# fine print", "<sub>fine print</sub>"),
        ("- a\n- *b*", "<ul><li>a</li><li><em>b</em></li></ul>"),
        ("1. one\n2. two", "<ol><li>one</li><li>two</li></ol>"),
        ("3. three", "<ol start=\"3\"><li>three</li></ol>"),
        ("line one\nline two", "PLAIN:line one\nline two"),
        ("*a*\nb", "<em>a</em><br>b"),
        ("> - item", "<blockquote><ul><li>item</li></ul></blockquote>"),
    ];
    for (md, want) in cases {
        assert_eq!(html(md), want, "input {md:?}");
    }
}

#[test]
fn links() {
    let cases = [
        ("see https://example.com/a_b_c.", "see <a href=\"https://example.com/a_b_c\">https://example.com/a_b_c</a>."),
        ("(https://x.org/wiki/A_(b))", "(<a href=\"https://x.org/wiki/A_(b)\">https://x.org/wiki/A_(b)</a>)"),
        ("[**site**](https://example.com)", "<a href=\"https://example.com\"><strong>site</strong></a>"),
        ("[x](javascript:alert(1))", "PLAIN:[x](javascript:alert(1))"),
        ("<https://no.embed/>", "<a href=\"https://no.embed/\">https://no.embed/</a>"),
        ("https://e.com/?a=1&b=\"2\"", "<a href=\"https://e.com/?a=1&amp;b=&quot;2\">https://e.com/?a=1&amp;b=&quot;2</a>&quot;"),
    ];
    for (md, want) in cases {
        assert_eq!(html(md), want, "input {md:?}");
    }
}

#[test]
fn mentions_and_emoji() {
    let cases = [
        ("hi <@1>!", "hi <a href=\"https://matrix.to/#/@discord_1:x\">Alice</a>!"),
        ("(<@!2>)", "(<a href=\"https://matrix.to/#/@discord_2:x\">B&lt;o&gt;b</a>)"),
        ("<@&7>, <#9>.", "@mods, #general."),
        ("<@&8>", "@unknown-role"),
        ("nice <:blob:123> <a:party:456>", "nice :blob: :party:"),
        ("`<@1>`", "<code>&lt;@1&gt;</code>"),
        ("<@abc>", "PLAIN:<@abc>"),
    ];
    for (md, want) in cases {
        assert_eq!(html(md), want, "input {md:?}");
    }
    assert_eq!(html("@everyone look"), "PLAIN:@everyone look");
    let converted = markdown_to_matrix("**hey** @here", &Fixture);
    assert_eq!(converted.html.as_deref(), Some("<strong>hey</strong> @room"));
}

#[test]
fn body_and_mentions() {
    let converted = markdown_to_matrix("<@1> and <@!2> and <@1> in <#9> :) <:blob:5>", &Fixture);
    assert_eq!(converted.body, "@Alice and @B<o>b and @Alice in #general :) :blob:");
    assert_eq!(converted.mentions, vec![RemoteUserId::from("1"), RemoteUserId::from("2")]);
    let plain = markdown_to_matrix("just text", &Fixture);
    assert_eq!(plain, Converted { body: "just text".to_owned(), html: None, mentions: vec![] });
}

#[test]
fn pathological_input_terminates() {
    for unit in ["*", "_", "**a", "||", "~", "`", "[", "*_", "\\", "<@"] {
        let md = unit.repeat(20_000);
        let converted = markdown_to_matrix(&md, &Fixture);
        assert!(converted.body.len() >= md.len() / 2, "unit {unit:?}");
    }
    let long = "word ".repeat(10_000);
    assert_eq!(markdown_to_matrix(&long, &Fixture).body, long);
}
