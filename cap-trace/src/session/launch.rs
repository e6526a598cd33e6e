//! A command run in a fresh leaf cgroup and traced from its exec until its last descendant
//! exits: the session behind `cap-trace run` (and `cap-trace check ... run`). A [`Launcher`]
//! keeps the probe loaded across runs: verification runs the command again and again.
//!
//! A run can hold exactly a capability set: between fork and exec, the launcher drops every
//! other capability from the bounding set, sets the permitted and effective sets (and, for a
//! `--user`, the inheritable and ambient sets, which is how a non-root program keeps them over
//! exec), so the command holds that set and nothing more.

use std::ffi::{CString, OsString};
use std::os::fd::AsFd as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cap_trace_common::{Traced, traced_kind};
use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::kernel::{Probe, ProbeOptions};
use crate::linux::caps::{Cap, to_mask};
use crate::linux::hook::Backend;
use crate::model::profile::{Environment, Profile, TraceInfo, Workload, WorkloadKind, rfc3339};
use crate::model::record::{Check, Losses, Outcome};
use crate::model::text;
use crate::model::verify::{Ending, HealthResult};
use crate::session::cgroup::{self, Leaf};
use crate::session::health::{self, HealthCheck};
use crate::session::privilege;
use crate::session::tracer::{LAUNCHER_COMM, Migration, Tracer};
use crate::session::{OnCheck, SessionError};

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
    /// Run the command with exactly these capabilities.
    pub caps: Option<Vec<Cap>>,
    /// How to tell that the command (a server) works.
    pub health: Option<HealthCheck>,
    pub probe: ProbeOptions,
    /// Send the command's stdout to stderr (the profile goes to stdout).
    pub command_stdout_to_stderr: bool,
    pub verbose: bool,
    /// The live view of the learning run, if asked for.
    pub on_check: Option<OnCheck>,
}

/// What a learning run produced, plus how long attaching took (for verbose output and
/// benchmarks), and the launcher, for more runs.
pub struct RunResult {
    pub profile: Profile,
    pub attach_ms: u64,
    pub launcher: Launcher,
}

/// Where a run's output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Inherit,
    /// stdout to stderr (the profile goes to stdout).
    ToStderr,
    /// Kept (the last lines), not shown: verification runs.
    Capture,
}

/// One run of a command.
pub struct Spec<'a> {
    pub command: &'a [OsString],
    pub user: Option<User>,
    pub caps: Option<&'a [Cap]>,
    pub output: Output,
    pub health: Option<&'a HealthCheck>,
    /// Stop it when it runs longer (verification runs).
    pub timeout: Option<Duration>,
    /// Ctrl-C ends the run (and tells the caller) instead of being passed on.
    pub interruptible: bool,
}

