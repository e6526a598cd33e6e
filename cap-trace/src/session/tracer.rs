//! A tracing session: the loaded probe, the ring buffer read through tokio's `AsyncFd`, and what
//! was learned so far, turned into profile records per workload.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aya::maps::{MapData, RingBuf};
use cap_trace_common::{
    CgroupEvent, CgroupLosses, CheckEvent, CheckKey, MigrationEvent, NO_SYSCALL, OutcomeEvent,
    OutcomeKey, check_flags, event_kind, loss_kind,
};
use tokio::io::unix::AsyncFd;

use crate::kernel::kallsyms;
use crate::kernel::{Probe, ProbeError, Stats};
use crate::linux::caps::Cap;
use crate::linux::errno::errno_name;
use crate::linux::{audit, syscalls};
use crate::model::profile::rfc3339;
use crate::model::record::{Audit, Check, Losses, Outcome, Phase, Verdict};
use crate::model::text;

/// `comm` cap-trace's launcher takes between fork and the command's exec, so that its own
/// checks are told apart from the command's.
pub const LAUNCHER_COMM: &str = "cap-trace-exec";

/// Inode number of the host's mount namespace (where container runtimes run): pid 1's, or
/// this process's when pid 1's cannot be read.
pub fn host_mount_namespace() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    ["/proc/1/ns/mnt", "/proc/self/ns/mnt"]
        .iter()
        .find_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.ino() as u32)
}

/// Whether a thread name belongs to a container runtime's set-up (or cap-trace's launcher)
/// rather than to the workload. The runtime's init process keeps its name until it execs the
/// entrypoint, so everything it checks before that is set-up.
pub fn is_runtime_comm(comm: &str) -> bool {
    comm.starts_with("runc:[")
        || comm.starts_with("youki:[")
        || matches!(comm, "runc" | "crun" | "youki" | "conmon" | "runc init")
        || comm == LAUNCHER_COMM
}

/// Whose check a thread name makes it: the runtime's set-up or the workload's.
pub fn phase_of(comm: &str) -> Phase {
    if is_runtime_comm(comm) {
        Phase::Runtime
    } else {
        Phase::Workload
    }
}

/// First occurrence of a key.
#[derive(Debug, Clone, Copy)]
pub struct First {
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub boot_ns: u64,
    pub frames: [u64; 2],
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    first: Option<First>,
    /// Occurrences carried by events themselves (streaming mode, or the map was full).
    uncounted: u64,
}

/// A traced process that moved out of the cgroup its checks were recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The cgroup its checks were recorded under.
    pub from: u64,
    /// The cgroup it moved to, and that cgroup's path below the root (as far as the kernel
    /// side reported it).
    pub to: u64,
    pub path: String,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

impl Migration {
    /// The warning a profile carries for it.
    pub fn warning(&self) -> String {
        let thread = if self.tid == self.pid {
            String::new()
        } else {
            format!(", thread {}", self.tid)
        };
        let to = if self.path.is_empty() {
            format!("cgroup {}", self.to)
        } else {
            format!("cgroup {}", self.path)
        };
        format!(
            "process {} ({}{thread}) left the traced cgroup for {to}: what it did after that is not in this profile",
            self.pid, self.comm
        )
    }
}

/// Migrations kept per session: beyond this, only their count (in the losses) says more left.
const MAX_MIGRATIONS: usize = 1024;

/// What the ring buffer delivered.
#[derive(Default)]
pub struct Collector {
    checks: HashMap<CheckKey, Seen>,
    outcomes: HashMap<OutcomeKey, Seen>,
    /// cgroup v2 path (relative to the root, as far up as the kernel side reports) of cgroups
    /// named by the kernel side.
    pub cgroup_paths: HashMap<u64, String>,
    /// Traced processes that left their cgroup, as reported.
    pub migrations: Vec<Migration>,
    /// Events received (for status and benchmarks).
    pub events: u64,
    /// Kinds of check seen for the first time and not yet taken by [`Tracer::fresh_checks`]
    /// (kept only for the live view).
    fresh: Option<Vec<(CheckKey, First)>>,
}

