//! The figures the benchmark gathers, and BENCHMARKS.md written from them: the targets met or
//! not, the microbenchmark's table, bystanders, followed denials, the breakdown of a repeated
//! check, streaming mode.
//! Overheads and ratios come from the quickest tenth of each run (see `Timing`); the whole
//! runs' figures are shown beside them.

use crate::bench::breakdown::Breakdown;
use crate::bench::bystander::Bystanders;
use crate::bench::denials::Denials;
use crate::bench::macrobench::Macro;
use crate::bench::micro::{Timing, signed};
use crate::bench::tracer::Sample;

/// A configuration's medians over the rounds.
pub(super) struct Row {
    pub(super) key: &'static str,
    pub(super) label: &'static str,
    /// Medians of the runs' [`Timing`]s.
    pub(super) ns: f64,
    pub(super) low: f64,
}

/// The machine the figures come from.
pub(super) struct Machine {
    pub(super) kernel: String,
    pub(super) cpu: String,
}

/// Everything the report is written from.
pub(super) struct Figures {
    pub(super) rows: Vec<Row>,
    /// Every run of each configuration, in the order of `rows`.
    pub(super) samples: Vec<Vec<Timing>>,
    /// The loop's SETGID checks as cap-trace counted them, and what its ring buffer lost.
    pub(super) setgid_checks: u64,
    pub(super) default_lost: u64,
    /// cap-trace's own footprint while it counted them.
    pub(super) default_sample: Sample,
    /// The default mode's hook as its profile names it (says how outcomes were followed).
    pub(super) default_hook: String,
    pub(super) programs: Breakdown,
    /// Streaming mode: (ring buffer size, events, lost, events per second, footprint).
    pub(super) stream: Vec<(&'static str, u64, u64, f64, Sample)>,
    pub(super) attach_ms: f64,
    pub(super) bystanders: Bystanders,
    pub(super) denials: Denials,
    pub(super) mac: Macro,
}

impl Figures {
    /// A configuration's median ns per check over whole runs.
    fn ns(&self, key: &str) -> f64 {
        self.rows.iter().find(|r| r.key == key).unwrap().ns
    }

    /// The same over each run's quickest tenth.
    fn low(&self, key: &str) -> f64 {
        self.rows.iter().find(|r| r.key == key).unwrap().low
    }

    /// Whether the default mode followed outcomes by task work here (else on sys_exit).
    fn task_work(&self) -> bool {
        self.default_hook.contains("task work")
    }

    /// The floor configuration of the default mode's hooks.
    fn default_floor(&self) -> &'static str {
        if self.task_work() {
            "floor-raw"
        } else {
            "floor-raw-exit"
        }
    }
}

pub(super) fn report(f: &Figures, machine: &Machine, rounds: usize, calls: u64) -> String {
    let Machine { kernel, cpu } = machine;
    let table = micro_table(f);
    let stream_table = stream_table(f);
    let summary = summary(f);
    let targets = targets(f);
    format!(
        "# Benchmarks\n\n\
         Reproduce with `sudo cargo xtask bench` (release build; about {} minutes; `--only KEYS` runs parts of it). \
         Figures below: {kernel}, {cpu}, \
         {} rounds of {} calls each, configurations alternating within each round, medians. Each run is timed \
         in 100 slices; \"quickest tenth\" is the 10th percentile of a run's slices, which leaves out most of what \
         a shared machine adds at random (the whole runs' averages are shown too). Overheads and ratios in the \
         targets use the quickest tenth.\n\n\
         ## Targets\n\n{targets}\n\
         ## Microbenchmark: a capability check per syscall (`--only base,floor-raw,ct-raw,...`)\n\n\
         `capbench` calls `setgroups(0, NULL)` in a loop as root: one CAP_SETGID check (ns_capable_setid) per call. \
         The floor is an empty BPF program on the same hook(s): what attaching anything costs. cap-trace's default \
         mode attaches one program, on the raw `capability:cap_capable` tracepoint, where the kernel has BPF task works \
         (Linux 6.18+, this machine: {}): a denied check's outcome is then read by a task work when its thread \
         returns to user space. On older kernels (and with `--outcome-hook sys-exit`) it also attaches \
         `raw_syscalls:sys_exit`, which every syscall of every process on the machine then pays for: the `-exit` rows.\n\n{table}\n\
         {summary}\n\
         ## Bystanders: processes cap-trace does not trace (`--only bystanders`)\n\n\
         In staging cap-trace runs beside everything else on the node. Here capbench runs in the benchmark's own cgroup, \
         which is not traced, as a syscall loop (`getpid`, no capability check) and a capability-check loop \
         (`setgroups`), {} calls each, while cap-trace traces an idle container beside it.\n\n{}\n\
         ## Followed denials (`--only denials`)\n\n\
         capbench as nobody, {} calls per run: `setgroups` denied CAP_SETGID and failing with EPERM every time \
         (with task works, once a capability alone denied made a syscall fail, the same thread name's same syscall is \
         not followed again: \"needed but missing\" is settled), and `chmod g+s` on its own file of a group it is not \
         in, denied CAP_FSETID and succeeding every time (each followed: one task work per call, about a microsecond \
         on a virtual machine, where its self-interrupt is costly).\n\n{}\n\
         ## Where a repeated check's time goes (`--only programs`)\n\n\
         Wall-clock medians on a shared virtual machine move by tens of ns from run to run, so the programs' own \
         cost is also read from the kernel's accounting (`kernel.bpf_stats_enabled`, `bpftool prog show`: run time \
         per run, median of {} rounds of {} calls). The fast path of a repeated check is stopped at each point in \
         turn (`cap-trace run --cost-cut N`); each row adds one part. The accounting adds two clock reads to every \
         run, the same in every row: the differences are what each part costs. In the tight loop everything the \
         programs touch stays in the caches; a real workload does work between its checks, which the 1 MiB columns \
         imitate (capbench writes one byte per cache line of a 1 MiB buffer between calls, {} calls): there a \
         repeat's cost is mostly cache misses.\n\n{}\n\
         Everything cap-trace's program does per repeated check, above an empty program on the same hook: \
         {:+.0} ns in the tight loop, {:+.0} ns with 1 MiB written between checks; with outcomes on sys_exit, both \
         programs above empty programs on both hooks: {:+.0} ns in the tight loop.\n\n\
         ## Streaming mode (every check through the ring buffer)\n\n\
         Two threads of capbench at full rate, 4,000,000 checks.\n\n{stream_table}\n",
        (rounds * (10 * 3 + 18 + 12 + 8) + rounds.min(3) * 7 * 4 + 60) / 60,
        rounds,
        calls,
        f.default_hook,
        calls,
        f.bystanders.table(),
        calls / 10,
        f.denials.table(),
        rounds.min(3),
        calls,
        calls / 20,
        f.programs.table(),
        f.programs.above_floor(),
        f.programs.cold_above_floor(),
        f.programs.above_floor_sys_exit()
    )
}

