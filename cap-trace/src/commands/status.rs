//! `cap-trace status`: ask a running daemon how it is doing.

use crate::cli::{Format, GlobalArgs, SocketArgs};
use crate::commands::daemon;
use crate::commands::global::{emit, text_or_json_only};
use crate::error::{Failure, exit};
use crate::model::control::Request;
use crate::render::status;

pub async fn command(args: &SocketArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let reply = daemon::ask(&args.socket, &Request::Status {}).await?;
    let status = reply
        .status
        .ok_or_else(|| Failure::runtime("the daemon sent no status"))?;
    let text = match global.format() {
        Format::Json => {
            format!("{}\n", serde_json::to_string_pretty(&status).expect("json"))
        }
        Format::Text => status::text(&status),
        other => return Err(text_or_json_only("status", other)),
    };
    emit(global, &text)?;
    Ok(exit::OK)
}
