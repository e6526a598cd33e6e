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
//!   SYS_ADMIN), the narrow one is what least privilege needs;
//! - subsumed: DAC_READ_SEARCH granted only for inode permission checks, where DAC_OVERRIDE is
//!   the kernel's fallback, is not needed when DAC_OVERRIDE is;
//! - shortcuts: capset()'s SETPCAP check, granted, is no need (see `linux/audit.rs`);
//! - what the learning run proves: in a run that succeeded, a denial whose syscall failed did
//!   not stop it: "tolerated, not needed" (but a failed privilege drop never is);
//! - what `--cap-add` cannot fix is not suggested: a check denied to a process running as
//!   another user than root while the workload's bounding set held the capability, and a
//!   capability this host's bounding set lacks;
//! - a verification (runs of the workload under the set, `model/verify.rs`) decides over all of
//!   the above: its set is the suggestion.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::linux::audit;
use crate::linux::caps::{ALTERNATIVES, Cap};
use crate::linux::syscalls::RESULT_BLIND_SYSCALLS;
use crate::model::record::{Audit, Check, Outcome, Phase, Verdict};
use crate::model::verify::{Finding, Verification, is_failed_privilege_drop};

const DAC_OVERRIDE: Cap = Cap(1);
const DAC_READ_SEARCH: Cap = Cap(2);

/// What a suggestion is derived with, besides the checks and outcomes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// Depth of the workload's own user namespace.
    pub base_level: u32,
    /// The learning run succeeded: exit status 0 (or still serving when its health check
    /// passed), and its health check passed when one was given.
    pub succeeded: bool,
    /// The bounding set of the host (cap-trace's own at trace time): what anything started
    /// here can hold at most.
    pub host_bounding: Option<&'a [Cap]>,
    /// The bounding set the workload ran with.
    pub workload_bounding: Option<&'a [Cap]>,
    pub verification: Option<&'a Verification>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Verified: without it the workload failed.
    Needed,
    /// Verified: without it the workload's own privilege drop failed.
    PrivilegeDrop,
    /// Granted at an enforcement point: keep it.
    Required,
    /// Denied, and the syscall then failed with EPERM/EACCES: the workload needs it but did not
    /// have it.
    Missing,
    /// A broad capability whose use a narrower one can take over.
    Replaced,
    /// DAC_READ_SEARCH used only where DAC_OVERRIDE, which the workload needs anyway, is the
    /// kernel's fallback.
    Subsumed,
    /// Denied, the syscall failed, and the run succeeded anyway: the workload went on.
    Tolerated,
    /// Denied to a process running as another user than root while the workload's bounding
    /// set held it: `--cap-add` cannot give it.
    NotGrantable,
    /// This host's bounding set lacks it: nothing started here can hold it.
    HostCannot,
    /// Verified: the workload succeeded without it.
    NotNeeded,
    /// Denied, but the syscall succeeded anyway (another path) or failed for another reason.
    NotRequired,
    /// Granted at a check that only picks a shortcut (capset's SETPCAP).
    Shortcut,
    /// Only checked against a user namespace the workload created itself.
    ChildUserns,
    /// Only checked without audit: the kernel asked, and works either way.
    Probed,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Needed => "needed (verified)",
            Status::PrivilegeDrop => "needed: privilege drop",
            Status::Required => "required",
            Status::Missing => "needed but missing",
            Status::Replaced => "replaced by a narrower one",
            Status::Subsumed => "covered by DAC_OVERRIDE",
            Status::Tolerated => "tolerated, not needed",
            Status::NotGrantable => "not grantable by --cap-add",
            Status::HostCannot => "this host cannot grant it",
            Status::NotNeeded => "not needed (verified)",
            Status::NotRequired => "denied, not required",
            Status::Shortcut => "shortcut, not required",
            Status::ChildUserns => "child user ns only",
            Status::Probed => "probed, not required",
        }
    }

    /// In the suggested set.
    pub fn suggested(self) -> bool {
        matches!(
            self,
            Status::Needed | Status::PrivilegeDrop | Status::Required | Status::Missing
        )
    }

    /// Left out by a rule about what the workload was seen to do, where only running it
    /// without the capability can tell for sure: what a failed verification retries with.
    pub fn observed(self) -> bool {
        matches!(
            self,
            Status::Replaced | Status::Subsumed | Status::Tolerated | Status::Shortcut
        )
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
    /// The set is the verified one (runs of the workload proved it), not only observed.
    #[serde(default)]
    pub verified: bool,
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

/// Why a check made without audit (or at a shortcut) is not a need: the call-site rule's
/// reason, when the backend named the site.
fn probed_reason(check: &Check, generic: &str) -> String {
    check
        .site
        .as_deref()
        .and_then(|site| audit::RULES.iter().find(|r| r.function == site))
        .map_or_else(|| generic.to_owned(), |r| r.reason.to_owned())
}

impl Context<'_> {
    /// This host can give the capability to what runs here (unknown: assumed it can).
    fn host_grants(&self, cap: Cap) -> bool {
        self.host_bounding.is_none_or(|b| b.contains(&cap))
    }
}

