//! Debian's archive, through a private apt configuration: kernels and busybox for the VM tests,
//! the kernel headers the syscall tables come from. Nothing on the machine changes.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::build::Arch;
use crate::util::{root, run};

/// `apt-get`/`apt-cache` with a private configuration naming only `suite`, for every
/// architecture cap-trace is built for, so that nothing on the machine changes (signatures are
/// still checked against the system's keyring).
pub(crate) fn apt(tool: &str, suite: &str) -> Result<Command> {
    let dir = root().join("target/debian/apt").join(suite);
    std::fs::create_dir_all(dir.join("lists/partial"))?;
    let sources = dir.join("sources.list");
    let arches: Vec<&str> = Arch::ALL.iter().map(|a| a.debian()).collect();
    std::fs::write(
        &sources,
        format!(
            "deb [arch={}] http://deb.debian.org/debian {suite} main\n",
            arches.join(",")
        ),
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
        ))
        .args([
            "-oAPT::Architectures::=amd64",
            "-oAPT::Architectures::=arm64",
        ]);
    Ok(cmd)
}

/// Downloads `package` (`name:arch`) from `suite` and unpacks it into `dir`.
pub(crate) fn unpack(suite: &str, package: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    run(apt("apt-get", suite)?
        .args(["download", package])
        .current_dir(dir))?;
    let deb = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("{package} was not downloaded"))?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir))?;
    let _ = std::fs::remove_file(&deb);
    Ok(())
}
