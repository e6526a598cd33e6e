//! From checks to a capability set: which capabilities the workload needs, and why each seen
//! capability is or is not in the set.
//!
//! The rules:
//! - an audited check that was granted means the capability is required;
//! - a denied audited check is matched to how its syscall ended: a failure with EPERM/EACCES
//!   means the workload hit a wall, so the capability is "needed but missing" and is suggested;
//!   a syscall that succeeded anyway took another path, so it is not required;
//! - noaudit checks are the kernel asking, not enforcing: "probed, not required";
//! - checks against a user namespace the workload created (deeper than its own) do not count;
//! - alternatives: when a narrow capability was denied and a broad one then granted in the same
//!   syscall (DAC_READ_SEARCH then DAC_OVERRIDE; PERFMON, BPF or CHECKPOINT_RESTORE then
//!   SYS_ADMIN), the narrow one is what least privilege needs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::linux::audit;
use crate::linux::caps::Cap;
use crate::model::record::{Audit, Check, Outcome, Phase, Verdict};

/// (narrow, broad): the kernel checks `narrow` first and falls back to `broad`.
pub const ALTERNATIVES: &[(Cap, Cap)] = &[
    (Cap(2), Cap(1)),   // DAC_READ_SEARCH, DAC_OVERRIDE
    (Cap(38), Cap(21)), // PERFMON, SYS_ADMIN
    (Cap(39), Cap(21)), // BPF, SYS_ADMIN
    (Cap(40), Cap(21)), // CHECKPOINT_RESTORE, SYS_ADMIN
];

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Granted at an enforcement point: keep it.
    Required,
    /// Denied, and the syscall then failed with EPERM/EACCES: the workload needs it but did not
    /// have it.
    Missing,
    /// A broad capability whose use a narrower one can take over.
    Replaced,
    /// Denied, but the syscall succeeded anyway (another path) or failed for another reason.
    NotRequired,
    /// Only checked against a user namespace the workload created itself.
    ChildUserns,
    /// Only checked without audit: the kernel asked, and works either way.
    Probed,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Required => "required",
            Status::Missing => "needed but missing",
            Status::Replaced => "replaced by a narrower one",
            Status::NotRequired => "denied, not required",
            Status::ChildUserns => "child user ns only",
            Status::Probed => "probed, not required",
        }
    }

    /// In the suggested set.
    pub fn suggested(self) -> bool {
        matches!(self, Status::Required | Status::Missing)
    }
}

/// The verdict on one capability.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapVerdict {
    pub cap: Cap,
    pub status: Status,
    /// One line: why.
    pub reason: String,
    /// Workload checks of this capability.
    pub count: u64,
    /// What triggered it: `comm: syscall (xN)`.
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Suggestion {
    /// Capabilities to add after `--cap-drop=ALL`, by number.
    pub add: Vec<Cap>,
    /// Every capability the workload checked, with its verdict.
    pub capabilities: Vec<CapVerdict>,
}