/// Fresh kinds of check kept for the live view while nobody takes them: beyond this, the
/// oldest are dropped (the profile still counts them).
const MAX_FRESH: usize = 65_536;

impl Collector {
    fn on_record(&mut self, data: &[u8]) {
        if data.len() < 4 {
            return;
        }
        let kind = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
        self.events += 1;
        match kind {
            event_kind::CHECK | event_kind::CHECK_UNCOUNTED
                if data.len() >= size_of::<CheckEvent>() =>
            {
                // SAFETY: CheckEvent is plain old data and the record is at least its size.
                let ev: CheckEvent = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                let seen = self.checks.entry(ev.key).or_default();
                if seen.first.is_none() {
                    let first = First {
                        tgid: ev.tgid,
                        tid: ev.tid,
                        uid: ev.uid,
                        boot_ns: ev.boot_ns,
                        frames: ev.frames,
                    };
                    seen.first = Some(first);
                    if let Some(fresh) = &mut self.fresh
                        && fresh.len() < MAX_FRESH
                    {
                        fresh.push((ev.key, first));
                    }
                }
                if kind == event_kind::CHECK_UNCOUNTED {
                    seen.uncounted += 1;
                }
            }
            event_kind::OUTCOME if data.len() >= size_of::<OutcomeEvent>() => {
                // SAFETY: as above.
                let ev: OutcomeEvent = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                let seen = self.outcomes.entry(ev.key).or_default();
                if seen.first.is_none() {
                    seen.first = Some(First {
                        tgid: ev.tgid,
                        tid: ev.tid,
                        uid: 0,
                        boot_ns: ev.boot_ns,
                        frames: [0; 2],
                    });
                }
            }
            event_kind::CGROUP if data.len() >= size_of::<CgroupEvent>() => {
                // SAFETY: as above.
                let ev: CgroupEvent = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                self.cgroup_paths
                    .entry(ev.cgroup_id)
                    .or_insert_with(|| cgroup_path(&ev.names));
            }
            event_kind::MIGRATION if data.len() >= size_of::<MigrationEvent>() => {
                // SAFETY: as above.
                let ev: MigrationEvent = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                if self.migrations.len() < MAX_MIGRATIONS {
                    self.migrations.push(Migration {
                        from: ev.from_cgroup,
                        to: ev.to_cgroup,
                        path: comm_str(&ev.path),
                        pid: ev.tgid,
                        tid: ev.tid,
                        comm: comm_str(&ev.comm),
                    });
                }
            }
            _ => log::debug!("unknown ring-buffer record kind {kind}"),
        }
    }

    /// cgroup ids that produced events so far.
    pub fn cgroups(&self) -> impl Iterator<Item = u64> + '_ {
        self.checks.keys().map(|k| k.cgroup_id)
    }

    /// Forgets what a workload's cgroups produced (after its profile was written).
    pub fn forget(&mut self, cgroups: &[u64]) {
        self.checks.retain(|k, _| !cgroups.contains(&k.cgroup_id));
        self.outcomes.retain(|k, _| !cgroups.contains(&k.cgroup_id));
        self.cgroup_paths.retain(|id, _| !cgroups.contains(id));
        self.migrations.retain(|m| !cgroups.contains(&m.from));
    }

    /// The migrations out of `cgroups`.
    pub fn migrations_from<'a>(
        &'a self,
        cgroups: &'a [u64],
    ) -> impl Iterator<Item = &'a Migration> {
        self.migrations
            .iter()
            .filter(move |m| cgroups.contains(&m.from))
    }
}

/// What the kernel's counters say was lost, as a profile records it.
impl From<&Stats> for Losses {
    fn from(stats: &Stats) -> Self {
        Losses {
            ring_buffer: stats.ringbuf_lost,
            probes_missed: stats.kprobe_entry_missed + stats.kretprobe_missed,
            outcomes: stats.outcomes_lost(),
            migrated: stats.migrations,
        }
    }
}

