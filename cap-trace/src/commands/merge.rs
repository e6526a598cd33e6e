//! `cap-trace merge A.json B.json ...`: one profile per workload from several runs, replicas or
//! nodes (or one for all of them, with `--as`).

use crate::cli::{Format, GlobalArgs, MergeArgs};
use crate::commands::global::render_all;
use crate::error::{Failure, exit};
use crate::model::merge::{fold, merge_by_workload};
use crate::model::profile::{Profile, select};

pub fn command(args: &MergeArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let mut inputs = Vec::new();
    for path in &args.profiles {
        for profile in Profile::read_all(path)? {
            inputs.push((path.display().to_string(), profile));
        }
    }
    let merged = match &args.fold_as {
        Some(name) => vec![fold(inputs, name)],
        None => merge_by_workload(inputs),
    };
    let merged = select(merged, &args.select.names).map_err(Failure::usage)?;
    render_all(&merged, global, Format::Json, false)?;
    Ok(exit::OK)
}
