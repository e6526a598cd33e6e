//! `cap-trace --container NAME` and `--all-containers`: follow containers, from before they
//! start until they exit (or `--duration`, Ctrl-C, SIGTERM), and profile each one.
//!
//! A container that is not running yet is caught without missing a check, wherever its cgroup
//! is and whenever its parent was created: while watching, the kernel side records every task
//! of a cgroup created since the watch began (cgroup ids only grow: `Config::new_after`) under
//! that cgroup. Userspace maps each new cgroup to a container (path naming scheme + engine
//! lookup), keeps what belongs to the containers asked for, and tells the kernel side to ignore
//! the rest. Containers already running are traced from when cap-trace attaches, and their
//! profiles say they are incomplete.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cap_trace_common::{Traced, traced_kind};
use tokio::signal::unix::{SignalKind, signal};

use crate::kernel::{Probe, ProbeOptions};
use crate::linux::caps::Cap;
use crate::model::profile::{Environment, Profile, TraceInfo, rfc3339};
use crate::model::record::{Check, Outcome};
use crate::model::text;
use crate::model::verify::HealthResult;
use crate::session::cgroup;
use crate::session::container::engine::Api;
use crate::session::container::engine::not_running_hint;
use crate::session::container::path::{self as cpath, CgroupContainer, Runtime};
use crate::session::container::recreate::{self, PrivateService};
use crate::session::container::{self, ContainerInfo, Engines, Lookup};
use crate::session::health::{self, HealthCheck};
use crate::session::status::StatusLine;
use crate::session::sysctl;
use crate::session::tracer::{Migration, Snapshot, Tracer};
use crate::session::{MAX_WAITING_CHECKS, OnCheck, SessionError};

pub struct FollowOptions {
    /// Names or ids asked for (empty with `all`).
    pub targets: Vec<String>,
    pub all: bool,
    pub duration: Option<Duration>,
    /// At most this long, but ending as soon as every followed container has exited (a
    /// verification run: a container that does not end in time is judged as timed out).
    pub timeout: Option<Duration>,
    pub wait: Duration,
    pub probe: ProbeOptions,
    pub engine_socket: Option<PathBuf>,
    pub verbose: bool,
    /// With `all`: only containers carrying every one of these labels.
    pub labels: Vec<(String, String)>,
    /// The live view, if asked for.
    pub on_check: Option<OnCheck>,
    /// Keep a status line on stderr (a terminal): elapsed and remaining time, containers,
    /// checks, losses, redrawn in place.
    pub status_line: bool,
    /// How to tell that a followed container works (a server), once it runs.
    pub health: Option<HealthCheck>,
    /// End as soon as every followed container's health check has an answer (verification
    /// follows; without `--duration`).
    pub end_when_healthy: bool,
    /// An engine API is needed (to exec in containers, to create them): without a socket,
    /// serve podman's API privately.
    pub need_api: bool,
    /// Keep each container's whole engine record (to re-create it for verification).
    pub keep_records: bool,
}

/// One container being profiled (all its incarnations: restarts keep one profile).
struct Tracked {
    /// What the user asked for (name or id), or the identity with `--all-containers`.
    target: String,
    info: Option<ContainerInfo>,
    runtime: Option<Runtime>,
    pod_uid: Option<String>,
    /// Every cgroup id its checks were recorded under.
    cgroups: BTreeSet<u64>,
    /// The container cgroup while it runs: (id, path).
    live: Option<(u64, PathBuf)>,
    /// Its cgroup when it was named before it ran (the engine said "created", no process in
    /// it yet): (id, path, since when). It becomes live once a process is in it, and until
    /// then the container is starting, not gone: never retired.
    starting: Option<(u64, PathBuf, Instant)>,
    /// Container cgroups seen (one per start).
    incarnations: BTreeSet<u64>,
    caps: Option<Vec<Cap>>,
    /// Its bounding set, read from its main process while it ran.
    bounding: Option<Vec<Cap>>,
    seccomp: Option<bool>,
    starts: u32,
    /// Losses the kernel side could not count against a cgroup while this was followed: they
    /// may be this container's.
    unattributed: u64,
    /// Some run of it was seen from its first process.
    seen_from_start: bool,
    /// A run of it was already running when cap-trace attached.
    attached_late: bool,
    /// How long that run had been running (when known).
    late_by: Option<Duration>,
    /// The network sysctls of its network namespace (see `Environment::network`).
    network: std::collections::BTreeMap<String, String>,
    /// Its health check: running, or how it went.
    health_started: bool,
    health: Option<HealthResult>,
    /// Users its processes ran as when the health check passed.
    uids: Vec<u32>,
    /// Still running when its health check passed.
    served: bool,
    /// A copy made for verification: its comings and goings are told in one line per run
    /// by verification, not here (unless --verbose).
    quiet: bool,
}

impl Tracked {
    fn new(target: String) -> Tracked {
        Tracked {
            target,
            info: None,
            runtime: None,
            pod_uid: None,
            cgroups: BTreeSet::new(),
            live: None,
            starting: None,
            incarnations: BTreeSet::new(),
            caps: None,
            bounding: None,
            seccomp: None,
            starts: 0,
            unattributed: 0,
            seen_from_start: false,
            attached_late: false,
            late_by: None,
            network: std::collections::BTreeMap::new(),
            health_started: false,
            health: None,
            uids: Vec::new(),
            served: false,
            quiet: false,
        }
    }

    /// Why its profile is incomplete, if it is: no run was seen from its first process.
    fn incomplete(&self) -> Option<String> {
        if self.seen_from_start || !self.attached_late {
            return None;
        }
        let when = match self.late_by {
            Some(d) => format!(
                "attached {:.1} s after the container started",
                d.as_secs_f64()
            ),
            None => "attached after the container started".to_owned(),
        };
        Some(format!(
            "{when}: its checks before that were not seen; for a complete profile, restart the container while cap-trace runs"
        ))
    }

    fn matches(&self, info: &ContainerInfo) -> bool {
        if let Some(known) = &self.info {
            return known.id == info.id;
        }
        info.name == self.target
            || info.id == self.target
            || (self.target.len() >= 6 && info.id.starts_with(&self.target))
    }
}