/// What one run showed.
pub struct Ran {
    pub checks: Vec<Check>,
    pub outcomes: Vec<Outcome>,
    pub status: Option<std::process::ExitStatus>,
    pub ending: Option<Ending>,
    pub health: Option<HealthResult>,
    /// Users the processes ran as when the health check passed.
    pub uids: Vec<u32>,
    /// The last lines it printed (captured runs).
    pub output: String,
    pub duration: Duration,
    /// Ctrl-C or SIGTERM ended it (interruptible runs).
    pub interrupted: bool,
    /// What was lost of its events: its own cgroup's losses, and those the kernel side could
    /// not count against a cgroup while it ran (it was the only one traced).
    pub losses: Losses,
    /// Processes that left its cgroup (their later checks are not its).
    pub warnings: Vec<String>,
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

/// The loaded probe, ready to trace runs of commands.
pub struct Launcher {
    tracer: Tracer,
    root: std::path::PathBuf,
    pub backend: Backend,
    pub hook: String,
    runs: u32,
    /// The live view of the next runs, with the name their checks are shown under.
    live: Option<(String, OnCheck)>,
}

impl Launcher {
    /// Loads and attaches the probe.
    pub fn open(probe: &ProbeOptions, verbose: bool) -> Result<(Launcher, u64), SessionError> {
        let started = Instant::now();
        let _ = privilege::host_bounding();
        let probe = Probe::load(probe)?;
        let attach_ms = started.elapsed().as_millis() as u64;
        if verbose {
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
        Ok((
            Launcher {
                tracer: Tracer::new(probe)?,
                root: cgroup::cgroup2_root()?,
                backend,
                hook,
                runs: 0,
                live: None,
            },
            attach_ms,
        ))
    }

    /// Runs a command in a leaf cgroup of its own, traced until it and its descendants exit
    /// (or its health check passes, or its time is up), and returns what it showed.
    pub async fn run(&mut self, spec: &Spec<'_>) -> Result<Ran, SessionError> {
        let Some(program) = spec.command.first() else {
            return Err(SessionError::usage(
                "no command given: usage is `cap-trace run [OPTIONS] -- CMD [ARGS...]`",
            ));
        };
        self.runs += 1;
        let leaf = Leaf::create(&format!("run-{}-{}", std::process::id(), self.runs))?;
        self.tracer.probe.trace_cgroup(
            leaf.id,
            Traced {
                kind: traced_kind::EXACT,
                level: cgroup::level(&self.root, &leaf.path),
            },
        )?;
        let unattributed_before = self.tracer.stats()?.losses_unattributed;
        if self.live.is_some() {
            self.tracer.keep_fresh();
        }
        let started = Instant::now();
        let output = Arc::new(Mutex::new(Vec::new()));
        let child = spawn_in_leaf(spec, program, &leaf, &output)?;
        let mut live = Live {
            leaf: leaf.id,
            view: self.live.as_mut(),
        };
        let mut waited = wait(child, &mut self.tracer, &leaf.path, spec, &mut live).await?;
        let duration = started.elapsed();
        let stats = self.tracer.stats()?;
        let snapshot = self.tracer.snapshot()?;
        // What the ring buffer held when the last process exited.
        live.report(&mut self.tracer);
        let (checks, outcomes) = self.tracer.records_in(&snapshot, &[leaf.id]);
        let mut losses = snapshot.losses_of(&[leaf.id]);
        losses.ring_buffer = losses.ring_buffer.saturating_add(
            stats
                .losses_unattributed
                .saturating_sub(unattributed_before),
        );
        let warnings = self
            .tracer
            .collector
            .migrations_from(&[leaf.id])
            .map(Migration::warning)
            .collect();
        // The leaf goes; so does what the kernel and the event stream hold for it.
        let _ = self.tracer.probe.untrace_cgroup(leaf.id);
        self.tracer.probe.forget(&[leaf.id])?;
        self.tracer.collector.forget(&[leaf.id]);
        drop(leaf);
        if waited.health.is_none()
            && let Some(check) = spec.health
        {
            // It ended before its health check passed: one more look, now.
            let deadline = Instant::now() + check.timeout.min(Duration::from_secs(10));
            let env = health_env(None);
            waited.health = Some(
                health::poll(check, deadline, |left| {
                    let env = env.clone();
                    async move { health::on_host(&check.command, &env, left).await }
                })
                .await,
            );
        }
        let captured = output.lock().map(|o| o.clone()).unwrap_or_default();
        Ok(Ran {
            checks,
            outcomes,
            status: waited.status,
            ending: waited.ending,
            health: waited.health,
            uids: waited.uids,
            output: health::tail(&String::from_utf8_lossy(&captured)),
            duration,
            interrupted: waited.interrupted,
            losses,
            warnings,
        })
    }
}

/// The live view of one run: its leaf cgroup, and where its fresh checks go.
struct Live<'a> {
    leaf: u64,
    view: Option<&'a mut (String, OnCheck)>,
}

impl Live<'_> {
    /// Shows each kind of check the run made for the first time since the last call.
    fn report(&mut self, tracer: &mut Tracer) {
        let Some((name, on_check)) = self.view.as_deref_mut() else {
            return;
        };
        for (cgroup, check) in tracer.fresh_checks() {
            if cgroup == self.leaf {
                on_check(name, &check);
            }
        }
    }
}

