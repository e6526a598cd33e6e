//! Where a repeated check's time goes, as the kernel accounts each program's run time
//! (`kernel.bpf_stats_enabled`), with the fast path stopped at each `--cost-cut` point.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::bench::micro::{FLOOR_HOOKS_SYS_EXIT, cap_trace_run, capbench, median};
use crate::util::root;

/// The programs' own run time, as the kernel accounts it (`kernel.bpf_stats_enabled`): ns per
/// run of each named program, measured while the microbenchmark runs under `cap-trace run
/// ARGS`. The kernel's accounting adds two clock reads to every run, the same for every
/// program, so differences between rows are what the work costs.
pub(super) fn program_run_times(
    bin: &Path,
    args: &[&str],
    calls: u64,
    touch_kib: u64,
) -> Result<Vec<(String, f64)>> {
    let stats = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    let before = std::fs::read_to_string(stats)?;
    std::fs::write(stats, "1")?;
    let out_path = root().join("target/bench/programs.json");
    std::fs::create_dir_all(out_path.parent().unwrap())?;
    // bpftool runs inside the traced command, while the programs are still attached.
    let script = format!(
        "{} {calls} 1 {touch_kib} >/dev/null && bpftool --json prog show > {}",
        capbench().display(),
        out_path.display()
    );
    let result = cap_trace_run(bin, args)
        .args(["sh", "-c"])
        .arg(&script)
        .output();
    std::fs::write(stats, before)?;
    let out = result?;
    if !out.status.success() {
        bail!(
            "measuring program run times: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let programs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_path)?)?;
    let wanted = [
        "taskwork_raw",
        "cap_capable_raw",
        "sys_exit",
        "floor_raw",
        "floor_sys_exit",
    ];
    Ok(programs
        .as_array()
        .context("bpftool printed no program list")?
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            let runs = p["run_cnt"].as_u64()?;
            let ns = p["run_time_ns"].as_u64()?;
            (wanted.contains(&name) && runs > 0).then(|| (name.to_owned(), ns as f64 / runs as f64))
        })
        .collect())
}

/// KiB capbench writes between checks for the breakdown's cold column.
pub(super) const COLD_KIB: u64 = 1024;

/// Where a repeated check's time goes: the cap_capable program's run time with its fast path
/// stopped at each `--cost-cut` point in turn, after the empty programs' (median of `rounds`),
/// in a tight loop and with `COLD_KIB` written between checks; and what following outcomes on
/// `sys_exit` instead of by task work adds (kernels without task works).
pub(super) struct Breakdown {
    /// (part, ns per run of the cap_capable program up to and including it: hot, cold).
    rows: Vec<(&'static str, f64, f64)>,
    /// ns per run of the sys_exit program: empty, and cap-trace's (`--outcome-hook sys-exit`).
    sys_exit: (f64, f64),
}

/// The last part: the whole default mode, which also runs with outcomes on `sys_exit`.
const WHOLE: &str = "call-site words: the whole default mode";

pub(super) fn breakdown(bin: &Path, rounds: usize, calls: u64) -> Result<Breakdown> {
    let parts: [(&str, &[&str]); 7] = [
        ("empty program (the floor)", &FLOOR_HOOKS_SYS_EXIT),
        ("cgroup filter", &["--cost-cut", "1"]),
        (
            "per-CPU state (the check counts as a repeat)",
            &["--cost-cut", "2"],
        ),
        (
            "task identity: credentials, name, namespaces",
            &["--cost-cut", "3"],
        ),
        ("syscall number", &["--cost-cut", "4"]),
        (WHOLE, &[]),
        (
            "the same, outcomes on sys_exit",
            &["--outcome-hook", "sys-exit"],
        ),
    ];
    let mut cap: Vec<Vec<f64>> = vec![Vec::new(); parts.len()];
    let mut cold: Vec<Vec<f64>> = vec![Vec::new(); parts.len()];
    let mut exit: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for i in 0..parts.len() {
            let index = (i + round) % parts.len();
            let (cap_name, exit_name) = match index {
                0 => ("floor_raw", "floor_sys_exit"),
                6 => ("cap_capable_raw", "sys_exit"),
                _ => ("taskwork_raw", "sys_exit"),
            };
            let find = |times: &[(String, f64)], name: &str| {
                times
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, ns)| *ns)
                    .with_context(|| format!("no run time for {name}"))
            };
            // The writes between checks take far longer than the checks: fewer calls.
            let times = program_run_times(bin, parts[index].1, calls / 20, COLD_KIB)?;
            cold[index].push(find(&times, cap_name)?);
            let times = program_run_times(bin, parts[index].1, calls, 0)?;
            cap[index].push(find(&times, cap_name)?);
            if index == 0 || index == 6 {
                let slot = usize::from(index != 0);
                exit[slot].push(find(&times, exit_name)?);
            }
        }
        println!(
            "bench: program run times, round {}/{rounds} done",
            round + 1
        );
    }
    Ok(Breakdown {
        rows: parts
            .iter()
            .zip(cap.iter_mut().zip(cold.iter_mut()))
            .map(|((label, _), (hot, cold))| (*label, median(hot), median(cold)))
            .collect(),
        sys_exit: (median(&mut exit[0]), median(&mut exit[1])),
    })
}

impl Breakdown {
    fn whole(&self) -> &(&'static str, f64, f64) {
        self.rows.iter().find(|r| r.0 == WHOLE).unwrap()
    }

    /// What cap-trace's program costs per repeated check beyond an empty program on the same
    /// hook (the default mode: outcomes by task work, nothing on sys_exit).
    pub(super) fn above_floor(&self) -> f64 {
        self.whole().1 - self.rows[0].1
    }

    /// The same with outcomes on sys_exit: both programs beyond empty programs on both hooks.
    pub(super) fn above_floor_sys_exit(&self) -> f64 {
        self.rows.last().unwrap().1 - self.rows[0].1 + (self.sys_exit.1 - self.sys_exit.0)
    }

    /// The whole default mode's cap_capable program per run, with caches cold, the accounting's
    /// two clock reads included (an upper bound of what a check in a real workload costs in it).
    pub(super) fn whole_cold(&self) -> f64 {
        self.whole().2
    }

    /// The cap_capable program's work above the empty program's, with caches cold.
    pub(super) fn cold_above_floor(&self) -> f64 {
        self.whole().2 - self.rows[0].2
    }

    pub(super) fn table(&self) -> String {
        let mut t = format!(
            "| fast path up to | cap_capable program, ns per run | this part | {} MiB written between checks: ns per run | this part |\n\
             |---|---:|---:|---:|---:|\n",
            COLD_KIB / 1024
        );
        let mut previous = None;
        for (label, hot, cold) in &self.rows {
            let part = |now: f64, before: Option<f64>| {
                before
                    .map(|p| format!("{:+.0}", now - p))
                    .unwrap_or_default()
            };
            t.push_str(&format!(
                "| {label} | {hot:.0} | {} | {cold:.0} | {} |\n",
                part(*hot, previous.map(|(h, _)| h)),
                part(*cold, previous.map(|(_, c)| c))
            ));
            previous = Some((*hot, *cold));
        }
        t.push_str(&format!(
            "| sys_exit program (outcomes on sys_exit): empty, then cap-trace's | {:.0}, {:.0} | {:+.0} | | |\n",
            self.sys_exit.0,
            self.sys_exit.1,
            self.sys_exit.1 - self.sys_exit.0
        ));
        t
    }
}
