//! The container engines the tests run the same cases against: podman (runc) and the real
//! Docker engine (a private dockerd, see [`crate::docker`]).
//!
//! ```ignore
//! for engine in Engine::ALL {
//!     if !engine.available("my_test") { continue; }
//!     let out = engine.run(&name("x"), &engine.learning(), "chown nobody /tmp");
//! }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::{docker, podman, skip_or_fail};

/// The image every container test uses, in every engine.
pub const IMAGE: &str = podman::IMAGE;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// podman 4.3 with runc, the machine's own storage.
    Podman,
    /// Docker 20.10 (Debian's docker.io): a private dockerd per test process.
    Docker,
}

/// Capability names by number (the kernel's order), for the flags the tests compute.
const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The highest capability Docker 20.10's `ALL` includes (AUDIT_READ): it leaves out PERFMON,
/// BPF and CHECKPOINT_RESTORE.
const DOCKER_20_LAST_CAP: usize = 37;

/// The `CapEff:` line of `/proc/PID/status` for a process holding exactly `caps`.
pub fn cap_eff_line(caps: &[String]) -> String {
    let mask = caps.iter().fold(0u64, |mask, cap| {
        let number = CAP_NAMES
            .iter()
            .position(|n| n == cap)
            .unwrap_or_else(|| panic!("unknown capability {cap}"));
        mask | 1 << number
    });
    format!("CapEff:\t{mask:016x}")
}

/// `--cap-drop=ALL` and one `--cap-add` per capability, as cap-trace prints them.
pub fn flags_for(caps: &[String]) -> Vec<String> {
    std::iter::once("--cap-drop=ALL".to_owned())
        .chain(caps.iter().map(|c| format!("--cap-add={c}")))
        .collect()
}

