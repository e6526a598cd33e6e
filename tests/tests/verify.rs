//! `cap-trace run --verify` against the real kernel: real programs run again under the learned
//! set and without each capability, one case of each class observation alone cannot separate
//! (granted but unneeded, tolerated denials, subsumed), a privilege drop that must stay, and
//! the set a run holds.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::process::{Child, Command};

use cap_trace_tests::*;
use serde_json::Value;

/// The verification object of a profile.
fn verification(p: &Value) -> &Value {
    &p["verification"]
}

fn status<'a>(p: &'a Value, cap: &str) -> &'a str {
    verdict(p, cap)
        .and_then(|v| v["status"].as_str())
        .unwrap_or("(none)")
}

/// Checks what every verified profile holds: verified, its set is the suggestion and a run
/// passed with exactly that set, and the runs are counted and timed.
#[track_caller]
fn assert_verified(p: &Value, set: &[&str]) {
    let v = verification(p);
    assert_eq!(v["verified"], true, "{p:#}");
    assert_eq!(suggested(p), set, "{p:#}");
    assert_eq!(p["suggestion"]["verified"], true);
    let runs = v["runs"].as_array().expect("runs");
    assert!(!runs.is_empty());
    assert!(
        runs.iter()
            .any(|r| r["passed"] == true && r["set"] == serde_json::json!(set)),
        "a run passed with exactly the verified set: {v:#}"
    );
    assert!(v["duration_ms"].as_u64().is_some());
    // Every capability verification tried has a finding that names its run.
    for f in v["capabilities"].as_array().unwrap() {
        let run = f["run"].as_u64().unwrap() as usize;
        assert!(run >= 1 && run <= runs.len(), "{f}");
        assert!(
            f["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("(run {run})")),
            "{f}"
        );
    }
}

/// A process of another user for `ps` to look at; killed on drop.
struct Nobody(Child);

impl Nobody {
    fn sleep() -> Nobody {
        let child = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sleep",
                "60",
            ])
            .spawn()
            .expect("start sleep as nobody");
        std::thread::sleep(std::time::Duration::from_millis(100));
        Nobody(child)
    }
}

impl Drop for Nobody {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_process_listing_does_not_need_what_root_was_granted() {
    if !privileged("a_process_listing_does_not_need_what_root_was_granted") {
        return;
    }
    // Root's ps reads other users' /proc/PID/exe: SYS_PTRACE (and more) is granted and seen
    // as needed. Without it the link cannot be read, and ps shows "-" and goes on.
    let _other = Nobody::sleep();
    let ps = ["ps", "-eo", "pid,user,comm,exe"];
    let observed = run_profile(&[], &ps);
    assert!(
        suggested(&observed).contains(&"SYS_PTRACE".to_owned()),
        "{observed:#}"
    );
    assert_eq!(observed["suggestion"]["verified"], false);
    assert!(observed.get("verification").is_none());

