//! `cap-trace show PROFILE.json`: render a saved profile, without tracing again.

use crate::cli::{Format, GlobalArgs, ShowArgs};
use crate::commands::global::render_all;
use crate::error::{Failure, exit};
use crate::model::profile::{Profile, select};

pub fn command(args: &ShowArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let profiles = select(Profile::read_all(&args.profile)?, &args.select.names)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.profile.display())))?;
    render_all(&profiles, global, Format::Text, false)?;
    Ok(exit::OK)
}
