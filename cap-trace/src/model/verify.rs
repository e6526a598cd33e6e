//! Verification: a learned capability set proven by running the workload under it, and made
//! minimal by running it without each capability in turn (ablation).
//!
//! The policy:
//! - A run **passes** when it ends the way the learning run did (the same exit status, or still
//!   serving when its health check passed), its health check passes (when one is given), and
//!   the workload's own privilege drop still happens. A denial whose syscall failed inside a
//!   passing run was tolerated: it is evidence that the capability is not needed, not a wall.
//! - `strict` adds: a check granted in the learning run that is now denied and makes its
//!   syscall fail fails the run ("nothing changes").
//! - The privilege drop: a denied SETUID or SETGID check in a set*id or setgroups syscall means
//!   the workload tried to change identity and could not; and when the learning run had
//!   processes running as another user than root and the run has none, the drop did not happen.
//!   Either fails the run: a server that keeps serving as root is less safe, not more.
//! - Ablation removes the most dangerous capability first (broad before narrow, so that where
//!   either of two would do, the narrower one stays), continues from the reduced set after each
//!   removal that passes, and repeats over the kept ones until every kept capability was tried
//!   against the final set. The final set is always one a run passed with.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::linux::caps::{ALTERNATIVES, Cap};
use crate::linux::syscalls::RESULT_BLIND_SYSCALLS;
use crate::model::record::{Audit, Check, Outcome, Phase, Verdict};

/// SETGID and SETUID: what a workload's own privilege drop needs.
pub const SETGID: Cap = Cap(6);
pub const SETUID: Cap = Cap(7);

/// Syscalls that change a process's identity.
pub const SETID_SYSCALLS: &[&str] = &[
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
];

/// A denied SETUID/SETGID check in a set*id or setgroups syscall: the workload tried to change
/// its identity and could not.
pub fn is_failed_privilege_drop(check: &Check) -> bool {
    check.verdict == Verdict::Denied
        && (check.cap == SETUID || check.cap == SETGID)
        && (check.insetid
            || check
                .syscall
                .as_deref()
                .is_some_and(|s| SETID_SYSCALLS.contains(&s)))
}

/// How a run of the workload ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Ending {
    /// Its main process exited with this status.
    Exited { status: i32 },
    /// A signal ended it.
    Signalled { signal: i32 },
    /// It was still running when its health check passed, and cap-trace stopped it.
    Stopped,
    /// It neither ended nor passed its health check in time; cap-trace stopped it.
    TimedOut,
}

impl Ending {
    pub fn describe(self) -> String {
        match self {
            Ending::Exited { status } => format!("exited with status {status}"),
            Ending::Signalled { signal } => format!("was killed by signal {signal}"),
            Ending::Stopped => "was still running when its health check passed".into(),
            Ending::TimedOut => "neither ended nor passed its health check in time".into(),
        }
    }
}

/// A health check and how it went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthResult {
    /// The command, as given.
    pub command: String,
    /// Run inside the container (`--health-exec`) rather than on the host.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inside: bool,
    pub passed: bool,
    /// Attempts made (it is retried until it passes or the time is up).
    pub attempts: u32,
    /// Exit status of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    /// The last lines the last attempt printed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

impl HealthResult {
    fn failure(&self) -> String {
        let status = self
            .status
            .map_or_else(|| "it did not finish".to_owned(), |s| format!("status {s}"));
        let output = last_line(&self.output);
        if output.is_empty() {
            format!("the health check failed ({status})")
        } else {
            format!("the health check failed ({status}: {output})")
        }
    }
}

/// The last non-empty line of some output, shortened.
pub fn last_line(output: &str) -> String {
    let line = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() > 160 {
        format!("{}...", line.chars().take(157).collect::<String>())
    } else {
        line.to_owned()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A denied check whose syscall failed, in a run that failed.
    Wall,
    /// A denied check whose syscall failed, in a run that passed: the workload went on.
    Tolerated,
    /// The workload's own privilege drop did not happen.
    PrivilegeDrop,
    /// `strict`: a check granted in the learning run was denied and its syscall failed.
    Changed,
    /// The run ended otherwise than the learning run.
    Ending,
    /// The health check failed.
    Health,
}

/// One fact a run showed, as one line (`text`) and its parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    pub kind: EvidenceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// The errno the syscall failed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    pub text: String,
}

impl Evidence {
    fn plain(kind: EvidenceKind, text: String) -> Evidence {
        Evidence {
            kind,
            cap: None,
            comm: None,
            syscall: None,
            result: None,
            uid: None,
            text,
        }
    }
}

