//! `cap-trace --container NAME` and `--all-containers` (the default command): follow
//! containers until they exit (or `--duration`, Ctrl-C, SIGTERM) and print a profile of each.

use crate::cli::{ContainerArgs, FollowArgs, Format, GlobalArgs, ProbeArgs};
use crate::commands::global::{live_view, probe_options, render_all, say_written};
use crate::error::{Failure, exit};
use crate::model::profile::Profile;
use crate::session::follow::{self, FollowOptions};
use std::io::IsTerminal as _;

pub async fn command(args: ContainerArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let profiles = follow_containers(
        args.containers,
        args.all_containers,
        args.follow,
        &args.probe,
        global,
    )
    .await?;
    render_all(&profiles, global, Format::Text, true)?;
    say_written(global, profiles.len());
    Ok(exit::OK)
}

/// Follows the containers asked for (or all of them) and returns their profiles.
pub(crate) async fn follow_containers(
    targets: Vec<String>,
    all: bool,
    follow: FollowArgs,
    probe: &ProbeArgs,
    global: &GlobalArgs,
) -> Result<Vec<Profile>, Failure> {
    Ok(follow::follow(FollowOptions {
        targets,
        all,
        duration: follow.duration,
        wait: follow.wait,
        probe: probe_options(probe),
        engine_socket: follow.engine_socket,
        verbose: global.verbose,
        labels: Vec::new(),
        on_check: live_view(global),
        // Sign of life on a terminal, never in a pipe or with JSON.
        status_line: std::io::stderr().is_terminal() && global.format() != Format::Json,
    })
    .await?)
}
