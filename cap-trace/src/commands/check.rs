//! `cap-trace check --baseline BASE.json ...`: the CI regression gate. Traces (or reads) the
//! workload and compares it with its baseline: exit 0 when it passes, 1 when it does not.

use crate::cli::{CheckArgs, CheckRun, Format, GlobalArgs};
use crate::commands::containers::follow_containers;
use crate::commands::global::{emit, format_refused, style};
use crate::commands::run::run_command;
use crate::error::{Failure, exit};
use crate::model::gate;
use crate::model::profile::Profile;
use crate::render::gate as render_gate;

pub async fn command(args: CheckArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let baselines = Profile::read_all(&args.baseline)?;
    let baseline_name = args.baseline.display().to_string();
    if args.require_verified
        && let Some(unverified) = baselines.iter().find(|b| !b.verified())
    {
        return Err(Failure {
            code: exit::CHECK_FAILED,
            message: format!(
                "baseline {baseline_name} is not verified: its set for `{}` is what the workload was seen to use, an upper bound; {}, or leave out --require-verified",
                crate::render::escape::text(&unverified.workload.name),
                match (
                    crate::render::verify_command(unverified),
                    unverified.workload.kind
                ) {
                    // The options go before the command's `--`.
                    (Some(c), _) => format!(
                        "make the baseline with `{}`",
                        crate::render::escape::text(&c.replacen(
                            " --verify",
                            &format!(
                                " --verify --json -o {}",
                                crate::render::escape::shell(&baseline_name)
                            ),
                            1
                        ))
                    ),
                    (None, Some(crate::model::profile::WorkloadKind::Container)) =>
                        "its engine cannot re-create the container: verify its workload under podman or Docker (`cap-trace --container NAME --verify`)".to_owned(),
                    (None, _) =>
                        "verify each source with `cap-trace run --verify` and merge them".to_owned(),
                }
            ),
        });
    }
    let sources = u8::from(args.profile.is_some())
        + u8::from(!args.containers.is_empty())
        + u8::from(args.run.is_some());
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
        other => return Err(format_refused("check", other)),
    };
    emit(global, &text)?;
    Ok(if verdicts.iter().all(|v| v.passed) {
        exit::OK
    } else {
        exit::CHECK_FAILED
    })
}
