//! Command-line interface definition.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::exit;
use crate::kernel::{OutcomeChoice, OutcomeHook, ProbeChoice};
use crate::linux::hook::TracepointFlavor;

const ABOUT: &str = "Learn which Linux capabilities a workload really needs.";

fn long_about() -> String {
    format!(
        "{LONG_ABOUT}\n\nNeeds root (or {}), kernel BTF and cgroup v2.",
        crate::error::tracing_privileges()
    )
}

const LONG_ABOUT: &str = "\
Learn which Linux capabilities a workload really needs.

cap-trace watches every capability check the kernel makes (cap_capable) for the processes
you point it at, with eBPF, and prints the smallest set to run them with:
--cap-drop=ALL --cap-add=... It tells enforcement from probing (the kernel asks for
SYS_ADMIN without audit on nearly every mmap; that is not a need), matches denied checks
to how their syscall ended, and prefers narrow capabilities over broad ones
(DAC_READ_SEARCH over DAC_OVERRIDE, PERFMON over SYS_ADMIN).";

const EXAMPLES: &str = "\
Examples:
  cap-trace --container web                       # until the container exits
  cap-trace --container web --container db --duration 10m
  cap-trace --all-containers --duration 1h --format json --output fleet.json
  cap-trace --pid 4242                             # a running process, until it exits
  cap-trace --unit nginx --duration 1h --format systemd
  cap-trace run -- chown nobody /srv/data
  cap-trace run --format json --output app.json -- ./app --selftest";

/// The examples, then the exit codes (from `error::exit::TABLE`).
fn after_help() -> String {
    format!("{EXAMPLES}\n\n{}", exit::help())
}

#[derive(Parser, Debug)]
#[command(
    name = "cap-trace",
    version,
    about = ABOUT,
    long_about = long_about(),
    after_help = after_help(),
    propagate_version = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    max_term_width = 100,
    mut_subcommands = own_formats
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub containers: ContainerArgs,

    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Tracing containers (the default command).
#[derive(Args, Debug, Clone)]
#[group(id = "targets", required = true, multiple = true)]
pub struct ContainerArgs {
    /// Trace a container, by name or id (repeatable). If it is not running yet, cap-trace
    /// waits for it and catches it from its first check; it ends when every container asked
    /// for has exited.
    #[arg(
        short = 'c',
        long = "container",
        value_name = "NAME|ID",
        group = "targets"
    )]
    pub containers: Vec<String>,

    /// Trace every container, those running and those started later, until --duration or
    /// Ctrl-C; one profile per container (restarts keep theirs).
    #[arg(long, group = "targets", conflicts_with = "containers")]
    pub all_containers: bool,

    /// Trace a process that is already running: its cgroup when it is alone there or the
    /// cgroup is a container's, else the process and its descendants (a login shell's cgroup
    /// holds others). Ends when they have exited (or --duration, Ctrl-C, SIGTERM); the profile
    /// says it started late.
    #[arg(long, value_name = "PID", group = "targets", conflicts_with_all = ["containers", "all_containers"])]
    pub pid: Option<u32>,

    /// Trace a cgroup v2 and everything below it, from now until it is empty: a path relative
    /// to the cgroup v2 mount (`system.slice/nginx.service`) or absolute
    /// (`/sys/fs/cgroup/...`).
    #[arg(long, value_name = "PATH", group = "targets", conflicts_with_all = ["containers", "all_containers", "pid"])]
    pub cgroup: Option<String>,

    /// Trace a running systemd service by its unit name (`nginx` or `nginx.service`): its
    /// cgroup `system.slice/NAME.service`; `--format systemd` renders the drop-in for it.
    #[arg(long, value_name = "NAME.service", group = "targets", conflicts_with_all = ["containers", "all_containers", "pid", "cgroup"])]
    pub unit: Option<String>,

    #[command(flatten)]
    pub follow: FollowArgs,

    // --verify, --health: for one container named with --container, not --all-containers.
    #[command(flatten)]
    pub verify: VerifyArgs,

    /// Like --health, but run inside the container (`sh -c CMD` through the engine's exec;
    /// for podman without an API socket, cap-trace serves its API privately meanwhile).
    #[arg(long, value_name = "CMD", conflicts_with = "health")]
    pub health_exec: Option<String>,

    #[command(flatten)]
    pub probe: ProbeArgs,
}

impl ContainerArgs {
    /// --verify, --health or --health-exec: the workload is judged (and with --verify run
    /// again) by cap-trace.
    pub fn judges_the_workload(&self) -> bool {
        self.verify.verify || self.verify.health.is_some() || self.health_exec.is_some()
    }
}

/// How containers are followed (shared by tracing and `check --container`).
#[derive(Args, Debug, Clone)]
pub struct FollowArgs {
    /// Stop after this long (e.g. 90s, 10m, 2h), counted from when the probe is attached;
    /// containers that restart meanwhile keep one profile.
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,

    /// How long to wait for a container that is not running yet.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_duration)]
    pub wait: std::time::Duration,

    /// Docker-compatible engine API socket to ask about containers (default: $CONTAINER_HOST,
    /// $DOCKER_HOST, /run/podman/podman.sock, /var/run/docker.sock, then the podman, docker and
    /// crictl commands).
    #[arg(long, value_name = "PATH")]
    pub engine_socket: Option<PathBuf>,
}