pub(crate) struct Session {
    root: PathBuf,
    pub(crate) engines: Engines,
    pub(crate) tracer: Tracer,
    tracked: Vec<Tracked>,
    all: bool,
    labels: Vec<(String, String)>,
    /// Keep watching for restarts after a container exits (`--all-containers`, `--duration`).
    follow_restarts: bool,
    verbose: bool,
    /// cgroup id → what it is, for cgroups seen in events.
    known: HashMap<u64, Option<usize>>,
    /// cgroup id → path, for cgroups seen (inotify, scans).
    paths: HashMap<u64, PathBuf>,
    watching: bool,
    /// While watching: cgroups with a higher id are new (see [`cgroup::id_watermark`]).
    watch_after: u64,
    /// When the first watch began (boot time), to say how late a running container was
    /// attached.
    watch_started: Option<Duration>,
    /// containerd's namespaces (`ctr run` containers are `/<namespace>/<id>`), and when asked.
    containerd_namespaces: (Vec<String>, Option<Instant>),
    /// Unix time the trace started, minus a margin: where event histories are read from.
    since: u64,
    /// cgroups with checks that could not be named yet, and since when.
    pending: HashMap<u64, Instant>,
    /// When the engines were last asked about each pending cgroup's container.
    asked: HashMap<u64, Instant>,
    /// Containers the engines said do not exist (other engines' containers), by id, and when:
    /// not asked about again.
    absent: HashMap<String, Instant>,
    /// What the engine said about containers when their cgroup appeared (before a `--rm`
    /// container can vanish), by container id, and when.
    created: HashMap<String, (ContainerInfo, Instant)>,
    /// The end of `--duration`: from then on the engines are not asked (see
    /// [`Session::past_end`]).
    ends_at: Option<Instant>,
    last_scan: Instant,
    /// cgroups found not to be followed that the kernel side ignores, with their paths: the
    /// entry goes when the cgroup does.
    ignored: HashMap<u64, PathBuf>,
    /// cgroups the kernel side holds entries for that no event named (an event lost, or a
    /// CPU adding repeats of a forgotten cgroup back): classified like the others.
    unnamed: BTreeSet<u64>,
    /// When the kernel's maps were last swept of cgroups not followed.
    last_sweep: Instant,
    /// The kernel side's count of losses it could not attribute, as last read.
    unattributed_seen: u64,
    /// The live view, and the fresh checks of cgroups not named yet.
    on_check: Option<OnCheck>,
    fresh_waiting: Vec<(u64, Check)>,
    /// The status line on a terminal (messages clear it first).
    status: StatusLine,
    /// Keep each container's whole engine record (`--verify` re-creates it from that).
    keep_records: bool,
}

/// How often the kernel's maps are swept and the session's own bookkeeping pruned of cgroups
/// that are not followed or no longer exist.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How long a container named before it ran may stay with an empty cgroup and still count as
/// starting (an engine under load may take seconds between creating and starting it).
const STARTING_AT_MOST: Duration = Duration::from_secs(60);

/// How often, at most, the engines are asked about a container they cannot name yet: a
/// fifth of the time it has waited (a new one on every tick: a short-lived container must be
/// named before it is gone), up to this.
const ASK_EVERY: Duration = Duration::from_secs(1);

/// How long one tick may spend asking engines for names: what is left waits for the next
/// tick, so that events, signals and saving are never held up by naming.
const ASK_BUDGET: Duration = Duration::from_millis(200);

impl Session {
    /// Every message of a session goes out here: one place decides where they go. They name
    /// containers as their engines and labels do: shown escaped.
    pub(crate) fn say(&self, message: &str) {
        self.clear_status();
        crate::session::say(message);
    }

    /// Takes the status line off the terminal, if it is on it.
    pub(crate) fn clear_status(&self) {
        self.status.clear();
    }

    /// Draws the status line in place of the last, when one is due (at most once a second):
    /// how long the trace has run (and has left), the containers, the checks counted and the
    /// losses, cut to the terminal's width.
    pub(crate) fn draw_status(&self, elapsed: Duration, left: Option<Duration>) {
        if !self.status.due() {
            return;
        }
        let named = self.tracked.iter().filter(|t| t.info.is_some()).count();
        let running = self.tracked.iter().filter(|t| t.live.is_some()).count();
        let what = format!(
            "{named} container{} ({running} running)",
            if named == 1 { "" } else { "s" }
        );
        let stats = self.tracer.stats().unwrap_or_default();
        self.status.draw(elapsed, left, &what, &stats);
    }

    /// Starts recording every task of a cgroup created from now on.
    fn watch(&mut self) -> Result<(), SessionError> {
        if self.watching {
            return Ok(());
        }
        self.watch_after = cgroup::id_watermark(&self.root);
        self.tracer
            .probe
            .trace_new_cgroups(Some(self.watch_after))?;
        if self.watch_started.is_none() {
            self.watch_started = container::boot_time();
        }
        self.watching = true;
        Ok(())
    }

    fn unwatch(&mut self) -> Result<(), SessionError> {
        self.tracer.probe.trace_new_cgroups(None)?;
        self.watching = false;
        Ok(())
    }

    /// The container a cgroup path (relative to the root) belongs to: by the engines' naming
    /// schemes, else as one of containerd's `/<namespace>/<id>`.
    fn recognise(&mut self, rel: &str) -> Option<CgroupContainer> {
        if let Some(found) = cpath::parse(rel) {
            return Some(found);
        }
        self.engines.ctr.as_ref()?;
        if rel.matches('/').count() < 2 {
            return None;
        }
        let (namespaces, asked) = &self.containerd_namespaces;
        let found = cpath::parse_containerd(rel, namespaces);
        if found.is_some() || asked.is_some_and(|a| a.elapsed() < Duration::from_secs(2)) {
            return found;
        }
        // A namespace made since containerd was last asked.
        self.containerd_namespaces = (self.engines.containerd_namespaces(), Some(Instant::now()));
        cpath::parse_containerd(rel, &self.containerd_namespaces.0)
    }

    /// The tracked entry a container belongs to (a new one with `--all-containers`).
    fn index_for(&mut self, info: &ContainerInfo, pod_uid: Option<&str>) -> Option<usize> {
        if let Some(i) = self.tracked.iter().position(|t| t.matches(info)) {
            return Some(i);
        }
        if !self.all {
            return None;
        }
        if !self
            .labels
            .iter()
            .all(|(k, v)| info.labels.get(k).is_some_and(|l| l == v))
        {
            return None;
        }
        let identity = container::identity(info, pod_uid);
        Some(
            match self.tracked.iter().position(|t| t.target == identity) {
                Some(i) => i,
                None => {
                    self.tracked.push(Tracked::new(identity));
                    self.tracked.len() - 1
                }
            },
        )
    }

