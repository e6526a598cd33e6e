//! `cap-trace export DIR`: every profile a running daemon holds, one JSON file each.

use crate::cli::ExportArgs;
use crate::commands::daemon;
use crate::error::{Failure, exit};
use crate::model::control::Request;
use crate::render::write::{check_writable, write_atomic};

/// Writes each profile on its own: one that cannot be written is reported and the others are
/// written all the same; the command then fails (exit 4), saying how many were not written.
pub async fn command(args: &ExportArgs) -> Result<u8, Failure> {
    let reply = daemon::ask(&args.socket.socket, &Request::Profiles {}).await?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", args.dir.display())))?;
    // A directory cap-trace may not write into fails once, not once per profile.
    check_writable(&args.dir.join("profile.json"))?;
    let total = reply.profiles.len();
    let mut failed = 0;
    for profile in &reply.profiles {
        let identity = profile
            .workload
            .identity
            .as_deref()
            .unwrap_or(&profile.workload.name);
        let path = args.dir.join(daemon::file_name(identity));
        if let Err(e) = write_atomic(&path, profile.to_json().as_bytes()) {
            eprintln!("cap-trace: error: {e} (the profile of `{identity}`)");
            failed += 1;
        }
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if failed > 0 {
        return Err(Failure::runtime(format!(
            "{failed} of {total} profile{} could not be written to {}; the other {} were",
            plural(total),
            args.dir.display(),
            total - failed
        )));
    }
    eprintln!(
        "cap-trace: exported {total} profile{} to {}",
        plural(total),
        args.dir.display()
    );
    Ok(exit::OK)
}
