//! What a followed denial costs: `capbench` as nobody making, call after call, a denied check
//! whose syscall fails (`denied`: setgroups, EPERM; once that outcome is settled the task work
//! stops following it) and one whose syscall succeeds anyway (`detour`: chmod g+s on its own file
//! of a group it is not in, FSETID denied; followed every time), bare, traced with outcomes by
//! task work, and traced with outcomes on sys_exit.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::bench::micro::{Timing, capbench, capbench_timing, median_timing, signed};

/// How `capbench` runs: bare (as nobody), or under `cap-trace run --user nobody` with these
/// options.
const SETUPS: [(&str, Option<&str>); 3] = [
    ("no tracer", None),
    ("cap-trace, outcomes by task work", Some("auto")),
    ("cap-trace, outcomes on sys_exit", Some("sys-exit")),
];

/// The loops' medians per setup: (setup, denied, detour).
pub(super) struct Denials {
    rows: Vec<(&'static str, Timing, Timing)>,
}

/// Where nobody can run `capbench` and own the detour's file.
struct Scratch {
    dir: PathBuf,
    capbench: PathBuf,
    detour_file: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("cap-trace-bench-{}", std::process::id()));
        let shared = dir.join("shared");
        std::fs::create_dir_all(&shared)?;
        let bench = dir.join("capbench");
        std::fs::copy(capbench(), &bench)?;
        std::fs::set_permissions(&bench, std::fs::Permissions::from_mode(0o755))?;
        // nobody's file in a set-group-ID directory of group root: nobody is not in its group.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2775))?;
        let detour_file = shared.join("own");
        std::fs::write(&detour_file, "x")?;
        for path in [&shared, &detour_file] {
            std::os::unix::fs::chown(path, Some(65534), Some(0))?;
        }
        Ok(Scratch {
            dir,
            capbench: bench,
            detour_file,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn denials(bin: &Path, rounds: usize, calls: u64) -> Result<Denials> {
    let scratch = Scratch::new()?;
    let detour = format!("detour:{}", scratch.detour_file.display());
    let mut runs: Vec<[Vec<Timing>; 2]> = vec![Default::default(); SETUPS.len()];
    for round in 0..rounds {
        for i in 0..SETUPS.len() {
            let index = (i + round) % SETUPS.len();
            for (slot, call) in runs[index].iter_mut().zip(["denied", detour.as_str()]) {
                slot.push(run_as_nobody(bin, &scratch, SETUPS[index].1, calls, call)?);
            }
        }
        println!("bench: followed denials, round {}/{rounds} done", round + 1);
    }
    Ok(Denials {
        rows: SETUPS
            .iter()
            .zip(&runs)
            .map(|((label, _), [denied, detour])| {
                (*label, median_timing(denied), median_timing(detour))
            })
            .collect(),
    })
}

fn run_as_nobody(
    bin: &Path,
    scratch: &Scratch,
    hook: Option<&str>,
    calls: u64,
    call: &str,
) -> Result<Timing> {
    let mut cmd = match hook {
        None => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
            c
        }
        Some(hook) => {
            let mut c = Command::new(bin);
            c.args(["run", "--user", "nobody", "--outcome-hook", hook])
                .args(["--format", "json", "--output", "/dev/null", "--"]);
            c
        }
    };
    let out = cmd
        .arg(&scratch.capbench)
        .args([&calls.to_string(), "1", "0", call])
        .output()?;
    capbench_timing(&out, &format!("capbench {call} as nobody"))
}

impl Denials {
    /// What the detour (a denial followed every time) costs per call with outcomes by task
    /// work and on sys_exit, over no tracer (quickest tenth).
    pub(super) fn followed(&self) -> (f64, f64) {
        let bare = self.rows[0].2.low;
        (self.rows[1].2.low - bare, self.rows[2].2.low - bare)
    }

    pub(super) fn table(&self) -> String {
        let mut t = String::from(
            "| setup | denied, fails (setgroups): ns per call | quickest tenth | overhead | denied, succeeds anyway (chmod g+s): ns per call | quickest tenth | overhead |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        let (_, bare_denied, bare_detour) = &self.rows[0];
        for (i, (label, denied, detour)) in self.rows.iter().enumerate() {
            let signed = |v: f64| signed(i == 0, v);
            t.push_str(&format!(
                "| {label} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {} |\n",
                denied.ns,
                denied.low,
                signed(denied.low - bare_denied.low),
                detour.ns,
                detour.low,
                signed(detour.low - bare_detour.low),
            ));
        }
        t
    }
}