impl Suggestion {
    /// `--cap-drop=ALL --cap-add=A --cap-add=B` (or `--cap-drop=ALL` alone). One flag per
    /// capability: Docker does not split `--cap-add=A,B` (it refuses it as one unknown name),
    /// and podman takes both forms, so this one line works on both.
    pub fn docker_flags(&self) -> String {
        std::iter::once("--cap-drop=ALL".to_owned())
            .chain(self.add.iter().map(|c| format!("--cap-add={}", c.name())))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn missing(&self) -> impl Iterator<Item = &CapVerdict> {
        self.capabilities
            .iter()
            .filter(|v| v.status == Status::Missing)
    }

    pub fn verdict(&self, cap: Cap) -> Option<&CapVerdict> {
        self.capabilities.iter().find(|v| v.cap == cap)
    }
}

/// Syscalls whose result says nothing about a denial inside them: a netlink request sent with
/// sendmsg "succeeds" and carries its EPERM back in the reply.
const RESULT_BLIND_SYSCALLS: &[&str] = &["sendto", "sendmsg", "sendmmsg"];

fn evidence(check: &Check) -> String {
    let syscall = check.syscall.as_deref().unwrap_or("(no syscall)");
    if check.count > 1 {
        format!("{}: {} (x{})", check.comm, syscall, check.count)
    } else {
        format!("{}: {}", check.comm, syscall)
    }
}

/// Narrow alternative of `broad` that was denied just before, if any.
fn narrow_denied_before(broad: Cap, denied_before: &[Cap]) -> Option<Cap> {
    ALTERNATIVES
        .iter()
        .find(|(narrow, b)| *b == broad && denied_before.contains(narrow))
        .map(|(narrow, _)| *narrow)
}

#[derive(Default)]
struct Acc {
    status: Option<Status>,
    reason: String,
    evidence: BTreeSet<String>,
    count: u64,
}

impl Acc {
    /// Keeps the strongest status (Required > Missing > Replaced > ...).
    fn set(&mut self, status: Status, reason: String) {
        if self.status.is_none_or(|s| status < s) {
            self.status = Some(status);
            self.reason = reason;
        }
    }
}

/// Why a check made without audit is not a need: the call-site rule's reason, when the
/// backend named the site.
fn probed_reason(check: &Check) -> String {
    check
        .site
        .as_deref()
        .and_then(|site| audit::RULES.iter().find(|r| r.function == site))
        .map_or_else(
            || "checked without audit: the kernel only asks, and works either way".into(),
            |r| r.reason.to_owned(),
        )
}

/// A capability granted at an enforcement point: required, unless it was only the fallback
/// after a narrower one was denied (and is never required on its own), in which case the
/// narrow one is.
fn granted(acc: &mut BTreeMap<Cap, Acc>, check: &Check, required_alone: &BTreeSet<Cap>) {
    match narrow_denied_before(check.cap, &check.denied_before) {
        Some(narrow) if !required_alone.contains(&check.cap) => {
            acc.entry(check.cap).or_default().set(
                Status::Replaced,
                format!("used only as a fallback after {narrow} was denied; {narrow} is enough"),
            );
            let narrow_entry = acc.entry(narrow).or_default();
            narrow_entry.set(
                Status::Required,
                format!(
                    "least privilege for what the workload did with {}",
                    check.cap
                ),
            );
            narrow_entry
                .evidence
                .insert(format!("{} (instead of {})", evidence(check), check.cap));
        }
        _ => {
            let reason = if check.audit == Audit::Unknown {
                "granted at a call site cap-trace does not know; counted as required".into()
            } else {
                "granted at an enforcement point".into()
            };
            acc.entry(check.cap)
                .or_default()
                .set(Status::Required, reason);
        }
    }
}

/// A denied check, judged by how its syscall ended: a wall when the syscall failed with a
/// permission error (or the result cannot tell), not required when it succeeded anyway or
/// failed for another reason.
fn denied(check: &Check, outcomes: &[Outcome]) -> (Status, String) {
    let related: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| {
            o.phase == Phase::Workload
                && o.syscall == check.syscall
                && o.comm == check.comm
                && o.denied.contains(&check.cap)
        })
        .collect();
    let failed: Vec<&&Outcome> = related.iter().filter(|o| o.permission_error()).collect();
    let syscall = check.syscall.as_deref().unwrap_or("the operation");
    if let Some(outcome) = failed.first() {
        if let Some(narrow) = failed
            .iter()
            .find_map(|o| narrow_denied_before(check.cap, &o.denied))
        {
            (
                Status::Replaced,
                format!("{narrow} was denied first in the same {syscall}; {narrow} is enough"),
            )
        } else {
            (
                Status::Missing,
                format!("denied, and {syscall} then failed with {}", outcome.result),
            )
        }
    } else if check
        .syscall
        .as_deref()
        .is_some_and(|s| RESULT_BLIND_SYSCALLS.contains(&s))
    {
        (
            Status::Missing,
            format!(
                "denied in {syscall}; a netlink request reports its error in the reply, not in the syscall's result, so it is kept"
            ),
        )
    } else if related.iter().any(|o| o.result == "ok") {
        (
            Status::NotRequired,
            format!("denied, but {syscall} succeeded anyway (another path)"),
        )
    } else if let Some(outcome) = related.first() {
        (
            Status::NotRequired,
            format!(
                "denied, and {syscall} failed with {} (not a permission error)",
                outcome.result
            ),
        )
    } else {
        (
            Status::Missing,
            format!("denied in {syscall}; how it ended is unknown, so it is kept"),
        )
    }
}

