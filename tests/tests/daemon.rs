//! `cap-trace daemon` with real podman containers: profiles per container identity that
//! survive a SIGKILL, the control socket (and what it refuses), churn, a full disk and load.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cap_trace_tests::podman::{self, RUN_OPTS};
use cap_trace_tests::*;
use serde_json::Value;

/// Churn and load each want the machine to themselves (the load figure is printed).
static HEAVY: Mutex<()> = Mutex::new(());

fn ready(test: &str) -> bool {
    privileged(test) && podman::available(test)
}

/// A daemon following the containers labelled `cap-trace-test=LABEL`, so that parallel tests
/// do not see each other's containers.
/// It names containers through its own podman API service, as a deployed daemon does through
/// the engine's socket.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
    socket: PathBuf,
    _engine: podman::ApiService,
}

impl Daemon {
    fn start(state: &Path, socket: &Path, label: &str) -> Daemon {
        podman::image();
        let engine = podman::ApiService::start();
        let mut child = Command::new(bin())
            .arg("daemon")
            .arg("--state-dir")
            .arg(state)
            .arg("--socket")
            .arg(socket)
            .arg("--engine-socket")
            .arg(&engine.socket)
            .args(["--interval", "1s", "--label"])
            .arg(format!("cap-trace-test={label}"))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .env_remove("LD_LIBRARY_PATH")
            .spawn()
            .expect("start the daemon");
        let stderr = capture_stderr(&mut child);
        let d = Daemon {
            child,
            stderr,
            socket: socket.to_owned(),
            _engine: engine,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.stderr().contains("control socket") {
            assert!(
                Instant::now() < deadline,
                "daemon did not start: {}",
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn status(&self) -> Value {
        let out = cap_trace([
            "status",
            "--json",
            "--socket",
            self.socket.to_str().unwrap(),
        ]);
        serde_json::from_str(&ok(&out)).unwrap()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr();
        assert!(status.success(), "daemon failed: {stderr}");
        stderr
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let path = state.join(format!("{name}.json"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let p: Value = serde_json::from_str(&text).expect("saved profiles are valid JSON");
            if check(&p) {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no matching profile at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn profiles_survive_sigkill_and_continue_after_restart() {
    if !ready("profiles_survive_sigkill_and_continue_after_restart") {
        return;
    }
    let dir = TempDir::new("daemon-kill");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("kill");
    let name = podman::name("kill-web");

    let d = Daemon::start(&state, &socket, &label);
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
    let d = Daemon::start(&state, &socket, &label);
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
    if !ready("status_shows_names_from_labels_escaped") {
        return;
    }
    let dir = TempDir::new("daemon-names");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("names");
    let d = Daemon::start(&state, &socket, &label);
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
    if !ready("control_socket_refuses_bad_requests_and_other_users") {
        return;
    }
    let dir = TempDir::new("daemon-socket");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let d = Daemon::start(&state, &socket, &podman::name("socket"));
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

    // Still serving.
    assert!(d.status()["uptime_s"].is_u64());
    // The daemon kept only CAP_BPF once attached.
    let pid = d.child.id();
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
    let d = Daemon::start(&state, &socket, &label);
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
    let d = Daemon::start(&state, &socket, &label);
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
        let p = wait_for_profile(&state, name, |p| {
            p["trace"]["total_checks"].as_u64() > Some(0)
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
    // Flat: the last reading is within 2 MiB of the first.
    assert!(
        rss.last().unwrap() < &(rss[0] + 2048),
        "memory grows with churn: {mib:?}"
    );
    d.stop();
}

#[test]
fn a_million_checks_per_second_are_all_counted() {
    if !ready("a_million_checks_per_second_are_all_counted") {
        return;
    }
    let _heavy = HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let capbench = workspace_root().join("target/release/capbench");
    assert!(
        capbench.exists(),
        "{} is built by `cargo xtask test`",
        capbench.display()
    );
    let dir = TempDir::new("daemon-load");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let label = podman::name("load");
    let d = Daemon::start(&state, &socket, &label);
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
            let capbench = capbench.clone();
            std::thread::spawn(move || {
                let out = podman::podman()
                    .args(["run", "--rm", "--name", &name, "--label"])
                    .arg(format!("cap-trace-test={label}"))
                    .args(RUN_OPTS)
                    .args(["-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", "-v"])
                    .arg(format!("{}:/capbench:ro", capbench.display()))
                    .arg(podman::image())
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