/// Why a run was made.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The learned set: does it work at all?
    Sufficiency,
    /// The learned set failed: every capability the workload was seen to use, before the
    /// rules took some away.
    Observed,
    /// The current set without one capability (`removed`).
    Without,
}

/// One run of the workload under a capability set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub purpose: Purpose,
    /// With `without`: the capability taken away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Cap>,
    /// Exactly what the workload held: bounding, permitted and effective (and ambient for a
    /// non-root user).
    pub set: Vec<Cap>,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending: Option<Ending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthResult>,
    pub duration_ms: u64,
    /// Users the workload's processes ran as when it was judged (servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uids: Vec<u32>,
    /// What the run showed: why it failed, or what the workload tolerated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// The last lines the workload printed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

impl Run {
    /// What the run is, in words: `the learned set`, `without SYS_PTRACE`.
    pub fn title(&self) -> String {
        match (self.purpose, self.removed) {
            (Purpose::Sufficiency, _) => "the learned set".into(),
            (Purpose::Observed, _) => "every capability seen".into(),
            (Purpose::Without, Some(cap)) => format!("without {cap}"),
            (Purpose::Without, None) => "a reduced set".into(),
        }
    }

    /// Why it failed, in one line (the first piece of evidence that fails it).
    pub fn failure(&self) -> Option<String> {
        if self.passed {
            return None;
        }
        let fatal = self
            .evidence
            .iter()
            .find(|e| e.kind != EvidenceKind::Tolerated && e.kind != EvidenceKind::Wall)
            .or_else(|| self.evidence.iter().find(|e| e.kind == EvidenceKind::Wall));
        Some(fatal.map_or_else(|| "it failed".to_owned(), |e| e.text.clone()))
    }
}

/// What verification found for one capability.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// Without it the workload failed.
    Needed,
    /// Without it the workload's own privilege drop failed: kept, or it would run as root.
    PrivilegeDrop,
    /// The workload succeeded without it.
    NotNeeded,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapFinding {
    pub cap: Cap,
    pub finding: Finding,
    /// The run (1-based) that decided it.
    pub run: usize,
    /// One line: why.
    pub reason: String,
}

/// A source of a merged profile, and what its verification said.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceVerification {
    pub source: String,
    pub verified: bool,
    pub set: Vec<Cap>,
}

/// What verification did and found: kept in the profile, applied whenever it is read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Verification {
    /// The set is proven: the workload passed with it, and without any one of it, it did not.
    pub verified: bool,
    /// Runs also failed when a check granted in the learning run was denied (`--strict`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// The set the rules suggested from the learning run, where verification started.
    pub learned: Vec<Cap>,
    /// The verified set; when not verified, the learned set (an upper bound).
    pub set: Vec<Cap>,
    pub runs: Vec<Run>,
    /// A finding for every capability verification tried to remove.
    pub capabilities: Vec<CapFinding>,
    /// Time all runs took together.
    pub duration_ms: u64,
    /// Why it is not verified (the learned set failed, interrupted, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// In a merged profile: each source's verification. The union of verified sets is
    /// sufficient for each source, but was not itself ablated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceVerification>,
}

impl Verification {
    pub fn finding(&self, cap: Cap) -> Option<&CapFinding> {
        self.capabilities.iter().find(|f| f.cap == cap)
    }

    pub fn total_seconds(&self) -> f64 {
        self.duration_ms as f64 / 1000.0
    }
}

/// What a run is expected to show: how the learning run went.
pub struct Expect<'a> {
    pub ending: Ending,
    /// A health check is given (and passed in the learning run).
    pub health: bool,
    pub strict: bool,
    pub learning_checks: &'a [Check],
    /// Users the learning run's processes ran as when it was judged.
    pub learning_uids: &'a [u32],
}

/// What a run showed.
pub struct Observed<'a> {
    pub checks: &'a [Check],
    pub outcomes: &'a [Outcome],
    pub ending: Option<Ending>,
    pub health: Option<&'a HealthResult>,
    pub uids: &'a [u32],
}

