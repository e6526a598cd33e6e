//! The fleet view: `cap-trace explain BITMAP` against `capsh --decode`.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::process::Command;

use cap_trace_tests::*;

/// `capsh --decode=VALUE`'s line, or None where capsh is missing.
fn capsh_decode(value: &str) -> Option<String> {
    let out = Command::new("capsh")
        .arg(format!("--decode={value}"))
        .output()
        .ok()?;
    assert!(out.status.success(), "capsh --decode={value}");
    Some(String::from_utf8(out.stdout).unwrap().trim_end().to_owned())
}

#[test]
fn explain_decodes_bitmaps_as_capsh_does() {
    let values = [
        "0",
        "0000000000000000",
        "00000000a80425fb",   // Docker's default set
        "0x00000000800405fb", // podman's default set
        "000001ffffffffff",   // all 41
        "0x000000ffffffffff", // Docker 20.10's ALL without SYS_RESOURCE, and more
        "30000000000",        // CHECKPOINT_RESTORE and bit 41
        "ffffffffffffffff",   // every bit: 41..63 are not capabilities
        "8000000000000001",
    ];
    for value in values {
        let Some(expected) = capsh_decode(value) else {
            skip_or_fail(
                "explain_decodes_bitmaps_as_capsh_does",
                "capsh is missing (run `cargo xtask setup`: libcap2-bin)",
            );
            return;
        };
        let text = ok(&cap_trace(["explain", value]));
        assert_eq!(
            text.lines().next(),
            Some(expected.as_str()),
            "{value}:\n{text}"
        );
        // One line per capability after it, with its risk and what it allows; unknown bits
        // named as such.
        let listed = expected.split_once('=').unwrap().1;
        let count = listed.split(',').filter(|s| !s.is_empty()).count();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        if count == 0 {
            assert_eq!(rows, ["  no capabilities"], "{value}");
            continue;
        }
        assert_eq!(rows.len(), count, "{value}:\n{text}");
        for (row, name) in rows.iter().zip(listed.split(',')) {
            match name.parse::<u32>() {
                Ok(bit) => {
                    assert!(row.contains(&format!("bit {bit}")), "{row}");
                    assert!(row.contains("unknown"), "{row}");
                }
                Err(_) => {
                    let bare = name.trim_start_matches("cap_").to_ascii_uppercase();
                    assert!(row.trim_start().starts_with(&bare), "{row} for {name}");
                    assert!(
                        ["low", "medium", "high", "critical"]
                            .iter()
                            .any(|d| row.contains(&format!("  {d} "))),
                        "{row}"
                    );
                }
            }
        }
    }
    // JSON, and a mixture of names and bitmaps.
    let out = ok(&cap_trace(["explain", "--json", "chown", "0x3"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["name"], "CHOWN");
    assert_eq!(json[1]["bitmap"], "0x0000000000000003");
    assert_eq!(json[1]["capabilities"][1]["name"], "DAC_OVERRIDE");
    assert_eq!(json[1]["unknown_bits"], serde_json::json!([]));
    // Wider than 64 bits, or not hex: a usage error.
    let out = cap_trace(["explain", "1ffffffffffffffff"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("cap-trace: error:"),
        "{}",
        stderr(&out)
    );
}
