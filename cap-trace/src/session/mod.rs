//! A tracing session on this host: the kernel's events turned into profile records, the
//! cgroups and containers traced, and cap-trace's own privileges.

pub mod cgroup;
pub mod container;
pub mod follow;
pub mod launch;
pub mod privilege;
pub mod tracer;
