//! The profile: everything one trace learned about one workload. Its JSON form (schema
//! `cap-trace/profile`, version [`VERSION`], documented in `docs/profile-schema.md`) is the
//! source of truth: every output format is rendered from it, and the suggestion is derived from
//! its `checks` and `outcomes` (and its `verification`, when there is one) again whenever a
//! profile is read.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::linux::caps::{self, Cap};
use crate::linux::hook::Backend;
use crate::model::record::{Check, Losses, Outcome, Phase, describe_losses, loss_advice};
use crate::model::suggest::{self, Context, Suggestion};
use crate::model::verify::{Ending, HealthResult, Verification};

pub const SCHEMA: &str = "cap-trace/profile";
/// The URL of the profile's JSON Schema (`docs/profile.schema.json`), written as `"$schema"`
/// first in every profile so that editors and validators find it. Readers ignore it: a
/// profile without it (written before it existed) reads the same.
pub const SCHEMA_URL: &str =
    "https://raw.githubusercontent.com/cap-trace/cap-trace/main/docs/profile.schema.json";
/// The version written. Version 2 added the verification (and statuses version 1 readers do
/// not know); a version 1 file reads as an unverified profile.
pub const VERSION: u32 = 2;
/// The versions read.
pub const READS: &[u32] = &[1, 2];
/// How the warning for each of `trace.incomplete` begins.
pub const INCOMPLETE_PREFIX: &str = "the profile is incomplete: ";

/// The largest profile read. A real one is kilobytes (a busy server's, a few hundred); a
/// merge of many nodes stays far below this.
pub const MAX_SIZE: u64 = 64 << 20;

/// A reader that counts what went through it.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// `"$schema"` in a profile: always written as [`SCHEMA_URL`], never read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaRef;

impl Serialize for SchemaRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(SCHEMA_URL)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// `"$schema"`: the JSON Schema's URL (ignored when read).
    #[serde(rename = "$schema", skip_deserializing)]
    pub json_schema: SchemaRef,
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Bumped on incompatible changes; readers refuse versions they do not know.
    pub version: u32,
    /// The cap-trace that wrote the file, e.g. `cap-trace 0.1.0`.
    pub generator: String,
    pub workload: Workload,
    pub trace: TraceInfo,
    /// Derived from `checks`, `outcomes` and `verification` (kept in the file for readers;
    /// never read back).
    #[serde(default)]
    pub suggestion: Suggestion,
    /// Every distinct kind of capability check, with how often it happened.
    pub checks: Vec<Check>,
    /// How syscalls that had a denied check ended.
    #[serde(default)]
    pub outcomes: Vec<Outcome>,
    /// Things the reader should know about this profile (incomplete trace, seccomp, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Runs of the workload under the learned set and without each of its capabilities
    /// (`--verify`); when present, its set is the suggestion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// What changes capability needs besides the capabilities, where the profile was learned.
    #[serde(default, skip_serializing_if = "Environment::is_empty")]
    pub environment: Environment,
}

/// Settings that decide whether an operation needs a capability at all: where they are more
/// permissive than where the workload is deployed, it needs capabilities no check showed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Environment {
    /// The container engine's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// Sysctls of the workload's network namespace, by name
    /// ([`PORT_START`](Environment::PORT_START), [`PING_RANGE`](Environment::PING_RANGE)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network: BTreeMap<String, String>,
    /// Sysctls of the host, by name ([`HOST_SYSCTLS`](Environment::HOST_SYSCTLS)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host: BTreeMap<String, String>,
}

