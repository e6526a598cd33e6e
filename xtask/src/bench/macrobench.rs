//! The macro benchmark: a container that unpacks, copies, chowns and chmods a tree, bare, with
//! an empty program on cap-trace's hook, traced by cap-trace, and traced with outcomes on
//! `sys_exit` (what kernels without task works pay). (`macro` is a keyword, hence the file's
//! name.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::bench::micro::{FLOOR_HOOKS, cap_trace_run, median};
use crate::bench::tracer::wait_for_line;
use crate::util::{DEMO_IMAGE, PODMAN_LIMITS, root, run};

/// How the macro workload runs.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum MacroMode {
    /// Nothing attached.
    Bare,
    /// An empty program on cap-trace's hook (the raw tracepoint): the floor.
    Floor,
    /// cap-trace following the container.
    Traced,
    /// cap-trace following the container, with outcomes on `raw_syscalls:sys_exit`.
    TracedSysExit,
}

/// What a traced run of the macro workload recorded.
#[derive(Clone, Copy, Default)]
pub(super) struct Recorded {
    checks: u64,
    /// Losses of the profile (ring buffer, probes, outcomes), and of outcomes alone.
    lost: u64,
    outcomes_lost: u64,
}

/// Passes of the macro workload per run: long enough (a few seconds) that the container's
/// start and /proc/uptime's 10 ms steps do not matter.
pub(super) const MACRO_PASSES: u32 = 10;

