//! The command line as a user meets it: the live view, text that fits the terminal, the
//! completions and the manual page, helpful errors.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::process::{Command, Output};

use cap_trace_tests::terminal::{OnTerminal, status_lines};
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
}

/// --events, --explain and --compose-lists are shown by the commands that take them alone,
/// and refused by name elsewhere.
#[test]
fn options_are_offered_where_they_count() {
    let help = |sub: &str| ok(&cap_trace_env(&[], &[sub, "--help"]));
    let (run, show, daemon) = (help("run"), help("show"), help("daemon"));
    for (text, option, offered) in [
        (&run, "--events", true),
        (&run, "--explain", true),
        (&run, "--compose-lists", false),
        (&show, "--events", false),
        (&show, "--explain", true),
        (&show, "--compose-lists", true),
        (&daemon, "--events", false),
        (&daemon, "--explain", false),
        (&daemon, "--compose-lists", false),
    ] {
        assert_eq!(text.contains(option), offered, "{option}:\n{text}");
    }
    for (args, says) in [
        (
            &["daemon", "--state-dir", "/nonexistent", "--explain"][..],
            "daemon does not take --explain",
        ),
        (
            &["ps", "--compose-lists", "merge"][..],
            "ps does not take --compose-lists",
        ),
        (
            &["explain", "CHOWN", "--explain"][..],
            "explain does not take --explain",
        ),
    ] {
        let out = cap_trace_env(&[], args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// `run --events`: each new kind of check is on stdout while the command still runs (the
/// command waits for a file the test makes only once it has seen its chown's line), the
/// report after it; the command's own stdout goes to stderr.
#[test]
fn run_shows_checks_as_they_happen() {
    use std::io::BufRead as _;
    if !privileged("run_shows_checks_as_they_happen") {
        return;
    }
    let dir = TempDir::new("live-run");
    let (file, go) = (dir.join("f"), dir.join("go"));
    std::fs::write(&file, "x").unwrap();
    let script = format!(
        "echo said-by-the-$((1+1)); chown nobody {}; while [ ! -e {} ]; do sleep 0.05; done",
        file.display(),
        go.display()
    );
    let mut child = Command::new(bin())
        .args(["run", "--events", "--", "sh", "-c", &script])
        .env("COLUMNS", "80")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = capture_stderr(&mut child);
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut live = Vec::new();
    // Without the file the command never ends: the chown line must come while it runs.
    let killer = {
        let pid = child.id();
        let go = go.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(60));
            if !go.exists() {
                // SAFETY: plain kill(2) on the test's own child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        })
    };
    for line in lines.by_ref() {
        let line = line.unwrap();
        let chown = line.contains(" CHOWN ");
        live.push(line);
        if chown {
            break;
        }
    }
    assert!(
        live.last().is_some_and(|l| l.contains(" CHOWN ")),
        "no CHOWN line while the command ran:\n{}\n{}",
        live.join("\n"),
        err.lock().unwrap()
    );
    std::fs::write(&go, "").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success(), "{}", err.lock().unwrap());
    drop(killer);
    let header = &live[0];
    assert!(
        header.starts_with("TIME     WORKLOAD") && header.trim_end().ends_with("SYSCALL"),
        "{header}"
    );
    let chown = live.last().unwrap();
    let w = words(chown);
    assert_eq!(
        w[w.len() - 5..],
        ["chown", "CHOWN", "granted", "yes", "fchownat"],
        "{chown}"
    );
    // The workload is the command, cut to its column.
    assert!(chown[9..].starts_with("sh -c echo sa~ "), "{chown}");
    // The report follows, apart from the live lines; the command's words are on stderr alone.
    let stdout = format!("{}\n{}", live.join("\n"), rest.join("\n"));
    let report = stdout
        .find("\n\nsh -c")
        .expect("a report after the live lines");
    assert!(
        stdout[report..].contains("Suggestion: --cap-drop=ALL --cap-add=CHOWN"),
        "{stdout}"
    );
    // (The report's title has the command as written, `$((1+1))`, not what it printed.)
    assert!(!stdout.contains("said-by-the-2"), "{stdout}");
    assert!(
        err.lock().unwrap().contains("said-by-the-2"),
        "{}",
        err.lock().unwrap()
    );
}

/// `run --events --json`: JSON lines, each check an object with `"event": "check"` under the
/// profile's workload name, then the profile as one line.
#[test]
fn run_events_as_json_lines() {
    if !privileged("run_events_as_json_lines") {
        return;
    }
    let dir = TempDir::new("live-run-json");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let out = cap_trace([
        "run",
        "--events",
        "--json",
        "--",
        "sh",
        "-c",
        &format!("echo said; chown nobody {}", file.display()),
    ]);
    let text = ok(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (profile, checks) = lines.split_last().unwrap();
    assert_eq!(profile["schema"], "cap-trace/profile", "{text}");
    let chown = checks
        .iter()
        .find(|c| c["cap"] == "CHOWN")
        .unwrap_or_else(|| panic!("no CHOWN check: {text}"));
    for check in checks {
        assert_eq!(check["event"], "check", "{check}");
        assert_eq!(check["workload"], profile["workload"]["name"], "{check}");
    }
    assert_eq!(chown["comm"], "chown");
    assert_eq!(chown["verdict"], "granted");
    assert_eq!(chown["syscall"], "fchownat");
    assert!(
        chown["pid"].as_u64().is_some() && chown["time"].is_string(),
        "{chown}"
    );
    // One line per kind: the profile counts each kind once, with its count.
    assert_eq!(
        checks.iter().filter(|c| c["cap"] == "CHOWN").count(),
        1,
        "{text}"
    );
    assert!(stderr(&out).contains("said"), "{}", stderr(&out));
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
    // Options --help hides are not offered: the benchmark switches, and what a subcommand
    // refuses (a daemon writes no --format; --events is for tracing and run).
    let complete = |words: &str| {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _cap__trace cap-trace \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let daemon = complete("cap-trace daemon --");
    assert!(daemon.lines().any(|l| l == "--state-dir"), "{daemon}");
    for hidden in [
        "--format",
        "--output",
        "--events",
        "--explain",
        "--stream",
        "--floor",
    ] {
        assert!(!daemon.lines().any(|l| l == hidden), "{hidden}: {daemon}");
    }
    let run = complete("cap-trace run --");
    for shown in ["--events", "--explain", "--verify", "--format"] {
        assert!(run.lines().any(|l| l == shown), "{shown}: {run}");
    }
    assert!(!run.lines().any(|l| l == "--compose-lists"), "{run}");
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

/// The subcommands `cap-trace --help` lists.
fn subcommands() -> Vec<String> {
    let help = ok(&cap_trace_env(&[], &["--help"]));
    let list = &help[help.find("\nCommands:\n").expect("a command list") + 11..];
    list.lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .filter(|name| name != "help")
        .collect()
}

/// The values `cap-trace ARGS --help` lists for `option` (empty when it shows no such option).
fn values_in_help(args: &[&str], option: &str) -> Vec<String> {
    let mut args = args.to_vec();
    args.push("--help");
    let help = ok(&cap_trace_env(&[], &args));
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(option));
    if lines.next().is_none() {
        return Vec::new();
    }
    lines
        .take_while(|l| !l.starts_with("  -") && !l.starts_with("      --"))
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|l| l.split(':').next().unwrap().to_owned())
        .collect()
}

const FORMATS: [&str; 8] = [
    "text", "json", "docker", "podman", "compose", "k8s", "oci", "systemd",
];

/// The files the format cases use: a saved profile, the same of a compose service, a socket
/// no daemon listens on, a directory.
struct FormatInputs {
    dir: TempDir,
    fixture: String,
    compose: String,
    missing: String,
}

impl FormatInputs {
    fn new() -> FormatInputs {
        let dir = TempDir::new("formats");
        let fixture = workspace_root().join("tests/fixtures/profiles/v2.json");
        // A compose override is of compose services: the same profile, of one.
        let mut service: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
        service["workload"]["kind"] = "container".into();
        service["workload"]["name"] = "shop/web".into();
        service["workload"]["compose"] = serde_json::json!({"project": "shop", "service": "web"});
        let compose = dir.join("service.json");
        std::fs::write(&compose, service.to_string()).unwrap();
        let text = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        FormatInputs {
            fixture: text(&fixture),
            compose: text(&compose),
            missing: text(&dir.join("no-daemon.sock")),
            dir,
        }
    }
}

/// `cap-trace SUB ... --format FORMAT`, and the exit code that says the format was taken.
fn format_case(sub: &str, format: &str, inputs: &FormatInputs) -> (Vec<String>, i32) {
    let fixture = inputs.fixture.as_str();
    let profile = if format == "compose" {
        inputs.compose.as_str()
    } else {
        fixture
    };
    let dir = inputs.dir.path().to_str().unwrap();
    let missing = inputs.missing.as_str();
    let (args, code): (Vec<&str>, i32) = match sub {
        "run" => (vec!["run", "--format", format, "--", "true"], 0),
        "show" => (vec!["show", profile], 0),
        "merge" => (vec!["merge", profile, profile], 0),
        "check" => (
            vec!["check", "--baseline", fixture, "--profile", fixture],
            0,
        ),
        "explain" => (vec!["explain", "CHOWN"], 0),
        "ps" => (vec!["ps", fixture], 0),
        "report" => (vec!["report", fixture], 0),
        // No daemon listens there: exit 3, not a usage error.
        "status" => (vec!["status", "--socket", missing], 3),
        "profile" => (vec!["profile", "web", "--socket", missing], 3),
        "daemon" => (vec!["daemon", "--state-dir", dir], 0),
        "export" => (vec!["export", dir], 0),
        "completions" => (vec!["completions", "bash"], 0),
        "man" => (vec!["man"], 0),
        other => panic!("no case for {other}"),
    };
    let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    if !args.iter().any(|a| a == "--format") {
        args.extend(["--format".to_owned(), format.to_owned()]);
    }
    (args, code)
}

/// `--help` of every subcommand offers exactly the formats it writes: each one it names works
/// on a saved profile (or, for the daemon's clients with no daemon, fails for want of one, not
/// of the format), and each other is refused before any work with one line naming those it
/// takes.
#[test]
fn each_command_offers_the_formats_it_accepts() {
    let inputs = FormatInputs::new();
    let tracing = privileged("each_command_offers_the_formats_it_accepts");
    let subcommands = subcommands();
    assert_eq!(
        subcommands,
        [
            "run",
            "show",
            "merge",
            "check",
            "explain",
            "ps",
            "report",
            "daemon",
            "status",
            "profile",
            "export",
            "completions",
            "man"
        ],
        "a new subcommand: give it a case in format_case"
    );
    for sub in &subcommands {
        let offered = values_in_help(&[sub], "--format <FORMAT>");
        for format in FORMATS {
            let (args, code) = format_case(sub, format, &inputs);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if offered.iter().any(|o| o == format) {
                if *sub == "run" && !tracing {
                    continue;
                }
                let out = cap_trace_env(&[], &args);
                assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
                assert!(
                    !stderr(&out).contains("--format"),
                    "{args:?}: {}",
                    stderr(&out)
                );
                continue;
            }
            let out = cap_trace_env(&[], &args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("cap-trace: error: "), "{args:?}: {err}");
            let names = if offered.is_empty() {
                format!("{sub} does not take --format")
            } else {
                format!("[possible values: {}]", offered.join(", "))
            };
            assert!(err.contains(&names), "{args:?}: {err}");
        }
        // What each command takes, as its help says it.
        let expected: &[&str] = match sub.as_str() {
            "run" => &["text", "json", "docker", "podman", "k8s", "oci", "systemd"],
            "show" | "merge" | "profile" => &FORMATS,
            "check" | "explain" | "ps" | "report" | "status" => &["text", "json"],
            _ => &[],
        };
        assert_eq!(offered, expected, "{sub} --help");
    }
    // Tracing containers writes every format.
    assert_eq!(values_in_help(&[], "--format <FORMAT>"), FORMATS);
}

/// `--probe`'s values are listed with what each means, and one not listed is refused naming
/// them.
#[test]
fn the_probe_values_are_explained() {
    let help = ok(&cap_trace_env(&[], &["run", "--help"]));
    assert_eq!(
        values_in_help(&["run"], "--probe <PROBE>"),
        ["auto", "tracepoint", "fexit", "kprobe"],
        "{help}"
    );
    assert!(
        help.contains("- tracepoint: The capability:cap_capable tracepoint"),
        "{help}"
    );
    let out = cap_trace_env(&[], &["run", "--probe", "uprobe", "--", "true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("[possible values: auto, tracepoint, fexit, kprobe]"),
        "{err}"
    );
}

/// An engine address that is no unix socket is said to be unused, once, with the fix; the
/// container is looked for on the engines cap-trace can ask.
#[test]
fn a_tcp_engine_address_is_reported_as_unsupported() {
    if !privileged("a_tcp_engine_address_is_reported_as_unsupported") {
        return;
    }
    for var in ["DOCKER_HOST", "CONTAINER_HOST"] {
        let out = cap_trace_env(
            &[(var, "tcp://127.0.0.1:2375")],
            &["--container", "ct-no-such-container", "--wait", "1s"],
        );
        let err = stderr(&out);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains(var)).collect();
        let [warning] = warnings.as_slice() else {
            panic!("{var}: {err}")
        };
        assert!(warning.starts_with("cap-trace: warning: "), "{err}");
        for says in [
            "tcp://127.0.0.1:2375 is not supported",
            "unix socket",
            &format!("{var}=unix://"),
            "--engine-socket",
        ] {
            assert!(warning.contains(says), "{says}: {err}");
        }
    }
}

/// A container name that is not running: after a moment of waiting, once, the running
/// containers of a similar name and the engines asked; the error at the end of the wait says
/// the same (exit 4: not found in time); --verbose names the engines.
#[test]
fn a_mistyped_container_name_gets_the_running_one() {
    let engine = engine::Engine::Podman;
    if !engine.available("a_mistyped_container_name_gets_the_running_one") {
        return;
    }
    // Built first: the container must still run when cap-trace asks.
    bin();
    let unique = podman::name("hint");
    let (web, typo) = (format!("{unique}-web"), format!("{unique}-wbe"));
    engine.remove(&web);
    let started = engine.run_detached(&web, &["--rm"], "sleep 60");
    assert!(started.status.success(), "{started:?}");
    let out = cap_trace_env(&[], &["--container", &typo, "--wait", "3s", "--verbose"]);
    engine.remove(&web);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let meant = format!("did you mean `{web}`?");
    let hints: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(&format!("cap-trace: container `{typo}` is not running yet")))
        .collect();
    let [hint] = hints.as_slice() else {
        panic!("{err}")
    };
    assert!(hint.contains(&meant), "{err}");
    assert!(hint.contains("asked podman"), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("cap-trace: error: container `{typo}` not found")),
        "{err}"
    );
    assert!(
        last.contains(&meant) && last.contains("asked podman"),
        "{err}"
    );
    let engines = err
        .lines()
        .find_map(|l| l.strip_prefix("cap-trace: asking engines: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(engines.contains("podman"), "{err}");
}

/// On a terminal, a trace keeps a status line on stderr (elapsed and remaining time,
/// containers, checks, losses), says when each container starts and exits on lines of their
/// own, and with --output names the file written last.
#[test]
fn a_status_line_on_a_terminal() {
    let engine = engine::Engine::Podman;
    if !privileged("a_status_line_on_a_terminal")
        || !engine.available("a_status_line_on_a_terminal")
    {
        return;
    }
    let name = podman::name("status");
    let dir = TempDir::new("status");
    let output = dir.join("p.json");
    let terminal = OnTerminal::start(&format!(
        "'{}' --container {name} --duration 8s --output '{}'",
        bin().display(),
        output.display()
    ));
    terminal.wait_for("waiting for container", std::time::Duration::from_secs(60));
    let ran = engine.run(&name, &["--rm"], "sleep 1; chown 1 /tmp");
    assert!(ran.status.success(), "{ran:?}");
    let text = terminal.finish();
    let drawn = status_lines(&text);
    assert!(
        drawn
            .iter()
            .any(|l| l.contains("s left | 1 container (1 running) | ")),
        "{text:?}"
    );
    let last = drawn.last().expect("a status line");
    assert!(
        last.starts_with("cap-trace: ")
            && last.contains(" left | 1 container (0 running) | ")
            && (last.ends_with(" checks | nothing lost") || last.ends_with(" lost")),
        "{last:?}"
    );
    // Messages are lines of their own, the status line taken off first.
    let lines: Vec<&str> = text
        .split("\r\n")
        .map(|l| l.rsplit("\r\u{1b}[K").next().unwrap())
        .collect();
    for message in [
        format!("cap-trace: tracing container {name}"),
        format!("cap-trace: container {name} exited"),
        format!("cap-trace: wrote 1 profile to {}", output.display()),
    ] {
        assert!(lines.contains(&message.as_str()), "{message}: {text:?}");
    }
    assert!(
        lines
            .iter()
            .rev()
            .find(|l| l.starts_with("cap-trace: "))
            .unwrap()
            .starts_with("cap-trace: wrote"),
        "{text:?}"
    );
}

/// No status line in a pipe, nor with --json (even on a terminal).
#[test]
fn no_status_line_in_a_pipe_or_with_json() {
    if !privileged("no_status_line_in_a_pipe_or_with_json") {
        return;
    }
    let out = cap_trace_env(&[], &["--all-containers", "--duration", "3s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains('\r'), "{:?}", stderr(&out));
    assert!(stderr(&out).contains("Ctrl-C to stop"), "{}", stderr(&out));
    let terminal = OnTerminal::start(&format!(
        "'{}' --all-containers --duration 3s --json",
        bin().display()
    ));
    let text = terminal.finish();
    assert!(text.contains("Ctrl-C to stop"), "{text:?}");
    assert!(status_lines(&text).is_empty(), "{text:?}");
    // The same on a terminal without --json draws it (what the above would have shown): at
    // once, however long naming the containers that other tests start takes.
    let terminal = OnTerminal::start(&format!(
        "'{}' --all-containers --duration 3s",
        bin().display()
    ));
    let text = terminal.finish();
    assert!(!status_lines(&text).is_empty(), "{text:?}");
}

/// cap-trace's messages on a terminal fit its width, their continuations indented; in a pipe
/// each stays one line (for grep and logs).
#[test]
fn messages_fit_the_terminal() {
    if !privileged("messages_fit_the_terminal") {
        return;
    }
    let dir = TempDir::new("messages");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let verify = format!(
        "'{}' run --verify -- chown nobody '{}' >/dev/null",
        bin().display(),
        file.display()
    );
    let text = OnTerminal::start(&format!("stty cols 60; {verify}")).finish();
    // (Less the lines `script` adds around it.)
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.starts_with("Script "))
        .collect();
    assert!(lines.iter().all(|l| l.chars().count() <= 60), "{text:?}");
    let failed = lines
        .iter()
        .position(|l| l.starts_with("cap-trace: verification run 2 without CHOWN: failed"))
        .expect("the failed run's message");
    assert!(
        lines[failed + 1].starts_with("  the workload exited"),
        "{text:?}"
    );
    let out = Command::new("sh").args(["-c", &verify]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).lines().any(|l| l
            .starts_with("cap-trace: verification run 2 without CHOWN: failed")
            && l.contains("the workload exited with status 1")),
        "{}",
        stderr(&out)
    );
}

/// The daemon in the foreground on a terminal keeps a status line too (how long it has run,
/// containers, checks, losses), and takes it off before its last line.
#[test]
fn the_daemon_in_the_foreground_keeps_a_status_line() {
    if !privileged("the_daemon_in_the_foreground_keeps_a_status_line") {
        return;
    }
    let dir = TempDir::new("daemon-status");
    let pid_file = dir.join("pid");
    let terminal = OnTerminal::start(&format!(
        "echo $$ > '{}'; exec '{}' daemon --state-dir '{}' --socket '{}' --label cap-trace-test=status-line",
        pid_file.display(),
        bin().display(),
        dir.join("state").display(),
        dir.join("sock").display()
    ));
    terminal.wait_for("control socket", std::time::Duration::from_secs(60));
    terminal.wait_for(
        " | 0 containers (0 running) | ",
        std::time::Duration::from_secs(10),
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: plain kill(2) on the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let text = terminal.finish();
    let drawn = status_lines(&text);
    assert!(
        drawn
            .iter()
            .all(|l| l.starts_with("cap-trace: ") && !l.contains("left")),
        "{text:?}"
    );
    assert!(
        text.contains("\r\u{1b}[Kcap-trace: daemon stopped;"),
        "{text:?}"
    );
}

/// `--duration` is kept while containers start in a burst (when engines answer slowly):
/// `--all-containers --duration 3s` ends well within 15 s while 25 containers start.
#[test]
fn the_duration_is_kept_while_many_containers_start() {
    use std::time::{Duration, Instant};
    let engine = engine::Engine::Podman;
    if !privileged("the_duration_is_kept_while_many_containers_start")
        || !engine.available("the_duration_is_kept_while_many_containers_start")
    {
        return;
    }
    let dir = TempDir::new("burst");
    let output = dir.join("profiles.json");
    let base = podman::name("burst");
    let names: Vec<String> = (0..25).map(|i| format!("{base}-{i}")).collect();
    let begun = Instant::now();
    let mut trace = Command::new(bin())
        .args(["--all-containers", "--duration", "3s", "--json", "--output"])
        .arg(&output)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = capture_stderr(&mut trace);
    wait_for_stderr(&err, "Ctrl-C to stop", Duration::from_secs(60));
    let burst: Vec<_> = names
        .iter()
        .cloned()
        .map(|name| std::thread::spawn(move || engine.run(&name, &["--rm"], "sleep 2")))
        .collect();
    let status = loop {
        if let Some(status) = trace.try_wait().unwrap() {
            break status;
        }
        if begun.elapsed() > Duration::from_secs(60) {
            let _ = trace.kill();
            break trace.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = begun.elapsed();
    for started in burst {
        let _ = started.join();
    }
    for name in &names {
        engine.remove(name);
    }
    let err = err.lock().unwrap().clone();
    assert!(status.success(), "{status}: {err}");
    // Attaching and the report are in it too: generous, but far from what the engines' answers
    // cost when they held the trace up (25 lookups of a second or more each under load).
    assert!(
        took < Duration::from_secs(15),
        "{took:?} for --duration 3s: {err}"
    );
    assert!(err.contains(&format!("tracing container {base}-")), "{err}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert!(written.is_array() || written.is_object(), "{written}");
}