/// What the kernel counted against one cgroup.
impl From<&CgroupLosses> for Losses {
    fn from(lost: &CgroupLosses) -> Self {
        Losses {
            ring_buffer: lost.counts[loss_kind::RING_BUFFER],
            probes_missed: lost.counts[loss_kind::PROBES],
            outcomes: lost.counts[loss_kind::OUTCOMES],
            migrated: lost.counts[loss_kind::MIGRATED],
        }
    }
}

/// Converts `bpf_ktime_get_boot_ns` stamps to wall-clock time.
#[derive(Clone, Copy)]
pub struct Clock {
    realtime_minus_boot: i128,
}

impl Clock {
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid timespec pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
        let boot = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Clock {
            realtime_minus_boot: real - boot,
        }
    }

    pub fn wall(&self, boot_ns: u64) -> String {
        let ns = (i128::from(boot_ns) + self.realtime_minus_boot).max(0) as u128;
        rfc3339(Duration::from_nanos(ns as u64))
    }
}

/// The kernel's dedupe counts and losses at one moment.
pub struct Snapshot {
    checks: HashMap<CheckKey, u64>,
    outcomes: HashMap<OutcomeKey, u64>,
    losses: HashMap<u64, CgroupLosses>,
}

impl Snapshot {
    /// What the workload recorded under `cgroups` lost.
    pub fn losses_of(&self, cgroups: &[u64]) -> Losses {
        let mut total = Losses::default();
        for id in cgroups {
            if let Some(lost) = self.losses.get(id) {
                total.add(&Losses::from(lost));
            }
        }
        total
    }

    /// Every cgroup id the kernel holds something for.
    pub fn cgroups(&self) -> std::collections::BTreeSet<u64> {
        self.checks
            .keys()
            .map(|k| k.cgroup_id)
            .chain(self.outcomes.keys().map(|k| k.cgroup_id))
            .chain(self.losses.keys().copied())
            .collect()
    }
}

/// A loaded probe and its event stream.
pub struct Tracer {
    pub probe: Probe,
    ring: AsyncFd<RingBuf<MapData>>,
    pub collector: Collector,
    pub clock: Clock,
    /// Mount namespace of the host (container tracing): checks from tasks in it are the
    /// container runtime's, never the container's.
    pub runtime_mntns: Option<u32>,
}

impl Tracer {
    pub fn new(mut probe: Probe) -> Result<Tracer, ProbeError> {
        let ring = probe
            .take_events()
            .ok_or_else(|| ProbeError::Map("EVENTS", "ring buffer missing".into()))?;
        // SAFETY: the ring buffer owns its file descriptor and is moved into the AsyncFd, which
        // deregisters it before dropping it.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| ProbeError::Map("EVENTS", e.to_string()))?;
        Ok(Tracer {
            probe,
            ring,
            collector: Collector::default(),
            clock: Clock::now(),
            runtime_mntns: None,
        })
    }