/// Judges a run: whether it passed, and the evidence (why it failed; what was tolerated).
pub fn judge(expect: &Expect, run: &Observed) -> (bool, Vec<Evidence>) {
    let mut fatal = Vec::new();
    match run.ending {
        Some(e) if e == expect.ending => {}
        Some(e) => fatal.push(Evidence::plain(
            EvidenceKind::Ending,
            format!(
                "the workload {} (the learning run {})",
                e.describe(),
                expect.ending.describe()
            ),
        )),
        None => fatal.push(Evidence::plain(
            EvidenceKind::Ending,
            "how the workload ended is unknown".into(),
        )),
    }
    if expect.health {
        match run.health {
            Some(h) if h.passed => {}
            Some(h) => fatal.push(Evidence::plain(EvidenceKind::Health, h.failure())),
            None => fatal.push(Evidence::plain(
                EvidenceKind::Health,
                "the health check did not run: the workload ended first".into(),
            )),
        }
    }
    fatal.extend(privilege_drop(expect, run));
    let mut walls = denials(run);
    if expect.strict {
        for wall in &mut walls {
            if granted_in_learning(expect.learning_checks, wall) {
                wall.kind = EvidenceKind::Changed;
                wall.text = format!("{} (granted in the learning run)", wall.text);
            }
        }
    }
    let passed = fatal.is_empty() && walls.iter().all(|w| w.kind != EvidenceKind::Changed);
    for wall in &mut walls {
        if wall.kind == EvidenceKind::Wall && passed {
            wall.kind = EvidenceKind::Tolerated;
            wall.text = format!("{}, and it went on", wall.text);
        }
    }
    // The facts that failed the run first, then the denials.
    fatal.extend(walls);
    (passed, fatal)
}

