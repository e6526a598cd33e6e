//! A tracing session on this host: the kernel's events turned into profile records, the
//! cgroups and containers traced, and cap-trace's own privileges.

pub mod cgroup;
pub mod container;
pub mod follow;
pub mod health;
pub mod launch;
pub mod privilege;
pub mod procs;
pub mod sysctl;
pub mod tracer;
pub mod verify;

use std::fmt;

use crate::kernel::ProbeError;
use crate::session::cgroup::CgroupError;

/// Why a tracing session could not start or go on. Each kind maps to one documented exit code
/// (`error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// What was asked for cannot be done as given (a command that does not exist, say).
    #[error("{0}")]
    Usage(String),
    /// This machine cannot trace (no container engine, say).
    #[error("{0}")]
    Environment(String),
    /// Tracing failed while running.
    #[error("{0}")]
    Runtime(String),
}

impl SessionError {
    pub fn usage(message: impl fmt::Display) -> SessionError {
        SessionError::Usage(message.to_string())
    }

    pub fn environment(message: impl fmt::Display) -> SessionError {
        SessionError::Environment(message.to_string())
    }

    pub fn runtime(message: impl fmt::Display) -> SessionError {
        SessionError::Runtime(message.to_string())
    }
}