/// The environment of a host health check: the workload's main process.
fn health_env(pid: Option<u32>) -> Vec<(String, String)> {
    pid.map(|p| vec![("CAP_TRACE_PID".to_owned(), p.to_string())])
        .unwrap_or_default()
}

/// Runs the command once, traced, as the learning run of `cap-trace run`, and returns its
/// profile (and the launcher, for verification runs).
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
    let display = opts
        .command
        .iter()
        .map(|a| text::from_bytes(a.as_bytes()))
        .collect::<Vec<_>>();
    let (mut launcher, attach_ms) = Launcher::open(&opts.probe, opts.verbose)?;
    // The live view shows the learning run's checks under the name its profile has.
    launcher.live = opts.on_check.map(|f| (display.join(" "), f));
    let ran = launcher
        .run(&Spec {
            command: &opts.command,
            user: opts.user,
            caps: opts.caps.as_deref(),
            output: if opts.command_stdout_to_stderr {
                Output::ToStderr
            } else {
                Output::Inherit
            },
            health: opts.health.as_ref(),
            timeout: None,
            interruptible: false,
        })
        .await?;
    // Verification runs are not shown.
    launcher.live = None;
    launcher.tracer.stop_fresh();
    let losses = ran.losses;
    if opts.verbose {
        eprintln!("cap-trace: losses: {losses:?}");
    }
    let total_checks = ran.checks.iter().map(|c| c.count).sum();
    let stopped = ran.ending == Some(Ending::Stopped);
    let workload = Workload {
        kind: Some(WorkloadKind::Command),
        name: display.join(" "),
        command: Some(display),
        exit_status: ran.status.and_then(|s| s.code()).filter(|_| !stopped),
        exit_signal: ran.status.and_then(|s| s.signal()).filter(|_| !stopped),
        stopped,
        health: ran.health,
        uids: ran.uids,
        // Its bounding set: the one asked for, else cap-trace's own.
        bounding: opts.caps.clone().or_else(privilege::host_bounding),
        capabilities: opts.caps.clone(),
        userns_level: own_userns_level(),
        ..Default::default()
    };
    let trace = TraceInfo {
        backend: launcher.backend,
        hook: launcher.hook.clone(),
        kernel: crate::kernel::kernel_release(),
        started: rfc3339(started_wall),
        duration_ms: started.elapsed().as_millis() as u64,
        complete: losses.total() == 0,
        incomplete: Vec::new(),
        losses,
        total_checks,
        host_bounding: privilege::host_bounding(),
    };
    let mut warnings = ran.warnings;
    if let Some(h) = workload.health.as_ref().filter(|h| !h.passed) {
        warnings.push(format!(
            "the health check `{}` did not pass ({} attempts): the run is not a success",
            h.command, h.attempts
        ));
    }
    Ok(RunResult {
        profile: Profile {
            // The command ran in cap-trace's network namespace (unless it made its own).
            environment: Environment {
                engine_version: None,
                network: crate::session::sysctl::network_of(None),
                host: crate::session::sysctl::host(),
            },
            ..Profile::new(workload, trace, ran.checks, ran.outcomes, warnings)
        },
        attach_ms,
        launcher,
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
/// [`LAUNCHER_COMM`] (its own checks are told apart), joins the leaf, applies the capability
/// set, and drops to the user.
fn spawn_in_leaf(
    spec: &Spec,
    program: &OsString,
    leaf: &Leaf,
    captured: &Arc<Mutex<Vec<u8>>>,
) -> Result<tokio::process::Child, SessionError> {
    let mut command = tokio::process::Command::new(program);
    command.args(&spec.command[1..]);
    match spec.output {
        Output::Inherit => {}
        Output::ToStderr => {
            let stderr = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(SessionError::runtime)?;
            command.stdout(std::process::Stdio::from(stderr));
        }
        Output::Capture => {
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
        }
    }
    let procs = CString::new(leaf.procs_file().as_os_str().as_bytes())
        .map_err(|_| SessionError::runtime("cgroup path contains a NUL byte"))?;
    let marker = CString::new(LAUNCHER_COMM).expect("no NUL");
    let user = spec.user;
    let set = spec.caps.map(to_mask);
    let last_cap = privilege::last_cap();
    // SAFETY: only async-signal-safe calls (prctl, open, write, close, set*id, capset) between
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
            // Still the launcher (its name marks these checks): the set, then the user.
            if let Some(mask) = set {
                restrict_bounding(mask, last_cap)?;
            }
            if let Some(user) = user {
                drop_to(user, set.is_some())?;
            }
            if let Some(mask) = set {
                hold_exactly(mask, user.is_some(), last_cap)?;
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SessionError::usage(format!(
            "cannot run `{}`: command not found",
            program.to_string_lossy()
        )),
        std::io::ErrorKind::PermissionDenied => SessionError::usage(format!(
            "cannot run `{}`: permission denied",
            program.to_string_lossy()
        )),
        _ => SessionError::runtime(format!("cannot run `{}`: {e}", program.to_string_lossy())),
    })?;
    if let Some(out) = child.stdout.take() {
        capture(out, captured.clone());
    }
    if let Some(err) = child.stderr.take() {
        capture(err, captured.clone());
    }
    Ok(child)
}

/// Keeps the last bytes a pipe delivers.
fn capture(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Ok(mut kept) = into.lock() {
                kept.extend_from_slice(&buf[..n]);
                let excess = kept.len().saturating_sub(8192);
                kept.drain(..excess);
            }
        }
    });
}

