//! `cargo xtask vm-test`: the fexit and kprobe backends on real kernels this machine cannot load
//! them on. Boots Debian's 6.1 and 6.12 cloud kernels (no `capability:cap_capable` tracepoint,
//! no BPF task works, but kprobes, fexit and BTF; 6.12 also has the kfunc `bpf_rdonly_cast`) and
//! a 6.19 one (the tracepoint too, and task works, which every backend then uses to follow
//! denied checks' syscalls) in qemu with TCG, from an initramfs holding the release cap-trace,
//! the libraries it needs, busybox and a test script, and reads the verdicts from the serial
//! console.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::setup;
use crate::util::{build_release, is_root, root, run};

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

/// The kernels the VM boots: a Debian suite and the kernel series it carries. 6.1 has neither
/// the tracepoint nor the kfunc `bpf_rdonly_cast` (so the fexit and kprobe backends read kernel
/// words with helper calls); 6.12 has the kfunc but not yet the tracepoint; neither has BPF task
/// works (outcomes on `sys_exit`). 6.19 has all three: every backend follows outcomes by task
/// work there.
const KERNELS: [(&str, &str); 3] = [
    ("bookworm", "6.1.0"),
    ("bookworm-backports", "6.12"),
    ("trixie-backports", "6.19"),
];

/// `apt-get`/`apt-cache` with a private configuration naming only `suite`, so that nothing on
/// the machine changes (signatures are still checked against the system's keyring).
fn apt(tool: &str, suite: &str) -> Result<Command> {
    let dir = work_dir().join("apt").join(suite);
    std::fs::create_dir_all(dir.join("lists/partial"))?;
    let sources = dir.join("sources.list");
    std::fs::write(
        &sources,
        format!("deb http://deb.debian.org/debian {suite} main\n"),
    )?;
    let mut cmd = Command::new(tool);
    cmd.arg("-q")
        .arg(format!("-oDir::Etc::SourceList={}", sources.display()))
        .arg("-oDir::Etc::SourceParts=/nonexistent")
        .arg("-oDir::Cache::pkgcache=")
        .arg("-oDir::Cache::srcpkgcache=")
        .arg(format!(
            "-oDir::State::Lists={}",
            dir.join("lists").display()
        ));
    Ok(cmd)
}

/// Debian's newest cloud kernel of `series` in `suite`, downloaded once: (vmlinuz, version).
fn kernel(suite: &str, series: &str) -> Result<(PathBuf, String)> {
    let dir = work_dir().join(format!("kernel-{series}"));
    if let Some(found) = find_vmlinuz(&dir) {
        return Ok(found);
    }
    run(apt("apt-get", suite)?.arg("update"))?;
    let pattern = format!(
        "^linux-image-{}[.-].*-cloud-amd64$",
        series.replace('.', "\\.")
    );
    let out = apt("apt-cache", suite)?
        .args(["search", "--names-only", &pattern])
        .output()?;
    let mut packages: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    // Newest last: compare the numbers in the names (6.12.9 < 6.12.10).
    packages.sort_by_key(|p| {
        p.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .collect::<Vec<_>>()
    });
    let package = packages
        .pop()
        .with_context(|| format!("no linux-image-{series} cloud kernel in Debian {suite}"))?;
    std::fs::create_dir_all(&dir)?;
    extract(suite, &package, &dir)?;
    if let Some(found) = find_vmlinuz(&dir) {
        return Ok(found);
    }
    // Newer kernels (6.19 in trixie-backports) keep the image itself in linux-binary-*.
    extract(
        suite,
        &package.replacen("linux-image-", "linux-binary-", 1),
        &dir,
    )?;
    find_vmlinuz(&dir).context("no vmlinuz in the kernel package")
}

/// Downloads `package` from `suite` and unpacks it into `dir`.
fn extract(suite: &str, package: &str, dir: &Path) -> Result<()> {
    println!("vm-test: downloading {package} ({suite})");
    run(apt("apt-get", suite)?
        .args(["download", package])
        .current_dir(dir))?;
    let deb = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("the kernel package was not downloaded")?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir))?;
    let _ = std::fs::remove_file(&deb);
    Ok(())
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

pub(crate) fn vm_test() -> Result<()> {
    setup::install(setup::Scope::All)?;
    if !is_root() {
        bail!("vm-test downloads kernel packages with apt: run it as root");
    }
    let binary = build_release()?;
    let image = initramfs(&binary)?;
    let mut failures = Vec::new();
    for (suite, series) in KERNELS {
        let (vmlinuz, version) = kernel(suite, series)?;
        if let Err(e) = boot(&vmlinuz, &version, &image) {
            failures.push(format!("Linux {version}: {e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// Boots one kernel with the test initramfs and reads its verdicts.
fn boot(vmlinuz: &Path, version: &str, image: &Path) -> Result<()> {
    println!("vm-test: booting {version} in qemu (TCG)");
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            // Without cmpxchg16b: with it, Linux 6.12 crashed at random under this qemu's
            // (7.2) TCG (3 boots of 6, in its allocator, with corrupt flags); without it the
            // kernel falls back to an emulation of the instruction and boots every time.
            "-cpu",
            "qemu64,-cx16",
            "-m",
            "1024",
            "-smp",
            "2",
            "-no-reboot",
        ])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(image)
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
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => break,
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
