//! `cargo xtask vm-test`: every backend on real kernels other than this machine's. Boots Debian's
//! cloud kernels ([`MATRIX`]: 5.10 to 6.19, x86_64 and arm64) one after the other in qemu with
//! TCG, from an initramfs holding the static cap-trace of that architecture, busybox and a test
//! script, reads the verdicts from the serial console and prints the kernel matrix.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build::{Arch, build_static};
use crate::debian::{apt, unpack};
use crate::setup;
use crate::util::{is_root, root, run};

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

/// The hooks, in the order `--probe auto` tries them.
const BACKENDS: [&str; 3] = ["tracepoint", "fexit", "kprobe"];

/// One kernel of the matrix, and what cap-trace must do on it.
pub(crate) struct Kernel {
    pub(crate) arch: Arch,
    /// The Debian suite that carries the kernel, and its series: the newest
    /// `linux-image-<series>...-cloud-<arch>` there is booted.
    pub(crate) suite: &'static str,
    pub(crate) series: &'static str,
    /// Who runs it (for the README).
    pub(crate) distribution: &'static str,
    /// The backends that must load and pass every check, in `auto`'s order: auto must pick the
    /// first. The others must fail with a one-line error and exit 3.
    pub(crate) works: &'static [&'static str],
    /// Why a backend is missing here, or what this kernel covers (for the README).
    pub(crate) note: &'static str,
}

/// The kernel × architecture matrix `vm-test` boots, in order. The README's backend table is
/// rendered from it ([`matrix_markdown`]; a test holds the two together).
pub(crate) const MATRIX: &[Kernel] = &[
    Kernel {
        arch: Arch::X86_64,
        suite: "bullseye",
        series: "5.10",
        distribution: "Debian 11",
        works: &["fexit", "kprobe"],
        note: "without the helpers of 5.11 and 5.15 (`helper_reads`), with preallocated maps",
    },
    Kernel {
        arch: Arch::X86_64,
        suite: "bookworm",
        series: "6.1",
        distribution: "Debian 12",
        works: &["fexit", "kprobe"],
        note: "no kfunc `bpf_rdonly_cast`: kernel words are read by helper calls",
    },
    Kernel {
        arch: Arch::X86_64,
        suite: "trixie",
        series: "6.12",
        distribution: "Debian 13",
        works: &["fexit", "kprobe"],
        note: "no tracepoint yet (it came in 6.14)",
    },
    Kernel {
        arch: Arch::X86_64,
        suite: "trixie-backports",
        series: "6.19",
        distribution: "Debian 13 backports",
        works: &["tracepoint", "fexit", "kprobe"],
        note: "call sites from its `/proc/kallsyms`; outcomes by BPF task work on every backend",
    },
    Kernel {
        arch: Arch::Aarch64,
        suite: "bullseye",
        series: "5.10",
        distribution: "Debian 11",
        works: &["kprobe"],
        note: "fexit cannot attach: no BPF trampolines on arm64 before 6.0",
    },
    Kernel {
        arch: Arch::Aarch64,
        suite: "bookworm",
        series: "6.1",
        distribution: "Debian 12",
        works: &["kprobe"],
        note: "fexit cannot attach: built without ftrace direct calls",
    },
    Kernel {
        arch: Arch::Aarch64,
        suite: "trixie-backports",
        series: "6.18",
        distribution: "Debian 13 backports",
        works: &["tracepoint", "fexit", "kprobe"],
        note: "the same on arm64: call sites through the frame-pointer unwinder, outcomes by task work",
    },
];

impl Kernel {
    /// `amd64:5.10`, as `--only` names it.
    fn key(&self) -> String {
        format!("{}:{}", self.arch.debian(), self.series)
    }

    fn auto(&self) -> &'static str {
        self.works[0]
    }
}

/// The README's backend table: for each kernel of the matrix, which backends work and what
/// `--probe auto` picks.
pub(crate) fn matrix_markdown() -> String {
    let mut out = String::from(
        "| kernel (Debian cloud) | arch | `tracepoint` | `fexit` | `kprobe` | `auto` picks | notes |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for k in MATRIX {
        let cells: Vec<&str> = BACKENDS
            .iter()
            .map(|b| if k.works.contains(b) { "yes" } else { "–" })
            .collect();
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | `{}` | {} |",
            k.series,
            k.distribution,
            k.arch.debian(),
            cells.join(" | "),
            k.auto(),
            k.note
        );
    }
    out
}

fn work_dir() -> PathBuf {
    root().join("target/vm")
}

