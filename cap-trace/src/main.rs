//! The `cap-trace` binary: parses the command line and hands it to [`dispatch`].

// The binary links the library's dependencies, which the lint checks on the library.
#![allow(unused_crate_dependencies)]

use std::process::ExitCode;

use clap::Parser;

use cap_trace::cli::Cli;
use cap_trace::commands::dispatch;
use cap_trace::error::exit;
use cap_trace::render::escape;

fn main() -> ExitCode {
    // Start-up parses the kernel's BTF twice (ours for offsets, aya's in its loader): large,
    // short-lived buffers. Served by mmap, they go back to the system when freed instead of
    // staying in the heap for as long as the tracer runs. (musl's malloc, of the static build,
    // serves large buffers by mmap anyway and has no mallopt.)
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024)
    };
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
            // Messages quote names from workloads and engines: shown, never obeyed.
            eprintln!("cap-trace: error: {}", escape::text(&failure.message));
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

/// `log` records to stderr: warnings always, everything with --verbose.
fn init_logging(verbose: bool) {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if record.target().starts_with("cap_trace") || record.level() <= log::Level::Warn {
                // `warning:`, as every other warning cap-trace prints says it.
                let level = match record.level() {
                    log::Level::Warn => "warning".to_owned(),
                    other => other.as_str().to_lowercase(),
                };
                eprintln!(
                    "cap-trace: {level}: {}",
                    escape::text(&record.args().to_string())
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
