//! `cap-trace show PROFILE.json`: render a saved profile, without tracing again.

use crate::cli::{Format, GlobalArgs, ShowArgs};
use crate::commands::global::render_all;
use crate::error::{Failure, exit};
use crate::model::profile::Profile;

pub fn command(args: &ShowArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let profiles = Profile::read_all(&args.profile)?;
    render_all(&profiles, global, Format::Text)?;
    Ok(exit::OK)
}