impl Environment {
    /// Ports below it need NET_BIND_SERVICE to bind (Docker sets 0 in its containers).
    pub const PORT_START: &'static str = "net.ipv4.ip_unprivileged_port_start";
    /// Groups that may open ICMP echo sockets without NET_RAW (`ping`).
    pub const PING_RANGE: &'static str = "net.ipv4.ping_group_range";
    /// The network namespace's sysctls recorded.
    pub const NETWORK_SYSCTLS: [&'static str; 2] = [Self::PORT_START, Self::PING_RANGE];
    /// The host's sysctls recorded: who may ptrace, use perf events and BPF, read kernel
    /// addresses without a capability.
    pub const HOST_SYSCTLS: [&'static str; 4] = [
        "kernel.yama.ptrace_scope",
        "kernel.perf_event_paranoid",
        "kernel.unprivileged_bpf_disabled",
        "kernel.kptr_restrict",
    ];

    pub fn is_empty(&self) -> bool {
        self.engine_version.is_none() && self.network.is_empty() && self.host.is_empty()
    }

    /// `net.ipv4.ip_unprivileged_port_start`, when recorded.
    pub fn port_start(&self) -> Option<u32> {
        self.network.get(Self::PORT_START)?.trim().parse().ok()
    }

    /// `net.ipv4.ping_group_range` as (first, last) group, when recorded (empty when first >
    /// last).
    pub fn ping_range(&self) -> Option<(u32, u32)> {
        let mut parts = self.network.get(Self::PING_RANGE)?.split_whitespace();
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    Command,
    Container,
    Merged,
    /// A process already running (`--pid`).
    Process,
    /// A cgroup (`--cgroup`).
    Cgroup,
    /// A systemd service (`--unit`).
    Unit,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Workload {
    pub kind: Option<WorkloadKind>,
    /// Command line, container name, or merged name.
    pub name: String,
    /// Container id, when a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What `cap-trace daemon` keeps the profile under across restarts and re-creations:
    /// compose `project/service`, Kubernetes `namespace/workload/container`, else the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The process traced (`--pid`), or the first process of the cgroup or service traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// That process's command name (`/proc/PID/comm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// The cgroup v2 traced (or, for a process traced with its descendants, the one it shares
    /// with others), from the cgroup v2 mount: `/system.slice/nginx.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Exit status of the command or container's main process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// Signal that ended it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<ComposeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesInfo>,
    /// Effective capabilities the workload ran with, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Cap>>,
    /// The bounding set the workload ran with, when known: what a process of it, root or not,
    /// could hold at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounding: Option<Vec<Cap>>,
    /// Its health check (`--health`), when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthResult>,
    /// It was still running when its health check passed, and cap-trace stopped it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// Users its processes ran as when its health check passed (servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uids: Vec<u32>,
    /// Whether a seccomp filter was active (blocked syscalls never reach a capability check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<bool>,
    /// Depth of the workload's own user namespace (0: the initial one). Checks against deeper
    /// (child) namespaces do not count for the workload's capability set.
    #[serde(default)]
    pub userns_level: u32,
    /// Profiles this one was merged from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// The user a command was run as (`cap-trace run --user`), as a service's `User=` would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<RunUser>,
}

/// The user `cap-trace run --user` ran a command as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunUser {
    /// As given: a name, or a number.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Workload {
    /// What profiles of the same workload share (runs, replicas, restarts): the identity the
    /// daemon keeps it under, else its name.
    pub fn key(&self) -> &str {
        self.identity.as_deref().unwrap_or(&self.name)
    }

    /// Whether `name` names this workload: its name or identity, or a leading part of them
    /// that ends at a `/` (`shop` names compose services `shop/web` and `shop/worker`,
    /// `prod/web` the containers of Kubernetes workload `prod/web`).
    pub fn is_named(&self, name: &str) -> bool {
        let named = |full: &str| {
            full == name
                || full
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('/') && !name.is_empty())
        };
        named(&self.name) || self.identity.as_deref().is_some_and(named)
    }
}

/// The profiles that `names` name (all of them when `names` is empty), or an error listing
/// the names there are.
pub fn select(profiles: Vec<Profile>, names: &[String]) -> Result<Vec<Profile>, String> {
    if names.is_empty() {
        return Ok(profiles);
    }
    let available: Vec<String> = profiles
        .iter()
        .map(|p| p.workload.key().to_owned())
        .collect();
    let chosen: Vec<Profile> = profiles
        .into_iter()
        .filter(|p| names.iter().any(|n| p.workload.is_named(n)))
        .collect();
    if chosen.is_empty() {
        return Err(format!(
            "no profile is named {}: there are {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(" or "),
            available
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(chosen)
}

/// The workload a Kubernetes pod belongs to, from its generated name: `web-7d4b9c8f5-x2k9q`
/// (Deployment) is `web`, `db-0` (StatefulSet) stays `db-0` (each replica its own), and
/// `agent-x2k9q` (DaemonSet) is `agent`.
pub fn workload_of_pod(pod: &str) -> &str {
    match pod_owner(pod) {
        Some((PodOwner::Deployment | PodOwner::DaemonSet, name)) => name,
        _ => pod,
    }
}

/// The kind and name of the workload that owns a pod, as far as its generated name shows.
pub fn pod_owner(pod: &str) -> Option<(PodOwner, &str)> {
    let lower_alnum = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let random = |s: &str| s.len() == 5 && lower_alnum(s);
    let hash = |s: &str| (6..=10).contains(&s.len()) && lower_alnum(s);
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    match parts.as_slice() {
        [suffix, hash_part, _] if random(suffix) && hash(hash_part) => Some((
            PodOwner::Deployment,
            &pod[..pod.len() - suffix.len() - hash_part.len() - 2],
        )),
        [suffix, _, ..] if random(suffix) => {
            Some((PodOwner::DaemonSet, &pod[..pod.len() - suffix.len() - 1]))
        }
        [ordinal, _, ..] if !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()) => {
            Some((PodOwner::StatefulSet, &pod[..pod.len() - ordinal.len() - 1]))
        }
        _ => None,
    }
}

/// The kind of workload a pod's name shows it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOwner {
    Deployment,
    /// A DaemonSet, or a Job: both add five random characters to the name.
    DaemonSet,
    /// A StatefulSet: its pods are `NAME-ORDINAL`.
    StatefulSet,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ComposeInfo {
    pub project: Option<String>,
    pub service: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubernetesInfo {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub pod_uid: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceInfo {
    pub backend: Backend,
    /// The exact hook, e.g. `tracepoint (raw_tracepoint capability:cap_capable)`.
    pub hook: String,
    /// `uname -r` of the traced machine.
    pub kernel: String,
    /// RFC 3339 time the trace started.
    pub started: String,
    pub duration_ms: u64,
    /// False when any event, count or outcome was lost, or the workload was not seen from its
    /// first process: the profile may miss capabilities.
    pub complete: bool,
    /// Why the trace is incomplete, besides losses (e.g. attached after the container
    /// started).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
    pub losses: Losses,
    /// Checks of the workload, including runtime set-up.
    pub total_checks: u64,
    /// The bounding set of the traced host (cap-trace's own when it started): a capability
    /// outside it can be given to nothing started there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_bounding: Option<Vec<Cap>>,
}

/// Capabilities this build has no name for (checked by a kernel newer than it) cannot be
/// rendered, and a profile naming them could not be read back (see `Cap`'s `Deserialize`):
/// checks of them are left out and the trace says it is incomplete, naming each number; bits
/// of them in the sets recorded for context (bounding sets, what was denied before) are
/// dropped.
fn leave_out_unknown_caps(
    workload: &mut Workload,
    trace: &mut TraceInfo,
    checks: &mut Vec<Check>,
    outcomes: &mut [Outcome],
) {
    let known = |c: &Cap| *c <= caps::LAST;
    let unknown: std::collections::BTreeSet<Cap> =
        checks.iter().map(|c| c.cap).filter(|c| !known(c)).collect();
    checks.retain(|c| known(&c.cap));
    for c in checks.iter_mut() {
        c.denied_before.retain(known);
    }
    for o in outcomes.iter_mut() {
        o.denied.retain(known);
    }
    for set in [
        &mut workload.capabilities,
        &mut workload.bounding,
        &mut trace.host_bounding,
    ]
    .into_iter()
    .flatten()
    {
        set.retain(known);
    }
    if !unknown.is_empty() {
        let numbers: Vec<String> = unknown.iter().map(|c| c.0.to_string()).collect();
        trace.complete = false;
        trace.incomplete.push(format!(
            "the kernel checked capabilit{} {}, which this cap-trace does not know (it knows 0 to {}, {} the last): those checks are left out; trace with a newer cap-trace",
            if numbers.len() == 1 { "y" } else { "ies" },
            numbers.join(", "),
            caps::LAST.0,
            caps::LAST
        ));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a cap-trace profile: {message}")]
    Malformed { path: String, message: String },
    /// It names a capability this build does not know (see `caps::newer_than_this_build`).
    #[error("{path}: {message}")]
    NewerCapability { path: String, message: String },
    #[error(
        "{path} is larger than {} MiB, which no cap-trace profile is: give a profile file",
        MAX_SIZE >> 20
    )]
    TooLarge { path: String },
    #[error(
        "{path} is a version {found} profile; this cap-trace reads versions 1 and {VERSION} (upgrade cap-trace or re-trace the workload)"
    )]
    WrongVersion { path: String, found: u64 },
}

impl Profile {
    /// Assembles a profile and derives its suggestion.
    pub fn new(
        mut workload: Workload,
        mut trace: TraceInfo,
        mut checks: Vec<Check>,
        mut outcomes: Vec<Outcome>,
        mut warnings: Vec<String>,
    ) -> Profile {
        leave_out_unknown_caps(&mut workload, &mut trace, &mut checks, &mut outcomes);
        checks.sort_by_key(Check::identity);
        outcomes.sort_by_key(Outcome::identity);
        if trace.losses.total() > 0 {
            warnings.insert(
                0,
                format!(
                    "the trace is incomplete ({}): the profile may miss capabilities; {}",
                    describe_losses(&trace.losses),
                    loss_advice(&trace.losses)
                ),
            );
        }
        for (i, reason) in trace.incomplete.iter().enumerate() {
            warnings.insert(i, format!("{INCOMPLETE_PREFIX}{reason}"));
        }
        let mut profile = Profile {
            json_schema: SchemaRef,
            schema: SCHEMA.into(),
            version: VERSION,
            generator: format!("cap-trace {}", env!("CARGO_PKG_VERSION")),
            workload,
            trace,
            suggestion: Suggestion::default(),
            checks,
            outcomes,
            warnings,
            verification: None,
            environment: Environment::default(),
        };
        profile.derive();
        profile
    }

    /// Derives the suggestion again from the checks, outcomes and verification.
    pub fn derive(&mut self) {
        self.suggestion = suggest::suggest(&self.checks, &self.outcomes, &self.context());
    }

    /// Attaches a verification; its set becomes the suggestion.
    pub fn set_verification(&mut self, verification: Verification) {
        self.verification = Some(verification);
        self.derive();
    }

    /// What the suggestion is derived with.
    pub fn context(&self) -> Context<'_> {
        Context {
            base_level: self.workload.userns_level,
            succeeded: self.succeeded(),
            host_bounding: self.trace.host_bounding.as_deref(),
            workload_bounding: self
                .workload
                .bounding
                .as_deref()
                .or(self.workload.capabilities.as_deref()),
            verification: self.verification.as_ref(),
        }
    }

    /// How the workload ended, when it did (or was stopped after its health check passed).
    pub fn ending(&self) -> Option<Ending> {
        let w = &self.workload;
        if w.stopped {
            Some(Ending::Stopped)
        } else if let Some(status) = w.exit_status {
            Some(Ending::Exited { status })
        } else {
            w.exit_signal.map(|signal| Ending::Signalled { signal })
        }
    }

    /// The traced run succeeded: its health check passed (when one was given) and it exited
    /// with status 0 or was still serving.
    pub fn succeeded(&self) -> bool {
        let w = &self.workload;
        match &w.health {
            Some(h) => h.passed && (w.stopped || w.exit_status.is_none_or(|s| s == 0)),
            None => w.exit_status == Some(0),
        }
    }

    /// The suggestion is a verified minimal set.
    pub fn verified(&self) -> bool {
        self.suggestion.verified
    }

    /// Why the profile may miss capabilities, in a few words, or `None` for a complete trace:
    /// what every rendering's header says.
    pub fn incompleteness(&self) -> Option<String> {
        if self.trace.complete {
            return None;
        }
        let mut why = self.trace.incomplete.clone();
        if self.trace.losses.total() > 0 {
            why.insert(0, describe_losses(&self.trace.losses));
        }
        if why.is_empty() {
            why.push("marked incomplete, no reason recorded".to_owned());
        }
        Some(why.join("; "))
    }

    /// Reads and validates a profile file; the suggestion is derived again from its checks.
    pub fn read(path: &Path) -> Result<Profile, ProfileError> {
        let mut all = Self::read_all(path)?;
        if all.len() != 1 {
            return Err(ProfileError::Malformed {
                path: path.display().to_string(),
                message: format!("holds {} profiles where one was expected", all.len()),
            });
        }
        Ok(all.remove(0))
    }

    /// Reads a file holding one profile or a JSON array of them. A file over [`MAX_SIZE`]
    /// is refused unread; a stream (a pipe, `/dev/stdin`, a device) is parsed as it is read,
    /// so one that is not JSON fails at its first byte and one that never ends stops at
    /// [`MAX_SIZE`].
    pub fn read_all(path: &Path) -> Result<Vec<Profile>, ProfileError> {
        let display = path.display().to_string();
        let read_error = |source| ProfileError::Read {
            path: display.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let meta = file.metadata().map_err(read_error)?;
        if meta.is_dir() {
            return Err(read_error(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        if meta.is_file() && meta.len() > MAX_SIZE {
            return Err(ProfileError::TooLarge { path: display });
        }
        let mut reader = Counted {
            inner: std::io::Read::take(file, MAX_SIZE + 1),
            read: 0,
        };
        let value: serde_json::Value =
            match serde_json::from_reader(std::io::BufReader::new(&mut reader)) {
                Ok(value) => value,
                Err(_) if reader.read > MAX_SIZE => {
                    return Err(ProfileError::TooLarge { path: display });
                }
                Err(e) if e.is_io() => {
                    return Err(read_error(e.into()));
                }
                Err(e) => {
                    return Err(ProfileError::Malformed {
                        path: display,
                        message: format!("invalid JSON: {e}"),
                    });
                }
            };
        match value {
            serde_json::Value::Array(items) => {
                if items.is_empty() {
                    return Err(ProfileError::Malformed {
                        path: display,
                        message: "an empty list of profiles".into(),
                    });
                }
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Self::from_value(v, &format!("{display} (profile {})", i + 1)))
                    .collect()
            }
            v => Ok(vec![Self::from_value(v, &display)?]),
        }
    }

    pub fn parse(text: &str, name: &str) -> Result<Profile, ProfileError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ProfileError::Malformed {
                path: name.to_owned(),
                message: format!("invalid JSON: {e}"),
            })?;
        Self::from_value(value, name)
    }

    fn from_value(value: serde_json::Value, name: &str) -> Result<Profile, ProfileError> {
        let malformed = |message: String| ProfileError::Malformed {
            path: name.to_owned(),
            message,
        };
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(malformed(format!(
                    "schema is `{other}`, expected `{SCHEMA}`"
                )));
            }
            None => return Err(malformed(format!("no \"schema\": \"{SCHEMA}\" field"))),
        }
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if READS.iter().any(|&r| u64::from(r) == v) => {}
            Some(found) => {
                return Err(ProfileError::WrongVersion {
                    path: name.to_owned(),
                    found,
                });
            }
            None => return Err(malformed("no numeric \"version\" field".into())),
        }
        // The suggestion is derived, never read: a file may hold statuses of another version.
        let mut value = value;
        if let Some(object) = value.as_object_mut() {
            object.remove("suggestion");
        }
        let mut profile: Profile = serde_json::from_value(value).map_err(|e| {
            let message = e.to_string();
            if caps::is_newer_than_this_build(&message) {
                ProfileError::NewerCapability {
                    path: name.to_owned(),
                    message,
                }
            } else {
                malformed(message)
            }
        })?;
        profile.version = VERSION;
        profile.derive();
        Ok(profile)
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("profile serializes");
        s.push('\n');
        s
    }

    /// Total checks per capability (workload phase only).
    pub fn counts_by_cap(&self) -> BTreeMap<Cap, u64> {
        let mut out = BTreeMap::new();
        for check in self.checks.iter().filter(|c| c.phase == Phase::Workload) {
            let total: &mut u64 = out.entry(check.cap).or_default();
            *total = total.saturating_add(check.count);
        }
        out
    }
}

