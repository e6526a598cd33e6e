//! The records a trace produces, as the profile holds them: each distinct capability check,
//! how the syscalls with denied checks ended, and what was lost on the way.

use serde::{Deserialize, Serialize};

use crate::linux::caps::Cap;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Losses {
    /// Ring-buffer records dropped (the counts in kernel maps were kept).
    pub ring_buffer: u64,
    /// kretprobe/kprobe firings missed by the kernel.
    pub probes_missed: u64,
    /// Denials whose syscall outcome could not be followed.
    pub outcomes: u64,
    /// Processes that left the traced cgroup (or could not be watched for it): what they did
    /// after that is not in the profile.
    #[serde(default)]
    pub migrated: u64,
}

impl Losses {
    pub fn total(&self) -> u64 {
        self.ring_buffer
            .saturating_add(self.probes_missed)
            .saturating_add(self.outcomes)
            .saturating_add(self.migrated)
    }

    /// Adds `other` (saturating: counts from files are not trusted to stay small).
    pub fn add(&mut self, other: &Losses) {
        self.ring_buffer = self.ring_buffer.saturating_add(other.ring_buffer);
        self.probes_missed = self.probes_missed.saturating_add(other.probes_missed);
        self.outcomes = self.outcomes.saturating_add(other.outcomes);
        self.migrated = self.migrated.saturating_add(other.migrated);
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Granted,
    Denied,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Audit {
    /// An enforcement point: the kernel acts on the answer.
    Audited,
    /// A probe (`CAP_OPT_NOAUDIT`): the kernel works either way.
    Noaudit,
    /// The backend could not tell; counted as audited.
    Unknown,
}

/// Who made the check.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The workload itself.
    Workload,
    /// The container runtime (or cap-trace's launcher) setting the workload up before its exec.
    Runtime,
}

/// One distinct kind of capability check, aggregated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub cap: Cap,
    pub verdict: Verdict,
    pub audit: Audit,
    /// Made from a set*id/setgroups path (`CAP_OPT_INSETID`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insetid: bool,
    /// Depth of the user namespace checked against (0: initial).
    #[serde(default)]
    pub userns_level: u32,
    /// System call in flight, by name (`None` outside a syscall).
    pub syscall: Option<String>,
    /// Thread name (`comm`) that made the check.
    pub comm: String,
    pub phase: Phase,
    /// Capabilities denied earlier in the same syscall by the same thread.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_before: Vec<Cap>,
    /// Kernel function that made the check, when the backend knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub count: u64,
    /// RFC 3339 time of the first occurrence (absent if its event was lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// In a merged profile: the profiles this check was seen in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

impl Check {
    /// Identity used when merging: everything but counts and first-occurrence details.
    pub fn identity(&self) -> impl Ord + Clone + use<> {
        (
            self.cap,
            self.verdict,
            self.audit,
            self.insetid,
            self.userns_level,
            self.syscall.clone(),
            self.comm.clone(),
            self.phase,
            self.denied_before.clone(),
            self.site.clone(),
        )
    }
}

/// How syscalls that had denied checks ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub syscall: Option<String>,
    pub comm: String,
    pub phase: Phase,
    /// Capabilities denied during the syscall.
    pub denied: Vec<Cap>,
    /// `ok`, or the errno name the syscall failed with (`EPERM`, `EACCES`, ...).
    pub result: String,
    pub count: u64,
}

impl Outcome {
    pub fn identity(&self) -> impl Ord + Clone + use<> {
        (
            self.syscall.clone(),
            self.comm.clone(),
            self.phase,
            self.denied.clone(),
            self.result.clone(),
        )
    }

    /// The syscall failed with a permission error.
    pub fn permission_error(&self) -> bool {
        self.result == "EPERM" || self.result == "EACCES"
    }
}

/// What was lost, in words: `3 ring-buffer events lost, 1 process left the traced cgroup`.
pub fn describe_losses(losses: &Losses) -> String {
    let mut parts = Vec::new();
    if losses.ring_buffer > 0 {
        parts.push(format!("{} ring-buffer events lost", losses.ring_buffer));
    }
    if losses.probes_missed > 0 {
        parts.push(format!("{} probe firings missed", losses.probes_missed));
    }
    if losses.outcomes > 0 {
        parts.push(format!("{} syscall outcomes lost", losses.outcomes));
    }
    if losses.migrated > 0 {
        parts.push(format!(
            "{} process{} left the traced cgroup",
            losses.migrated,
            if losses.migrated == 1 { "" } else { "es" }
        ));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// What to do about losses, for the profile's warning.
pub fn loss_advice(losses: &Losses) -> String {
    let mut advice = Vec::new();
    if losses.ring_buffer > 0 || losses.outcomes > 0 || losses.probes_missed > 0 {
        advice.push("re-run with a larger --ring-buffer");
    }
    if losses.migrated > 0 {
        advice.push("trace it where its processes stay in its cgroup");
    }
    advice.join("; ")
}
