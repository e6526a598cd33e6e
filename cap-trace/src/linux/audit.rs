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
    /// Audited, but the check only picks a shortcut: granted, the call succeeds; denied, it
    /// succeeds too unless it asks for what the capability alone allows, and then the syscall
    /// fails (which the outcome of a denial shows). A granted check from here is no need.
    Shortcut,
    /// Only forwards its caller's `opts` (security_capable): look one frame further.
    Forward,
}

/// One rule: a kernel function and how it calls into the capability check.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub function: &'static str,
    pub class: Class,
    /// Why a check from here is (not) an enforcement point; shown for noaudit and shortcut
    /// checks.
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
    // cap_capset's only capability check is cap_inh_is_capped() (inlined): CAP_SETPCAP lets
    // capset() raise the inheritable set beyond the permitted one. capset() asks on every call.
    cap_capset Shortcut "capset() asks for SETPCAP on every call, but it only matters when the inheritable set is raised beyond the permitted one; then, denied, capset fails, and that shows as a wall";
    security_capset Shortcut "capset() asks for SETPCAP on every call, but it only matters when the inheritable set is raised beyond the permitted one; then, denied, capset fails, and that shows as a wall";
    cap_task_prctl Audit "prctl(PR_SET_SECUREBITS)";
    security_task_prctl Audit "prctl(PR_SET_SECUREBITS)";
    smack_privileged_cred Audit "Smack privilege check";
    policy_ns_capable Audit "AppArmor policy administration";
    aa_change_profile NoAudit "AppArmor: whether an unconfined task may bypass profile stacking";
}

/// The syscall whose checks of a capability are shortcuts when the backend cannot name the call
/// site (fexit and kprobe read the audit flag, not the caller): `capset` makes no other check
/// of SETPCAP than the one in `cap_capset`, so (SETPCAP, capset) is the same rule.
pub const SHORTCUT_SYSCALLS: &[(u32, &str)] = &[(8, "capset")];

/// Whether a check is a shortcut: by its call site when known, else by capability and syscall.
pub fn is_shortcut(cap: u32, site: Option<&str>, syscall: Option<&str>) -> bool {
    match site.and_then(|s| RULES.iter().find(|r| r.function == s)) {
        Some(rule) => rule.class == Class::Shortcut,
        None => {
            site.is_none()
                && SHORTCUT_SYSCALLS
                    .iter()
                    .any(|&(c, s)| c == cap && syscall == Some(s))
        }
    }
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
            if matches!(r.class, Class::NoAudit | Class::Shortcut) {
                assert!(r.reason.len() > 10, "{} needs a reason", r.function);
            }
        }
        assert_eq!(rule(0), None);
        assert_eq!(rule(1).unwrap().function, "security_capable");
    }

    #[test]
    fn capsets_setpcap_check_is_a_shortcut() {
        // The tracepoint names the site: cap_capset (or security_capset, if not inlined).
        assert!(is_shortcut(8, Some("cap_capset"), Some("capset")));
        assert!(is_shortcut(8, Some("security_capset"), Some("capset")));
        // fexit and kprobe have no site: (SETPCAP, capset) is the same rule.
        assert!(is_shortcut(8, None, Some("capset")));
        // SETPCAP elsewhere is a need: prctl(PR_CAPBSET_DROP), PR_SET_SECUREBITS.
        assert!(!is_shortcut(8, None, Some("prctl")));
        assert!(!is_shortcut(8, Some("ns_capable"), Some("prctl")));
        assert!(!is_shortcut(8, Some("cap_task_prctl"), Some("prctl")));
        // Another capability in capset, or an unrecognised site, is not.
        assert!(!is_shortcut(0, None, Some("capset")));
        assert!(!is_shortcut(8, Some("0xffffffff81000000"), Some("capset")));
        let shortcuts: Vec<&str> = RULES
            .iter()
            .filter(|r| r.class == Class::Shortcut)
            .map(|r| r.function)
            .collect();
        assert_eq!(shortcuts, ["cap_capset", "security_capset"]);
    }
}
