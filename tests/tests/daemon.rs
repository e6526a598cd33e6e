//! `cap-trace daemon` with real podman containers: profiles per container identity that
//! survive a SIGKILL, the control socket (and what it refuses), churn, a full disk and load.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cap_trace_tests::daemon::Daemon;
use cap_trace_tests::podman::{self, RUN_OPTS};
use cap_trace_tests::*;
use serde_json::Value;

/// Churn and load each want the machine to themselves (the load figure is printed).
static HEAVY: Mutex<()> = Mutex::new(());

/// Every test of this file shares the machine, but for the one whose daemon names containers
/// through Docker alone: to it, every podman container of the other tests is a foreign one,
/// and it measures its own six, not theirs.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_machine() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ready(test: &str) -> bool {
    privileged(test) && podman::available(test)
}

/// A daemon following the containers labelled `cap-trace-test=LABEL`, so that parallel tests
/// do not see each other's containers.
fn start(state: &Path, socket: &Path, label: &str) -> Daemon {
    start_with(state, socket, label, &["--interval", "1s"], None)
}

/// [`start`] with `extra` arguments, and at most `nofile` descriptors if given (as a service
/// started with `LimitNOFILE=` or under `ulimit -n`).
/// It names containers through its own podman API service, as a deployed daemon does through
/// the engine's socket.
fn start_with(
    state: &Path,
    socket: &Path,
    label: &str,
    extra: &[&str],
    nofile: Option<u64>,
) -> Daemon {
    use std::os::unix::process::CommandExt as _;
    podman::image();
    let engine = podman::ApiService::start();
    let mut cmd = Daemon::command(state, socket);
    cmd.arg("--engine-socket")
        .arg(&engine.socket)
        .args(extra)
        .arg("--label")
        .arg(format!("cap-trace-test={label}"));
    if let Some(n) = nofile {
        // SAFETY: setrlimit(2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Daemon::start(&mut cmd, socket).naming_through(engine)
}

fn run_labelled(name: &str, label: &str, script: &str) -> std::process::Output {
    podman::podman()
        .args(["run", "--rm", "--name", name, "--label"])
        .arg(format!("cap-trace-test={label}"))
        .args(RUN_OPTS)
        .args(podman::LEARNING)
        .arg(podman::image())
        .args(["/bin/sh", "-c", script])
        .output()
        .expect("run podman")
}

/// Waits until the saved profile of `name` satisfies `check`.
fn wait_for_profile(state: &Path, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for_profile_of(None, state, name, check)
}

/// [`wait_for_profile`], saying what the daemon said if it does not come.
fn wait_for_profile_of(
    d: Option<&Daemon>,
    state: &Path,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let path = state.join(format!("{name}.json"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let saved = std::fs::read_to_string(&path).ok();
        if let Some(text) = &saved {
            let p: Value = serde_json::from_str(text).expect("saved profiles are valid JSON");
            if check(&p) {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no matching profile at {}: {}\n{}",
            path.display(),
            saved.unwrap_or_default(),
            d.map(|d| format!("{:#}\n{}", d.status(), d.stderr()))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn profiles_survive_sigkill_and_continue_after_restart() {
    let _machine = shared_machine();
    if !ready("profiles_survive_sigkill_and_continue_after_restart") {
        return;
    }
    let dir = TempDir::new("daemon-kill");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("kill");
    let name = podman::name("kill-web");

    let d = start(&state, &socket, &label);
    let run = run_labelled(&name, &label, "touch /tmp/f && chown nobody /tmp/f");
    assert!(run.status.success());
    let p = wait_for_profile(&state, &name, |p| suggested(p) == ["CHOWN"]);
    assert_eq!(p["workload"]["identity"], name.as_str());

    // The control API sees the same.
    let status = d.status();
    assert!(
        status["containers"].to_string().contains(&name),
        "{status:#}"
    );
    assert_eq!(status["losses"]["ring_buffer"], 0);
    let out = cap_trace([
        "profile",
        &name,
        "--json",
        "--socket",
        socket.to_str().unwrap(),
    ]);
    let live: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(suggested(&live), ["CHOWN"]);
    let out = cap_trace([
        "profile",
        &name,
        "--format",
        "docker",
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert!(ok(&out).contains("CHOWN"));

    // SIGKILL: what was persisted is intact.
    d.kill();
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    }

    // A restarted daemon continues the same profile when the container comes back.
    let d = start(&state, &socket, &label);
    assert!(d.stderr().contains("1 saved profile"), "{}", d.stderr());
    let run = run_labelled(&name, &label, "mknod /tmp/null c 1 3");
    assert!(run.status.success());
    let p = wait_for_profile(&state, &name, |p| suggested(p).len() == 2);
    assert_eq!(suggested(&p), ["CHOWN", "MKNOD"], "{p:#}");
    assert_eq!(p["workload"]["sources"].as_array().unwrap().len(), 2);

    let export = dir.join("export");
    let out = cap_trace([
        "export",
        export.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
    ]);
    ok(&out);
    let exported = Profile::read(&export.join(format!("{name}.json")));
    assert_eq!(suggested(&exported), ["CHOWN", "MKNOD"]);

    // The state is root's alone: the directory 0700, its profiles 0600.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    let saved = state.join(format!("{name}.json"));
    assert_eq!(mode(&saved), 0o600);

    // Exporting into a directory another user owns would let that user point a name at any
    // file (a link in their own directory works even with fs.protected_symlinks=1): refused.
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let theirs = dir.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::symlink(&victim, theirs.join(format!("{name}.json"))).unwrap();
    for path in [theirs.as_path(), &theirs.join(format!("{name}.json"))] {
        // SAFETY: lchown on a NUL-terminated path.
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::lchown(c.as_ptr(), 65534, 65534) }, 0);
    }
    let out = cap_trace([
        "export",
        theirs.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to nobody"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let stderr = d.stop();
    assert!(stderr.contains("daemon stopped"), "{stderr}");
    assert!(!socket.exists(), "the socket is removed on exit");
}

struct Profile;
impl Profile {
    fn read(path: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

/// A container whose compose labels carry a line break and escape sequences: `status` and
/// `profile` show them escaped, so the terminal neither obeys them nor shows a made-up line.
#[test]
fn status_shows_names_from_labels_escaped() {
    let _machine = shared_machine();
    if !ready("status_shows_names_from_labels_escaped") {
        return;
    }
    let dir = TempDir::new("daemon-names");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("names");
    let d = start(&state, &socket, &label);
    let project = "shop\n  running fake/web\u{1b}]0;title\u{7}\u{1b}[31m";
    let run = podman::podman()
        .args([
            "run",
            "--rm",
            "--name",
            &podman::name("names-web"),
            "--label",
        ])
        .arg(format!("cap-trace-test={label}"))
        .arg("--label")
        .arg(format!("com.docker.compose.project={project}"))
        .args(["--label", "com.docker.compose.service=web"])
        .args(RUN_OPTS)
        .args(podman::LEARNING)
        .arg(podman::image())
        .args([
            "/bin/sh",
            "-c",
            "touch /tmp/f && chown nobody /tmp/f && sleep 1",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let identity = format!("{project}/web");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.status()["containers"].to_string().contains("web") {
        assert!(Instant::now() < deadline, "{:#}", d.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    let sock = socket.to_str().unwrap();
    let text = ok(&cap_trace(["status", "--socket", sock]));
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(
        text.contains("shop\\n  running fake/web\\e]0;title\\x07\\e[31m/web"),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("  running fake")),
        "{text}"
    );
    let report = ok(&cap_trace(["profile", &identity, "--socket", sock]));
    assert!(
        !report.chars().any(|c| c.is_control() && c != '\n'),
        "{report:?}"
    );
    assert!(
        report.contains("Suggestion: --cap-drop=ALL --cap-add=CHOWN"),
        "{report}"
    );
    d.stop();
}

#[test]
fn control_socket_refuses_bad_requests_and_other_users() {
    let _machine = shared_machine();
    if !ready("control_socket_refuses_bad_requests_and_other_users") {
        return;
    }
    let dir = TempDir::new("daemon-socket");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let d = start(&state, &socket, &podman::name("socket"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "root-only socket");

    // Malformed requests get an error reply; the same connection keeps working.
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for bad in [
        "not json",
        r#"{"request":"reboot"}"#,
        r#"{"request":"profile"}"#,
        "[]",
    ] {
        writeln!(stream, "{bad}").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["ok"], false, "{bad}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains("request"),
            "{reply}"
        );
    }
    writeln!(stream, r#"{{"request":"profile","name":"nope"}}"#).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("no profile for `nope`"), "{line}");
    writeln!(stream, r#"{{"request":"status"}}"#).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply["status"]["uptime_s"].is_u64());

    // As docs/control-api.md says: a line that is not UTF-8 or too long is answered with an
    // error, and a connection carries any number of requests (well past a megabyte).
    let mut ask = |line: &[u8]| -> Value {
        stream.write_all(line).unwrap();
        stream.write_all(b"\n").unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
    };
    let reply = ask(b"\xff\xfe{}");
    assert!(
        reply["error"].as_str().unwrap().contains("not UTF-8"),
        "{reply}"
    );
    let reply = ask(&vec![b'x'; 70 * 1024]);
    assert!(
        reply["error"].as_str().unwrap().contains("too large"),
        "{reply}"
    );
    let padded = format!(
        r#"{{"request":"status","padding":"{}"}}"#,
        "x".repeat(60_000)
    );
    for _ in 0..20 {
        let reply = ask(padded.as_bytes());
        assert_eq!(reply["ok"], false, "{reply}");
    }
    let reply = ask(br#"{"request":"status"}"#);
    assert_eq!(reply["ok"], true, "{reply}");

    // A client that is not root: the socket's mode stops it...
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let out = cap_trace_under(&nobody, ["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("root-only"), "{}", stderr(&out));
    // ...and so does the daemon itself when the mode is loosened.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = cap_trace_under(&nobody, ["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("root-only"), "{}", stderr(&out));

    // Still serving, on a new connection.
    let reply = d.request(r#"{"request":"status"}"#);
    assert!(reply["status"]["uptime_s"].is_u64(), "{reply}");
    // The daemon kept only CAP_BPF once attached.
    let pid = d.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    assert_eq!(u64::from_str_radix(eff, 16).unwrap(), 1 << 39, "{status}");
    d.stop();
}

#[test]
fn a_full_disk_is_reported_and_tracing_goes_on() {
    let _machine = shared_machine();
    if !ready("a_full_disk_is_reported_and_tracing_goes_on") {
        return;
    }
    let dir = TempDir::new("daemon-full");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    let socket = dir.join("control.sock");
    let label = podman::name("full");
    let d = start(&state, &socket, &label);
    // Fill the disk.
    let filler = state.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while f.write_all(&[0u8; 4096]).is_ok() {}
    let _ = f.sync_all();
    drop(f);

    let name = podman::name("full-web");
    assert!(
        run_labelled(&name, &label, "touch /tmp/f && chown nobody /tmp/f")
            .status
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let s = d.status();
        if s["persist_error"].is_string() && s["containers"].to_string().contains(&name) {
            break s;
        }
        assert!(Instant::now() < deadline, "{s:#}\n{}", d.stderr());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status["persist_error"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{status:#}"
    );
    assert!(d.stderr().contains("still tracing"), "{}", d.stderr());
    // Space again: the profile is written, nothing was lost meanwhile.
    std::fs::remove_file(&filler).unwrap();
    let p = wait_for_profile(&state, &name, |p| suggested(p) == ["CHOWN"]);
    assert_eq!(p["trace"]["complete"], true);
    assert!(d.status()["persist_error"].is_null());
    d.stop();
}

#[test]
fn churn_of_200_containers_keeps_every_profile_and_memory_flat() {
    let _machine = shared_machine();
    if !ready("churn_of_200_containers_keeps_every_profile_and_memory_flat") {
        return;
    }
    let _heavy = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("daemon-churn");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("churn");
    let d = start(&state, &socket, &label);
    let base = podman::name("churn");
    let names: Vec<String> = (0..200).map(|i| format!("{base}-{i:03}")).collect();
    let mut rss = Vec::new();
    for (batch, chunk) in names.chunks(4).enumerate() {
        let handles: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let (name, label) = (name.clone(), label.clone());
                // Every other container needs CHOWN; the rest need nothing.
                let script = if (batch * 4 + j) % 2 == 0 {
                    "touch /tmp/f && chown nobody /tmp/f"
                } else {
                    "echo hello > /tmp/f"
                };
                std::thread::spawn(move || run_labelled(&name, &label, script))
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap().status.success());
        }
        if batch % 10 == 9 {
            let s = d.status();
            rss.push(s["rss_kib"].as_u64().unwrap());
        }
    }
    for (i, name) in names.iter().enumerate() {
        let expected: &[&str] = if i % 2 == 0 { &["CHOWN"] } else { &[] };
        // A profile saved while the container was still starting holds only runc's checks:
        // wait for the one that has the workload's own (or fails saying what came).
        let p = wait_for_profile(&state, name, |p| {
            p["trace"]["total_checks"].as_u64() > Some(0) && suggested(p) == expected
        });
        assert_eq!(suggested(&p), expected, "{name}: {p:#}");
    }
    let status = d.status();
    assert_eq!(status["losses"]["ring_buffer"], 0, "{status:#}");
    assert_eq!(status["containers_seen"], 200, "{status:#}");
    let mib: Vec<String> = rss
        .iter()
        .map(|k| format!("{:.1}", *k as f64 / 1024.0))
        .collect();
    eprintln!("daemon RSS every 40 containers (MiB): {}", mib.join(" "));
    // Flat but for the profiles themselves: the daemon serves every profile from memory (an
    // index, by design), so each new identity adds its profile. Between the first reading
    // (after 40 containers) and the last, growth is within 2 MiB plus twice the size of the
    // profiles added meanwhile as saved; state kept per container gone would exceed it.
    let added: u64 = names[40..]
        .iter()
        .map(|n| std::fs::metadata(state.join(format!("{n}.json"))).map_or(0, |m| m.len()))
        .sum();
    let allowance_kib = 2048 + 2 * added / 1024;
    assert!(
        rss.last().unwrap() < &(rss[0] + allowance_kib),
        "memory grows with churn beyond its profiles ({allowance_kib} KiB allowed): {mib:?}"
    );
    d.stop();
}

/// A container the daemon names while the engine still says "created": the runtime has set
/// it up (its init process waits in its cgroup) but not started it, as an engine under load
/// leaves it for a while. It is starting, not gone: its profile, saved meanwhile with the
/// runtime's checks only, is not its last, and what its workload does once started is in it.
/// (Such a container was once retired at its first save and its cgroup swept as not followed:
/// the workload's CHOWN was dropped from a profile marked complete.)
#[test]
fn a_container_named_before_it_started_is_followed_once_it_runs() {
    let _machine = shared_machine();
    if !ready("a_container_named_before_it_started_is_followed_once_it_runs") {
        return;
    }
    let dir = TempDir::new("daemon-created");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("created");
    let d = start(&state, &socket, &label);
    let name = podman::name("created-web");
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            podman::remove(&self.0);
        }
    }
    let _remove = Remove(name.clone());
    let out = podman::podman()
        .args(["create", "--name", &name, "--label"])
        .arg(format!("cap-trace-test={label}"))
        .args(RUN_OPTS)
        .args(podman::LEARNING)
        .arg(podman::image())
        .args(["/bin/sh", "-c", "touch /tmp/f && chown nobody /tmp/f"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // `podman init`: runc creates the container (its cgroup, runc init in it, making the
    // runtime's checks) and does not start it; the engine says "created".
    let out = podman::podman().args(["init", &name]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let inspect = podman::podman()
        .args(["inspect", "--format", "{{.State.Status}}", &name])
        .output()
        .unwrap();
    // podman's own word for it is "initialized"; its Docker-compatible API, which the daemon
    // asks, says "created".
    let status = stdout(&inspect);
    assert!(
        ["created", "initialized"].contains(&status.trim()),
        "{status} {}",
        stderr(&inspect)
    );
    // The daemon names it and saves its profile (the runtime's checks alone); a few save
    // ticks more pass before it starts.
    let early = wait_for_profile_of(Some(&d), &state, &name, |_| true);
    assert!(suggested(&early).is_empty(), "{early:#}");
    std::thread::sleep(Duration::from_secs(3));
    let out = podman::podman()
        .args(["start", "--attach", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let p = wait_for_profile_of(Some(&d), &state, &name, |p| suggested(p) == ["CHOWN"]);
    assert_eq!(p["trace"]["complete"], true, "{p:#}");
    assert_eq!(p["workload"]["name"], name.as_str(), "{p:#}");
    d.stop();
}

/// `podman run OPTS --label cap-trace-test=LABEL ... IMAGE` with the benchmark's workload at
/// `/capbench` (built by `cargo xtask test`); the command follows.
fn with_capbench(opts: &[&str], label: &str) -> Command {
    let capbench = workspace_root().join("target/release/capbench");
    assert!(
        capbench.exists(),
        "{} is built by `cargo xtask test`",
        capbench.display()
    );
    let mut cmd = podman::podman();
    cmd.arg("run")
        .args(opts)
        .arg("--label")
        .arg(format!("cap-trace-test={label}"))
        .args(RUN_OPTS)
        .args(["-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", "-v"])
        .arg(format!("{}:/capbench:ro", capbench.display()))
        .arg(podman::image());
    cmd
}

#[test]
fn a_million_checks_per_second_are_all_counted() {
    let _machine = shared_machine();
    if !ready("a_million_checks_per_second_are_all_counted") {
        return;
    }
    let _heavy = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("daemon-load");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("load");
    let d = start(&state, &socket, &label);
    let calls: u64 = std::env::var("CAP_TRACE_LOAD_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000_000);
    let base = podman::name("load");
    let started = Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let name = format!("{base}-{i}");
            let label = label.clone();
            std::thread::spawn(move || {
                let out = with_capbench(&["--rm", "--name", &name], &label)
                    .args(["/capbench", &calls.to_string()])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                name
            })
        })
        .collect();
    let names: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let seconds = started.elapsed().as_secs_f64();
    let status = d.status();
    // Stopping writes every profile once more, with the kernel's final counts.
    d.stop();
    for name in &names {
        let p = Profile::read(&state.join(format!("{name}.json")));
        let counted: u64 = p["checks"]
            .as_array()
            .unwrap()
            .iter()
            // runc's own setgroups before the exec is the runtime's, not the benchmark's.
            .filter(|c| {
                c["cap"] == "SETGID" && c["syscall"] == "setgroups" && c["phase"] == "workload"
            })
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, calls, "{name}: {p:#}");
        assert_eq!(p["trace"]["complete"], true, "{name}: {p:#}");
    }
    assert_eq!(status["losses"]["ring_buffer"], 0, "{status:#}");
    eprintln!(
        "load: {} checks in {seconds:.1} s ({:.2} M/s), daemon RSS {:.1} MiB (peak {:.1} MiB)",
        3 * calls,
        3.0 * calls as f64 / seconds / 1e6,
        status["rss_kib"].as_u64().unwrap() as f64 / 1024.0,
        status["peak_rss_kib"].as_u64().unwrap() as f64 / 1024.0
    );
}

/// The capabilities `deploy/cap-trace.service` grants (`CapabilityBoundingSet=`), lowercased
/// without `CAP_` (as setpriv names them).
fn deployed_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(workspace_root().join("deploy/cap-trace.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    let caps: Vec<String> = line
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    // The DaemonSet grants the same set.
    let daemonset =
        std::fs::read_to_string(workspace_root().join("deploy/daemonset.yaml")).unwrap();
    let upper: Vec<String> = caps.iter().map(|c| c.to_uppercase()).collect();
    assert!(
        daemonset.contains(&format!("add: [{}]", upper.join(", "))),
        "deploy/daemonset.yaml adds other capabilities than the unit's {upper:?}"
    );
    caps
}

/// Starts the daemon with only `caps` (a root process whose bounding set is cut, as systemd's
/// CapabilityBoundingSet= and Kubernetes' capabilities.add do).
fn daemon_with(caps: &[String], state: &Path, socket: &Path, engine: &Path) -> Command {
    let mut bounding = String::from("-all");
    for c in caps {
        bounding.push_str(&format!(",+{c}"));
    }
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--bounding-set={bounding}"))
        .arg("--inh-caps=-all")
        .arg(bin())
        .arg("daemon")
        .arg("--state-dir")
        .arg(state)
        .arg("--socket")
        .arg(socket)
        .arg("--engine-socket")
        .arg(engine)
        .args(["--interval", "1s"]);
    cmd
}

#[test]
fn the_deployed_capability_set_is_enough_and_each_one_is_needed() {
    let _machine = shared_machine();
    if !ready("the_deployed_capability_set_is_enough_and_each_one_is_needed") {
        return;
    }
    let caps = deployed_capabilities();
    let engine = podman::ApiService::start();
    let dir = TempDir::new("daemon-caps");
    let socket = dir.join("control.sock");

    // With exactly that set: it starts, keeps BPF alone, and profiles a container.
    let state = dir.join("state");
    let label = podman::name("caps");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        daemon_with(&caps, &state, &socket, &engine.socket)
            .args(["--label", &format!("cap-trace-test={label}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        assert!(child.0.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The socket is bound before the programs are attached; the first answer comes after.
    ok(&cap_trace(["status", "--socket", socket.to_str().unwrap()]));
    let name = podman::name("caps-web");
    assert!(
        run_labelled(&name, &label, "touch /tmp/f && chown nobody /tmp/f")
            .status
            .success()
    );
    let p = wait_for_profile(&state, &name, |p| suggested(p) == ["CHOWN"]);
    assert_eq!(p["trace"]["complete"], true);
    let out = cap_trace(["status", "--json", "--socket", socket.to_str().unwrap()]);
    let status: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(
        status["capabilities"],
        serde_json::json!(["BPF"]),
        "{status:#}"
    );
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());

    // Without any one of them: a one-line error naming what is missing, exit 3.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let state = dir.join(&format!("state-{missing}"));
        let out = daemon_with(&fewer, &state, &socket, &engine.socket)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "without {missing}: {err}");
        assert!(
            err.to_lowercase().contains(&format!("cap_{missing}"))
                || err.to_lowercase().contains(&format!("needs {missing}")),
            "without {missing}, the error does not name it: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// `podman run --rm` without the test's label: a container the daemon does not follow.
fn run_unlabelled(name: &str, script: &str) -> std::process::Output {
    podman::podman()
        .args(["run", "--rm", "--name", name])
        .args(RUN_OPTS)
        .args(podman::LEARNING)
        .arg(podman::image())
        .args(["/bin/sh", "-c", script])
        .output()
        .expect("run podman")
}

/// Waits until `status` satisfies `check`; returns it.
fn wait_for_status(d: &Daemon, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.status();
        if check(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#}\n{}", d.stderr());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn containers_the_daemon_does_not_follow_leave_no_kernel_entries() {
    let _machine = shared_machine();
    if !ready("containers_the_daemon_does_not_follow_leave_no_kernel_entries") {
        return;
    }
    let _heavy = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("daemon-filtered");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("filtered");
    let d = start(&state, &socket, &label);
    // CAP_TRACE_CHURN_SECONDS=3600 makes this the hour of filtered churn (figures every
    // minute); by default, a dozen containers.
    let traced_before = d.status()["map_entries"]["traced"].as_u64().unwrap();
    let seconds: u64 = std::env::var("CAP_TRACE_CHURN_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let base = podman::name("unfollowed");
    let started = Instant::now();
    let mut round = 0;
    let mut last_report = Instant::now();
    // Each makes the same checks again and again, long after the daemon found it does not
    // follow it (and forgot what it had recorded).
    let script = "touch /tmp/f; i=0; while [ $i -lt 8 ]; do chown nobody /tmp/f; sleep 0.3; i=$((i+1)); done";
    loop {
        let handles: Vec<_> = (0..4)
            .map(|j| {
                let name = format!("{base}-{round}-{j}");
                std::thread::spawn(move || run_unlabelled(&name, script))
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap().status.success());
        }
        round += 1;
        if seconds > 0 && last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            eprintln!(
                "after {} s, {} unfollowed containers: CHECKS holds {:?} entries",
                started.elapsed().as_secs(),
                round * 4,
                kernel_map_entries(d.pid(), "CHECKS")
            );
        }
        if round >= 3 && started.elapsed().as_secs() >= seconds {
            break;
        }
    }
    // The kernel side counted their checks until the daemon found it does not follow them:
    // `status` counts followed containers' checks only.
    let status = d.status();
    assert_eq!(status["checks"], 0, "{status:#}");
    // One the daemon follows, meanwhile: profiled as ever, and its checks are the count.
    let name = podman::name("filtered-web");
    assert!(
        run_labelled(&name, &label, "touch /tmp/f && chown nobody /tmp/f")
            .status
            .success()
    );
    wait_for_profile(&state, &name, |p| suggested(p) == ["CHOWN"]);
    wait_for_status(&d, "checks counted as its profile counts them", |s| {
        let saved = Profile::read(&state.join(format!("{name}.json")));
        s["checks"] == saved["trace"]["total_checks"]
    });
    // Once everything has exited and the maps were swept (every 10 s): nothing left of the
    // containers not followed (nor of the one followed, retired once its profile was written),
    // and the cgroups ignored are let go once gone: what stays traced is what was before.
    let deadline = Instant::now() + Duration::from_secs(40);
    let (entries, status) = loop {
        let entries = kernel_map_entries(d.pid(), "CHECKS").expect("the daemon's CHECKS map");
        let status = d.status();
        let traced = status["map_entries"]["traced"].as_u64().unwrap();
        let waiting = status["waiting_for_names"].as_u64().unwrap();
        if (entries <= 4 && traced <= traced_before + 2 && waiting == 0)
            || Instant::now() > deadline
        {
            break (entries, status);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    eprintln!(
        "after {} unfollowed containers: CHECKS holds {entries} entries (status: {})",
        round * 4,
        status["map_entries"]
    );
    assert!(entries <= 4, "{entries} entries left: {status:#}");
    assert!(
        status["map_entries"]["traced"].as_u64().unwrap() <= traced_before + 2,
        "{traced_before} before: {status:#}"
    );
    // Nor does a cgroup that is gone wait for a name for ever (its entries with it).
    assert_eq!(status["waiting_for_names"], 0, "{status:#}");
    d.stop();
}

#[test]
fn a_ring_buffer_loss_marks_only_the_profile_that_lost() {
    let _machine = shared_machine();
    if !ready("a_ring_buffer_loss_marks_only_the_profile_that_lost") {
        return;
    }
    let _heavy = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("daemon-losses");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("losses");
    // Every check through the ring buffer, which a burst overruns while the daemon does not
    // read (stopped, as a daemon that falls behind).
    let d = start_with(
        &state,
        &socket,
        &label,
        &["--interval", "1s", "--stream"],
        None,
    );
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGSTOP) };
    struct Continue(u32);
    impl Drop for Continue {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our child.
            unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
        }
    }
    let stopped = Continue(d.pid());
    let burst = podman::name("losses-burst");
    // It goes on running a while after its burst, so that the daemon, woken meanwhile, can
    // still name it whatever else it missed (an exited --rm container is named from its
    // cgroup's path, which the kernel side sends with its first check: lost too, here).
    let out = with_capbench(&["-d", "--rm", "--name", &burst], &label)
        .args([
            "/bin/sh",
            "-c",
            "/capbench 300000 && touch /tmp/done && sleep 5",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !podman::podman()
        .args(["exec", &burst, "test", "-e", "/tmp/done"])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "the burst did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(stopped);
    let lost = wait_for_profile_of(Some(&d), &state, &burst, |p| {
        p["trace"]["complete"] == false
    });
    let ring = lost["trace"]["losses"]["ring_buffer"].as_u64().unwrap();
    assert!(ring > 0, "{lost:#}");
    assert!(
        lost["warnings"][0]
            .as_str()
            .unwrap()
            .contains(&format!("{ring} ring-buffer events lost")),
        "{lost:#}"
    );
    // A container after it lost nothing: its profile is complete.
    let calm = podman::name("losses-calm");
    assert!(
        run_labelled(&calm, &label, "touch /tmp/f && chown nobody /tmp/f")
            .status
            .success()
    );
    let p = wait_for_profile(&state, &calm, |p| suggested(p) == ["CHOWN"]);
    assert_eq!(p["trace"]["complete"], true, "{p:#}");
    assert_eq!(p["trace"]["losses"]["ring_buffer"], 0, "{p:#}");
    // The daemon's own count is every loss.
    assert!(d.status()["losses"]["ring_buffer"].as_u64().unwrap() >= ring);
    d.stop();
}

/// The saved profile whose identity is `identity`, whatever its file is called.
fn saved_profile(state: &Path, identity: &str) -> Option<Value> {
    std::fs::read_dir(state).ok()?.flatten().find_map(|e| {
        let text = std::fs::read_to_string(e.path()).ok()?;
        let p: Value = serde_json::from_str(&text).ok()?;
        (p["workload"]["identity"] == identity).then_some(p)
    })
}

#[test]
fn a_profile_that_cannot_be_written_holds_up_no_other() {
    let _machine = shared_machine();
    if !ready("a_profile_that_cannot_be_written_holds_up_no_other") {
        return;
    }
    let dir = TempDir::new("daemon-names");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("names");
    std::fs::create_dir_all(&state).unwrap();
    // A compose project of 245 characters: its profile's name must stay short.
    let (project, long_identity) = ("p".repeat(245), format!("{}/web", "p".repeat(245)));
    let d = start(&state, &socket, &label);
    // A profile that cannot be written: a directory stands where it goes, and another where it
    // would be set aside, so that it stays in the way.
    let blocked = podman::name("names-blocked");
    std::fs::create_dir(state.join(format!("{blocked}.json"))).unwrap();
    std::fs::create_dir_all(state.join(format!("{blocked}.json.invalid/in-the-way"))).unwrap();
    assert!(
        run_labelled(&blocked, &label, "mknod /tmp/null c 1 3")
            .status
            .success()
    );
    wait_for_status(&d, "the blocked profile's error", |s| {
        s["persist_error"]
            .as_str()
            .is_some_and(|e| e.contains(&blocked))
    });
    // What the kernel side holds once the blocked container has exited and a sweep has run:
    // its checks stay there until its profile is written.
    std::thread::sleep(Duration::from_secs(12));
    let held = kernel_map_entries(d.pid(), "CHECKS").expect("the daemon's CHECKS map");
    let long = podman::name("names-long");
    let out = podman::podman()
        .args(["run", "--rm", "--name", &long, "--label"])
        .arg(format!("cap-trace-test={label}"))
        .args(["--label", &format!("com.docker.compose.project={project}")])
        .args(["--label", "com.docker.compose.service=web"])
        .args(RUN_OPTS)
        .args(podman::LEARNING)
        .arg(podman::image())
        .args(["/bin/sh", "-c", "touch /tmp/f && chown nobody /tmp/f"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = podman::name("names-plain");
    assert!(
        run_labelled(&plain, &label, "touch /tmp/f && chown nobody /tmp/f")
            .status
            .success()
    );
    wait_for_profile(&state, &plain, |p| suggested(p) == ["CHOWN"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let saved = loop {
        if let Some(p) = saved_profile(&state, &long_identity) {
            break p;
        }
        assert!(Instant::now() < deadline, "{}", d.stderr());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(suggested(&saved), ["CHOWN"]);
    // The two whose profiles were written are retired all the same: the kernel side holds
    // nothing more of them (the failing one held up every retirement once).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let entries = kernel_map_entries(d.pid(), "CHECKS").expect("the daemon's CHECKS map");
        if entries <= held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{entries} CHECKS entries, {held} before the written ones ran: {}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    for entry in std::fs::read_dir(&state).unwrap().flatten() {
        assert!(entry.file_name().len() <= 230, "{:?}", entry.file_name());
    }
    // The failure is the blocked profile's alone, and says so.
    let status = wait_for_status(&d, "the blocked profile's error", |s| {
        s["persist_error"]
            .as_str()
            .is_some_and(|e| e.contains(&blocked))
    });
    let error = status["persist_error"].as_str().unwrap();
    assert!(!error.contains("more"), "{status:#}");

    // Export writes every profile; one it cannot write is named, and the rest are written.
    let export = dir.join("export");
    std::fs::create_dir_all(export.join(format!("{plain}.json"))).unwrap();
    let out = cap_trace([
        "export",
        export.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&plain), "{err}");
    assert!(
        err.contains("1 of 3 profiles could not be written"),
        "{err}"
    );
    assert!(saved_profile(&export, &long_identity).is_some(), "{err}");
    assert!(saved_profile(&export, &blocked).is_some(), "{err}");
    d.stop();
}

/// Every connection's reply to a `profiles` request, read to its end: the bytes received.
fn profiles_request(socket: &Path) -> usize {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    writeln!(stream, r#"{{"request":"profiles"}}"#).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.len()
}

#[test]
fn fifty_clients_asking_for_700_profiles_at_once_keep_memory_small() {
    let _machine = shared_machine();
    if !ready("fifty_clients_asking_for_700_profiles_at_once_keep_memory_small") {
        return;
    }
    let _heavy = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = TempDir::new("daemon-index");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("index");
    // 700 saved profiles: one real one, under 700 identities.
    let d = start(&state, &socket, &label);
    let name = podman::name("index-web");
    assert!(
        run_labelled(&name, &label, "touch /tmp/f && chown nobody /tmp/f")
            .status
            .success()
    );
    let mut p = wait_for_profile(&state, &name, |p| suggested(p) == ["CHOWN"]);
    d.stop();
    for i in 0..700 {
        let identity = format!("shop{i:03}/web");
        p["workload"]["identity"] = identity.clone().into();
        p["workload"]["name"] = format!("shop{i:03}-web-1").into();
        std::fs::write(
            state.join(format!("shop{i:03}~web.json")),
            serde_json::to_string_pretty(&p).unwrap(),
        )
        .unwrap();
    }
    let d = start(&state, &socket, &label);
    assert!(d.stderr().contains("701 saved profiles"), "{}", d.stderr());
    let before = d.status()["rss_kib"].as_u64().unwrap();
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || profiles_request(&socket))
        })
        .collect();
    let sizes: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        sizes.iter().all(|&n| n == sizes[0] && n > 700 * 1000),
        "{sizes:?}"
    );
    let reply: Value = {
        let out = cap_trace([
            "profile",
            "shop123-web-1",
            "--json",
            "--socket",
            socket.to_str().unwrap(),
        ]);
        serde_json::from_str(&ok(&out)).unwrap()
    };
    assert_eq!(reply["workload"]["identity"], "shop123/web");
    let status = d.status();
    let peak = status["peak_rss_kib"].as_u64().unwrap();
    eprintln!(
        "50 concurrent `profiles` requests on {} profiles ({:.1} MB each reply): RSS {:.1} MiB before, peak {:.1} MiB",
        status["profiles"],
        sizes[0] as f64 / 1e6,
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    // The target (64 MB) is the benchmark's; this only holds the order of magnitude.
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
    d.stop();
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let _machine = shared_machine();
    if !ready("a_second_daemon_on_the_same_state_dir_is_refused") {
        return;
    }
    let dir = TempDir::new("daemon-lock");
    let state = dir.join("state");
    let d = start(&state, &dir.join("control.sock"), &podman::name("lock"));
    let out = Command::new("timeout")
        .arg("60")
        .arg(bin())
        .arg("daemon")
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(dir.join("other.sock"))
        .arg("--engine-socket")
        .arg(&d.engine().socket)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("another cap-trace daemon (pid {})", d.pid())),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!dir.join("other.sock").exists());
    assert!(d.status()["uptime_s"].is_u64());
    d.stop();
}

/// The daemon's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn idle_connections_past_the_descriptor_limit_do_not_stop_status() {
    let _machine = shared_machine();
    if !ready("idle_connections_past_the_descriptor_limit_do_not_stop_status") {
        return;
    }
    let dir = TempDir::new("daemon-fds");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let d = start_with(
        &state,
        &socket,
        &podman::name("fds"),
        &["--interval", "1s"],
        Some(128),
    );
    // 150 connections that say nothing.
    let idle: Vec<UnixStream> = (0..150)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let ticks = cpu_ticks(d.pid());
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("30")
        .arg(bin())
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let status: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(status["uptime_s"].is_u64());
    let answered = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let hz = 100.0;
    let cpu = (cpu_ticks(d.pid()) - ticks) as f64 / hz;
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "150 idle connections under a limit of 128 descriptors: status answered in {:.2} s; daemon CPU {:.0}% over {wall:.1} s",
        answered.as_secs_f64(),
        100.0 * cpu / wall
    );
    // Spinning on accept would burn a CPU; a few ticks of work is not that.
    assert!(cpu < wall / 2.0, "{cpu} s of CPU in {wall} s");
    drop(idle);
    d.stop();
}

/// Saved profiles that do not parse are set aside, never over one set aside before; one that
/// cannot be moved stays, and the warning says so rather than naming where it did not go.
#[test]
fn profiles_that_do_not_parse_are_set_aside_and_the_warning_says_where() {
    let _machine = shared_machine();
    if !ready("profiles_that_do_not_parse_are_set_aside_and_the_warning_says_where") {
        return;
    }
    let dir = TempDir::new("daemon-aside");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    // One set aside by an earlier run, and a new one of the same name that does not parse.
    std::fs::write(state.join("a.json.invalid"), "earlier\n").unwrap();
    std::fs::write(state.join("a.json"), "not json\n").unwrap();
    // One that cannot be moved: a mount point (rename(2) says EBUSY, even to root).
    std::fs::write(state.join("b.json"), "not json either\n").unwrap();
    let source = dir.join("b-source");
    std::fs::write(&source, "not json either\n").unwrap();
    let mounted = Command::new("mount")
        .arg("--bind")
        .arg(&source)
        .arg(state.join("b.json"))
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.join("b.json"));
    let d = start(&state, &dir.join("control.sock"), &podman::name("aside"));
    let stderr = d.stop();
    let a = state.join("a.json");
    assert!(
        stderr.contains(&format!(
            "; set aside as {}.invalid.2 and started afresh",
            a.display()
        )),
        "{stderr}"
    );
    assert!(!a.exists(), "{stderr}");
    let read = |name: &str| std::fs::read_to_string(state.join(name)).unwrap();
    assert_eq!(read("a.json.invalid"), "earlier\n", "{stderr}");
    assert_eq!(read("a.json.invalid.2"), "not json\n", "{stderr}");
    let b = state.join("b.json");
    let warning = stderr
        .lines()
        .find(|l| l.contains(&format!("{} is not a cap-trace profile", b.display())))
        .unwrap_or_else(|| panic!("no warning about {}: {stderr}", b.display()));
    assert!(
        warning.contains("; it could not be set aside (Device or resource busy"),
        "{warning}"
    );
    assert!(
        warning.ends_with("it stays where it is, and a profile written under its name replaces it"),
        "{warning}"
    );
    assert!(
        !stderr.contains(&format!("set aside as {}", b.display())),
        "{stderr}"
    );
    assert_eq!(read("b.json"), "not json either\n");
}

#[test]
fn sighup_saves_and_the_daemon_goes_on() {
    let _machine = shared_machine();
    if !ready("sighup_saves_and_the_daemon_goes_on") {
        return;
    }
    let dir = TempDir::new("daemon-hup");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("hup");
    // No interval write before the test is over: only SIGHUP and the stop write.
    let d = start_with(&state, &socket, &label, &["--interval", "1h"], None);
    let name = podman::name("hup-web");
    assert!(
        run_labelled(&name, &label, "touch /tmp/f && chown nobody /tmp/f")
            .status
            .success()
    );
    wait_for_status(&d, "the container followed", |s| {
        s["containers"].to_string().contains(&name)
    });
    assert!(!state.join(format!("{name}.json")).exists());
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    let p = wait_for_profile(&state, &name, |p| suggested(p) == ["CHOWN"]);
    assert_eq!(p["trace"]["complete"], true);
    assert!(d.status()["uptime_s"].is_u64(), "still running");
    assert!(
        d.stderr().contains("SIGHUP: profiles written"),
        "{}",
        d.stderr()
    );
    d.stop();
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn containers_started_while_the_engine_is_down_are_named_when_it_is_back() {
    let _machine = shared_machine();
    if !ready("containers_started_while_the_engine_is_down_are_named_when_it_is_back") {
        return;
    }
    let dir = TempDir::new("daemon-engine-down");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("down");
    let mut d = start(&state, &socket, &label);
    d.engine_mut().stop();
    // podman's CLI does not need the API service: the container runs, and exits, meanwhile.
    let name = podman::name("down-web");
    assert!(
        run_labelled(&name, &label, "touch /tmp/f && chown nobody /tmp/f")
            .status
            .success()
    );
    let status = wait_for_status(&d, "the engine seen down", |s| {
        s["engine_state"][0]["answering"] == false && s["waiting_for_names"].as_u64() > Some(0)
    });
    assert!(status["engine_state"][0]["error"].is_string(), "{status:#}");
    // Down for longer than a cgroup is ever waited for while the engine answers.
    std::thread::sleep(Duration::from_secs(12));
    assert!(!state.join(format!("{name}.json")).exists());
    d.engine_mut().restart();
    let p = wait_for_profile(&state, &name, |p| suggested(p) == ["CHOWN"]);
    assert_eq!(p["workload"]["name"], name.as_str());
    // Nothing left waiting for a name (another engine's containers, of tests running
    // meanwhile, are given up within seconds).
    wait_for_status(&d, "the engine answering, nothing waiting", |s| {
        s["engine_state"][0]["answering"] == true && s["waiting_for_names"] == 0
    });
    assert!(d.stderr().contains("answers again"), "{}", d.stderr());
    d.stop();
}

/// Podman containers doing a privileged thing five times a second until removed.
struct Foreign(Vec<String>);
impl Foreign {
    fn start(&mut self, n: usize) {
        for _ in 0..n {
            let name = podman::name("foreign");
            let out = engine::Engine::Podman.run_detached(
                &name,
                podman::LEARNING,
                "touch /tmp/f; while :; do chown nobody /tmp/f; sleep 0.2; done",
            );
            assert!(out.status.success(), "{}", stderr(&out));
            self.0.push(name);
        }
    }
}
impl Drop for Foreign {
    fn drop(&mut self) {
        for name in &self.0 {
            podman::remove(name);
        }
    }
}

/// Containers of another engine that the daemon's engine does not know (podman's, while the
/// daemon names through Docker): asking about them holds up neither the profile of a
/// container the engine knows nor SIGTERM.
#[test]
fn other_engines_containers_hold_up_neither_profiles_nor_sigterm() {
    use cap_trace_tests::engine::Engine;
    let test = "other_engines_containers_hold_up_neither_profiles_nor_sigterm";
    if !(ready(test) && Engine::Docker.available(test)) {
        return;
    }
    // Alone: its long-running unlabelled containers are other tests' daemons' foreign
    // containers too, and theirs would be foreign to it.
    let _alone = MACHINE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dockerd = docker::shared().expect("the test Docker engine");
    let image = Engine::Docker.image();
    let dir = TempDir::new("daemon-foreign");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("foreign-label");
    let mut foreign = Foreign(Vec::new());
    foreign.start(6);
    let d = Daemon::start(
        Daemon::command(&state, &socket)
            .arg("--engine-socket")
            .arg(dockerd.socket())
            .args(["--interval", "1s", "--label"])
            .arg(format!("cap-trace-test={label}")),
        &socket,
    );
    // Podman's containers have produced checks the daemon cannot name through Docker.
    std::thread::sleep(Duration::from_secs(3));
    let name = podman::name("docker-web");
    let out = dockerd
        .docker()
        .args(["run", "--rm", "--name", &name, "--label"])
        .arg(format!("cap-trace-test={label}"))
        .args(Engine::Docker.run_opts())
        .args(Engine::Docker.learning())
        .arg(image)
        .args(["/bin/sh", "-c", "touch /tmp/f && chown nobody /tmp/f"])
        .output()
        .expect("run docker");
    assert!(out.status.success(), "{}", stderr(&out));
    let ran = Instant::now();
    let path = state.join(format!("{name}.json"));
    loop {
        let saved = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if saved.as_ref().is_some_and(|p| suggested(p) == ["CHOWN"]) {
            break;
        }
        assert!(
            ran.elapsed() < Duration::from_secs(10),
            "no profile of the Docker container {}s after it ran: {saved:?}\n{}",
            ran.elapsed().as_secs(),
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // New foreign containers being named: SIGTERM still ends the daemon at once.
    foreign.start(3);
    std::thread::sleep(Duration::from_secs(1));
    d.stop_within(Duration::from_secs(5));
}