    /// Waits for events and consumes what is available. Cancel-safe.
    pub async fn pump(&mut self) -> std::io::Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            self.collector.on_record(&item);
        }
        guard.clear_ready();
        Ok(())
    }

    /// Keeps each kind of check seen for the first time from now on, for
    /// [`Tracer::fresh_checks`] (the live view).
    pub fn keep_fresh(&mut self) {
        self.collector.fresh.get_or_insert_with(Vec::new);
    }

    /// Keeps no more fresh kinds of check (the live view has ended).
    pub fn stop_fresh(&mut self) {
        self.collector.fresh = None;
    }

    /// The kinds of check seen for the first time since the last call, in the order they
    /// came, each with its cgroup id: records with a count of one, their first occurrence.
    pub fn fresh_checks(&mut self) -> Vec<(u64, Check)> {
        let Some(fresh) = self.collector.fresh.as_mut() else {
            return Vec::new();
        };
        let fresh = std::mem::take(fresh);
        let names = HashMap::new();
        fresh
            .into_iter()
            .map(|(key, first)| {
                let seen = Seen {
                    first: Some(first),
                    uncounted: 0,
                };
                (key.cgroup_id, self.check_record(&key, &seen, 1, &names))
            })
            .collect()
    }

    /// Consumes everything already in the ring buffer, without waiting.
    pub fn drain(&mut self) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            self.collector.on_record(&item);
        }
    }

    pub fn stats(&self) -> Result<Stats, ProbeError> {
        self.probe.stats()
    }

    /// Profile records of the workloads recorded under `cgroups`, with counts read from the
    /// kernel maps.
    pub fn records(&mut self, cgroups: &[u64]) -> Result<(Vec<Check>, Vec<Outcome>), ProbeError> {
        let snapshot = self.snapshot()?;
        Ok(self.records_in(&snapshot, cgroups))
    }

    /// The kernel's counts, read once for several [`Tracer::records_in`] calls.
    pub fn snapshot(&mut self) -> Result<Snapshot, ProbeError> {
        self.drain();
        Ok(Snapshot {
            checks: self.probe.checks()?.into_iter().collect(),
            outcomes: self.probe.outcomes()?.into_iter().collect(),
            losses: self.probe.losses()?,
        })
    }

    /// Profile records of the workloads recorded under `cgroups`, from a snapshot.
    pub fn records_in(&self, snapshot: &Snapshot, cgroups: &[u64]) -> (Vec<Check>, Vec<Outcome>) {
        let counts: HashMap<CheckKey, u64> = snapshot
            .checks
            .iter()
            .filter(|(k, _)| cgroups.contains(&k.cgroup_id))
            .map(|(k, v)| (*k, *v))
            .collect();
        let outcome_counts: HashMap<OutcomeKey, u64> = snapshot
            .outcomes
            .iter()
            .filter(|(k, _)| cgroups.contains(&k.cgroup_id))
            .map(|(k, v)| (*k, *v))
            .collect();

        // Every key the kernel counted, plus keys only events carried.
        let mut keys: Vec<CheckKey> = counts.keys().copied().collect();
        keys.extend(
            self.collector
                .checks
                .keys()
                .filter(|k| cgroups.contains(&k.cgroup_id) && !counts.contains_key(k)),
        );
        let unknown_frames: Vec<u64> = keys
            .iter()
            .filter(|k| k.flags & check_flags::AUDIT_UNKNOWN != 0)
            .filter_map(|k| self.collector.checks.get(k)?.first)
            .flat_map(|f| f.frames)
            .filter(|&a| a != 0)
            .collect();
        let names = symbolize(&unknown_frames);

        let mut checks = Vec::new();
        for key in keys {
            let seen = self.collector.checks.get(&key).copied().unwrap_or_default();
            let count = counts.get(&key).copied().unwrap_or(0) + seen.uncounted;
            if count == 0 {
                continue;
            }
            checks.push(self.check_record(&key, &seen, count, &names));
        }
        let mut outcomes = Vec::new();
        let mut okeys: Vec<OutcomeKey> = outcome_counts.keys().copied().collect();
        okeys.extend(
            self.collector
                .outcomes
                .keys()
                .filter(|k| cgroups.contains(&k.cgroup_id) && !outcome_counts.contains_key(k)),
        );
        for key in okeys {
            let count = outcome_counts.get(&key).copied().unwrap_or(1);
            outcomes.push(outcome_record(&key, count));
        }
        (merge_checks(checks), merge_outcomes(outcomes))
    }

    fn check_record(
        &self,
        key: &CheckKey,
        seen: &Seen,
        count: u64,
        names: &HashMap<u64, String>,
    ) -> Check {
        let comm = comm_str(&key.comm);
        let audit = if key.flags & check_flags::NOAUDIT != 0 {
            Audit::Noaudit
        } else if key.flags & check_flags::AUDIT_UNKNOWN != 0 {
            Audit::Unknown
        } else {
            Audit::Audited
        };
        let site = match audit::rule(key.site) {
            Some(rule) => Some(rule.function.to_owned()),
            None => seen.first.and_then(|f| {
                let named: Vec<String> = f
                    .frames
                    .iter()
                    .filter(|&&a| a != 0)
                    .map(|a| names.get(a).cloned().unwrap_or_else(|| format!("{a:#x}")))
                    .collect();
                (!named.is_empty()).then(|| named.join(" <- "))
            }),
        };
        Check {
            cap: Cap(key.cap),
            verdict: if key.flags & check_flags::DENIED != 0 {
                Verdict::Denied
            } else {
                Verdict::Granted
            },
            audit,
            insetid: key.flags & check_flags::INSETID != 0,
            userns_level: key.userns_level,
            syscall: syscall_name(key.syscall),
            phase: if key.mntns != 0 && Some(key.mntns) == self.runtime_mntns {
                Phase::Runtime
            } else {
                phase_of(&comm)
            },
            comm,
            denied_before: crate::linux::caps::from_mask(key.denied_before),
            site,
            count,
            first_seen: seen.first.map(|f| self.clock.wall(f.boot_ns)),
            pid: seen.first.map(|f| f.tgid),
            uid: seen.first.map(|f| f.uid),
            sources: Vec::new(),
        }
    }
}