    /// A container (running, or already gone) whose checks may be recorded under `leaf`: keep
    /// them if it is one we follow, and trace its cgroup while it runs.
    fn adopt(
        &mut self,
        leaf: Option<u64>,
        found: &CgroupContainer,
        mut info: ContainerInfo,
    ) -> Result<Option<usize>, SessionError> {
        let Some(index) = self.index_for(&info, found.pod_uid.as_deref()) else {
            return Ok(None);
        };
        let path = self.root.join(found.cgroup.trim_start_matches('/'));
        let cgroup_id = cgroup::cgroup_id(&path).ok();
        let running = info.running && cgroup::populated(&path).unwrap_or(false);
        let t = &mut self.tracked[index];
        if let Some(leaf) = leaf {
            t.cgroups.insert(leaf);
            self.known.insert(leaf, Some(index));
        }
        t.runtime = match found.runtime {
            Runtime::Unknown => Runtime::of_engine(&info.engine).or(Some(Runtime::Unknown)),
            r => Some(r),
        };
        t.pod_uid.clone_from(&found.pod_uid);
        // One incarnation per container cgroup (a restart creates a new one).
        let incarnation = cgroup_id.or(leaf).unwrap_or_default();
        let new_start = t.incarnations.insert(incarnation);
        if new_start {
            t.starts += 1;
            // A cgroup older than the watch: it may have run before cap-trace looked.
            if incarnation > self.watch_after || self.watch_after == 0 {
                t.seen_from_start = true;
            } else {
                let ran = info.pid.filter(|_| info.running).and_then(|pid| {
                    Some(
                        self.watch_started?
                            .saturating_sub(container::process_start(pid)?),
                    )
                });
                if !t.attached_late {
                    t.attached_late = true;
                    t.late_by = ran;
                }
            }
            // What it runs with: from the kernel while it runs, else from the engine.
            let held = info
                .pid
                .filter(|_| info.running)
                .map(container::process_security)
                .unwrap_or_default();
            t.caps = held.effective.or_else(|| info.configured_caps());
            t.bounding = held.bounding;
            t.seccomp = held.seccomp.or_else(|| info.configured_seccomp());
            // What decides whether it needs a capability at all, from its network namespace.
            if t.network.is_empty()
                && let Some(pid) = info.pid.filter(|_| info.running)
            {
                t.network = sysctl::network_of(Some(pid));
            }
        }
        let restart = new_start && t.starts > 1;
        let name = info.name.clone();
        let t_quiet = t.quiet;
        if !self.keep_records {
            // Only verification re-creates containers from it; the daemon follows thousands.
            info.record = None;
        }
        t.info = Some(info);
        match (running, cgroup_id) {
            (true, Some(id)) if t.live.as_ref().is_none_or(|(live, _)| *live != id) => {
                self.make_live(index, id, &path)?;
            }
            (false, Some(id)) if t.live.is_none() => {
                t.starting = Some((id, path.clone(), Instant::now()));
            }
            _ => {}
        }
        if new_start && (self.verbose || !t_quiet) {
            let what = if restart {
                "following restarted"
            } else {
                "tracing"
            };
            if self.verbose {
                self.say(&format!("{what} container {name} ({})", path.display()));
            } else {
                self.say(&format!("{what} container {name}"));
            }
        }
        Ok(Some(index))
    }

    /// Looks up containers that are already running.
    fn attach_running(&mut self) -> Result<(), SessionError> {
        let candidates: Vec<String> = if self.all {
            self.engines.running()
        } else {
            self.tracked
                .iter()
                .filter(|t| t.live.is_none())
                .map(|t| t.target.clone())
                .collect()
        };
        for name in candidates {
            let Some(info) = self.engines.inspect(&name).filter(|i| i.running) else {
                continue;
            };
            let Some(found) = info
                .pid
                .and_then(cgroup::process_cgroup)
                .and_then(|rel| self.recognise(&rel))
            else {
                continue;
            };
            self.adopt(None, &found, info)?;
        }
        Ok(())
    }

    /// New cgroups: ask the engine about containers at once, while they certainly exist.
    fn on_created(&mut self, paths: &[PathBuf]) {
        for path in paths {
            if self.past_end() {
                return;
            }
            let Some(rel) = path
                .strip_prefix(&self.root)
                .ok()
                .map(|r| format!("/{}", r.display()))
            else {
                continue;
            };
            let Some(found) = self.recognise(&rel) else {
                continue;
            };
            if self.created.contains_key(&found.id) {
                continue;
            }
            if let Some(info) = self.engines.inspect_found(&found) {
                self.created
                    .insert(found.id.clone(), (info, Instant::now()));
            }
        }
    }

    /// Path of a cgroup id (from inotify, else a fresh scan).
    fn path_of(&mut self, id: u64) -> Option<PathBuf> {
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        if self.last_scan.elapsed() > Duration::from_millis(200) {
            self.last_scan = Instant::now();
            cgroup::scan(&self.root, cgroup::TREE_DEPTH, &mut self.paths);
        }
        self.paths.get(&id).cloned()
    }

    /// Classifies cgroups that produced checks since the last look. A cgroup that looks like a
    /// container the engine cannot name yet is retried for a while before it is dropped; while
    /// no engine answers at all, it waits for one to answer again (its checks are kept).
    /// Naming never holds up the rest: each container is asked about less often the longer it
    /// waits (see [`ASK_EVERY`]), cgroups never asked first; asking stops for this tick once
    /// [`ASK_BUDGET`] is spent; a container the engines said does not exist is not asked about
    /// again.
    pub(crate) fn classify_new_cgroups(&mut self) -> Result<(), SessionError> {
        const GIVE_UP: Duration = Duration::from_secs(10);
        let started = Instant::now();
        let mut new: Vec<u64> = self
            .tracer
            .collector
            .cgroups()
            .chain(std::mem::take(&mut self.unnamed))
            .filter(|id| !self.known.contains_key(id))
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        // Least recently asked first (never asked before all): none waits behind the others.
        new.sort_by_key(|id| self.asked.get(id).copied());
        let mut unrelated = Vec::new();
        for id in new {
            let first_seen = *self.pending.entry(id).or_insert_with(Instant::now);
            let path = self.path_string(id);
            let found = path.as_deref().and_then(|p| self.recognise(p));
            let decided = match (&path, found) {
                // A cgroup that is not a container's (a service, a conmon, a parent).
                (Some(_), None) => Some(None),
                (None, _) => None,
                // Said not to exist before: decided without asking again.
                (Some(_), Some(found)) if self.absent.contains_key(&found.id) => Some(None),
                (Some(_), Some(_))
                    if started.elapsed() >= ASK_BUDGET
                        || self.asked.get(&id).is_some_and(|at| {
                            at.elapsed() < (first_seen.elapsed() / 5).min(ASK_EVERY)
                        }) =>
                {
                    self.unnamed.insert(id);
                    continue;
                }
                (Some(rel), Some(found)) => match self.name_asking(id, rel, &found) {
                    Lookup::Found(info) => {
                        let adopted = self.adopt(Some(id), &found, *info)?;
                        if adopted.is_none() {
                            // Not followed (filtered out): nothing to keep for it.
                            self.created.remove(&found.id);
                        }
                        Some(adopted)
                    }
                    Lookup::Absent if first_seen.elapsed() > GIVE_UP => {
                        self.absent.insert(found.id.clone(), Instant::now());
                        log::debug!(
                            "cgroup {id}: container {} is not known to any engine; dropped",
                            found.id
                        );
                        Some(None)
                    }
                    Lookup::Absent => None,
                    Lookup::Unreachable => {
                        // No engine answers: wait for one, however long it takes.
                        self.pending.insert(id, Instant::now());
                        continue;
                    }
                },
            };
            let decided = match decided {
                Some(d) => d,
                None if first_seen.elapsed() > GIVE_UP => {
                    log::debug!("cgroup {id}: no container could be named for it; dropped");
                    None
                }
                None => continue,
            };
            self.pending.remove(&id);
            self.asked.remove(&id);
            if decided.is_none() {
                unrelated.push(id);
            }
            self.known.insert(id, decided);
        }
        if !unrelated.is_empty() {
            // Services and other people's containers: drop what they produced, and have the
            // kernel side stop recording them.
            self.tracer.probe.forget(&unrelated)?;
            self.tracer.collector.forget(&unrelated);
            for id in unrelated {
                self.ignore(id);
            }
        }
        Ok(())
    }

