//! `cargo xtask vm-test`: the fexit and kprobe backends on a real older kernel. Boots Debian's
//! 6.1 cloud kernel (no `capability:cap_capable` tracepoint, but kprobes, fexit and BTF) in qemu
//! with TCG, from an initramfs holding the release cap-trace, the libraries it needs, busybox
//! and a test script, and reads the verdicts from the serial console.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::setup;
use crate::tasks::{build_release, is_root, root, run};

const TIMEOUT: Duration = Duration::from_secs(900);

/// The test script run inside the VM; every verdict is a `VMTEST PASS|FAIL name` line.
const TESTS: &str = include_str!("vm-tests.sh");

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 none /sys/fs/cgroup
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
echo "VMTEST BOOTED $(uname -r)"
sh /tests.sh
echo "VMTEST DONE"
poweroff -f
"#;

fn work_dir() -> PathBuf {
    root().join("target/vm")
}

/// Debian's current 6.1 cloud kernel, downloaded once: returns (vmlinuz, version).
fn kernel() -> Result<(PathBuf, String)> {
    let dir = work_dir().join("kernel");
    if let Some(found) = find_vmlinuz(&dir) {
        return Ok(found);
    }
    std::fs::create_dir_all(work_dir())?;
    let package = || -> Option<String> {
        let out = Command::new("apt-cache")
            .args(["depends", "linux-image-cloud-amd64"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("Depends: linux-image-6.1"))
            .map(|rest| format!("linux-image-6.1{rest}"))
    };
    let package = match package() {
        Some(p) => p,
        None => {
            run(Command::new("apt-get").args(["update", "-q"]))?;
            package().context("no linux-image-6.1 cloud kernel in the Debian archive")?
        }
    };
    println!("vm-test: downloading {package}");
    run(Command::new("apt-get")
        .args(["download", "-q", &package])
        .current_dir(work_dir()))?;
    let deb = std::fs::read_dir(work_dir())?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with(&package) && n.to_string_lossy().ends_with(".deb")
            })
        })
        .context("the kernel package was not downloaded")?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    let _ = std::fs::remove_file(&deb);
    find_vmlinuz(&dir).context("no vmlinuz in the kernel package")
}

fn find_vmlinuz(dir: &Path) -> Option<(PathBuf, String)> {
    let boot = dir.join("boot");
    std::fs::read_dir(&boot).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let version = name.strip_prefix("vmlinuz-")?.to_owned();
        Some((e.path(), version))
    })
}

/// Shared libraries a binary needs, from ldd.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output()?;
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.parent().unwrap())?;
    std::fs::copy(from, to).with_context(|| format!("copy {}", from.display()))?;
    Ok(())
}

/// Builds the initramfs: busybox, cap-trace and its libraries, /init and the tests.
fn initramfs(cap_trace: &Path) -> Result<PathBuf> {
    let staging = work_dir().join("initramfs");
    let _ = std::fs::remove_dir_all(&staging);
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "run"] {
        std::fs::create_dir_all(staging.join(d))?;
    }
    copy(Path::new("/bin/busybox"), &staging.join("bin/busybox"))?;
    copy(cap_trace, &staging.join("bin/cap-trace"))?;
    for lib in libraries(cap_trace)? {
        copy(&lib, &staging.join(lib.strip_prefix("/").unwrap()))?;
    }
    std::fs::write(
        staging.join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    std::fs::write(staging.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    std::fs::write(staging.join("init"), INIT)?;
    std::fs::write(staging.join("tests.sh"), TESTS)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(staging.join("init"), std::fs::Permissions::from_mode(0o755))?;
    let image = work_dir().join("initramfs.cpio.gz");
    run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find . | cpio --quiet -o -H newc -R 0:0 | gzip -1 > {}",
            image.display()
        ))
        .current_dir(&staging))?;
    Ok(image)
}

pub fn vm_test() -> Result<()> {
    setup::install(setup::Scope::All)?;
    if !is_root() {
        bail!("vm-test downloads a kernel package with apt: run it as root");
    }
    let binary = build_release()?;
    let (vmlinuz, version) = kernel()?;
    let image = initramfs(&binary)?;
    println!("vm-test: booting {version} in qemu (TCG)");
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1024", "-smp", "2", "-no-reboot"])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&image)
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start qemu-system-x86_64")?;
    let stdout = qemu.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut done = false;
    let mut booted = None;
    loop {
        let left = TIMEOUT.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_owned();
                println!("vm | {line}");
                if let Some(name) = line.strip_prefix("VMTEST PASS ") {
                    passed.push(name.to_owned());
                } else if let Some(name) = line.strip_prefix("VMTEST FAIL ") {
                    failed.push(name.to_owned());
                } else if line.starts_with("VMTEST BOOTED") {
                    booted = Some(started.elapsed());
                } else if line == "VMTEST DONE" {
                    done = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if done {
            break;
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    println!(
        "vm-test: Linux {version}: {} passed, {} failed{}, {:.0} s in all",
        passed.len(),
        failed.len(),
        booted
            .map(|b| format!(", booted in {:.1} s", b.as_secs_f64()))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    if !done {
        bail!(
            "the VM did not finish its tests within {} s",
            TIMEOUT.as_secs()
        );
    }
    if passed.is_empty() {
        bail!("no test ran in the VM");
    }
    if !failed.is_empty() {
        bail!("failed in the VM: {}", failed.join("; "));
    }
    Ok(())
}