fn outcome_record(key: &OutcomeKey, count: u64) -> Outcome {
    let comm = comm_str(&key.comm);
    Outcome {
        syscall: syscall_name(key.syscall),
        phase: phase_of(&comm),
        comm,
        denied: crate::linux::caps::from_mask(key.denied),
        result: if key.result == 0 {
            "ok".into()
        } else {
            errno_name(-key.result)
        },
        count,
    }
}

/// Records that differ only in what the profile does not show (e.g. the cgroup of a restarted
/// container) are summed.
fn merge_checks(checks: Vec<Check>) -> Vec<Check> {
    let mut by_id: std::collections::BTreeMap<_, Check> = std::collections::BTreeMap::new();
    for check in checks {
        match by_id.entry(check.identity()) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(check);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let existing = o.get_mut();
                existing.count = existing.count.saturating_add(check.count);
                if existing.first_seen.is_none()
                    || (check.first_seen.is_some() && check.first_seen < existing.first_seen)
                {
                    existing.first_seen = check.first_seen;
                    existing.pid = check.pid;
                    existing.uid = check.uid;
                }
            }
        }
    }
    by_id.into_values().collect()
}

fn merge_outcomes(outcomes: Vec<Outcome>) -> Vec<Outcome> {
    let mut by_id: std::collections::BTreeMap<_, Outcome> = std::collections::BTreeMap::new();
    for outcome in outcomes {
        by_id
            .entry(outcome.identity())
            .and_modify(|o| o.count = o.count.saturating_add(outcome.count))
            .or_insert(outcome);
    }
    by_id.into_values().collect()
}

/// `/grandparent/parent/leaf` from the names a [`CgroupEvent`] carries (leaf first).
pub fn cgroup_path<const N: usize>(names: &[[u8; N]]) -> String {
    let parts: Vec<String> = names
        .iter()
        .map(|n| comm_str(n))
        .take_while(|n| !n.is_empty() && n != "/")
        .collect();
    let mut path = String::new();
    for part in parts.iter().rev() {
        path.push('/');
        path.push_str(part);
    }
    if path.is_empty() { "/".into() } else { path }
}

/// A thread name (`comm`): the workload chose it, so bytes that are not UTF-8 are kept as `\xNN`.
pub fn comm_str(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    text::from_bytes(&comm[..end])
}

pub fn syscall_name(nr: u32) -> Option<String> {
    (nr != NO_SYSCALL).then(|| syscalls::name(nr))
}

