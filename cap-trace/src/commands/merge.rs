//! `cap-trace merge A.json B.json ...`: one profile from several runs, replicas or nodes.

use crate::cli::{Format, GlobalArgs, MergeArgs};
use crate::commands::global::render_all;
use crate::error::{Failure, exit};
use crate::model::merge::merge;
use crate::model::profile::Profile;

pub fn command(args: &MergeArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let mut inputs = Vec::new();
    for path in &args.profiles {
        for profile in Profile::read_all(path)? {
            inputs.push((path.display().to_string(), profile));
        }
    }
    let merged = merge(inputs);
    render_all(std::slice::from_ref(&merged), global, Format::Json)?;
    Ok(exit::OK)
}