/// RFC 3339 (UTC, millisecond precision) for a time since the Unix epoch.
pub fn rfc3339(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let millis = since_epoch.subsec_millis();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{sample, trace_info};

    #[test]
    fn json_round_trip() {
        let profile = sample();
        let json = profile.to_json();
        let back = Profile::parse(&json, "x.json").unwrap();
        assert_eq!(back, profile);
        assert_eq!(back.suggestion.add, vec![Cap(0)]);
    }

    /// A kernel newer than this build checks capability 41: its checks are left out (no
    /// `--cap-add` can be rendered for it), the trace says so, and the profile reads back.
    #[test]
    fn checks_of_capabilities_this_build_does_not_know_make_the_trace_incomplete() {
        use crate::model::fixtures::check;
        use crate::model::record::{Audit, Verdict};
        let mut newer = check(41, Verdict::Granted, Audit::Audited, "newcall", "tool");
        newer.denied_before = vec![Cap(0), Cap(41), Cap(63)];
        let mut chown = check(0, Verdict::Granted, Audit::Audited, "fchownat", "chown");
        chown.denied_before = vec![Cap(41)];
        let workload = Workload {
            bounding: Some(vec![Cap(0), Cap(40), Cap(41), Cap(42)]),
            ..sample().workload
        };
        let mut trace = trace_info();
        trace.host_bounding = Some(vec![Cap(0), Cap(41)]);
        let p = Profile::new(workload, trace, vec![newer, chown], vec![], vec![]);
        assert_eq!(p.checks.len(), 1);
        assert!(p.checks[0].denied_before.is_empty());
        assert_eq!(p.workload.bounding, Some(vec![Cap(0), Cap(40)]));
        assert_eq!(p.trace.host_bounding, Some(vec![Cap(0)]));
        assert!(!p.trace.complete);
        assert_eq!(
            p.trace.incomplete,
            [
                "the kernel checked capability 41, which this cap-trace does not know (it knows 0 to 40, CHECKPOINT_RESTORE the last): those checks are left out; trace with a newer cap-trace"
            ]
        );
        assert!(p.warnings[0].contains("capability 41"), "{:?}", p.warnings);
        assert_eq!(p.suggestion.add, vec![Cap(0)]);
        let back = Profile::parse(&p.to_json(), "x.json").unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn json_shape_is_stable() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["schema"], "cap-trace/profile");
        assert_eq!(v["version"], 2);
        assert_eq!(v["workload"]["kind"], "command");
        assert_eq!(v["trace"]["backend"], "tracepoint");
        assert_eq!(v["suggestion"]["add"], serde_json::json!(["CHOWN"]));
        assert_eq!(v["checks"][0]["cap"], "CHOWN");
        assert_eq!(v["checks"][0]["verdict"], "granted");
        assert_eq!(v["checks"][0]["audit"], "audited");
        assert_eq!(v["checks"][1]["audit"], "noaudit");
    }

    #[test]
    fn every_profile_names_its_json_schema_first_and_readers_ignore_it() {
        let json = sample().to_json();
        assert!(
            json.starts_with(&format!("{{\n  \"$schema\": \"{SCHEMA_URL}\",\n")),
            "{json}"
        );
        // Old profiles have none, and another value (a local copy of the schema) is ignored.
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let object = v.as_object_mut().unwrap();
        object.remove("$schema");
        assert_eq!(Profile::parse(&v.to_string(), "a.json").unwrap(), sample());
        v["$schema"] = "profile.schema.json".into();
        let back = Profile::parse(&v.to_string(), "a.json").unwrap();
        assert!(back.to_json().contains(SCHEMA_URL));
    }

    #[test]
    fn rejects_bad_files() {
        assert!(matches!(
            Profile::parse("{", "a.json"),
            Err(ProfileError::Malformed { .. })
        ));
        assert!(matches!(
            Profile::parse(r#"{"schema":"other"}"#, "a.json"),
            Err(ProfileError::Malformed { .. })
        ));
        let future = sample()
            .to_json()
            .replace("\"version\": 2", "\"version\": 99");
        let err = Profile::parse(&future, "a.json").unwrap_err();
        assert!(matches!(err, ProfileError::WrongVersion { found: 99, .. }));
        assert!(err.to_string().contains("version 99"));
        let bad_cap = sample().to_json().replace("\"CHOWN\"", "\"FLY\"");
        let err = Profile::parse(&bad_cap, "a.json").unwrap_err();
        assert!(
            err.to_string().contains("unknown capability `FLY`"),
            "{err}"
        );
    }

    #[test]
    fn version_1_files_read_as_unverified_profiles() {
        let v1 = sample()
            .to_json()
            .replace("\"version\": 2", "\"version\": 1");
        let p = Profile::parse(&v1, "old.json").unwrap();
        assert_eq!(p.version, VERSION);
        assert!(!p.verified());
        assert_eq!(p.suggestion.add, vec![Cap(0)]);
    }

    #[test]
    fn a_stored_suggestion_is_never_trusted() {
        // A file whose suggestion says otherwise (edited, or of another version's statuses).
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        v["suggestion"] = serde_json::json!({"add": ["SYS_ADMIN"], "capabilities": [{"status": "from_the_future"}]});
        let p = Profile::parse(&v.to_string(), "x.json").unwrap();
        assert_eq!(p.suggestion.add, vec![Cap(0)]);
    }

    #[test]
    fn success_of_the_traced_run() {
        let mut p = sample();
        assert!(p.succeeded());
        assert_eq!(p.ending(), Some(Ending::Exited { status: 0 }));
        p.workload.exit_status = Some(1);
        assert!(!p.succeeded());
        let passed = HealthResult {
            command: "true".into(),
            inside: false,
            passed: true,
            attempts: 1,
            status: Some(0),
            output: String::new(),
        };
        p.workload.exit_status = None;
        p.workload.stopped = true;
        p.workload.health = Some(passed.clone());
        assert!(p.succeeded());
        assert_eq!(p.ending(), Some(Ending::Stopped));
        p.workload.health = Some(HealthResult {
            passed: false,
            ..passed
        });
        assert!(!p.succeeded());
    }

    #[test]
    fn incomplete_trace_warns() {
        let mut info = trace_info();
        info.complete = false;
        info.losses.ring_buffer = 3;
        let p = Profile::new(Workload::default(), info, vec![], vec![], vec![]);
        assert!(
            p.warnings[0].contains("incomplete (3 ring-buffer events lost)"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn profiles_are_selected_by_name_identity_or_a_leading_part() {
        let named = |name: &str, identity: Option<&str>| {
            let mut p = sample();
            p.workload.name = name.into();
            p.workload.identity = identity.map(Into::into);
            p
        };
        let all = vec![
            named("shop/web", None),
            named("shop/worker", None),
            named("blog/web", None),
            named("web-1", Some("prod/web/nginx")),
        ];
        let pick = |names: &[&str]| {
            select(
                all.clone(),
                &names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
            )
            .map(|ps| ps.into_iter().map(|p| p.workload.name).collect::<Vec<_>>())
        };
        assert_eq!(pick(&[]).unwrap().len(), 4);
        assert_eq!(pick(&["shop"]).unwrap(), ["shop/web", "shop/worker"]);
        assert_eq!(pick(&["blog/web", "web-1"]).unwrap(), ["blog/web", "web-1"]);
        assert_eq!(pick(&["prod/web"]).unwrap(), ["web-1"]);
        assert_eq!(pick(&["prod/web/nginx"]).unwrap(), ["web-1"]);
        let err = pick(&["sho"]).unwrap_err();
        assert!(
            err.contains("no profile is named `sho`: there are `shop/web`"),
            "{err}"
        );
        assert!(pick(&[""]).is_err());
    }

    #[test]
    fn pod_workloads() {
        for (pod, workload, owner) in [
            (
                "web-7d4b9c8f5-x2k9q",
                "web",
                Some((PodOwner::Deployment, "web")),
            ),
            (
                "my-api-5f6c7d8b9-abcde",
                "my-api",
                Some((PodOwner::Deployment, "my-api")),
            ),
            ("agent-x2k9q", "agent", Some((PodOwner::DaemonSet, "agent"))),
            ("db-0", "db-0", Some((PodOwner::StatefulSet, "db"))),
            (
                "my-db-12",
                "my-db-12",
                Some((PodOwner::StatefulSet, "my-db")),
            ),
            ("standalone", "standalone", None),
            ("-", "-", None),
        ] {
            assert_eq!(workload_of_pod(pod), workload, "{pod}");
            assert_eq!(pod_owner(pod), owner, "{pod}");
        }
    }

    #[test]
    fn formats_times() {
        assert_eq!(
            rfc3339(std::time::Duration::from_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(std::time::Duration::from_millis(1_795_348_800_123)),
            "2026-11-22T12:00:00.123Z"
        );
        assert_eq!(
            rfc3339(std::time::Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn oversized_and_endless_files_fail_fast() {
        let dir = std::env::temp_dir().join(format!("cap-trace-unit-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Sparse: refused by its size, without being read.
        let big = dir.join("big.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_SIZE + 1)
            .unwrap();
        let err = Profile::read_all(&big).unwrap_err();
        assert!(matches!(err, ProfileError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("larger than 64 MiB"), "{err}");
        // A device that never ends: not JSON from its first byte.
        let started = std::time::Instant::now();
        let err = Profile::read_all(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, ProfileError::Malformed { .. }), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let err = Profile::read_all(&dir).unwrap_err();
        assert!(matches!(err, ProfileError::Read { .. }), "{err}");
        // A stream that goes on past the limit as valid JSON is cut there.
        let mut reader = Counted {
            inner: std::io::Read::take(std::io::repeat(b' '), 10),
            read: 0,
        };
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut sink).unwrap();
        assert_eq!(reader.read, 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
