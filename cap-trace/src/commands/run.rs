//! `cap-trace run -- CMD`: run a command in a fresh cgroup and learn what it needs; with
//! `--verify`, run it again under the learned set and without each capability of it.

use crate::cli::{Format, GlobalArgs, RunArgs, VerifyArgs};
use crate::commands::global::{live_view, probe_options, render_all, say_written};
use crate::error::{Failure, exit};
use crate::model::profile::{Profile, RunUser};
use crate::session::health::HealthCheck;
use crate::session::launch::{self, RunOptions, User};
use crate::session::verify::{self, CommandRunner, VerifyOptions};

pub async fn command(args: RunArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let profile = run_command(args, global).await?;
    render_all(std::slice::from_ref(&profile), global, Format::Text, true)?;
    say_written(global, 1);
    Ok(exit::OK)
}

/// Runs the command traced and returns its profile.
pub(crate) async fn run_command(args: RunArgs, global: &GlobalArgs) -> Result<Profile, Failure> {
    let format = global.format();
    let user = match &args.user {
        Some(spec) => Some(resolve_user(spec)?),
        None => None,
    };
    let run_user = args.user.as_ref().zip(user).map(|(spec, u)| RunUser {
        name: spec.split(':').next().unwrap_or(spec).to_owned(),
        uid: u.uid,
        gid: u.gid,
    });
    if let (Some(asked), Some(host)) = (&args.caps, crate::session::privilege::host_bounding()) {
        let lacking: Vec<String> = asked
            .0
            .iter()
            .filter(|c| !host.contains(c))
            .map(|c| c.name())
            .collect();
        if !lacking.is_empty() {
            return Err(Failure::usage(format!(
                "--caps: this host cannot grant {} (its bounding set lacks it): leave it out",
                lacking.join(", ")
            )));
        }
    }
    let health = health_check(&args.verify, false);
    let command = args.command.clone();
    let options = RunOptions {
        command: args.command,
        user,
        caps: args.caps.map(|c| c.0),
        health: health.clone(),
        probe: probe_options(&args.probe),
        // Stdout carries cap-trace's lines alone with the live view (the events, then the
        // report) and with a machine format written there.
        command_stdout_to_stderr: global.events
            || (format != Format::Text && global.output.is_none()),
        verbose: global.verbose,
        on_check: live_view(global),
    };
    let learned = launch::run(options).await?;
    let mut profile = learned.profile;
    profile.workload.user = run_user;
    if args.verify.verify {
        let mut launcher = learned.launcher;
        let mut runner = CommandRunner {
            launcher: &mut launcher,
            command: &command,
            user,
            health: health.as_ref(),
            timeout: verify::run_timeout(&profile, args.verify.verify_timeout),
        };
        let v = verify::verify(
            &mut runner,
            &profile,
            VerifyOptions {
                strict: args.verify.strict,
            },
        )
        .await?;
        profile.set_verification(v);
    }
    Ok(profile)
}

/// The health check asked for, if any.
pub(crate) fn health_check(args: &VerifyArgs, inside: bool) -> Option<HealthCheck> {
    args.health.as_ref().map(|command| HealthCheck {
        command: command.clone(),
        inside,
        timeout: args.health_timeout,
    })
}

/// Resolves `name`, `uid`, `name:group` or `uid:gid` against the password and group files.
pub fn resolve_user(spec: &str) -> Result<User, Failure> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (
            uid,
            lookup(&passwd, |f| f[2] == user).and_then(|f| f[3].parse().ok()),
        ),
        Err(_) => {
            let fields = lookup(&passwd, |f| f[0] == user).ok_or_else(|| {
                Failure::usage(format!(
                    "no user `{user}` in /etc/passwd (give a name or a uid)"
                ))
            })?;
            (
                fields[2]
                    .parse()
                    .map_err(|_| Failure::usage(format!("bad uid for `{user}` in /etc/passwd")))?,
                fields[3].parse().ok(),
            )
        }
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(&groups, |f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| Failure::usage(format!("no group `{g}` in /etc/group")))?,
        },
        None => primary.unwrap_or(uid),
    };
    // (uid_t)-1 means "leave unchanged" to setuid(2) and friends: no user has it.
    for (what, id) in [("user", uid), ("group", gid)] {
        if id == u32::MAX {
            return Err(Failure::usage(format!(
                "{id} is not a valid {what} id (ids go up to {})",
                u32::MAX - 1
            )));
        }
    }
    Ok(User { uid, gid })
}

/// The fields of the first `:`-separated line (at least four fields) matching `pred`.
fn lookup(file: &str, pred: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && pred(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;

    #[test]
    fn resolves_users_and_groups() {
        assert_eq!(resolve_user("root").unwrap(), User { uid: 0, gid: 0 });
        assert_eq!(resolve_user("0:0").unwrap(), User { uid: 0, gid: 0 });
        assert_eq!(
            resolve_user("1234:5678").unwrap(),
            User {
                uid: 1234,
                gid: 5678
            }
        );
        // A uid not in /etc/passwd gets its own number as group.
        assert_eq!(
            resolve_user("424242").unwrap(),
            User {
                uid: 424242,
                gid: 424242
            }
        );
        let err = resolve_user("no-such-user-here").unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("no user `no-such-user-here`"));
        assert!(resolve_user("root:no-such-group-here").is_err());
        for invalid in ["4294967295", "0:4294967295", "4294967295:0"] {
            let err = resolve_user(invalid).unwrap_err();
            assert_eq!(err.code, exit::USAGE, "{invalid}");
            assert!(
                err.message.contains("4294967295 is not a valid"),
                "{}",
                err.message
            );
        }
    }
}
