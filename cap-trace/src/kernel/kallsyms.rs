//! Kernel symbols from `/proc/kallsyms`: function ranges for the call-site classifier and names
//! for addresses the classifier did not know.

use std::io::{BufRead, BufReader, Read};

/// One text symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("cannot read /proc/kallsyms: {0}")]
    Read(#[from] std::io::Error),
    #[error(
        "/proc/kallsyms hides kernel addresses from this process: it needs CAP_SYSLOG (root has it; see deploy/cap-trace.service)"
    )]
    Hidden,
}

/// Strips compiler suffixes such as `.isra.0`, `.constprop.0`, `.cold`.
pub fn base_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// `(address, type, name, in a module)` of one `/proc/kallsyms` line.
fn parse_line(line: &str) -> Option<(u64, &str, &str, bool)> {
    let mut fields = line.split_ascii_whitespace();
    let (addr, kind, name) = (fields.next()?, fields.next()?, fields.next()?);
    let addr = u64::from_str_radix(addr, 16).ok()?;
    Some((addr, kind, name, fields.next().is_some()))
}

/// `[start, end)` of each wanted function (by base name), where `end` is the next text symbol,
/// under its full name: a function's `.cold` part (or `.isra.0` copy) is its own range, and the
/// caller tells it from the main body. Functions not in the kernel are absent from the result.
pub fn function_ranges(
    reader: impl Read,
    wanted: &[&str],
) -> Result<Vec<(String, u64, u64)>, KallsymsError> {
    let mut text = Vec::new();
    let mut any_nonzero = false;
    for line in BufReader::new(reader).lines() {
        let line = line?;
        // Module symbols carry a [module] suffix; capability code is built in.
        let Some((addr, kind, name, false)) = parse_line(&line) else {
            continue;
        };
        any_nonzero |= addr != 0;
        if matches!(kind, "T" | "t") {
            text.push((addr, name.to_owned()));
        }
    }
    if !any_nonzero && !text.is_empty() {
        return Err(KallsymsError::Hidden);
    }
    text.sort_by_key(|(addr, _)| *addr);
    let mut out = Vec::new();
    for (i, (addr, name)) in text.iter().enumerate() {
        if wanted.contains(&base_name(name)) {
            let end = text[i + 1..]
                .iter()
                .map(|(a, _)| *a)
                .find(|a| a > addr)
                .unwrap_or(addr + 1);
            out.push((name.clone(), *addr, end));
        }
    }
    Ok(out)
}

/// Names `addrs` as `function+0xoff`, reading `/proc/kallsyms` once.
pub fn symbolize(reader: impl Read, addrs: &[u64]) -> Result<Vec<Option<String>>, KallsymsError> {
    let mut best: Vec<Option<(u64, String)>> = vec![None; addrs.len()];
    for line in BufReader::new(reader).lines() {
        let line = line?;
        let Some((addr, kind, name, _)) = parse_line(&line) else {
            continue;
        };
        if !matches!(kind, "T" | "t") {
            continue;
        }
        for (i, target) in addrs.iter().enumerate() {
            if addr <= *target && best[i].as_ref().is_none_or(|(a, _)| *a < addr) {
                best[i] = Some((addr, name.to_owned()));
            }
        }
    }
    Ok(addrs
        .iter()
        .zip(best)
        .map(|(target, best)| best.map(|(addr, name)| format!("{name}+{:#x}", target - addr)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81366080 T file_ns_capable
ffffffff81366130 T ns_capable_setid
ffffffff813661a0 T ns_capable
ffffffff81366210 T capable
ffffffff81366280 T ns_capable_noaudit
ffffffff81366290 t ns_capable_noaudit.cold
ffffffff81a80900 T cap_capable
ffffffff81a80a00 d some_data
ffffffff81a80b10 T cap_vm_enough_memory
ffffffffc0001000 t helper\t[some_module]
";

    #[test]
    fn ranges_end_at_next_text_symbol() {
        let ranges = function_ranges(
            SAMPLE.as_bytes(),
            &["ns_capable", "cap_capable", "ns_capable_noaudit", "missing"],
        )
        .unwrap();
        assert_eq!(
            ranges,
            [
                (
                    "ns_capable".to_owned(),
                    0xffffffff813661a0,
                    0xffffffff81366210
                ),
                (
                    "ns_capable_noaudit".to_owned(),
                    0xffffffff81366280,
                    0xffffffff81366290
                ),
                // The .cold part is its own range, under its own name.
                (
                    "ns_capable_noaudit.cold".to_owned(),
                    0xffffffff81366290,
                    0xffffffff81a80900
                ),
                // Data symbols do not end a function.
                (
                    "cap_capable".to_owned(),
                    0xffffffff81a80900,
                    0xffffffff81a80b10
                ),
            ]
        );
    }

    #[test]
    fn hidden_addresses_are_an_error() {
        let hidden = "0000000000000000 T cap_capable\n0000000000000000 T capable\n";
        assert!(matches!(
            function_ranges(hidden.as_bytes(), &["cap_capable"]),
            Err(KallsymsError::Hidden)
        ));
    }

    #[test]
    fn symbolizes_addresses() {
        let names = symbolize(
            SAMPLE.as_bytes(),
            &[0xffffffff813661ca, 0xffffffff81a80983, 1],
        )
        .unwrap();
        assert_eq!(
            names,
            [
                Some("ns_capable+0x2a".to_owned()),
                Some("cap_capable+0x83".to_owned()),
                None
            ]
        );
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name("do_execveat_common.isra.0"), "do_execveat_common");
        assert_eq!(base_name("capable"), "capable");
    }
}
