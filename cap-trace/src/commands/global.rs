//! What the global options mean for every command: the probe options, colours, the format a
//! result is rendered in and where it is written.

use std::io::{IsTerminal, Write as _};

use crate::cli::{ColorChoice, Command, ComposeLists, Format, GlobalArgs, ProbeArgs};
use crate::error::Failure;
use crate::kernel::ProbeOptions;
use crate::model::profile::Profile;
use crate::model::record::Check;
use crate::render::deploy::{self, RenderError, compose, kubernetes, systemd};
use crate::render::text::{self, Style, TextOptions};
use crate::render::{events, write};
use crate::session::OnCheck;

/// The refusal of a format `subcommand` does not write, naming those it does.
pub(crate) fn format_refused(subcommand: &str, other: Format) -> Failure {
    let accepted: Vec<&str> = crate::cli::formats(Some(subcommand))
        .iter()
        .map(|f| f.name())
        .collect();
    Failure::usage(format!(
        "{subcommand} writes {}, not {}",
        match accepted.as_slice() {
            [] => "no format".to_owned(),
            [one] => (*one).to_owned(),
            [first @ .., last] => format!("{} or {last}", first.join(", ")),
        },
        other.name()
    ))
}

pub(crate) fn probe_options(args: &ProbeArgs) -> ProbeOptions {
    ProbeOptions {
        choice: args.probe,
        flavor: args.tracepoint_flavor.into(),
        stream: args.stream,
        ring_buffer_bytes: args.ring_buffer,
        floor: args.floor,
        floor_sys_exit: args.floor_sys_exit,
        cut: args.cost_cut,
        outcomes: args.outcome_hook.into(),
        ..ProbeOptions::default()
    }
}

pub(crate) fn style(global: &GlobalArgs) -> Style {
    match global.color {
        ColorChoice::Always => Style { color: true },
        ColorChoice::Never => Style::plain(),
        ColorChoice::Auto => {
            Style::detect(global.output.is_none() && std::io::stdout().is_terminal())
        }
    }
}

fn command_name(command: Option<&Command>) -> &'static str {
    command.map_or("tracing containers", Command::name)
}

/// Checks the global options before any work is done: `--json` with another `--format`, a
/// format the command cannot write, and an `--output` that could not be written (its
/// directory missing, not writable, or one cap-trace refuses to write into) are refused now
/// rather than after a trace.
pub(crate) fn validate(global: &GlobalArgs, command: Option<&Command>) -> Result<(), Failure> {
    let name = command_name(command);
    if global.json
        && let Some(other) = global.format.filter(|f| *f != Format::Json)
    {
        return Err(Failure::usage(format!(
            "--json means --format json, not --format {}: give one of them",
            other.name()
        )));
    }
    match crate::cli::formats(command.map(Command::name)) {
        [] => {
            let given = if global.json {
                Some("--json")
            } else if global.format.is_some() {
                Some("--format")
            } else if global.output.is_some() {
                Some("--output")
            } else {
                None
            };
            if let Some(option) = given {
                return Err(Failure::usage(format!("{name} does not take {option}")));
            }
        }
        formats => {
            let format = global.format_or(if matches!(command, Some(Command::Merge(_))) {
                Format::Json
            } else {
                Format::Text
            });
            if !formats.contains(&format) {
                return Err(format_refused(name, format));
            }
        }
    }
    for (id, given, option) in [
        ("events", global.events, "--events"),
        ("explain", global.explain, "--explain"),
        (
            "compose_lists",
            global.compose_lists.is_some(),
            "--compose-lists",
        ),
    ] {
        if given && !crate::cli::takes(command.map(Command::name), id) {
            return Err(Failure::usage(format!("{name} does not take {option}")));
        }
    }
    if let Some(output) = &global.output {
        write::check_writable(output)?;
    }
    Ok(())
}

/// The live view of `--events`, if asked for: each kind of check, as it is first seen, on
/// stdout as a line (the header before the first), or a JSON line with `--json`.
pub(crate) fn live_view(global: &GlobalArgs) -> Option<OnCheck> {
    if !global.events {
        return None;
    }
    let json = global.format() == Format::Json;
    let mut header = !json;
    Some(Box::new(move |workload: &str, check: &Check| {
        let mut out = std::io::stdout().lock();
        if std::mem::take(&mut header) {
            let _ = out.write_all(events::text_header().as_bytes());
        }
        let line = if json {
            events::json_line(workload, check)
        } else {
            events::text_line(workload, check)
        };
        // A closed stdout ends the live view, not the trace: the report still goes to --output.
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }))
}

/// The width text is wrapped to: `COLUMNS` when set, else the terminal's (TIOCGWINSZ) when
/// the result goes to one, else 80. Never less than 40.
pub(crate) fn terminal_width(global: &GlobalArgs) -> usize {
    let columns = crate::session::columns_asked();
    let tty = || {
        if global.output.is_some() || !std::io::stdout().is_terminal() {
            return None;
        }
        crate::session::terminal_columns(libc::STDOUT_FILENO)
    };
    columns.or_else(tty).unwrap_or(80).max(40)
}

