//! `cargo xtask build`: cap-trace as one static binary per architecture (musl), the file a user
//! installs. It needs no library on the target machine, so the same file runs on Debian 11 and
//! Amazon Linux 2 (whose glibc is older than the build machine's) as on the newest
//! distributions. Each binary embeds the eBPF object built for its architecture (aya-build
//! passes `bpf_target_arch`, which decides where kprobe arguments are read from).

use std::path::PathBuf;

use anyhow::Result;

use crate::setup;
use crate::util::{cargo, root, run};

/// The architectures cap-trace is built and tested for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub(crate) const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture this machine runs.
    pub(crate) fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// The name `--target` takes and the kernel's (`uname -m`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name for it (package architectures, kernel flavours).
    pub(crate) fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The Rust target of the static binary.
    pub(crate) fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The C compiler that links for it when it is not this machine's architecture (Rust
    /// brings musl's C library and start files itself).
    fn cross_linker(self) -> Option<&'static str> {
        (self != Arch::host()).then_some(match self {
            Arch::X86_64 => "x86_64-linux-gnu-gcc",
            Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        })
    }

    /// The Debian package that provides [`Arch::cross_linker`].
    pub(crate) fn cross_linker_package(self) -> Option<&'static str> {
        (self != Arch::host()).then_some(match self {
            Arch::X86_64 => "gcc-x86-64-linux-gnu",
            Arch::Aarch64 => "gcc-aarch64-linux-gnu",
        })
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(format!(
                "unknown architecture `{other}` (expected x86_64 or aarch64)"
            )),
        }
    }
}

/// Builds the static release binary for `arch` and returns its path.
pub(crate) fn build_static(arch: Arch) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--package", "cap-trace", "--target"])
        .arg(arch.triple());
    if let Some(linker) = arch.cross_linker() {
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            arch.triple().to_uppercase().replace('-', "_")
        );
        cmd.env(var, linker);
    }
    run(&mut cmd)?;
    Ok(root()
        .join("target")
        .join(arch.triple())
        .join("release/cap-trace"))
}

/// `cargo xtask build [--target ARCH]...`: sets up and builds each static binary.
pub(crate) fn build(targets: &[Arch]) -> Result<()> {
    let targets = if targets.is_empty() {
        vec![Arch::host()]
    } else {
        targets.to_vec()
    };
    setup::install_for(setup::Scope::Build, &targets)?;
    for &arch in &targets {
        let bin = build_static(arch)?;
        println!("build: {} ({}, static)", bin.display(), arch.name());
    }
    Ok(())
}
