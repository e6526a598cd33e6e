//! cap-trace: learn which Linux capabilities a workload really needs.
//!
//! The kernel side (`cap-trace-ebpf`) observes every `cap_capable` call of the traced cgroups;
//! this library loads it ([`probe`]), reads what it sees ([`trace`]), turns it into a
//! [`profile`] per workload and derives the minimal capability set ([`suggest`]).

pub mod audit;
pub mod btf;
pub mod caps;
pub mod cgroup;
pub mod cli;
pub mod container;
pub mod daemon;
pub mod error;
pub mod follow;
pub mod gate;
pub mod kallsyms;
pub mod merge;
pub mod output;
pub mod privilege;
pub mod probe;
pub mod profile;
pub mod render;
pub mod report;
pub mod run;
pub mod suggest;
pub mod syscalls;
pub mod trace;
