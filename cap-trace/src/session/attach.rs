//! A workload that is already running, traced from now on: a process (`--pid`), a cgroup
//! (`--cgroup`) or a systemd service (`--unit`), as bcc's `capable -p` and cap-audit's service
//! mode do. Its checks before cap-trace attached were never seen, so its profile says it is
//! incomplete and why.
//!
//! A process alone in its cgroup, or in a container's, is traced by that cgroup (and what is
//! below it). A process that shares its cgroup with others (a login shell's session, a service
//! with helpers) is traced as a process tree: it and its descendants, by process id, which the
//! kernel side grows as they fork (`cap-trace-ebpf/src/members.rs`), while the other processes
//! of the cgroup are not recorded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cap_trace_common::{Traced, traced_kind, tree_key};
use tokio::signal::unix::{SignalKind, signal};

use crate::kernel::{Probe, ProbeOptions};
use crate::model::profile::{Environment, Profile, TraceInfo, Workload, WorkloadKind, rfc3339};
use crate::model::text;
use crate::session::cgroup;
use crate::session::container::{
    boot_time, path as container_path, process_security, process_start,
};
use crate::session::launch::own_userns_level;
use crate::session::privilege;
use crate::session::status::StatusLine;
use crate::session::tracer::{Migration, Tracer};
use crate::session::{OnCheck, SessionError};

/// What to attach to, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Pid(u32),
    Cgroup(String),
    Unit(String),
}

pub struct AttachOptions {
    pub target: Target,
    pub duration: Option<Duration>,
    pub probe: ProbeOptions,
    pub verbose: bool,
    /// The live view (`--events`): each kind of check as it is first seen.
    pub on_check: Option<OnCheck>,
    /// Keep a status line on stderr (a terminal, and not `--json`).
    pub status_line: bool,
}

/// How the kernel side picks the workload's checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every task in the cgroup and below it.
    Cgroup,
    /// The process `pid` and its descendants, in a cgroup shared with other processes.
    Tree { pid: u32 },
}

/// A target found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub kind: WorkloadKind,
    /// What the profile calls it: `nginx.service`, the cgroup's path, `PID (comm)`.
    pub name: String,
    /// The cgroup, relative to the cgroup v2 mount, with a leading `/`.
    pub cgroup: String,
    pub path: PathBuf,
    pub id: u64,
    pub level: u32,
    pub scope: Scope,
    /// The process asked for (`--pid`), or the cgroup's first one: its capabilities and start
    /// time describe the workload.
    pub pid: Option<u32>,
    pub comm: Option<String>,
}

impl Resolved {
    /// The key its checks are recorded under in the kernel side.
    pub fn key(&self) -> u64 {
        match self.scope {
            Scope::Cgroup => self.id,
            Scope::Tree { pid } => tree_key(pid),
        }
    }
}

/// A unit name as systemd spells it: `NAME.service` (a bare name gets `.service`), of the
/// characters systemd allows (`[A-Za-z0-9:_.\-@]`, escapes included as `\x2d`).
pub fn unit_name(name: &str) -> Result<String, SessionError> {
    let name = if name.contains('.') {
        name.to_owned()
    } else {
        format!("{name}.service")
    };
    let valid = name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.-@\\".contains(&b))
        && !name.starts_with('.');
    if !valid || name.strip_suffix(".service").is_none_or(str::is_empty) {
        return Err(SessionError::usage(format!(
            "--unit {}: not a service unit name (give NAME or NAME.service, as `systemctl status` shows it)",
            text::shown(&name)
        )));
    }
    Ok(name)
}

/// The cgroup systemd gives a system service: `system.slice/NAME.service`, and for an instance
/// of a template (`getty@tty1.service`) `system.slice/system-getty.slice/getty@tty1.service`
/// (a `-` in the template's name is `\x2d` in its slice's, as `systemd-escape` writes it).
pub fn unit_cgroup(unit: &str) -> String {
    match unit.split_once('@') {
        Some((template, _)) => format!(
            "system.slice/system-{}.slice/{unit}",
            template.replace('-', "\\x2d")
        ),
        None => format!("system.slice/{unit}"),
    }
}