/// Debian's newest cloud kernel of `k`'s series, downloaded once: (vmlinuz, version).
fn kernel(k: &Kernel) -> Result<(PathBuf, String)> {
    let dir = work_dir().join(format!("kernel-{}-{}", k.arch.debian(), k.series));
    if let Some(found) = find_vmlinuz(&dir) {
        return Ok(found);
    }
    run(apt("apt-get", k.suite)?.arg("update")).with_context(|| {
        format!(
            "Debian {} cannot be reached (a suite that moved to archive.debian.org goes out of the matrix)",
            k.suite
        )
    })?;
    // From 6.19 on, `linux-image-*` is a metapackage and the kernel is in `linux-binary-*`.
    let pattern = format!(
        "^linux-(image|binary)-{}[.-].*-cloud-{}$",
        k.series.replace('.', "\\."),
        k.arch.debian()
    );
    let out = apt("apt-cache", k.suite)?
        .args(["search", "--names-only", &pattern])
        .output()?;
    let mut packages: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    // Newest last: compare the numbers in the names (6.12.9 < 6.12.10), the binary package
    // after its metapackage.
    packages.sort_by_key(|p| {
        let numbers: Vec<u64> = p
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        (numbers, p.starts_with("linux-binary-"))
    });
    let package = packages.pop().with_context(|| {
        format!(
            "no linux-image-{} cloud kernel for {} in Debian {}",
            k.series,
            k.arch.debian(),
            k.suite
        )
    })?;
    println!(
        "vm-test: downloading {package} ({} {})",
        k.suite,
        k.arch.debian()
    );
    unpack(k.suite, &format!("{package}:{}", k.arch.debian()), &dir)?;
    find_vmlinuz(&dir).context("no vmlinuz in the kernel package")
}

/// The kernel image in an unpacked package: `boot/vmlinuz-<version>`, or
/// `usr/lib/modules/<version>/vmlinuz` (`linux-binary-*`, from 6.19 on).
fn find_vmlinuz(dir: &Path) -> Option<(PathBuf, String)> {
    let boot = std::fs::read_dir(dir.join("boot"))
        .ok()
        .and_then(|entries| {
            entries.flatten().find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let version = name.strip_prefix("vmlinuz-")?.to_owned();
                Some((e.path(), version))
            })
        });
    boot.or_else(|| {
        std::fs::read_dir(dir.join("usr/lib/modules"))
            .ok()?
            .flatten()
            .find_map(|e| {
                let image = e.path().join("vmlinuz");
                image
                    .exists()
                    .then(|| (image, e.file_name().to_string_lossy().into_owned()))
            })
    })
}

/// Debian's static busybox for `arch`, downloaded once.
fn busybox(arch: Arch) -> Result<PathBuf> {
    let dir = work_dir().join(format!("busybox-{}", arch.debian()));
    // /bin/busybox until bookworm, /usr/bin/busybox in trixie's merged /usr.
    let found = || {
        ["usr/bin/busybox", "bin/busybox"]
            .map(|p| dir.join(p))
            .into_iter()
            .find(|p| p.exists())
    };
    if let Some(binary) = found() {
        return Ok(binary);
    }
    run(apt("apt-get", "trixie")?.arg("update"))?;
    unpack("trixie", &format!("busybox-static:{}", arch.debian()), &dir)?;
    found().context("no busybox in busybox-static")
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.parent().unwrap())?;
    std::fs::copy(from, to).with_context(|| format!("copy {}", from.display()))?;
    Ok(())
}

/// Builds the initramfs of `arch`: busybox, the static cap-trace, /init and the tests.
fn initramfs(arch: Arch, cap_trace: &Path) -> Result<PathBuf> {
    let staging = work_dir().join(format!("initramfs-{}", arch.debian()));
    let _ = std::fs::remove_dir_all(&staging);
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "run"] {
        std::fs::create_dir_all(staging.join(d))?;
    }
    copy(&busybox(arch)?, &staging.join("bin/busybox"))?;
    copy(cap_trace, &staging.join("bin/cap-trace"))?;
    std::fs::write(
        staging.join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    std::fs::write(staging.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    std::fs::write(staging.join("init"), INIT)?;
    std::fs::write(staging.join("tests.sh"), TESTS)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(staging.join("init"), std::fs::Permissions::from_mode(0o755))?;
    // Only root may write there; the tests' unprivileged user works in /tmp.
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))?;
    let image = work_dir().join(format!("initramfs-{}.cpio.gz", arch.debian()));
    run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find . | cpio --quiet -o -H newc -R 0:0 | gzip -1 > {}",
            image.display()
        ))
        .current_dir(&staging))?;
    Ok(image)
}

/// The kernels `--only` picks (all without it).
fn selected(only: &[String]) -> Result<Vec<&'static Kernel>> {
    if let Some(unknown) = only.iter().find(|o| !MATRIX.iter().any(|k| k.key() == **o)) {
        let known: Vec<String> = MATRIX.iter().map(Kernel::key).collect();
        bail!(
            "no kernel {unknown} in the matrix (known: {})",
            known.join(", ")
        );
    }
    Ok(MATRIX
        .iter()
        .filter(|k| only.is_empty() || only.contains(&k.key()))
        .collect())
}

