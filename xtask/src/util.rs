//! What the tasks share: the workspace root, running commands, building the release binary
//! and the benchmark's workload, the demo's container image.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Builds the release binary and returns its path.
pub(crate) fn build_release() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--package", "cap-trace"]))?;
    Ok(root().join("target/release/cap-trace"))
}

/// The busybox image the demo and the benchmark run containers from.
pub(crate) const DEMO_IMAGE: &str = "localhost/cap-trace-demo:busybox";

/// Limits a container needs here: podman's defaults exceed what some sandboxes allow.
pub(crate) const PODMAN_LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=1000:1000",
];

pub(crate) fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// Builds the demo image (with `tests/image/build.sh`) unless it exists.
pub(crate) fn ensure_demo_image() -> Result<()> {
    let exists = podman()
        .args(["image", "exists", DEMO_IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run(Command::new("sh")
            .arg(root().join("tests/image/build.sh"))
            .arg(DEMO_IMAGE))?;
    }
    Ok(())
}

/// Builds `capbench`, the capability-check workload (target/release/capbench).
pub(crate) fn build_capbench() -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--quiet",
        "--package",
        "xtask",
        "--bin",
        "capbench",
    ]))
}
