//! Every output, rendered from profiles: the text report, the deploy formats, and writing the
//! result (atomically) where it was asked for.

pub mod deploy;
pub mod escape;
pub mod events;
pub mod fleet;
pub mod gate;
pub mod html;
pub mod status;
pub mod text;
pub mod write;

use crate::model::profile::{Profile, WorkloadKind};

/// What every rendering's header says of its set: proven by runs of the workload, or only what
/// it was seen to use.
pub fn set_label(p: &Profile) -> String {
    match &p.verification {
        Some(v) if v.verified && !v.sources.is_empty() => {
            "verified minimal for each source (their union was not verified as a whole)".into()
        }
        Some(v) if v.verified => format!(
            "verified minimal ({} run{}, {})",
            v.runs.len(),
            if v.runs.len() == 1 { "" } else { "s" },
            seconds(v.duration_ms)
        ),
        _ => "observed (not verified)".into(),
    }
}

/// A duration for people: `0.04 s`, `12.3 s`.
pub fn seconds(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if ms < 10_000 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// What a running workload that cap-trace attached to (`--pid`, `--cgroup`, `--unit`) is
/// called in titles, from its (unescaped) name: `process 4242 (nginx)`, `cgroup /a/b`,
/// `service nginx.service`.
pub fn attached_title(w: &crate::model::profile::Workload) -> Option<String> {
    let what = match w.kind? {
        WorkloadKind::Process => "process",
        WorkloadKind::Cgroup => "cgroup",
        WorkloadKind::Unit => "service",
        _ => return None,
    };
    Some(format!("{what} {}", w.name))
}

/// The command that verifies a profile's workload, exactly, when there is one.
pub fn verify_command(p: &Profile) -> Option<String> {
    let w = &p.workload;
    match w.kind {
        Some(WorkloadKind::Command) => {
            let command = w.command.as_ref()?;
            let mut line = String::from("cap-trace run --verify");
            if let Some(user) = &w.user {
                // The group as it was resolved: the run is repeated exactly.
                line.push_str(" --user ");
                line.push_str(&escape::shell(&format!("{}:{}", user.name, user.gid)));
            }
            if let Some(h) = &w.health {
                line.push_str(" --health ");
                line.push_str(&escape::shell(&h.command));
            }
            line.push_str(" --");
            for arg in command {
                line.push(' ');
                line.push_str(&escape::shell(arg));
            }
            Some(line)
        }
        // A container of an engine whose record it can be re-created from.
        Some(WorkloadKind::Container)
            if w.kubernetes.is_none()
                && matches!(w.engine.as_deref(), Some("podman" | "docker")) =>
        {
            let mut line = format!("cap-trace --container {} --verify", escape::shell(&w.name));
            if let Some(h) = &w.health {
                line.push_str(if h.inside {
                    " --health-exec "
                } else {
                    " --health "
                });
                line.push_str(&escape::shell(&h.command));
            }
            Some(line)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::sample;

    #[test]
    fn verify_commands() {
        let mut p = sample();
        assert_eq!(
            verify_command(&p).unwrap(),
            "cap-trace run --verify -- chown nobody /tmp/x"
        );
        p.workload.user = Some(crate::model::profile::RunUser {
            name: "www-data".into(),
            uid: 33,
            gid: 33,
        });
        p.workload.command = Some(vec!["sh".into(), "-c".into(), "echo hi; exit 0".into()]);
        assert_eq!(
            verify_command(&p).unwrap(),
            "cap-trace run --verify --user www-data:33 -- sh -c 'echo hi; exit 0'"
        );
        // A podman or Docker container is re-created by name; a name is quoted for the shell.
        p.workload.kind = Some(WorkloadKind::Container);
        p.workload.name = "web; rm -rf /".into();
        p.workload.engine = Some("docker".into());
        assert_eq!(
            verify_command(&p).unwrap(),
            "cap-trace --container 'web; rm -rf /' --verify"
        );
        p.workload.health = Some(crate::model::verify::HealthResult {
            command: "curl -sf http://127.0.0.1/".into(),
            inside: true,
            passed: true,
            attempts: 1,
            status: Some(0),
            output: String::new(),
        });
        assert_eq!(
            verify_command(&p).unwrap(),
            "cap-trace --container 'web; rm -rf /' --verify --health-exec 'curl -sf http://127.0.0.1/'"
        );
        // containerd's and Kubernetes' containers cannot be re-created from a record.
        p.workload.engine = Some("containerd".into());
        assert_eq!(verify_command(&p), None);
        p.workload.kind = Some(WorkloadKind::Merged);
        assert_eq!(verify_command(&p), None);
        assert_eq!(set_label(&p), "observed (not verified)");
    }
}