/// The longest duration accepted: ten years. Anything longer is a typo, and a deadline that far
/// away would not fit the clock.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// `90`, `90s`, `10m`, `2h`, `500ms`, `1.5h`, and compounds of them, largest unit first:
/// `1m30s`, `2h 15m`, `1d12h`; at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    const UNITS: [(&str, f64); 5] = [
        ("d", 86_400.0),
        ("h", 3600.0),
        ("m", 60.0),
        ("s", 1.0),
        ("ms", 0.001),
    ];
    let original = s;
    let s = s.trim();
    let nonsense = || format!("`{original}` is not a duration (examples: 90s, 10m, 1m30s, 2h)");
    if s.is_empty() {
        return Err(nonsense());
    }
    // A bare number is seconds.
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return seconds(original, s.parse::<f64>().map_err(|_| nonsense())?);
    }
    let mut secs = 0.0;
    let mut rest = s;
    let mut last_unit = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let n: f64 = number.parse().map_err(|_| nonsense())?;
        let Some(at) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(if unit.is_empty() {
                format!("`{original}`: a unit is missing after {number} (use d, h, m, s or ms)")
            } else {
                format!("`{original}`: unknown unit `{unit}` (use d, h, m, s or ms)")
            });
        };
        // Each unit once, largest first: `30s1m` or `1m1m` is a typo, not a duration.
        if last_unit.is_some_and(|last| at <= last) {
            return Err(format!(
                "`{original}`: units go from largest to smallest, each once (as in 1h30m)"
            ));
        }
        last_unit = Some(at);
        secs += n * UNITS[at].1;
        rest = after.trim_start();
    }
    seconds(original, secs)
}

fn seconds(original: &str, secs: f64) -> Result<std::time::Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{original}` is not a duration"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "`{original}` is too long (at most {}h, ten years)",
            MAX_DURATION.as_secs() / 3600
        ));
    }
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{original}` is not a duration"))
}

/// How often the daemon writes its profiles: a duration of at least a second.
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!(
            "`{s}` is too short: profiles are written at most every 1s"
        ));
    }
    Ok(d)
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Output format (text by default; json by default for `merge`).
    #[arg(long, value_enum, global = true, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Shorthand for --format json.
    #[arg(long, global = true)]
    pub json: bool,

    /// Live view: print each new kind of check as it happens (time, workload, pid, command,
    /// capability, verdict, audited or a probe, syscall), as text columns or, with --json, as
    /// JSON lines, on stdout; the report follows at the end. For tracing containers or a running
    /// workload (--pid, --cgroup, --unit) and `run` (whose command's own stdout then goes to
    /// stderr).
    #[arg(long, global = true)]
    pub events: bool,

    /// Write the result to FILE (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE", global = true)]
    pub output: Option<PathBuf>,

    /// Show progress, the backend chosen, runtime set-up checks and every check record.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// When to use colours in text output (NO_COLOR is respected).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Add what each suggested capability allows and the evidence for it to text output.
    #[arg(long, global = true)]
    pub explain: bool,

    /// How --format compose writes cap_add: `override` (the default: `!override`, which
    /// replaces the list compose.yaml sets: docker compose v2, podman-compose 1.6) or `merge`
    /// (a plain list, which compose tools merge with compose.yaml's; for docker-compose 1.x).
    #[arg(long, value_enum, global = true, value_name = "HOW")]
    pub compose_lists: Option<ComposeLists>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ComposeLists {
    Override,
    Merge,
}

impl GlobalArgs {
    /// The format asked for, or `default`.
    pub fn format_or(&self, default: Format) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format.unwrap_or(default)
        }
    }

    pub fn format(&self) -> Format {
        self.format_or(Format::Text)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table per workload and the suggestion line.
    Text,
    /// The profile, as documented in docs/profile-schema.md (the source of every other format).
    Json,
    /// `--cap-drop=ALL --cap-add=...` for `docker run`.
    Docker,
    /// `--cap-drop=ALL --cap-add=...` for `podman run`.
    Podman,
    /// A compose override for one project: cap_drop, cap_add and privileged per service, to
    /// pass as an extra `-f`.
    Compose,
    /// A strategic-merge patch of a Kubernetes workload's pod template (`kubectl patch`).
    K8s,
    /// The process.capabilities object of an OCI runtime spec (config.json), for one workload.
    Oci,
    /// [Service] lines for one systemd unit: CapabilityBoundingSet=, and AmbientCapabilities=
    /// when learned with `run --user`.
    Systemd,
}