    /// The path of a cgroup below the root: from inotify (whole paths), else as the kernel side
    /// named it (up to four levels), else as a scan of the tree finds it.
    fn path_string(&mut self, id: u64) -> Option<String> {
        let relative =
            |p: &Path, root: &Path| Some(format!("/{}", p.strip_prefix(root).ok()?.display()));
        if let Some(p) = self.paths.get(&id) {
            return relative(p, &self.root);
        }
        match self.tracer.collector.cgroup_paths.get(&id) {
            Some(p) => Some(p.clone()),
            None => self.path_of(id).and_then(|p| relative(&p, &self.root)),
        }
    }

    /// [`Session::name`] for cgroup `id` at `rel`, noting when the engines were asked.
    fn name_asking(&mut self, id: u64, rel: &str, found: &CgroupContainer) -> Lookup {
        self.asked.insert(id, Instant::now());
        let live = cgroup::populated(&self.root.join(rel.trim_start_matches('/'))).unwrap_or(false);
        self.name(found, live)
    }

    /// What the engines say about a container id: a container that already exited (and was
    /// removed, with --rm) is named from what the engine said when it was created, or from the
    /// engine's event history. The history (a slow request: engines answer it when its end
    /// time has passed) is read only for a container whose processes are gone (`live` false):
    /// an engine that knows a running container answers for it directly.
    fn name(&self, found: &CgroupContainer, live: bool) -> Lookup {
        let id = found.id.as_str();
        let lookup = self.engines.lookup_found(found);
        if let Lookup::Found(_) = lookup {
            return lookup;
        }
        if let Some((info, _)) = self.created.get(id) {
            return Lookup::Found(Box::new(info.clone()));
        }
        let gone = || {
            (!live)
                .then(|| self.engines.from_history(id, self.since))
                .flatten()
        };
        if let Some(info) = self.engines.recent.get(id).or_else(gone) {
            return Lookup::Found(Box::new(info));
        }
        if found.namespace.is_some() {
            // One of containerd's, gone before anyone asked (`ctr run --rm`): its path names it.
            return Lookup::Found(Box::new(container::containerd::from_path(found)));
        }
        if self.engines.any_answering() {
            Lookup::Absent
        } else {
            Lookup::Unreachable
        }
    }

    /// Has the kernel side ignore a cgroup found not to be followed, while it exists, so that
    /// it adds nothing more to the maps.
    fn ignore(&mut self, id: u64) {
        let Some(path) = self.paths.get(&id).cloned().or_else(|| {
            let rel = self.tracer.collector.cgroup_paths.get(&id)?;
            Some(self.root.join(rel.trim_start_matches('/')))
        }) else {
            return;
        };
        if cgroup::cgroup_id(&path).ok() != Some(id) {
            return;
        }
        match self.tracer.probe.ignore_cgroup(id) {
            Ok(()) => {
                self.ignored.insert(id, path);
            }
            // The map is full: the sweep removes what it adds meanwhile.
            Err(e) => log::debug!("cgroup {id} not ignored: {e}"),
        }
    }

