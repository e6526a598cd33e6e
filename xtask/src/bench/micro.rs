//! The microbenchmark: `capbench` (a `setgroups(0, NULL)` loop) under each configuration in
//! turn: no tracer, empty programs on cap-trace's hooks, cap-trace's modes, bpftrace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::root;

/// How the microbenchmark is run in one configuration.
#[derive(Clone)]
pub(super) enum Runner {
    /// Nothing attached.
    Bare,
    /// Under `cap-trace run` with these options (the loop runs in the traced cgroup).
    CapTrace(Vec<&'static str>),
    /// With a bpftrace script attached.
    Bpftrace(&'static str),
}

#[derive(Clone)]
pub(super) struct Config {
    pub(super) key: &'static str,
    pub(super) label: &'static str,
    pub(super) runner: Runner,
}

/// `cap-trace run` options for an empty program on the default mode's hook, the raw tracepoint
/// (outcomes by task work attach nothing else): its floor.
pub(super) const FLOOR_HOOKS: [&str; 3] = ["--floor", "--tracepoint-flavor", "raw"];

/// The same with an empty program on `raw_syscalls:sys_exit` too: the floor of the hooks used
/// where the kernel has no task works (and what `--outcome-hook sys-exit` attaches).
pub(super) const FLOOR_HOOKS_SYS_EXIT: [&str; 4] =
    ["--floor", "--floor-sys-exit", "--tracepoint-flavor", "raw"];

/// `cap-trace run ARGS --format json --output /dev/null --`: the command comes next.
pub(super) fn cap_trace_run(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .args(args)
        .args(["--format", "json", "--output", "/dev/null", "--"]);
    cmd
}

pub(super) fn configs() -> Vec<Config> {
    use Runner::{Bare, Bpftrace, CapTrace};
    vec![
        Config {
            key: "base",
            label: "no tracer",
            runner: Bare,
        },
        Config {
            key: "floor-tp",
            label: "floor: empty program, classic tracepoint",
            runner: CapTrace(vec!["--floor", "--tracepoint-flavor", "classic"]),
        },
        Config {
            key: "floor-raw",
            label: "floor: empty program, raw tracepoint",
            runner: CapTrace(vec!["--floor", "--tracepoint-flavor", "raw"]),
        },
        Config {
            key: "floor-raw-exit",
            label: "floor: empty programs, raw tracepoint + sys_exit",
            runner: CapTrace(FLOOR_HOOKS_SYS_EXIT.to_vec()),
        },
        Config {
            key: "ct-raw",
            label: "cap-trace default (raw tracepoint, outcomes by task work, in-kernel dedupe)",
            runner: CapTrace(vec!["--tracepoint-flavor", "raw"]),
        },
        Config {
            key: "ct-raw-exit",
            label: "cap-trace, raw tracepoint, outcomes on sys_exit (kernels without task works)",
            runner: CapTrace(vec![
                "--tracepoint-flavor",
                "raw",
                "--outcome-hook",
                "sys-exit",
            ]),
        },
        Config {
            key: "ct-classic",
            label: "cap-trace, classic tracepoint, outcomes by task work",
            runner: CapTrace(vec!["--tracepoint-flavor", "classic"]),
        },
        Config {
            key: "ct-stream",
            label: "cap-trace streaming (every check to userspace)",
            runner: CapTrace(vec!["--stream", "--ring-buffer", "16M"]),
        },
        Config {
            key: "bt-agg",
            label: "bpftrace, aggregating in a map",
            runner: Bpftrace(
                "tracepoint:capability:cap_capable { @[comm, args->cap, args->ret] = count(); }",
            ),
        },
        Config {
            key: "bt-print",
            label: "bpftrace, printing each event (capable.bt style)",
            runner: Bpftrace(
                "tracepoint:capability:cap_capable { time(\"%H:%M:%S \"); printf(\"%-6d %-6d %-16s %-4d %d\\n\", uid, pid, comm, args->cap, args->ret); }",
            ),
        },
    ]
}

pub(super) fn capbench() -> PathBuf {
    root().join("target/release/capbench")
}

/// One capbench run: ns per call over the whole run, and in its quickest tenth of time slices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Timing {
    pub(super) ns: f64,
    /// The 10th percentile of the run's 100 slices: what a call costs when the rest of a shared
    /// machine (other guests, host interrupts) adds little. Interference only ever adds time, so
    /// this moves far less from run to run than the whole run's average.
    pub(super) low: f64,
}

/// Parses `ns_per_call=X ... low_ns_per_call=Y` from capbench's output.
pub(super) fn timing(text: &str) -> Option<Timing> {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
    };
    Some(Timing {
        ns: field("ns_per_call=")?,
        low: field("low_ns_per_call=")?,
    })
}

/// The medians of runs' whole and quickest-tenth figures.
pub(super) fn median_timing(runs: &[Timing]) -> Timing {
    Timing {
        ns: median(&mut runs.iter().map(|t| t.ns).collect::<Vec<_>>()),
        low: median(&mut runs.iter().map(|t| t.low).collect::<Vec<_>>()),
    }
}

/// capbench's figures from a finished run of it (`what` names the run in an error).
pub(super) fn capbench_timing(out: &std::process::Output, what: &str) -> Result<Timing> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match timing(&text) {
        Some(t) if out.status.success() => Ok(t),
        _ => bail!("{what}: {text}"),
    }
}

/// An overhead in a table: `-` on the reference row.
pub(super) fn signed(reference: bool, v: f64) -> String {
    if reference {
        "-".to_owned()
    } else {
        format!("{v:+.0}")
    }
}

pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

/// Starts bpftrace and waits until its probes are attached ("Attaching N probes..." on stdout).
/// Its output is read and discarded by a thread, as a terminal or a log collector would take it.
pub(super) fn start_bpftrace(script: &str) -> Result<Child> {
    let mut child = Command::new("bpftrace")
        .args(["-e", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("BPFTRACE_MAX_MAP_KEYS", "65536")
        .spawn()
        .context("start bpftrace (apt-get install bpftrace)")?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.starts_with("Attaching") {
                let _ = tx.send(());
            }
            line.clear();
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        bail!("bpftrace did not attach within 60 s");
    }
    // The line is printed just before the programs are attached.
    std::thread::sleep(Duration::from_millis(300));
    Ok(child)
}

pub(super) fn stop(mut child: Child) -> Result<()> {
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// One run of the microbenchmark: ns per call.
pub(super) fn run_once(config: &Config, bin: &Path, calls: u64) -> Result<Timing> {
    let calls = calls.to_string();
    let out = match &config.runner {
        Runner::Bare => Command::new(capbench()).arg(&calls).output()?,
        Runner::CapTrace(args) => cap_trace_run(bin, args)
            .arg(capbench())
            .arg(&calls)
            .output()?,
        Runner::Bpftrace(script) => {
            let bt = start_bpftrace(script)?;
            let out = Command::new(capbench()).arg(&calls).output()?;
            stop(bt)?;
            out
        }
    };
    capbench_timing(&out, config.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capbench_output() {
        assert_eq!(
            timing("calls=10 ns_per_call=812.5 low_ns_per_call=600.0 seconds=1.0\n"),
            Some(Timing {
                ns: 812.5,
                low: 600.0
            })
        );
        assert_eq!(timing("calls=10 ns_per_call=812.5 seconds=1.0"), None);
        assert_eq!(timing("nothing"), None);
    }

    #[test]
    #[allow(clippy::float_cmp)] // halves of small integers are exact
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
