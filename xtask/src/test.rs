//! `cargo xtask test`: set up, build, then run the unit and end-to-end tests (the root tests are
//! required when root).

use anyhow::Result;

use crate::setup;
use crate::util::{build_capbench, cargo, is_root, run};

pub(crate) fn test(extra: &[String]) -> Result<()> {
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