/// Finds the target on this host: its cgroup, and whether a process is traced by its cgroup or
/// as a tree. Everything that can be wrong with what was asked is a usage error here, before
/// anything is loaded.
pub fn resolve(target: &Target, root: &Path) -> Result<Resolved, SessionError> {
    match target {
        Target::Pid(pid) => resolve_pid(*pid, root),
        Target::Cgroup(given) => {
            let rel = cgroup_relative(given, root)?;
            existing_cgroup(
                root,
                &rel,
                &format!("--cgroup {}", text::shown(given)),
                true,
            )
        }
        Target::Unit(given) => {
            let unit = unit_name(given)?;
            let rel = unit_cgroup(&unit);
            let path = root.join(&rel);
            if !path.is_dir() {
                return Err(SessionError::usage(format!(
                    "--unit {}: no such service is running (no cgroup {}): check the name with `systemctl list-units --type=service`",
                    text::shown(&unit),
                    path.display()
                )));
            }
            let found =
                existing_cgroup(root, &rel, &format!("--unit {}", text::shown(&unit)), true)?;
            Ok(Resolved {
                kind: WorkloadKind::Unit,
                name: unit,
                ..found
            })
        }
    }
}

/// A `--cgroup` argument as a path below the mount: relative to it, or absolute inside it.
fn cgroup_relative(given: &str, root: &Path) -> Result<String, SessionError> {
    let bad = |why: String| SessionError::usage(format!("--cgroup {}: {why}", text::shown(given)));
    let path = Path::new(given);
    let rel = if path.is_absolute() && path.starts_with(root) {
        path.strip_prefix(root).unwrap_or(path).to_path_buf()
    } else if path.is_absolute() && !path.starts_with("/sys/fs/cgroup") {
        // `/system.slice/x.service`, as /proc/PID/cgroup writes it.
        path.strip_prefix("/").unwrap_or(path).to_path_buf()
    } else if path.is_absolute() {
        return Err(bad(format!(
            "not in the cgroup v2 hierarchy, which is mounted at {} (give a path relative to it)",
            root.display()
        )));
    } else {
        path.to_path_buf()
    };
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(bad("give the path without `.` or `..`".into()));
    }
    let rel = rel.to_string_lossy().trim_matches('/').to_owned();
    if rel.is_empty() {
        return Err(bad(
            "that is the root cgroup (the whole host): name a cgroup below it".into(),
        ));
    }
    Ok(rel)
}

/// The cgroup `rel` below `root`, which must exist and hold a process; its name and details.
fn existing_cgroup(
    root: &Path,
    rel: &str,
    asked: &str,
    whole: bool,
) -> Result<Resolved, SessionError> {
    let path = root.join(rel);
    if !path.join("cgroup.procs").is_file() {
        return Err(SessionError::usage(format!(
            "{asked}: no such cgroup ({} does not exist)",
            path.display()
        )));
    }
    if !cgroup::populated(&path)? {
        return Err(SessionError::usage(format!(
            "{asked}: no process is in {} (nothing to trace): start the workload first",
            path.display()
        )));
    }
    // The whole cgroup is traced: cap-trace's own checks must not be in it. (A process tree
    // leaves cap-trace out by itself.)
    if whole
        && let Some(own) = cgroup::process_cgroup(std::process::id())
        && within(&own, rel)
    {
        return Err(SessionError::usage(format!(
            "{asked}: cap-trace itself runs in that cgroup ({own}): run it from another one"
        )));
    }
    let name = format!("/{rel}");
    let pid = first_process(&path);
    Ok(Resolved {
        kind: WorkloadKind::Cgroup,
        name: name.clone(),
        cgroup: name,
        id: cgroup::cgroup_id(&path)?,
        level: cgroup::level(root, &path),
        path,
        scope: Scope::Cgroup,
        pid,
        comm: pid.and_then(comm_of),
    })
}

/// Whether cgroup `inner` (`/a/b`, as /proc/PID/cgroup writes it) is `outer` (`a`) or below it.
fn within(inner: &str, outer: &str) -> bool {
    let inner = inner.trim_matches('/');
    inner == outer || inner.starts_with(&format!("{outer}/"))
}

/// The lowest-numbered process in the cgroup or below it (thread ids are never below their
/// process's id).
fn first_process(path: &Path) -> Option<u32> {
    cgroup::threads(path).into_iter().min()
}

/// A process's command name (`/proc/PID/comm`).
fn comm_of(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/comm"))
        .ok()
        .map(|b| text::from_bytes(b.strip_suffix(b"\n").unwrap_or(&b)))
}

