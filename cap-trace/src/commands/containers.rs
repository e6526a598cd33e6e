//! `cap-trace --container NAME` and `--all-containers` (the default command): follow
//! containers until they exit (or `--duration`, Ctrl-C, SIGTERM) and print a profile of each.

use crate::cli::{ContainerArgs, FollowArgs, Format, GlobalArgs, ProbeArgs};
use crate::commands::global::{live_view, probe_options, render_all, say_written};
use crate::error::{Failure, exit};
use crate::model::profile::Profile;
use crate::session::follow::{self, FollowOptions};
use crate::session::health::HealthCheck;
use crate::session::verify_container::{self, Settings};
use std::io::IsTerminal as _;

pub async fn command(args: ContainerArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    if args.judges_the_workload() {
        let profile = verify_container(args, global).await?;
        render_all(std::slice::from_ref(&profile), global, Format::Text, true)?;
        say_written(global, 1);
        return Ok(exit::OK);
    }
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
    Ok(follow::follow(follow_options(targets, all, &follow, probe, global)).await?)
}

/// How `--container`/`--all-containers` follow containers, as the command line says.
fn follow_options(
    targets: Vec<String>,
    all: bool,
    follow: &FollowArgs,
    probe: &ProbeArgs,
    global: &GlobalArgs,
) -> FollowOptions {
    FollowOptions {
        targets,
        all,
        duration: follow.duration,
        timeout: None,
        wait: follow.wait,
        probe: probe_options(probe),
        engine_socket: follow.engine_socket.clone(),
        verbose: global.verbose,
        labels: Vec::new(),
        on_check: live_view(global),
        // Sign of life on a terminal, never in a pipe or with JSON.
        status_line: std::io::stderr().is_terminal() && global.format() != Format::Json,
        health: None,
        end_when_healthy: false,
        need_api: false,
        keep_records: false,
    }
}

/// `--container NAME --verify` (and `--health`/`--health-exec`): learns one container, ending
/// when it exits or its health check answers; with `--verify`, then verifies the learned set
/// on copies of it re-created by its engine.
async fn verify_container(args: ContainerArgs, global: &GlobalArgs) -> Result<Profile, Failure> {
    let [name] = args.containers.as_slice() else {
        return Err(Failure::usage(
            "--verify, --health and --health-exec take exactly one container: name it with --container NAME (not --all-containers)",
        ));
    };
    let name = name.clone();
    let health = match (&args.verify.health, &args.health_exec) {
        (Some(command), _) | (None, Some(command)) => Some(HealthCheck {
            command: command.clone(),
            inside: args.health_exec.is_some(),
            timeout: args.verify.health_timeout,
        }),
        (None, None) => None,
    };
    let mut opts = FollowOptions {
        health: health.clone(),
        end_when_healthy: health.is_some(),
        need_api: args.health_exec.is_some(),
        keep_records: args.verify.verify,
        ..follow_options(vec![name.clone()], false, &args.follow, &args.probe, global)
    };
    let mut opened = follow::open(&opts)?;
    opened.show_live(opts.on_check.take());
    let (profiles, interrupted) = follow::learn(&mut opened, &opts).await?;
    let mut profile = profiles
        .into_iter()
        .find(|(target, _)| *target == name)
        .map(|(_, p)| p)
        .ok_or_else(|| Failure::runtime(format!("no profile of container `{name}`")))?;
    if !args.verify.verify {
        return Ok(profile);
    }
    if interrupted {
        eprintln!("cap-trace: not verifying: learning was interrupted (Ctrl-C or SIGTERM)");
        return Ok(profile);
    }
    let settings = Settings {
        health,
        strict: args.verify.strict,
        run_timeout: args.verify.verify_timeout,
    };
    let v = verify_container::verify_learned(&mut opened, &opts, &name, &profile, settings).await?;
    profile.set_verification(v);
    Ok(profile)
}
