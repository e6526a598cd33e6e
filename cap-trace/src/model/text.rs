//! Text that comes from outside (command lines, thread names, container labels): read without
//! losing bytes that are not UTF-8 ([`from_bytes`]), and shown without obeying what it holds
//! ([`shown`]).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Text from outside that need not be UTF-8: valid UTF-8 as it is, each byte that is not
/// written `\xNN`, so nothing is lost or replaced by U+FFFD.
pub fn from_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Whether `c` must not reach a terminal or a comment as it is: control characters (C0, DEL,
/// C1: they move the cursor, end lines, start escape sequences), Unicode's line and paragraph
/// separators (line breaks to YAML 1.1), the bidirectional controls that reorder what a reader
/// sees, the byte-order mark, and the two noncharacters YAML parsers refuse.
pub(crate) fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fffe}'
                | '\u{ffff}'
        )
}

/// `s` for a terminal or inside a one-line comment: every [`unsafe_char`] shown escaped (`\n`,
/// `\r`, `\t`, `\e`, `\x7f`, `\u{2028}`), everything else as it is. The result is one line.
/// (`render::escape` has the escaping of each output format; this is the one a message on
/// stderr needs too, so it sits where the session can use it.)
pub fn shown(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if unsafe_char(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_kept() {
        assert_eq!(from_bytes(b"chown"), "chown");
        assert_eq!(from_bytes("café".as_bytes()), "café");
        assert_eq!(from_bytes(b"a\xffb\xc3"), "a\\xffb\\xc3");
        assert_eq!(from_bytes(b"\n\x1b"), "\n\u{1b}");
    }

    #[test]
    fn control_characters_are_shown() {
        assert_eq!(shown("web"), "web");
        assert!(matches!(shown("web"), Cow::Borrowed(_)));
        assert_eq!(
            shown("a\nb\r\t\u{1b}[31m\0\u{7f}\u{85}\u{2028}\u{202e}é"),
            r"a\nb\r\t\e[31m\x00\x7f\x85\u{2028}\u{202e}é"
        );
    }
}