/// Derives the suggestion from a workload's checks and syscall outcomes. `base_level` is the
/// depth of the workload's own user namespace.
pub fn suggest(checks: &[Check], outcomes: &[Outcome], base_level: u32) -> Suggestion {
    let mut acc: BTreeMap<Cap, Acc> = BTreeMap::new();
    let workload = checks.iter().filter(|c| c.phase == Phase::Workload);
    let enforcing = |c: &Check| c.audit != Audit::Noaudit;

    // Broad capabilities required on their own (not as a fallback).
    let required_alone: BTreeSet<Cap> = workload
        .clone()
        .filter(|c| {
            c.verdict == Verdict::Granted
                && enforcing(c)
                && c.userns_level <= base_level
                && narrow_denied_before(c.cap, &c.denied_before).is_none()
        })
        .map(|c| c.cap)
        .collect();

    for check in workload {
        let entry = acc.entry(check.cap).or_default();
        entry.count = entry.count.saturating_add(check.count);
        entry.evidence.insert(evidence(check));

        if check.userns_level > base_level {
            entry.set(
                Status::ChildUserns,
                "only checked against a user namespace the workload created; it does not need it in its own".into(),
            );
        } else if !enforcing(check) {
            entry.set(Status::Probed, probed_reason(check));
        } else if check.verdict == Verdict::Granted {
            granted(&mut acc, check, &required_alone);
        } else {
            let (status, reason) = denied(check, outcomes);
            entry.set(status, reason);
        }
    }

    let capabilities: Vec<CapVerdict> = acc
        .into_iter()
        .filter_map(|(cap, a)| {
            Some(CapVerdict {
                cap,
                status: a.status?,
                reason: a.reason,
                count: a.count,
                evidence: a.evidence.into_iter().collect(),
            })
        })
        .collect();
    let add = capabilities
        .iter()
        .filter(|v| v.status.suggested())
        .map(|v| v.cap)
        .collect();
    Suggestion { add, capabilities }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::check;

    const CHOWN: u32 = 0;
    const DAC_OVERRIDE: u32 = 1;
    const DAC_READ_SEARCH: u32 = 2;
    const NET_BIND_SERVICE: u32 = 10;
    const SYS_ADMIN: u32 = 21;
    const PERFMON: u32 = 38;

    fn outcome(syscall: &str, comm: &str, denied: &[u32], result: &str) -> Outcome {
        Outcome {
            syscall: Some(syscall.into()),
            comm: comm.into(),
            phase: Phase::Workload,
            denied: denied.iter().map(|&c| Cap(c)).collect(),
            result: result.into(),
            count: 1,
        }
    }

    fn status(s: &Suggestion, cap: u32) -> Option<Status> {
        s.verdict(Cap(cap)).map(|v| v.status)
    }

    #[test]
    fn granted_audited_is_required() {
        let s = suggest(
            &[check(
                CHOWN,
                Verdict::Granted,
                Audit::Audited,
                "fchownat",
                "chown",
            )],
            &[],
            0,
        );
        assert_eq!(s.add, vec![Cap(CHOWN)]);
        assert_eq!(s.docker_flags(), "--cap-drop=ALL --cap-add=CHOWN");
        assert_eq!(status(&s, CHOWN), Some(Status::Required));
    }

    #[test]
    fn nothing_needed_drops_all() {
        let s = suggest(&[], &[], 0);
        assert!(s.add.is_empty());
        assert_eq!(s.docker_flags(), "--cap-drop=ALL");
    }

    #[test]
    fn noaudit_only_is_probed_with_a_reason() {
        let mut c = check(SYS_ADMIN, Verdict::Granted, Audit::Noaudit, "mmap", "true");
        c.site = Some("security_vm_enough_memory_mm".into());
        c.count = 40;
        let s = suggest(&[c], &[], 0);
        assert!(s.add.is_empty());
        let v = s.verdict(Cap(SYS_ADMIN)).unwrap();
        assert_eq!(v.status, Status::Probed);
        assert!(v.reason.contains("overcommit"), "{}", v.reason);
        assert_eq!(v.count, 40);
        // Without a known site the reason is generic.
        let s = suggest(
            &[check(
                SYS_ADMIN,
                Verdict::Denied,
                Audit::Noaudit,
                "read",
                "cat",
            )],
            &[],
            0,
        );
        assert!(
            s.verdict(Cap(SYS_ADMIN))
                .unwrap()
                .reason
                .contains("without audit")
        );
    }

    #[test]
    fn noaudit_does_not_hide_an_audited_use() {
        let s = suggest(
            &[
                check(SYS_ADMIN, Verdict::Granted, Audit::Noaudit, "mmap", "app"),
                check(SYS_ADMIN, Verdict::Granted, Audit::Audited, "mount", "app"),
            ],
            &[],
            0,
        );
        assert_eq!(s.add, vec![Cap(SYS_ADMIN)]);
    }

    #[test]
    fn unknown_audit_counts_as_required() {
        let s = suggest(
            &[check(
                NET_BIND_SERVICE,
                Verdict::Granted,
                Audit::Unknown,
                "bind",
                "srv",
            )],
            &[],
            0,
        );
        assert_eq!(s.add, vec![Cap(NET_BIND_SERVICE)]);
        assert!(s.capabilities[0].reason.contains("does not know"));
    }

    #[test]
    fn denied_then_eperm_is_missing() {
        let s = suggest(
            &[check(
                CHOWN,
                Verdict::Denied,
                Audit::Audited,
                "fchownat",
                "chown",
            )],
            &[outcome("fchownat", "chown", &[CHOWN], "EPERM")],
            0,
        );
        assert_eq!(s.add, vec![Cap(CHOWN)]);
        let v = s.missing().next().unwrap();
        assert_eq!(v.cap, Cap(CHOWN));
        assert!(v.reason.contains("failed with EPERM"), "{}", v.reason);
    }

    #[test]
    fn denied_then_success_is_not_required() {
        let s = suggest(
            &[check(
                DAC_OVERRIDE,
                Verdict::Denied,
                Audit::Audited,
                "openat",
                "app",
            )],
            &[outcome("openat", "app", &[DAC_OVERRIDE], "ok")],
            0,
        );
        assert!(s.add.is_empty());
        assert_eq!(status(&s, DAC_OVERRIDE), Some(Status::NotRequired));
    }

    #[test]
    fn netlink_denials_are_kept_although_sendmsg_succeeded() {
        let s = suggest(
            &[check(12, Verdict::Denied, Audit::Audited, "sendmsg", "ip")],
            &[outcome("sendmsg", "ip", &[12], "ok")],
            0,
        );
        assert_eq!(s.add, vec![Cap(12)]);
        assert!(
            s.capabilities[0].reason.contains("netlink"),
            "{}",
            s.capabilities[0].reason
        );
    }

    #[test]
    fn denied_then_other_error_is_not_required() {
        let s = suggest(
            &[check(
                SYS_ADMIN,
                Verdict::Denied,
                Audit::Audited,
                "mount",
                "app",
            )],
            &[outcome("mount", "app", &[SYS_ADMIN], "ENOENT")],
            0,
        );
        assert!(s.add.is_empty());
        assert!(s.capabilities[0].reason.contains("ENOENT"));
    }

    #[test]
    fn denied_with_unknown_outcome_is_kept() {
        let s = suggest(
            &[check(
                CHOWN,
                Verdict::Denied,
                Audit::Audited,
                "fchownat",
                "chown",
            )],
            &[],
            0,
        );
        assert_eq!(s.add, vec![Cap(CHOWN)]);
    }

    #[test]
    fn outcomes_match_syscall_and_comm() {
        // The EPERM belongs to another program: this denial's syscall succeeded.
        let s = suggest(
            &[check(
                CHOWN,
                Verdict::Denied,
                Audit::Audited,
                "fchownat",
                "app",
            )],
            &[
                outcome("fchownat", "other", &[CHOWN], "EPERM"),
                outcome("fchownat", "app", &[CHOWN], "ok"),
            ],
            0,
        );
        assert!(s.add.is_empty());
    }

    #[test]
    fn denied_noaudit_is_ignored() {
        let s = suggest(
            &[check(
                SYS_ADMIN,
                Verdict::Denied,
                Audit::Noaudit,
                "mmap",
                "app",
            )],
            &[outcome("mmap", "app", &[SYS_ADMIN], "EPERM")],
            0,
        );
        assert!(s.add.is_empty());
        assert_eq!(status(&s, SYS_ADMIN), Some(Status::Probed));
    }

    #[test]
    fn read_search_denied_then_override_granted_suggests_read_search() {
        let mut fallback = check(
            DAC_OVERRIDE,
            Verdict::Granted,
            Audit::Audited,
            "openat",
            "cat",
        );
        fallback.denied_before = vec![Cap(DAC_READ_SEARCH)];
        let s = suggest(
            &[
                check(
                    DAC_READ_SEARCH,
                    Verdict::Denied,
                    Audit::Audited,
                    "openat",
                    "cat",
                ),
                fallback,
            ],
            &[outcome("openat", "cat", &[DAC_READ_SEARCH], "ok")],
            0,
        );
        assert_eq!(s.add, vec![Cap(DAC_READ_SEARCH)]);
        assert_eq!(status(&s, DAC_OVERRIDE), Some(Status::Replaced));
        assert_eq!(status(&s, DAC_READ_SEARCH), Some(Status::Required));
    }

    #[test]
    fn override_needed_elsewhere_covers_read_search() {
        let mut fallback = check(
            DAC_OVERRIDE,
            Verdict::Granted,
            Audit::Audited,
            "openat",
            "cp",
        );
        fallback.denied_before = vec![Cap(DAC_READ_SEARCH)];
        let write = check(
            DAC_OVERRIDE,
            Verdict::Granted,
            Audit::Audited,
            "openat",
            "cp",
        );
        let mut write = write;
        write.count = 2;
        let s = suggest(&[fallback, write], &[], 0);
        assert_eq!(s.add, vec![Cap(DAC_OVERRIDE)]);
    }

    #[test]
    fn both_denied_and_failed_suggests_the_narrow_one() {
        let s = suggest(
            &[
                check(
                    DAC_READ_SEARCH,
                    Verdict::Denied,
                    Audit::Audited,
                    "openat",
                    "cat",
                ),
                check(
                    DAC_OVERRIDE,
                    Verdict::Denied,
                    Audit::Audited,
                    "openat",
                    "cat",
                ),
            ],
            &[outcome(
                "openat",
                "cat",
                &[DAC_READ_SEARCH, DAC_OVERRIDE],
                "EACCES",
            )],
            0,
        );
        assert_eq!(s.add, vec![Cap(DAC_READ_SEARCH)]);
        assert_eq!(status(&s, DAC_OVERRIDE), Some(Status::Replaced));
        assert_eq!(status(&s, DAC_READ_SEARCH), Some(Status::Missing));
    }

    #[test]
    fn perfmon_before_sys_admin() {
        let mut fallback = check(
            SYS_ADMIN,
            Verdict::Granted,
            Audit::Audited,
            "perf_event_open",
            "perf",
        );
        fallback.denied_before = vec![Cap(PERFMON)];
        let s = suggest(
            &[
                check(
                    PERFMON,
                    Verdict::Denied,
                    Audit::Audited,
                    "perf_event_open",
                    "perf",
                ),
                fallback,
            ],
            &[outcome("perf_event_open", "perf", &[PERFMON], "ok")],
            0,
        );
        assert_eq!(s.add, vec![Cap(PERFMON)]);
    }

    #[test]
    fn child_user_namespace_checks_do_not_count() {
        let mut c = check(
            SYS_ADMIN,
            Verdict::Granted,
            Audit::Audited,
            "mount",
            "unshare",
        );
        c.userns_level = 1;
        let s = suggest(&[c.clone()], &[], 0);
        assert!(s.add.is_empty());
        assert_eq!(status(&s, SYS_ADMIN), Some(Status::ChildUserns));
        // For a workload that lives in that namespace (rootless container), they do.
        let s = suggest(&[c], &[], 1);
        assert_eq!(s.add, vec![Cap(SYS_ADMIN)]);
    }

    #[test]
    fn runtime_checks_are_not_the_workloads() {
        let mut c = check(
            SYS_ADMIN,
            Verdict::Granted,
            Audit::Audited,
            "mount",
            "runc:[2:INIT]",
        );
        c.phase = Phase::Runtime;
        let s = suggest(&[c], &[], 0);
        assert!(s.add.is_empty());
        assert!(s.capabilities.is_empty());
    }

    #[test]
    fn suggestion_is_sorted_by_number_and_evidence_collected() {
        let mut a = check(
            NET_BIND_SERVICE,
            Verdict::Granted,
            Audit::Audited,
            "bind",
            "nginx",
        );
        a.count = 2;
        let s = suggest(
            &[
                a,
                check(CHOWN, Verdict::Granted, Audit::Audited, "fchown", "nginx"),
            ],
            &[],
            0,
        );
        assert_eq!(s.add, vec![Cap(CHOWN), Cap(NET_BIND_SERVICE)]);
        assert_eq!(
            s.docker_flags(),
            "--cap-drop=ALL --cap-add=CHOWN --cap-add=NET_BIND_SERVICE"
        );
        assert_eq!(
            s.verdict(Cap(NET_BIND_SERVICE)).unwrap().evidence,
            ["nginx: bind (x2)"]
        );
    }
}
