//! `cargo xtask bench`: what tracing costs the traced workload, against the floor (an empty BPF
//! program on the same hooks) and against the tool a user would pick instead (bpftrace).
//! Configurations alternate round by round so that machine drift spreads over all of them.
//! Prints a table and writes BENCHMARKS.md.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::setup;
use crate::tasks::{build_release, is_root, root, run};

pub struct Options {
    pub rounds: usize,
    pub calls: u64,
    /// Keys of the only configurations to run (empty: the whole benchmark).
    pub only: Vec<String>,
}

/// How the microbenchmark is run in one configuration.
#[derive(Clone)]
enum Runner {
    /// Nothing attached.
    Bare,
    /// Under `cap-trace run` with these options (the loop runs in the traced cgroup).
    CapTrace(Vec<&'static str>),
    /// With a bpftrace script attached.
    Bpftrace(&'static str),
}

#[derive(Clone)]
struct Config {
    key: &'static str,
    label: &'static str,
    runner: Runner,
}

/// `cap-trace run` options for empty programs on both of the default mode's hooks (the raw
/// tracepoint and sys_exit): its floor.
const FLOOR_HOOKS: [&str; 4] = ["--floor", "--floor-sys-exit", "--tracepoint-flavor", "raw"];

/// `cap-trace run ARGS --format json --output /dev/null --`: the command comes next.
fn cap_trace_run(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .args(args)
        .args(["--format", "json", "--output", "/dev/null", "--"]);
    cmd
}

fn configs() -> Vec<Config> {
    use Runner::*;
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
            runner: CapTrace(FLOOR_HOOKS.to_vec()),
        },
        Config {
            key: "ct-raw",
            label: "cap-trace default (raw tracepoint, in-kernel dedupe)",
            runner: CapTrace(vec!["--tracepoint-flavor", "raw"]),
        },
        Config {
            key: "ct-classic",
            label: "cap-trace, classic tracepoint, in-kernel dedupe",
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

fn capbench() -> PathBuf {
    root().join("target/release/capbench")
}

/// One capbench run: ns per call over the whole run, and in its quickest tenth of time slices.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Timing {
    ns: f64,
    /// The 10th percentile of the run's 100 slices: what a call costs when the rest of a shared
    /// machine (other guests, host interrupts) adds little. Interference only ever adds time, so
    /// this moves far less from run to run than the whole run's average.
    low: f64,
}

/// Parses `ns_per_call=X ... low_ns_per_call=Y` from capbench's output.
fn timing(text: &str) -> Option<Timing> {
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Starts bpftrace and waits until its probes are attached ("Attaching N probes..." on stdout).
/// Its output is read and discarded by a thread, as a terminal or a log collector would take it.
fn start_bpftrace(script: &str) -> Result<Child> {
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

fn stop(mut child: Child) -> Result<()> {
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
fn run_once(config: &Config, bin: &Path, calls: u64) -> Result<Timing> {
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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{}: {text}", config.key);
    }
    timing(&text).with_context(|| format!("{}: no result in {text}", config.key))
}

/// A cap-trace profile of the microbenchmark (counts, losses).
fn profile(
    bin: &Path,
    args: &[&str],
    calls: u64,
    threads: u64,
) -> Result<(serde_json::Value, f64, Sample)> {
    let out_path = root().join("target/bench/profile.json");
    std::fs::create_dir_all(out_path.parent().unwrap())?;
    let mut child = Command::new(bin)
        .arg("run")
        .args(args)
        .args(["--format", "json", "--output"])
        .arg(&out_path)
        .arg("--")
        .arg(capbench())
        .arg(calls.to_string())
        .arg(threads.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let sample = watch(&mut child)?;
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout)?;
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr)?;
    if !child.wait()?.success() {
        bail!("cap-trace failed: {stderr}");
    }
    let seconds = stderr
        .split_whitespace()
        .chain(stdout.split_whitespace())
        .find_map(|w| w.strip_prefix("seconds="))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let json = serde_json::from_str(&std::fs::read_to_string(&out_path)?)?;
    Ok((json, seconds, sample))
}

/// The programs' own run time, as the kernel accounts it (`kernel.bpf_stats_enabled`): ns per
/// run of each named program, measured while the microbenchmark runs under `cap-trace run
/// ARGS`. The kernel's accounting adds two clock reads to every run, the same for every
/// program, so differences between rows are what the work costs.
fn program_run_times(
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
    let wanted = ["cap_capable_raw", "sys_exit", "floor_raw", "floor_sys_exit"];
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
const COLD_KIB: u64 = 1024;

/// Where a repeated check's time goes: the cap_capable program's run time with its fast path
/// stopped at each `--cost-cut` point in turn, after the empty programs' (median of `rounds`),
/// in a tight loop and with `COLD_KIB` written between checks.
struct Breakdown {
    /// (part, ns per run of the cap_capable program up to and including it: hot, cold).
    rows: Vec<(&'static str, f64, f64)>,
    /// ns per run of the sys_exit program: empty, and cap-trace's.
    sys_exit: (f64, f64),
}

fn breakdown(bin: &Path, rounds: usize, calls: u64) -> Result<Breakdown> {
    let parts: [(&str, &[&str]); 6] = [
        ("empty program (the floor)", &FLOOR_HOOKS),
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
        ("call-site words: the whole default mode", &[]),
    ];
    let mut cap: Vec<Vec<f64>> = vec![Vec::new(); parts.len()];
    let mut cold: Vec<Vec<f64>> = vec![Vec::new(); parts.len()];
    let mut exit: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for i in 0..parts.len() {
            let index = (i + round) % parts.len();
            let (cap_name, exit_name) = if index == 0 {
                ("floor_raw", "floor_sys_exit")
            } else {
                ("cap_capable_raw", "sys_exit")
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
            if index == 0 || index == parts.len() - 1 {
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
    /// What cap-trace's two programs cost per check beyond empty programs on the same hooks.
    fn above_floor(&self) -> f64 {
        let whole = self.rows.last().unwrap().1 - self.rows[0].1;
        whole + (self.sys_exit.1 - self.sys_exit.0)
    }

    /// The cap_capable program's work above the empty program's, with caches cold.
    fn cold_above_floor(&self) -> f64 {
        self.rows.last().unwrap().2 - self.rows[0].2
    }

    fn table(&self) -> String {
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
            "| sys_exit program: empty, then cap-trace's | {:.0}, {:.0} | {:+.0} | | |\n",
            self.sys_exit.0,
            self.sys_exit.1,
            self.sys_exit.1 - self.sys_exit.0
        ));
        t
    }
}

/// Peak RSS and CPU time of a process, sampled until it exits.
#[derive(Default, Clone, Copy)]
struct Sample {
    peak_rss_kib: u64,
    cpu_seconds: f64,
    wall_seconds: f64,
}

fn watch(child: &mut Child) -> Result<Sample> {
    let pid = child.id();
    let started = Instant::now();
    let ticks = 100.0; // USER_HZ
    let mut sample = Sample::default();
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                sample.peak_rss_kib = sample.peak_rss_kib.max(kib);
            }
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command name: utime and stime are the 12th and 13th.
            if let Some(rest) = stat.rsplit(')').next() {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                if fields.len() > 12 {
                    let utime: f64 = fields[11].parse().unwrap_or(0.0);
                    let stime: f64 = fields[12].parse().unwrap_or(0.0);
                    sample.cpu_seconds = (utime + stime) / ticks;
                }
            }
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sample.wall_seconds = started.elapsed().as_secs_f64();
    Ok(sample)
}

/// Time from starting cap-trace to "attached" on its stderr, in ms.
fn attach_time(bin: &Path) -> Result<f64> {
    let started = Instant::now();
    let mut child = cap_trace_run(bin, &["--verbose"])
        .args(["sleep", "0.2"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let stderr = child.stderr.take().unwrap();
    let mut attached = None;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.contains("attached to") && attached.is_none() {
            attached = Some(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    child.wait()?;
    attached.context("cap-trace never said it attached")
}

/// How the macro workload runs.
#[derive(Clone, Copy, PartialEq)]
enum MacroMode {
    /// Nothing attached.
    Bare,
    /// Empty programs on cap-trace's hooks (raw tracepoint and sys_exit): the floor.
    Floor,
    /// cap-trace following the container.
    Traced,
}

/// Passes of the macro workload per run: long enough (a few seconds) that the container's
/// start and /proc/uptime's 10 ms steps do not matter.
const MACRO_PASSES: u32 = 10;

/// One run of the macro workload: a container unpacks, copies, chowns and chmods a tree as root,
/// `MACRO_PASSES` times, on a tmpfs (on the container's overlay the disk's writeback makes runs
/// vary by more than the whole effect). Returns the seconds measured inside the container and,
/// when traced, the checks cap-trace counted.
fn macro_run(bin: &Path, mode: MacroMode, tree: &Path, round: usize) -> Result<(f64, u64)> {
    let name = format!(
        "cap-trace-bench-{}-{round}-{}",
        std::process::id(),
        mode as u8
    );
    let profile_path = std::env::temp_dir().join(format!("{name}.json"));
    let mut tracer = None;
    if mode == MacroMode::Traced {
        let mut child = Command::new(bin)
            .args([
                "--container",
                &name,
                "--wait",
                "60",
                "--format",
                "json",
                "--output",
            ])
            .arg(&profile_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // cap-trace says it is waiting once its programs are attached.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(line) => {
                    if line?.contains("waiting for container") {
                        break;
                    }
                }
                None => bail!("cap-trace exited before following the macro container"),
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
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
        .args(crate::tasks::PODMAN_LIMITS)
        .args(["--network", "none", "--tmpfs", "/w:size=256m"])
        .arg("-v")
        .arg(format!("{}:/data/tree.tar:ro", tree.display()))
        .arg(crate::tasks::DEMO_IMAGE)
        .args(["sh", "-c", &script])
        .stderr(Stdio::piped())
        .output()?;
    let checks = match tracer {
        Some(mut t) => {
            t.wait()?;
            let text = std::fs::read_to_string(&profile_path)
                .context("cap-trace wrote no profile for the macro container")?;
            let _ = std::fs::remove_file(&profile_path);
            let p: serde_json::Value = serde_json::from_str(&text)?;
            p["trace"]["total_checks"].as_u64().unwrap_or(0)
        }
        None => 0,
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
    Ok((elapsed[1] - elapsed[0], checks))
}

/// The macro benchmark's medians over its rounds.
struct Macro {
    rounds: usize,
    bare: f64,
    floor: f64,
    traced: f64,
    checks: u64,
    /// Every run, in order, for the report.
    runs: String,
    /// How far apart the untraced runs are, in % of their median.
    spread_pct: f64,
}

impl Macro {
    fn pct(&self, seconds: f64) -> f64 {
        100.0 * (seconds / self.bare - 1.0)
    }

    /// The target's verdict; no verdict when the untraced runs alone vary by far more than it.
    fn verdict(&self) -> String {
        if self.spread_pct > 10.0 {
            format!(
                "inconclusive: untraced runs alone vary by {:.0}%",
                self.spread_pct
            )
        } else if self.pct(self.traced) < 2.0 {
            "met".into()
        } else {
            "NOT met".into()
        }
    }

    fn summary(&self) -> String {
        format!(
            "- Macro benchmark (in a podman container, on a tmpfs: {MACRO_PASSES} passes of unpacking a \
             4,000-file tree, copying it with `cp -a`, `chown -R` and `chmod -R`, as root; {} capability \
             checks per run; median of {} runs): {:.2} s without a tracer, {:.2} s with empty programs on \
             cap-trace's hooks ({:+.1}%), {:.2} s traced ({:+.1}%). Each run, in order: {}.\n",
            self.checks,
            self.rounds,
            self.bare,
            self.floor,
            self.pct(self.floor),
            self.traced,
            self.pct(self.traced),
            self.runs
        )
    }
}

fn macro_bench(bin: &Path, rounds: usize) -> Result<Macro> {
    let tree = make_tree()?;
    let modes = [MacroMode::Bare, MacroMode::Floor, MacroMode::Traced];
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut checks = Vec::new();
    for round in 0..rounds {
        // Rotate the order, so that whatever a container leaves behind (podman's clean-up)
        // weighs on each configuration alike.
        for i in 0..modes.len() {
            let index = (i + round) % modes.len();
            let (seconds, n) = macro_run(bin, modes[index], &tree, round)?;
            times[index].push(seconds);
            if modes[index] == MacroMode::Traced {
                checks.push(n as f64);
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
        "without: {}; floor: {}; traced: {} s",
        list(&times[0]),
        list(&times[1]),
        list(&times[2])
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
        checks: median(&mut checks) as u64,
        runs,
        spread_pct,
    })
}

/// A tree of many small files (and some large ones) to unpack and copy.
fn make_tree() -> Result<PathBuf> {
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

struct Row {
    key: &'static str,
    label: &'static str,
    /// Medians of the runs' [`Timing`]s.
    ns: f64,
    low: f64,
}

pub fn bench(opts: Options) -> Result<()> {
    setup::install(setup::Scope::All)?;
    // The peer a user would pick instead.
    setup::debian_packages(&["bpftrace", "bpftool"])?;
    if !is_root() {
        bail!("the benchmark loads eBPF programs: run it as root");
    }
    let bin = build_release()?;
    crate::tasks::build_capbench()?;
    crate::tasks::ensure_demo_image()?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();

    // 1. The microbenchmark, configurations alternating within each round.
    let mut configs = configs();
    if !opts.only.is_empty() {
        if let Some(unknown) = opts.only.iter().find(|k| {
            !["programs", "macro"].contains(&k.as_str()) && !configs.iter().any(|c| c.key == *k)
        }) {
            let keys: Vec<_> = configs.iter().map(|c| c.key).collect();
            bail!(
                "unknown configuration {unknown:?}: pick from programs, macro, {}",
                keys.join(", ")
            );
        }
        if opts.only.iter().any(|k| k == "programs") {
            let b = breakdown(&bin, opts.rounds, opts.calls)?;
            println!("\n{}", b.table());
            println!(
                "above the empty programs: {:+.0} ns per check; cap_capable with {COLD_KIB} KiB written between checks: {:+.0} ns",
                b.above_floor(),
                b.cold_above_floor()
            );
        }
        if opts.only.iter().any(|k| k == "macro") {
            let mac = macro_bench(&bin, opts.rounds)?;
            println!(
                "\n- {}\n  target (less than 2%): {}",
                mac.summary().trim_start_matches("- ").trim_end(),
                mac.verdict()
            );
        }
        configs.retain(|c| opts.only.iter().any(|k| k == c.key));
        if configs.is_empty() {
            return Ok(());
        }
    }
    let mut samples: Vec<Vec<Timing>> = vec![Vec::new(); configs.len()];
    for round in 0..opts.rounds {
        // Rotate the order each round so no configuration always follows the same one.
        for i in 0..configs.len() {
            let index = (i + round) % configs.len();
            let timing = run_once(&configs[index], &bin, opts.calls)?;
            samples[index].push(timing);
        }
        println!("bench: round {}/{} done", round + 1, opts.rounds);
    }
    let rows: Vec<Row> = configs
        .iter()
        .zip(samples.iter_mut())
        .map(|(c, s)| Row {
            key: c.key,
            label: c.label,
            ns: median(&mut s.iter().map(|t| t.ns).collect::<Vec<_>>()),
            low: median(&mut s.iter().map(|t| t.low).collect::<Vec<_>>()),
        })
        .collect();
    if !opts.only.is_empty() {
        print_partial(&rows, &samples);
        return Ok(());
    }
    let ns = |key: &str| rows.iter().find(|r| r.key == key).unwrap().ns;
    let low = |key: &str| rows.iter().find(|r| r.key == key).unwrap().low;
    let base = ns("base");
    let base_low = low("base");

    // 2. Exact counts: the tracer itself counts the checks the loop made.
    let (default_profile, _, default_sample) = profile(&bin, &[], 5_000_000, 1)?;
    let setgid_checks: u64 = default_profile["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cap"] == "SETGID" && c["syscall"] == "setgroups")
        .map(|c| c["count"].as_u64().unwrap_or(0))
        .sum();
    let default_lost = default_profile["trace"]["losses"]["ring_buffer"]
        .as_u64()
        .unwrap_or(0);

    // 2b. Where the time goes, as the kernel accounts it.
    let programs = breakdown(&bin, opts.rounds.min(3), opts.calls)?;

    // 3. Streaming mode at full rate (two threads): events per second and losses.
    let mut stream = Vec::new();
    for ring in ["1M", "16M"] {
        let (p, seconds, sample) =
            profile(&bin, &["--stream", "--ring-buffer", ring], 4_000_000, 2)?;
        let events = p["trace"]["total_checks"].as_u64().unwrap_or(0);
        let lost = p["trace"]["losses"]["ring_buffer"].as_u64().unwrap_or(0);
        stream.push((ring, events, lost, events as f64 / seconds, sample));
    }

    // 4. Start-up.
    let mut attach: Vec<f64> = (0..5).map(|_| attach_time(&bin)).collect::<Result<_>>()?;
    let attach_ms = median(&mut attach);

    // 5. The macro benchmark.
    let mac = macro_bench(&bin, opts.rounds)?;

    // Report. Overheads and ratios come from the quickest tenth of each run (see `Timing`); the
    // whole runs' figures are shown beside them.
    let floor_of = |key: &str| low(key) - base_low;
    let mut table = String::new();
    table.push_str(
        "| configuration | ns per check | overhead (ns) | quickest tenth: ns per check | overhead (ns) | vs. matching floor |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        let overhead = r.low - base_low;
        let versus = match r.key {
            "ct-raw" => format!(
                "{:.2}x of raw+sys_exit floor, {:.2}x of raw floor",
                overhead / floor_of("floor-raw-exit"),
                overhead / floor_of("floor-raw")
            ),
            "ct-classic" => format!("{:.2}x of classic floor", overhead / floor_of("floor-tp")),
            _ => String::new(),
        };
        let signed = |v: f64| {
            if r.key == "base" {
                "-".to_string()
            } else {
                format!("{v:+.0}")
            }
        };
        table.push_str(&format!(
            "| {} | {:.0} | {} | {:.0} | {} | {} |\n",
            r.label,
            r.ns,
            signed(r.ns - base),
            r.low,
            signed(overhead),
            versus
        ));
    }
    let mut stream_table = String::from(
        "| ring buffer | checks | lost | events/s | cap-trace CPU | cap-trace peak RSS |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (ring, events, lost, rate, sample) in &stream {
        stream_table.push_str(&format!(
            "| {ring} | {events} | {lost} | {:.0} | {:.0}% | {:.1} MiB |\n",
            rate,
            100.0 * sample.cpu_seconds / sample.wall_seconds,
            sample.peak_rss_kib as f64 / 1024.0
        ));
    }
    let rate = 5_000_000.0 / default_sample.wall_seconds;
    let summary = format!(
        "- Checks counted by cap-trace for 5,000,000 setgroups calls: {setgid_checks} (ring-buffer losses: {default_lost}).\n\
         - Default mode while tracing about {:.2} M checks/s: cap-trace used {:.0}% of a CPU, peak RSS {:.1} MiB.\n\
         - Start to attached (process start to the `attached` line, median of 5): {attach_ms:.0} ms.\n\
         {}",
        rate / 1e6,
        100.0 * default_sample.cpu_seconds / default_sample.wall_seconds,
        default_sample.peak_rss_kib as f64 / 1024.0,
        mac.summary()
    );
    // Each target of the design, met or not, from the figures above.
    let ct = low("ct-raw") - base_low;
    let floor_exit = floor_of("floor-raw-exit");
    let bt_agg = low("bt-agg") - base_low;
    let ct_whole = ns("ct-raw") - base;
    let floor_whole = ns("floor-raw-exit") - base;
    let peak_mib = default_sample.peak_rss_kib as f64 / 1024.0;
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    // A ratio to the floor means nothing when the floor's own overhead is within what the
    // no-tracer runs alone vary by.
    let base_spread = {
        let runs = &samples[rows.iter().position(|r| r.key == "base").unwrap()];
        runs.iter().map(|t| t.low).fold(0.0, f64::max)
            - runs.iter().map(|t| t.low).fold(f64::INFINITY, f64::min)
    };
    let ratio_mark = |ok: bool| {
        if floor_exit < base_spread {
            format!(
                "inconclusive: the floor's {floor_exit:+.0} ns is within the {base_spread:.0} ns the no-tracer runs alone vary by"
            )
        } else {
            mark(ok).to_string()
        }
    };
    let targets = format!(
        "| target | measured | |\n|---|---|---|\n\
         | default-mode overhead at most 1.2x the floor of its hooks | {:.2}x ({ct:+.0} ns vs {floor_exit:+.0} ns; whole runs: {:.2}x, {ct_whole:+.0} vs {floor_whole:+.0} ns) | {} |\n\
         | the same, with the programs' cost as the kernel accounts it | {:.2}x ({:+.0} ns of program work on top of the floor's {floor_exit:+.0} ns) | {} |\n\
         | below bpftrace's map aggregation | {ct:+.0} ns vs {bt_agg:+.0} ns | {} |\n\
         | no lost event in default mode at full rate | {default_lost} lost, {setgid_checks} of 5000000 counted | {} |\n\
         | attached in under 300 ms | {attach_ms:.0} ms | {} |\n\
         | userspace RSS under 30 MB | {peak_mib:.1} MiB | {} |\n\
         | macro workload slowed by less than 2% | {:+.1}% (empty programs on the same hooks: {:+.1}%) | {} |\n",
        ct / floor_exit,
        ct_whole / floor_whole,
        ratio_mark(ct <= 1.2 * floor_exit),
        1.0 + programs.above_floor() / floor_exit,
        programs.above_floor(),
        ratio_mark(programs.above_floor() <= 0.2 * floor_exit),
        mark(ct < bt_agg),
        mark(default_lost == 0 && setgid_checks == 5_000_000),
        mark(attach_ms < 300.0),
        mark(peak_mib < 30.0),
        mac.pct(mac.traced),
        mac.pct(mac.floor),
        mac.verdict(),
    );
    let report = format!(
        "# Benchmarks\n\n\
         Reproduce with `sudo cargo xtask bench` (release build; about {} minutes). Figures below: {kernel}, {cpu}, \
         {} rounds of {} calls each, configurations alternating within each round, medians. Each run is timed \
         in 100 slices; \"quickest tenth\" is the 10th percentile of a run's slices, which leaves out most of what \
         a shared machine adds at random (the whole runs' averages are shown too). Overheads and ratios in the \
         targets use the quickest tenth.\n\n\
         ## Targets\n\n{targets}\n\
         ## Microbenchmark: a capability check per syscall\n\n\
         `capbench` calls `setgroups(0, NULL)` in a loop as root: one CAP_SETGID check (ns_capable_setid) per call. \
         The floor is an empty BPF program on the same hook(s): what attaching anything costs. cap-trace's default \
         mode uses two hooks (the raw `capability:cap_capable` tracepoint and `raw_syscalls:sys_exit`, which follows \
         how syscalls with a denied check end), so its matching floor has empty programs on both.\n\n{table}\n\
         {summary}\n\
         ## Where a repeated check's time goes\n\n\
         Wall-clock medians on a shared virtual machine move by tens of ns from run to run, so the programs' own \
         cost is also read from the kernel's accounting (`kernel.bpf_stats_enabled`, `bpftool prog show`: run time \
         per run, median of {} rounds of {} calls). The fast path of a repeated check is stopped at each point in \
         turn (`cap-trace run --cost-cut N`); each row adds one part. The accounting adds two clock reads to every \
         run, the same in every row: the differences are what each part costs. In the tight loop everything the \
         programs touch stays in the caches; a real workload does work between its checks, which the last columns \
         imitate (capbench writes one byte per cache line of a 1 MiB buffer between calls, {} calls): there a \
         repeat's cost is mostly cache misses.\n\n{}\n\
         Everything cap-trace's programs do per repeated check, above empty programs on the same hooks: \
         {:+.0} ns in the tight loop; the cap_capable program's part with 1 MiB written between checks: {:+.0} ns.\n\n\
         ## Streaming mode (every check through the ring buffer)\n\n\
         Two threads of capbench at full rate, 4,000,000 checks.\n\n{stream_table}\n",
        (opts.rounds * (9 * 3 + 18) + opts.rounds.min(3) * 6 * 4 + 60) / 60,
        opts.rounds,
        opts.calls,
        opts.rounds.min(3),
        opts.calls,
        opts.calls / 20,
        programs.table(),
        programs.above_floor(),
        programs.cold_above_floor()
    );
    println!("\n{report}");
    std::fs::write(root().join("BENCHMARKS.md"), &report)?;
    println!("bench: wrote BENCHMARKS.md");
    Ok(())
}

/// The table of a partial run (`--only`): medians, every run, and the overheads and ratios
/// that the configurations present allow.
fn print_partial(rows: &[Row], samples: &[Vec<Timing>]) {
    let find = |key: &str| rows.iter().find(|r| r.key == key);
    let base = find("base");
    println!();
    for (row, runs) in rows.iter().zip(samples) {
        let overhead = base
            .map(|b| format!("{:+.0} {:+.0}", row.ns - b.ns, row.low - b.low))
            .unwrap_or_default();
        let runs: Vec<String> = runs
            .iter()
            .map(|t| format!("{:.0}/{:.0}", t.ns, t.low))
            .collect();
        println!(
            "{:>16} {:>7.0} ns, quickest tenth {:>7.0} ns {:>10}   runs: {}",
            row.key,
            row.ns,
            row.low,
            overhead,
            runs.join(" ")
        );
    }
    if let (Some(b), Some(ct), Some(floor)) = (base, find("ct-raw"), find("floor-raw-exit")) {
        println!(
            "ct-raw overhead: {:.2}x of the raw+sys_exit floor (quickest tenth; whole runs: {:.2}x)",
            (ct.low - b.low) / (floor.low - b.low),
            (ct.ns - b.ns) / (floor.ns - b.ns)
        );
    }
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
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
