//! `demo` and `test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Builds the release binary and returns its path.
pub fn build_release() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "--package", "cap-trace"]))?;
    Ok(root().join("target/release/cap-trace"))
}

pub fn demo() -> Result<()> {
    setup::install(setup::Scope::All)?;
    let bin = build_release()?;
    if !is_root() {
        bail!("the demo loads eBPF programs: run `sudo cargo xtask demo`");
    }
    let dir = std::env::temp_dir().join(format!("cap-trace-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("owned-by-root");
    std::fs::write(&file, "demo\n")?;

    println!("\n== 1. A program that changes a file's owner: it needs CHOWN and nothing else");
    run(Command::new(&bin)
        .args(["run", "--explain", "--", "chown", "nobody"])
        .arg(&file))?;

    println!("\n== 2. A program that only allocates memory and execs: it needs nothing");
    println!(
        "   (the kernel asks for SYS_ADMIN without audit on every mmap: probed, not required)"
    );
    run(Command::new(&bin).args(["run", "--", "sh", "-c", "ls / > /dev/null; true"]))?;

    println!("\n== 3. The same as JSON, for machines");
    let json = dir.join("chown.json");
    run(Command::new(&bin)
        .args(["run", "--format", "json", "--output"])
        .arg(&json)
        .args(["--", "chown", "root"])
        .arg(&file))?;
    let text = std::fs::read_to_string(&json)?;
    println!("{}", text.lines().take(25).collect::<Vec<_>>().join("\n"));
    println!(
        "   ... ({} lines in {})",
        text.lines().count(),
        json.display()
    );
    std::fs::remove_dir_all(&dir)?;

    println!("\n== 4. A container: a web server that binds port 80 and drops to nobody");
    println!("   (cap-trace starts first and waits; runc's own set-up is not counted)");
    container_demo(&bin)
}

/// The busybox image the demo and the benchmark run containers from.
pub const DEMO_IMAGE: &str = "localhost/cap-trace-demo:busybox";

/// Limits a container needs here: podman's defaults exceed what some sandboxes allow.
pub const PODMAN_LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=1000:1000",
];

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// Builds the demo image (with `tests/image/build.sh`) unless it exists.
pub fn ensure_demo_image() -> Result<()> {
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

fn container_demo(bin: &Path) -> Result<()> {
    ensure_demo_image()?;
    let name = format!("cap-trace-demo-{}", std::process::id());
    let mut tracer = Command::new(bin)
        .args(["--container", &name, "--wait", "60"])
        .spawn()
        .context("start cap-trace")?;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    run(podman()
        .args(["run", "--rm", "--name", &name])
        .args(PODMAN_LIMITS)
        .args(["--network", "none", DEMO_IMAGE])
        .args(["sh", "-c", "httpd -f -p 80 -u nobody:nogroup & sleep 2"]))?;
    let status = tracer.wait()?;
    if !status.success() {
        bail!("cap-trace failed with {status}");
    }
    Ok(())
}

/// Builds `capbench`, the capability-check workload (target/release/capbench).
pub fn build_capbench() -> Result<()> {
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

pub fn test(extra: &[String]) -> Result<()> {
    setup::install(setup::Scope::All)?;
    // The integration tests run the release binary; build it (and the eBPF object) first so that
    // build output does not interleave with test output.
    run(cargo().args(["build", "--release", "--package", "cap-trace"]))?;
    // The daemon's load test drives capability checks with the benchmark's workload.
    build_capbench()?;
    let mut cmd = cargo();
    cmd.arg("test");
    if !extra.is_empty() {
        cmd.args(extra);
    }
    if is_root() {
        // On a machine that can run them, the kernel and container tests must not skip.
        cmd.env("CAP_TRACE_REQUIRE_ROOT_TESTS", "1");
    } else {
        println!("xtask: not root: the kernel and container tests will be skipped");
    }
    run(&mut cmd)
}