fn resolve_pid(pid: u32, root: &Path) -> Result<Resolved, SessionError> {
    let asked = format!("--pid {pid}");
    if pid == std::process::id() {
        return Err(SessionError::usage(format!(
            "{asked} is cap-trace itself: give the process id of the workload"
        )));
    }
    let Some(rel) = cgroup::process_cgroup(pid) else {
        return Err(SessionError::usage(format!(
            "{asked}: no such process (see `ps -e`)"
        )));
    };
    let comm = comm_of(pid);
    let rel = rel.trim_matches('/').to_owned();
    if rel.is_empty() {
        return Err(SessionError::usage(format!(
            "{asked}: the process is in the root cgroup, with the whole host: cap-trace traces a process by its cgroup or within one; start it under `cap-trace run`, or in a cgroup of its own (`systemd-run --scope`)"
        )));
    }
    // A container's process: the container's cgroup, whatever else runs in it.
    let own = container_path::parse(&format!("/{rel}"))
        .map_or_else(|| rel.clone(), |c| c.cgroup.trim_matches('/').to_owned());
    let path = root.join(&rel);
    let alone = cgroup::processes(&path) == [pid] && own == rel;
    let in_container = own != rel || container_path::parse(&format!("/{rel}")).is_some();
    let found = existing_cgroup(root, &own, &asked, alone || in_container)?;
    let name = format!("{pid} ({})", comm.as_deref().unwrap_or("?"));
    if alone || in_container {
        return Ok(Resolved {
            kind: WorkloadKind::Process,
            name,
            pid: Some(pid),
            comm,
            ..found
        });
    }
    Ok(Resolved {
        kind: WorkloadKind::Process,
        name,
        cgroup: format!("/{rel}"),
        id: cgroup::cgroup_id(&path)?,
        level: cgroup::level(root, &path),
        path,
        scope: Scope::Tree { pid },
        pid: Some(pid),
        comm,
    })
}

/// The process `pid` and its descendants now, by their parent links in `/proc`, leaving out
/// cap-trace itself (an ancestor of it may be asked for: `--pid $$`).
pub fn tree_now(pid: u32) -> Vec<u32> {
    let own = std::process::id();
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_of(p) {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for &(p, ppid) in &parents {
            if ppid == parent && p != own && !tree.contains(&p) {
                tree.push(p);
            }
        }
        i += 1;
    }
    tree
}

/// A process's parent (`/proc/PID/stat`, field 4).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether a process is alive: in `/proc` and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The threads of the processes `pids`.
fn threads_of(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .flat_map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        })
        .collect()
}

/// Why the profile is incomplete: cap-trace attached after the workload started.
pub fn late_reason(resolved: &Resolved, late_by: Option<Duration>) -> String {
    let what = match resolved.kind {
        WorkloadKind::Unit => "the service",
        WorkloadKind::Process => "the process",
        _ => "the cgroup's first process",
    };
    let when = match late_by {
        Some(d) => format!("attached {:.1} s after {what} started", d.as_secs_f64()),
        None => format!("attached after {what} started"),
    };
    let restart = match resolved.kind {
        WorkloadKind::Unit => format!(
            "restart it while cap-trace runs (`cap-trace --unit {} --duration ...`, then `systemctl restart {}`)",
            resolved.name, resolved.name
        ),
        _ => "start it under `cap-trace run`".to_owned(),
    };
    format!("{when}: its checks before that were not seen; for a complete profile, {restart}")
}

