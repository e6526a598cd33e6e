//! A tracing session on this host: the kernel's events turned into profile records, the
//! cgroups and containers traced, and cap-trace's own privileges.

pub mod attach;
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
pub mod verify_container;

use std::fmt;

use crate::kernel::ProbeError;
use crate::model::record::Check;
use crate::session::cgroup::CgroupError;

/// The width in columns of the terminal on descriptor `fd`, if it is one.
pub fn terminal_columns(fd: i32) -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize it is given.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &raw mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// The live view: called with each kind of check the moment it is first seen in a traced
/// workload, with the workload's name (escaping is the caller's).
pub type OnCheck = Box<dyn FnMut(&str, &Check)>;

/// Fresh checks of cgroups not named yet, kept until they are: beyond this, the oldest wait no
/// longer (the profile still has them).
const MAX_WAITING_CHECKS: usize = 65_536;

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
