//! Exit codes and the one-line errors the command line prints.

use std::fmt;

/// Documented exit codes. [`exit::TABLE`] is their one description: `cap-trace --help` prints
/// it, and a unit test holds the README's "Exit status" table to it.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// `check`: the workload needs a capability the baseline does not have, or hit a denial
    /// that made a syscall fail.
    pub const CHECK_FAILED: u8 = 1;
    /// Usage or input error: bad arguments, unknown probe or capability (or a capability
    /// number this build does not know), malformed, oversized or unreadable profile, command
    /// not found, no such process, cgroup or service to trace (or one that cannot be).
    pub const USAGE: u8 = 2;
    /// The machine cannot trace, or the daemon cannot be reached: not root, no usable kernel
    /// hook, no BTF, no cgroup v2; a state dir in use or unusable; no or a root-only control
    /// socket.
    pub const ENVIRONMENT: u8 = 3;
    /// Tracing failed while running: container engine error, container not found in time,
    /// I/O error writing the output (or a write refused as unsafe), a control request refused.
    pub const RUNTIME: u8 = 4;

    /// Every code and what it means, in the README's words (Markdown: `check` is code).
    pub const TABLE: [(u8, &str); 5] = [
        (OK, "success"),
        (
            CHECK_FAILED,
            "`check`: the workload needs a capability the baseline does not grant, or hit a wall",
        ),
        (
            USAGE,
            "usage or input error: bad arguments, unknown probe or capability (or a capability number this cap-trace does not know), malformed, oversized or unreadable profile, command not found, no such process, cgroup or service to trace (or one cap-trace cannot: itself, the root cgroup)",
        ),
        (
            ENVIRONMENT,
            "this machine cannot trace, or the daemon cannot be reached: not root or a capability missing, no usable kernel hook, no BTF, no cgroup v2; a state dir another daemon holds or that cannot be used; a control socket that is not there or is root-only",
        ),
        (
            RUNTIME,
            "tracing failed while running: engine error, container not found in time, write error (a write through another user's link or into another user's directory is refused with it), a control request the daemon refused",
        ),
    ];

    /// The table as `--help` shows it, under an "Exit status:" heading, each meaning wrapped
    /// under itself (clap would wrap a long line back to the margin).
    pub fn help() -> String {
        const WIDTH: usize = 96;
        let mut out = String::from("Exit status:");
        for (code, meaning) in TABLE {
            let mut line = format!("  {code} ");
            for word in meaning.replace('`', "").split(' ') {
                if line.len() + 1 + word.len() > WIDTH {
                    out.push('\n');
                    out.push_str(&line);
                    line = "    ".to_string();
                }
                line.push(' ');
                line.push_str(word);
            }
            out.push('\n');
            out.push_str(&line);
        }
        out
    }
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

/// What tracing needs when not run as root (`session::privilege::TRACING`), for `--help`.
pub fn tracing_privileges() -> String {
    crate::session::privilege::tracing_names()
}

impl From<crate::kernel::ProbeError> for Failure {
    fn from(e: crate::kernel::ProbeError) -> Failure {
        use crate::kernel::ProbeError::{Kernel, Map, NoBackend, NoBtf, NoPermission};
        match e {
            // Said from the one table of what tracing needs, naming what this process lacks.
            NoPermission => {
                let lacking = crate::session::privilege::lacking_for_tracing();
                let lacking = if lacking.is_empty() {
                    String::new()
                } else {
                    format!("; this process lacks {lacking}")
                };
                Failure::environment(format!(
                    "permission denied: tracing needs root, or {}{lacking}: run cap-trace with sudo",
                    tracing_privileges()
                ))
            }
            NoBtf | NoBackend { .. } | Kernel(_) => Failure::environment(e),
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
            crate::session::cgroup::CgroupError::Io { .. } => Failure::runtime(e),
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
        use crate::session::SessionError::{Cgroup, Environment, Probe, Runtime, Usage};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::write::WriteError;
    use crate::session::SessionError;
    use crate::session::privilege::PrivilegeError;

    /// The rows of the README's "Exit status" table, as (code, meaning).
    fn readme_table() -> Vec<(u8, String)> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md beside the workspace's Cargo.toml");
        let section = readme
            .split("### Exit status")
            .nth(1)
            .expect("the README has an \"Exit status\" section");
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
                Some((cells.first()?.parse().ok()?, cells.get(1)?.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_readme_table_is_the_exit_table() {
        let table: Vec<(u8, String)> = exit::TABLE
            .iter()
            .map(|(code, meaning)| (*code, meaning.to_string()))
            .collect();
        assert_eq!(readme_table(), table);
    }

    #[test]
    fn help_lists_every_code() {
        let help = exit::help();
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        for (code, meaning) in exit::TABLE {
            assert!(
                words(&help).contains(&format!("{code} {}", meaning.replace('`', ""))),
                "{help}"
            );
        }
        assert!(help.lines().all(|l| l.len() <= 96), "{help}");
    }

    #[test]
    fn library_errors_keep_their_codes() {
        let write = WriteError::Stdout(std::io::Error::other("x"));
        assert_eq!(Failure::from(write).code, exit::RUNTIME);
        let lacking = PrivilegeError::Lacking(vec!["BPF".into()]);
        assert_eq!(Failure::from(lacking).code, exit::ENVIRONMENT);
        assert_eq!(Failure::from(SessionError::usage("x")).code, exit::USAGE);
        assert_eq!(
            Failure::from(SessionError::environment("x")).code,
            exit::ENVIRONMENT
        );
        assert_eq!(
            Failure::from(SessionError::runtime("x")).code,
            exit::RUNTIME
        );
    }
}
