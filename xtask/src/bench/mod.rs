//! `cargo xtask bench`: what tracing costs the traced workload, against the floor (an empty BPF
//! program on the same hooks) and against the tool a user would pick instead (bpftrace).
//! Configurations alternate round by round so that machine drift spreads over all of them.
//! Prints a table and writes BENCHMARKS.md.

mod breakdown;
mod bystander;
mod denials;
mod macrobench;
mod markdown;
mod micro;
mod tracer;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::bench::breakdown::{COLD_KIB, breakdown};
use crate::bench::bystander::bystanders;
use crate::bench::denials::denials;
use crate::bench::macrobench::macro_bench;
use crate::bench::markdown::{Figures, Machine, Row};
use crate::bench::micro::{Config, Timing, configs, median, run_once};
use crate::bench::tracer::{attach_time, profile};
use crate::setup;
use crate::util::{build_capbench, build_release, ensure_demo_image, is_root, root};

pub(crate) struct Options {
    pub rounds: usize,
    pub calls: u64,
    /// Keys of the only configurations to run (empty: the whole benchmark).
    pub only: Vec<String>,
}

pub(crate) fn bench(opts: Options) -> Result<()> {
    let (bin, machine) = prepare()?;
    let mut configs = configs();
    if !opts.only.is_empty() {
        only(&opts, &bin, &mut configs)?;
        if configs.is_empty() {
            return Ok(());
        }
    }
    let (rows, samples) = micro(&configs, &bin, &opts)?;
    if !opts.only.is_empty() {
        print_partial(&rows, &samples);
        return Ok(());
    }
    let figures = measure(&bin, &opts, rows, samples)?;
    let report = markdown::report(&figures, &machine, opts.rounds, opts.calls);
    println!("\n{report}");
    let path = root().join("BENCHMARKS.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(
        &path,
        format!("{}\n{}", report.trim_end(), by_hand(&existing)),
    )?;
    println!("bench: wrote BENCHMARKS.md");
    Ok(())
}

/// The heading from which BENCHMARKS.md holds figures measured by hand (long runs of the
/// end-to-end tests): a new report keeps that part as it is.
const BY_HAND: &str = "\n## Measured by hand";

/// The part of `existing` measured by hand, from its heading on ("" if it has none).
fn by_hand(existing: &str) -> &str {
    existing.find(BY_HAND).map_or("", |i| &existing[i..])
}

/// Installs and builds what the benchmark runs, and names the machine.
fn prepare() -> Result<(PathBuf, Machine)> {
    setup::install(setup::Scope::All)?;
    // The peer a user would pick instead.
    setup::debian_packages(&["bpftrace", "bpftool"])?;
    if !is_root() {
        bail!("the benchmark loads eBPF programs: run it as root");
    }
    let bin = build_release()?;
    build_capbench()?;
    ensure_demo_image()?;
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
    Ok((bin, Machine { kernel, cpu }))
}

/// The parts `--only` runs besides the microbenchmark's configurations.
const PARTS: [&str; 4] = ["programs", "macro", "bystanders", "denials"];

/// `--only KEYS`: refuses unknown keys, runs the breakdown (`programs`), the macro benchmark
/// (`macro`), the bystanders (`bystanders`) and the followed denials (`denials`) when asked, and
/// keeps only the microbenchmark configurations asked for.
fn only(opts: &Options, bin: &Path, configs: &mut Vec<Config>) -> Result<()> {
    if let Some(unknown) = opts
        .only
        .iter()
        .find(|k| !PARTS.contains(&k.as_str()) && !configs.iter().any(|c| c.key == *k))
    {
        let keys: Vec<_> = configs.iter().map(|c| c.key).collect();
        bail!(
            "unknown configuration {unknown:?}: pick from {}, {}",
            PARTS.join(", "),
            keys.join(", ")
        );
    }
    let asked = |part: &str| opts.only.iter().any(|k| k == part);
    if asked("programs") {
        let b = breakdown(bin, opts.rounds, opts.calls)?;
        println!("\n{}", b.table());
        println!(
            "above the empty program: {:+.0} ns per check (outcomes on sys_exit, above both empty programs: {:+.0} ns); cap_capable with {COLD_KIB} KiB written between checks: {:+.0} ns",
            b.above_floor(),
            b.above_floor_sys_exit(),
            b.cold_above_floor()
        );
    }
    if asked("bystanders") {
        let b = bystanders(bin, opts.rounds, opts.calls)?;
        println!("\n{}", b.table());
    }
    if asked("denials") {
        let d = denials(bin, opts.rounds, opts.calls / 10)?;
        println!("\n{}", d.table());
    }
    if asked("macro") {
        let mac = macro_bench(bin, opts.rounds)?;
        println!(
            "\n- {}\n  target (less than 2%): {}",
            mac.summary().trim_start_matches("- ").trim_end(),
            mac.verdict(None)
        );
    }
    configs.retain(|c| opts.only.iter().any(|k| k == c.key));
    Ok(())
}

