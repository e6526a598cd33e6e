//! Real containers for the tests: podman with runc, and a busybox image built locally (no
//! registry is reachable from CI).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::TempDir;
pub use crate::background::{Background, profiles};

/// The image every container test uses.
pub const IMAGE: &str = "localhost/cap-trace-test:busybox-2";

/// Options every `podman run` needs on these machines: runc (crun refuses hybrid cgroups),
/// limits this sandbox allows, and no network set-up.
pub const RUN_OPTS: &[&str] = &[
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=1000:1000",
    "--network",
    "none",
];

/// Learning mode: every capability the host grants, no seccomp filter.
pub const LEARNING: &[&str] = &["--cap-add=ALL", "--security-opt", "seccomp=unconfined"];

pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// True when podman can be used; otherwise skips (or fails when skipping is not allowed).
pub fn available(test: &str) -> bool {
    let ok = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok || crate::skip_or_fail(test, "podman is not installed (run `cargo xtask setup`)")
}

/// Builds the test image once (a busybox root with a user, a group, and a file only `nobody`
/// may read), importing it with `podman import`.
pub fn image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // Test binaries run in parallel: serialise the build with a lock file.
        let lock = std::fs::File::create("/tmp/cap-trace-test-image.lock").unwrap();
        // SAFETY: flock on an open file descriptor.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        let exists = podman()
            .args(["image", "exists", IMAGE])
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            build_image();
        }
    });
    IMAGE
}

fn build_image() {
    let script = crate::workspace_root().join("tests/image/build.sh");
    let out = Command::new("sh").arg(script).arg(IMAGE).output().unwrap();
    assert!(
        out.status.success(),
        "building the test image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `podman run --rm --name NAME [opts] IMAGE sh -c SCRIPT`.
pub fn run(name: &str, opts: &[&str], script: &str) -> Output {
    podman()
        .args(["run", "--rm", "--name", name])
        .args(RUN_OPTS)
        .args(opts)
        .arg(image())
        .args(["/bin/sh", "-c", script])
        .output()
        .expect("run podman")
}

/// Removes a container if it exists (a previous failed run).
pub fn remove(name: &str) {
    let _ = podman().args(["rm", "-f", "-t", "0", name]).output();
}

/// A unique container name for a test.
pub fn name(test: &str) -> String {
    format!(
        "ct-{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 100_000
    )
}

/// `podman system service` on a private socket: the engine API (Docker-compatible) that
/// cap-trace names containers through when it runs without privileges. Stopped on drop.
pub struct ApiService {
    child: Child,
    pub socket: PathBuf,
    _dir: TempDir,
}

impl ApiService {
    pub fn start() -> ApiService {
        let dir = TempDir::new("engine-api");
        let socket = dir.join("engine.sock");
        let child = Self::spawn(&socket);
        ApiService {
            child,
            socket,
            _dir: dir,
        }
    }

    fn spawn(socket: &std::path::Path) -> Child {
        let child = podman()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start podman system service");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "podman system service did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Stops the service, as an engine that goes down: its socket answers no more.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts the service again on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.socket);
    }
}

impl Drop for ApiService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
