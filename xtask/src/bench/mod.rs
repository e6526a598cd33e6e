//! `cargo xtask bench`: what tracing costs the traced workload, against the floor (an empty BPF
//! program on the same hooks) and against the tool a user would pick instead (bpftrace).
//! Configurations alternate round by round so that machine drift spreads over all of them.
//! Prints a table and writes BENCHMARKS.md.

mod breakdown;
mod macrobench;
mod micro;
mod tracer;

use anyhow::{Result, bail};

use crate::bench::breakdown::{COLD_KIB, breakdown};
use crate::bench::macrobench::macro_bench;
use crate::bench::micro::{Timing, configs, median, run_once};
use crate::bench::tracer::{attach_time, profile};
use crate::setup;
use crate::util::{build_capbench, build_release, ensure_demo_image, is_root, root};

pub(crate) struct Options {
    pub rounds: usize,
    pub calls: u64,
    /// Keys of the only configurations to run (empty: the whole benchmark).
    pub only: Vec<String>,
}

struct Row {
    key: &'static str,
    label: &'static str,
    /// Medians of the runs' [`Timing`]s.
    ns: f64,
    low: f64,
}

pub(crate) fn bench(opts: Options) -> Result<()> {
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