/// The formats each command writes, by subcommand name (`""`: tracing containers, the default
/// command); an empty list: it takes no `--format`, `--json` or `--output`. `--help` lists
/// these, parsing refuses any other, and `commands::global` checks against the same list.
const FORMATS: &[(&str, &[Format])] = {
    const ALL: &[Format] = &[
        Format::Text,
        Format::Json,
        Format::Docker,
        Format::Podman,
        Format::Compose,
        Format::K8s,
        Format::Oci,
        Format::Systemd,
    ];
    // A command run is never a compose service: a compose override cannot describe it.
    const RUN: &[Format] = &[
        Format::Text,
        Format::Json,
        Format::Docker,
        Format::Podman,
        Format::K8s,
        Format::Oci,
        Format::Systemd,
    ];
    const TEXT_OR_JSON: &[Format] = &[Format::Text, Format::Json];
    &[
        ("", ALL),
        ("run", RUN),
        ("show", ALL),
        ("merge", ALL),
        ("profile", ALL),
        ("check", TEXT_OR_JSON),
        ("explain", TEXT_OR_JSON),
        ("ps", TEXT_OR_JSON),
        ("report", TEXT_OR_JSON),
        ("status", TEXT_OR_JSON),
        ("daemon", &[]),
        ("export", &[]),
        ("completions", &[]),
        ("man", &[]),
    ]
};

/// The options every command parses that only some use, by id, with the subcommands that
/// take them (`""`: tracing containers): `--help` and completions show them there alone, and
/// `commands::global` refuses them elsewhere. `--compose-lists` goes with the compose format.
const SOME_TAKE: &[(&str, &[&str])] = &[
    ("events", &["", "run"]),
    ("explain", &["", "run", "show", "merge", "profile"]),
];

/// Whether `subcommand` (`None`: tracing containers) takes the global option `id`.
pub fn takes(subcommand: Option<&str>, id: &str) -> bool {
    let name = subcommand.unwrap_or_default();
    if id == "compose_lists" {
        return formats(subcommand).contains(&Format::Compose);
    }
    SOME_TAKE
        .iter()
        .find(|(option, _)| *option == id)
        .is_none_or(|(_, takers)| takers.contains(&name))
}

/// The formats a command writes (`None`: tracing containers); empty when it takes none.
pub fn formats(subcommand: Option<&str>) -> &'static [Format] {
    let name = subcommand.unwrap_or_default();
    FORMATS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, formats)| formats)
}

impl Format {
    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Docker => "docker",
            Format::Podman => "podman",
            Format::Compose => "compose",
            Format::K8s => "k8s",
            Format::Oci => "oci",
            Format::Systemd => "systemd",
        }
    }
}

/// Gives each subcommand its own `--format` (the global option's definition with only the
/// formats it writes, so `--help` never offers one it refuses), or, for those that write
/// none, hides `--format`, `--json` and `--output`; and hides the options of [`takes`] it does
/// not take (all still parsed, to be refused by name).
fn own_formats(subcommand: clap::Command) -> clap::Command {
    let accepted = formats(Some(subcommand.get_name()));
    let globals = GlobalArgs::augment_args(clap::Command::new("global"));
    let global = |id: &str| {
        globals
            .get_arguments()
            .find(|a| a.get_id() == id)
            .expect("a global option")
            .clone()
    };
    let name = subcommand.get_name().to_owned();
    let subcommand = ["events", "explain", "compose_lists"]
        .into_iter()
        .filter(|id| !takes(Some(&name), id))
        .fold(subcommand, |c, id| c.arg(global(id).hide(true)));
    if accepted.is_empty() {
        return ["format", "json", "output"]
            .into_iter()
            .fold(subcommand, |c, id| c.arg(global(id).hide(true)));
    }
    let values = accepted
        .iter()
        .map(|f| f.to_possible_value().expect("every format is listed"));
    subcommand.arg(
        global("format").value_parser(
            PossibleValuesParser::new(values)
                .map(|name| Format::from_str(&name, false).expect("a listed format")),
        ),
    )
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug, Clone)]
pub struct ProbeArgs {
    /// Kernel hook to watch capability checks from.
    #[arg(long, default_value = "auto", value_name = "PROBE", value_parser = probe_parser())]
    pub probe: ProbeChoice,

    /// Ring-buffer size in bytes (a power of two, at least 4096; K and M suffixes accepted).
    #[arg(long, default_value = "1M", value_name = "BYTES", value_parser = parse_size)]
    pub ring_buffer: u32,

    /// Send every check to userspace instead of counting repeats in the kernel.
    #[arg(long, hide = true)]
    pub stream: bool,

    /// Attach an empty program on the same hook instead of cap-trace (benchmark floor).
    #[arg(long, hide = true)]
    pub floor: bool,

    /// With --floor: an empty program on raw_syscalls:sys_exit as well.
    #[arg(long, hide = true)]
    pub floor_sys_exit: bool,

    /// Stop a repeated check's fast path at this point (benchmark cost breakdown; the counts
    /// are then wrong).
    #[arg(long, hide = true, default_value_t = 0)]
    pub cost_cut: u32,

    /// Tracepoint flavour for the tracepoint backend (benchmarks).
    #[arg(long, hide = true, value_enum, default_value_t = FlavorArg::Raw)]
    pub tracepoint_flavor: FlavorArg,

