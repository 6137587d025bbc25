//! The one escaping helper for human output: text from upstream metadata (item names, paths,
//! versions, URLs), the catalogue or the command line is passed through [`line()`] (or shown with
//! [`Escaped`]) before it reaches a terminal or a log, so it can neither start a new line (a
//! forged `+ …` plan line or `streamvault: error:` line), nor move the cursor (`\r`, ANSI
//! escapes), nor reorder what is shown (bidi overrides).
//!
//! Escaped: every C0 control (tab and newline included), DEL, every C1 control, the bidi
//! embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), the directional marks
//! (U+200E, U+200F, U+061C) and the line and paragraph separators (U+2028, U+2029). They are
//! written as Rust writes them in `{:?}`: `\n`, `\r`, `\t`, `\0`, otherwise `\u{1b}`. Everything
//! else, backslashes included, is printed as is: the output is for people, not to be parsed back.
//! JSON output (`--json`) never goes through here: it stays exact (serde escapes C0 controls).

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal raw.
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every unsafe character escaped; borrowed when there is none (the common case).
pub fn line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(&mut out, c);
    }
    Cow::Owned(out)
}

fn push(out: &mut String, c: char) {
    use fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c if is_unsafe(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Display adapter: `format!("{}", Escaped(name))` prints `name` escaped.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&line(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_only() {
        assert!(matches!(line("plain/path-1.0_ü"), Cow::Borrowed(_)));
        assert_eq!(
            line("a\nstreamvault: error: x\r\u{1b}[31m\u{7f}\u{85}\u{9b}"),
            "a\\nstreamvault: error: x\\r\\u{1b}[31m\\u{7f}\\u{85}\\u{9b}"
        );
        assert_eq!(
            line("\u{202e}gpj.exe\u{2066}\u{2069}\u{200f}\t\0"),
            "\\u{202e}gpj.exe\\u{2066}\\u{2069}\\u{200f}\\t\\0"
        );
        assert_eq!(line("back\\slash"), "back\\slash");
        assert_eq!(Escaped("x\ny").to_string(), "x\\ny");
        for c in (0u32..0x2100).filter_map(char::from_u32) {
            let e = line(&c.to_string()).into_owned();
            assert!(!e.chars().any(is_unsafe), "{c:?} -> {e:?}");
        }
    }
}