/// Between fork and exec: drops every capability outside `mask` from the bounding set (which
/// needs SETPCAP, still held).
fn restrict_bounding(mask: u64, last_cap: u32) -> std::io::Result<()> {
    for cap in 0..=last_cap.min(63) {
        // SAFETY: plain prctl.
        if mask & (1 << cap) == 0
            && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Between fork and exec: becomes `user`, keeping the permitted set over the uid change when a
/// set is to be held.
fn drop_to(user: User, keep_caps: bool) -> std::io::Result<()> {
    // SAFETY: plain prctl and set*id calls.
    unsafe {
        if keep_caps && libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let gid = user.gid;
        if libc::setgroups(1, &raw const gid) != 0
            || libc::setgid(user.gid) != 0
            || libc::setuid(user.uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Between fork and exec: permitted and effective become `mask`; for a non-root user also the
/// inheritable and ambient sets, without which the set does not survive exec.
fn hold_exactly(mask: u64, non_root: bool, last_cap: u32) -> std::io::Result<()> {
    privilege::capset(mask, mask, if non_root { mask } else { 0 })?;
    if non_root {
        for cap in (0..=last_cap.min(63)).filter(|c| mask & (1 << c) != 0) {
            // SAFETY: plain prctl.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    libc::c_ulong::from(cap),
                    0,
                    0,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// How a run was waited for.
struct Waited {
    status: Option<std::process::ExitStatus>,
    ending: Option<Ending>,
    health: Option<HealthResult>,
    uids: Vec<u32>,
    interrupted: bool,
}

/// Grace time between SIGTERM and SIGKILL when cap-trace stops a run.
const GRACE: Duration = Duration::from_secs(5);

/// Waits for the command and then for its cgroup to empty (its descendants may outlive it),
/// reading events meanwhile. Polls its health check; once that passes, stops it (a server that
/// has shown it works), and when it fails or the run's time is up, stops it too. Ctrl-C and
/// SIGTERM are passed on (a second one kills), or end an interruptible run.
async fn wait(
    mut child: tokio::process::Child,
    tracer: &mut Tracer,
    cgroup_path: &Path,
    spec: &Spec<'_>,
    live: &mut Live<'_>,
) -> Result<Waited, SessionError> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(SessionError::runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(SessionError::runtime)?;
    let started = Instant::now();
    let mut interrupts = 0;
    let mut status = None;
    let mut empty = None;
    let mut health_task = spec.health.map(|check| {
        let check = check.clone();
        let env = health_env(child.id());
        tokio::spawn(async move {
            let deadline = Instant::now() + check.timeout;
            health::poll(&check, deadline, |left| {
                let env = env.clone();
                let command = check.command.clone();
                async move { health::on_host(&command, &env, left).await }
            })
            .await
        })
    });
    let mut health = None;
    let mut uids = Vec::new();
    let mut ending = None;
    let mut interrupted = false;
    let mut kill_at: Option<Instant> = None;
    let timeout = spec.timeout.map(|t| started + t);
    loop {
        if status.is_some() && empty.is_none() {
            // The command is gone; its descendants may not be. Wait for the cgroup to empty.
            let path = cgroup_path.to_path_buf();
            empty = Some(tokio::task::spawn_blocking(move || {
                cgroup::wait_empty(&path)
            }));
        }
        let until_kill = kill_at.map(|at| at.saturating_duration_since(Instant::now()));
        let until_timeout = timeout
            .filter(|_| ending.is_none())
            .map(|at| at.saturating_duration_since(Instant::now()));
        tokio::select! {
            result = child.wait(), if status.is_none() => {
                status = Some(result.map_err(SessionError::runtime)?);
            }
            done = async { empty.as_mut().expect("set").await }, if empty.is_some() => {
                done.map_err(SessionError::runtime)??;
                break;
            }
            result = tracer.pump() => {
                result.map_err(SessionError::runtime)?;
                live.report(tracer);
            }
            result = async { health_task.as_mut().expect("set").await }, if health_task.is_some() => {
                health_task = None;
                let result = result.map_err(SessionError::runtime)?;
                if cgroup::populated(cgroup_path).unwrap_or(false) {
                    if result.passed {
                        // A server that answered: who its processes run as, then stop it.
                        uids = cgroup::uids(cgroup_path);
                        ending = Some(Ending::Stopped);
                        signal_all(cgroup_path, libc::SIGTERM);
                    } else {
                        ending = Some(Ending::TimedOut);
                        cgroup::kill_all(cgroup_path);
                    }
                    kill_at = Some(Instant::now() + GRACE);
                }
                health = Some(result);
            }
            () = tokio::time::sleep(until_kill.unwrap_or_default()), if until_kill.is_some() => {
                cgroup::kill_all(cgroup_path);
                kill_at = None;
            }
            () = tokio::time::sleep(until_timeout.unwrap_or_default()), if until_timeout.is_some() => {
                ending = Some(Ending::TimedOut);
                cgroup::kill_all(cgroup_path);
            }
            _ = sigint.recv() => interrupts += on_signal(cgroup_path, spec, interrupts, libc::SIGINT, &mut interrupted),
            _ = sigterm.recv() => interrupts += on_signal(cgroup_path, spec, interrupts, libc::SIGTERM, &mut interrupted),
        }
    }
    if let Some(task) = health_task {
        task.abort();
    }
    let status = status.expect("command status");
    let ending = ending.or_else(|| {
        status
            .code()
            .map(|status| Ending::Exited { status })
            .or_else(|| status.signal().map(|signal| Ending::Signalled { signal }))
    });
    Ok(Waited {
        status: Some(status),
        ending,
        health,
        uids,
        interrupted,
    })
}

/// Ctrl-C or SIGTERM: passed on to the traced processes (a second one kills them), or, in an
/// interruptible run, the end of it.
fn on_signal(
    cgroup: &Path,
    spec: &Spec,
    interrupts: u32,
    signal: i32,
    interrupted: &mut bool,
) -> u32 {
    if spec.interruptible {
        *interrupted = true;
        cgroup::kill_all(cgroup);
    } else if interrupts == 0 {
        signal_all(cgroup, signal);
    } else {
        cgroup::kill_all(cgroup);
    }
    1
}

/// Sends a signal to every process in the cgroup.
fn signal_all(cgroup: &Path, signal: i32) {
    if let Ok(procs) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, signal) };
        }
    }
}
