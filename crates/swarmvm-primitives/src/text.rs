//! Untrusted text in messages: the one helper every crate uses to show a name, a reason or a
//! value that came from outside.
//!
//! Such text may hold control characters (a newline that forges a log line, an escape that
//! drives a terminal), Unicode format characters (a right-to-left override that makes
//! `exe.txt` read as `txt.exe`, zero-width characters that make two names look alike) or
//! line separators. [`shown`] escapes all of them and cuts the text short, so a message
//! stays one honest line.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// Characters [`shown`] keeps, at most.
pub const SHOWN_CHARS: usize = 64;

/// True for characters that must not appear raw in a message: control characters (Cc),
/// format characters (Cf: bidirectional overrides and isolates, zero-width characters, the
/// byte order mark, soft hyphens), and line and paragraph separators (Zl, Zp).
pub fn is_hidden(c: char) -> bool {
    // Printable ASCII, the usual case, without the table lookup.
    if (' '..='~').contains(&c) {
        return false;
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// True when `text` holds a character that [`is_hidden`].
pub fn has_hidden(text: &str) -> bool {
    text.chars().any(is_hidden)
}

/// `text` cut to `max` characters, hidden characters escaped (`\n`, `\u{202e}`), and `…`
/// appended when it was cut.
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 2));
    let mut chars = text.chars();
    for c in chars.by_ref().take(max) {
        if is_hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// How untrusted text appears in a message: [`escape`] to [`SHOWN_CHARS`] characters.
pub fn shown(text: &str) -> String {
    escape(text, SHOWN_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_formats_and_separators_are_escaped() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown("x\u{7f}y"), "x\\u{7f}y");
        assert_eq!(shown("peer\u{200b}1"), "peer\\u{200b}1", "zero-width space");
        assert_eq!(shown("\u{202e}gpj.exe"), "\\u{202e}gpj.exe", "right-to-left override");
        assert_eq!(shown("a\u{2066}b\u{2069}"), "a\\u{2066}b\\u{2069}", "isolates");
        assert_eq!(shown("\u{feff}bom"), "\\u{feff}bom");
        assert_eq!(shown("line\u{2028}break"), "line\\u{2028}break");
        assert_eq!(shown("Zoë Šťastná 山田"), "Zoë Šťastná 山田", "letters stay as they are");
        for c in ['\u{200c}', '\u{200d}', '\u{e0001}', '\u{ad}', '\u{61c}'] {
            assert!(is_hidden(c), "{c:?}");
        }
        for c in ['a', ' ', 'é', '\u{3000}', '😀'] {
            assert!(!is_hidden(c), "{c:?}");
        }
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "x".repeat(100);
        let s = shown(&long);
        assert_eq!(s.chars().count(), SHOWN_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(shown(&"y".repeat(SHOWN_CHARS)), "y".repeat(SHOWN_CHARS));
        assert_eq!(escape("abc", 2), "ab…");
    }
}
