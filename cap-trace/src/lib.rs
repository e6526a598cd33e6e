//! cap-trace: learn which Linux capabilities a workload really needs.
//!
//! The kernel side (`cap-trace-ebpf`) observes every `cap_capable` call of the traced cgroups;
//! this library is grouped by pipeline stage, each folder depending only on the ones before it:
//!
//! - [`linux`]: what Linux is (capabilities, syscall names, the audit call-site rules);
//! - [`kernel`]: the hook: loading and attaching the programs, reading their maps;
//! - [`session`]: a tracing session: events into records, cgroups, containers, privileges;
//! - [`model`]: the profile and the rules over it (suggestion, merge, gate): pure data;
//! - [`render`]: every output, from a profile;
//! - [`commands`]: one file per subcommand, on top of all of them.
//!
//! `linux` ← `kernel` ← `session` ← `commands`, and `linux` ← `model` ← `render` ←
//! `commands`; `session` also builds `model` records.

pub mod cli;
pub mod commands;
pub mod error;
pub mod kernel;
pub mod linux;
pub mod model;
pub mod render;
pub mod session;
