//! The status line of a long trace on a terminal: one line on stderr, redrawn in place (how
//! long the trace has run and has left, what it follows, checks counted, losses), taken off
//! before any other line is written. Only on a terminal, never with `--json` (the caller
//! decides, once).

use std::cell::Cell;
use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::kernel::Stats;

#[derive(Debug, Default)]
pub(crate) struct StatusLine {
    on: bool,
    /// On the terminal now (other lines take it off first).
    drawn: Cell<bool>,
    /// When it was last drawn: it is redrawn at most once a second.
    drawn_at: Cell<Option<Instant>>,
}

impl StatusLine {
    pub(crate) fn new(on: bool) -> StatusLine {
        StatusLine {
            on,
            drawn: Cell::new(false),
            drawn_at: Cell::new(None),
        }
    }

    /// Whether there is a line to draw now: on, and not drawn in the last second (callers
    /// gather what it says only then).
    pub(crate) fn due(&self) -> bool {
        self.on
            && self
                .drawn_at
                .get()
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
    }

    /// Draws the line in place of the last: `cap-trace: ELAPSED[, LEFT left] | WHAT | N checks
    /// | LOSSES`, cut to the terminal's width.
    pub(crate) fn draw(
        &self,
        elapsed: Duration,
        left: Option<Duration>,
        what: &str,
        stats: &Stats,
    ) {
        if !self.on {
            return;
        }
        let mut line = format!("cap-trace: {}", clock(elapsed));
        if let Some(left) = left {
            line.push_str(&format!(", {} left", clock(left)));
        }
        line.push_str(&format!(" | {what} | {} checks | ", stats.checks));
        line.push_str(&match stats.losses() {
            0 => "nothing lost".to_owned(),
            n => format!("{n} lost"),
        });
        let width = crate::session::terminal_columns(libc::STDERR_FILENO)
            .unwrap_or(80)
            .saturating_sub(1);
        let line: String = line.chars().take(width).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
        self.drawn.set(true);
        self.drawn_at.set(Some(Instant::now()));
    }

    /// Takes the line off the terminal, if it is on it.
    pub(crate) fn clear(&self) {
        if self.drawn.replace(false) {
            eprint!("\r\x1b[K");
        }
    }
}

/// `42s`, `3m07s`, `1h02m`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_like_a_clock() {
        assert_eq!(clock(Duration::from_secs(42)), "42s");
        assert_eq!(clock(Duration::from_secs(187)), "3m07s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
    }
}
