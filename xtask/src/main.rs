//! Developer tasks: `cargo xtask setup | build | demo | test | bench | vm-test | syscalls`.
//!
//! xtask builds with the stable toolchain alone (it does not depend on cap-trace), so it can
//! install what building cap-trace needs.

mod bench;
mod build;
mod debian;
mod demo;
mod setup;
mod syscalls;
mod test;
mod util;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "cap-trace developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every missing prerequisite (idempotent) and say what was done.
    Setup {
        /// Only what building cap-trace needs (no container, benchmark or VM tools).
        #[arg(long)]
        build_only: bool,
    },
    /// Build cap-trace as a static binary (musl) for each architecture asked for (default: this
    /// machine's): target/<arch>-unknown-linux-musl/release/cap-trace.
    Build {
        /// x86_64 or aarch64 (repeatable).
        #[arg(long = "target")]
        targets: Vec<build::Arch>,
    },
    /// Set up, build, and trace a real workload.
    Demo,
    /// Run every backend on Debian's cloud kernels (5.10 to 6.19, x86_64 and arm64) in qemu,
    /// and print the kernel matrix.
    VmTest {
        /// Boot only these kernels, as ARCH:SERIES (e.g. `amd64:5.10,arm64:6.18`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Measure tracing overhead against the floor and bpftrace; writes BENCHMARKS.md.
    Bench {
        /// Rounds over all configurations (medians are reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// setgroups calls per microbenchmark run.
        #[arg(long, default_value_t = 2_000_000)]
        calls: u64,
        /// Run only these microbenchmark configurations (comma-separated keys such as
        /// `base,floor-raw,ct-raw`; `programs` for the kernel-measured cost of each part of the
        /// fast path, `bystanders` for untraced processes beside a traced container, `denials`
        /// for followed denials, `macro` for the container workload), print their figures and
        /// leave BENCHMARKS.md alone.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Regenerate the syscall name tables (cap-trace/src/linux/syscalls/) from Debian's newest
    /// kernel headers.
    Syscalls,
    /// Set up, then run the unit and integration tests (root tests are required when root).
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.task {
        Task::Setup { build_only } => setup::install(if build_only {
            setup::Scope::Build
        } else {
            setup::Scope::All
        }),
        Task::Build { targets } => build::build(&targets),
        Task::Demo => demo::demo(),
        Task::VmTest { only } => vm::vm_test(&only),
        Task::Bench {
            rounds,
            calls,
            only,
        } => bench::bench(bench::Options {
            rounds,
            calls,
            only,
        }),
        Task::Test { args } => test::test(&args),
        Task::Syscalls => syscalls::syscalls(),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