/// A capability granted at an enforcement point: required, unless it was only the fallback
/// after a narrower one was denied (and is never required on its own) and this host can grant
/// the narrow one, in which case the narrow one is.
fn granted(
    acc: &mut BTreeMap<Cap, Acc>,
    check: &Check,
    required_alone: &BTreeSet<Cap>,
    ctx: &Context,
) {
    match narrow_denied_before(check.cap, &check.denied_before) {
        Some(narrow) if !required_alone.contains(&check.cap) && ctx.host_grants(narrow) => {
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
/// failed for another reason. A wall then goes through what `--cap-add` can fix and what the
/// learning run proves ([`refine_wall`]).
fn denied(check: &Check, outcomes: &[Outcome], ctx: &Context) -> (Status, String) {
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
    let (status, reason) = if let Some(outcome) = failed.first() {
        if let Some(narrow) = failed
            .iter()
            .find_map(|o| narrow_denied_before(check.cap, &o.denied))
            .filter(|&n| ctx.host_grants(n))
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
    };
    if status == Status::Missing {
        refine_wall(check, reason, ctx)
    } else {
        (status, reason)
    }
}

/// A wall the workload hit, against what `--cap-add` can fix and what the learning run proves:
/// a capability this host cannot grant, one a non-root process was denied while the workload's
/// bounding set held it, and a denial the workload went on from in a run that succeeded are
/// not suggested. A failed privilege drop always is.
fn refine_wall(check: &Check, wall: String, ctx: &Context) -> (Status, String) {
    let cap = check.cap;
    if !ctx.host_grants(cap) {
        return (
            Status::HostCannot,
            format!(
                "{wall}; this host's bounding set lacks {cap}, so nothing started here can hold it (on a host that can grant it, judge by the evidence)"
            ),
        );
    }
    let held = ctx.workload_bounding.is_some_and(|b| b.contains(&cap));
    if let Some(uid) = check.uid.filter(|&u| u != 0 && held) {
        return (
            Status::NotGrantable,
            format!(
                "{wall}, in a process running as uid {uid} while the workload's bounding set held {cap}: --cap-add cannot give it to a non-root process; a file capability on the program (setcap), an ambient capability, or doing that work in a root process would"
            ),
        );
    }
    if is_failed_privilege_drop(check) {
        return (
            Status::Missing,
            format!("{wall}: the workload's own privilege drop failed, so it is kept"),
        );
    }
    if ctx.succeeded {
        return (
            Status::Tolerated,
            format!("{wall}, but the run succeeded: the workload went on without it"),
        );
    }
    (Status::Missing, wall)
}

/// Call sites where DAC_OVERRIDE is the kernel's fallback for DAC_READ_SEARCH: inode permission
/// checks. `open_by_handle_at` (and `name_to_handle_at`, `linkat` with AT_EMPTY_PATH) ask for
/// DAC_READ_SEARCH alone.
fn dac_override_covers(check: &Check) -> bool {
    match check.site.as_deref() {
        Some(site) => site == "capable_wrt_inode_uidgid",
        None => !matches!(
            check.syscall.as_deref(),
            Some("open_by_handle_at" | "name_to_handle_at" | "linkat") | None
        ),
    }
}

/// DAC_READ_SEARCH is not needed when DAC_OVERRIDE is required on its own and every use of
/// DAC_READ_SEARCH was an inode permission check, which DAC_OVERRIDE passes too.
fn subsume_read_search(acc: &mut BTreeMap<Cap, Acc>, enforcing: &[&Check]) {
    let status = |acc: &BTreeMap<Cap, Acc>, cap: Cap| acc.get(&cap).and_then(|a| a.status);
    if status(acc, DAC_OVERRIDE) != Some(Status::Required)
        || status(acc, DAC_READ_SEARCH) != Some(Status::Required)
    {
        return;
    }
    let covered = enforcing
        .iter()
        .filter(|c| {
            (c.cap == DAC_READ_SEARCH && c.verdict == Verdict::Granted)
                || (c.cap == DAC_OVERRIDE && c.denied_before.contains(&DAC_READ_SEARCH))
        })
        .all(|c| dac_override_covers(c));
    if covered && let Some(entry) = acc.get_mut(&DAC_READ_SEARCH) {
        entry.status = Some(Status::Subsumed);
        entry.reason = "used only for file permission checks that DAC_OVERRIDE, which the workload needs anyway, passes too".into();
    }
}

/// Derives the suggestion from a workload's checks and syscall outcomes, in `ctx`.
pub fn suggest(checks: &[Check], outcomes: &[Outcome], ctx: &Context) -> Suggestion {
    let base_level = ctx.base_level;
    let mut acc: BTreeMap<Cap, Acc> = BTreeMap::new();
    let workload = checks.iter().filter(|c| c.phase == Phase::Workload);
    let enforcing = |c: &Check| c.audit != Audit::Noaudit;
    let shortcut = |c: &Check| {
        c.verdict == Verdict::Granted
            && audit::is_shortcut(c.cap.0, c.site.as_deref(), c.syscall.as_deref())
    };

    // Broad capabilities required on their own (not as a fallback).
    let required_alone: BTreeSet<Cap> = workload
        .clone()
        .filter(|c| {
            c.verdict == Verdict::Granted
                && enforcing(c)
                && !shortcut(c)
                && c.userns_level <= base_level
                && narrow_denied_before(c.cap, &c.denied_before).is_none()
        })
        .map(|c| c.cap)
        .collect();

    for check in workload.clone() {
        let entry = acc.entry(check.cap).or_default();
        entry.count = entry.count.saturating_add(check.count);
        entry.evidence.insert(evidence(check));

        if check.userns_level > base_level {
            entry.set(
                Status::ChildUserns,
                "only checked against a user namespace the workload created; it does not need it in its own".into(),
            );
        } else if !enforcing(check) {
            entry.set(
                Status::Probed,
                probed_reason(
                    check,
                    "checked without audit: the kernel only asks, and works either way",
                ),
            );
        } else if shortcut(check) {
            entry.set(
                Status::Shortcut,
                probed_reason(
                    check,
                    audit::RULES
                        .iter()
                        .find(|r| r.function == "cap_capset")
                        .map_or("a shortcut", |r| r.reason),
                ),
            );
        } else if check.verdict == Verdict::Granted {
            granted(&mut acc, check, &required_alone, ctx);
        } else {
            let (status, reason) = denied(check, outcomes, ctx);
            entry.set(status, reason);
        }
    }
    let enforcing_checks: Vec<&Check> = workload
        .filter(|c| enforcing(c) && c.userns_level <= base_level)
        .collect();
    subsume_read_search(&mut acc, &enforcing_checks);

    let mut capabilities: Vec<CapVerdict> = acc
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
    let mut add: Vec<Cap> = capabilities
        .iter()
        .filter(|v| v.status.suggested())
        .map(|v| v.cap)
        .collect();
    let mut verified = false;
    if let Some(v) = ctx.verification {
        apply(&mut capabilities, v);
        if v.verified {
            add.clone_from(&v.set);
            add.sort();
            verified = true;
        }
    }
    Suggestion {
        add,
        verified,
        capabilities,
    }
}

/// A verification's findings over the observed verdicts: what running the workload showed
/// decides.
fn apply(capabilities: &mut Vec<CapVerdict>, v: &Verification) {
    if !v.verified {
        return;
    }
    for finding in &v.capabilities {
        let status = match finding.finding {
            Finding::Needed => Status::Needed,
            Finding::PrivilegeDrop => Status::PrivilegeDrop,
            Finding::NotNeeded => Status::NotNeeded,
        };
        match capabilities.iter_mut().find(|c| c.cap == finding.cap) {
            Some(c) => {
                c.status = status;
                c.reason.clone_from(&finding.reason);
            }
            None => capabilities.push(CapVerdict {
                cap: finding.cap,
                status,
                reason: finding.reason.clone(),
                count: 0,
                evidence: Vec::new(),
            }),
        }
    }
    capabilities.sort_by_key(|c| c.cap);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::check;
    use crate::model::verify::CapFinding;

    /// The rules with nothing known but the user namespace depth.
    fn suggest(checks: &[Check], outcomes: &[Outcome], base_level: u32) -> Suggestion {
        super::suggest(
            checks,
            outcomes,
            &Context {
                base_level,
                ..Context::default()
            },
        )
    }

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

    fn caps(numbers: &[u32]) -> Vec<Cap> {
        numbers.iter().map(|&n| Cap(n)).collect()
    }

    /// Every capability but SYS_RESOURCE: this machine's host bounding set.
    fn host() -> Vec<Cap> {
        (0..41).filter(|&n| n != 24).map(Cap).collect()
    }

    #[test]
    fn a_wall_the_successful_run_went_on_from_is_tolerated() {
        let checks = [check(27, Verdict::Denied, Audit::Audited, "mknodat", "sh")];
        let outcomes = [outcome("mknodat", "sh", &[27], "EPERM")];
        let ctx = Context {
            succeeded: true,
            ..Context::default()
        };
        let s = super::suggest(&checks, &outcomes, &ctx);
        assert!(s.add.is_empty());
        let v = s.verdict(Cap(27)).unwrap();
        assert_eq!(v.status, Status::Tolerated);
        assert_eq!(
            v.reason,
            "denied, and mknodat then failed with EPERM, but the run succeeded: the workload went on without it"
        );
        // The same wall in a run that failed is needed but missing.
        let s = super::suggest(&checks, &outcomes, &Context::default());
        assert_eq!(s.add, caps(&[27]));
    }

    #[test]
    fn a_failed_privilege_drop_is_never_tolerated() {
        let mut setgid = check(6, Verdict::Denied, Audit::Audited, "setgid", "apache2");
        setgid.insetid = true;
        setgid.uid = Some(0);
        let ctx = Context {
            succeeded: true,
            ..Context::default()
        };
        let s = super::suggest(
            &[setgid],
            &[outcome("setgid", "apache2", &[6], "EPERM")],
            &ctx,
        );
        assert_eq!(s.add, caps(&[6]));
        assert!(
            s.capabilities[0]
                .reason
                .contains("own privilege drop failed"),
            "{}",
            s.capabilities[0].reason
        );
    }

    #[test]
    fn a_capability_the_host_lacks_is_not_suggested() {
        let checks = [check(24, Verdict::Denied, Audit::Audited, "write", "sh")];
        let outcomes = [outcome("write", "sh", &[24], "EACCES")];
        let host = host();
        let ctx = Context {
            host_bounding: Some(&host),
            ..Context::default()
        };
        let s = super::suggest(&checks, &outcomes, &ctx);
        assert!(s.add.is_empty());
        let v = s.verdict(Cap(24)).unwrap();
        assert_eq!(v.status, Status::HostCannot);
        assert!(
            v.reason
                .contains("this host's bounding set lacks SYS_RESOURCE"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn a_denial_to_a_non_root_process_is_not_for_cap_add() {
        // A proxy's helper, running as its own user, opens an ICMP socket.
        let mut raw = check(13, Verdict::Denied, Audit::Audited, "socket", "pinger");
        raw.uid = Some(13);
        let outcomes = [outcome("socket", "pinger", &[13], "EPERM")];
        let bounding = caps(&[0, 6, 7, 13]);
        let ctx = Context {
            workload_bounding: Some(&bounding),
            ..Context::default()
        };
        let s = super::suggest(&[raw.clone()], &outcomes, &ctx);
        assert!(s.add.is_empty());
        let v = s.verdict(Cap(13)).unwrap();
        assert_eq!(v.status, Status::NotGrantable);
        assert!(v.reason.contains("running as uid 13"), "{}", v.reason);
        assert!(v.reason.contains("file capability"), "{}", v.reason);
        // When the workload's bounding set lacked it, adding it may well help: missing.
        let without = caps(&[0, 6, 7]);
        let ctx = Context {
            workload_bounding: Some(&without),
            ..Context::default()
        };
        assert_eq!(
            super::suggest(&[raw.clone()], &outcomes, &ctx).add,
            caps(&[13])
        );
        // And a denial to root is missing too.
        raw.uid = Some(0);
        let ctx = Context {
            workload_bounding: Some(&bounding),
            ..Context::default()
        };
        assert_eq!(super::suggest(&[raw], &outcomes, &ctx).add, caps(&[13]));
    }

    #[test]
    fn read_search_for_searches_is_covered_by_a_needed_override() {
        // Learning mode: DAC_READ_SEARCH granted for the search of a directory only another
        // user may search, DAC_OVERRIDE for the write of a file in it.
        let mut search = check(
            DAC_READ_SEARCH,
            Verdict::Granted,
            Audit::Audited,
            "openat",
            "sh",
        );
        search.site = Some("capable_wrt_inode_uidgid".into());
        let mut write = check(
            DAC_OVERRIDE,
            Verdict::Granted,
            Audit::Audited,
            "openat",
            "sh",
        );
        write.site = Some("capable_wrt_inode_uidgid".into());
        let s = suggest(&[search.clone(), write.clone()], &[], 0);
        assert_eq!(s.add, [Cap(DAC_OVERRIDE)]);
        let v = s.verdict(Cap(DAC_READ_SEARCH)).unwrap();
        assert_eq!(v.status, Status::Subsumed);
        // fexit and kprobe name no site: the syscall decides.
        search.site = None;
        write.site = None;
        assert_eq!(
            suggest(&[search.clone(), write.clone()], &[], 0).add,
            [Cap(DAC_OVERRIDE)]
        );
        // open_by_handle_at needs DAC_READ_SEARCH itself.
        let mut handle = check(
            DAC_READ_SEARCH,
            Verdict::Granted,
            Audit::Audited,
            "open_by_handle_at",
            "x",
        );
        handle.site = Some("capable".into());
        assert_eq!(
            suggest(&[search.clone(), write, handle], &[], 0).add,
            [Cap(DAC_OVERRIDE), Cap(DAC_READ_SEARCH)]
        );
        // Without a need of DAC_OVERRIDE of its own, DAC_READ_SEARCH stays.
        assert_eq!(suggest(&[search], &[], 0).add, [Cap(DAC_READ_SEARCH)]);
    }

    #[test]
    fn capsets_setpcap_check_is_a_shortcut_not_a_need() {
        // Tracepoint: the call site names it.
        let mut tp = check(8, Verdict::Granted, Audit::Audited, "capset", "vsftpd");
        tp.site = Some("cap_capset".into());
        let s = suggest(&[tp], &[], 0);
        assert!(s.add.is_empty());
        let v = s.verdict(Cap(8)).unwrap();
        assert_eq!(v.status, Status::Shortcut);
        assert_eq!(v.status.label(), "shortcut, not required");
        assert!(
            v.reason
                .contains("inheritable set is raised beyond the permitted one")
        );
        // fexit/kprobe: no site, by (SETPCAP, capset).
        let fexit = check(8, Verdict::Granted, Audit::Audited, "capset", "vsftpd");
        assert!(suggest(std::slice::from_ref(&fexit), &[], 0).add.is_empty());
        // SETPCAP for prctl(PR_CAPBSET_DROP) is a need, and wins over the shortcut.
        let prctl = check(8, Verdict::Granted, Audit::Audited, "prctl", "vsftpd");
        assert_eq!(suggest(&[fexit, prctl], &[], 0).add, caps(&[8]));
        // Denied, and capset failed: the inheritable set was raised. A wall, not a shortcut.
        let denied = check(8, Verdict::Denied, Audit::Audited, "capset", "x");
        let s = suggest(&[denied], &[outcome("capset", "x", &[8], "EPERM")], 0);
        assert_eq!(s.add, caps(&[8]));
    }

    #[test]
    fn the_narrow_alternative_only_when_the_host_can_grant_it() {
        let mut fallback = check(
            DAC_OVERRIDE,
            Verdict::Granted,
            Audit::Audited,
            "openat",
            "cat",
        );
        fallback.denied_before = vec![Cap(DAC_READ_SEARCH)];
        let checks = [
            check(
                DAC_READ_SEARCH,
                Verdict::Denied,
                Audit::Audited,
                "openat",
                "cat",
            ),
            fallback,
        ];
        let outcomes = [outcome("openat", "cat", &[DAC_READ_SEARCH], "ok")];
        let lacking: Vec<Cap> = host()
            .into_iter()
            .filter(|&c| c != Cap(DAC_READ_SEARCH))
            .collect();
        let ctx = Context {
            host_bounding: Some(&lacking),
            ..Context::default()
        };
        assert_eq!(
            super::suggest(&checks, &outcomes, &ctx).add,
            [Cap(DAC_OVERRIDE)]
        );
        let all = host();
        let ctx = Context {
            host_bounding: Some(&all),
            ..Context::default()
        };
        assert_eq!(
            super::suggest(&checks, &outcomes, &ctx).add,
            [Cap(DAC_READ_SEARCH)]
        );
    }

    #[test]
    fn a_verification_decides_the_set() {
        let checks = [
            check(19, Verdict::Granted, Audit::Audited, "readlinkat", "ps"),
            check(0, Verdict::Granted, Audit::Audited, "fchownat", "chown"),
        ];
        let mut v = Verification {
            verified: true,
            learned: caps(&[0, 19]),
            set: caps(&[0]),
            capabilities: vec![
                CapFinding {
                    cap: Cap(19),
                    finding: Finding::NotNeeded,
                    run: 2,
                    reason: "not needed: the workload succeeded without it (run 2)".into(),
                },
                CapFinding {
                    cap: Cap(0),
                    finding: Finding::Needed,
                    run: 3,
                    reason: "needed: without it, chown: fchownat failed with EPERM (CHOWN denied) (run 3)".into(),
                },
            ],
            ..Verification::default()
        };
        let ctx = Context {
            verification: Some(&v),
            ..Context::default()
        };
        let s = super::suggest(&checks, &[], &ctx);
        assert!(s.verified);
        assert_eq!(s.add, caps(&[0]));
        assert_eq!(s.verdict(Cap(19)).unwrap().status, Status::NotNeeded);
        assert_eq!(s.verdict(Cap(0)).unwrap().status, Status::Needed);
        assert!(s.verdict(Cap(0)).unwrap().reason.contains("run 3"));
        // A failed verification leaves the observed suggestion, unverified.
        v.verified = false;
        let ctx = Context {
            verification: Some(&v),
            ..Context::default()
        };
        let s = super::suggest(&checks, &[], &ctx);
        assert!(!s.verified);
        assert_eq!(s.add, caps(&[0, 19]));
        assert_eq!(s.verdict(Cap(19)).unwrap().status, Status::Required);
    }
}