    /// How denied checks' outcomes are learned: a task work where the kernel has it, else
    /// raw_syscalls:sys_exit (benchmarks and tests of either path).
    #[arg(long, hide = true, value_enum, default_value_t = OutcomeHookArg::Auto)]
    pub outcome_hook: OutcomeHookArg,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutcomeHookArg {
    Auto,
    TaskWork,
    SysExit,
}

impl From<OutcomeHookArg> for OutcomeChoice {
    fn from(o: OutcomeHookArg) -> Self {
        match o {
            OutcomeHookArg::Auto => None,
            OutcomeHookArg::TaskWork => Some(OutcomeHook::TaskWork),
            OutcomeHookArg::SysExit => Some(OutcomeHook::SysExit),
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlavorArg {
    Classic,
    Raw,
}

impl From<FlavorArg> for TracepointFlavor {
    fn from(f: FlavorArg) -> Self {
        match f {
            FlavorArg::Classic => TracepointFlavor::Classic,
            FlavorArg::Raw => TracepointFlavor::Raw,
        }
    }
}

/// `--probe`'s values, each with what it means (shown by `--help`).
fn probe_parser() -> impl TypedValueParser<Value = ProbeChoice> {
    PossibleValuesParser::new([
        PossibleValue::new("auto")
            .help("The first of tracepoint, fexit and kprobe that loads and attaches here"),
        PossibleValue::new("tracepoint").help(
            "The capability:cap_capable tracepoint (Linux 6.14+); the audit flag from the call site",
        ),
        PossibleValue::new("fexit").help(
            "A BPF trampoline on cap_capable's return (x86_64 5.10+; arm64 with ftrace direct calls)",
        ),
        PossibleValue::new("kprobe")
            .help("A kprobe and kretprobe on cap_capable (kernels with kprobes and BTF)"),
    ])
    .map(|s| s.parse().expect("a listed probe"))
}

fn parse_size(s: &str) -> Result<u32, String> {
    let (digits, mult) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 1 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 1 << 20),
        t => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 4096, 256K, 16M)"))?;
    let bytes = n.saturating_mul(mult);
    if bytes < 4096 || !bytes.is_power_of_two() || bytes > 1 << 30 {
        return Err(format!("`{s}` must be a power of two between 4K and 1024M"));
    }
    Ok(bytes as u32)
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in a fresh cgroup and learn the capabilities it needs.
    ///
    /// The command runs as a child of cap-trace, inside a new cgroup v2 leaf; tracing ends when
    /// it and every process it started have exited. Its exit status is shown in the report (and
    /// in the JSON profile as workload.exit_status); cap-trace itself exits 0 when the trace
    /// succeeded, whatever the command's status. Ctrl-C is passed on to the command, a second
    /// Ctrl-C kills it; the report is printed either way.
    #[command(after_help = "Example:\n  cap-trace run -- chown nobody /srv/data")]
    Run(RunArgs),

    /// Render a saved JSON profile in any output format, without tracing again.
    #[command(
        after_help = "Examples:\n  cap-trace show web.json --format compose --output caps.yaml\n  cap-trace show fleet.json --name prod/web --format k8s"
    )]
    Show(ShowArgs),

