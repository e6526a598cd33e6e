//! The fleet view: `cap-trace explain BITMAP` against `capsh --decode`, and `cap-trace ps`
//! against real podman and Docker containers.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

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
    // podman's containers are profiled by a daemon. A daemon on this shared machine that names
    // containers through the test Docker engine spends its time asking that engine about the
    // other engineers' podman containers and writes no profile for minutes: Docker's are
    // profiled by `cap-trace --container` instead, into the same directory.
    let daemon = (engine == Engine::Podman).then(|| start_daemon(engine, &state, &socket, &label));
    let oneshot = (engine == Engine::Docker).then(|| {
        std::fs::create_dir_all(&state).unwrap();
        let mut args: Vec<String> = Vec::new();
        for (kind, ..) in &cases {
            args.extend(["--container".to_owned(), name(kind)]);
        }
        args.extend(["--duration".to_owned(), "20s".to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        background::Background::for_engine(engine, &args)
    });
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
    if let Some(oneshot) = oneshot {
        let (code, stderr, json) = oneshot.wait(Duration::from_secs(120));
        assert_eq!(code, Some(0), "{stderr}");
        std::fs::write(
            state.join("docker.json"),
            json.expect("profiles").to_string(),
        )
        .unwrap();
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
            daemon.as_ref().map(Daemon::stderr).unwrap_or_default()
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
    if daemon.is_some() {
        check_daemon_report(&socket, &rows);
    }
    check_table(&ok(&ps(false)), &rows);
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
