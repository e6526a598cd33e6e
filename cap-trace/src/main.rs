use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cap_trace::cli::{
    CheckArgs, CheckRun, Cli, ColorChoice, Command, FollowArgs, Format, GlobalArgs, ProbeArgs,
};
use cap_trace::commands::daemon;
use cap_trace::error::{Failure, exit};
use cap_trace::kernel::ProbeOptions;
use cap_trace::linux::caps::{self, Cap};
use cap_trace::model::profile::Profile;
use cap_trace::model::{gate, merge};
use cap_trace::render::text::{self as report, Style, TextOptions};
use cap_trace::render::{deploy as render, gate as render_gate, write as output};
use cap_trace::session::{follow, launch as run};

fn main() -> ExitCode {
    // Start-up parses the kernel's BTF twice (ours for offsets, aya's in its loader): large,
    // short-lived buffers. Served by mmap, they go back to the system when freed instead of
    // staying in the heap for as long as the tracer runs.
    // SAFETY: mallopt before any other thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cap-trace: error: cannot start the event loop: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("cap-trace: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Help and version as clap prints them; usage errors as one line, exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() {
            exit::USAGE
        } else {
            exit::OK
        });
    }
    if std::env::args_os().len() == 1 {
        // Nothing asked for: say what can be asked.
        let _ = <Cli as clap::CommandFactory>::command().print_help();
        eprintln!(
            "\ncap-trace: error: nothing to trace: give --container NAME, --all-containers, or a command such as `run -- CMD`"
        );
        return ExitCode::from(exit::USAGE);
    }
    let rendered = e.render().to_string();
    let first = rendered.split("\n\n").next().unwrap_or_default();
    let message = first
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .replace("  ", " ");
    let tip = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("tip: "))
        .map(|t| format!("; {t}"))
        .unwrap_or_default();
    eprintln!("cap-trace: error: {message}{tip} (see --help)");
    ExitCode::from(exit::USAGE)
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let global = cli.global;
    let Some(command) = cli.command else {
        let c = cli.containers;
        let profiles =
            follow_containers(c.containers, c.all_containers, c.follow, &c.probe, &global).await?;
        render_all(&profiles, &global, Format::Text)?;
        return Ok(exit::OK);
    };
    match command {
        Command::Run(args) => {
            let profile = run_command(args, &global).await?;
            render_all(std::slice::from_ref(&profile), &global, Format::Text)?;
            Ok(exit::OK)
        }
        Command::Show(args) => {
            let profiles = Profile::read_all(&args.profile)?;
            render_all(&profiles, &global, Format::Text)?;
            Ok(exit::OK)
        }
        Command::Merge(args) => {
            let mut inputs = Vec::new();
            for path in &args.profiles {
                for profile in Profile::read_all(path)? {
                    inputs.push((path.display().to_string(), profile));
                }
            }
            let merged = merge::merge(inputs);
            render_all(std::slice::from_ref(&merged), &global, Format::Json)?;
            Ok(exit::OK)
        }
        Command::Check(args) => check(args, &global).await,
        Command::Daemon(args) => {
            daemon::daemon(daemon::DaemonOptions {
                state_dir: args.state_dir,
                socket: args.socket.socket,
                interval: args.interval,
                follow: follow::FollowOptions {
                    all: args.containers.is_empty(),
                    targets: args.containers,
                    duration: None,
                    wait: std::time::Duration::MAX,
                    probe: probe_options(&args.probe),
                    engine_socket: args.engine_socket,
                    verbose: global.verbose,
                    labels: args.labels,
                },
            })
            .await?;
            Ok(exit::OK)
        }
        Command::Status(args) => {
            let reply = daemon::ask(&args.socket, &daemon::Request::Status {}).await?;
            let status = reply
                .status
                .ok_or_else(|| Failure::runtime("the daemon sent no status"))?;
            let text = match global.format() {
                Format::Json => {
                    format!("{}\n", serde_json::to_string_pretty(&status).expect("json"))
                }
                Format::Text => daemon_status_text(&status),
                other => {
                    return Err(Failure::usage(format!(
                        "status writes text or json, not {}",
                        format_name(other)
                    )));
                }
            };
            output::emit(global.output.as_deref(), &text)?;
            Ok(exit::OK)
        }
        Command::Profile(args) => {
            let reply = daemon::ask(
                &args.socket.socket,
                &daemon::Request::Profile { name: args.name },
            )
            .await?;
            render_all(&reply.profiles, &global, Format::Text)?;
            Ok(exit::OK)
        }
        Command::Export(args) => {
            let reply = daemon::ask(&args.socket.socket, &daemon::Request::Profiles {}).await?;
            std::fs::create_dir_all(&args.dir).map_err(|e| {
                Failure::runtime(format!("cannot create {}: {e}", args.dir.display()))
            })?;
            for profile in &reply.profiles {
                let identity = profile
                    .workload
                    .identity
                    .as_deref()
                    .unwrap_or(&profile.workload.name);
                let path = args.dir.join(daemon::file_name(identity));
                output::write_atomic(&path, profile.to_json().as_bytes())?;
            }
            eprintln!(
                "cap-trace: exported {} profile{} to {}",
                reply.profiles.len(),
                if reply.profiles.len() == 1 { "" } else { "s" },
                args.dir.display()
            );
            Ok(exit::OK)
        }
        Command::Explain(args) => {
            let caps: Vec<Cap> = if args.all {
                caps::ALL.iter().map(|c| Cap(c.number)).collect()
            } else {
                args.caps
                    .iter()
                    .map(|s| s.parse::<Cap>().map_err(Failure::usage))
                    .collect::<Result<_, _>>()?
            };
            let text = match global.format() {
                Format::Json => {
                    let items: Vec<_> = caps
                        .iter()
                        .filter_map(|c| c.info())
                        .map(|i| {
                            serde_json::json!({
                                "name": i.name,
                                "number": i.number,
                                "danger": i.danger,
                                "allows": i.allows,
                                "advice": i.advice,
                            })
                        })
                        .collect();
                    format!("{}\n", serde_json::to_string_pretty(&items).expect("json"))
                }
                Format::Text => {
                    let style = style(&global);
                    let mut out = String::new();
                    for info in caps.iter().filter_map(|c| c.info()) {
                        out.push_str(&format!(
                            "{} (CAP_{}, {}): {} risk\n  allows: {}\n  advice: {}\n",
                            style.bold(info.name),
                            info.name,
                            info.number,
                            info.danger,
                            info.allows,
                            info.advice
                        ));
                    }
                    out
                }
                other => {
                    return Err(Failure::usage(format!(
                        "explain writes text or json, not {}",
                        format_name(other)
                    )));
                }
            };
            output::emit(global.output.as_deref(), &text)?;
            Ok(exit::OK)
        }
    }
}