    /// Merge profiles of the same workloads (runs, replicas, nodes): counts add up, each check
    /// keeps which profiles it came from, and each workload's suggestion covers all its runs.
    /// Different workloads stay separate profiles (a JSON list) unless --as folds them into
    /// one. Writes JSON unless --format says otherwise.
    #[command(
        after_help = "Examples:\n  cap-trace merge node1/web.json node2/web.json --output web.json\n  cap-trace merge node-a/*.json node-b/*.json --format compose --name shop\n  cap-trace merge web.json web-canary.json --as web"
    )]
    Merge(MergeArgs),

    /// Regression gate: compare a workload with a baseline profile. Exits 0 when nothing new is
    /// required, 1 when it now needs a capability the baseline does not grant or a denied check
    /// made a syscall fail, 2 on usage or input errors.
    ///
    /// The workload is a saved profile (--profile), containers traced now (--container), or a
    /// command run now (`check --baseline B run -- CMD`). Capabilities no longer needed are
    /// reported as an opportunity; --fail-on-unused makes them fail the gate too.
    #[command(
        after_help = "Examples:\n  cap-trace check --baseline web.json --container web\n  cap-trace check --baseline tool.json run -- ./tool --selftest\n  cap-trace check --baseline web.json --profile web-new.json"
    )]
    Check(CheckArgs),

    /// Explain what capabilities allow and how dangerous they are.
    Explain(ExplainArgs),

    /// What every running container holds (effective and bounding capabilities, from /proc:
    /// no tracing), against what its profile says it needs: the excess, riskiest first.
    ///
    /// Profiles are matched to containers by identity (Kubernetes namespace/workload/container,
    /// compose project/service, else the container's name), as the daemon keeps them.
    #[command(
        after_help = "Examples:\n  cap-trace ps\n  cap-trace ps --profiles /var/lib/cap-trace\n  cap-trace ps web.json db.json --json\n  cap-trace ps --all\n  cap-trace ps --label app=shop"
    )]
    Ps(PsArgs),

    /// Report on profiled workloads: one row per workload, what it holds against what it
    /// needs, the excess riskiest first, the flags to deploy it with and the evidence for
    /// each capability it needs.
    ///
    /// What a workload holds is read from /proc when a container of it runs here (matched by
    /// identity, or by container id, as `ps` does; replicas add up); else the report shows
    /// what it needs and says that what it holds is unknown. With --html the report is one
    /// self-contained page: a grid of every capability per workload coloured by risk (held
    /// and needed, excess by risk, needed and not held), whether each profile is complete and
    /// verified, and the checks behind each needed capability on expand. Every name from a
    /// profile or an engine is escaped.
    #[command(
        after_help = "Examples:\n  cap-trace report /var/lib/cap-trace --html fleet.html\n  cap-trace report web.json db.json\n  cap-trace report --json\n  cap-trace report --socket /run/cap-trace/control.sock --html /srv/www/caps.html"
    )]
    Report(ReportArgs),

    /// Run as a staging daemon: follow every container (or those named or labelled), keep one
    /// profile per container identity in DIR, and answer `status`, `profile` and `export`.
    ///
    /// A container keeps its profile across restarts and re-creations: it is keyed by its
    /// compose `project/service`, its Kubernetes `namespace/workload/container`, else its name.
    /// Profiles are written atomically every --interval and when the daemon stops; a restarted
    /// daemon continues them, so a crash loses at most one interval. Once its programs are
    /// attached the daemon keeps only CAP_BPF. The control socket is root-only; the protocol is
    /// documented in docs/control-api.md. In the foreground on a terminal it keeps a status
    /// line on stderr (uptime, containers, checks, losses).
    #[command(
        after_help = "Examples:\n  cap-trace daemon --state-dir /var/lib/cap-trace\n  cap-trace daemon --state-dir /var/lib/cap-trace --label app=shop --interval 10s\n  cap-trace status\n  cap-trace profile shop/web --format compose\n  cap-trace export ./profiles"
    )]
    Daemon(DaemonArgs),

    /// Ask a running daemon how it is doing: backend, containers, events, losses, uptime.
    Status(SocketArgs),

    /// Print one container's profile from a running daemon (any --format).
    Profile(ProfileArgs),

    /// Write every profile a running daemon holds to DIR (one JSON file each, atomically).
    Export(ExportArgs),

    /// Print a completion script for a shell, generated from this command line's definition.
    #[command(
        after_help = "Install:\n  cap-trace completions bash > /usr/share/bash-completion/completions/cap-trace\n  cap-trace completions zsh > /usr/local/share/zsh/site-functions/_cap-trace\n  cap-trace completions fish > /usr/share/fish/vendor_completions.d/cap-trace.fish"
    )]
    Completions(CompletionsArgs),

    /// Print the manual page (roff), generated from this command line's definition.
    #[command(
        after_help = "Install:\n  cap-trace man > /usr/local/share/man/man1/cap-trace.1\n  man cap-trace"
    )]
    Man,
}

impl Command {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Run(_) => "run",
            Command::Show(_) => "show",
            Command::Merge(_) => "merge",
            Command::Check(_) => "check",
            Command::Explain(_) => "explain",
            Command::Ps(_) => "ps",
            Command::Report(_) => "report",
            Command::Daemon(_) => "daemon",
            Command::Status(_) => "status",
            Command::Profile(_) => "profile",
            Command::Export(_) => "export",
            Command::Completions(_) => "completions",
            Command::Man => "man",
        }
    }
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug, Clone)]
pub struct SocketArgs {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = crate::model::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Where profiles live (created if missing); one JSON file per container identity.
    #[arg(long, value_name = "DIR", required = true)]
    pub state_dir: PathBuf,

    /// How often profiles are written (at least 1s).
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_interval)]
    pub interval: std::time::Duration,

    /// Follow only containers with this name or id (repeatable).
    #[arg(long = "container", value_name = "NAME|ID")]
    pub containers: Vec<String>,

    /// Follow only containers carrying this label (repeatable; all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Docker-compatible engine API socket (see `cap-trace --help`).
    #[arg(long, value_name = "PATH")]
    pub engine_socket: Option<PathBuf>,

    #[command(flatten)]
    pub socket: SocketArgs,

    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// Container identity or name (as `cap-trace status` lists them).
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Directory to write the profiles to (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub socket: SocketArgs,
}

/// A list of capabilities given as one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapList(pub Vec<crate::linux::caps::Cap>);