    let p = run_profile(&["--verify"], &ps);
    assert_verified(&p, &[]);
    assert_eq!(status(&p, "SYS_PTRACE"), "not_needed");
    let reason = verdict(&p, "SYS_PTRACE").unwrap()["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.starts_with("not needed: the workload succeeded without it"),
        "{reason}"
    );
    assert!(
        reason.contains("ps: readlink failed with EACCES") && reason.contains("and it went on"),
        "the tolerated denial is the evidence: {reason}"
    );
    // The most dangerous goes first: the first ablation run is without SYS_PTRACE.
    let runs = verification(&p)["runs"].as_array().unwrap();
    assert_eq!(runs[0]["purpose"], "sufficiency");
    assert_eq!(runs[1]["removed"], "SYS_PTRACE");
}

#[test]
fn a_clone_with_a_fork_fallback_does_not_need_sys_admin() {
    if !privileged("a_clone_with_a_fork_fallback_does_not_need_sys_admin") {
        return;
    }
    let program = env!("CARGO_BIN_EXE_nsfallback");
    let observed = run_profile(&[], &[program]);
    assert_eq!(suggested(&observed), ["SYS_ADMIN"], "{observed:#}");
    let p = run_profile(&["--verify"], &[program]);
    assert_verified(&p, &[]);
    assert_eq!(status(&p, "SYS_ADMIN"), "not_needed");
    let run = &verification(&p)["runs"][1];
    assert_eq!(run["removed"], "SYS_ADMIN");
    assert_eq!(run["passed"], true);
    let tolerated: Vec<&Value> = run["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "tolerated")
        .collect();
    assert!(
        tolerated
            .iter()
            .any(|e| e["syscall"] == "clone" && e["result"] == "EPERM" && e["cap"] == "SYS_ADMIN"),
        "{run:#}"
    );
}

#[test]
fn an_ignored_failure_to_raise_limits_is_not_a_need() {
    if !privileged("an_ignored_failure_to_raise_limits_is_not_a_need") {
        return;
    }
    // Lowering oom_score_adj needs SYS_RESOURCE; the script does not care if it fails.
    let script = "echo -1000 > /proc/self/oom_score_adj 2>/dev/null; echo done";
    let host_has_it = host_bounding() & (1 << 24) != 0;
    let observed = run_profile(&[], &["sh", "-c", script]);
    if host_has_it {
        assert_eq!(suggested(&observed), ["SYS_RESOURCE"], "{observed:#}");
    } else {
        // This machine's bounding set lacks it: no process here can be given it.
        assert!(suggested(&observed).is_empty(), "{observed:#}");
        assert_eq!(status(&observed, "SYS_RESOURCE"), "host_cannot");
        assert!(
            !observed["trace"]["host_bounding"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "SYS_RESOURCE")
        );
    }
    let p = run_profile(&["--verify"], &["sh", "-c", script]);
    assert_verified(&p, &[]);
    if host_has_it {
        assert_eq!(status(&p, "SYS_RESOURCE"), "not_needed");
    }

    // A chown whose failure is ignored (as a daemon's of its pid file): granted when learning,
    // so observed as needed; verification shows the workload succeeds without it.
    let dir = TempDir::new("ignored-chown");
    let file = dir.join("pid");
    std::fs::write(&file, "1\n").unwrap();
    let script = format!("chown nobody {} 2>/dev/null; exit 0", file.display());
    let observed = run_profile(&[], &["sh", "-c", &script]);
    assert_eq!(suggested(&observed), ["CHOWN"], "{observed:#}");
    assert_eq!(observed["suggestion"]["verified"], false);
    std::fs::write(&file, "1\n").unwrap();
    let p = run_profile(&["--verify"], &["sh", "-c", &script]);
    assert_verified(&p, &[]);
    assert_eq!(status(&p, "CHOWN"), "not_needed");
    let reason = verdict(&p, "CHOWN").unwrap()["reason"].as_str().unwrap();
    assert!(
        reason.contains("fchownat failed with EPERM") && reason.contains("and it went on"),
        "the ignored failure is the evidence: {reason}"
    );

    // A wall a successful run went on from, without --verify: tolerated, not needed. The
    // command runs without CHOWN (which this host can grant), and ignores chown's failure.
    let dir = TempDir::new("tolerated");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let script = format!("chown nobody {} 2>/dev/null; exit 0", file.display());
    let p = run_profile(&["--caps", "none"], &["sh", "-c", &script]);
    assert!(suggested(&p).is_empty(), "{p:#}");
    assert_eq!(status(&p, "CHOWN"), "tolerated");
    // The same wall in a run that failed is needed but missing.
    let script = format!("chown nobody {}", file.display());
    let p = run_profile(&["--caps", "none"], &["sh", "-c", &script]);
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    assert_eq!(status(&p, "CHOWN"), "missing");
}

#[test]
fn a_write_under_another_users_directory_needs_only_dac_override() {
    if !privileged("a_write_under_another_users_directory_needs_only_dac_override") {
        return;
    }
    // A directory only nobody may search, and a file in it only nobody may write: root's
    // search is granted DAC_READ_SEARCH, its write DAC_OVERRIDE, which covers the search too.
    let dir = TempDir::new("dac");
    let private = dir.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("data"), "x\n").unwrap();
    let chown = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&private)
        .status()
        .unwrap();
    assert!(chown.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(private.join("data"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let script = format!("echo more >> {}/data", private.display());
    let observed = run_profile(&[], &["sh", "-c", &script]);
    let checks = observed["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["cap"] == "DAC_READ_SEARCH" && c["verdict"] == "granted"),
        "learning sees both: {observed:#}"
    );
    // The rule already drops DAC_READ_SEARCH (an inode permission check DAC_OVERRIDE passes).
    assert_eq!(suggested(&observed), ["DAC_OVERRIDE"], "{observed:#}");
    assert_eq!(status(&observed, "DAC_READ_SEARCH"), "subsumed");
    assert_eq!(observed["suggestion"]["verified"], false);

    let p = run_profile(&["--verify"], &["sh", "-c", &script]);
    assert_verified(&p, &["DAC_OVERRIDE"]);
    assert_eq!(status(&p, "DAC_OVERRIDE"), "needed");
    let reason = verdict(&p, "DAC_OVERRIDE").unwrap()["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("openat failed with EACCES"), "{reason}");
    // The file was written by every passing run, and by none that failed.
    let written = std::fs::read_to_string(private.join("data")).unwrap();
    assert_eq!(written.lines().count(), 1 + 1 + 1 + 1, "{written}");
}

#[test]
fn a_privilege_drop_keeps_setuid_and_setgid() {
    if !privileged("a_privilege_drop_keeps_setuid_and_setgid") {
        return;
    }
    // Like Apache httpd, the program goes on as root when setgid/setuid fail, and exits 0.
    let program = env!("CARGO_BIN_EXE_dropper");
    let p = run_profile(&["--verify"], &[program]);
    assert_verified(&p, &["SETGID", "SETUID"]);
    for cap in ["SETGID", "SETUID"] {
        assert_eq!(status(&p, cap), "privilege_drop", "{p:#}");
        let reason = verdict(&p, cap).unwrap()["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("kept for the privilege drop"),
            "{reason}"
        );
    }
    let failed: Vec<&Value> = verification(&p)["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 2);
    for run in failed {
        // Its exit status was the learning run's: only the failed drop failed the run.
        assert_eq!(run["ending"]["status"], 0);
        assert!(
            run["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "privilege_drop"),
            "{run:#}"
        );
    }
}

#[test]
fn capsets_setpcap_check_is_a_shortcut() {
    if !privileged("capsets_setpcap_check_is_a_shortcut") {
        return;
    }
    // setpriv clears its inheritable set with capset(): the SETPCAP check cap_capset makes
    // on every call is granted, and is no need.
    let p = run_profile(&[], &["setpriv", "--inh-caps=-all", "true"]);
    assert_eq!(p["workload"]["exit_status"], 0);
    assert!(suggested(&p).is_empty(), "{p:#}");
    assert_eq!(status(&p, "SETPCAP"), "shortcut");
    if p["trace"]["backend"] == "tracepoint" {
        let checks = p["checks"].as_array().unwrap();
        assert!(
            checks.iter().any(|c| c["cap"] == "SETPCAP"
                && c["site"] == "cap_capset"
                && c["syscall"] == "capset"),
            "{p:#}"
        );
    }
    // And it can do without it: verified with nothing.
    let p = run_profile(&["--verify"], &["setpriv", "--inh-caps=-all", "true"]);
    assert_verified(&p, &[]);
}

/// The capability sets of `cat /proc/self/status` run by cap-trace with `extra` options.
fn held(extra: &[&str]) -> Vec<(String, u64)> {
    let dir = TempDir::new("held");
    let profile = dir.join("p.json");
    let mut args = vec![
        "run",
        "--format",
        "json",
        "--output",
        profile.to_str().unwrap(),
    ];
    args.extend(extra);
    args.extend(["--", "cat", "/proc/self/status"]);
    let out = cap_trace(&args);
    let text = ok(&out);
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .map(|f| {
            let mask = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}:")))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or_else(|| panic!("{f} in {text}"));
            ((*f).to_owned(), mask)
        })
        .collect()
}

#[test]
fn a_run_holds_exactly_the_set_asked_for() {
    if !privileged("a_run_holds_exactly_the_set_asked_for") {
        return;
    }
    // CHOWN (0) and NET_BIND_SERVICE (10).
    let set = 1 | 1 << 10;
    let root = held(&["--caps", "CHOWN,NET_BIND_SERVICE"]);
    assert_eq!(
        root,
        [
            ("CapInh".into(), 0),
            ("CapPrm".into(), set),
            ("CapEff".into(), set),
            ("CapBnd".into(), set),
            ("CapAmb".into(), 0)
        ]
    );
    // A non-root user keeps the set over exec only as ambient capabilities.
    let nobody = held(&["--caps", "CHOWN,NET_BIND_SERVICE", "--user", "nobody"]);
    assert_eq!(
        nobody,
        [
            ("CapInh".into(), set),
            ("CapPrm".into(), set),
            ("CapEff".into(), set),
            ("CapBnd".into(), set),
            ("CapAmb".into(), set)
        ]
    );
    let none = held(&["--caps", "none"]);
    assert!(none.iter().all(|(_, mask)| *mask == 0), "{none:?}");
}

#[test]
fn a_learned_set_that_does_not_work_is_reported_loudly_and_kept_unverified() {
    if !privileged("a_learned_set_that_does_not_work_is_reported_loudly_and_kept_unverified") {
        return;
    }
    // It chowns (CHOWN) and succeeds the first time only: every later run fails.
    let dir = TempDir::new("once");
    let marker = dir.join("marker");
    let script = format!(
        "test -e {m} && exit 1; touch {m} && chown nobody {m}",
        m = marker.display()
    );
    let p = run_profile(&["--verify"], &["sh", "-c", &script]);
    let v = verification(&p);
    assert_eq!(v["verified"], false, "{p:#}");
    assert_eq!(p["suggestion"]["verified"], false);
    // The observed set stays, never silently a smaller one.
    assert_eq!(suggested(&p), ["CHOWN"]);
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .starts_with("the learned set does not work: the workload exited with status 1"),
        "{v:#}"
    );
    std::fs::remove_file(&marker).unwrap();
    let out = cap_trace(["run", "--verify", "--", "sh", "-c", &script]);
    let text = ok(&out);
    assert!(
        text.contains("verification failed: the learned set does not work"),
        "{text}"
    );
    assert!(
        text.contains("capability set: observed (not verified)"),
        "{text}"
    );
}

#[test]
fn the_report_says_what_was_verified_and_how_to_verify() {
    if !privileged("the_report_says_what_was_verified_and_how_to_verify") {
        return;
    }
    let program = env!("CARGO_BIN_EXE_nsfallback");
    // Wide: the sentences checked below stay on one line (wrapping is tested in tests/cli.rs).
    let out = Command::new(bin())
        .env("COLUMNS", "1000")
        .args(["run", "--", program])
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(
        text.contains("capability set: observed (not verified)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "an upper bound, often more than it needs; verify it with `cap-trace run --verify -- {program}`"
        )),
        "{text}"
    );
    let out = cap_trace(["run", "--verify", "--", program]);
    let text = ok(&out);
    assert!(
        text.contains("capability set: verified minimal (2 runs, "),
        "{text}"
    );
    assert!(text.contains("verification: 2 runs in "), "{text}");
    assert!(text.contains(" 2. without SYS_ADMIN "), "{text}");
    assert!(text.contains("not needed (verified)"), "{text}");
    assert!(!text.contains("not verified"), "{text}");
    assert!(
        text.trim_end().ends_with("Suggestion: --cap-drop=ALL"),
        "{text}"
    );
    // The deploy formats say it in their header.
    let p = run_profile(&["--verify"], &[program]);
    let dir = TempDir::new("formats");
    let path = dir.join("p.json");
    std::fs::write(&path, p.to_string()).unwrap();
    for format in ["k8s", "systemd"] {
        let out = cap_trace([
            "show".as_ref(),
            path.as_os_str(),
            "--format".as_ref(),
            format.as_ref(),
        ]);
        let text = ok(&out);
        assert!(
            text.lines()
                .any(|l| l.contains("# learned by ") && l.contains(": verified minimal (2 runs, ")),
            "{format}: {text}"
        );
    }
}

#[test]
fn the_gate_can_require_a_verified_baseline() {
    if !privileged("the_gate_can_require_a_verified_baseline") {
        return;
    }
    let program = env!("CARGO_BIN_EXE_nsfallback");
    let dir = TempDir::new("gate");
    let observed = dir.join("observed.json");
    let verified = dir.join("verified.json");
    ok(&cap_trace([
        "run",
        "--json",
        "-o",
        observed.to_str().unwrap(),
        "--",
        program,
    ]));
    ok(&cap_trace([
        "run",
        "--verify",
        "--json",
        "-o",
        verified.to_str().unwrap(),
        "--",
        program,
    ]));
    let out = cap_trace([
        "check",
        "--require-verified",
        "--baseline",
        observed.to_str().unwrap(),
        "--profile",
        verified.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not verified"), "{}", stderr(&out));
    let out = cap_trace([
        "check",
        "--require-verified",
        "--baseline",
        verified.to_str().unwrap(),
        "--profile",
        verified.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // A verified baseline of nothing fails a run that now needs SYS_ADMIN: the observed one.
    let out = cap_trace([
        "check",
        "--baseline",
        verified.to_str().unwrap(),
        "--profile",
        observed.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn a_server_is_judged_by_its_health_check() {
    if !privileged("a_server_is_judged_by_its_health_check") {
        return;
    }
    // busybox httpd on a high port: it needs nothing; its health check is a request.
    let dir = TempDir::new("httpd");
    std::fs::write(dir.join("index.html"), "hello\n").unwrap();
    let port = 20_000 + std::process::id() % 20_000;
    let url = format!("http://127.0.0.1:{port}/index.html");
    let health = format!("busybox wget -q -O - {url} | grep -q hello");
    let p = run_profile(
        &["--verify", "--health", &health],
        &[
            "busybox",
            "httpd",
            "-f",
            "-p",
            &format!("127.0.0.1:{port}"),
            "-h",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(p["workload"]["stopped"], true, "{p:#}");
    assert_eq!(p["workload"]["health"]["passed"], true);
    assert_verified(&p, &[]);
    let run = &verification(&p)["runs"][0];
    assert_eq!(run["ending"]["how"], "stopped");
    assert_eq!(run["health"]["passed"], true);
    // Nothing is left listening.
    let left = Command::new("busybox")
        .args(["wget", "-q", "-T", "1", "-O", "-", &url])
        .output()
        .unwrap();
    assert!(!left.status.success(), "the server was stopped");
}

/// Processes whose command line is `sleep DURATION`.
fn sleeping(duration: &str) -> Vec<u32> {
    let cmdline = format!("sleep\0{duration}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == cmdline.as_bytes())
        })
        .collect()
}

#[test]
fn ctrl_c_during_verification_stops_the_run_and_leaves_the_set_unverified() {
    if !privileged("ctrl_c_during_verification_stops_the_run_and_leaves_the_set_unverified") {
        return;
    }
    let dir = TempDir::new("verify-sigint");
    let output = dir.join("p.json");
    let seen = dir.join("seen");
    // The learning run ends at once; the verification run that follows waits, and is where
    // Ctrl-C comes.
    let duration = format!("60.{}", std::process::id());
    let script = format!(
        "test -e {s} && exec sleep {duration}; touch {s}",
        s = seen.display()
    );
    let mut child = Command::new(bin())
        .args(["run", "--verify", "--json", "-o"])
        .arg(&output)
        .args(["--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while sleeping(&duration).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the verification run did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("cap-trace did not end on Ctrl-C during verification");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(
        sleeping(&duration).is_empty(),
        "the interrupted run left its processes behind"
    );
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let v = verification(&p);
    assert_eq!(v["verified"], false, "{p:#}");
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .starts_with("interrupted (Ctrl-C or SIGTERM) in run 1"),
        "{v:#}"
    );
    assert_eq!(p["suggestion"]["verified"], false);
}

#[test]
fn a_denial_to_a_dropped_user_is_not_for_cap_add() {
    if !privileged("a_denial_to_a_dropped_user_is_not_for_cap_add") {
        return;
    }
    // Root switches to nobody, which then may not chown root's file: CHOWN is denied to a
    // process running as uid 65534 while the workload's bounding set holds it. --cap-add
    // cannot fix that (a file capability or a root process would): said, and left out.
    let dir = TempDir::new("dropped-user");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let command = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "chown",
        "65534",
        file.to_str().unwrap(),
    ];
    let p = run_profile(&[], &command);
    assert_ne!(p["workload"]["exit_status"], 0, "{p:#}");
    assert_eq!(status(&p, "CHOWN"), "not_grantable", "{p:#}");
    assert!(!suggested(&p).contains(&"CHOWN".to_owned()), "{p:#}");
    let out = cap_trace(["run", "--"].into_iter().chain(command).collect::<Vec<_>>());
    assert!(
        ok(&out).contains("not grantable by --cap-add: CHOWN"),
        "{}",
        stdout(&out)
    );
}