fn symbolize(addrs: &[u64]) -> HashMap<u64, String> {
    if addrs.is_empty() {
        return HashMap::new();
    }
    let Ok(file) = std::fs::File::open("/proc/kallsyms") else {
        return HashMap::new();
    };
    match kallsyms::symbolize(file, addrs) {
        Ok(names) => addrs
            .iter()
            .zip(names)
            .filter_map(|(a, n)| Some((*a, n?)))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel side follows every denial of a capability that is part of an alternative
    /// (it does not skip those whose outcome it saw fail before): its mask must name exactly
    /// the capabilities of the rules' alternatives.
    #[test]
    fn the_kernel_side_knows_the_alternatives() {
        let caps = crate::linux::caps::ALTERNATIVES
            .iter()
            .flat_map(|(narrow, broad)| [narrow, broad])
            .fold(0u64, |mask, cap| mask | 1 << cap.0);
        assert_eq!(caps, cap_trace_common::ALTERNATIVE_CAPS);
    }

    #[test]
    fn runtime_comms() {
        for comm in [
            "runc:[2:INIT]",
            "runc:[1:CHILD]",
            "crun",
            "conmon",
            LAUNCHER_COMM,
        ] {
            assert!(is_runtime_comm(comm), "{comm}");
        }
        for comm in ["chown", "nginx", "runcible", "sh", "crunch"] {
            assert!(!is_runtime_comm(comm), "{comm}");
        }
    }

    #[test]
    fn decodes_check_events() {
        let mut c = Collector::default();
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"chown");
        let ev = CheckEvent {
            kind: event_kind::CHECK,
            tgid: 10,
            tid: 11,
            uid: 0,
            boot_ns: 5,
            frames: [0; 2],
            key: CheckKey {
                cgroup_id: 7,
                denied_before: 0,
                cap: 0,
                syscall: 260,
                flags: 0,
                site: 0,
                userns_level: 0,
                mntns: 0,
                comm,
            },
        };
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const ev).cast::<u8>(), size_of::<CheckEvent>())
        };
        c.on_record(bytes);
        let mut uncounted = ev;
        uncounted.kind = event_kind::CHECK_UNCOUNTED;
        let bytes2 = unsafe {
            std::slice::from_raw_parts((&raw const uncounted).cast::<u8>(), size_of::<CheckEvent>())
        };
        c.on_record(bytes2);
        c.on_record(bytes2);
        // Truncated and unknown records are ignored.
        c.on_record(&bytes[..20]);
        c.on_record(&[9, 0, 0, 0]);
        assert_eq!(c.events, 5);
        let seen = c.checks[&ev.key];
        assert_eq!(seen.uncounted, 2);
        assert_eq!(seen.first.unwrap().tgid, 10);
        assert_eq!(c.cgroups().collect::<Vec<_>>(), [7]);
        c.forget(&[7]);
        assert!(c.checks.is_empty());
    }

    #[test]
    fn outcome_records() {
        let mut comm = [0u8; 16];
        comm[..2].copy_from_slice(b"ls");
        let key = OutcomeKey {
            cgroup_id: 1,
            denied: 1 << 2 | 1 << 1,
            syscall: 257,
            result: -13,
            comm,
        };
        let o = outcome_record(&key, 3);
        assert_eq!(o.syscall.as_deref(), Some("openat"));
        assert_eq!(o.result, "EACCES");
        assert!(o.permission_error());
        assert_eq!(o.denied, [Cap(1), Cap(2)]);
        assert_eq!(o.phase, Phase::Workload);
    }

    #[test]
    fn cgroup_paths_from_names() {
        let mut names = [[0u8; 16]; 4];
        names[0][..6].copy_from_slice(b"libpod");
        names[1][..6].copy_from_slice(b"parent");
        assert_eq!(cgroup_path(&names), "/parent/libpod");
        assert_eq!(cgroup_path(&[[0u8; 8]; 2]), "/");
        let mut deep = [[0u8; 8]; 2];
        deep[0][..1].copy_from_slice(b"c");
        deep[1][..1].copy_from_slice(b"b");
        assert_eq!(cgroup_path(&deep), "/b/c");
    }

    #[test]
    fn names() {
        assert_eq!(comm_str(b"true\0\0\0\0\0\0\0\0\0\0\0\0"), "true");
        assert_eq!(comm_str(b"0123456789abcdef"), "0123456789abcdef");
        assert_eq!(syscall_name(NO_SYSCALL), None);
        assert_eq!(syscall_name(92).as_deref(), Some("chown"));
    }
}