/// `CHOWN,NET_BIND_SERVICE` (any spelling `Cap` accepts), or `none`.
pub fn parse_caps(s: &str) -> Result<CapList, String> {
    if s.trim().eq_ignore_ascii_case("none") || s.trim().is_empty() {
        return Ok(CapList(Vec::new()));
    }
    let mut caps = s
        .split(',')
        .map(|c| {
            c.parse()
                .map_err(|e: crate::linux::caps::UnknownCap| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    caps.sort();
    caps.dedup();
    Ok(CapList(caps))
}

/// `KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not a label (expected KEY=VALUE)")),
    }
}

/// Verification: re-running the workload to prove (and shrink) the learned set.
#[derive(Args, Debug, Clone, Default)]
pub struct VerifyArgs {
    /// After learning, prove the set by running the workload again with exactly that set,
    /// then once without each of its capabilities (most dangerous first), until no more can
    /// go: the suggestion becomes the verified minimal set. A run passes when it ends as the
    /// learning run did (same exit status; for a server, its --health passing) and the
    /// workload's own privilege drop still happens; a denial it goes on from is tolerated.
    /// It runs the workload again, once per capability and more: its side effects happen
    /// again, so use it in staging; it costs (runs x workload time). For --container NAME
    /// (one, podman or Docker), each run is a copy the engine re-creates from its record
    /// (NAME-verify-N, --cap-drop=ALL plus the set, no restart policy, the same mounts and
    /// network), removed after its run, also on Ctrl-C.
    #[arg(long)]
    pub verify: bool,

    /// With --verify: a run also fails when a check granted in the learning run is denied
    /// and makes its syscall fail ("nothing changes", rather than "it still works").
    #[arg(long, requires = "verify")]
    pub strict: bool,

    /// How to tell that the workload works (a server): a shell command on the host, retried
    /// until it exits 0. $CAP_TRACE_PID is the workload's main process, e.g. `nsenter -t
    /// $CAP_TRACE_PID -n curl -sf http://127.0.0.1/`. Once it passes, the run has shown the
    /// workload works, and learning ends there: cap-trace stops a command it ran (a container
    /// it leaves running; its verification copies it removes).
    #[arg(long, value_name = "CMD")]
    pub health: Option<String>,

    /// How long --health may take to pass, from the workload's start.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_duration)]
    pub health_timeout: std::time::Duration,

    /// With --verify: the longest one run may take (default: five times the learning run, at
    /// least 10 s); a run that does not end in time fails.
    #[arg(long, value_name = "TIME", value_parser = parse_duration, requires = "verify")]
    pub verify_timeout: Option<std::time::Duration>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,

    #[command(flatten)]
    pub verify: VerifyArgs,

    /// Run CMD with exactly these capabilities (comma-separated, or `none`): its bounding,
    /// permitted and effective sets (and inheritable and ambient with --user), as a container
    /// started with --cap-drop=ALL --cap-add=... would hold them.
    #[arg(long, value_name = "CAPS", value_parser = parse_caps, conflicts_with = "verify")]
    pub caps: Option<CapList>,

    /// Run CMD as this user (name or uid, optionally :group), as a service with User= would;
    /// the switch itself is not counted as the command's.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// The command to trace, after `--` (everything after it is the command's own: a
    /// misspelt option before it is an error, not a command).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Profiles to compare with: files (one profile or a list of them) or directories of them,
    /// such as a daemon's state dir. Without any, the local daemon's: asked on its control
    /// socket (--socket), else read from /var/lib/cap-trace. Where they came from is said on
    /// stderr.
    #[arg(value_name = "PROFILE|DIR")]
    pub profiles: Vec<PathBuf>,

    /// A directory of profiles (a daemon's state dir), as the positional arguments take it.
    #[arg(long = "profiles", value_name = "DIR")]
    pub profile_dirs: Vec<PathBuf>,

    /// Also list every process outside containers (kernel threads left out), each compared
    /// with the profile of a command run (`cap-trace run`) with exactly its command line.
    #[arg(long)]
    pub all: bool,

    /// List only containers carrying this label (repeatable; all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Docker-compatible engine API socket to name containers with (default: as for tracing).
    #[arg(long, value_name = "PATH")]
    pub engine_socket: Option<PathBuf>,

    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Profiles to report on: files (one profile or a list of them) or directories of them,
    /// such as a daemon's state dir. Without any, the local daemon's: asked on its control
    /// socket (--socket), else read from /var/lib/cap-trace.
    #[arg(value_name = "PROFILE|DIR")]
    pub profiles: Vec<PathBuf>,

    /// Write the report as one self-contained HTML page to FILE (no script, no network: it
    /// opens from the file in any browser). Without it, the report is printed as text
    /// (--json: the rows as JSON).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Docker-compatible engine API socket to name running containers with (default: as for
    /// tracing).
    #[arg(long, value_name = "PATH")]
    pub engine_socket: Option<PathBuf>,

    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// A profile written by `--format json` (one profile, or a list of them).
    #[arg(value_name = "PROFILE")]
    pub profile: PathBuf,

    #[command(flatten)]
    pub select: SelectArgs,
}

/// Picking profiles from a file that holds several.
#[derive(Args, Debug, Clone)]
pub struct SelectArgs {
    /// Only the workload named NAME (repeatable): its name or identity, or a leading part of
    /// them up to a `/` (a compose project, a Kubernetes namespace/workload).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Profiles to merge.
    #[arg(value_name = "PROFILE", required = true, num_args = 1..)]
    pub profiles: Vec<PathBuf>,

    /// Fold every profile into one named NAME, whatever workloads they are of (by default
    /// each workload keeps its own profile).
    #[arg(long = "as", value_name = "NAME")]
    pub fold_as: Option<String>,

    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = false,
    subcommand_negates_reqs = false
)]
pub struct CheckArgs {
    /// The baseline profile: what the workload is allowed (its suggestion is the granted set).
    #[arg(long, value_name = "FILE", required = true)]
    pub baseline: PathBuf,

    /// Check a saved profile instead of tracing.
    #[arg(long, value_name = "FILE", conflicts_with = "containers")]
    pub profile: Option<PathBuf>,

    /// Trace these containers now (as `cap-trace --container`) and check them.
    #[arg(short = 'c', long = "container", value_name = "NAME|ID")]
    pub containers: Vec<String>,

    #[command(flatten)]
    pub follow: FollowArgs,