    /// Checks counted so far in the containers followed now (in every cgroup of theirs).
    pub(crate) fn followed_checks(&self) -> Result<u64, SessionError> {
        let followed = self.followed();
        Ok(self
            .tracer
            .probe
            .checks()?
            .iter()
            .filter(|(key, _)| followed.contains(&key.cgroup_id))
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n)))
    }

    /// Every cgroup id whose checks a followed container's profile is made of.
    fn followed(&self) -> std::collections::HashSet<u64> {
        self.tracked
            .iter()
            .flat_map(|t| t.cgroups.iter().copied())
            .collect()
    }

    /// Keeps the kernel's maps to the cgroups followed (and those still being named): what
    /// the others hold is removed, and what no event named is classified, again at every
    /// sweep while it waits for a name (so one that is gone is dropped once it has waited its
    /// time, even when no event of it ever comes). So unfollowed and deleted cgroups hold no
    /// entries, whatever a CPU adds back after they were forgotten. Also forgets the session's
    /// own bookkeeping of cgroups that no longer exist.
    fn sweep(&mut self) -> Result<(), SessionError> {
        self.last_sweep = Instant::now();
        let snapshot = self.tracer.snapshot()?;
        let followed = self.followed();
        let mut doomed = Vec::new();
        for id in snapshot.cgroups() {
            if followed.contains(&id) {
                continue;
            }
            match self.known.get(&id) {
                Some(None) => doomed.push(id),
                Some(Some(_)) => {}
                None => {
                    self.unnamed.insert(id);
                }
            }
        }
        if !doomed.is_empty() {
            self.tracer.probe.forget(&doomed)?;
            self.tracer.collector.forget(&doomed);
        }
        self.prune(&followed)
    }

    /// Forgets what the session holds about cgroups that are gone and not followed: ignored
    /// entries, decisions, paths, and what the engine said at creation long ago.
    fn prune(&mut self, followed: &std::collections::HashSet<u64>) -> Result<(), SessionError> {
        let gone = |id: u64, path: &Path| cgroup::cgroup_id(path).ok() != Some(id);
        let ignored_gone: Vec<u64> = self
            .ignored
            .iter()
            .filter(|(id, path)| gone(**id, path))
            .map(|(id, _)| *id)
            .collect();
        for id in ignored_gone {
            self.tracer.probe.untrace_cgroup(id)?;
            self.ignored.remove(&id);
        }
        let paths = &self.paths;
        let pending = &self.pending;
        self.known.retain(|id, decided| {
            decided.is_some()
                || paths.get(id).is_some_and(|p| !gone(*id, p))
                || pending.contains_key(id)
        });
        let known = &self.known;
        self.paths.retain(|id, path| {
            followed.contains(id)
                || known.contains_key(id)
                || pending.contains_key(id)
                || !gone(*id, path)
        });
        let following: BTreeSet<&str> = self
            .tracked
            .iter()
            .filter_map(|t| t.info.as_ref().map(|i| i.id.as_str()))
            .collect();
        self.asked.retain(|id, _| pending.contains_key(id));
        self.absent
            .retain(|_, at| at.elapsed() < Duration::from_secs(3600));
        self.created.retain(|id, (_, at)| {
            following.contains(id.as_str()) || at.elapsed() < Duration::from_secs(600)
        });
        Ok(())
    }

    /// Traces a container's cgroup while it runs.
    fn make_live(&mut self, index: usize, id: u64, path: &Path) -> Result<(), SessionError> {
        let t = &mut self.tracked[index];
        t.starting = None;
        t.cgroups.insert(id);
        t.live = Some((id, path.to_path_buf()));
        self.known.insert(id, Some(index));
        self.tracer.probe.trace_cgroup(
            id,
            Traced {
                kind: traced_kind::SUBTREE,
                level: cgroup::level(&self.root, path),
            },
        )?;
        // Its tasks from before it was traced: the kernel side enters the ones that fork or
        // move in from now on.
        self.tracer
            .probe
            .enter_members(&cgroup::threads(path), id)?;
        Ok(())
    }

    /// Containers named before they ran become live once a process is in their cgroup; one
    /// whose cgroup went away, or stayed empty for a minute, is no longer starting.
    fn check_starts(&mut self) -> Result<(), SessionError> {
        for i in 0..self.tracked.len() {
            let Some((id, path, since)) = self.tracked[i].starting.clone() else {
                continue;
            };
            match cgroup::populated(&path) {
                Ok(true) => self.make_live(i, id, &path)?,
                // Unreadable while it exists (out of descriptors, say): still starting.
                Err(_) if path.exists() => {}
                _ if !path.exists() || since.elapsed() > STARTING_AT_MOST => {
                    self.tracked[i].starting = None;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Notices containers whose cgroup emptied or disappeared.
    fn check_exits(&mut self) -> Result<(), SessionError> {
        self.check_starts()?;
        for i in 0..self.tracked.len() {
            let Some((id, path)) = self.tracked[i].live.clone() else {
                continue;
            };
            match cgroup::populated(&path) {
                // Unreadable while it exists (out of descriptors, say) is not an exit.
                Ok(true) => continue,
                Err(_) if path.exists() => continue,
                _ => {}
            }
            self.tracked[i].live = None;
            let _ = self.tracer.probe.untrace_cgroup(id);
            // Its exit code, if the engine still knows the container (past the end, the
            // end's settling asks instead).
            let id_str = self.tracked[i]
                .info
                .as_ref()
                .filter(|_| !self.past_end())
                .map(|info| info.id.clone());
            if let Some(id) = id_str {
                let since = self.since;
                let latest = self
                    .engines
                    .inspect(&id)
                    .or_else(|| self.engines.named_by_events(&id, since));
                if let (Some(latest), Some(info)) = (latest, self.tracked[i].info.as_mut()) {
                    info.exit_code = latest.exit_code.or(info.exit_code);
                    info.running = latest.running;
                }
            }
            if self.verbose || !self.tracked[i].quiet {
                self.say(&format!("container {} exited", self.tracked[i].target));
            }
            if self.follow_restarts {
                self.watch()?;
            }
        }
        Ok(())
    }

    /// Waits (up to `settle`) for the exit codes of containers that just exited: the engine
    /// records a container's exit a moment after its cgroup empties.
    fn settle_exit_codes(&mut self, settle: bool) {
        let deadline = Instant::now()
            + if settle {
                Duration::from_millis(1500)
            } else {
                Duration::ZERO
            };
        loop {
            let mut missing = false;
            for i in 0..self.tracked.len() {
                let t = &self.tracked[i];
                let Some(info) = t.info.as_ref().filter(|i| i.exit_code.is_none()) else {
                    continue;
                };
                if t.live.is_some() {
                    continue;
                }
                // The time to settle is up: those not asked yet keep what is known.
                if settle && Instant::now() >= deadline {
                    break;
                }
                let id = info.id.clone();
                let latest = self
                    .engines
                    .inspect(&id)
                    .filter(|l| !l.running)
                    .or_else(|| self.engines.named_by_events(&id, self.since));
                match latest.and_then(|l| l.exit_code) {
                    Some(code) => {
                        if let Some(info) = self.tracked[i].info.as_mut() {
                            info.exit_code = Some(code);
                        }
                    }
                    None => missing = true,
                }
            }
            if !missing || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Losses the kernel side could not count against a cgroup since the last look: each
    /// container followed now may have lost them, so each one counts them.
    fn note_unattributed(&mut self, unattributed: u64) {
        let new = unattributed.saturating_sub(self.unattributed_seen);
        self.unattributed_seen = unattributed;
        if new == 0 {
            return;
        }
        for t in self.tracked.iter_mut().filter(|t| t.info.is_some()) {
            t.unattributed = t.unattributed.saturating_add(new);
        }
    }

    /// Each followed container's profile, by what it was followed as (the name asked for, or
    /// its identity with `--all-containers`); only `only`'s when given. `settle` waits a moment
    /// for the exit codes of containers that just exited.
    pub(crate) fn profiles_by_target(
        &mut self,
        started: (Duration, Instant),
        settle: bool,
        only: Option<&str>,
    ) -> Result<Vec<(String, Profile)>, SessionError> {
        let stats = self.tracer.stats()?;
        self.note_unattributed(stats.losses_unattributed);
        self.settle_exit_codes(settle);
        let host = container::host_capabilities();
        let snapshot = self.tracer.snapshot()?;
        let mut profiles = Vec::new();
        for t in &self.tracked {
            if only.is_some_and(|only| only != t.target) {
                continue;
            }
            if let Some(profile) = self.profile_of(t, &snapshot, started, host.as_deref()) {
                profiles.push((t.target.clone(), profile));
            }
        }
        Ok(profiles)
    }

    /// One followed container's profile, once it has been named.
    fn profile_of(
        &self,
        t: &Tracked,
        snapshot: &Snapshot,
        started: (Duration, Instant),
        host: Option<&[Cap]>,
    ) -> Option<Profile> {
        let info = t.info.as_ref()?;
        let ids: Vec<u64> = t.cgroups.iter().copied().collect();
        let (checks, outcomes) = self.tracer.records_in(snapshot, &ids);
        let mut workload = container::workload(info, t.runtime, t.pod_uid.as_deref());
        workload.capabilities.clone_from(&t.caps);
        workload.bounding.clone_from(&t.bounding);
        workload.health.clone_from(&t.health);
        workload.uids.clone_from(&t.uids);
        workload.stopped = t.served;
        if t.served {
            // Judged by its health check while it ran, not by how it ended later.
            workload.exit_status = None;
        }
        workload.seccomp = t.seccomp;
        let mut warnings = Vec::new();
        if let Some(w) = container::learning_mode_warning(t.caps.as_deref(), t.seccomp, host, info)
        {
            warnings.push(w);
        }
        let incomplete = t.incomplete();
        if t.starts > 1 {
            warnings.push(format!(
                "the container started {} times; this profile covers every run",
                t.starts
            ));
        }
        warnings.extend(
            self.tracer
                .collector
                .migrations_from(&ids)
                .map(Migration::warning),
        );
        let mut losses = snapshot.losses_of(&ids);
        losses.ring_buffer = losses.ring_buffer.saturating_add(t.unattributed);
        let total_checks = checks
            .iter()
            .fold(0u64, |sum, c| sum.saturating_add(c.count));
        let trace = TraceInfo {
            backend: self.tracer.probe.backend,
            hook: self.tracer.probe.hook_name(),
            kernel: crate::kernel::kernel_release(),
            started: rfc3339(started.0),
            duration_ms: started.1.elapsed().as_millis() as u64,
            complete: losses.total() == 0 && incomplete.is_none(),
            incomplete: incomplete.into_iter().collect(),
            losses,
            total_checks,
            host_bounding: crate::session::privilege::host_bounding(),
        };
        let mut profile = Profile::new(workload, trace, checks, outcomes, warnings);
        profile.environment = Environment {
            engine_version: info.engine_version.clone(),
            network: t.network.clone(),
            host: sysctl::host(),
        };
        Some(profile)
    }

    /// Whether `--duration` is up: the trace is ending, and what would ask the engines about
    /// one container after another (each answer can take a second while containers start in
    /// a burst) is left to the end's own naming, which is bounded.
    fn past_end(&self) -> bool {
        self.ends_at.is_some_and(|end| Instant::now() >= end)
    }

    /// What a session does on every tick: names the cgroups that produced checks, and notices
    /// containers that exited.
    pub(crate) fn tick(&mut self) -> Result<(), SessionError> {
        self.classify_new_cgroups()?;
        self.report_fresh();
        self.check_exits()?;
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.sweep()?;
        }
        Ok(())
    }

    /// The live view: each kind of check seen for the first time in a followed container,
    /// once its cgroup is named; those of cgroups not followed are dropped.
    fn report_fresh(&mut self) {
        let Some(on_check) = self.on_check.as_mut() else {
            return;
        };
        self.status.clear();
        let mut fresh = std::mem::take(&mut self.fresh_waiting);
        fresh.extend(self.tracer.fresh_checks());
        for (id, check) in fresh {
            match self.known.get(&id) {
                Some(Some(i)) => {
                    let t = &self.tracked[*i];
                    let name = t.info.as_ref().map_or(t.target.as_str(), |i| &i.name);
                    on_check(name, &check);
                }
                None if self.fresh_waiting.len() < MAX_WAITING_CHECKS => {
                    self.fresh_waiting.push((id, check));
                }
                // Not followed, or too many waiting to be named.
                Some(None) | None => {}
            }
        }
    }

    /// How many cgroups with checks wait for a container name (the engine does not answer, or
    /// has not named them yet).
    pub(crate) fn waiting_for_names(&self) -> usize {
        self.pending.len()
    }

    /// What a followed container is followed as, by that, its name or its id.
    pub(crate) fn target_of(&self, name: &str) -> Option<&str> {
        self.tracked
            .iter()
            .find(|t| {
                t.target == name
                    || t.info
                        .as_ref()
                        .is_some_and(|i| i.name == name || i.id == name)
            })
            .map(|t| t.target.as_str())
    }

    /// The containers named so far, by what they are followed as, and whether each runs now.
    pub(crate) fn containers(&self) -> impl Iterator<Item = (&str, bool)> {
        self.tracked
            .iter()
            .filter(|t| t.info.is_some())
            .map(|t| (t.target.as_str(), t.live.is_some()))
    }

    /// Stops following every container that has exited and whose profile the caller has
    /// saved (`saved`): see [`Session::retire`]. Returns each one's name.
    pub(crate) fn retire_exited(
        &mut self,
        saved: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, SessionError> {
        let mut retired = Vec::new();
        let mut i = 0;
        while i < self.tracked.len() {
            let t = &self.tracked[i];
            if t.live.is_some() || t.starting.is_some() || t.info.is_none() || !saved(&t.target) {
                i += 1;
                continue;
            }
            let target = t.target.clone();
            self.retire(i)?;
            retired.push(target);
        }
        Ok(retired)
    }

    /// Stops following a container that has exited: forgets what the kernel and the event
    /// stream hold for it (the caller has saved its profile). Keeps memory flat under churn.
    /// Its cgroups are decided as not followed from now on: a CPU that still holds repeats of
    /// its last check (counted in the profile just saved) and adds them back later has them
    /// swept, never counted twice.
    fn retire(&mut self, index: usize) -> Result<(), SessionError> {
        let remove = self.all;
        self.forget_tracked(index, remove)
    }

    /// Forgets what the kernel and the event stream hold for a followed container, and either
    /// removes it from the followed ones or keeps following its name afresh.
    fn forget_tracked(&mut self, index: usize, remove: bool) -> Result<(), SessionError> {
        let ids: Vec<u64> = self.tracked[index].cgroups.iter().copied().collect();
        self.tracer.probe.forget(&ids)?;
        self.tracer.collector.forget(&ids);
        if let Some(info) = &self.tracked[index].info {
            self.created.remove(&info.id);
        }
        self.known.retain(|_, i| *i != Some(index));
        for id in &ids {
            self.known.insert(*id, None);
        }
        if let Some((id, _)) = self.tracked[index].live {
            let _ = self.tracer.probe.untrace_cgroup(id);
        }
        if remove {
            // A later container of the same identity starts a new entry.
            self.tracked.remove(index);
            for i in self.known.values_mut().flatten() {
                if *i > index {
                    *i -= 1;
                }
            }
        } else {
            // Still asked for: a container of that name started again is followed afresh.
            let target = self.tracked[index].target.clone();
            self.tracked[index] = Tracked::new(target);
        }
        Ok(())
    }
}

impl Session {
    /// Follows one more container, by name (a verification copy about to be created).
    pub(crate) fn follow_target(&mut self, target: &str) -> Result<(), SessionError> {
        let mut copy = Tracked::new(target.to_owned());
        copy.quiet = true;
        self.tracked.push(copy);
        self.watch()
    }

    fn index_of(&self, target: &str) -> Option<usize> {
        self.tracked.iter().position(|t| t.target == target)
    }

    /// Whether a followed container runs now.
    pub(crate) fn is_running(&self, target: &str) -> bool {
        self.index_of(target)
            .is_some_and(|i| self.tracked[i].live.is_some())
    }

    /// The engine's record of a followed container and the engine's name, from when it was
    /// last looked up (a `--rm` container's survives its removal).
    pub(crate) fn info_of(&self, target: &str) -> Option<&ContainerInfo> {
        self.tracked[self.index_of(target)?].info.as_ref()
    }

    /// What a followed container's checks and syscall outcomes were, so far.
    pub(crate) fn records_of(
        &mut self,
        target: &str,
    ) -> Result<(Vec<Check>, Vec<Outcome>), SessionError> {
        let Some(index) = self.index_of(target) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let ids: Vec<u64> = self.tracked[index].cgroups.iter().copied().collect();
        let snapshot = self.tracer.snapshot()?;
        Ok(self.tracer.records_in(&snapshot, &ids))
    }

    /// Stops following a container and forgets what was recorded of it.
    pub(crate) fn drop_target(&mut self, target: &str) -> Result<(), SessionError> {
        if let Some(index) = self.index_of(target) {
            self.forget_tracked(index, true)?;
        }
        Ok(())
    }

    /// An API of the engine a container lives in (for exec and re-creation): never another
    /// engine's, which would make its copies of an image of the same name.
    pub(crate) fn api_for(&self, engine: &str) -> Option<Api> {
        self.engines
            .apis
            .iter()
            .find(|(_, e)| e == engine)
            .map(|(a, _)| a.clone())
    }

    /// Starts the health checks of followed containers that run and have none yet.
    fn start_health_checks(&mut self, check: &HealthCheck, tx: &HealthSender) {
        for i in 0..self.tracked.len() {
            let t = &self.tracked[i];
            let (Some(info), Some((_, path))) = (&t.info, &t.live) else {
                continue;
            };
            if t.health_started || info.pid.is_none() {
                continue;
            }
            let probe = ContainerProbe {
                name: info.name.clone(),
                id: info.id.clone(),
                engine: info.engine.clone(),
                pid: info.pid,
                cgroup: path.clone(),
                api: self.api_for(&info.engine),
            };
            let target = t.target.clone();
            self.tracked[i].health_started = true;
            let check = check.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let (result, uids) = probe.health(&check).await;
                let _ = tx.send((target, result, uids));
            });
        }
    }

    fn on_health(&mut self, target: &str, result: HealthResult, uids: Vec<u32>) {
        if let Some(i) = self.index_of(target) {
            if !result.passed {
                self.say(&format!(
                    "the health check of {target} did not pass: {}",
                    crate::model::verify::last_line(&result.output)
                ));
            }
            let t = &mut self.tracked[i];
            t.served = result.passed && t.live.is_some();
            t.uids = uids;
            t.health = Some(result);
        }
    }

    /// Every followed container that started has its health check's answer.
    fn all_answered(&self) -> bool {
        self.tracked
            .iter()
            .all(|t| t.starts > 0 && (t.health.is_some() || t.live.is_none()))
    }
}

type HealthSender = tokio::sync::mpsc::UnboundedSender<(String, HealthResult, Vec<u32>)>;

/// What a container's health check needs of it.
pub(crate) struct ContainerProbe {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) engine: String,
    pub(crate) pid: Option<u32>,
    pub(crate) cgroup: PathBuf,
    pub(crate) api: Option<Api>,
}

impl ContainerProbe {
    /// Runs the health check until it passes or its time is up: on the host with the
    /// container in its environment, or inside through the engine's exec. Also returns the
    /// users the container's processes ran as when it passed.
    pub(crate) async fn health(&self, check: &HealthCheck) -> (HealthResult, Vec<u32>) {
        let deadline = Instant::now() + check.timeout;
        let mut env = vec![
            ("CAP_TRACE_CONTAINER".to_owned(), self.name.clone()),
            ("CAP_TRACE_ENGINE".to_owned(), self.engine.clone()),
        ];
        if let Some(pid) = self.pid {
            env.push(("CAP_TRACE_PID".to_owned(), pid.to_string()));
        }
        let result = health::poll(check, deadline, |left| {
            let env = env.clone();
            let api = self.api.clone();
            let id = self.id.clone();
            let command = check.command.clone();
            let inside = check.inside;
            async move {
                if !inside {
                    return health::on_host(&command, &env, left).await;
                }
                let Some(api) = api else {
                    return (
                        None,
                        "no engine API to run the health check in the container".into(),
                    );
                };
                tokio::task::spawn_blocking(move || recreate::exec(&api, &id, &command, left))
                    .await
                    .unwrap_or((None, "the health check did not finish".into()))
            }
        })
        .await;
        let uids = if result.passed {
            cgroup::uids(&self.cgroup)
        } else {
            Vec::new()
        };
        (result, uids)
    }
}

/// Everything a follow session runs on.
pub(crate) struct Opened {
    pub(crate) session: Session,
    watcher: tokio::io::unix::AsyncFd<cgroup::Watcher>,
    pub(crate) started_wall: Duration,
    pub(crate) started: Instant,
    /// podman's API served privately when no socket answered and one was needed.
    pub(crate) _private: Option<PrivateService>,
}

impl Opened {
    /// Shows the live view of checks, when asked for.
    pub(crate) fn show_live(&mut self, on_check: Option<OnCheck>) {
        if let Some(on_check) = on_check {
            self.session.tracer.keep_fresh();
            self.session.on_check = Some(on_check);
        }
    }

    /// Takes in what comes next: events from the ring buffer, or new cgroups (named at once,
    /// before a `--rm` container can vanish).
    pub(crate) async fn take_in(&mut self) -> Result<(), SessionError> {
        tokio::select! {
            result = self.session.tracer.pump() => result.map_err(SessionError::runtime),
            guard = self.watcher.readable_mut() => {
                let mut guard = guard.map_err(SessionError::runtime)?;
                let created = guard.get_inner_mut().read(&mut self.session.paths);
                guard.clear_ready();
                self.session.on_created(&created);
                Ok(())
            }
        }
    }
}

/// Loads the probe, finds the engines and starts watching for containers.
pub(crate) fn open(opts: &FollowOptions) -> Result<Opened, SessionError> {
    let began = Instant::now();
    // Read before anything is dropped (the daemon keeps only CAP_BPF once attached).
    let _ = crate::session::privilege::host_bounding();
    let mut engines = Engines::discover(opts.engine_socket.as_deref());
    let mut private = None;
    // podman answering only through its command: its API served privately (a Docker API
    // cannot exec in podman's containers).
    if opts.need_api
        && !engines.apis.iter().any(|(_, e)| e == "podman")
        && engines.clis.iter().any(|c| c.program == "podman")
    {
        let service = PrivateService::start(None).map_err(SessionError::environment)?;
        engines.apis.push((service.api.clone(), "podman".into()));
        private = Some(service);
    }
    if engines.is_empty() {
        return Err(SessionError::environment(match &opts.engine_socket {
            Some(s) => format!(
                "no container engine answers on {}: check the path, or start the API service (`podman system service` or the Docker daemon)",
                s.display()
            ),
            None => "no container engine found: install podman or Docker, start its API socket, or pass --engine-socket PATH".into(),
        }));
    }
    if opts.verbose {
        eprintln!(
            "cap-trace: asking engines: {}",
            text::shown(&engines.describe().join(", "))
        );
    }
    let probe = Probe::load(&ProbeOptions {
        containers: true,
        ..opts.probe.clone()
    })?;
    // The trace (and `--duration`) begins once the probe is attached: loading it can take
    // seconds on a busy machine, and they would otherwise come out of the time asked for.
    let started_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let started = Instant::now();
    if opts.verbose {
        eprintln!(
            "cap-trace: attached to {} in {} ms",
            probe.hook_name(),
            began.elapsed().as_millis()
        );
        for rejected in &probe.rejected {
            eprintln!(
                "cap-trace: {} backend not used: {}",
                rejected.backend, rejected.error
            );
        }
    }
    let mut tracer = Tracer::new(probe)?;
    tracer.runtime_mntns = crate::session::tracer::host_mount_namespace();
    let mut s = Session {
        root: cgroup::cgroup2_root()?,
        engines,
        tracer,
        tracked: opts.targets.iter().cloned().map(Tracked::new).collect(),
        all: opts.all,
        labels: opts.labels.clone(),
        follow_restarts: opts.all || opts.duration.is_some(),
        verbose: opts.verbose,
        known: HashMap::new(),
        paths: HashMap::new(),
        watching: false,
        watch_after: 0,
        watch_started: None,
        containerd_namespaces: (Vec::new(), None),
        since: started_wall.as_secs().saturating_sub(60),
        pending: HashMap::new(),
        asked: HashMap::new(),
        absent: HashMap::new(),
        created: HashMap::new(),
        ends_at: opts.duration.map(|d| started + d),
        last_scan: Instant::now(),
        ignored: HashMap::new(),
        unnamed: BTreeSet::new(),
        last_sweep: Instant::now(),
        unattributed_seen: 0,
        on_check: None,
        fresh_waiting: Vec::new(),
        status: StatusLine::new(opts.status_line),
        keep_records: opts.keep_records,
    };
    s.engines.watch(s.since);
    // New container cgroups are named the moment they appear, before they can vanish.
    let mut watcher = cgroup::Watcher::new().map_err(SessionError::runtime)?;
    watcher
        .watch_tree(&s.root, cgroup::TREE_DEPTH)
        .map_err(SessionError::runtime)?;
    cgroup::scan(&s.root, cgroup::TREE_DEPTH, &mut s.paths);
    // SAFETY: the watcher owns its descriptor for as long as the AsyncFd lives.
    let watcher = unsafe { tokio::io::unix::AsyncFd::register(watcher) }
        .map_err(|e| SessionError::runtime(e.to_string()))?;
    // Watch first, then look: a container starting in between is caught by the watch.
    s.watch()?;
    s.attach_running()?;
    Ok(Opened {
        session: s,
        watcher,
        started_wall,
        started,
        _private: private,
    })
}

impl Session {
    /// Containers asked for by name that never ran: past `wait`, the error (naming running
    /// containers of similar names); after [`HINT_AFTER`], once, what the engines run that a
    /// name may be a typo of (a container that exists but has not started is simply waited
    /// for).
    fn not_started_yet(
        &mut self,
        elapsed: Duration,
        wait: Duration,
        hinted: &mut bool,
    ) -> Result<(), SessionError> {
        let never_seen: Vec<String> = self
            .tracked
            .iter()
            .filter(|t| t.starts == 0)
            .map(|t| t.target.clone())
            .collect();
        if elapsed >= wait {
            self.clear_status();
            let target = &never_seen[0];
            let known = self.engines.inspect(target);
            return Err(SessionError::runtime(match known {
                Some(_) => format!(
                    "container `{target}` exists but did not start within {} s: start it, or raise --wait",
                    wait.as_secs()
                ),
                None => format!(
                    "container `{target}` not found: no container of that name or id started within {} s; {} (check `podman ps -a` or `docker ps -a`, or raise --wait)",
                    wait.as_secs(),
                    not_running_hint(&self.engines, target)
                ),
            }));
        }
        if !*hinted && elapsed >= HINT_AFTER {
            *hinted = true;
            for target in never_seen {
                if self.engines.inspect(&target).is_none() {
                    self.say(&format!(
                        "container `{target}` is not running yet: {}",
                        not_running_hint(&self.engines, &target)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// How long `--container NAME` waits before saying which running containers it may mean.
const HINT_AFTER: Duration = Duration::from_secs(2);

pub async fn follow(mut opts: FollowOptions) -> Result<Vec<Profile>, SessionError> {
    let mut opened = open(&opts)?;
    opened.show_live(opts.on_check.take());
    let mut profiles: Vec<Profile> = learn(&mut opened, &opts)
        .await?
        .0
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    profiles.sort_by(|a, b| a.workload.name.cmp(&b.workload.name));
    Ok(profiles)
}

/// Follows the containers until they exit (or `--duration`, Ctrl-C, SIGTERM, or, with
/// `end_when_healthy`, their health checks' answers) and returns their profiles, by what they
/// were followed as, and whether Ctrl-C or SIGTERM ended it.
pub(crate) async fn learn(
    opened: &mut Opened,
    opts: &FollowOptions,
) -> Result<(Vec<(String, Profile)>, bool), SessionError> {
    let (started_wall, started) = (opened.started_wall, opened.started);
    let (health_tx, mut health_rx) =
        tokio::sync::mpsc::unbounded_channel::<(String, HealthResult, Vec<u32>)>();
    let mut interrupted = false;
    let s = &mut opened.session;
    let waiting: Vec<String> = s
        .tracked
        .iter()
        .filter(|t| t.live.is_none() && (opts.verbose || !t.quiet))
        .map(|t| t.target.clone())
        .collect();
    if !waiting.is_empty() {
        s.say(&format!(
            "waiting for container{} {} to start (up to {} s)",
            if waiting.len() > 1 { "s" } else { "" },
            waiting.join(", "),
            opts.wait.as_secs()
        ));
    } else if opts.all {
        s.say(&format!(
            "tracing {} running container{} and any started later; Ctrl-C to stop",
            s.tracked.len(),
            if s.tracked.len() == 1 { "" } else { "s" }
        ));
    }

    let mut sigint = signal(SignalKind::interrupt()).map_err(SessionError::runtime)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(SessionError::runtime)?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let deadline = opts.duration.map(|d| started + d);
    let limit = opts.timeout.map(|d| started + d);
    let time_up =
        |now: Instant| deadline.is_some_and(|d| now >= d) || limit.is_some_and(|l| now >= l);
    let left = |now: Instant| deadline.map(|d| d.saturating_duration_since(now));
    // Drawn at once, before the first turn: a tick's work (naming many new containers under
    // load) may take seconds, and a short trace would otherwise end without one.
    if opts.status_line {
        opened
            .session
            .draw_status(started.elapsed(), left(Instant::now()));
    }
    let mut hinted = false;
    loop {
        // Time is up, looked at on every turn: a busy loop may give timers (the tick) none.
        let now = Instant::now();
        if time_up(now) {
            break;
        }
        tokio::select! {
            result = opened.take_in() => result?,
            _ = sigint.recv() => { interrupted = true; break },
            _ = sigterm.recv() => { interrupted = true; break },
            Some((target, result, uids)) = health_rx.recv() => {
                let s = &mut opened.session;
                s.on_health(&target, result, uids);
                if opts.end_when_healthy && deadline.is_none() && s.all_answered() {
                    break;
                }
            }
            _ = tick.tick() => {
                let s = &mut opened.session;
                s.tick()?;
                if let Some(check) = &opts.health {
                    s.start_health_checks(check, &health_tx);
                }
                if time_up(Instant::now()) {
                    break;
                }
                if opts.status_line {
                    s.draw_status(started.elapsed(), left(Instant::now()));
                }
                let never_seen = s.tracked.iter().filter(|t| t.starts == 0).count();
                if !opts.all && never_seen > 0 {
                    s.not_started_yet(started.elapsed(), opts.wait, &mut hinted)?;
                }
                let all_started = never_seen == 0;
                let none_live = s.tracked.iter().all(|t| t.live.is_none());
                if !opts.all && deadline.is_none() && all_started && none_live {
                    break;
                }
                // Everything asked for is found and running: stop recording other cgroups.
                if !opts.all && all_started && !none_live && s.watching && deadline.is_none() {
                    s.unwatch()?;
                }
            }
        }
    }
    let s = &mut opened.session;
    s.clear_status();
    s.tracer.drain();
    s.classify_new_cgroups()?;
    s.report_fresh();
    Ok((
        s.profiles_by_target((started_wall, started), true, None)?,
        interrupted,
    ))
}
