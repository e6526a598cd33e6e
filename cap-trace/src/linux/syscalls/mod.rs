//! System call names, for reports ("which syscall triggered the check").
//!
//! Each architecture's table is a file beside this one, `include!`d as data rather than a
//! module (`x86_64.rs`); another architecture's goes the same way, behind its own
//! `#[cfg(target_arch = ...)]`, here and in [`name`].

#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
mod table {
    include!("x86_64.rs");
}

/// Name of a system call number on this architecture, or `syscall_<n>` if unknown.
pub fn name(nr: u32) -> String {
    #[cfg(target_arch = "x86_64")]
    if let Some(name) = table::X86_64.get(nr as usize).filter(|n| !n.is_empty()) {
        return (*name).to_owned();
    }
    format!("syscall_{nr}")
}

/// Syscalls whose result says nothing about a denial inside them: a netlink request sent with
/// sendmsg "succeeds" and carries its EPERM back in the reply.
pub const RESULT_BLIND_SYSCALLS: &[&str] = &["sendto", "sendmsg", "sendmmsg"];

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn known_numbers() {
        assert_eq!(super::name(0), "read");
        assert_eq!(super::name(9), "mmap");
        assert_eq!(super::name(116), "setgroups");
        assert_eq!(super::name(260), "fchownat");
        assert_eq!(super::name(400), "syscall_400");
        assert_eq!(super::name(100_000), "syscall_100000");
    }
}
