//! `cap-trace ps`: what every running container holds, from `/proc` (no tracing), against
//! what its profile says it needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::{Format, GlobalArgs, PsArgs};
use crate::commands::global::{emit, style, text_or_json_only};
use crate::error::{Failure, exit};
use crate::linux::caps;
use crate::model::fleet::{self, Row};
use crate::model::merge::merge_by_workload;
use crate::model::profile::Profile;
use crate::render;
use crate::session::container::{self, ContainerInfo, Engines};
use crate::session::procs::{self, Holding, Process};

pub fn command(args: &PsArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let profiles = read_profiles(args)?;
    let (containers, outside) = procs::by_container(procs::all());
    let engines = Engines::discover(args.engine_socket.as_deref());
    let mut rows: Vec<Row> = containers
        .iter()
        .filter_map(|holding| {
            let info = engines.inspect(&holding.container.id);
            let labelled = args.labels.iter().all(|(k, v)| {
                info.as_ref()
                    .is_some_and(|i| i.labels.get(k).is_some_and(|have| have == v))
            });
            labelled.then(|| container_row(holding, info.as_ref(), &profiles))
        })
        .collect();
    if args.all && args.labels.is_empty() {
        rows.extend(outside.iter().map(process_row));
    }
    fleet::sort_by_risk(&mut rows);
    let text = match global.format() {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        ),
        Format::Text => render::fleet::table(&rows, style(global), global.verbose),
        other => return Err(text_or_json_only("ps", other)),
    };
    emit(global, &text)?;
    Ok(exit::OK)
}

/// Every profile given, merged per workload, with where each came from.
fn read_profiles(args: &PsArgs) -> Result<Vec<(Profile, String)>, Failure> {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in args.profiles.iter().chain(&args.profile_dirs) {
        if path.is_dir() {
            files.extend(json_files(path)?);
        } else {
            files.push(path.clone());
        }
    }
    let mut inputs: Vec<(String, Profile)> = Vec::new();
    for file in &files {
        let source = file.display().to_string();
        for profile in Profile::read_all(file)? {
            inputs.push((source.clone(), profile));
        }
    }
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (source, profile) in &inputs {
        let list = sources
            .entry(profile.workload.key().to_owned())
            .or_default();
        if !list.contains(source) {
            list.push(source.clone());
        }
    }
    Ok(merge_by_workload(inputs)
        .into_iter()
        .map(|p| {
            let source = sources
                .get(p.workload.key())
                .map(|s| s.join(", "))
                .unwrap_or_default();
            (p, source)
        })
        .collect())
}

/// The `.json` files of a directory (a daemon's state dir), sorted.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::usage(format!(
            "cannot read the profile directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn find<'a>(
    profiles: &'a [(Profile, String)],
    identity: &str,
    id: Option<&str>,
) -> Option<&'a (Profile, String)> {
    profiles
        .iter()
        .find(|(p, _)| p.workload.key() == identity)
        .or_else(|| {
            id.and_then(|id| {
                profiles
                    .iter()
                    .find(|(p, _)| p.workload.id.as_deref() == Some(id))
            })
        })
}

fn container_row(
    holding: &Holding,
    info: Option<&ContainerInfo>,
    profiles: &[(Profile, String)],
) -> Row {
    let c = &holding.container;
    let (identity, engine, image) = match info {
        Some(info) => {
            let workload = container::workload(info, Some(c.runtime), c.pod_uid.as_deref());
            (workload.name, workload.engine, workload.image)
        }
        None => (
            c.id.chars().take(12).collect(),
            Some(c.runtime.engine_name().to_owned()),
            None,
        ),
    };
    let held = holding.effective();
    let bounding = holding.bounding();
    let found = find(profiles, &identity, Some(&c.id));
    let (profile, comparison) = match found {
        Some((p, source)) => {
            let (r, c) = fleet::against(&bounding, p, source);
            (Some(r), Some(c))
        }
        None => (None, None),
    };
    Row {
        identity,
        engine,
        id: Some(c.id.clone()),
        image,
        users: holding.users(),
        pids: holding.processes.iter().map(|p| p.pid).collect(),
        held,
        bounding: Some(bounding),
        profile,
        comparison,
    }
}

/// A process outside containers: what it holds (processes have no identity to find a profile
/// by).
fn process_row(process: &Process) -> Row {
    Row {
        identity: format!("pid {} ({})", process.pid, process.comm),
        engine: None,
        id: None,
        image: None,
        users: vec![process.euid],
        pids: vec![process.pid],
        held: caps::from_mask(process.effective),
        bounding: Some(caps::from_mask(process.bounding)),
        profile: None,
        comparison: None,
    }
}