pub(crate) fn vm_test(only: &[String]) -> Result<()> {
    let kernels = selected(only)?;
    setup::install(setup::Scope::All)?;
    if !is_root() {
        bail!("vm-test downloads kernel packages with apt: run it as root");
    }
    let started = Instant::now();
    let mut images = Vec::new();
    for arch in Arch::ALL {
        if kernels.iter().any(|k| k.arch == arch) {
            let binary = build_static(arch)?;
            images.push((arch, initramfs(arch, &binary)?));
        }
    }
    let built = started.elapsed();
    let mut results = Vec::new();
    for k in kernels {
        let image = &images.iter().find(|(a, _)| *a == k.arch).unwrap().1;
        let result = kernel(k).and_then(|(vmlinuz, version)| boot(k, &vmlinuz, &version, image));
        results.push((k, result));
    }
    println!("\n{}", matrix_report(&results));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
    let table = matrix_markdown();
    if !readme.contains(&table) {
        println!("vm-test: README.md's backend table is not this matrix; it should read:\n{table}");
    }
    println!(
        "vm-test: {:.0} s in all ({:.0} s building, {:.0} s in VMs)",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64(),
        started.elapsed().saturating_sub(built).as_secs_f64()
    );
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(k, r)| match r {
            Ok(run) if run.failed.is_empty() && run.done && !run.passed.is_empty() => None,
            Ok(run) => Some(format!(
                "{} {}: {}",
                k.arch.debian(),
                run.version,
                run.problem()
            )),
            Err(e) => Some(format!("{}: {e:#}", k.key())),
        })
        .collect();
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// What one VM reported.
struct VmRun {
    version: String,
    passed: Vec<String>,
    failed: Vec<String>,
    /// The script ran to its end.
    done: bool,
    booted: Option<Duration>,
    took: Duration,
}

impl VmRun {
    fn problem(&self) -> String {
        if !self.done {
            format!(
                "the VM did not finish its tests within {} s",
                TIMEOUT.as_secs()
            )
        } else if self.passed.is_empty() {
            "no test ran in the VM".into()
        } else {
            format!("failed in the VM: {}", self.failed.join("; "))
        }
    }

    /// How the checks of one backend (`fexit: ...`) went: `pass`, `FAIL`, or `absent` for a
    /// backend the kernel must refuse and did (exit 3, one line).
    fn cell(&self, backend: &str, works: bool) -> &'static str {
        let prefix = format!("{backend}: ");
        let mine = |names: &[String]| names.iter().filter(|n| n.starts_with(&prefix)).count();
        match (mine(&self.failed), mine(&self.passed), works) {
            (0, 0, _) => "not run",
            (0, _, true) => "pass",
            (0, _, false) => "absent",
            _ => "FAIL",
        }
    }
}

