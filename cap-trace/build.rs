use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;
// A build-dependency only so that cargo rebuilds the embedded object when the kernel side
// changes (see Cargo.toml); the object itself is built below.
use cap_trace_ebpf as _;

/// Builds the kernel side (`cap-trace-ebpf`) with the nightly toolchain and bpf-linker; the
/// object lands in `OUT_DIR` where `kernel/mod.rs` embeds it with `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "cap-trace-ebpf")
        .ok_or_else(|| anyhow!("cap-trace-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let ebpf_package = aya_build::Package {
        name: name.as_str(),
        root_dir: manifest_path
            .parent()
            .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
            .as_str(),
        ..Default::default()
    };
    // The kernel side needs `-Z build-std=core` and `core_intrinsics`. Some machines ship their
    // "nightly" toolchain as a stable-channel compiler (pinned, offline images); RUSTC_BOOTSTRAP
    // lets that same compiler accept them, and is a no-op on a real nightly.
    // SAFETY: the build script is single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf([ebpf_package], Toolchain::default())
}