/// Traces the target from now until it is gone (the cgroup empty, the process tree exited),
/// `duration` is up, or Ctrl-C / SIGTERM; returns its profile.
pub async fn attach(mut opts: AttachOptions) -> Result<Profile, SessionError> {
    let root = cgroup::cgroup2_root()?;
    let resolved = resolve(&opts.target, &root)?;
    let started_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let started = Instant::now();
    let _ = privilege::host_bounding();
    let probe = Probe::load(&opts.probe)?;
    let backend = probe.backend;
    let hook = probe.hook_name();
    let mut tracer = Tracer::new(probe)?;
    let key = resolved.key();
    // Ctrl-C and SIGTERM end the trace from the moment it is said to have begun.
    let signals = Signals {
        interrupt: signal(SignalKind::interrupt()).map_err(SessionError::runtime)?,
        terminate: signal(SignalKind::terminate()).map_err(SessionError::runtime)?,
    };
    let mut shown = Shown {
        live: opts.on_check.take().map(|f| (resolved.name.clone(), f)),
        status: StatusLine::new(opts.status_line),
    };
    if shown.live.is_some() {
        tracer.keep_fresh();
    }
    begin(&mut tracer, &resolved)?;
    if opts.verbose {
        eprintln!("cap-trace: attached to {hook}; {}", tracing(&resolved));
    }
    let security = resolved.pid.map(process_security).unwrap_or_default();
    let late_by = resolved
        .pid
        .and_then(process_start)
        .zip(boot_time())
        .map(|(start, now)| now.saturating_sub(start));
    let unattributed_before = tracer.stats()?.losses_unattributed;
    let interrupted = wait(&mut tracer, &resolved, opts.duration, signals, &mut shown).await;
    shown.status.clear();
    let interrupted = interrupted?;
    if opts.verbose && interrupted {
        eprintln!("cap-trace: stopped; the workload goes on");
    }
    let stats = tracer.stats()?;
    let snapshot = tracer.snapshot()?;
    // What the ring buffer held at the end.
    shown.report_fresh(&mut tracer, key);
    let (checks, outcomes) = tracer.records_in(&snapshot, &[key]);
    let mut losses = snapshot.losses_of(&[key]);
    losses.ring_buffer = losses.ring_buffer.saturating_add(
        stats
            .losses_unattributed
            .saturating_sub(unattributed_before),
    );
    let warnings: Vec<String> = tracer
        .collector
        .migrations_from(&[key])
        .map(Migration::warning)
        .collect();
    let total_checks = checks.iter().map(|c| c.count).sum();
    let workload = Workload {
        kind: Some(resolved.kind),
        name: resolved.name.clone(),
        identity: Some(resolved.name.clone()),
        pid: resolved.pid,
        comm: resolved.comm.clone(),
        cgroup: Some(resolved.cgroup.clone()),
        capabilities: security.effective,
        bounding: security.bounding,
        seccomp: security.seccomp,
        userns_level: own_userns_level(),
        ..Default::default()
    };
    let trace = TraceInfo {
        backend,
        hook,
        kernel: crate::kernel::kernel_release(),
        started: rfc3339(started_wall),
        duration_ms: started.elapsed().as_millis() as u64,
        complete: false,
        incomplete: vec![late_reason(&resolved, late_by)],
        losses,
        total_checks,
        host_bounding: privilege::host_bounding(),
    };
    Ok(Profile {
        environment: Environment {
            engine_version: None,
            network: crate::session::sysctl::network_of(resolved.pid),
            host: crate::session::sysctl::host(),
        },
        ..Profile::new(workload, trace, checks, outcomes, warnings)
    })
}

/// What is traced, for `--verbose`: `tracing 4242 (sh) (the process and its descendants,
/// cgroup /user.slice/...)`.
fn tracing(resolved: &Resolved) -> String {
    format!(
        "tracing {} ({}, cgroup {})",
        text::shown(&resolved.name),
        match resolved.scope {
            Scope::Cgroup => "the cgroup and below",
            Scope::Tree { .. } => "the process and its descendants",
        },
        text::shown(&resolved.cgroup)
    )
}

/// Starts tracing the target: its cgroup in `TRACED`, its tasks of now in `MEMBERS` (and its
/// processes in `TREES`), so that the kernel side follows them from here.
fn begin(tracer: &mut Tracer, resolved: &Resolved) -> Result<(), SessionError> {
    let key = resolved.key();
    let kind = match resolved.scope {
        Scope::Cgroup => traced_kind::SUBTREE,
        Scope::Tree { .. } => traced_kind::TREE,
    };
    tracer.probe.trace_cgroup(
        resolved.id,
        Traced {
            kind,
            level: resolved.level,
        },
    )?;
    match resolved.scope {
        Scope::Cgroup => {
            let tids = cgroup::threads(&resolved.path);
            tracer.probe.enter_members(&tids, key)?;
        }
        Scope::Tree { pid } => {
            // Twice: a process forked while the first look ran is in the second (the kernel
            // side enters every one a member forks from now on).
            for _ in 0..2 {
                let tree = tree_now(pid);
                tracer.probe.enter_tree(&tree, key)?;
                tracer.probe.enter_members(&threads_of(&tree), key)?;
            }
        }
    }
    Ok(())
}

