//! The command line as a user meets it: the live view, text that fits the terminal, the
//! completions and the manual page, helpful errors.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::process::{Command, Output};

use cap_trace_tests::*;

/// Runs cap-trace with `args` and these environment variables.
fn cap_trace_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(bin());
    command
        .args(args)
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run cap-trace")
}

/// The words of `text`, in order (a line break is a space).
fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().filter(|w| *w != "\\").collect()
}

/// No line wider than `width` characters.
fn fits(text: &str, width: usize) {
    fits_lines(text.lines(), text, width);
}

/// The same below a `run` report's title: the traced command, shell-quoted, is never wrapped
/// (a break inside a quoted argument would change what a shell reads back).
fn fits_below_title(text: &str, width: usize) {
    fits_lines(text.lines().skip(1), text, width);
}

fn fits_lines<'a>(lines: impl Iterator<Item = &'a str>, text: &str, width: usize) {
    for line in lines {
        assert!(
            line.chars().count() <= width,
            "{} columns: {line}\n{text}",
            line.chars().count()
        );
    }
}

#[test]
fn events_are_for_tracing_only() {
    let out = cap_trace_env(&[], &["explain", "CHOWN", "--events"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("explain does not take --events"),
        "{}",
        stderr(&out)
    );
    let out = cap_trace_env(&[], &["run", "--events", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn reports_fit_80_columns_without_splitting_words() {
    if !privileged("reports_fit_80_columns_without_splitting_words") {
        return;
    }
    let dir = TempDir::new("columns");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let profile = dir.join("p.json");
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        profile.to_str().unwrap(),
        "--",
        "chown",
        "nobody",
        file.to_str().unwrap(),
    ]));
    let show = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["show", profile.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(&cap_trace_env(env, &args))
    };
    for extra in [&[][..], &["--verbose", "--explain"][..]] {
        // Not a terminal and no COLUMNS: 80.
        let narrow = show(&[], extra);
        fits_below_title(&narrow, 80);
        let wide = show(&[("COLUMNS", "1000")], extra);
        assert_eq!(words(&narrow), words(&wide));
        assert!(wide.lines().any(|l| l.chars().count() > 80), "{wide}");
        let sixty = show(&[("COLUMNS", "60")], extra);
        fits_below_title(&sixty, 60);
        assert_eq!(words(&sixty), words(&wide));
    }
    let all = ok(&cap_trace_env(&[("COLUMNS", "80")], &["explain", "--all"]));
    fits(&all, 80);
    let wide = ok(&cap_trace_env(
        &[("COLUMNS", "1000")],
        &["explain", "--all"],
    ));
    assert_eq!(words(&all), words(&wide));
}

#[test]
fn a_terminal_is_measured() {
    // `script` gives cap-trace a pseudo-terminal; `stty cols` sets its width.
    if Command::new("script").arg("--version").output().is_err() {
        skip_or_fail("a_terminal_is_measured", "needs script (util-linux)");
        return;
    }
    let inner = format!(
        "stty cols 50; {} explain --all --color never",
        bin().display()
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env_remove("COLUMNS")
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("CHOWN (CAP_CHOWN, 0)"), "{text}");
    fits(&text, 50);
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&cap_trace_env(&[], &["completions", shell]));
        // fish names long options without their dashes (`-l events`).
        for word in ["container", "all-containers", "explain", "events"] {
            assert!(script.contains(word), "{shell}: {word}");
        }
    }
    // The bash script is valid bash, and completes subcommands and flags.
    let script = ok(&cap_trace_env(&[], &["completions", "bash"]));
    let dir = TempDir::new("completions");
    let path = dir.join("cap-trace.bash");
    std::fs::write(&path, &script).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(cap-trace ex); COMP_CWORD=1; _cap__trace cap-trace ex cap-trace; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        replies.lines().any(|l| l == "explain") && replies.lines().any(|l| l == "export"),
        "{replies}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cap_trace_env(&[], &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_man_page_renders() {
    let page = ok(&cap_trace_env(&[], &["man"]));
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH cap-trace 1"),
        "{page}"
    );
    if Command::new("groff").arg("--version").output().is_err() {
        skip_or_fail("the_man_page_renders", "needs groff");
        return;
    }
    let dir = TempDir::new("man");
    let path = dir.join("cap-trace.1");
    std::fs::write(&path, &page).unwrap();
    // -ww: every warning; a roff error or a warning fails the test.
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("groff")
        .args(["-man", "-Tutf8"])
        .arg(&path)
        .env("GROFF_NO_SGR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Formatting marks aside (overstrike), the page has the options and every subcommand.
    let plain: String = text
        .split('\u{8}')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                &part[part.chars().next().map_or(0, char::len_utf8)..]
            }
        })
        .collect();
    for word in [
        "--all-containers",
        "--events",
        "CAP-TRACE RUN",
        "CAP-TRACE EXPLAIN",
        "CAP-TRACE COMPLETIONS",
        "Exit status",
    ] {
        assert!(plain.contains(word), "{word}:\n{plain}");
    }
}

#[test]
fn an_unknown_capability_gets_the_nearest_name() {
    let out = cap_trace_env(&[], &["explain", "CHWON"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "cap-trace: error: unknown capability `CHWON`: did you mean CHOWN? (see `cap-trace explain --all`)"
    );
}

#[test]
fn compound_durations() {
    // Nonsense is a usage error that says why, before anything is traced.
    for (duration, says) in [
        ("30s1m", "largest to smallest"),
        ("1m30", "a unit is missing after 30"),
        ("10y", "unknown unit `y`"),
    ] {
        let out = cap_trace_env(&[], &["--all-containers", "--duration", duration]);
        assert_eq!(out.status.code(), Some(2), "{duration}");
        assert!(stderr(&out).contains(says), "{duration}: {}", stderr(&out));
    }
}

#[test]
fn help_states_the_privileges_tracing_needs() {
    let help = ok(&cap_trace_env(&[], &["--help"]));
    assert!(
        help.contains("Needs root (or CAP_BPF, CAP_PERFMON and CAP_SYSLOG)"),
        "{help}"
    );
}
