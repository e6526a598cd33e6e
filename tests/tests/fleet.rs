//! The fleet view: `cap-trace explain BITMAP` against `capsh --decode`, and `cap-trace ps`
//! against real podman and Docker containers.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cap_trace_tests::daemon::Daemon;
use cap_trace_tests::engine::Engine;
use cap_trace_tests::*;
use serde_json::Value;

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
        // Wide enough that no row wraps: one line per capability is what is counted.
        let text = ok(&Command::new(bin())
            .env("COLUMNS", "1000")
            .args(["explain", value])
            .output()
            .unwrap());
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
    let json: Value = serde_json::from_str(&out).unwrap();
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

/// A daemon following the containers labelled `cap-trace-test=LABEL`, naming them through
/// `engine`'s API (Docker) or CLI (podman).
fn start_daemon(engine: Engine, state: &Path, socket: &Path, label: &str) -> Daemon {
    Daemon::start(
        Daemon::command(state, socket)
            .args(["--interval", "1s", "--label"])
            .arg(format!("cap-trace-test={label}"))
            .envs(engine.cap_trace_env()),
        socket,
    )
}

/// Removes the test's containers however the test ends.
struct Containers(Engine, Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.1 {
            self.0.remove(name);
        }
    }
}

/// The capability names `capsh --decode` gives for a process's `CapEff`, upper case without
/// `cap_`: the held set, decoded independently of cap-trace.
fn held_by_capsh(pid: u64) -> Vec<String> {
    held_by_capsh_field(pid, "CapEff:")
}

/// A set of `/proc/PID/status` (`CapEff:`, `CapBnd:`) as `capsh --decode` names it.
fn held_by_capsh_field(pid: u64, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .trim();
    let line = capsh_decode(mask).expect("capsh is installed");
    line.split_once('=')
        .unwrap()
        .1
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_start_matches("cap_").to_ascii_uppercase())
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn ps_shows_what_containers_hold_against_what_the_daemon_found_they_need() {
    let test = "ps_shows_what_containers_hold_against_what_the_daemon_found_they_need";
    if !privileged(test) {
        return;
    }
    if capsh_decode("0").is_none() {
        skip_or_fail(
            test,
            "capsh is missing (run `cargo xtask setup`: libcap2-bin)",
        );
        return;
    }
    for engine in Engine::ALL {
        if engine.available(test) {
            ps_on(engine);
        }
    }
}

/// The containers of the test: (kind, engine options, the work that needs a capability, that
/// capability).
fn cases(engine: Engine) -> Vec<(&'static str, Vec<String>, &'static str, &'static str)> {
    // Everything this engine can grant: podman's --privileged; Docker's --privileged fails on
    // a host whose bounding set lacks a capability, so its learning-mode flags.
    let everything: Vec<String> = match engine {
        Engine::Podman => vec!["--privileged".into()],
        Engine::Docker => engine.learning(),
    };
    // (kind, engine options, the work that needs a capability, that capability)
    vec![
        ("default", vec![], "chown nobody /tmp", "CHOWN"),
        (
            "netadmin",
            vec!["--cap-add=NET_ADMIN".into()],
            "ip link set lo mtu 1400",
            "NET_ADMIN",
        ),
        ("privileged", everything, "hostname fleet", "SYS_ADMIN"),
    ]
}

