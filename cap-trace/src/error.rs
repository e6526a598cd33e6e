//! Exit codes and the one-line errors the command line prints.

use std::fmt;

/// Documented exit codes (also in `cap-trace --help` and the README).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// `check`: the workload needs a capability the baseline does not have, or hit a denial
    /// that made a syscall fail.
    pub const CHECK_FAILED: u8 = 1;
    /// Usage or input error: bad arguments, unknown probe or capability, malformed or
    /// unreadable profile, command not found.
    pub const USAGE: u8 = 2;
    /// The machine cannot trace: not root, no usable kernel hook, no BTF, no cgroup v2.
    pub const ENVIRONMENT: u8 = 3;
    /// Tracing failed while running: container engine error, container not found in time,
    /// I/O error writing the output.
    pub const RUNTIME: u8 = 4;
}

/// An error that ends the program: a message and the exit code that goes with it.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl fmt::Display) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.to_string(),
        }
    }

    pub fn environment(message: impl fmt::Display) -> Failure {
        Failure {
            code: exit::ENVIRONMENT,
            message: message.to_string(),
        }
    }

    pub fn runtime(message: impl fmt::Display) -> Failure {
        Failure {
            code: exit::RUNTIME,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<crate::kernel::ProbeError> for Failure {
    fn from(e: crate::kernel::ProbeError) -> Failure {
        use crate::kernel::ProbeError::*;
        match e {
            NoPermission | NoBtf | NoBackend { .. } | Kernel(_) => Failure::environment(e),
            Map(..) => Failure::runtime(e),
        }
    }
}

impl From<crate::session::cgroup::CgroupError> for Failure {
    fn from(e: crate::session::cgroup::CgroupError) -> Failure {
        match e {
            crate::session::cgroup::CgroupError::NoCgroup2 => Failure::environment(e),
            crate::session::cgroup::CgroupError::Io { ref source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Failure::environment(format!("{e} (run cap-trace as root)"))
            }
            _ => Failure::runtime(e),
        }
    }
}

impl From<crate::model::profile::ProfileError> for Failure {
    fn from(e: crate::model::profile::ProfileError) -> Failure {
        Failure::usage(e)
    }
}

impl From<crate::session::SessionError> for Failure {
    fn from(e: crate::session::SessionError) -> Failure {
        use crate::session::SessionError::*;
        match e {
            Probe(e) => e.into(),
            Cgroup(e) => e.into(),
            Usage(message) => Failure::usage(message),
            Environment(message) => Failure::environment(message),
            Runtime(message) => Failure::runtime(message),
        }
    }
}

impl From<crate::session::privilege::PrivilegeError> for Failure {
    fn from(e: crate::session::privilege::PrivilegeError) -> Failure {
        Failure::environment(e)
    }
}

impl From<crate::render::write::WriteError> for Failure {
    fn from(e: crate::render::write::WriteError) -> Failure {
        Failure::runtime(e)
    }
}
