//! Helpers for the end-to-end tests: the real `cap-trace` binary against the real kernel.
//!
//! Tests that need root (loading eBPF) call [`privileged`] first. Without root they skip with a
//! message, unless `CAP_TRACE_REQUIRE_ROOT_TESTS=1` (set by `cargo xtask test` when run as
//! root, and so in CI), which turns a skip into a failure.

pub mod background;
pub mod consumers;
pub mod daemon;
pub mod debian;
pub mod docker;
pub mod engine;
pub mod page;
pub mod podman;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The release `cap-trace` binary, built once per test process; `CAP_TRACE_TEST_BIN=PATH` runs
/// the tests against another build instead (to see a test fail before a fix).
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(other) = std::env::var_os("CAP_TRACE_TEST_BIN") {
            return PathBuf::from(other);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--release", "--quiet", "--package", "cap-trace"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building cap-trace failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from);
        target.join("release/cap-trace")
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when the test can load eBPF programs; otherwise reports the skip (or fails, when
/// skipping is not allowed).
pub fn privileged(test: &str) -> bool {
    is_root() || skip_or_fail(test, "needs root (run `sudo cargo xtask test`)")
}

/// Reports that `test` cannot run, and why: a skip, or a failure when
/// `CAP_TRACE_REQUIRE_ROOT_TESTS=1` forbids skipping. Returns false (the test does not run).
pub fn skip_or_fail(test: &str, why: &str) -> bool {
    assert!(
        std::env::var_os("CAP_TRACE_REQUIRE_ROOT_TESTS").is_none_or(|v| v != "1"),
        "{test}: {why}, and CAP_TRACE_REQUIRE_ROOT_TESTS=1 forbids skipping"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// `on_both_engines!(a, b)`: each function `fn a(engine: Engine)` of the test file becomes a
/// test per engine, `podman_engine::a` and `docker_engine::a`.
#[macro_export]
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod podman_engine {
            $( #[test] fn $case() { super::$case($crate::engine::Engine::Podman) } )*
        }
        mod docker_engine {
            $( #[test] fn $case() { super::$case($crate::engine::Engine::Docker) } )*
        }
    };
}

/// True when a test can run against `engine` (root, the engine there); else skips or fails.
pub fn ready(engine: engine::Engine, test: &str) -> bool {
    let test = format!("{test} ({})", engine.name());
    privileged(&test) && engine.available(&test)
}

/// Runs cap-trace with `args`.
pub fn cap_trace<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    cap_trace_under(&[], args)
}

/// Runs cap-trace with `args` under a wrapper command (e.g. `setpriv` dropping a capability
/// from the bounding set, which the traced command then lacks).
pub fn cap_trace_under<I, S>(wrapper: &[&str], args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(bin());
            cmd
        }
        None => Command::new(bin()),
    };
    // cargo test points LD_LIBRARY_PATH into root's toolchain directories; a traced command
    // running as another user would probe them and be denied.
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run cap-trace")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cap-trace failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "cap-trace-test-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Traces `command` with `cap-trace run --format json` (plus `extra` options) and returns the
/// profile.
#[track_caller]
pub fn run_profile(extra: &[&str], command: &[&str]) -> serde_json::Value {
    run_profile_under(&[], extra, command)
}

/// [`run_profile`] with cap-trace started under `wrapper`.
#[track_caller]
pub fn run_profile_under(wrapper: &[&str], extra: &[&str], command: &[&str]) -> serde_json::Value {
    let dir = TempDir::new("profile");
    let out_path = dir.join("profile.json");
    let mut args: Vec<String> = vec!["run".into(), "--format".into(), "json".into()];
    args.push("--output".into());
    args.push(out_path.display().to_string());
    args.extend(extra.iter().map(ToString::to_string));
    args.push("--".into());
    args.extend(command.iter().map(ToString::to_string));
    let out = cap_trace_under(wrapper, &args);
    ok(&out);
    let text = std::fs::read_to_string(&out_path).expect("profile written");
    serde_json::from_str(&text).expect("profile is JSON")
}

/// Names of the suggested capabilities of a profile.
pub fn suggested(profile: &serde_json::Value) -> Vec<String> {
    profile["suggestion"]["add"]
        .as_array()
        .expect("suggestion.add")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// What `cap-trace show --format FORMAT` prints for a profile, split into arguments: the
/// flags as a user would paste them into `docker run` or `podman run`.
pub fn printed_flags(profile: &serde_json::Value, format: &str) -> Vec<String> {
    let dir = TempDir::new("flags");
    let path = dir.join("profile.json");
    std::fs::write(&path, profile.to_string()).unwrap();
    let out = cap_trace([
        "show".as_ref(),
        path.as_os_str(),
        "--format".as_ref(),
        format.as_ref(),
    ]);
    let text = ok(&out);
    assert_eq!(text.lines().count(), 1, "one line of flags: {text}");
    text.split_whitespace().map(str::to_owned).collect()
}

/// The verdict entry for one capability.
pub fn verdict<'a>(profile: &'a serde_json::Value, cap: &str) -> Option<&'a serde_json::Value> {
    profile["suggestion"]["capabilities"]
        .as_array()?
        .iter()
        .find(|v| v["cap"] == cap)
}

/// Collects a child's stderr on a thread as it comes, so a test can look at it while the child
/// runs.
pub fn capture_stderr(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::Read as _;
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    stderr
}

/// Waits until captured stderr (see [`capture_stderr`]) says `needle`: a background cap-trace
/// is attached and watching only once it says it is waiting for its containers, which takes
/// seconds on a loaded machine. Panics with what it said after `timeout`.
pub fn wait_for_stderr(
    stderr: &std::sync::Mutex<String>,
    needle: &str,
    timeout: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + timeout;
    while !stderr.lock().unwrap().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{needle}` in {timeout:?}: {}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// How many entries the eBPF map `name` of process `pid` holds (its map descriptors, found in
/// `/proc/PID/fdinfo`, read with `bpftool`), or `None` if it has no such map.
pub fn kernel_map_entries(pid: u32, name: &str) -> Option<usize> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        let is_map = std::fs::read_link(fd.path())
            .is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-map");
        if !is_map {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .map(|v| v.trim().to_owned())
        else {
            continue;
        };
        let show = Command::new("bpftool")
            .args(["--json", "map", "show", "id", &id])
            .output()
            .expect("bpftool (run `cargo xtask setup`)");
        let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap_or_default();
        if shown["name"] != name {
            continue;
        }
        let dump = Command::new("bpftool")
            .args(["--json", "map", "dump", "id", &id])
            .output()
            .expect("bpftool");
        let entries: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap_or_default();
        return Some(entries.as_array().map_or(0, Vec::len));
    }
    None
}

/// This machine's bounding set (the tests' own, as root: what cap-trace can grant).
pub fn host_bounding() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapBnd in /proc/self/status")
}
