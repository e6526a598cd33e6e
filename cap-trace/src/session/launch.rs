//! `cap-trace run -- CMD`: run a command in a fresh cgroup and learn what it needs.

use std::ffi::{CString, OsString};
use std::os::fd::AsFd as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cap_trace_common::{Traced, traced_kind};
use tokio::signal::unix::{SignalKind, signal};

use crate::error::Failure;
use crate::kernel::{Probe, ProbeOptions};
use crate::model::profile::{Profile, TraceInfo, Workload, WorkloadKind, rfc3339};
use crate::model::record::Losses;
use crate::session::cgroup::{self, Leaf};
use crate::session::tracer::{LAUNCHER_COMM, Tracer};

/// Who the command runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
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
    Ok(User { uid, gid })
}

/// The fields of the first `:`-separated line (at least four fields) matching `pred`.
fn lookup(file: &str, pred: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && pred(f))
}

pub struct RunOptions {
    pub command: Vec<OsString>,
    /// Run the command as this user instead of cap-trace's.
    pub user: Option<User>,
    pub probe: ProbeOptions,
    /// Send the command's stdout to stderr (the profile goes to stdout).
    pub command_stdout_to_stderr: bool,
    pub verbose: bool,
}

/// What a run produced, plus how long attaching took (for verbose output and benchmarks).
pub struct RunResult {
    pub profile: Profile,
    pub attach_ms: u64,
}

/// Depth of this process's user namespace: 0 in the initial one. Deeper nesting than one level
/// cannot be told from procfs; it is reported as 1.
pub fn own_userns_level() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| std::fs::metadata(p).map(|m| m.ino()).ok();
    match (ino("/proc/self/ns/user"), ino("/proc/1/ns/user")) {
        (Some(a), Some(b)) if a != b => 1,
        _ => 0,
    }
}

pub async fn run(opts: RunOptions) -> Result<RunResult, Failure> {
    let Some(program) = opts.command.first() else {
        return Err(Failure::usage(
            "no command given: usage is `cap-trace run [OPTIONS] -- CMD [ARGS...]`",
        ));
    };
    let started_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let started = Instant::now();

    let probe = Probe::load(&opts.probe)?;
    let attach_ms = started.elapsed().as_millis() as u64;
    if opts.verbose {
        eprintln!(
            "cap-trace: attached to {} in {attach_ms} ms",
            probe.hook_name()
        );
        for rejected in &probe.rejected {
            eprintln!(
                "cap-trace: {} backend not used: {}",
                rejected.backend, rejected.error
            );
        }
    }
    let backend = probe.backend;
    let hook = probe.hook_name();

    let leaf = Leaf::create(&format!("run-{}", std::process::id()))?;
    let root = cgroup::cgroup2_root()?;
    let mut tracer = Tracer::new(probe)?;
    tracer.probe.trace_cgroup(
        leaf.id,
        Traced {
            kind: traced_kind::EXACT,
            level: cgroup::level(&root, &leaf.path),
        },
    )?;

    let mut command = tokio::process::Command::new(program);
    command.args(&opts.command[1..]);
    if opts.command_stdout_to_stderr {
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(Failure::runtime)?;
        command.stdout(std::process::Stdio::from(stderr));
    }
    let procs = CString::new(leaf.procs_file().as_os_str().as_bytes())
        .map_err(|_| Failure::runtime("cgroup path contains a NUL byte"))?;
    let marker = CString::new(LAUNCHER_COMM).expect("no NUL");
    let user = opts.user;
    // SAFETY: only async-signal-safe calls (prctl, open, write, close) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // Name the launcher so that its own checks before exec are told apart.
            libc::prctl(libc::PR_SET_NAME, marker.as_ptr());
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if !ok {
                return Err(err);
            }
            // Still the launcher (its name marks these checks): drop to the user.
            if let Some(user) = user {
                let gid = user.gid;
                if libc::setgroups(1, &gid) != 0
                    || libc::setgid(user.gid) != 0
                    || libc::setuid(user.uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let display = opts
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure::usage(format!(
            "cannot run `{}`: command not found",
            program.to_string_lossy()
        )),
        std::io::ErrorKind::PermissionDenied => Failure::usage(format!(
            "cannot run `{}`: permission denied",
            program.to_string_lossy()
        )),
        _ => Failure::runtime(format!("cannot run `{}`: {e}", program.to_string_lossy())),
    })?;

    let mut sigint = signal(SignalKind::interrupt()).map_err(Failure::runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(Failure::runtime)?;
    let mut interrupts = 0;
    let mut status = None;
    let cgroup_path = leaf.path.clone();
    let mut empty = None;
    loop {
        if status.is_some() && empty.is_none() {
            // The command is gone; its descendants may not be. Wait for the cgroup to empty.
            let path = cgroup_path.clone();
            empty = Some(tokio::task::spawn_blocking(move || {
                cgroup::wait_empty(&path)
            }));
        }
        tokio::select! {
            result = child.wait(), if status.is_none() => {
                status = Some(result.map_err(Failure::runtime)?);
            }
            done = async { empty.as_mut().expect("set").await }, if empty.is_some() => {
                done.map_err(Failure::runtime)??;
                break;
            }
            result = tracer.pump() => result.map_err(Failure::runtime)?,
            _ = sigint.recv() => interrupts += forward(&cgroup_path, interrupts, libc::SIGINT),
            _ = sigterm.recv() => interrupts += forward(&cgroup_path, interrupts, libc::SIGTERM),
        }
    }
    let status = status.expect("command status");

    let stats = tracer.stats()?;
    if opts.verbose {
        eprintln!("cap-trace: kernel counters: {stats:?}");
    }
    let (checks, outcomes) = tracer.records(&[leaf.id])?;
    drop(leaf);
    let losses = Losses::from(&stats);
    let total_checks = checks.iter().map(|c| c.count).sum();
    let workload = Workload {
        kind: Some(WorkloadKind::Command),
        name: display.join(" "),
        command: Some(display),
        exit_status: status.code(),
        exit_signal: status.signal(),
        userns_level: own_userns_level(),
        ..Default::default()
    };
    let trace = TraceInfo {
        backend,
        hook,
        kernel: crate::kernel::kernel_release(),
        started: rfc3339(started_wall),
        duration_ms: started.elapsed().as_millis() as u64,
        complete: losses.total() == 0,
        losses,
        total_checks,
    };
    Ok(RunResult {
        profile: Profile::new(workload, trace, checks, outcomes, Vec::new()),
        attach_ms,
    })
}

/// Passes a Ctrl-C or SIGTERM on to the traced processes; a second one kills them.
fn forward(cgroup: &std::path::Path, interrupts: u32, signal: i32) -> u32 {
    if interrupts == 0 {
        if let Ok(procs) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, signal) };
            }
        }
    } else {
        cgroup::kill_all(cgroup);
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(err.code, crate::error::exit::USAGE);
        assert!(err.message.contains("no user `no-such-user-here`"));
        assert!(resolve_user("root:no-such-group-here").is_err());
    }
}
