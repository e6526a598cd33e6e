//! Workloads already running, traced from when cap-trace attaches (`--pid`, `--cgroup`,
//! `--unit`): real processes in cgroups made for the test, the real kernel.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cap_trace_tests::consumers::{schema_errors, systemd_setting, systemd_verify};
use cap_trace_tests::engine::Engine;
use cap_trace_tests::podman;
use cap_trace_tests::terminal::{OnTerminal, status_lines};
use cap_trace_tests::*;

/// The cgroup v2 mount: `/sys/fs/cgroup/unified` on a hybrid host, else `/sys/fs/cgroup`.
fn cgroup_root() -> PathBuf {
    let hybrid = Path::new("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// A cgroup made for a test (its parents too, when missing), emptied and removed on drop.
struct TestCgroup {
    path: PathBuf,
    made: Vec<PathBuf>,
}

impl TestCgroup {
    fn new(rel: &str) -> TestCgroup {
        let path = cgroup_root().join(rel);
        let mut made = Vec::new();
        let mut at = cgroup_root();
        for part in rel.split('/') {
            at = at.join(part);
            if !at.exists() {
                std::fs::create_dir(&at).unwrap();
                made.push(at.clone());
            }
        }
        TestCgroup { path, made }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..100 {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `sh -c script` moved into `cgroup` first (it writes its own pid into `cgroup.procs`, then
/// waits for `go` in `dir` before it runs `after`).
fn in_cgroup(cgroup: &Path, dir: &Path, after: &str) -> Child {
    in_cgroup_as(cgroup, dir, "", after)
}

/// [`in_cgroup`], running `first` before it waits.
fn in_cgroup_as(cgroup: &Path, dir: &Path, first: &str, after: &str) -> Child {
    let script = format!(
        "{first} echo $$ > {procs}; while [ ! -e {go} ]; do sleep 0.02; done; {after}",
        procs = cgroup.join("cgroup.procs").display(),
        go = dir.join("go").display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir)
        .spawn()
        .unwrap();
    // Until it is in the cgroup.
    for _ in 0..250 {
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        if procs.lines().any(|l| l.trim() == child.id().to_string()) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{} did not enter {}", child.id(), cgroup.display());
}

/// A sibling in `cgroup` that renices (SYS_NICE checks a tree's trace must not take) until
/// `stop` appears in `dir`.
fn renicing_sibling(cgroup: &Path, dir: &Path) -> Child {
    in_cgroup(
        cgroup,
        dir,
        "while [ ! -e stop ]; do nice -n -5 true; sleep 0.05; done",
    )
}

/// cap-trace with `args` in the background, once it says it has attached (`--verbose`).
fn attached(args: &[&str]) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = Command::new(bin())
        .args(args)
        .arg("--verbose")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = capture_stderr(&mut child);
    wait_for_stderr(&stderr, "cap-trace: attached", Duration::from_secs(180));
    (child, stderr)
}

/// The profile a background cap-trace printed once it ended on its own.
fn profile_of(child: Child, stderr: &std::sync::Mutex<String>) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        stderr.lock().unwrap()
    );
    serde_json::from_slice(&out.stdout).expect("a JSON profile")
}

fn capabilities_checked(profile: &serde_json::Value) -> Vec<String> {
    let mut caps: Vec<String> = profile["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cap"].as_str().unwrap().to_owned())
        .collect();
    caps.sort();
    caps.dedup();
    caps
}

/// A process tree in a cgroup it shares with a sibling (as a login shell's session does):
/// `--pid` learns the CHOWN its child needs after cap-trace attached and none of the sibling's
/// SYS_NICE, keeps only the tree's live processes in the kernel's map, and ends when the tree
/// has exited while the sibling goes on; `--cgroup`, on the
/// same cgroup at the same time, sees both, so the sibling's checks were there to leak.
#[test]
fn a_process_tree_in_a_shared_cgroup_and_its_cgroup() {
    if !privileged("a_process_tree_in_a_shared_cgroup_and_its_cgroup") {
        return;
    }
    let dir = TempDir::new("attach-tree");
    std::fs::write(dir.join("f"), "x").unwrap();
    let cgroup = TestCgroup::new(&format!("ctp-attach-{}", std::process::id()));
    // The tree: its child (forked after cap-trace attached) chowns. Its name holds an escape
    // character, which the profile keeps and the report shows escaped.
    // (A process may rename only itself.)
    let tree = in_cgroup_as(
        &cgroup.path,
        &dir.0,
        "printf 'tr\\033ee' > /proc/$$/comm;",
        "sh -c 'chown nobody f'; sleep 0.2",
    );
    // The sibling renices (SYS_NICE) until told to stop.
    let sibling = renicing_sibling(&cgroup.path, &dir.0);
    let pid = tree.id().to_string();
    let (by_pid, pid_err) = attached(&["--pid", &pid, "--json"]);
    let rel = format!("/ctp-attach-{}", std::process::id());
    let (by_cgroup, cgroup_err) = attached(&["--cgroup", &rel, "--json"]);
    // While it waits, the tree forks a `sleep` every 20 ms: each joins the tree and leaves it
    // again when it exits, so the kernel's map stays at the few processes alive.
    std::thread::sleep(Duration::from_secs(1));
    let entries = kernel_map_entries(by_pid.id(), "TREES").expect("cap-trace's TREES map");
    assert!((1..=3).contains(&entries), "{entries} processes in TREES");
    std::fs::write(dir.join("go"), "").unwrap();

    let profile = profile_of(by_pid, &pid_err);
    assert!(
        pid_err
            .lock()
            .unwrap()
            .contains("the process and its descendants"),
        "{}",
        pid_err.lock().unwrap()
    );
    assert_eq!(suggested(&profile), ["CHOWN"], "{profile:#}");
    assert!(
        !capabilities_checked(&profile).contains(&"SYS_NICE".to_owned()),
        "the sibling's checks leaked in: {profile:#}"
    );
    let w = &profile["workload"];
    assert_eq!(w["kind"], "process");
    assert_eq!(w["pid"], tree.id());
    assert_eq!(w["comm"], "tr\u{1b}ee");
    assert_eq!(w["name"], format!("{} (tr\u{1b}ee)", tree.id()));
    assert_eq!(w["cgroup"], rel.as_str());
    let file = dir.join("tree.json");
    std::fs::write(&file, profile.to_string()).unwrap();
    let report = ok(&cap_trace(["show", file.to_str().unwrap()]));
    assert!(
        report.starts_with(&format!("process {} (tr\\eee)\n", tree.id()))
            && report.contains(&format!("\n  in cgroup {rel}\n")),
        "{report}"
    );
    assert_eq!(profile["trace"]["complete"], false);
    let why = profile["trace"]["incomplete"][0].as_str().unwrap();
    assert!(why.contains("after the process started"), "{why}");
    // The sibling still runs: the trace ended because the tree had exited.
    assert!(Path::new(&format!("/proc/{}", sibling.id())).exists());

    std::fs::write(dir.join("stop"), "").unwrap();
    let whole = profile_of(by_cgroup, &cgroup_err);
    let checked = capabilities_checked(&whole);
    assert!(
        checked.contains(&"CHOWN".to_owned()) && checked.contains(&"SYS_NICE".to_owned()),
        "{whole:#}"
    );
    assert_eq!(whole["workload"]["kind"], "cgroup");
    assert_eq!(whole["workload"]["name"], rel.as_str());
    assert_eq!(whole["trace"]["complete"], false);
    for mut child in [tree, sibling] {
        let _ = child.wait();
    }
}

/// `--events` with `--pid`: each new kind of check of the tree as it happens (the CHOWN of the
/// child forked after cap-trace attached), none of the sibling's, then the report; as JSON
/// lines with `--json`, the profile last.
#[test]
fn a_process_tree_live() {
    if !privileged("a_process_tree_live") {
        return;
    }
    let dir = TempDir::new("attach-live");
    std::fs::write(dir.join("f"), "x").unwrap();
    let cgroup = TestCgroup::new(&format!("ctp-attach-live-{}", std::process::id()));
    let mut tree = in_cgroup(&cgroup.path, &dir.0, "sh -c 'chown nobody f'");
    let mut sibling = renicing_sibling(&cgroup.path, &dir.0);
    let pid = tree.id().to_string();
    let (text, text_err) = attached(&["--pid", &pid, "--events"]);
    let (json, json_err) = attached(&["--pid", &pid, "--events", "--json"]);
    std::fs::write(dir.join("go"), "").unwrap();
    let _ = tree.wait();

    let out = text.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text_err.lock().unwrap());
    let shown = stdout(&out);
    let (events, report) = shown
        .split_once("\n\n")
        .expect("events, a blank line, the report");
    let mut lines = events.lines();
    assert!(
        lines.next().unwrap_or_default().starts_with("TIME "),
        "{shown}"
    );
    let lines: Vec<&str> = lines.collect();
    assert!(
        lines.iter().any(|l| {
            let columns: Vec<&str> = l.split_whitespace().collect();
            columns.contains(&"chown") && columns.contains(&"CHOWN") && columns.contains(&"granted")
        }),
        "{shown}"
    );
    assert!(
        !events.contains("SYS_NICE"),
        "the sibling's checks: {shown}"
    );
    assert!(
        report.starts_with(&format!("process {pid} (sh)")),
        "{shown}"
    );

    let out = json.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", json_err.lock().unwrap());
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let (profile, events) = lines.split_last().expect("events, then the profile");
    assert!(
        events
            .iter()
            .all(|e| e["event"] == "check" && e["workload"] == format!("{pid} (sh)")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["cap"] == "CHOWN" && e["comm"] == "chown" && e["verdict"] == "granted"),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e["cap"] == "SYS_NICE"), "{events:?}");
    assert_eq!(suggested(profile), ["CHOWN"], "{profile:#}");
    std::fs::write(dir.join("stop"), "").unwrap();
    let _ = sibling.wait();
}

/// On a terminal, an attached trace keeps a status line on stderr (time left, what it traces,
/// checks counted), takes it off at the end, and draws none with --json.
#[test]
fn a_status_line_on_a_terminal() {
    if !privileged("a_status_line_on_a_terminal") {
        return;
    }
    let dir = TempDir::new("attach-status");
    let cgroup = TestCgroup::new(&format!("ctp-attach-status-{}", std::process::id()));
    let mut lone = in_cgroup(&cgroup.path, &dir.0, "exec sleep 60");
    let pid = lone.id();
    let text = OnTerminal::start(&format!(
        "'{}' --cgroup {} --duration 2s >/dev/null",
        bin().display(),
        cgroup.path.display()
    ))
    .finish();
    let name = format!("/ctp-attach-status-{}", std::process::id());
    assert!(
        status_lines(&text)
            .iter()
            .any(|l| l.starts_with("cap-trace: ") && l.contains(&format!(" left | {name} | "))),
        "{text:?}"
    );
    // Taken off before the end: nothing follows the last erase but the report's lines.
    assert!(text.contains("\r\u{1b}[K"), "{text:?}");
    let text = OnTerminal::start(&format!(
        "'{}' --pid {pid} --duration 1s --json >/dev/null",
        bin().display()
    ))
    .finish();
    assert!(status_lines(&text).is_empty(), "{text:?}");
    let _ = lone.kill();
    let _ = lone.wait();
}

/// A process of a traced tree that moves to another cgroup is reported as having left, and its
/// checks there are not the tree's: the kernel's members map knows tree processes too.
#[test]
fn a_tree_process_that_moves_out_is_reported() {
    if !privileged("a_tree_process_that_moves_out_is_reported") {
        return;
    }
    let dir = TempDir::new("attach-moves");
    std::fs::write(dir.join("f"), "x").unwrap();
    let shared = TestCgroup::new(&format!("ctp-attach-shared-{}", std::process::id()));
    let elsewhere = TestCgroup::new(&format!("ctp-attach-elsewhere-{}", std::process::id()));
    // A sibling, so that the cgroup is shared and the process is traced as a tree.
    let mut sibling = in_cgroup(&shared.path, &dir.0, "sleep 2");
    let tree = in_cgroup(
        &shared.path,
        &dir.0,
        &format!(
            "sh -c 'echo $$ > {}; chown nobody f'",
            elsewhere.path.join("cgroup.procs").display()
        ),
    );
    let pid = tree.id().to_string();
    let (child, stderr) = attached(&["--pid", &pid, "--json"]);
    std::fs::write(dir.join("go"), "").unwrap();
    let profile = profile_of(child, &stderr);
    assert!(
        stderr
            .lock()
            .unwrap()
            .contains("the process and its descendants"),
        "{}",
        stderr.lock().unwrap()
    );
    let warnings = profile["warnings"].to_string();
    assert!(
        warnings.contains("left the traced cgroup for cgroup"),
        "{profile:#}"
    );
    assert!(
        !capabilities_checked(&profile).contains(&"CHOWN".to_owned()),
        "{profile:#}"
    );
    assert!(
        profile["trace"]["losses"]["migrated"].as_u64().unwrap_or(0) >= 1,
        "{profile:#}"
    );
    let mut tree = tree;
    let _ = tree.wait();
    let _ = sibling.kill();
    let _ = sibling.wait();
}

/// A process alone in its cgroup is traced by the cgroup, until `--duration`; a cgroup until
/// SIGTERM, which leaves the workload running. Both profiles are valid against the schema.
#[test]
fn a_lone_process_until_the_duration_and_a_cgroup_until_sigterm() {
    if !privileged("a_lone_process_until_the_duration_and_a_cgroup_until_sigterm") {
        return;
    }
    let dir = TempDir::new("attach-lone");
    let name = format!("ctp-attach-lone-{}", std::process::id());
    let cgroup = TestCgroup::new(&name);
    std::fs::write(dir.join("go"), "").unwrap();
    let mut lone = in_cgroup(&cgroup.path, &dir.0, "exec sleep 120");
    let pid = lone.id().to_string();
    let (by_pid, pid_err) = attached(&["--pid", &pid, "--duration", "1s", "--json"]);
    let profile = profile_of(by_pid, &pid_err);
    assert!(
        pid_err.lock().unwrap().contains("the cgroup and below"),
        "{}",
        pid_err.lock().unwrap()
    );
    assert_eq!(profile["workload"]["kind"], "process");
    assert_eq!(profile["workload"]["cgroup"], format!("/{name}"));
    assert_eq!(profile["trace"]["complete"], false);

    let (by_cgroup, cgroup_err) = attached(&["--cgroup", &name, "--json"]);
    // SAFETY: plain kill(2) of the child started above.
    unsafe { libc::kill(by_cgroup.id() as i32, libc::SIGTERM) };
    let whole = profile_of(by_cgroup, &cgroup_err);
    assert_eq!(whole["workload"]["kind"], "cgroup");
    assert_eq!(whole["workload"]["pid"], lone.id());
    assert_eq!(whole["workload"]["comm"], "sleep");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the workload goes on"
    );

    let files = [dir.join("pid.json"), dir.join("cgroup.json")];
    std::fs::write(&files[0], profile.to_string()).unwrap();
    std::fs::write(&files[1], whole.to_string()).unwrap();
    assert_eq!(schema_errors(&[&files[0], &files[1]]), "");
    let _ = lone.kill();
    let _ = lone.wait();
}