/// How often cap-trace looks whether the workload is still there.
const LOOK: Duration = Duration::from_millis(200);

/// The signals that end a trace.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

/// What a trace shows while it runs: the live view and the status line.
struct Shown {
    live: Option<(String, OnCheck)>,
    status: StatusLine,
}

impl Shown {
    /// Shows each kind of check the workload made for the first time since the last call,
    /// named as the report names it.
    fn report_fresh(&mut self, tracer: &mut Tracer, key: u64) {
        let Some((name, on_check)) = self.live.as_mut() else {
            return;
        };
        let fresh: Vec<_> = tracer
            .fresh_checks()
            .into_iter()
            .filter(|(traced, _)| *traced == key)
            .collect();
        if !fresh.is_empty() {
            self.status.clear();
        }
        for (_, check) in fresh {
            on_check(name, &check);
        }
    }
}

/// Reads events until the workload is gone, the time is up or a signal came (then `true`),
/// keeping the status line (redrawn each second) and the live view.
async fn wait(
    tracer: &mut Tracer,
    resolved: &Resolved,
    duration: Option<Duration>,
    mut signals: Signals,
    shown: &mut Shown,
) -> Result<bool, SessionError> {
    let started = tokio::time::Instant::now();
    let deadline = duration.map(|d| started + d);
    let mut look = tokio::time::interval(LOOK);
    let what = text::shown(&resolved.name).into_owned();
    loop {
        tokio::select! {
            result = tracer.pump() => {
                result.map_err(SessionError::runtime)?;
                shown.report_fresh(tracer, resolved.key());
            }
            () = async { tokio::time::sleep_until(deadline.expect("set")).await }, if deadline.is_some() => return Ok(false),
            _ = signals.interrupt.recv() => return Ok(true),
            _ = signals.terminate.recv() => return Ok(true),
            _ = look.tick() => {
                let there = match resolved.scope {
                    Scope::Cgroup => cgroup::populated(&resolved.path).unwrap_or(false),
                    Scope::Tree { .. } => tracer.probe.tree().iter().any(|&p| alive(p)),
                };
                if !there {
                    return Ok(false);
                }
                if shown.status.due() {
                    let now = tokio::time::Instant::now();
                    let stats = tracer.stats().unwrap_or_default();
                    let left = deadline.map(|d| d.saturating_duration_since(now));
                    shown.status.draw(now - started, left, &what, &stats);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("nginx").unwrap(), "nginx.service");
        assert_eq!(unit_name("nginx.service").unwrap(), "nginx.service");
        assert_eq!(
            unit_name("getty@tty1.service").unwrap(),
            "getty@tty1.service"
        );
        assert_eq!(
            unit_name(r"foo\x2dbar.service").unwrap(),
            r"foo\x2dbar.service"
        );
        for bad in [
            "nginx.socket",
            "../x.service",
            "a/b.service",
            ".service",
            "a b",
            "x\n.service",
        ] {
            let err = unit_name(bad).unwrap_err();
            assert!(matches!(err, SessionError::Usage(_)), "{bad}");
        }
        assert_eq!(unit_cgroup("nginx.service"), "system.slice/nginx.service");
        assert_eq!(
            unit_cgroup("getty@tty1.service"),
            "system.slice/system-getty.slice/getty@tty1.service"
        );
        assert_eq!(
            unit_cgroup("serial-getty@ttyS0.service"),
            r"system.slice/system-serial\x2dgetty.slice/serial-getty@ttyS0.service"
        );
    }

    #[test]
    fn cgroup_arguments() {
        let root = Path::new("/sys/fs/cgroup/unified");
        let rel = |s: &str| cgroup_relative(s, root);
        assert_eq!(
            rel("system.slice/x.service").unwrap(),
            "system.slice/x.service"
        );
        assert_eq!(
            rel("/system.slice/x.service/").unwrap(),
            "system.slice/x.service"
        );
        assert_eq!(rel("/sys/fs/cgroup/unified/a/b").unwrap(), "a/b");
        for bad in [
            "/sys/fs/cgroup/memory/a",
            "a/../b",
            "/",
            "/sys/fs/cgroup/unified",
            "./a",
        ] {
            assert!(rel(bad).is_err(), "{bad}");
        }
        assert!(within("/a/b", "a"));
        assert!(within("/a", "a"));
        assert!(!within("/ab", "a"));
    }
}
