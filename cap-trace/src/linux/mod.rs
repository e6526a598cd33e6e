//! What Linux is: static facts with no I/O (capabilities, system call names, the audit
//! call-site rules). Everything else may use it; it uses nothing of cap-trace.

pub mod audit;
pub mod caps;
pub mod errno;
pub mod hook;
pub mod syscalls;
