//! `cap-trace status`: ask a running daemon how it is doing, and what every identity it has
//! profiled held against what it needs.

use crate::cli::{Format, GlobalArgs, SocketArgs};
use crate::commands::daemon;
use crate::commands::global::{emit, format_refused, style, terminal_width};
use crate::error::{Failure, exit};
use crate::model::control::Request;
use crate::render::{fleet, status};

pub async fn command(args: &SocketArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let reply = daemon::ask(&args.socket, &Request::Status {}).await?;
    let status = reply
        .status
        .ok_or_else(|| Failure::runtime("the daemon sent no status"))?;
    let report = daemon::ask(&args.socket, &Request::Report {})
        .await?
        .report
        .ok_or_else(|| Failure::runtime("the daemon sent no report"))?;
    let text = match global.format() {
        Format::Json => {
            let mut json = serde_json::to_value(&status).expect("status serializes");
            json["report"] = serde_json::to_value(&report).expect("report serializes");
            format!("{}\n", serde_json::to_string_pretty(&json).expect("json"))
        }
        Format::Text => {
            let mut text = status::text(&status);
            if !report.is_empty() {
                text.push('\n');
                text.push_str(&fleet::table(
                    &report,
                    style(global),
                    global.verbose,
                    terminal_width(global),
                ));
            }
            text
        }
        other => return Err(format_refused("status", other)),
    };
    emit(global, &text)?;
    Ok(exit::OK)
}