/// The microbenchmark: every configuration once a round, the order rotated each round so
/// that none always follows the same one. Returns each configuration's medians and runs.
fn micro(configs: &[Config], bin: &Path, opts: &Options) -> Result<(Vec<Row>, Vec<Vec<Timing>>)> {
    let mut samples: Vec<Vec<Timing>> = vec![Vec::new(); configs.len()];
    for round in 0..opts.rounds {
        for i in 0..configs.len() {
            let index = (i + round) % configs.len();
            let timing = run_once(&configs[index], bin, opts.calls)?;
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
    Ok((rows, samples))
}

/// The rest of the whole benchmark, after the microbenchmark's rounds.
fn measure(
    bin: &Path,
    opts: &Options,
    rows: Vec<Row>,
    samples: Vec<Vec<Timing>>,
) -> Result<Figures> {
    // Exact counts: the tracer itself counts the checks the loop made.
    let (default_profile, _, default_sample) = profile(bin, &[], 5_000_000, 1)?;
    let default_hook = default_profile["trace"]["hook"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
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

    // Where the time goes, as the kernel accounts it.
    let programs = breakdown(bin, opts.rounds.min(3), opts.calls)?;

    // Streaming mode at full rate (two threads): events per second and losses.
    let mut stream = Vec::new();
    for ring in ["1M", "16M"] {
        let (p, seconds, sample) =
            profile(bin, &["--stream", "--ring-buffer", ring], 4_000_000, 2)?;
        let events = p["trace"]["total_checks"].as_u64().unwrap_or(0);
        let lost = p["trace"]["losses"]["ring_buffer"].as_u64().unwrap_or(0);
        stream.push((ring, events, lost, events as f64 / seconds, sample));
    }

    // Start-up.
    let mut attach: Vec<f64> = (0..5).map(|_| attach_time(bin)).collect::<Result<_>>()?;
    let attach_ms = median(&mut attach);

    // Processes cap-trace does not trace, and denials it follows.
    let bystanders = bystanders(bin, opts.rounds, opts.calls)?;
    let denials = denials(bin, opts.rounds, opts.calls / 10)?;

    // The macro benchmark.
    let mac = macro_bench(bin, opts.rounds)?;
    Ok(Figures {
        rows,
        samples,
        setgid_checks,
        default_lost,
        default_sample,
        default_hook,
        programs,
        stream,
        attach_ms,
        bystanders,
        denials,
        mac,
    })
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
    for (ct, floor) in [("ct-raw", "floor-raw"), ("ct-raw-exit", "floor-raw-exit")] {
        if let (Some(b), Some(ct), Some(floor)) = (base, find(ct), find(floor)) {
            println!(
                "{} overhead: {:.2}x of the {} floor (quickest tenth; whole runs: {:.2}x)",
                ct.key,
                (ct.low - b.low) / (floor.low - b.low),
                floor.key,
                (ct.ns - b.ns) / (floor.ns - b.ns)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_measured_by_hand_is_kept() {
        let existing = "# Benchmarks\n\nold figures\n\n## Measured by hand\n\nRSS 36 MiB\n";
        assert_eq!(by_hand(existing), "\n## Measured by hand\n\nRSS 36 MiB\n");
        assert_eq!(by_hand("# Benchmarks\n\nold figures\n"), "");
    }
}
