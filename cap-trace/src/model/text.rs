//! Text that comes from outside (command lines, thread names, container labels): read without
//! losing bytes that are not UTF-8 ([`from_bytes`]), and shown without obeying what it holds
//! ([`shown`]); and text laid out for a terminal ([`wrap`]), by the reports and the session's
//! messages alike.

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

/// How many columns a string takes on a terminal: its characters, less the escape codes of
/// colour (`render::text::Style`).
pub fn visible_width(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match c {
            '\x1b' => in_escape = true,
            'm' if in_escape => in_escape = false,
            _ if in_escape => {}
            _ => n += 1,
        }
    }
    n
}

/// Each line of `text` broken at spaces so that none is wider than `width` columns, the lines
/// a break makes indented by `hang` spaces (a hanging indent; for a line indented deeper, two
/// more than the line). Runs of spaces that lay out
/// columns are kept where no break falls; a word wider than the line stays whole. A `width` of
/// 0 leaves `text` as it is.
pub fn wrap(text: &str, width: usize, hang: usize) -> String {
    wrap_with(text, width, hang, "")
}

/// [`wrap`], ending each line a break makes with `end` (` \\` keeps a shell command one
/// command).
pub fn wrap_with(text: &str, width: usize, hang: usize, end: &str) -> String {
    if width == 0 {
        return text.to_owned();
    }
    // A hanging indent so deep that little fits after it helps nobody.
    let hang = hang.min(width * 2 / 3);
    let end_w = visible_width(end);
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let (line, newline) = match line.strip_suffix('\n') {
            Some(l) => (l, "\n"),
            None => (line, ""),
        };
        if visible_width(line) <= width {
            out.push_str(line);
            out.push_str(newline);
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        // A line's continuations hang below its own text, never left of where it starts.
        let hang = hang.max(indent + 2).min(width * 2 / 3);
        out.push_str(&line[..indent]);
        let mut col = indent;
        let mut fresh = true;
        let mut rest = &line[indent..];
        while !rest.is_empty() {
            let spaces = rest.len() - rest.trim_start_matches(' ').len();
            let after = &rest[spaces..];
            let word_len = after.find(' ').unwrap_or(after.len());
            let word = &after[..word_len];
            rest = &after[word_len..];
            if word.is_empty() {
                break;
            }
            let w = visible_width(word);
            // Room for the word, and for the continuation mark if more follows.
            let mark = if rest.trim().is_empty() { 0 } else { end_w };
            if fresh || col + spaces + w + mark <= width {
                out.push_str(&" ".repeat(spaces));
                out.push_str(word);
                col += spaces + w;
            } else {
                out.push_str(end);
                out.push('\n');
                out.push_str(&" ".repeat(hang));
                out.push_str(word);
                col = hang + w;
            }
            fresh = false;
        }
        out.push_str(newline);
    }
    out
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
