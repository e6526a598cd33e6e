//! What the global options mean for every command: the probe options, colours, the format a
//! result is rendered in and where it is written.

use std::io::IsTerminal;

use crate::cli::{ColorChoice, ComposeLists, Format, GlobalArgs, ProbeArgs};
use crate::error::Failure;
use crate::kernel::ProbeOptions;
use crate::model::profile::Profile;
use crate::render::deploy::{self, RenderError, compose, kubernetes, systemd};
use crate::render::text::{self, Style, TextOptions};
use crate::render::write;

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

/// The refusal of a command that writes only text or JSON.
pub(crate) fn text_or_json_only(command: &str, other: Format) -> Failure {
    Failure::usage(format!(
        "{command} writes text or json, not {}",
        format_name(other)
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

/// Writes a command's text result to `--output` (atomically) or stdout.
pub(crate) fn emit(global: &GlobalArgs, text: &str) -> Result<(), Failure> {
    Ok(write::emit(global.output.as_deref(), text)?)
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
        Ok(text) => emit(global, &text),
        Err(e) if traced && !profiles.is_empty() => {
            emit(global, &json(profiles))?;
            Err(Failure::usage(format!(
                "{e}; the profiles were written as JSON instead: save them and render with `cap-trace show FILE --name NAME --format {}`",
                format_name(global.format_or(default))
            )))
        }
        Err(e) => Err(Failure::usage(e)),
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
            match global.compose_lists {
                ComposeLists::Override => compose::Lists::Override,
                ComposeLists::Merge => compose::Lists::Merge,
            },
        )?,
        Format::K8s => kubernetes::kubernetes(profiles)?,
        Format::Oci => deploy::oci(profiles)?,
        Format::Systemd => systemd::systemd(profiles)?,
    })
}
