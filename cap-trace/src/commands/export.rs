//! `cap-trace export DIR`: every profile a running daemon holds, one JSON file each.

use crate::cli::ExportArgs;
use crate::commands::daemon;
use crate::error::{Failure, exit};
use crate::model::control::Request;
use crate::render::write::write_atomic;

pub async fn command(args: &ExportArgs) -> Result<u8, Failure> {
    let reply = daemon::ask(&args.socket.socket, &Request::Profiles {}).await?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", args.dir.display())))?;
    for profile in &reply.profiles {
        let identity = profile
            .workload
            .identity
            .as_deref()
            .unwrap_or(&profile.workload.name);
        let path = args.dir.join(daemon::file_name(identity));
        write_atomic(&path, profile.to_json().as_bytes())?;
    }
    eprintln!(
        "cap-trace: exported {} profile{} to {}",
        reply.profiles.len(),
        if reply.profiles.len() == 1 { "" } else { "s" },
        args.dir.display()
    );
    Ok(exit::OK)
}