/// One run of the macro workload: a container unpacks, copies, chowns and chmods a tree as root,
/// `MACRO_PASSES` times, on a tmpfs (on the container's overlay the disk's writeback makes runs
/// vary by more than the whole effect). Returns the seconds measured inside the container and,
/// when traced, what cap-trace recorded.
pub(super) fn macro_run(
    bin: &Path,
    mode: MacroMode,
    tree: &Path,
    round: usize,
) -> Result<(f64, Recorded)> {
    let name = format!(
        "cap-trace-bench-{}-{round}-{}",
        std::process::id(),
        mode as u8
    );
    let profile_path = std::env::temp_dir().join(format!("{name}.json"));
    let mut tracer = None;
    if matches!(mode, MacroMode::Traced | MacroMode::TracedSysExit) {
        let hook = if mode == MacroMode::Traced {
            "auto"
        } else {
            "sys-exit"
        };
        let mut child = Command::new(bin)
            .args(["--container", &name, "--wait", "60", "--outcome-hook", hook])
            .args(["--format", "json", "--output"])
            .arg(&profile_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // cap-trace says it is waiting once its programs are attached.
        wait_for_line(&mut child, "waiting for container")?;
        tracer = Some(child);
    }
    let script = format!(
        "read a _ < /proc/uptime; i=0; while [ $i -lt {MACRO_PASSES} ]; do \
         mkdir /w/a /w/b && tar -xf /data/tree.tar -C /w/a && cp -a /w/a/. /w/b && \
         chown -R nobody /w/b && chmod -R g+w /w/b && rm -rf /w/a /w/b || exit 1; i=$((i+1)); done; \
         read b _ < /proc/uptime; echo \"elapsed=$a $b\""
    );
    let mut cmd = if mode == MacroMode::Floor {
        let mut c = cap_trace_run(bin, &FLOOR_HOOKS);
        c.arg("podman");
        c
    } else {
        Command::new("podman")
    };
    let out = cmd
        .args(["--runtime", "runc", "run", "--rm", "--name", &name])
        .args(PODMAN_LIMITS)
        .args(["--network", "none", "--tmpfs", "/w:size=256m"])
        .arg("-v")
        .arg(format!("{}:/data/tree.tar:ro", tree.display()))
        .arg(DEMO_IMAGE)
        .args(["sh", "-c", &script])
        .stderr(Stdio::piped())
        .output()?;
    let recorded = match tracer {
        Some(mut t) => {
            t.wait()?;
            let text = std::fs::read_to_string(&profile_path)
                .context("cap-trace wrote no profile for the macro container")?;
            let _ = std::fs::remove_file(&profile_path);
            let p: serde_json::Value = serde_json::from_str(&text)?;
            let losses = &p["trace"]["losses"];
            let count = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            Recorded {
                checks: count(&p["trace"]["total_checks"]),
                lost: count(&losses["ring_buffer"])
                    + count(&losses["probes_missed"])
                    + count(&losses["outcomes"]),
                outcomes_lost: count(&losses["outcomes"]),
            }
        }
        None => Recorded::default(),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let elapsed = text
        .split_whitespace()
        .skip_while(|w| !w.starts_with("elapsed="))
        .map(|w| w.trim_start_matches("elapsed=").parse::<f64>())
        .take(2)
        .collect::<Result<Vec<f64>, _>>()
        .ok()
        .filter(|v| v.len() == 2)
        .with_context(|| {
            format!(
                "macro workload: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok((elapsed[1] - elapsed[0], recorded))
}

/// The macro benchmark's medians over its rounds.
pub(super) struct Macro {
    rounds: usize,
    bare: f64,
    pub(super) floor: f64,
    pub(super) traced: f64,
    pub(super) traced_sys_exit: f64,
    checks: u64,
    /// Losses summed over the traced runs (both hooks): all of them, and outcomes alone.
    pub(super) lost: u64,
    pub(super) outcomes_lost: u64,
    /// Every run, in order, for the report.
    runs: String,
    /// How far apart the untraced runs are, in % of their median.
    spread_pct: f64,
}

impl Macro {
    pub(super) fn pct(&self, seconds: f64) -> f64 {
        100.0 * (seconds / self.bare - 1.0)
    }

    /// What tracing adds to an untraced run as the kernel accounts it: each check's run of the
    /// program (`program_ns`) plus entering a program on the hook at all (`entry_ns`, from the
    /// microbenchmark's floor), over the untraced run's time. Wall clocks of whole runs on a
    /// shared virtual machine vary by more than the target; this does not.
    pub(super) fn accounted_pct(&self, program_ns: f64, entry_ns: f64) -> f64 {
        100.0 * self.checks as f64 * (program_ns + entry_ns) * 1e-9 / self.bare
    }

    /// The target's verdict (less than 2%, nothing lost), by the wall clock; when the untraced
    /// runs alone vary by far more than the target, by the kernel's accounting (`accounted`,
    /// from [`Macro::accounted_pct`], when the whole benchmark measured it), and said so.
    pub(super) fn verdict(&self, accounted: Option<f64>) -> String {
        if self.lost > 0 {
            format!("NOT met: {} lost", self.lost)
        } else if self.spread_pct > 10.0 {
            let wall = format!(
                "the wall clock is inconclusive: untraced runs alone vary by {:.0}%",
                self.spread_pct
            );
            match accounted {
                Some(pct) => format!(
                    "{} as the kernel accounts it ({pct:.1}%); {wall}",
                    if pct < 2.0 { "met" } else { "NOT met" }
                ),
                None => wall,
            }
        } else if self.pct(self.traced) < 2.0 {
            "met".into()
        } else {
            "NOT met".into()
        }
    }

    pub(super) fn summary(&self) -> String {
        format!(
            "- Macro benchmark (in a podman container, on a tmpfs: {MACRO_PASSES} passes of unpacking a \
             4,000-file tree, copying it with `cp -a`, `chown -R` and `chmod -R`, as root; {} capability \
             checks per run; median of {} runs): {:.2} s without a tracer, {:.2} s with an empty program on \
             cap-trace's hook ({:+.1}%), {:.2} s traced ({:+.1}%; outcomes by task work), {:.2} s traced with \
             outcomes on sys_exit ({:+.1}%, what kernels without task works pay); lost over all traced runs: {} \
             (syscall outcomes: {}). Each run, in order: {}.\n",
            self.checks,
            self.rounds,
            self.bare,
            self.floor,
            self.pct(self.floor),
            self.traced,
            self.pct(self.traced),
            self.traced_sys_exit,
            self.pct(self.traced_sys_exit),
            self.lost,
            self.outcomes_lost,
            self.runs
        )
    }
}

pub(super) fn macro_bench(bin: &Path, rounds: usize) -> Result<Macro> {
    let tree = make_tree()?;
    let modes = [
        MacroMode::Bare,
        MacroMode::Floor,
        MacroMode::Traced,
        MacroMode::TracedSysExit,
    ];
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut checks = Vec::new();
    let (mut lost, mut outcomes_lost) = (0, 0);
    for round in 0..rounds {
        // Rotate the order, so that whatever a container leaves behind (podman's clean-up)
        // weighs on each configuration alike.
        for i in 0..modes.len() {
            let index = (i + round) % modes.len();
            let (seconds, recorded) = macro_run(bin, modes[index], &tree, round)?;
            times[index].push(seconds);
            lost += recorded.lost;
            outcomes_lost += recorded.outcomes_lost;
            if modes[index] == MacroMode::Traced {
                checks.push(recorded.checks as f64);
            }
        }
        println!("bench: macro round {}/{rounds} done", round + 1);
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let runs = format!(
        "without: {}; floor: {}; traced: {}; traced, outcomes on sys_exit: {} s",
        list(&times[0]),
        list(&times[1]),
        list(&times[2]),
        list(&times[3])
    );
    let spread_pct = {
        let lo = times[0].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = times[0].iter().copied().fold(0.0, f64::max);
        100.0 * (hi - lo) / median(&mut times[0].clone())
    };
    Ok(Macro {
        rounds,
        bare: median(&mut times[0]),
        floor: median(&mut times[1]),
        traced: median(&mut times[2]),
        traced_sys_exit: median(&mut times[3]),
        checks: median(&mut checks) as u64,
        lost,
        outcomes_lost,
        runs,
        spread_pct,
    })
}

/// A tree of many small files (and some large ones) to unpack and copy.
pub(super) fn make_tree() -> Result<PathBuf> {
    let dir = root().join("target/bench");
    let tar = dir.join("tree.tar");
    if tar.exists() {
        return Ok(tar);
    }
    let src = dir.join("tree");
    let _ = std::fs::remove_dir_all(&src);
    for d in 0..40 {
        let sub = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&sub)?;
        for f in 0..100 {
            std::fs::write(
                sub.join(format!("f{f:03}")),
                vec![b'x'; 512 + (f * 37) % 4096],
            )?;
        }
    }
    run(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    std::fs::remove_dir_all(&src)?;
    Ok(tar)
}
