//! cap-trace itself under the microbenchmark: its profile of the loop (exact counts, losses in
//! streaming mode), its peak RSS and CPU time meanwhile, and the time from its start to its
//! programs being attached.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::micro::{cap_trace_run, capbench};
use crate::util::root;

/// Peak RSS and CPU time of a process, sampled until it exits.
#[derive(Default, Clone, Copy)]
pub(super) struct Sample {
    pub(super) peak_rss_kib: u64,
    pub(super) cpu_seconds: f64,
    pub(super) wall_seconds: f64,
}

pub(super) fn watch(child: &mut Child) -> Result<Sample> {
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

/// Reads `child`'s stderr until a line contains `needle` (cap-trace saying it is ready), then
/// keeps draining it in the background.
pub(super) fn wait_for_line(child: &mut Child, needle: &str) -> Result<()> {
    let mut lines = BufReader::new(child.stderr.take().context("stderr not piped")?).lines();
    loop {
        match lines.next() {
            Some(line) => {
                if line?.contains(needle) {
                    break;
                }
            }
            None => bail!("cap-trace exited before saying {needle:?}"),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Ok(())
}

/// Time from starting cap-trace to "attached" on its stderr, in ms.
pub(super) fn attach_time(bin: &Path) -> Result<f64> {
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

/// A cap-trace profile of the microbenchmark (counts, losses).
pub(super) fn profile(
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
