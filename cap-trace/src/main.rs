use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cap_trace::caps::{self, Cap};
use cap_trace::cli::{Cli, ColorChoice, Command, Format, GlobalArgs, ProbeArgs};
use cap_trace::error::{Failure, exit};
use cap_trace::probe::ProbeOptions;
use cap_trace::profile::Profile;
use cap_trace::report::{self, Style, TextOptions};
use cap_trace::{follow, output, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
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

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let global = cli.global;
    let Some(command) = cli.command else {
        let c = cli.containers;
        let profiles = follow::follow(follow::FollowOptions {
            targets: c.containers,
            all: c.all_containers,
            duration: c.duration,
            wait: c.wait,
            probe: probe_options(&c.probe),
            engine_socket: c.engine_socket,
            verbose: global.verbose,
        })
        .await?;
        render_all(&profiles, &global)?;
        return Ok(exit::OK);
    };
    match command {
        Command::Run(args) => {
            let format = global.format();
            let options = run::RunOptions {
                command: args.command,
                probe: probe_options(&args.probe),
                command_stdout_to_stderr: format != Format::Text && global.output.is_none(),
                verbose: global.verbose,
            };
            let result = run::run(options).await?;
            render(&result.profile, &global)?;
            Ok(exit::OK)
        }
        Command::Show(args) => {
            let profile = Profile::read(&args.profile)?;
            render(&profile, &global)?;
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
                _ => {
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
            };
            output::emit(global.output.as_deref(), &text)?;
            Ok(exit::OK)
        }
    }
}

fn probe_options(args: &ProbeArgs) -> ProbeOptions {
    ProbeOptions {
        choice: args.probe,
        flavor: args.tracepoint_flavor.into(),
        stream: args.stream,
        ring_buffer_bytes: args.ring_buffer,
        floor: args.floor,
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

fn render(profile: &Profile, global: &GlobalArgs) -> Result<(), Failure> {
    render_all(std::slice::from_ref(profile), global)
}

/// One profile renders as itself; several as a JSON array, or text reports one after another.
fn render_all(profiles: &[Profile], global: &GlobalArgs) -> Result<(), Failure> {
    let text = match global.format() {
        Format::Text => {
            if profiles.is_empty() {
                "no container was traced\n".to_owned()
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
    };
    output::emit(global.output.as_deref(), &text)
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
    log::set_max_level(if verbose {
        if std::env::var_os("CAP_TRACE_TRACE").is_some() {
            log::LevelFilter::Trace
        } else {
            log::LevelFilter::Debug
        }
    } else {
        log::LevelFilter::Warn
    });
}