/// A process of a container is traced by the container's cgroup, whatever else runs in it: the
/// CHOWN its shell's child needs after cap-trace attached, until the container exits.
#[test]
fn a_container_process_is_traced_by_its_container() {
    if !privileged("a_container_process_is_traced_by_its_container")
        || !Engine::Podman.available("a_container_process_is_traced_by_its_container")
    {
        return;
    }
    let name = podman::name("attach");
    let started = Engine::Podman.run_detached(
        &name,
        &[],
        "touch /tmp/f; while [ ! -e /tmp/go ]; do sleep 0.05; done; chown nobody /tmp/f; sleep 0.3",
    );
    assert!(started.status.success(), "{started:?}");
    let _removal = Engine::Podman.remove_on_drop(&name);
    let inspected = Engine::Podman.inspect(&name).expect("the container");
    let pid = inspected["State"]["Pid"]
        .as_u64()
        .expect("its main process")
        .to_string();
    let id = inspected["Id"].as_str().expect("its id").to_owned();
    let (child, stderr) = attached(&["--pid", &pid, "--json"]);
    Engine::Podman.touch_in(&name, "/tmp/go");
    let profile = profile_of(child, &stderr);
    assert!(
        stderr.lock().unwrap().contains("the cgroup and below"),
        "{}",
        stderr.lock().unwrap()
    );
    assert_eq!(suggested(&profile), ["CHOWN"], "{profile:#}");
    let cgroup = profile["workload"]["cgroup"].as_str().unwrap();
    assert!(cgroup.contains(&id), "{cgroup}");
    assert_eq!(profile["workload"]["kind"], "process");
}