/// The matrix as run: per kernel, each backend's verdict, what auto picked, the checks and the
/// time the VM took.
fn matrix_report(results: &[(&Kernel, Result<VmRun>)]) -> String {
    let mut rows = vec![[
        "kernel".to_owned(),
        "arch".to_owned(),
        "tracepoint".to_owned(),
        "fexit".to_owned(),
        "kprobe".to_owned(),
        "auto".to_owned(),
        "checks".to_owned(),
        "time".to_owned(),
    ]];
    for (k, result) in results {
        let row = match result {
            Ok(run) => {
                let [tp, fexit, kprobe] = BACKENDS.map(|b| run.cell(b, k.works.contains(&b)));
                let auto = match run.cell("auto", true) {
                    "pass" => format!("picks {}", k.auto()),
                    other => other.to_owned(),
                };
                [
                    run.version.clone(),
                    k.arch.debian().to_owned(),
                    tp.to_owned(),
                    fexit.to_owned(),
                    kprobe.to_owned(),
                    auto,
                    format!(
                        "{}/{}",
                        run.passed.len(),
                        run.passed.len() + run.failed.len()
                    ),
                    format!("{:.0} s", run.took.as_secs_f64()),
                ]
            }
            Err(_) => [
                format!("{} (not booted)", k.series),
                k.arch.debian().to_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        };
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::from("vm-test: the kernel matrix\n");
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

/// The qemu command line that boots `k`'s architecture.
fn qemu(arch: Arch) -> Command {
    let mut cmd;
    match arch {
        Arch::X86_64 => {
            cmd = Command::new("qemu-system-x86_64");
            // Without cmpxchg16b: with it, Linux 6.12 crashed at random under this qemu's
            // (7.2) TCG (3 boots of 6, in its allocator, with corrupt flags); without it the
            // kernel falls back to an emulation of the instruction and boots every time.
            // One host thread for both vCPUs: with a thread each, a vCPU may run code the other
            // has just patched (the kernel's int3-based live patching of its own text) from a
            // stale translation, and Linux 6.12 took an `int3` Oops and panicked (once at boot,
            // in `sched_clock_cpu`; once while cap-trace attached).
            cmd.args(["-accel", "tcg,thread=single", "-cpu", "qemu64,-cx16"]);
        }
        Arch::Aarch64 => {
            cmd = Command::new("qemu-system-aarch64");
            // The implementation-defined pointer authentication is far cheaper to emulate
            // than the architected one; the kernel (an uncompressed Image) boots directly.
            cmd.args(["-M", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"]);
        }
    }
    cmd.args(["-m", "1024", "-smp", "2", "-no-reboot"])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
    cmd
}

/// Boots one kernel with the test initramfs of its architecture and reads its verdicts.
fn boot(k: &Kernel, vmlinuz: &Path, version: &str, image: &Path) -> Result<VmRun> {
    println!(
        "vm-test: booting {version} ({}) in qemu (TCG)",
        k.arch.debian()
    );
    let console = match k.arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    };
    let absent: Vec<&str> = BACKENDS
        .into_iter()
        .filter(|b| !k.works.contains(b))
        .collect();
    // Parameters the kernel does not know become /init's environment.
    let append = format!(
        "console={console} panic=-1 quiet loglevel=3 VMTEST_WORKS={} VMTEST_ABSENT={} VMTEST_ARCH={}",
        k.works.join(","),
        if absent.is_empty() {
            "none".to_owned()
        } else {
            absent.join(",")
        },
        k.arch.name()
    );
    let started = Instant::now();
    let mut qemu = qemu(k.arch)
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(image)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start qemu")?;
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
    let mut run = VmRun {
        version: version.to_owned(),
        passed: Vec::new(),
        failed: Vec::new(),
        done: false,
        booted: None,
        took: Duration::ZERO,
    };
    while !run.done {
        let left = TIMEOUT.saturating_sub(started.elapsed());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let line = line.trim_end_matches('\r').to_owned();
        println!("vm | {line}");
        if let Some(name) = line.strip_prefix("VMTEST PASS ") {
            run.passed.push(name.to_owned());
        } else if let Some(name) = line.strip_prefix("VMTEST FAIL ") {
            run.failed.push(name.to_owned());
        } else if line.starts_with("VMTEST BOOTED") {
            run.booted = Some(started.elapsed());
        } else if line == "VMTEST DONE" {
            run.done = true;
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    run.took = started.elapsed();
    println!(
        "vm-test: Linux {version} ({}): {} passed, {} failed{}, {:.0} s in all",
        k.arch.debian(),
        run.passed.len(),
        run.failed.len(),
        run.booted
            .map(|b| format!(", booted in {:.1} s", b.as_secs_f64()))
            .unwrap_or_default(),
        run.took.as_secs_f64()
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_the_matrix() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        let table = matrix_markdown();
        assert!(
            readme.contains(&table),
            "README.md's backend table differs from vm-test's matrix; it should read:\n{table}"
        );
    }

    #[test]
    fn every_kernel_has_a_backend_and_a_distinct_name() {
        for k in MATRIX {
            assert!(!k.works.is_empty(), "{}", k.key());
            assert!(k.works.iter().all(|b| BACKENDS.contains(b)), "{}", k.key());
            // In auto's order.
            let order: Vec<usize> = k
                .works
                .iter()
                .map(|b| BACKENDS.iter().position(|x| x == b).unwrap())
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", k.key());
            assert_eq!(MATRIX.iter().filter(|o| o.key() == k.key()).count(), 1);
        }
        assert!(selected(&["amd64:9.9".into()]).is_err());
        assert_eq!(selected(&["arm64:6.18".into()]).unwrap().len(), 1);
    }

    #[test]
    fn cells_tell_pass_fail_and_absent() {
        let run = VmRun {
            version: "6.1.0-50-cloud-arm64".into(),
            passed: vec![
                "kprobe: chown suggests CHOWN".into(),
                "fexit: exits 3 on this kernel".into(),
                "auto: the backend used is kprobe".into(),
            ],
            failed: vec!["tracepoint: one line: x".into()],
            done: true,
            booted: None,
            took: Duration::ZERO,
        };
        assert_eq!(run.cell("kprobe", true), "pass");
        assert_eq!(run.cell("fexit", false), "absent");
        assert_eq!(run.cell("tracepoint", false), "FAIL");
        assert_eq!(run.cell("lsm", true), "not run");
    }
}
