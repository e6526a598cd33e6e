//! A command run in a fresh leaf cgroup and traced from its exec until its last descendant
//! exits: the session behind `cap-trace run` (and `cap-trace check ... run`).

use std::ffi::{CString, OsString};
use std::os::fd::AsFd as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cap_trace_common::{Traced, traced_kind};
use tokio::signal::unix::{SignalKind, signal};

use crate::kernel::{Probe, ProbeOptions};
use crate::model::profile::{Profile, TraceInfo, Workload, WorkloadKind, rfc3339};
use crate::model::text;
use crate::session::SessionError;
use crate::session::cgroup::{self, Leaf};
use crate::session::tracer::{LAUNCHER_COMM, Migration, Tracer};

/// The highest signal number on Linux (`_NSIG - 1`).
const SIGNALS: i32 = 64;

/// Who the command runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
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

pub async fn run(opts: RunOptions) -> Result<RunResult, SessionError> {
    let Some(program) = opts.command.first() else {
        return Err(SessionError::usage(
            "no command given: usage is `cap-trace run [OPTIONS] -- CMD [ARGS...]`",
        ));
    };
    // Before anything is loaded: a command that cannot run is a usage error, not a trace.
    find_program(program)?;
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
    let leaf_id = leaf.id;
    let child = spawn_in_leaf(&opts, program, &leaf)?;
    let status = wait_forwarding_signals(child, &mut tracer, &leaf.path).await?;

    let stats = tracer.stats()?;
    if opts.verbose {
        eprintln!("cap-trace: kernel counters: {stats:?}");
    }
    let snapshot = tracer.snapshot()?;
    let (checks, outcomes) = tracer.records_in(&snapshot, &[leaf.id]);
    drop(leaf);
    // Its own losses, and any the kernel side could not count against a cgroup (it traced
    // nothing else).
    let mut losses = snapshot.losses_of(&[leaf_id]);
    losses.ring_buffer = losses.ring_buffer.saturating_add(stats.losses_unattributed);
    let warnings: Vec<String> = tracer
        .collector
        .migrations_from(&[leaf_id])
        .map(Migration::warning)
        .collect();
    let total_checks = checks.iter().map(|c| c.count).sum();
    let display = opts
        .command
        .iter()
        .map(|a| text::from_bytes(a.as_bytes()))
        .collect::<Vec<_>>();
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
        host_bounding: crate::session::privilege::host_bounding(),
    };
    Ok(RunResult {
        profile: Profile::new(workload, trace, checks, outcomes, warnings),
        attach_ms,
    })
}

/// Checks that `program` can be run, as `execvp` will look for it: a path as it is, a bare
/// name in each `$PATH` directory.
fn find_program(program: &OsString) -> Result<(), SessionError> {
    let executable = |path: &Path| -> Option<bool> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() {
            return Some(false);
        }
        let c = CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: access(2) with a NUL-terminated path.
        Some(unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0)
    };
    let name = program.to_string_lossy();
    let found = if program.as_bytes().contains(&b'/') {
        executable(Path::new(program))
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        let mut found = None;
        for dir in std::env::split_paths(&path) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".").to_path_buf()
            } else {
                dir
            };
            match executable(&dir.join(program)) {
                Some(true) => {
                    found = Some(true);
                    break;
                }
                Some(false) => found = found.or(Some(false)),
                None => {}
            }
        }
        found
    };
    match found {
        Some(true) => Ok(()),
        Some(false) => Err(SessionError::usage(format!(
            "cannot run `{name}`: permission denied"
        ))),
        None => Err(SessionError::usage(format!(
            "cannot run `{name}`: command not found"
        ))),
    }
}

/// Starts the command in the leaf cgroup: between fork and exec the launcher names itself
/// [`LAUNCHER_COMM`] (its own checks are told apart), joins the leaf, and drops to the user.
fn spawn_in_leaf(
    opts: &RunOptions,
    program: &OsString,
    leaf: &Leaf,
) -> Result<tokio::process::Child, SessionError> {
    let mut command = tokio::process::Command::new(program);
    command.args(&opts.command[1..]);
    if opts.command_stdout_to_stderr {
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(SessionError::runtime)?;
        command.stdout(std::process::Stdio::from(stderr));
    }
    let procs = CString::new(leaf.procs_file().as_os_str().as_bytes())
        .map_err(|_| SessionError::runtime("cgroup path contains a NUL byte"))?;
    let marker = CString::new(LAUNCHER_COMM).expect("no NUL");
    let user = opts.user;
    // SAFETY: only async-signal-safe calls (signal, prctl, open, write, close, set*id) between
    // fork and exec.
    unsafe {
        command.pre_exec(move || {
            // Every signal at its default disposition, as a service manager starts a service:
            // cap-trace may have been started with SIGINT ignored (a script's background job),
            // and the command would inherit that and ignore the Ctrl-C passed on to it.
            // (std already empties the signal mask.)
            for signal in 1..=SIGNALS {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
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
                if libc::setgroups(1, &raw const gid) != 0
                    || libc::setgid(user.gid) != 0
                    || libc::setuid(user.uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SessionError::usage(format!(
            "cannot run `{}`: command not found",
            program.to_string_lossy()
        )),
        std::io::ErrorKind::PermissionDenied => SessionError::usage(format!(
            "cannot run `{}`: permission denied",
            program.to_string_lossy()
        )),
        _ => SessionError::runtime(format!("cannot run `{}`: {e}", program.to_string_lossy())),
    })
}

/// Waits for the command and then for its cgroup to empty (its descendants may outlive it),
/// reading events meanwhile and passing Ctrl-C and SIGTERM on. Returns the command's status.
async fn wait_forwarding_signals(
    mut child: tokio::process::Child,
    tracer: &mut Tracer,
    cgroup_path: &Path,
) -> Result<std::process::ExitStatus, SessionError> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(SessionError::runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(SessionError::runtime)?;
    let mut interrupts = 0;
    let mut status = None;
    let mut empty = None;
    loop {
        if status.is_some() && empty.is_none() {
            // The command is gone; its descendants may not be. Wait for the cgroup to empty.
            let path = cgroup_path.to_path_buf();
            empty = Some(tokio::task::spawn_blocking(move || {
                cgroup::wait_empty(&path)
            }));
        }
        tokio::select! {
            result = child.wait(), if status.is_none() => {
                status = Some(result.map_err(SessionError::runtime)?);
            }
            done = async { empty.as_mut().expect("set").await }, if empty.is_some() => {
                done.map_err(SessionError::runtime)??;
                break;
            }
            result = tracer.pump() => result.map_err(SessionError::runtime)?,
            _ = sigint.recv() => interrupts += forward(cgroup_path, interrupts, libc::SIGINT),
            _ = sigterm.recv() => interrupts += forward(cgroup_path, interrupts, libc::SIGTERM),
        }
    }
    Ok(status.expect("command status"))
}

/// Passes a Ctrl-C or SIGTERM on to the traced processes; a second one kills them.
fn forward(cgroup: &Path, interrupts: u32, signal: i32) -> u32 {
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
