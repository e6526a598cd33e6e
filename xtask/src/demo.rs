//! `cargo xtask demo`: set up, build, and trace real workloads (a command, then a container).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup;
use crate::util::{
    DEMO_IMAGE, PODMAN_LIMITS, build_release, ensure_demo_image, is_root, podman, run,
};

pub(crate) fn demo() -> Result<()> {
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
