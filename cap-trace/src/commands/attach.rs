//! `cap-trace --pid PID`, `--cgroup PATH` and `--unit NAME.service`: trace a workload that is
//! already running, from now until it is gone (or `--duration`, Ctrl-C, SIGTERM), and print its
//! profile, which says it started late.

use std::io::IsTerminal as _;

use crate::cli::{ContainerArgs, Format, GlobalArgs};
use crate::commands::global::{live_view, probe_options, render_all, say_written};
use crate::error::{Failure, exit};
use crate::session::attach::{self, AttachOptions, Target};

/// What the command line asks to attach to, if anything.
pub(crate) fn target(args: &ContainerArgs) -> Option<Target> {
    if let Some(pid) = args.pid {
        return Some(Target::Pid(pid));
    }
    if let Some(path) = &args.cgroup {
        return Some(Target::Cgroup(path.clone()));
    }
    args.unit.clone().map(Target::Unit)
}

pub async fn command(
    target: Target,
    args: ContainerArgs,
    global: &GlobalArgs,
) -> Result<u8, Failure> {
    // A workload cap-trace did not start cannot be started again under another set.
    if args.judges_the_workload() {
        return Err(Failure::usage(
            "--verify, --health and --health-exec are for `run` and --container NAME: a running process, cgroup or unit cannot be run again by cap-trace; verify its command with `cap-trace run --verify -- CMD`",
        ));
    }
    let profile = attach::attach(AttachOptions {
        target,
        duration: args.follow.duration,
        probe: probe_options(&args.probe),
        verbose: global.verbose,
        on_check: live_view(global),
        status_line: std::io::stderr().is_terminal() && global.format() != Format::Json,
    })
    .await?;
    render_all(std::slice::from_ref(&profile), global, Format::Text, true)?;
    say_written(global, 1);
    Ok(exit::OK)
}
