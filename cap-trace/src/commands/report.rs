//! `cap-trace report`: every profiled workload, what it holds (from `/proc`, when a container
//! of it runs here) against what it needs, as text, JSON, or one self-contained HTML page.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::{Format, GlobalArgs, ReportArgs};
use crate::commands::global::{emit, format_refused, style, terminal_width};
use crate::commands::ps::{self, Profiles};
use crate::error::{Failure, exit};
use crate::model::fleet::{self, Row};
use crate::model::profile::{Profile, rfc3339};
use crate::render;
use crate::session::container::Engines;
use crate::session::procs::{self, Holding, Running};

pub async fn command(args: &ReportArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    if args.html.is_some() && (global.json || global.format.is_some() || global.output.is_some()) {
        return Err(Failure::usage(
            "--html writes the page to its FILE; --json, --format and --output are for the text report: give one or the other",
        ));
    }
    let profiles = Profiles::find(&args.profiles, &args.socket.socket).await?;
    eprintln!("cap-trace: {}", profiles.looked);
    let engines = Engines::discover(args.engine_socket.as_deref());
    let (containers, _) = procs::running(&engines);
    let workloads = rows(profiles.list, &containers);
    if let Some(path) = &args.html {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "this host".to_owned(), |h| h.trim().to_owned());
        let generated = rfc3339(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let page = render::html::page(&render::html::Page {
            host: &host,
            generated: &generated,
            sources: &profiles.looked,
            workloads: &workloads,
        });
        render::write::write_atomic(path, page.as_bytes())?;
        eprintln!(
            "cap-trace: wrote the report of {} workload{} to {}",
            workloads.len(),
            if workloads.len() == 1 { "" } else { "s" },
            path.display()
        );
        return Ok(exit::OK);
    }
    let rows: Vec<Row> = workloads.into_iter().map(|(row, _)| row).collect();
    let text = match global.format() {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        ),
        Format::Text if rows.is_empty() => "no profiles\n".to_owned(),
        Format::Text => {
            render::fleet::table(&rows, style(global), global.verbose, terminal_width(global))
        }
        other => return Err(format_refused("report", other)),
    };
    emit(global, &text)?;
    Ok(exit::OK)
}

/// One row per profile, riskiest excess first: held from the containers of it that run here
/// (all replicas together), else held unknown.
fn rows(profiles: Vec<(Profile, String)>, containers: &[Running]) -> Vec<(Row, Profile)> {
    let mut rows: Vec<(Row, Profile)> = profiles
        .into_iter()
        .map(|(profile, source)| {
            let running: Vec<&Running> = containers
                .iter()
                .filter(|c| ps::runs(c, &profile))
                .collect();
            let row = match running.first() {
                None => fleet::needs_only(&profile, &source),
                Some(first) => {
                    let all = Holding {
                        container: first.holding.container.clone(),
                        processes: running
                            .iter()
                            .flat_map(|c| c.holding.processes.iter().cloned())
                            .collect(),
                    };
                    let bounding = all.bounding();
                    let (profile_ref, comparison) = fleet::against(&bounding, &profile, &source);
                    Row {
                        identity: profile.workload.key().to_owned(),
                        engine: first.engine.clone(),
                        id: (running.len() == 1).then(|| first.holding.container.id.clone()),
                        image: first.image.clone(),
                        users: all.users(),
                        pids: all.processes.iter().map(|p| p.pid).collect(),
                        held: all.effective(),
                        held_unknown: false,
                        bounding: Some(bounding),
                        profile: Some(profile_ref),
                        comparison: Some(comparison),
                    }
                }
            };
            (row, profile)
        })
        .collect();
    rows.sort_by(|a, b| fleet::riskier_first(&a.0, &b.0));
    rows
}