/// Writes a command's text result to `--output` (atomically) or stdout. A result that cannot
/// be written where it was asked for is not lost: it goes to stdout instead (or, if stdout is
/// closed too, to a private file the error names), and the error says so.
pub(crate) fn emit(global: &GlobalArgs, text: &str) -> Result<(), Failure> {
    let Some(output) = global.output.as_deref() else {
        return Ok(write::emit(None, text)?);
    };
    let Err(error) = write::emit(Some(output), text) else {
        return Ok(());
    };
    let kept = match write::emit(None, text) {
        Ok(()) => "it was written to stdout instead".to_owned(),
        Err(_) => {
            let copy = std::env::temp_dir().join(format!(
                "cap-trace-{}-{}",
                std::process::id(),
                output
                    .file_name()
                    .map_or_else(|| "output".into(), |n| n.to_string_lossy())
            ));
            match write::write_file(&copy, text.as_bytes(), write::Mode::Private) {
                Ok(()) => format!("a copy is in {}", copy.display()),
                Err(e) => format!("and no copy could be kept ({e})"),
            }
        }
    };
    Err(Failure::runtime(format!("{error}; {kept}")))
}

/// After a trace written to `--output`: one line on stderr naming the file.
pub(crate) fn say_written(global: &GlobalArgs, profiles: usize) {
    if let Some(output) = &global.output {
        eprintln!(
            "cap-trace: wrote {profiles} profile{} to {}",
            if profiles == 1 { "" } else { "s" },
            crate::model::text::shown(&output.display().to_string())
        );
    }
}

/// Renders profiles in the format asked for (or `default`). One profile renders as itself;
/// several as a JSON array, text reports one after another, or what the deploy format makes of
/// them. `traced`: the profiles come from a trace just made, so when the format cannot render
/// them they are written as JSON instead of being lost, and the error says so.
pub(crate) fn render_all(
    profiles: &[Profile],
    global: &GlobalArgs,
    default: Format,
    traced: bool,
) -> Result<(), Failure> {
    match render(profiles, global, default) {
        // After a live view on stdout: JSON lines stay JSON lines (one profile a line), and
        // the report stands apart from the lines above it.
        Ok(_) if global.events && global.output.is_none() && global.format() == Format::Json => {
            let mut lines = String::new();
            for p in profiles {
                lines.push_str(&serde_json::to_string(p).expect("profiles serialize"));
                lines.push('\n');
            }
            emit(global, &lines)
        }
        Ok(text) => {
            warn_environment(profiles, global.format_or(default));
            if global.events && global.output.is_none() {
                emit(global, &format!("\n{text}"))
            } else {
                emit(global, &text)
            }
        }
        Err(e) if traced && !profiles.is_empty() => {
            emit(global, &json(profiles))?;
            Err(Failure::usage(format!(
                "{e}; the profiles were written as JSON instead: save them and render with `cap-trace show FILE --name NAME --format {}`",
                global.format_or(default).name()
            )))
        }
        Err(e) => Err(Failure::usage(e)),
    }
}

/// Says on stderr what a deploy format's target may need beyond each set, where the profile
/// was learned under more permissive sysctls than the target has.
fn warn_environment(profiles: &[Profile], format: Format) {
    let target = match format {
        Format::Text | Format::Json => return,
        Format::Docker => deploy::Target::Docker,
        Format::Podman => deploy::Target::Podman,
        Format::Compose => deploy::Target::Compose,
        Format::K8s => deploy::Target::Kubernetes,
        Format::Oci | Format::Systemd => deploy::Target::Other,
    };
    for p in profiles {
        for w in deploy::environment_warnings(p, target) {
            eprintln!("cap-trace: warning: {}", crate::model::text::shown(&w));
        }
    }
}

fn json(profiles: &[Profile]) -> String {
    match profiles {
        [one] => one.to_json(),
        many => format!(
            "{}\n",
            serde_json::to_string_pretty(many).expect("profiles serialize")
        ),
    }
}

fn render(
    profiles: &[Profile],
    global: &GlobalArgs,
    default: Format,
) -> Result<String, RenderError> {
    Ok(match global.format_or(default) {
        Format::Text => {
            if profiles.is_empty() {
                "no workload was traced\n".to_owned()
            } else {
                let opts = TextOptions {
                    verbose: global.verbose,
                    explain: global.explain,
                    width: terminal_width(global),
                };
                profiles
                    .iter()
                    .map(|p| text::text(p, style(global), opts))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Format::Json => json(profiles),
        Format::Docker | Format::Podman => deploy::engine_flags(profiles),
        Format::Compose => compose::compose(
            profiles,
            match global.compose_lists.unwrap_or(ComposeLists::Override) {
                ComposeLists::Override => compose::Lists::Override,
                ComposeLists::Merge => compose::Lists::Merge,
            },
        )?,
        Format::K8s => kubernetes::kubernetes(profiles)?,
        Format::Oci => deploy::oci(profiles)?,
        Format::Systemd => systemd::systemd(profiles)?,
    })
}
