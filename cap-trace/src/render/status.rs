//! `cap-trace status`: a running daemon's status, in words; the names containers and engines
//! chose are shown escaped ([`escape::text`]).

use crate::model::control::Status;
use crate::model::record::describe_losses;
use crate::render::escape;

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
            escape::text(&s.engines.join(", ")).into_owned()
        },
        if s.capabilities.is_empty() {
            "none".to_string()
        } else {
            s.capabilities.join(",")
        },
        escape::text(&s.state_dir),
        s.interval_s,
        escape::text(s.last_persist.as_deref().unwrap_or("never")),
        s.persist_error
            .as_deref()
            .map(|e| format!("; LAST WRITE FAILED: {}", escape::text(e)))
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
            escape::text(&c.name)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::control::ContainerStatus;
    use crate::model::record::Losses;

    #[test]
    fn names_reach_the_terminal_escaped() {
        let status = Status {
            backend: "tracepoint".into(),
            hook: "raw_tracepoint".into(),
            engines: vec!["podman \u{1b}[2J".into()],
            engine_state: Vec::new(),
            waiting_for_names: 0,
            map_entries: crate::model::control::MapEntries::default(),
            capabilities: vec!["BPF".into()],
            uptime_s: 3,
            state_dir: "/var/lib/cap-trace".into(),
            interval_s: 30.0,
            profiles: 1,
            containers: vec![ContainerStatus {
                name: "shop/web\n  running fake\u{1b}[31m".into(),
                running: true,
            }],
            containers_seen: 1,
            checks: 0,
            events: 0,
            losses: Losses::default(),
            last_persist: None,
            persist_error: Some("disk\rfull".into()),
            peak_rss_kib: 1024,
            rss_kib: 1024,
        };
        let out = text(&status);
        assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out}");
        assert!(
            out.contains("  running shop/web\\n  running fake\\e[31m\n"),
            "{out}"
        );
        assert_eq!(
            out.lines().filter(|l| l.starts_with("  running ")).count(),
            1,
            "{out}"
        );
    }
}