fn ps_on(engine: Engine) {
    let label = format!("fleet-{}-{}", std::process::id(), engine.name());
    let dir = TempDir::new("fleet");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let name = |kind: &str| format!("{label}-{kind}");
    let cases = cases(engine);
    engine.image();
    let daemon = start_daemon(engine, &state, &socket, &label);
    let containers = Containers(engine, cases.iter().map(|c| name(c.0)).collect());
    for (kind, opts, work, _) in &cases {
        let mut all: Vec<&str> = vec!["--label"];
        let label_opt = format!("cap-trace-test={label}");
        all.push(&label_opt);
        all.extend(opts.iter().map(String::as_str));
        let out = engine.run_detached(&name(kind), &all, &format!("{work} && sleep 600"));
        assert!(
            out.status.success(),
            "{}: {}",
            engine.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The daemon writes its profiles every second: wait until each shows its need.
    let env = engine.cap_trace_env();
    let ps = |json: bool| {
        let mut cmd = Command::new(bin());
        cmd.arg("ps")
            .arg("--profiles")
            .arg(&state)
            .envs(env.clone())
            .env("NO_COLOR", "1");
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("run cap-trace ps")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows: Vec<Value> = loop {
        let rows: Vec<Value> = serde_json::from_str(&ok(&ps(true))).expect("ps --json is JSON");
        let ours: Vec<Value> = rows
            .into_iter()
            .filter(|r| {
                r["identity"]
                    .as_str()
                    .is_some_and(|i| i.starts_with(&label))
            })
            .collect();
        let needs_seen = cases.iter().all(|(kind, _, _, cap)| {
            ours.iter().any(|r| {
                r["identity"] == name(kind).as_str()
                    && r["comparison"]["needed"]
                        .as_array()
                        .is_some_and(|n| n.iter().any(|c| c == cap))
            })
        });
        if needs_seen {
            break ours;
        }
        assert!(
            Instant::now() < deadline,
            "{}: ps never showed the needs: {ours:#?}\n{}",
            engine.name(),
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(rows.len(), cases.len(), "{rows:#?}");
    for (kind, _, _, cap) in &cases {
        let row = rows
            .iter()
            .find(|r| r["identity"] == name(kind).as_str())
            .unwrap();
        check_row(engine, &name(kind), row, kind, cap);
    }
    check_order(&rows, &label);
    check_daemon_report(&socket, &rows);
    check_ps_asks_the_daemon(engine, &socket, &rows);
    check_table(&ok(&ps(false)), &rows);
    check_report(engine, &state, &rows);
    drop(containers);
    drop(daemon);
}

/// One container's row of `ps --json`: held as capsh decodes its /proc status, the excess as
/// held minus what its saved profile needs, the flags to deploy that profile.
fn check_row(engine: Engine, name: &str, row: &Value, kind: &str, cap: &str) {
    assert_eq!(row["engine"], engine.name(), "{row:#}");
    let inspect = engine.inspect(name).expect("inspect");
    let pid = inspect["State"]["Pid"].as_u64().expect("State.Pid");
    let held = names(&row["held"]);
    assert_eq!(held, held_by_capsh(pid), "{} {kind}", engine.name());
    assert!(row["pids"].as_array().unwrap().iter().any(|p| p == pid));
    // The excess is counted against the bounding set (what the engine granted); the
    // containers' first processes are root, so it is the effective set here.
    let bounding = names(&row["bounding"]);
    assert_eq!(bounding, held_by_capsh_field(pid, "CapBnd:"), "{kind}");
    assert_eq!(bounding, held, "{kind}");
    // The excess is what it holds and its saved profile does not need.
    let file = row["profile"]["source"].as_str().unwrap();
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    // A daemon's file holds one profile, `--container`'s output a list of them.
    let saved = background::profiles(&saved)
        .into_iter()
        .find(|p| p["workload"]["name"] == name)
        .expect("the profile of the container");
    let needed = names(&saved["suggestion"]["add"]);
    assert!(needed.iter().any(|c| c == cap), "{kind}: {needed:?}");
    let excess: Vec<String> = held
        .iter()
        .filter(|c| !needed.contains(c))
        .cloned()
        .collect();
    let mut shown = names(&row["comparison"]["excess"]);
    shown.sort();
    let mut expected = excess.clone();
    expected.sort();
    assert_eq!(shown, expected, "{} {kind}", engine.name());
    assert_eq!(
        row["profile"]["flags"],
        std::iter::once("--cap-drop=ALL".to_owned())
            .chain(needed.iter().map(|c| format!("--cap-add={c}")))
            .collect::<Vec<_>>()
            .join(" ")
    );
    match kind {
        "default" => assert_eq!(held.len(), if engine == Engine::Docker { 14 } else { 11 }),
        "netadmin" => assert!(held.iter().any(|c| c == "NET_ADMIN")),
        _ => assert!(held.iter().any(|c| c == "SYS_MODULE") && held.len() >= 37),
    }
}

/// The table of `ps` says the same in words (rows: privileged, netadmin, default).
fn check_table(text: &str, rows: &[Value]) {
    // The table says it in words.
    let line = |kind: usize| {
        text.lines()
            .find(|l| l.starts_with(&format!("{} ", rows[kind]["identity"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("{kind} not in\n{text}"))
            .to_owned()
    };
    let held = names(&rows[2]["held"]).len();
    let needed = names(&rows[2]["comparison"]["needed"]).len();
    let excess = names(&rows[2]["comparison"]["excess"]).len();
    assert!(
        line(2).ends_with(&format!("holds {held}, needs {needed}, drop {excess}")),
        "{text}"
    );
    assert!(line(0).contains("high risk)"), "{text}");
}

fn check_order(rows: &[Value], label: &str) {
    // Riskiest excess first: the privileged one (critical), then NET_ADMIN (high), then the
    // default set.
    let order: Vec<&str> = rows
        .iter()
        .map(|r| r["identity"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            format!("{label}-privileged"),
            format!("{label}-netadmin"),
            format!("{label}-default")
        ]
    );
}

/// The daemon's `status` has the same rows for what it profiled: what each ran with (the same
/// as `ps` reads from /proc now), what it needs and the excess.
fn check_daemon_report(socket: &Path, rows: &[Value]) {
    let status: Value = serde_json::from_str(&ok(&cap_trace([
        "status".as_ref(),
        "--json".as_ref(),
        "--socket".as_ref(),
        socket.as_os_str(),
    ])))
    .unwrap();
    let report = status["report"].as_array().expect("status has the report");
    for row in rows {
        let theirs = report
            .iter()
            .find(|r| r["identity"] == row["identity"])
            .unwrap_or_else(|| panic!("{} not in {report:#?}", row["identity"]));
        assert_eq!(theirs["held"], row["held"], "{theirs:#}");
        assert_eq!(theirs["comparison"], row["comparison"], "{theirs:#}");
        assert_eq!(theirs["profile"]["flags"], row["profile"]["flags"]);
    }
    let text = ok(&cap_trace([
        "status".as_ref(),
        "--socket".as_ref(),
        socket.as_os_str(),
    ]));
    for row in rows {
        let identity = row["identity"].as_str().unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{identity} ")) && l.contains("holds ")),
            "{identity} not in\n{text}"
        );
    }
}

/// The names of the capability cells of a report row in `state`.
fn cells(row: &Value, state: &str) -> Vec<String> {
    let mut names: Vec<String> = row["cells"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| *s == state)
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `cap-trace report STATE --html`: the page parses as strict HTML5 (html5lib), has one row
/// per workload whose cells carry the sets `ps` found (held and needed, excess, needed and
/// not held), the flags and the evidence of each needed capability from the saved profile,
/// nothing to fetch, and chromium draws it, offline, as a picture of that table.
fn check_report(engine: Engine, state: &Path, rows: &[Value]) {
    let dir = TempDir::new("report");
    let file = dir.join("fleet.html");
    let out = Command::new(bin())
        .arg("report")
        .arg(state)
        .arg("--html")
        .arg(&file)
        .envs(engine.cap_trace_env())
        .output()
        .unwrap();
    ok(&out);
    assert!(
        stderr(&out).contains(&format!("wrote the report of {} workloads", rows.len())),
        "{}",
        stderr(&out)
    );
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(
        !html.contains("http:") && !html.contains("https:") && !html.contains("<script"),
        "the page names something to fetch or a script:\n{html}"
    );
    let parsed = page::parse(&html);
    assert_eq!(parsed["scripts"], 0);
    assert_eq!(parsed["fetches"], serde_json::json!([]), "{parsed:#}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(parsed["host"], host.trim());
    let shown = parsed["rows"].as_array().unwrap();
    assert_eq!(shown.len(), rows.len(), "{parsed:#}");
    for (row, theirs) in rows.iter().zip(shown) {
        // Same order as ps: riskiest excess first.
        assert_eq!(theirs["identity"], row["identity"], "{parsed:#}");
        assert_eq!(theirs["held"], "known", "{theirs:#}");
        let held = names(&row["bounding"]);
        let needed = names(&row["comparison"]["needed"]);
        let kept: Vec<String> = needed
            .iter()
            .filter(|c| held.contains(c))
            .cloned()
            .collect();
        assert_eq!(cells(theirs, "kept"), sorted(kept), "{theirs:#}");
        assert_eq!(
            cells(theirs, "excess"),
            sorted(names(&row["comparison"]["excess"])),
            "{theirs:#}"
        );
        assert_eq!(
            cells(theirs, "lacking"),
            sorted(names(&row["comparison"]["lacking"]))
        );
        assert_eq!(
            theirs["excess"],
            names(&row["comparison"]["excess"]).len().to_string()
        );
        assert_eq!(theirs["flags"], row["profile"]["flags"]);
        // Evidence: each needed capability, with the comm and syscall of each of its checks in
        // the saved profile.
        assert_eq!(names(&theirs["evidence"]), needed, "{theirs:#}");
        let file = row["profile"]["source"].as_str().unwrap();
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for (cap, text) in needed
            .iter()
            .zip(theirs["evidence_text"].as_array().unwrap())
        {
            let text = text.as_str().unwrap();
            for check in saved["checks"].as_array().unwrap() {
                if check["cap"] == cap.as_str() {
                    assert!(
                        text.contains(check["comm"].as_str().unwrap())
                            && text.contains(check["syscall"].as_str().unwrap_or("-")),
                        "{cap}: {check} not in {text}"
                    );
                }
            }
        }
        // The badges say what the profile says.
        let text = theirs["text"].as_str().unwrap();
        let complete = row["profile"]["complete"].as_bool().unwrap();
        assert_eq!(text.contains("incomplete"), !complete, "{text}");
        let verified = row["profile"]["verified"].as_bool().unwrap();
        assert_eq!(text.contains("verified minimal"), verified, "{text}");
    }
    check_screenshot(&file, rows);
}

/// Drawn by a real browser: a 1200x900 picture with the grid's colours in it (the legend has
/// one cell of each, the rows several).
fn check_screenshot(file: &Path, rows: &[Value]) {
    if page::chromium().is_none() {
        skip_or_fail(
            "check_report",
            "chromium is missing (run `cargo xtask setup`)",
        );
        return;
    }
    let shot = page::screenshot(file);
    assert_eq!((shot.width, shot.height), (1200, 900));
    assert!(shot.colours.len() > 50, "{} colours", shot.colours.len());
    let cell = 22 * 18;
    let excess_cells: usize = rows
        .iter()
        .map(|r| names(&r["comparison"]["excess"]).len())
        .sum();
    for (colour, what, at_least) in [
        ("2e9d4a", "held and needed", 3),
        ("8e1111", "critical excess", 2),
        ("e4572e", "high-risk excess", 3),
    ] {
        let pixels = shot.pixels(colour);
        // Each cell keeps most of its colour around its label.
        assert!(
            pixels > (at_least + 1) * cell / 2,
            "{what}: {pixels} pixels of #{colour}"
        );
    }
    assert!(excess_cells > 10, "{excess_cells}");
}

#[test]
fn the_report_escapes_every_name_a_profile_holds() {
    let test = "the_report_escapes_every_name_a_profile_holds";
    if !privileged(test) {
        return;
    }
    let dir = TempDir::new("hostile");
    let target = dir.join("owned");
    std::fs::write(&target, "").unwrap();
    // A real trace of a command whose arguments are hostile, one of them not UTF-8.
    let profile = dir.join("run.json");
    let out = cap_trace([
        "run".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        "--output".as_ref(),
        profile.as_os_str(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "chown nobody \"$1\"".as_ref(),
        std::os::unix::ffi::OsStrExt::from_bytes(b"<b>\xff&amp;</b>".as_slice()),
        target.as_os_str(),
    ]);
    ok(&out);
    // The same profile under names no engine would allow and a label could hold.
    let hostile = "<script>alert('x')</script> & \"q\" \u{1b}[31m\u{0}\u{85}\u{fdd0}\u{202e}";
    let comm = "<img src=x onerror=alert(1)>";
    let mut json: Value =
        serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    json["workload"]["name"] = hostile.into();
    json["workload"]["identity"] = hostile.into();
    for check in json["checks"].as_array_mut().unwrap() {
        check["comm"] = comm.into();
    }
    std::fs::write(dir.join("hostile.json"), json.to_string()).unwrap();
    let file = dir.join("page.html");
    let out = cap_trace([
        "report".as_ref(),
        profile.as_os_str(),
        dir.join("hostile.json").as_os_str(),
        "--html".as_ref(),
        file.as_os_str(),
    ]);
    ok(&out);
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(!html.contains(['\u{0}', '\u{1b}', '\u{85}', '\u{202e}', '\u{fdd0}']));
    let parsed = page::parse(&html);
    assert_eq!(parsed["scripts"], 0);
    assert_eq!(parsed["fetches"], serde_json::json!([]), "{parsed:#}");
    let rows = parsed["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{parsed:#}");
    let theirs = rows
        .iter()
        .find(|r| r["identity"].as_str().unwrap().starts_with("<script>"))
        .unwrap_or_else(|| panic!("{parsed:#}"));
    // The name as text, with what must not reach a reader shown escaped.
    assert_eq!(
        theirs["identity"],
        "<script>alert('x')</script> & \"q\" \\e[31m\\x00\\x85\\u{fdd0}\\u{202e}"
    );
    assert_eq!(theirs["held"], "unknown");
    assert_eq!(cells(theirs, "needed"), ["CHOWN"]);
    assert!(
        theirs["evidence_text"][0].as_str().unwrap().contains(comm),
        "{theirs:#}"
    );
    // The traced command's argument that is not UTF-8 is kept as \xff, its markup as text.
    let run = rows.iter().find(|r| r != &theirs).unwrap();
    assert!(
        run["identity"]
            .as_str()
            .unwrap()
            .contains("<b>\\xff&amp;</b>"),
        "{run:#}"
    );
    // The text form escapes them for a terminal.
    let text = ok(&cap_trace([
        "report".as_ref(),
        profile.as_os_str(),
        dir.join("hostile.json").as_os_str(),
    ]));
    assert!(!text.contains(['\u{0}', '\u{1b}', '\u{85}']), "{text}");
    assert!(
        text.contains("needs 1, held unknown (not running)"),
        "{text}"
    );
}

/// `ps` without profiles asks the daemon on its control socket, and says so; with no daemon
/// there, it says where it looked.
fn check_ps_asks_the_daemon(engine: Engine, socket: &Path, rows: &[Value]) {
    let out = Command::new(bin())
        .args(["ps", "--json", "--socket"])
        .arg(socket)
        .envs(engine.cap_trace_env())
        .output()
        .unwrap();
    let theirs: Vec<Value> = serde_json::from_str(&ok(&out)).unwrap();
    assert!(
        stderr(&out).contains(&format!("from the daemon at {}", socket.display())),
        "{}",
        stderr(&out)
    );
    for row in rows {
        let found = theirs
            .iter()
            .find(|r| r["identity"] == row["identity"])
            .unwrap_or_else(|| panic!("{} not in {theirs:#?}", row["identity"]));
        assert_eq!(found["comparison"], row["comparison"], "{found:#}");
        assert_eq!(found["profile"]["flags"], row["profile"]["flags"]);
        assert!(
            found["profile"]["source"]
                .as_str()
                .unwrap()
                .starts_with("cap-trace daemon")
        );
    }
    let nowhere = Path::new("/nonexistent/control.sock");
    let out = Command::new(bin())
        .args(["ps", "--socket"])
        .arg(nowhere)
        .envs(engine.cap_trace_env())
        .output()
        .unwrap();
    ok(&out);
    assert!(
        stderr(&out).contains("no daemon answered (cannot reach /nonexistent/control.sock"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ps_all_matches_commands_outside_containers_to_their_run_profiles() {
    let test = "ps_all_matches_commands_outside_containers_to_their_run_profiles";
    if !privileged(test) {
        return;
    }
    let dir = TempDir::new("ps-all");
    let target = dir.join("owned");
    std::fs::write(&target, "").unwrap();
    // The same command line traced once, then left running: it stays only where $STAY is set.
    let marker = format!("fleet-ps-all-{}", std::process::id());
    let target_arg = target.display().to_string();
    let profile = dir.join("run.json");
    let profile_arg = profile.display().to_string();
    let script_stays = "chown nobody \"$1\"; [ -n \"$STAY\" ] && sleep 600; exit 0";
    let command = ["sh", "-c", script_stays, &marker, &target_arg];
    let mut args: Vec<&str> = vec!["run", "--format", "json", "--output"];
    args.push(&profile_arg);
    args.push("--");
    args.extend(command);
    ok(&cap_trace(&args));
    // In a process group of its own, killed whole at the end: its `sleep` too.
    let mut child = Command::new(command[0])
        .args(&command[1..])
        .env("STAY", "1")
        .process_group(0)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            // SAFETY: plain kill(2) of the group the child leads.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let _kill = Kill(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.starts_with(b"sh\0-c\0chown"))
    {
        assert!(Instant::now() < deadline, "the shell did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = cap_trace(["ps", "--all", "--json", &profile_arg]);
    let rows: Vec<Value> = serde_json::from_str(&ok(&out)).unwrap();
    let ours = rows
        .iter()
        .find(|r| r["pids"] == serde_json::json!([pid]))
        .unwrap_or_else(|| panic!("pid {pid} not in {rows:#?}"));
    assert_eq!(ours["profile"]["source"], profile_arg.as_str(), "{ours:#}");
    assert_eq!(names(&ours["comparison"]["needed"]), ["CHOWN"], "{ours:#}");
    let bounding = held_by_capsh_field(u64::from(pid), "CapBnd:");
    let mut excess = names(&ours["comparison"]["excess"]);
    excess.sort();
    let mut expected: Vec<String> = bounding.into_iter().filter(|c| c != "CHOWN").collect();
    expected.sort();
    assert_eq!(excess, expected);
    // Any other process outside containers: no profile, said in words.
    let text = ok(&cap_trace(["ps", "--all", &profile_arg]));
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("pid {pid} (sh)")))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("needs 1, drop"), "{line}");
    assert!(
        text.lines().any(|l| l.starts_with("pid ")
            && !l.starts_with(&format!("pid {pid} "))
            && l.ends_with("no profile")),
        "{text}"
    );
}
