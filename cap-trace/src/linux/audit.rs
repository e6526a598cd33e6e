//! Is a capability check audited? The tracepoint has no `opts` argument, so the tracepoint
//! backends answer from the call site: the caller of `cap_capable`, and when that is
//! `security_capable`, its caller. This table is the one place where those rules live; userspace
//! turns it into address ranges (from `/proc/kallsyms`) that the kernel side searches.
//!
//! Why it matters: a noaudit check is the kernel asking "would this be allowed?" without acting
//! on the answer the way an enforcement point does. On every `mmap`, `brk` and `exec`,
//! `security_vm_enough_memory_mm` asks for CAP_SYS_ADMIN without audit; counted as required,
//! every workload would "need" SYS_ADMIN.

use cap_trace_common::{MAX_SITES, SiteRange, site_class};

use crate::kernel::kallsyms;

/// How a call site passes `opts` to `cap_capable`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Class {
    Audit,
    NoAudit,
    AuditInSetid,
    /// Only forwards its caller's `opts` (security_capable): look one frame further.
    Forward,
}

/// One rule: a kernel function and how it calls into the capability check.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub function: &'static str,
    pub class: Class,
    /// Why a check from here is (not) an enforcement point; shown for noaudit checks.
    pub reason: &'static str,
}

macro_rules! rules {
    ($($function:ident $class:ident $reason:literal;)*) => {
        /// The classification table. Functions absent from the running kernel are skipped.
        pub const RULES: &[Rule] = &[$(Rule {
            function: stringify!($function),
            class: Class::$class,
            reason: $reason,
        },)*];
    };
}

rules! {
    // The LSM entry point: opts come from its caller.
    security_capable Forward "LSM capability hook";
    // Callers of security_capable (kernel/capability.c and friends).
    capable Audit "capable()";
    ns_capable Audit "ns_capable()";
    has_capability Audit "has_capability()";
    has_ns_capability Audit "has_ns_capability()";
    file_ns_capable Audit "file_ns_capable(): capability of the file's opener";
    // ns_capable() is often inlined into its neighbours in kernel/capability.c.
    capable_wrt_inode_uidgid Audit "capable_wrt_inode_uidgid(): file ownership and permission overrides";
    ns_capable_setid AuditInSetid "ns_capable_setid(): set*id or setgroups";
    ns_capable_noaudit NoAudit "ns_capable_noaudit(): the kernel asks whether the capability is held, to pick a code path, and works either way";
    has_ns_capability_noaudit NoAudit "has_ns_capability_noaudit(): the kernel asks whether the capability is held, to pick a code path, and works either way";
    has_capability_noaudit NoAudit "has_capability_noaudit(): the kernel asks whether the capability is held, to pick a code path, and works either way";
    kallsyms_show_value NoAudit "kallsyms_show_value(): decides whether kernel addresses are shown or zeroed";
    ptracer_capable NoAudit "ptracer_capable(): whether the tracer of this task holds SYS_PTRACE";
    // Direct callers of cap_capable.
    security_vm_enough_memory_mm NoAudit "memory overcommit heuristic on mmap/brk/exec: root gets a small reserve, nobody is refused for lacking it";
    cap_vm_enough_memory NoAudit "memory overcommit heuristic on mmap/brk/exec: root gets a small reserve, nobody is refused for lacking it";
    cap_mmap_addr Audit "mapping below vm.mmap_min_addr";
    security_mmap_addr Audit "mapping below vm.mmap_min_addr";
    cap_capset Audit "capset(): raising inheritable capabilities";
    security_capset Audit "capset(): raising inheritable capabilities";
    cap_task_prctl Audit "prctl(PR_SET_SECUREBITS)";
    security_task_prctl Audit "prctl(PR_SET_SECUREBITS)";
    smack_privileged_cred Audit "Smack privilege check";
    policy_ns_capable Audit "AppArmor policy administration";
    aa_change_profile NoAudit "AppArmor: whether an unconfined task may bypass profile stacking";
}

