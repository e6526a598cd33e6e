//! `cap-trace profile NAME`: one container's profile from a running daemon, in any format.

use crate::cli::{Format, GlobalArgs, ProfileArgs};
use crate::commands::daemon;
use crate::commands::global::render_all;
use crate::error::{Failure, exit};
use crate::model::control::Request;

pub async fn command(args: ProfileArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let reply = daemon::ask(&args.socket.socket, &Request::Profile { name: args.name }).await?;
    render_all(&reply.profiles, global, Format::Text, false)?;
    Ok(exit::OK)
}