/// The privilege drop did not happen: a denied set*id check, or processes that ran as another
/// user in the learning run now all run as root.
fn privilege_drop(expect: &Expect, run: &Observed) -> Vec<Evidence> {
    let mut out: Vec<Evidence> = run
        .checks
        .iter()
        .filter(|c| {
            c.phase == Phase::Workload
                && is_failed_privilege_drop(c)
                && !succeeded_anyway(c, run.outcomes)
        })
        .map(|c| {
            let syscall = c.syscall.as_deref().unwrap_or("set*id");
            Evidence {
                kind: EvidenceKind::PrivilegeDrop,
                cap: Some(c.cap),
                comm: Some(c.comm.clone()),
                syscall: c.syscall.clone(),
                result: None,
                uid: c.uid,
                text: format!(
                    "{}: {syscall} was denied {}: its privilege drop failed",
                    c.comm, c.cap
                ),
            }
        })
        .collect();
    let dropped_before: Vec<u32> = expect
        .learning_uids
        .iter()
        .copied()
        .filter(|&u| u != 0)
        .collect();
    if !dropped_before.is_empty() && !run.uids.is_empty() && run.uids.iter().all(|&u| u == 0) {
        out.push(Evidence::plain(
            EvidenceKind::PrivilegeDrop,
            format!(
                "every process ran as root; in the learning run some ran as uid {}",
                dropped_before
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    out
}

/// A denied check whose syscall succeeded all the same, each time the outcome is known: a
/// process already running as a user calling `setgid` with its own group (busybox's shell after
/// `su` does) is denied SETGID, needs none, and its identity is what it asked for. With no
/// outcome known, the denial is taken to have failed the call.
fn succeeded_anyway(check: &Check, outcomes: &[Outcome]) -> bool {
    let mut same = outcomes
        .iter()
        .filter(|o| {
            o.comm == check.comm && o.syscall == check.syscall && o.denied.contains(&check.cap)
        })
        .peekable();
    same.peek().is_some() && same.all(|o| o.result == "ok")
}

/// Denials that made a syscall fail with a permission error (or whose syscall cannot tell).
fn denials(run: &Observed) -> Vec<Evidence> {
    let mut out: Vec<Evidence> = Vec::new();
    for o in run
        .outcomes
        .iter()
        .filter(|o| o.phase == Phase::Workload && o.permission_error())
    {
        let syscall = o.syscall.as_deref().unwrap_or("a syscall");
        let denied = o
            .denied
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ");
        for &cap in &o.denied {
            let uid = run
                .checks
                .iter()
                .find(|c| c.cap == cap && c.comm == o.comm && c.syscall == o.syscall)
                .and_then(|c| c.uid);
            let text = format!(
                "{}: {syscall} failed with {} ({denied} denied)",
                o.comm, o.result
            );
            if out.iter().any(|e| e.text == text && e.cap == Some(cap)) {
                continue;
            }
            out.push(Evidence {
                kind: EvidenceKind::Wall,
                cap: Some(cap),
                comm: Some(o.comm.clone()),
                syscall: o.syscall.clone(),
                result: Some(o.result.clone()),
                uid,
                text,
            });
        }
    }
    for c in run.checks.iter().filter(|c| {
        c.phase == Phase::Workload
            && c.verdict == Verdict::Denied
            && c.audit != Audit::Noaudit
            && c.syscall
                .as_deref()
                .is_some_and(|s| RESULT_BLIND_SYSCALLS.contains(&s))
    }) {
        let syscall = c.syscall.as_deref().unwrap_or_default();
        out.push(Evidence {
            kind: EvidenceKind::Wall,
            cap: Some(c.cap),
            comm: Some(c.comm.clone()),
            syscall: c.syscall.clone(),
            result: None,
            uid: c.uid,
            text: format!(
                "{}: {} denied in {syscall} (a netlink request: its error is in the reply)",
                c.comm, c.cap
            ),
        });
    }
    out
}

fn granted_in_learning(learning: &[Check], wall: &Evidence) -> bool {
    learning.iter().any(|c| {
        c.phase == Phase::Workload
            && c.verdict == Verdict::Granted
            && c.audit != Audit::Noaudit
            && Some(c.cap) == wall.cap
            && wall.comm.as_deref() == Some(c.comm.as_str())
            && c.syscall == wall.syscall
    })
}

/// The order capabilities are taken away in: the most dangerous first; among equals, a broad
/// capability before its narrow alternative (so the narrow one is what stays when either
/// would do); then by number.
pub fn removal_order(set: &[Cap]) -> Vec<Cap> {
    let mut order = set.to_vec();
    order.sort_by_key(|&cap| {
        let danger = cap.info().map(|i| i.danger);
        let narrow_of_present = ALTERNATIVES
            .iter()
            .any(|&(narrow, broad)| narrow == cap && set.contains(&broad));
        (std::cmp::Reverse(danger), narrow_of_present, cap)
    });
    order
}

fn without(set: &[Cap], cap: Cap) -> Vec<Cap> {
    set.iter().copied().filter(|&c| c != cap).collect()
}

/// The ablation: which set to try next, and what each capability's removal showed.
#[derive(Debug, Clone)]
pub struct Ablation {
    start: Vec<Cap>,
    current: Vec<Cap>,
    queue: VecDeque<Cap>,
    /// For each kept capability: the set its removal was tried with, and that run's index.
    kept: BTreeMap<Cap, (Vec<Cap>, usize)>,
    /// For each removed capability: the run (index) that removed it.
    removed: BTreeMap<Cap, usize>,
}

impl Ablation {
    /// Starts from a set a run passed with.
    pub fn new(start: &[Cap]) -> Ablation {
        let mut start = start.to_vec();
        start.sort();
        start.dedup();
        Ablation {
            queue: removal_order(&start).into(),
            current: start.clone(),
            start,
            kept: BTreeMap::new(),
            removed: BTreeMap::new(),
        }
    }

    /// The smallest set a run passed with so far.
    pub fn current(&self) -> &[Cap] {
        &self.current
    }

    /// The next capability to try without, and the set that leaves; `None` when every kept
    /// capability was tried against the current set.
    pub fn next_removal(&mut self) -> Option<(Cap, Vec<Cap>)> {
        loop {
            while let Some(cap) = self.queue.pop_front() {
                if !self.current.contains(&cap) {
                    continue;
                }
                let candidate = without(&self.current, cap);
                if self
                    .kept
                    .get(&cap)
                    .is_some_and(|(tried, _)| *tried == candidate)
                {
                    continue;
                }
                return Some((cap, candidate));
            }
            // A pass is over: kept capabilities tried before a later removal are tried again.
            let again: VecDeque<Cap> = removal_order(&self.current)
                .into_iter()
                .filter(|&c| {
                    self.kept
                        .get(&c)
                        .is_none_or(|(tried, _)| *tried != without(&self.current, c))
                })
                .collect();
            if again.is_empty() {
                return None;
            }
            self.queue = again;
        }
    }

    /// Records how the run without `cap` (with `candidate`, run index `run`) went.
    pub fn record(&mut self, cap: Cap, candidate: Vec<Cap>, passed: bool, run: usize) {
        if passed {
            self.current = candidate;
            self.kept.remove(&cap);
            self.removed.insert(cap, run);
        } else {
            self.kept.insert(cap, (candidate, run));
        }
    }

    /// A finding for every capability of the starting set, from the runs that decided them.
    pub fn findings(&self, runs: &[Run]) -> Vec<CapFinding> {
        let mut out = Vec::new();
        for &cap in &self.start {
            if let Some(&index) = self.removed.get(&cap) {
                out.push(not_needed(cap, index, &runs[index]));
            } else if let Some((_, index)) = self.kept.get(&cap) {
                out.push(needed(cap, *index, &runs[*index]));
            }
        }
        out
    }
}

fn not_needed(cap: Cap, index: usize, run: &Run) -> CapFinding {
    let tolerated: Vec<&str> = run
        .evidence
        .iter()
        .filter(|e| e.kind == EvidenceKind::Tolerated && e.cap == Some(cap))
        .map(|e| e.text.as_str())
        .collect();
    let mut reason = format!(
        "not needed: the workload succeeded without it (run {})",
        index + 1
    );
    if !tolerated.is_empty() {
        reason.push_str("; ");
        reason.push_str(&tolerated.join("; "));
    }
    CapFinding {
        cap,
        finding: Finding::NotNeeded,
        run: index + 1,
        reason,
    }
}

fn needed(cap: Cap, index: usize, run: &Run) -> CapFinding {
    let failures: Vec<&Evidence> = run
        .evidence
        .iter()
        .filter(|e| e.kind != EvidenceKind::Tolerated)
        .collect();
    let only_the_drop = !failures.is_empty()
        && failures
            .iter()
            .all(|e| e.kind == EvidenceKind::PrivilegeDrop || e.kind == EvidenceKind::Wall);
    let drop = failures
        .iter()
        .find(|e| e.kind == EvidenceKind::PrivilegeDrop);
    // The wall of this very capability tells most; else the first failure.
    let why = failures
        .iter()
        .find(|e| e.cap == Some(cap) && e.kind != EvidenceKind::PrivilegeDrop)
        .or_else(|| failures.first())
        .map_or_else(|| "it failed".to_owned(), |e| e.text.clone());
    match drop {
        Some(d) if only_the_drop && (cap == SETUID || cap == SETGID) => CapFinding {
            cap,
            finding: Finding::PrivilegeDrop,
            run: index + 1,
            reason: format!(
                "kept for the privilege drop: without it {}; it would go on as root, which is less safe, not more (run {})",
                d.text,
                index + 1
            ),
        },
        _ => CapFinding {
            cap,
            finding: Finding::Needed,
            run: index + 1,
            reason: format!("needed: without it, {why} (run {})", index + 1),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::check;

    const CHOWN: Cap = Cap(0);
    const DAC_OVERRIDE: Cap = Cap(1);
    const DAC_READ_SEARCH: Cap = Cap(2);
    const SYS_PTRACE: Cap = Cap(19);
    const SYS_ADMIN: Cap = Cap(21);
    const PERFMON: Cap = Cap(38);
    const NET_BIND_SERVICE: Cap = Cap(10);

    fn outcome(syscall: &str, comm: &str, denied: &[Cap], result: &str) -> Outcome {
        Outcome {
            syscall: Some(syscall.into()),
            comm: comm.into(),
            phase: Phase::Workload,
            denied: denied.to_vec(),
            result: result.into(),
            count: 1,
        }
    }

    fn expect(ending: Ending) -> Expect<'static> {
        Expect {
            ending,
            health: false,
            strict: false,
            learning_checks: &[],
            learning_uids: &[],
        }
    }

    fn observed<'a>(checks: &'a [Check], outcomes: &'a [Outcome], ending: Ending) -> Observed<'a> {
        Observed {
            checks,
            outcomes,
            ending: Some(ending),
            health: None,
            uids: &[],
        }
    }

    const OK: Ending = Ending::Exited { status: 0 };

    #[test]
    fn a_denial_the_workload_went_on_from_is_tolerated() {
        let checks = [check(
            21,
            Verdict::Denied,
            Audit::Audited,
            "clone",
            "nsfallback",
        )];
        let outcomes = [outcome("clone", "nsfallback", &[SYS_ADMIN], "EPERM")];
        let (passed, evidence) = judge(&expect(OK), &observed(&checks, &outcomes, OK));
        assert!(passed);
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].kind, EvidenceKind::Tolerated);
        assert_eq!(
            evidence[0].text,
            "nsfallback: clone failed with EPERM (SYS_ADMIN denied), and it went on"
        );
    }

    #[test]
    fn the_same_denial_in_a_failing_run_is_a_wall() {
        let checks = [check(
            0,
            Verdict::Denied,
            Audit::Audited,
            "fchownat",
            "chown",
        )];
        let outcomes = [outcome("fchownat", "chown", &[CHOWN], "EPERM")];
        let failed = Ending::Exited { status: 1 };
        let (passed, evidence) = judge(&expect(OK), &observed(&checks, &outcomes, failed));
        assert!(!passed);
        assert_eq!(evidence[0].kind, EvidenceKind::Ending);
        assert_eq!(
            evidence[0].text,
            "the workload exited with status 1 (the learning run exited with status 0)"
        );
        assert_eq!(evidence[1].kind, EvidenceKind::Wall);
        assert_eq!(evidence[1].cap, Some(CHOWN));
        assert_eq!(evidence[1].result.as_deref(), Some("EPERM"));
    }

    #[test]
    fn the_same_ending_as_learning_passes_even_when_it_is_a_failure() {
        let status = Ending::Exited { status: 3 };
        assert!(judge(&expect(status), &observed(&[], &[], status)).0);
        assert!(!judge(&expect(status), &observed(&[], &[], OK)).0);
        assert!(!judge(&expect(Ending::Stopped), &observed(&[], &[], OK)).0);
    }

    #[test]
    fn a_health_check_must_pass() {
        let mut e = expect(Ending::Stopped);
        e.health = true;
        let failed = HealthResult {
            command: "curl -sf http://127.0.0.1/".into(),
            inside: false,
            passed: false,
            attempts: 20,
            status: Some(7),
            output: "curl: (7) Failed to connect to 127.0.0.1 port 80\n".into(),
        };
        let mut run = observed(&[], &[], Ending::TimedOut);
        run.health = Some(&failed);
        let (passed, evidence) = judge(&e, &run);
        assert!(!passed);
        assert_eq!(
            evidence[1].text,
            "the health check failed (status 7: curl: (7) Failed to connect to 127.0.0.1 port 80)"
        );
        let ok = HealthResult {
            passed: true,
            status: Some(0),
            ..failed
        };
        let mut run = observed(&[], &[], Ending::Stopped);
        run.health = Some(&ok);
        assert!(judge(&e, &run).0);
    }

    #[test]
    fn a_failed_privilege_drop_fails_the_run() {
        let mut setgid = check(6, Verdict::Denied, Audit::Audited, "setgid", "apache2");
        setgid.insetid = true;
        let outcomes = [outcome("setgid", "apache2", &[Cap(6)], "EPERM")];
        let checks = [setgid];
        let (passed, evidence) = judge(&expect(OK), &observed(&checks, &outcomes, OK));
        assert!(!passed, "apache serving as root is not a success");
        assert_eq!(evidence[0].kind, EvidenceKind::PrivilegeDrop);
        assert_eq!(
            evidence[0].text,
            "apache2: setgid was denied SETGID: its privilege drop failed"
        );
        // setgroups carries no INSETID flag: the syscall name tells.
        let setgroups = [check(6, Verdict::Denied, Audit::Audited, "setgroups", "x")];
        assert!(!judge(&expect(OK), &observed(&setgroups, &[], OK)).0);
    }

    #[test]
    fn a_denied_setid_call_that_succeeded_is_no_failed_drop() {
        // A shell already running as nobody sets its own group: denied SETGID, and it works.
        let mut setgid = check(6, Verdict::Denied, Audit::Audited, "setgid", "sh");
        setgid.insetid = true;
        setgid.uid = Some(65534);
        let checks = [setgid];
        let ok = [outcome("setgid", "sh", &[Cap(6)], "ok")];
        let (passed, evidence) = judge(&expect(OK), &observed(&checks, &ok, OK));
        assert!(passed, "{evidence:?}");
        assert!(evidence.is_empty(), "{evidence:?}");
        // Once failed, or no outcome known: a failed drop.
        let mixed = [
            outcome("setgid", "sh", &[Cap(6)], "ok"),
            outcome("setgid", "sh", &[Cap(6)], "EPERM"),
        ];
        assert!(!judge(&expect(OK), &observed(&checks, &mixed, OK)).0);
        assert!(!judge(&expect(OK), &observed(&checks, &[], OK)).0);
        // Another process's success says nothing about this one's.
        let other = [outcome("setgid", "su", &[Cap(6)], "ok")];
        assert!(!judge(&expect(OK), &observed(&checks, &other, OK)).0);
    }

    #[test]
    fn workers_that_stay_root_fail_the_run() {
        let mut e = expect(Ending::Stopped);
        e.learning_uids = &[0, 33];
        let mut run = observed(&[], &[], Ending::Stopped);
        run.uids = &[0];
        let (passed, evidence) = judge(&e, &run);
        assert!(!passed);
        assert_eq!(
            evidence[0].text,
            "every process ran as root; in the learning run some ran as uid 33"
        );
        run.uids = &[0, 33];
        assert!(judge(&e, &run).0);
        // No processes left to look at (a batch job): no claim.
        run.uids = &[];
        assert!(judge(&e, &run).0);
    }

    #[test]
    fn strict_fails_on_a_granted_check_now_denied() {
        let learning = [check(
            19,
            Verdict::Granted,
            Audit::Audited,
            "readlinkat",
            "ps",
        )];
        let checks = [check(
            19,
            Verdict::Denied,
            Audit::Audited,
            "readlinkat",
            "ps",
        )];
        let outcomes = [outcome("readlinkat", "ps", &[SYS_PTRACE], "EACCES")];
        let mut e = expect(OK);
        e.learning_checks = &learning;
        assert!(judge(&e, &observed(&checks, &outcomes, OK)).0);
        e.strict = true;
        let (passed, evidence) = judge(&e, &observed(&checks, &outcomes, OK));
        assert!(!passed);
        assert_eq!(evidence[0].kind, EvidenceKind::Changed);
        assert!(evidence[0].text.ends_with("(granted in the learning run)"));
    }

    #[test]
    fn removal_order_is_by_danger_then_broad_before_narrow() {
        let order = removal_order(&[
            CHOWN,
            DAC_OVERRIDE,
            DAC_READ_SEARCH,
            NET_BIND_SERVICE,
            SYS_PTRACE,
            SYS_ADMIN,
            PERFMON,
        ]);
        assert_eq!(
            order,
            [
                SYS_ADMIN,
                SYS_PTRACE,
                CHOWN,
                DAC_OVERRIDE,
                DAC_READ_SEARCH,
                PERFMON,
                NET_BIND_SERVICE
            ]
        );
        // Alone, DAC_READ_SEARCH is not narrow of anything present.
        assert_eq!(
            removal_order(&[DAC_READ_SEARCH, CHOWN]),
            [CHOWN, DAC_READ_SEARCH]
        );
    }

    /// Runs an ablation against a rule saying which sets pass.
    fn ablate(start: &[Cap], passes: impl Fn(&[Cap]) -> bool) -> (Vec<Cap>, Vec<(Cap, bool)>) {
        let mut a = Ablation::new(start);
        let mut tried = Vec::new();
        let mut index = 1;
        while let Some((cap, candidate)) = a.next_removal() {
            let ok = passes(&candidate);
            tried.push((cap, ok));
            a.record(cap, candidate, ok, index);
            index += 1;
            assert!(index < 100, "the ablation ends");
        }
        (a.current().to_vec(), tried)
    }

    #[test]
    fn ablation_drops_what_is_not_needed() {
        let (set, tried) = ablate(&[CHOWN, SYS_PTRACE, PERFMON], |s| s.contains(&CHOWN));
        assert_eq!(set, [CHOWN]);
        // CHOWN was kept before PERFMON went: it is tried again against the final set.
        assert_eq!(
            tried,
            [
                (SYS_PTRACE, true),
                (CHOWN, false),
                (PERFMON, true),
                (CHOWN, false)
            ]
        );
    }

    #[test]
    fn ablation_retries_kept_capabilities_after_a_later_removal() {
        // SYS_ADMIN is needed only while PERFMON is there (a path that PERFMON opens needs
        // SYS_ADMIN too): once PERFMON goes, SYS_ADMIN can go.
        let (set, tried) = ablate(&[SYS_ADMIN, PERFMON, CHOWN], |s| {
            s.contains(&CHOWN) && (!s.contains(&PERFMON) || s.contains(&SYS_ADMIN))
        });
        assert_eq!(set, [CHOWN]);
        assert_eq!(
            tried,
            [
                (SYS_ADMIN, false),
                (CHOWN, false),
                (PERFMON, true),
                (SYS_ADMIN, true),
                (CHOWN, false),
            ]
        );
    }

    #[test]
    fn where_either_would_do_the_narrow_one_stays() {
        // A read of another user's file: DAC_OVERRIDE or DAC_READ_SEARCH.
        let (set, _) = ablate(&[DAC_OVERRIDE, DAC_READ_SEARCH], |s| {
            s.contains(&DAC_OVERRIDE) || s.contains(&DAC_READ_SEARCH)
        });
        assert_eq!(set, [DAC_READ_SEARCH]);
        // A write under a directory only another user may search: DAC_OVERRIDE covers both.
        let (set, _) = ablate(&[DAC_OVERRIDE, DAC_READ_SEARCH], |s| {
            s.contains(&DAC_OVERRIDE)
        });
        assert_eq!(set, [DAC_OVERRIDE]);
    }

    #[test]
    fn an_empty_set_needs_no_ablation() {
        let mut a = Ablation::new(&[]);
        assert_eq!(a.next_removal(), None);
    }

    fn run_with(
        purpose: Purpose,
        removed: Option<Cap>,
        passed: bool,
        evidence: Vec<Evidence>,
    ) -> Run {
        Run {
            purpose,
            removed,
            set: vec![],
            passed,
            ending: Some(OK),
            health: None,
            duration_ms: 100,
            uids: vec![],
            evidence,
            output: String::new(),
        }
    }

    #[test]
    fn findings_say_why_with_the_deciding_run() {
        let clone_eperm = judge(
            &expect(OK),
            &observed(
                &[],
                &[outcome("clone", "nsfallback", &[SYS_ADMIN], "EPERM")],
                OK,
            ),
        )
        .1;
        let setgid_drop = {
            let mut c = check(6, Verdict::Denied, Audit::Audited, "setgid", "apache2");
            c.insetid = true;
            judge(&expect(OK), &observed(&[c], &[], OK)).1
        };
        let chown_wall = judge(
            &expect(OK),
            &observed(
                &[],
                &[outcome("fchownat", "chown", &[CHOWN], "EPERM")],
                Ending::Exited { status: 1 },
            ),
        )
        .1;
        // In removal order: SYS_ADMIN (critical), then CHOWN and SETGID (medium, by number).
        let runs = vec![
            run_with(Purpose::Sufficiency, None, true, vec![]),
            run_with(Purpose::Without, Some(SYS_ADMIN), true, clone_eperm),
            run_with(Purpose::Without, Some(CHOWN), false, chown_wall),
            run_with(Purpose::Without, Some(SETGID), false, setgid_drop),
        ];
        let mut a = Ablation::new(&[CHOWN, SETGID, SYS_ADMIN]);
        let mut index = 1;
        while let Some((cap, candidate)) = a.next_removal() {
            let passed = runs[index].passed;
            assert_eq!(runs[index].removed, Some(cap));
            a.record(cap, candidate, passed, index);
            index += 1;
        }
        let findings = a.findings(&runs);
        let by = |cap: Cap| findings.iter().find(|f| f.cap == cap).unwrap();
        assert_eq!(by(SYS_ADMIN).finding, Finding::NotNeeded);
        assert_eq!(
            by(SYS_ADMIN).reason,
            "not needed: the workload succeeded without it (run 2); nsfallback: clone failed with EPERM (SYS_ADMIN denied), and it went on"
        );
        assert_eq!(by(SETGID).finding, Finding::PrivilegeDrop);
        assert!(
            by(SETGID).reason.starts_with(
                "kept for the privilege drop: without it apache2: setgid was denied SETGID"
            ),
            "{}",
            by(SETGID).reason
        );
        assert_eq!(by(CHOWN).finding, Finding::Needed);
        assert_eq!(
            by(CHOWN).reason,
            "needed: without it, chown: fchownat failed with EPERM (CHOWN denied) (run 3)"
        );
        assert_eq!(
            runs[2].failure().unwrap(),
            "the workload exited with status 1 (the learning run exited with status 0)"
        );
        assert_eq!(index, runs.len(), "no run is repeated");
    }

    #[test]
    fn verification_round_trips_through_json() {
        let v = Verification {
            verified: true,
            strict: false,
            learned: vec![CHOWN, SYS_ADMIN],
            set: vec![CHOWN],
            runs: vec![run_with(Purpose::Without, Some(SYS_ADMIN), true, vec![])],
            capabilities: vec![CapFinding {
                cap: SYS_ADMIN,
                finding: Finding::NotNeeded,
                run: 1,
                reason: "x".into(),
            }],
            duration_ms: 100,
            problem: None,
            sources: vec![],
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["runs"][0]["purpose"], "without");
        assert_eq!(json["runs"][0]["removed"], "SYS_ADMIN");
        assert_eq!(json["runs"][0]["ending"]["how"], "exited");
        assert_eq!(json["runs"][0]["ending"]["status"], 0);
        assert_eq!(json["capabilities"][0]["finding"], "not_needed");
        let back: Verification = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
    }
}