/// The rule with 1-based index `site` (as reported in `CheckKey::site`).
pub fn rule(site: u32) -> Option<&'static Rule> {
    site.checked_sub(1).and_then(|i| RULES.get(i as usize))
}

/// What the kernel side needs to classify call sites on the running kernel.
#[derive(Debug, Default)]
pub struct SiteTable {
    pub cap_capable: (u64, u64),
    pub ranges: Vec<SiteRange>,
}

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Kallsyms(#[from] kallsyms::KallsymsError),
    #[error("cap_capable is not in /proc/kallsyms")]
    NoCapCapable,
    #[error("none of the capability helpers are in /proc/kallsyms")]
    NoRules,
}

impl SiteTable {
    /// Builds the ranges from a `/proc/kallsyms` listing.
    pub fn from_kallsyms(reader: impl std::io::Read) -> Result<Self, SiteError> {
        let mut wanted: Vec<&str> = RULES.iter().map(|r| r.function).collect();
        wanted.push("cap_capable");
        let found = kallsyms::function_ranges(reader, &wanted)?;
        let mut table = SiteTable::default();
        for (name, start, end) in found {
            if name == "cap_capable" {
                // The main body, not a .cold part.
                if table.cap_capable.0 == 0 {
                    table.cap_capable = (start, end);
                }
                continue;
            }
            let Some(index) = RULES.iter().position(|r| r.function == name) else {
                continue;
            };
            table.ranges.push(SiteRange {
                start,
                end,
                class: match RULES[index].class {
                    Class::Audit => site_class::AUDIT,
                    Class::NoAudit => site_class::NOAUDIT,
                    Class::AuditInSetid => site_class::AUDIT_INSETID,
                    Class::Forward => site_class::FORWARD,
                },
                rule: index as u32 + 1,
            });
        }
        if table.cap_capable.0 == 0 {
            return Err(SiteError::NoCapCapable);
        }
        if table.ranges.is_empty() {
            return Err(SiteError::NoRules);
        }
        table.ranges.sort_by_key(|r| r.start);
        table.ranges.truncate(MAX_SITES);
        Ok(table)
    }