/// A systemd service's cgroup (made here: systemd is not PID 1 on every test machine) traced
/// by its unit name and rendered as the service's drop-in, which systemd reads back.
#[test]
fn a_unit_renders_its_drop_in() {
    if !privileged("a_unit_renders_its_drop_in") {
        return;
    }
    let dir = TempDir::new("attach-unit");
    std::fs::write(dir.join("f"), "x").unwrap();
    let unit = format!("ctp-attach-{}.service", std::process::id());
    let cgroup = TestCgroup::new(&format!("system.slice/{unit}"));
    let mut service = in_cgroup(&cgroup.path, &dir.0, "chown nobody f; sleep 0.2");
    let name = unit.trim_end_matches(".service");
    let (child, stderr) = attached(&["--unit", name, "--format", "systemd"]);
    std::fs::write(dir.join("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr.lock().unwrap());
    let fragment = stdout(&out);
    assert!(
        fragment.contains(&format!("from service {unit}: observed")),
        "{fragment}"
    );
    assert!(fragment.contains("# INCOMPLETE trace ("), "{fragment}");
    assert!(
        fragment.contains(&format!(
            "# a drop-in for {unit}: /etc/systemd/system/{unit}.d/capabilities.conf"
        )),
        "{fragment}"
    );
    let dump = systemd_verify(&fragment, None);
    assert_eq!(
        systemd_setting(&dump, "CapabilityBoundingSet").as_deref(),
        Some("cap_chown"),
        "{dump}"
    );
    let _ = service.wait();
}

/// What cannot be traced is a one-line usage error (exit 2) before anything is loaded.
#[test]
fn bad_targets_are_usage_errors() {
    if !privileged("bad_targets_are_usage_errors") {
        return;
    }
    let root_cgroup = cgroup_root().display().to_string();
    let cases: [(&[&str], &str); 9] = [
        (&["--pid", "999999999"], "no such process"),
        // Checked before the target: a running workload is not run again.
        (&["--pid", "1", "--verify"], "cannot be run again"),
        (
            &["--cgroup", "x", "--health", "true"],
            "cannot be run again",
        ),
        (&["--pid", "2"], "in the root cgroup"),
        (&["--cgroup", "/ctp-no-such-cgroup"], "no such cgroup"),
        (&["--cgroup", &root_cgroup], "the root cgroup"),
        (&["--cgroup", "a/../b"], "without `.` or `..`"),
        (
            &["--unit", "ctp-no-such-unit"],
            "no such service is running",
        ),
        (&["--unit", "a/b.service"], "not a service unit name"),
    ];
    for (args, says) in cases {
        let out = cap_trace(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("cap-trace: error: ") && err.contains(says),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // cap-trace itself: the shell's pid is cap-trace's once it execs.
    let out = Command::new("sh")
        .args(["-c", &format!("exec {} --pid $$", bin().display())])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is cap-trace itself"), "{err}");
}
