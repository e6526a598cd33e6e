//! Bystanders: what a process cap-trace does not trace pays while cap-trace traces a container
//! beside it, as in staging, where the daemon runs for days beside everything else on the node.
//! `capbench` runs in the benchmark's own cgroup, which is not traced, as a syscall loop
//! (`getpid`: no capability check) and a capability-check loop (`setgroups`), with nothing
//! traced, with an empty program on the `cap_capable` hook (what attaching anything there costs a
//! bystander's checks: the floor), and while cap-trace traces an idle container, with each
//! outcome hook.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Result;

use crate::bench::micro::{
    FLOOR_HOOKS, Timing, capbench, capbench_timing, median_timing, signed, stop,
};
use crate::bench::tracer::wait_for_line;
use crate::util::{DEMO_IMAGE, PODMAN_LIMITS, podman, run};

/// What runs beside the bystander loops.
#[derive(Clone, Copy)]
enum Beside {
    Nothing,
    /// An empty program on the raw `capability:cap_capable` tracepoint.
    Floor,
    /// cap-trace following the container with outcomes on this hook.
    Tracing(&'static str),
}

/// How the machine is set up while the bystander loops run.
const SETUPS: [(&str, Beside); 4] = [
    ("nothing traced", Beside::Nothing),
    (
        "floor: an empty program on the raw tracepoint (what any program there costs)",
        Beside::Floor,
    ),
    (
        "cap-trace tracing a container (outcomes by task work)",
        Beside::Tracing("auto"),
    ),
    (
        "cap-trace tracing a container, outcomes on sys_exit (kernels without task works)",
        Beside::Tracing("sys-exit"),
    ),
];

/// The loops' medians per setup.
pub(super) struct Bystanders {
    /// (setup, getpid, setgroups), in the order of `SETUPS`.
    rows: Vec<(&'static str, Timing, Timing)>,
}

pub(super) fn bystanders(bin: &Path, rounds: usize, calls: u64) -> Result<Bystanders> {
    let container = format!("cap-trace-bench-traced-{}", std::process::id());
    run(podman()
        .args(["run", "-d", "--rm", "--name", &container])
        .args(PODMAN_LIMITS)
        .args(["--network", "none", DEMO_IMAGE, "sleep", "3600"])
        .stdout(Stdio::null()))?;
    let measured = measure(bin, &container, rounds, calls);
    let _ = podman().args(["rm", "-f", "-t", "0", &container]).output();
    measured
}

fn measure(bin: &Path, container: &str, rounds: usize, calls: u64) -> Result<Bystanders> {
    let mut runs: Vec<[Vec<Timing>; 2]> = vec![Default::default(); SETUPS.len()];
    for round in 0..rounds {
        for i in 0..SETUPS.len() {
            let index = (i + round) % SETUPS.len();
            let tracer = match SETUPS[index].1 {
                Beside::Tracing(hook) => Some(trace(bin, container, hook)?),
                Beside::Floor => Some(floor(bin)?),
                Beside::Nothing => None,
            };
            let loops = ["getpid", "setgroups"].map(|call| bystander_loop(calls, call));
            if let Some(tracer) = tracer {
                stop(tracer)?;
            }
            for (slot, timing) in runs[index].iter_mut().zip(loops) {
                slot.push(timing?);
            }
        }
        println!("bench: bystanders, round {}/{rounds} done", round + 1);
    }
    Ok(Bystanders {
        rows: SETUPS
            .iter()
            .zip(&runs)
            .map(|((label, _), [getpid, setgroups])| {
                (*label, median_timing(getpid), median_timing(setgroups))
            })
            .collect(),
    })
}

/// cap-trace following `container` with outcomes on `hook`, once it says it traces it.
fn trace(bin: &Path, container: &str, hook: &str) -> Result<Child> {
    let mut child = Command::new(bin)
        .args(["--container", container, "--outcome-hook", hook])
        .args(["--format", "json", "--output", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_for_line(&mut child, "tracing container")?;
    Ok(child)
}

/// Empty programs on cap-trace's hook, held while `sleep` runs: the floor of any tracer there.
fn floor(bin: &Path) -> Result<Child> {
    let mut child = Command::new(bin)
        .args(["run", "--verbose"])
        .args(FLOOR_HOOKS)
        .args(["--format", "json", "--output", "/dev/null"])
        .args(["--", "sleep", "3600"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_for_line(&mut child, "attached to")?;
    Ok(child)
}

/// One run of the loop, in the benchmark's own (untraced) cgroup.
fn bystander_loop(calls: u64, call: &str) -> Result<Timing> {
    let out = Command::new(capbench())
        .args([&calls.to_string(), "1", "0", call])
        .output()?;
    capbench_timing(&out, &format!("capbench {call}"))
}

impl Bystanders {
    fn row(&self, index: usize) -> &(&'static str, Timing, Timing) {
        &self.rows[index]
    }

    /// What a bystander's getpid and setgroups pay while cap-trace traces its neighbour with
    /// outcomes by task work (quickest tenth, ns per call).
    pub(super) fn task_work_overhead(&self) -> (f64, f64) {
        self.overhead(2)
    }

    /// What an empty program on the same hook costs them (the floor).
    pub(super) fn floor_overhead(&self) -> (f64, f64) {
        self.overhead(1)
    }

    /// The same with outcomes on sys_exit.
    pub(super) fn sys_exit_overhead(&self) -> (f64, f64) {
        self.overhead(3)
    }

    fn overhead(&self, index: usize) -> (f64, f64) {
        let (_, bare_getpid, bare_setgroups) = self.row(0);
        let (_, getpid, setgroups) = self.row(index);
        (
            getpid.low - bare_getpid.low,
            setgroups.low - bare_setgroups.low,
        )
    }

    pub(super) fn table(&self) -> String {
        let mut t = String::from(
            "| setup | getpid: ns per call | overhead | quickest tenth | overhead | setgroups: ns per check | overhead | quickest tenth | overhead |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let (_, bare_getpid, bare_setgroups) = self.row(0);
        for (i, (label, getpid, setgroups)) in self.rows.iter().enumerate() {
            let signed = |v: f64| signed(i == 0, v);
            t.push_str(&format!(
                "| {label} | {:.0} | {} | {:.0} | {} | {:.0} | {} | {:.0} | {} |\n",
                getpid.ns,
                signed(getpid.ns - bare_getpid.ns),
                getpid.low,
                signed(getpid.low - bare_getpid.low),
                setgroups.ns,
                signed(setgroups.ns - bare_setgroups.ns),
                setgroups.low,
                signed(setgroups.low - bare_setgroups.low),
            ));
        }
        t
    }
}