async fn run_command(
    args: cap_trace::cli::RunArgs,
    global: &GlobalArgs,
) -> Result<Profile, Failure> {
    let format = global.format();
    let user = match &args.user {
        Some(spec) => Some(cap_trace::commands::run::resolve_user(spec)?),
        None => None,
    };
    let options = run::RunOptions {
        command: args.command,
        user,
        probe: probe_options(&args.probe),
        command_stdout_to_stderr: format != Format::Text && global.output.is_none(),
        verbose: global.verbose,
    };
    Ok(run::run(options).await?.profile)
}

/// `cap-trace check`: trace (or read) the workload, compare with the baseline.
async fn check(args: CheckArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let baselines = Profile::read_all(&args.baseline)?;
    let baseline_name = args.baseline.display().to_string();
    let sources =
        args.profile.is_some() as u8 + !args.containers.is_empty() as u8 + args.run.is_some() as u8;
    if sources != 1 {
        return Err(Failure::usage(
            "check needs exactly one workload: --profile FILE, --container NAME, or `run -- CMD`",
        ));
    }
    let current: Vec<Profile> = if let Some(path) = &args.profile {
        Profile::read_all(path)?
    } else if !args.containers.is_empty() {
        follow_containers(args.containers, false, args.follow, &args.probe, global).await?
    } else {
        let Some(CheckRun::Run(run_args)) = args.run else {
            unreachable!("counted above")
        };
        vec![run_command(run_args, global).await?]
    };
    let mut verdicts = Vec::new();
    for profile in &current {
        let Some(baseline) = gate::baseline_for(&baselines, profile) else {
            return Err(Failure::usage(format!(
                "{baseline_name} has no profile for `{}` (it holds {})",
                profile.workload.name,
                baselines
                    .iter()
                    .map(|b| format!("`{}`", b.workload.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        verdicts.push(gate::compare(
            baseline,
            &baseline_name,
            profile,
            args.fail_on_unused,
        ));
    }
    let text = match global.format() {
        Format::Json => render_gate::json(&verdicts),
        Format::Text => render_gate::text(&verdicts, style(global)),
        other => {
            return Err(Failure::usage(format!(
                "check writes text or json, not {}",
                format_name(other)
            )));
        }
    };
    output::emit(global.output.as_deref(), &text)?;
    Ok(if verdicts.iter().all(|v| v.passed) {
        exit::OK
    } else {
        exit::CHECK_FAILED
    })
}

async fn follow_containers(
    targets: Vec<String>,
    all: bool,
    follow: FollowArgs,
    probe: &ProbeArgs,
    global: &GlobalArgs,
) -> Result<Vec<Profile>, Failure> {
    Ok(follow::follow(follow::FollowOptions {
        targets,
        all,
        duration: follow.duration,
        wait: follow.wait,
        probe: probe_options(probe),
        engine_socket: follow.engine_socket,
        verbose: global.verbose,
        labels: Vec::new(),
    })
    .await?)
}

fn daemon_status_text(s: &daemon::Status) -> String {
    let running = s.containers.iter().filter(|c| c.running).count();
    let mut out = format!(
        "cap-trace daemon: up {} s, {} ({})\n  engines: {}\n  capabilities kept: {}\n  state dir: {} (every {} s; last written {}{})\n  containers: {} seen, {} running now, {} profiles\n  checks: {}, events: {}, losses: {}\n  memory: {:.1} MiB (peak {:.1} MiB)\n",
        s.uptime_s,
        s.hook,
        s.backend,
        if s.engines.is_empty() {
            "none (containers are named from cgroup paths only)".to_string()
        } else {
            s.engines.join(", ")
        },
        if s.capabilities.is_empty() {
            "none".to_string()
        } else {
            s.capabilities.join(",")
        },
        s.state_dir,
        s.interval_s,
        s.last_persist.as_deref().unwrap_or("never"),
        s.persist_error
            .as_deref()
            .map(|e| format!("; LAST WRITE FAILED: {e}"))
            .unwrap_or_default(),
        s.containers_seen,
        running,
        s.profiles,
        s.checks,
        s.events,
        cap_trace::model::record::describe_losses(&s.losses),
        s.rss_kib as f64 / 1024.0,
        s.peak_rss_kib as f64 / 1024.0,
    );
    for c in &s.containers {
        out.push_str(&format!(
            "  {} {}\n",
            if c.running { "running" } else { "exited " },
            c.name
        ));
    }
    out
}

fn format_name(f: Format) -> &'static str {
    match f {
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

fn probe_options(args: &ProbeArgs) -> ProbeOptions {
    ProbeOptions {
        choice: args.probe,
        flavor: args.tracepoint_flavor.into(),
        stream: args.stream,
        ring_buffer_bytes: args.ring_buffer,
        floor: args.floor,
        floor_sys_exit: args.floor_sys_exit,
        cut: args.cost_cut,
        ..ProbeOptions::default()
    }
}

fn style(global: &GlobalArgs) -> Style {
    match global.color {
        ColorChoice::Always => Style { color: true },
        ColorChoice::Never => Style::plain(),
        ColorChoice::Auto => {
            Style::detect(global.output.is_none() && std::io::stdout().is_terminal())
        }
    }
}

/// Renders profiles in the format asked for (or `default`). One profile renders as itself;
/// several as a JSON array, or text reports one after another.
fn render_all(profiles: &[Profile], global: &GlobalArgs, default: Format) -> Result<(), Failure> {
    let format = global.format_or(default);
    let text = match format {
        Format::Text => {
            if profiles.is_empty() {
                "no workload was traced\n".to_owned()
            } else {
                let opts = TextOptions {
                    verbose: global.verbose,
                    explain: global.explain,
                };
                profiles
                    .iter()
                    .map(|p| report::text(p, style(global), opts))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Format::Json => match profiles {
            [one] => one.to_json(),
            many => format!(
                "{}\n",
                serde_json::to_string_pretty(many).expect("profiles serialize")
            ),
        },
        Format::Docker | Format::Podman => render::engine_flags(profiles),
        Format::Compose => render::compose(profiles),
        Format::K8s => render::kubernetes(profiles),
        Format::Oci => render::oci(profiles),
        Format::Systemd => render::systemd(profiles),
    };
    Ok(output::emit(global.output.as_deref(), &text)?)
}

/// `log` records to stderr: warnings always, everything with --verbose.
fn init_logging(verbose: bool) {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if record.target().starts_with("cap_trace") || record.level() <= log::Level::Warn {
                eprintln!(
                    "cap-trace: {}: {}",
                    record.level().as_str().to_lowercase(),
                    record.args()
                );
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if !verbose {
        log::LevelFilter::Warn
    } else if std::env::var_os("CAP_TRACE_TRACE").is_some() {
        log::LevelFilter::Trace
    } else {
        log::LevelFilter::Debug
    });
}