/// Capabilities the host's bounding set lacks (no container here can hold them).
pub fn host_lacks() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bounding & (1 << i) == 0)
        .map(|(_, n)| *n)
        .collect()
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Podman, Engine::Docker];

    /// `podman` or `docker`: what cap-trace reports as the profile's engine.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    /// True when the engine can be used (for Docker: dockerd started); otherwise skips, or
    /// fails when `CAP_TRACE_REQUIRE_ROOT_TESTS=1` forbids skipping.
    pub fn available(self, test: &str) -> bool {
        match self {
            Engine::Podman => podman::available(test),
            Engine::Docker => {
                if !docker::installed() {
                    return skip_or_fail(
                        test,
                        "Docker (docker.io, containerd) is not installed (run `cargo xtask setup`)",
                    );
                }
                match docker::shared() {
                    Ok(_) => true,
                    Err(e) => skip_or_fail(test, &format!("the test Docker engine: {e}")),
                }
            }
        }
    }

    /// The engine's command-line tool, talking to the engine the tests use.
    pub fn cli(self) -> Command {
        match self {
            Engine::Podman => podman::podman(),
            Engine::Docker => dockerd().docker(),
        }
    }

    /// Options every `run` needs on these machines: no network set-up, and for podman the
    /// runtime limits this sandbox allows.
    pub fn run_opts(self) -> &'static [&'static str] {
        match self {
            Engine::Podman => podman::RUN_OPTS,
            Engine::Docker => &["--network", "none"],
        }
    }

    /// Learning mode: every capability the engine can grant on this host, no seccomp filter.
    /// Docker refuses `--cap-add=ALL` alone where the host's bounding set lacks a capability
    /// its `ALL` includes ("unable to apply caps"): those are dropped again.
    pub fn learning(self) -> Vec<String> {
        let mut flags = vec!["--cap-add=ALL".to_owned()];
        if self == Engine::Docker {
            for cap in host_lacks() {
                let number = CAP_NAMES
                    .iter()
                    .position(|n| *n == cap)
                    .unwrap_or(usize::MAX);
                if number <= DOCKER_20_LAST_CAP {
                    flags.push(format!("--cap-drop={cap}"));
                }
            }
        }
        flags.extend(["--security-opt".to_owned(), "seccomp=unconfined".to_owned()]);
        flags
    }

    /// `net.ipv4.ip_unprivileged_port_start` in the engine's containers: Docker sets it to 0,
    /// podman 4.3 leaves the kernel's 1024.
    pub fn unprivileged_port_start(self) -> u32 {
        match self {
            Engine::Podman => 1024,
            Engine::Docker => 0,
        }
    }

    /// The test image, imported into this engine once.
    pub fn image(self) -> &'static str {
        match self {
            Engine::Podman => podman::image(),
            Engine::Docker => {
                static DONE: OnceLock<()> = OnceLock::new();
                DONE.get_or_init(|| {
                    let dir = crate::TempDir::new("rootfs");
                    let tar = dir.join("rootfs.tar");
                    build_rootfs(&tar);
                    self.import(&tar, IMAGE);
                });
                IMAGE
            }
        }
    }

    /// Imports a root file system tarball as an image (`PATH=/bin`).
    pub fn import(self, tar: &Path, image: &str) {
        self.import_with_path(tar, image, "/bin");
    }

    /// Imports a root file system tarball as an image whose `PATH` is `path`.
    pub fn import_with_path(self, tar: &Path, image: &str, path: &str) {
        let change = match self {
            Engine::Podman => format!("ENV=PATH={path}"),
            Engine::Docker => format!("ENV PATH={path}"),
        };
        let out = self
            .cli()
            .args(["import", "--change", &change])
            .arg(tar)
            .arg(image)
            .output()
            .expect("run the engine's import");
        assert!(
            out.status.success(),
            "{} import: {}",
            self.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `run --rm --name NAME [run_opts] [opts] IMAGE /bin/sh -c SCRIPT`, to the end.
    pub fn run(self, name: &str, opts: &[&str], script: &str) -> Output {
        self.run_as("--rm", name, opts, script)
    }

    /// `run -d --name NAME [run_opts] [opts] IMAGE /bin/sh -c SCRIPT`: returns once started.
    pub fn run_detached(self, name: &str, opts: &[&str], script: &str) -> Output {
        self.run_as("-d", name, opts, script)
    }

    fn run_as(self, mode: &str, name: &str, opts: &[&str], script: &str) -> Output {
        self.cli()
            .args(["run", mode, "--name", name])
            .args(self.run_opts())
            .args(opts)
            .arg(self.image())
            .args(["/bin/sh", "-c", script])
            .output()
            .expect("run the engine")
    }

    /// `exec NAME /bin/sh -c SCRIPT`.
    pub fn exec(self, name: &str, script: &str) -> Output {
        self.cli()
            .args(["exec", name, "/bin/sh", "-c", script])
            .output()
            .expect("run the engine")
    }

    /// Makes file `path` in running container `name`, to let its script go on. A container
    /// that exits (and is removed, `--rm`) as soon as it sees the file can be gone before the
    /// engine's exec has done its own bookkeeping, which the engine then reports as an error
    /// about a container that does not exist or was removed: the file was made, so that is not
    /// a failure (what the container did next is for the caller to check).
    pub fn touch_in(self, name: &str, path: &str) {
        let out = self.exec(name, &format!("touch {path}"));
        let said = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
        let gone = said.contains("no such container") || said.contains("already been removed");
        assert!(out.status.success() || gone, "{out:?}");
    }

    /// A guard that removes container `name` when dropped, also when the test fails half-way
    /// (a container waiting for a file the test never made would otherwise run for ever).
    pub fn remove_on_drop(self, name: &str) -> Removal {
        Removal {
            engine: self,
            name: name.to_owned(),
        }
    }

    /// Removes a container if it exists, stopping it at once.
    pub fn remove(self, name: &str) {
        let mut cmd = self.cli();
        cmd.args(["rm", "-f"]);
        if self == Engine::Podman {
            cmd.args(["-t", "0"]);
        }
        let _ = cmd.arg(name).output();
    }

    /// The engine's description of a container (`inspect`), if it knows it.
    pub fn inspect(self, name: &str) -> Option<Value> {
        let out = self
            .cli()
            .args(["inspect", "--type", "container", name])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?.first().cloned()
    }

    /// Environment under which cap-trace finds this engine's API by itself: `DOCKER_HOST` for
    /// the private Docker engine, nothing for podman (its CLI).
    pub fn cap_trace_env(self) -> Vec<(String, String)> {
        match self {
            Engine::Podman => Vec::new(),
            Engine::Docker => vec![("DOCKER_HOST".into(), dockerd().host())],
        }
    }

    /// The compose tool for this engine, in `dir`: podman-compose 1.6 (PyPI) with runc, or
    /// Debian's docker-compose 1.29 against the private Docker engine.
    pub fn compose(self, dir: &Path) -> Command {
        match self {
            Engine::Podman => {
                let conf = dir.join("containers.conf");
                std::fs::write(&conf, "[engine]\nruntime = \"runc\"\n").unwrap();
                let mut cmd = Command::new(python_tool("podman-compose"));
                cmd.current_dir(dir).env("CONTAINERS_CONF", conf);
                cmd
            }
            Engine::Docker => {
                let mut cmd = Command::new("docker-compose");
                cmd.current_dir(dir).env("DOCKER_HOST", dockerd().host());
                cmd
            }
        }
    }
}

/// Removes its container when dropped: see [`Engine::remove_on_drop`].
pub struct Removal {
    engine: Engine,
    name: String,
}

impl Drop for Removal {
    fn drop(&mut self) {
        self.engine.remove(&self.name);
    }
}

/// The private Docker engine (started by [`Engine::available`]).
fn dockerd() -> &'static docker::Dockerd {
    docker::shared().unwrap_or_else(|e| panic!("the test Docker engine: {e}"))
}

/// A tool from the Python virtual environment `cargo xtask setup` makes.
pub fn python_tool(name: &str) -> PathBuf {
    let path = crate::workspace_root()
        .join("target/pytools/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask setup`",
        path.display()
    );
    path
}

/// Writes the test image's root file system as a tarball.
pub fn build_rootfs(tar: &Path) {
    let script = crate::workspace_root().join("tests/image/build.sh");
    let out = Command::new("sh")
        .arg(script)
        .arg("--rootfs")
        .arg(tar)
        .output()
        .expect("run tests/image/build.sh");
    assert!(
        out.status.success(),
        "building the test image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