    /// Capabilities the baseline grants but the workload no longer needs fail the gate too.
    #[arg(long)]
    pub fail_on_unused: bool,

    /// Fail (exit 1) when the baseline's set is not verified (`--verify`): only a verified
    /// minimal set is a baseline worth holding a workload to.
    #[arg(long)]
    pub require_verified: bool,

    #[command(flatten)]
    pub probe: ProbeArgs,

    #[command(subcommand)]
    pub run: Option<CheckRun>,
}

#[derive(Subcommand, Debug)]
pub enum CheckRun {
    /// Run a command now (as `cap-trace run`) and check it.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Capabilities, with or without the CAP_ prefix, or bitmaps as /proc/PID/status prints
    /// them (CapEff etc.), with or without 0x: `cap-trace explain 00000000a80425fb`.
    #[arg(value_name = "CAP|BITMAP", required_unless_present = "all")]
    pub caps: Vec<String>,

    /// Explain every capability.
    #[arg(long)]
    pub all: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command is in the format table, and each parses exactly the formats the table
    /// gives it: what `--help` shows is what is accepted.
    #[test]
    fn options_only_some_commands_take_show_only_there() {
        let mut command = Cli::command();
        command.build();
        let shown = |sub: &str, id: &str| {
            let c = command.find_subcommand(sub).expect(sub);
            c.get_arguments()
                .find(|a| a.get_id() == id)
                .is_some_and(|a| !a.is_hide_set())
        };
        for (sub, events, explain, compose_lists) in [
            ("run", true, true, false),
            ("show", false, true, true),
            ("profile", false, true, true),
            ("check", false, false, false),
            ("explain", false, false, false),
            ("daemon", false, false, false),
            ("completions", false, false, false),
        ] {
            assert_eq!(shown(sub, "events"), events, "{sub} --events");
            assert_eq!(shown(sub, "explain"), explain, "{sub} --explain");
            assert_eq!(
                shown(sub, "compose_lists"),
                compose_lists,
                "{sub} --compose-lists"
            );
        }
        // Tracing containers takes them all.
        for id in ["events", "explain", "compose_lists"] {
            assert!(takes(None, id), "{id}");
        }
        // Hidden, still parsed: refused by name (commands::global), not as unknown.
        let parsed = Cli::try_parse_from([
            "cap-trace",
            "daemon",
            "--state-dir",
            "d",
            "--explain",
            "--compose-lists",
            "merge",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn each_command_parses_its_own_formats() {
        let command = Cli::command();
        let mut names: Vec<&str> = command
            .get_subcommands()
            .map(clap::Command::get_name)
            .collect();
        names.push("");
        let mut table: Vec<&str> = FORMATS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        table.sort_unstable();
        assert_eq!(names, table);
        for format in Format::value_variants() {
            for (name, accepted) in FORMATS {
                let mut args = vec!["cap-trace"];
                args.extend(match *name {
                    "" => vec!["--container", "web"],
                    "run" => vec!["run"],
                    "check" => vec!["check", "--baseline", "b.json"],
                    "explain" => vec!["explain", "CHOWN"],
                    "profile" => vec!["profile", "web"],
                    "show" | "report" | "ps" => vec![name, "p.json"],
                    "merge" => vec!["merge", "a.json", "b.json"],
                    "daemon" => vec!["daemon", "--state-dir", "d"],
                    "export" => vec!["export", "dir"],
                    "completions" => vec!["completions", "bash"],
                    other => vec![other],
                });
                args.extend(["--format", format.name()]);
                if *name == "run" {
                    args.extend(["--", "true"]);
                }
                let parsed = Cli::try_parse_from(&args);
                // Commands that write no format take the option only to refuse it by name.
                if accepted.contains(format) || accepted.is_empty() {
                    let cli = parsed.unwrap_or_else(|e| panic!("{args:?}: {e}"));
                    assert_eq!(cli.global.format, Some(*format), "{args:?}");
                } else {
                    let err = parsed.expect_err(&format!("{args:?} parsed"));
                    let said = err.to_string();
                    let listed: Vec<&str> = accepted.iter().map(|f| f.name()).collect();
                    assert!(
                        said.contains(&format!("[possible values: {}]", listed.join(", "))),
                        "{args:?}: {said}"
                    );
                }
            }
        }
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h 15m"), Ok(Duration::from_secs(8100)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for (bad, says) in [
            ("30s1m", "largest to smallest"),
            ("1m1m", "largest to smallest"),
            ("1m30", "a unit is missing after 30"),
            ("5x", "unknown unit `x`"),
            ("", "not a duration"),
            ("m", "not a duration"),
            ("1..5s", "not a duration"),
            ("-5s", "not a duration"),
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("10y").is_err());
        // Absurd values are refused, never a panic.
        for absurd in [
            "99999999999999999999h",
            "99999999999999999999",
            "1e400",
            "87601h",
        ] {
            let err = parse_duration(absurd).unwrap_err();
            assert!(err.contains(absurd), "{err}");
        }
        assert_eq!(parse_duration("87600h"), Ok(MAX_DURATION));
        assert!(parse_interval("0").unwrap_err().contains("too short"));
        assert!(parse_interval("500ms").is_err());
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_interval("99999999999999999999").is_err());
    }

    #[test]
    fn container_flags() {
        let cli = Cli::try_parse_from([
            "cap-trace",
            "--container",
            "web",
            "-c",
            "db",
            "--duration",
            "5m",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.containers.containers, ["web", "db"]);
        assert_eq!(
            cli.containers.follow.duration,
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            cli.containers.follow.wait,
            std::time::Duration::from_secs(60)
        );
        let cli = Cli::try_parse_from(["cap-trace", "--all-containers", "--json"]).unwrap();
        assert!(cli.containers.all_containers);
        // Nothing to do is a usage error, and so is mixing the two.
        assert_eq!(
            Cli::try_parse_from(["cap-trace"]).unwrap_err().exit_code(),
            2
        );
        assert!(Cli::try_parse_from(["cap-trace", "--all-containers", "-c", "x"]).is_err());
        assert!(Cli::try_parse_from(["cap-trace", "-c", "x", "run", "--", "true"]).is_err());
        // A running workload: one of --pid, --cgroup, --unit, alone.
        let cli = Cli::try_parse_from(["cap-trace", "--pid", "42", "--duration", "1m"]).unwrap();
        assert_eq!(cli.containers.pid, Some(42));
        let cli = Cli::try_parse_from(["cap-trace", "--unit", "nginx"]).unwrap();
        assert_eq!(cli.containers.unit.as_deref(), Some("nginx"));
        for mixed in [
            &["--pid", "42", "-c", "x"][..],
            &["--pid", "42", "--cgroup", "a"],
            &["--unit", "a", "--all-containers"],
            &["--cgroup", "a", "--unit", "b"],
            &["--pid", "x"],
        ] {
            let args = std::iter::once("cap-trace").chain(mixed.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{mixed:?}");
        }
    }

    #[test]
    fn capability_lists() {
        use crate::linux::caps::Cap;
        assert_eq!(parse_caps("none"), Ok(CapList(vec![])));
        assert_eq!(
            parse_caps("net_bind_service,CAP_CHOWN"),
            Ok(CapList(vec![Cap(0), Cap(10)]))
        );
        let cli = Cli::try_parse_from(["cap-trace", "run", "--caps", "chown", "--", "x"]).unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!()
        };
        assert_eq!(run.caps, Some(CapList(vec![Cap(0)])));
        assert!(parse_caps("CHOWN,FLY").unwrap_err().contains("`FLY`"));
        let cli = Cli::try_parse_from([
            "cap-trace",
            "run",
            "--verify",
            "--strict",
            "--health",
            "true",
            "--",
            "x",
        ])
        .unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!()
        };
        assert!(run.verify.verify && run.verify.strict);
        assert_eq!(run.verify.health.as_deref(), Some("true"));
        // --strict means nothing without --verify; --caps and --verify do not go together.
        assert!(Cli::try_parse_from(["cap-trace", "run", "--strict", "--", "x"]).is_err());
        assert!(
            Cli::try_parse_from(["cap-trace", "run", "--verify", "--caps", "none", "--", "x"])
                .is_err()
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256K"), Ok(256 << 10));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert!(parse_size("1000").is_err());
        assert!(parse_size("1K").is_err());
        assert!(parse_size("big").is_err());
        // 17592186044417M overflows 64 bits to exactly 1M when it wraps: refused all the same.
        assert!(parse_size("17592186044417M").is_err());
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("2048M").is_err());
    }

    #[test]
    fn probe_values() {
        let cli =
            Cli::try_parse_from(["cap-trace", "run", "--probe", "fexit", "--", "true"]).unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!()
        };
        assert_eq!(
            run.probe.probe,
            ProbeChoice::Only(crate::linux::hook::Backend::Fexit)
        );
        assert_eq!(run.command, ["true"]);
        let err = Cli::try_parse_from(["cap-trace", "run", "--probe", "magic", "--", "true"])
            .unwrap_err();
        let said = err.to_string();
        assert!(said.contains("invalid value 'magic'"), "{said}");
        assert!(
            said.contains("[possible values: auto, tracepoint, fexit, kprobe]"),
            "{said}"
        );
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["cap-trace", "run"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn command_keeps_its_own_flags() {
        let cli = Cli::try_parse_from(["cap-trace", "run", "--", "ls", "-la", "--color"]).unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!()
        };
        assert_eq!(run.command, ["ls", "-la", "--color"]);
        let cli = Cli::try_parse_from(["cap-trace", "run", "ls", "-la"]).unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!()
        };
        assert_eq!(run.command, ["ls", "-la"]);
        let cli = Cli::try_parse_from(["cap-trace", "run", "--", "--odd-name"]).unwrap();
        let Some(Command::Run(run)) = cli.command else {
            panic!()
        };
        assert_eq!(run.command, ["--odd-name"]);
    }

    #[test]
    fn a_misspelt_option_is_not_the_command() {
        for args in [
            &["cap-trace", "run", "--bogus", "--", "true"][..],
            &["cap-trace", "run", "--bogus"],
            &[
                "cap-trace",
                "check",
                "--baseline",
                "b.json",
                "run",
                "--bogus",
                "--",
                "true",
            ],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains("--bogus"), "{err}");
        }
    }
}