/// The microbenchmark: each configuration's ns per check and overhead, whole runs and
/// quickest tenth, and cap-trace's ratio to the floor that matches its hooks.
fn micro_table(f: &Figures) -> String {
    let low = |key: &str| f.low(key);
    let base = f.ns("base");
    let base_low = low("base");
    let floor_of = |key: &str| low(key) - base_low;
    let mut table = String::new();
    table.push_str(
        "| configuration | ns per check | overhead (ns) | quickest tenth: ns per check | overhead (ns) | vs. matching floor |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for r in &f.rows {
        let overhead = r.low - base_low;
        let versus = match r.key {
            "ct-raw" => format!("{:.2}x of raw floor", overhead / floor_of("floor-raw")),
            "ct-raw-exit" => format!(
                "{:.2}x of raw+sys_exit floor",
                overhead / floor_of("floor-raw-exit")
            ),
            "ct-classic" => format!("{:.2}x of classic floor", overhead / floor_of("floor-tp")),
            _ => String::new(),
        };
        let signed = |v: f64| signed(r.key == "base", v);
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
    table
}

/// Streaming mode: events, losses and cap-trace's footprint per ring-buffer size.
fn stream_table(f: &Figures) -> String {
    let mut stream_table = String::from(
        "| ring buffer | checks | lost | events/s | cap-trace CPU | cap-trace peak RSS |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (ring, events, lost, rate, sample) in &f.stream {
        stream_table.push_str(&format!(
            "| {ring} | {events} | {lost} | {:.0} | {:.0}% | {:.1} MiB |\n",
            rate,
            100.0 * sample.cpu_seconds / sample.wall_seconds,
            sample.peak_rss_kib as f64 / 1024.0
        ));
    }
    stream_table
}

/// Exact counts, the default mode's footprint, start-up time, a followed denial and the macro
/// benchmark.
fn summary(f: &Figures) -> String {
    let Figures {
        setgid_checks,
        default_lost,
        attach_ms,
        ..
    } = f;
    let rate = 5_000_000.0 / f.default_sample.wall_seconds;
    let (task_work, sys_exit) = f.denials.followed();
    format!(
        "- Checks counted by cap-trace for 5,000,000 setgroups calls: {setgid_checks} (ring-buffer losses: {default_lost}).\n\
         - Default mode while tracing about {:.2} M checks/s: cap-trace used {:.0}% of a CPU, peak RSS {:.1} MiB.\n\
         - Start to attached (process start to the `attached` line, median of 5): {attach_ms:.0} ms.\n\
         - A denial followed to its syscall's end (a denied check whose syscall succeeds anyway, every call): \
         {task_work:+.0} ns per call with outcomes by task work, {sys_exit:+.0} ns with outcomes on sys_exit \
         (which every other syscall on the machine pays for meanwhile; see the bystanders).\n\
         {}",
        rate / 1e6,
        100.0 * f.default_sample.cpu_seconds / f.default_sample.wall_seconds,
        f.default_sample.peak_rss_kib as f64 / 1024.0,
        f.mac.summary()
    )
}

/// Each target of the design, met or not, from the figures.
fn targets(f: &Figures) -> String {
    let ns = |key: &str| f.ns(key);
    let low = |key: &str| f.low(key);
    let base = ns("base");
    let base_low = low("base");
    let floor_of = |key: &str| low(key) - base_low;
    let &Figures {
        setgid_checks,
        default_lost,
        attach_ms,
        ..
    } = f;
    let floor_key = f.default_floor();
    let ct = low("ct-raw") - base_low;
    let floor = floor_of(floor_key);
    let bt_agg = low("bt-agg") - base_low;
    let ct_whole = ns("ct-raw") - base;
    let floor_whole = ns(floor_key) - base;
    let peak_mib = f.default_sample.peak_rss_kib as f64 / 1024.0;
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    // A ratio to the floor means nothing when the floor's own overhead is within what the
    // no-tracer runs alone vary by.
    let base_spread = {
        let runs = &f.samples[f.rows.iter().position(|r| r.key == "base").unwrap()];
        runs.iter().map(|t| t.low).fold(0.0, f64::max)
            - runs.iter().map(|t| t.low).fold(f64::INFINITY, f64::min)
    };
    let ratio_mark = |ok: bool| {
        if floor < base_spread {
            format!(
                "inconclusive: the floor's {floor:+.0} ns is within the {base_spread:.0} ns the no-tracer runs alone vary by"
            )
        } else {
            mark(ok).to_string()
        }
    };
    let (getpid, setgroups) = f.bystanders.task_work_overhead();
    let (getpid_exit, setgroups_exit) = f.bystanders.sys_exit_overhead();
    let (_, setgroups_floor) = f.bystanders.floor_overhead();
    // Entering an empty program on the hook, which the kernel does not account: the larger of
    // the microbenchmark's two readings of the floor (never below zero).
    let entry_ns = floor.max(floor_whole).max(0.0);
    let program_ns = f.programs.whole_cold();
    let accounted = f.mac.accounted_pct(program_ns, entry_ns);
    let programs = f.programs.above_floor();
    format!(
        "| target | measured | |\n|---|---|---|\n\
         | default mode, per repeated check: at most +100 ns over no tracer (tight loop) | {ct:+.0} ns (whole runs: {ct_whole:+.0} ns); with outcomes on sys_exit: {:+.0} ns | {} |\n\
         | counting every check exactly, nothing lost, at full rate | {default_lost} lost, {setgid_checks} of 5000000 counted | {} |\n\
         | below bpftrace's map aggregation | {ct:+.0} ns vs {bt_agg:+.0} ns | {} |\n\
         | bystanders (untraced cgroup, cap-trace tracing a container beside it): a syscall pays under 5 ns | getpid {getpid:+.1} ns (outcomes on sys_exit: {getpid_exit:+.1} ns) | {} |\n\
         | bystanders: a capability check pays under 30 ns | setgroups {setgroups:+.1} ns (an empty program on the same hook: {setgroups_floor:+.1} ns; outcomes on sys_exit: {setgroups_exit:+.1} ns) | {} |\n\
         | default-mode overhead at most 1.2x the floor of its hooks | {:.2}x ({ct:+.0} ns vs {floor:+.0} ns; whole runs: {:.2}x, {ct_whole:+.0} vs {floor_whole:+.0} ns) | {} |\n\
         | the same, with the program's cost as the kernel accounts it | {:.2}x ({programs:+.0} ns of program work on top of the floor's {floor:+.0} ns) | {} |\n\
         | attached in under 300 ms | {attach_ms:.0} ms | {} |\n\
         | userspace RSS under 30 MB | {peak_mib:.1} MiB | {} |\n\
         | macro workload slowed by less than 2%, no outcome lost | {:+.1}% (an empty program on the same hook: {:+.1}%; outcomes on sys_exit: {:+.1}%), {} lost; as the kernel accounts it: {accounted:+.1}% (each check's run of the program, {program_ns:.0} ns with caches cold and the accounting included, plus {entry_ns:.0} ns to enter a program on the hook) | {} |\n",
        low("ct-raw-exit") - base_low,
        mark(ct <= 100.0),
        mark(default_lost == 0 && setgid_checks == 5_000_000),
        mark(ct < bt_agg),
        mark(getpid < 5.0),
        mark(setgroups < 30.0),
        ct / floor,
        ct_whole / floor_whole,
        ratio_mark(ct <= 1.2 * floor),
        1.0 + programs / floor,
        ratio_mark(programs <= 0.2 * floor),
        mark(attach_ms < 300.0),
        mark(peak_mib < 30.0),
        f.mac.pct(f.mac.traced),
        f.mac.pct(f.mac.floor),
        f.mac.pct(f.mac.traced_sys_exit),
        f.mac.lost,
        f.mac.verdict(Some(accounted)),
    )
}
