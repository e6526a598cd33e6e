//! Is a capability check audited? The tracepoint has no `opts` argument, so the tracepoint
//! backends answer from the call site: the caller of `cap_capable`, and when that is
//! `security_capable`, its caller. This table is the one place where those rules live;
//! `kernel/sites.rs` turns it into address ranges (from `/proc/kallsyms`) that the kernel side
//! searches.
//!
//! Why it matters: a noaudit check is the kernel asking "would this be allowed?" without acting
//! on the answer the way an enforcement point does. On every `mmap`, `brk` and `exec`,
//! `security_vm_enough_memory_mm` asks for CAP_SYS_ADMIN without audit; counted as required,
//! every workload would "need" SYS_ADMIN.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_table_is_consistent() {
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
}
