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
pub(crate) mod status;
pub mod sysctl;
pub mod tracer;
pub mod verify;
pub mod verify_container;

use std::fmt;

use crate::kernel::ProbeError;
use crate::model::record::Check;
use crate::session::cgroup::CgroupError;

/// A message of the session on stderr, `cap-trace: MESSAGE`, with what came from outside in it
/// shown escaped. On a terminal it is wrapped to the terminal's width (`COLUMNS` when set),
/// its continuations indented; into a pipe or a log it stays one line, for grep.
pub(crate) fn say(message: &str) {
    let line = format!("cap-trace: {}", crate::model::text::shown(message));
    eprintln!("{}", for_stderr(&line, stderr_terminal_width()));
}

/// `line` wrapped to `width` with a hanging indent of 2 (`None`: not a terminal, as it is).
fn for_stderr(line: &str, width: Option<usize>) -> String {
    match width {
        Some(width) => crate::model::text::wrap(line, width, 2),
        None => line.to_owned(),
    }
}

/// The width of the terminal on stderr (`COLUMNS` when set), if stderr is a terminal.
fn stderr_terminal_width() -> Option<usize> {
    let width = terminal_columns(libc::STDERR_FILENO)?;
    Some(columns_asked().unwrap_or(width).max(40))
}

/// The width `COLUMNS` asks for, when it is set to one.
pub(crate) fn columns_asked() -> Option<usize> {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_wrap_on_a_terminal_only() {
        let line = "cap-trace: verification run 3 without CHOWN: failed (0.2 s): the workload exited with status 1 (the learning run exited with status 0)";
        assert_eq!(for_stderr(line, None), line);
        let wrapped = for_stderr(line, Some(80));
        assert_eq!(
            wrapped,
            "cap-trace: verification run 3 without CHOWN: failed (0.2 s): the workload exited\n  with status 1 (the learning run exited with status 0)"
        );
        assert!(wrapped.lines().all(|l| l.chars().count() <= 80));
    }
}
