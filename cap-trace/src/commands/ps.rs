//! `cap-trace ps`: what every running container holds, from `/proc` (no tracing), against
//! what its profile says it needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::{Format, GlobalArgs, PsArgs};
use crate::commands::daemon;
use crate::commands::global::{emit, format_refused, style, terminal_width};
use crate::error::{Failure, exit};
use crate::linux::caps;
use crate::model::control::{DEFAULT_STATE_DIR, Request};
use crate::model::fleet::{self, Row};
use crate::model::merge::merge_by_workload;
use crate::model::profile::{Profile, WorkloadKind};
use crate::render;
use crate::session::container::Engines;
use crate::session::procs::{self, Process, Running};

pub async fn command(args: &PsArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let mut inputs = args.profiles.clone();
    inputs.extend(args.profile_dirs.iter().cloned());
    let profiles = Profiles::find(&inputs, &args.socket.socket).await?;
    eprintln!("cap-trace: {}", profiles.looked);
    let engines = Engines::discover(args.engine_socket.as_deref());
    let (containers, outside) = procs::running(&engines);
    let mut rows: Vec<Row> = containers
        .iter()
        .filter(|c| {
            args.labels.iter().all(|(k, v)| {
                c.labels
                    .as_ref()
                    .is_some_and(|l| l.get(k).is_some_and(|have| have == v))
            })
        })
        .map(|c| container_row(c, &profiles.list))
        .collect();
    if args.all && args.labels.is_empty() {
        rows.extend(outside.iter().map(|p| process_row(p, &profiles.list)));
    }
    fleet::sort_by_risk(&mut rows);
    let text = match global.format() {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        ),
        Format::Text => {
            render::fleet::table(&rows, style(global), global.verbose, terminal_width(global))
        }
        other => return Err(format_refused("ps", other)),
    };
    emit(global, &text)?;
    Ok(exit::OK)
}

/// The profiles to compare with, merged per workload, each with where it came from.
pub(crate) struct Profiles {
    pub list: Vec<(Profile, String)>,
    /// Where they were looked for, and what was found, for people.
    pub looked: String,
}

impl Profiles {
    /// The profiles in `paths` (files or directories); without any, a local daemon's: asked on
    /// its control socket, else read from the state dir it is deployed with.
    pub(crate) async fn find(paths: &[PathBuf], socket: &Path) -> Result<Profiles, Failure> {
        let count = |n: usize| format!("{n} profile{}", if n == 1 { "" } else { "s" });
        if !paths.is_empty() {
            let list = read_profiles(paths)?;
            let from = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Ok(Profiles {
                looked: format!("{} from {from}", count(list.len())),
                list,
            });
        }
        let refused = match daemon::ask(socket, &Request::Profiles {}).await {
            Ok(reply) => {
                let source = format!("cap-trace daemon ({})", socket.display());
                let list = merged(
                    reply
                        .profiles
                        .into_iter()
                        .map(|p| (source.clone(), p))
                        .collect(),
                );
                return Ok(Profiles {
                    looked: format!(
                        "{} from the daemon at {}",
                        count(list.len()),
                        socket.display()
                    ),
                    list,
                });
            }
            Err(f) => f.message,
        };
        let dir = Path::new(DEFAULT_STATE_DIR);
        if !dir.is_dir() {
            return Ok(Profiles {
                list: Vec::new(),
                looked: format!(
                    "no profiles: no daemon answered ({refused}) and {DEFAULT_STATE_DIR} does not exist; give profile files or a directory of them"
                ),
            });
        }
        match read_profiles(&[dir.to_owned()]) {
            Ok(list) => Ok(Profiles {
                looked: format!(
                    "{} from {DEFAULT_STATE_DIR} (no daemon answered: {refused})",
                    count(list.len())
                ),
                list,
            }),
            Err(f) => Ok(Profiles {
                list: Vec::new(),
                looked: format!(
                    "no profiles: no daemon answered ({refused}), and {}",
                    f.message
                ),
            }),
        }
    }
}

/// Every profile in `paths`, merged per workload, with where each came from.
fn read_profiles(paths: &[PathBuf]) -> Result<Vec<(Profile, String)>, Failure> {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
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
    Ok(merged(inputs))
}

/// Profiles merged per workload, each with its sources.
fn merged(inputs: Vec<(String, Profile)>) -> Vec<(Profile, String)> {
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (source, profile) in &inputs {
        let list = sources
            .entry(profile.workload.key().to_owned())
            .or_default();
        if !list.contains(source) {
            list.push(source.clone());
        }
    }
    merge_by_workload(inputs)
        .into_iter()
        .map(|p| {
            let source = sources
                .get(p.workload.key())
                .map(|s| s.join(", "))
                .unwrap_or_default();
            (p, source)
        })
        .collect()
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

/// Whether a running container is the workload of `profile`: the same identity, or the same
/// container id.
pub(crate) fn runs(container: &Running, profile: &Profile) -> bool {
    container.identity == profile.workload.key()
        || profile.workload.id.as_deref() == Some(container.holding.container.id.as_str())
}

fn container_row(c: &Running, profiles: &[(Profile, String)]) -> Row {
    let found = profiles
        .iter()
        .find(|(p, _)| p.workload.key() == c.identity)
        .or_else(|| profiles.iter().find(|(p, _)| runs(c, p)));
    let bounding = c.holding.bounding();
    let (profile, comparison) = match found {
        Some((p, source)) => {
            let (r, c) = fleet::against(&bounding, p, source);
            (Some(r), Some(c))
        }
        None => (None, None),
    };
    Row {
        identity: c.identity.clone(),
        engine: c.engine.clone(),
        id: Some(c.holding.container.id.clone()),
        image: c.image.clone(),
        users: c.holding.users(),
        pids: c.holding.processes.iter().map(|p| p.pid).collect(),
        held: c.holding.effective(),
        held_unknown: false,
        bounding: Some(bounding),
        profile,
        comparison,
    }
}

/// A process outside containers: what it holds, against the profile of a command run with
/// exactly its command line (`cap-trace run`), when there is one.
fn process_row(process: &Process, profiles: &[(Profile, String)]) -> Row {
    let bounding = caps::from_mask(process.bounding);
    let found = profiles.iter().find(|(p, _)| {
        p.workload.kind == Some(WorkloadKind::Command)
            && !process.cmdline.is_empty()
            && p.workload.command.as_deref() == Some(process.cmdline.as_slice())
    });
    let (profile, comparison) = match found {
        Some((p, source)) => {
            let (r, c) = fleet::against(&bounding, p, source);
            (Some(r), Some(c))
        }
        None => (None, None),
    };
    Row {
        identity: format!("pid {} ({})", process.pid, process.comm),
        engine: None,
        id: None,
        image: None,
        users: vec![process.euid],
        pids: vec![process.pid],
        held: caps::from_mask(process.effective),
        held_unknown: false,
        bounding: Some(bounding),
        profile,
        comparison,
    }
}