    /// Same search as the kernel side, for tests and for naming sites in reports.
    pub fn classify(&self, caller: u64, callers_caller: u64) -> Option<(Class, &'static Rule)> {
        let find = |addr: u64| {
            self.ranges
                .iter()
                .find(|r| addr >= r.start && addr < r.end)
                .and_then(|r| rule(r.rule))
        };
        let first = find(caller)?;
        if first.class == Class::Forward {
            let second = find(callers_caller)?;
            (second.class != Class::Forward).then_some((second.class, second))
        } else {
            Some((first.class, first))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81366080 T file_ns_capable
ffffffff813660d0 T has_capability_noaudit
ffffffff81366130 T ns_capable_setid
ffffffff813661a0 T ns_capable
ffffffff81366210 T capable
ffffffff81366280 T ns_capable_noaudit
ffffffff81366390 T has_ns_capability
ffffffff813663f0 T has_ns_capability_noaudit
ffffffff813664f0 T capable_wrt_inode_uidgid
ffffffff81366600 T ns_capable_common.constprop.0
ffffffff81366700 T some_other_function
ffffffff81a80900 T cap_capable
ffffffff81a80b10 T cap_vm_enough_memory
ffffffff81a80c00 T cap_mmap_addr
ffffffff81a80d00 T cap_settime
ffffffff81a85820 T security_capable
ffffffff81a85900 T security_settime64
ffffffff81a85b30 T security_vm_enough_memory_mm
ffffffff81a85c00 T security_mmap_file
";

    fn table() -> SiteTable {
        SiteTable::from_kallsyms(KALLSYMS.as_bytes()).unwrap()
    }

    /// (caller of cap_capable, its caller, expected class, expected function), as seen in real
    /// stacks on Linux 6.18.
    #[test]
    fn classifies_real_call_sites() {
        let t = table();
        type Case = (u64, u64, Option<(Class, &'static str)>);
        let cases: &[Case] = &[
            // capable(CAP_SYS_ADMIN) from perf_event_open
            (
                0xffffffff81a8585b,
                0xffffffff8136623e,
                Some((Class::Audit, "capable")),
            ),
            // ns_capable from bpf_token_capable
            (
                0xffffffff81a8585b,
                0xffffffff813661ca,
                Some((Class::Audit, "ns_capable")),
            ),
            // ns_capable_noaudit (sysctl reads)
            (
                0xffffffff81a8585b,
                0xffffffff813662aa,
                Some((Class::NoAudit, "ns_capable_noaudit")),
            ),
            (
                0xffffffff81a8585b,
                0xffffffff81366140,
                Some((Class::AuditInSetid, "ns_capable_setid")),
            ),
            (
                0xffffffff81a8585b,
                0xffffffff813660e0,
                Some((Class::NoAudit, "has_capability_noaudit")),
            ),
            (
                0xffffffff81a8585b,
                0xffffffff81366400,
                Some((Class::NoAudit, "has_ns_capability_noaudit")),
            ),
            (
                0xffffffff81a8585b,
                0xffffffff81366090,
                Some((Class::Audit, "file_ns_capable")),
            ),
            // chown(2): ns_capable inlined into capable_wrt_inode_uidgid
            (
                0xffffffff81a8585b,
                0xffffffff81366520,
                Some((Class::Audit, "capable_wrt_inode_uidgid")),
            ),
            // security_vm_enough_memory_mm calls cap_capable directly (mmap, brk, exec)
            (
                0xffffffff81a85b66,
                0xffffffff81200000,
                Some((Class::NoAudit, "security_vm_enough_memory_mm")),
            ),
            (
                0xffffffff81a80b20,
                0,
                Some((Class::NoAudit, "cap_vm_enough_memory")),
            ),
            (
                0xffffffff81a80c10,
                0xffffffff81200000,
                Some((Class::Audit, "cap_mmap_addr")),
            ),
            // An out-of-line ns_capable_common forwards opts: cannot tell.
            (0xffffffff81a8585b, 0xffffffff81366610, None),
            // security_capable called from a function the table does not know.
            (0xffffffff81a8585b, 0xffffffff81366710, None),
            // Unknown direct caller of cap_capable.
            (0xffffffff81366710, 0xffffffff8136623e, None),
        ];
        for &(caller, callers_caller, expected) in cases {
            let got = t
                .classify(caller, callers_caller)
                .map(|(class, rule)| (class, rule.function));
            assert_eq!(got, expected, "{caller:#x} <- {callers_caller:#x}");
        }
    }

    #[test]
    fn builds_sorted_ranges_with_rule_indices() {
        let t = table();
        assert_eq!(t.cap_capable, (0xffffffff81a80900, 0xffffffff81a80b10));
        assert!(t.ranges.windows(2).all(|w| w[0].start < w[1].start));
        for range in &t.ranges {
            let rule = rule(range.rule).unwrap();
            assert!(range.start < range.end, "{}", rule.function);
        }
        assert_eq!(t.ranges.len(), 13);
    }

    #[test]
    fn rule_table_is_consistent() {
        assert!(RULES.len() <= MAX_SITES);
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                !RULES[..i].iter().any(|o| o.function == r.function),
                "duplicate rule {}",
                r.function
            );
            if r.class == Class::NoAudit {
                assert!(r.reason.len() > 10, "{} needs a reason", r.function);
            }
        }
        assert_eq!(rule(0), None);
        assert_eq!(rule(1).unwrap().function, "security_capable");
    }

    #[test]
    fn missing_cap_capable_is_an_error() {
        let no_cap = "ffffffff81366210 T capable\n";
        assert!(matches!(
            SiteTable::from_kallsyms(no_cap.as_bytes()),
            Err(SiteError::NoCapCapable)
        ));
    }
}
