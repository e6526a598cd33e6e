//! The audit call-site rules (`linux/audit.rs`) placed on the running kernel: each rule's
//! function as an address range from `/proc/kallsyms`, in the form the kernel side searches.

use cap_trace_common::{MAX_SITES, SiteRange, site_class};

use crate::kernel::kallsyms;
use crate::linux::audit::{Class, RULES, Rule, rule};

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
            if kallsyms::base_name(&name) == "cap_capable" {
                // The main body only, which makes the call into the tracepoint. Compilers move
                // a function's unlikely paths to a `.cold` part elsewhere in the text (Debian's
                // 6.16+ amd64 kernels list `cap_capable.cold` below `cap_capable`): a range
                // there would never hold the return address the stack walk looks for.
                if name == "cap_capable" {
                    table.cap_capable = (start, end);
                }
                continue;
            }
            // A rule's `.cold` part is still that function's code.
            let base = kallsyms::base_name(&name);
            let Some(index) = RULES.iter().position(|r| r.function == base) else {
                continue;
            };
            table.ranges.push(SiteRange {
                start,
                end,
                class: match RULES[index].class {
                    // A shortcut is audited; the profile's rules tell it apart by its site.
                    Class::Audit | Class::Shortcut => site_class::AUDIT,
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

    /// Debian's 6.16+ amd64 kernels split `cap_capable` and place its cold part lower in the
    /// text: only the main body holds the return address the stack walk looks for.
    #[test]
    fn cap_capable_is_its_main_body_not_its_cold_part() {
        let split = format!(
            "ffffffff81200000 t cap_capable.cold\nffffffff81200040 t other.cold\n{KALLSYMS}"
        );
        let t = SiteTable::from_kallsyms(split.as_bytes()).unwrap();
        assert_eq!(t.cap_capable, (0xffffffff81a80900, 0xffffffff81a80b10));
        // A rule's cold part is still that function's code.
        let cold = "ffffffff81300000 t capable.cold\nffffffff81300100 T unrelated\n";
        let t = SiteTable::from_kallsyms(format!("{cold}{KALLSYMS}").as_bytes()).unwrap();
        let (class, rule) = t.classify(0xffffffff81a8585b, 0xffffffff81300010).unwrap();
        assert_eq!((class, rule.function), (Class::Audit, "capable"));
    }

    #[test]
    fn a_cold_part_alone_is_no_cap_capable() {
        let cold_only = "ffffffff81200000 t cap_capable.cold\nffffffff81366210 T capable\nffffffff81366280 T ns_capable_noaudit\n";
        assert!(matches!(
            SiteTable::from_kallsyms(cold_only.as_bytes()),
            Err(SiteError::NoCapCapable)
        ));
    }

    #[test]
    fn every_rule_fits_the_kernel_table() {
        assert!(RULES.len() <= MAX_SITES);
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
