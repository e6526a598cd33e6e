//! Escaping, one function per kind of output, so that no string a workload or an engine chose (a
//! command line, a container label, a thread name) can end a line, a comment or a quoted value
//! in what cap-trace prints: [`text`] for terminals and one-line comments, [`yaml`] for YAML
//! scalars and keys, [`hash_comment`] for YAML and shell comments, [`systemd_comment`] for unit
//! files, [`shell`] for a word of a shell command line. JSON needs none: serde_json escapes
//! every string it writes.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::model::text::unsafe_char;

/// `s` for a terminal or inside a one-line comment: control characters and the like shown
/// escaped ([`crate::model::text::shown`]); the result is one line.
pub fn text(s: &str) -> Cow<'_, str> {
    crate::model::text::shown(s)
}

/// A `#` comment line (YAML, shell) saying `s`, which cannot end the comment early.
pub fn hash_comment(s: &str) -> String {
    format!("# {}\n", text(s))
}

/// A comment line of a systemd unit saying `s`: one line, with its backslashes doubled so that
/// it never ends in the backslash that continues a unit file's line on the next, whichever way
/// a systemd version treats comment lines.
pub fn systemd_comment(s: &str) -> String {
    format!("# {}\n", text(s).replace('\\', "\\\\"))
}

/// `s` as one word of a shell command line that bash (in a UTF-8 locale; any POSIX shell when
/// `s` holds no [`unsafe_char`]) reads back as exactly `s`: as it is when plain, single-quoted when it holds
/// only printable characters, else ANSI-C quoted (`$'a\nb'`) with every unsafe character
/// escaped, so the result is one printable line.
pub fn shell(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        return s.to_owned();
    }
    if !s.chars().any(unsafe_char) {
        return format!("'{}'", s.replace('\'', r"'\''"));
    }
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str("$'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            '\r' => out.push_str(r"\r"),
            c if unsafe_char(c) && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if unsafe_char(c) && u32::from(c) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Words YAML 1.1 (PyYAML, compose tools) reads as booleans or null when unquoted.
const YAML_WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

/// `s` as a YAML scalar (value or key) that every YAML 1.1 and 1.2 parser reads back as
/// exactly the string `s`: plain when it is a word no parser could take for anything else (a
/// letter, then letters, digits, `_`, `-`, `.`, `/`; not a boolean or null), else double-quoted
/// with `"` and `\` escaped and everything outside printable ASCII written as `\xNN`, `\uNNNN`
/// or `\UNNNNNNNN`, so the result is printable ASCII on one line.
pub fn yaml(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !YAML_WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings made of what breaks outputs: line breaks of every kind, quotes, YAML indicators,
    /// escape sequences, NUL, bidirectional overrides, non-ASCII, astral characters.
    fn hostile_strings(n: usize) -> Vec<String> {
        const PIECES: &[&str] = &[
            "\n",
            "\r",
            "\r\n",
            "\t",
            "\u{1b}[31m",
            "\0",
            "\u{7f}",
            "\u{85}",
            "\u{2028}",
            "\u{2029}",
            "\u{202e}",
            "\u{feff}",
            "\u{fffe}",
            "\"",
            "'",
            "\\",
            "\\\n",
            ":",
            ": ",
            "#",
            " #",
            "- ",
            "-",
            "?",
            "[",
            "]",
            "{",
            "}",
            ",",
            "&a",
            "*a",
            "!",
            "!override",
            "|",
            ">",
            "%",
            "@",
            "`",
            "~",
            "---",
            "...",
            "yes",
            "on",
            "null",
            "1.5",
            "0x1f",
            "1e3",
            "1_000",
            "12:30",
            ".inf",
            "=",
            "<<",
            "é",
            "ÿ",
            "日本",
            "🦀",
            "\u{10ffff}",
            " ",
            "  ",
            "web",
            "ExecStartPre=/bin/evil",
            "[Service]",
            "\\x41",
        ];
        // A fixed xorshift sequence: the same strings on every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..n)
            .map(|_| {
                let len = next() % 6;
                (0..len)
                    .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell("chown"), "chown");
        assert_eq!(shell("/tmp/x"), "/tmp/x");
        assert_eq!(shell("a b"), "'a b'");
        assert_eq!(shell("it's"), r"'it'\''s'");
        assert_eq!(shell("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell("\x1b[31m"), r"$'\x1b[31m'");
        assert_eq!(shell("a\nb'c\\"), r"$'a\nb\'c\\'");
        assert_eq!(shell("\u{202e}é"), r"$'\u202eé'");
        assert_eq!(shell(""), "''");
    }

    /// The proof with a real shell: bash reads every word back as the string it came from (an
    /// argument cannot hold NUL, so none of the strings does).
    #[test]
    fn bash_reads_back_every_word() {
        let strings: Vec<String> = hostile_strings(3_000)
            .into_iter()
            .filter(|s| !s.contains('\0'))
            .collect();
        let mut script = String::from("printf '%s\\0'");
        for s in &strings {
            script.push(' ');
            script.push_str(&shell(s));
        }
        let out = std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &script])
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
        assert_eq!(read.len(), strings.len() + 1, "one word per string");
        for (s, r) in strings.iter().zip(&read) {
            assert_eq!(s.as_bytes(), *r, "{s:?} written as {}", shell(s));
        }
        for s in &strings {
            assert!(!shell(s).chars().any(unsafe_char), "{}", shell(s));
        }
    }

    /// Reads a scalar [`yaml`] wrote, by the rules of YAML's plain and double-quoted styles.
    fn read_yaml(scalar: &str) -> String {
        let Some(inner) = scalar.strip_prefix('"') else {
            return scalar.to_owned();
        };
        let inner = inner.strip_suffix('"').expect("closing quote");
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                assert!(c != '"', "unescaped quote in {scalar}");
                out.push(c);
                continue;
            }
            let digits = match chars.next().expect("escape") {
                '"' => {
                    out.push('"');
                    continue;
                }
                '\\' => {
                    out.push('\\');
                    continue;
                }
                'x' => 2,
                'u' => 4,
                'U' => 8,
                other => panic!("unexpected escape \\{other} in {scalar}"),
            };
            let hex: String = chars.by_ref().take(digits).collect();
            out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
        }
        out
    }

    #[test]
    fn yaml_scalars_read_back_as_the_same_string() {
        for s in hostile_strings(20_000) {
            let y = yaml(&s);
            assert!(y.chars().all(|c| (' '..='~').contains(&c)), "{y}");
            assert_eq!(read_yaml(&y), s, "{y}");
        }
    }

    #[test]
    fn yaml_quotes_what_a_parser_could_misread() {
        assert_eq!(yaml("web"), "web");
        assert_eq!(yaml("my-app_1.v2"), "my-app_1.v2");
        assert_eq!(yaml("CHOWN"), "CHOWN");
        for quoted in [
            "", "yes", "On", "NULL", "y", "1.5", "0x1f", "1e3", "-x", ".inf", "a: b", "a #b", "~",
            "é",
        ] {
            assert!(yaml(quoted).starts_with('"'), "{quoted}");
        }
        assert_eq!(yaml("a\"b\\c\n\u{1b}"), r#""a\"b\\c\x0a\x1b""#);
        assert_eq!(yaml("日🦀"), r#""\u65e5\U0001f980""#);
    }

    #[test]
    fn text_is_one_safe_line() {
        for s in hostile_strings(20_000) {
            let t = text(&s);
            assert!(!t.chars().any(unsafe_char), "{t:?}");
            assert!(hash_comment(&s).ends_with('\n'));
            assert_eq!(hash_comment(&s).matches('\n').count(), 1);
            assert!(
                !systemd_comment(&s).ends_with("\\\n") || systemd_comment(&s).ends_with("\\\\\n")
            );
        }
        assert_eq!(systemd_comment("ends in \\"), "# ends in \\\\\n");
    }

    /// The proof with a real parser: PyYAML (as compose tools and kubernetes-validate use it)
    /// reads every scalar back as the string it came from, and every comment as a comment.
    /// Needs the Python tools `cargo xtask setup` installs.
    #[test]
    fn pyyaml_reads_back_every_scalar_and_comment() {
        let python =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pytools/bin/python");
        if !python.exists() {
            assert!(
                std::env::var_os("CAP_TRACE_REQUIRE_ROOT_TESTS").is_none(),
                "{} missing: run `cargo xtask setup`",
                python.display()
            );
            eprintln!("skipped: {} missing (cargo xtask setup)", python.display());
            return;
        }
        let strings = hostile_strings(5_000);
        let mut doc = String::new();
        for s in &strings {
            doc.push_str(&hash_comment(s));
            let _ = writeln!(doc, "- {}: {}", yaml(s), yaml(s));
        }
        let script = "import json, sys, yaml\n\
                      doc = yaml.safe_load(sys.stdin.buffer)\n\
                      json.dump([[k, v] for item in doc for k, v in item.items()], sys.stdout)";
        let mut child = std::process::Command::new(&python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            use std::io::Write as _;
            stdin.write_all(doc.as_bytes())
        });
        let out = child.wait_with_output().expect("python ends");
        writer.join().expect("writer").expect("written");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read: Vec<(String, String)> = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(read.len(), strings.len());
        for ((key, value), s) in read.iter().zip(&strings) {
            assert_eq!((key, value), (s, s));
        }
    }
}
