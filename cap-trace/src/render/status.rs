//! `cap-trace status`: a running daemon's status, in words.

use crate::model::control::Status;
use crate::model::record::describe_losses;

/// The status as `cap-trace status` prints it.
pub fn text(s: &Status) -> String {
    let running = s.containers.iter().filter(|c| c.running).count();
    let mut out = format!(
        "cap-trace daemon: up {} s, {} ({})\n  engines: {}\n  capabilities kept: {}\n  state dir: {} (every {} s; last written {}{})\n  containers: {} seen, {} running now, {} profiles\n  checks: {}, events: {}, losses: {}\n  memory: {:.1} MiB (peak {:.1} MiB)\n",
        s.uptime_s,
        s.hook,
        s.backend,
        if s.engines.is_empty() {
            "none (containers are named from cgroup paths only)".to_string()
        } else {
            s.engines.join(", ")
        },
        if s.capabilities.is_empty() {
            "none".to_string()
        } else {
            s.capabilities.join(",")
        },
        s.state_dir,
        s.interval_s,
        s.last_persist.as_deref().unwrap_or("never"),
        s.persist_error
            .as_deref()
            .map(|e| format!("; LAST WRITE FAILED: {e}"))
            .unwrap_or_default(),
        s.containers_seen,
        running,
        s.profiles,
        s.checks,
        s.events,
        describe_losses(&s.losses),
        s.rss_kib as f64 / 1024.0,
        s.peak_rss_kib as f64 / 1024.0,
    );
    for c in &s.containers {
        out.push_str(&format!(
            "  {} {}\n",
            if c.running { "running" } else { "exited " },
            c.name
        ));
    }
    out
}
