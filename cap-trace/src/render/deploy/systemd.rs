//! `[Service]` lines for a systemd unit. A service that runs as root holds what its bounding
//! set leaves it; one that runs as another `User=` gets nothing at exec unless the set is also
//! ambient. Which one applies is what the profile was learned with (`cap-trace run --user`).

use std::fmt::Write as _;

use crate::model::profile::{Profile, WorkloadKind};
use crate::model::suggest::Status;
use crate::render::deploy::{RenderError, header, kernel_names, only_one, workload_uids};
use crate::render::escape;

/// The user a profile was learned as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LearnedAs {
    Root,
    /// `User=` (its name when cap-trace was given one) and uid.
    User(Option<String>, u32),
    Unknown,
}

fn learned_as(p: &Profile) -> LearnedAs {
    let w = &p.workload;
    if let Some(u) = &w.user {
        return if u.uid == 0 {
            LearnedAs::Root
        } else {
            LearnedAs::User(Some(u.name.clone()), u.uid)
        };
    }
    // cap-trace runs a command as itself, root, unless told --user.
    if w.kind == Some(WorkloadKind::Command) {
        return LearnedAs::Root;
    }
    match workload_uids(p).as_slice() {
        uids if uids.contains(&0) => LearnedAs::Root,
        [uid] => LearnedAs::User(None, *uid),
        _ => LearnedAs::Unknown,
    }
}

/// Whether the profile is a systemd service's (`cap-trace --unit`), with a name that can be
/// a file name.
fn w_unit(p: &Profile) -> bool {
    p.workload.kind == Some(WorkloadKind::Unit)
        && !p.workload.name.contains('/')
        && !p.workload.name.starts_with('.')
}

/// The lines for the one profile's service.
pub fn systemd(profiles: &[Profile]) -> Result<String, RenderError> {
    let p = only_one(profiles, "systemd")?;
    let learned = learned_as(p);
    // What a container's --cap-add cannot give a non-root process, AmbientCapabilities= can:
    // a service run as that User= gets those too.
    let mut caps = p.suggestion.add.clone();
    if matches!(learned, LearnedAs::User(..)) {
        caps.extend(
            p.suggestion
                .capabilities
                .iter()
                .filter(|v| v.status == Status::NotGrantable)
                .map(|v| v.cap),
        );
        caps.sort_unstable();
        caps.dedup();
    }
    let set = kernel_names(&caps).join(" ");
    let mut out = String::new();
    for line in header(p) {
        out.push_str(&escape::systemd_comment(&line));
    }
    let said = match &learned {
        LearnedAs::Root => {
            "learned as root (no User=): the service holds what CapabilityBoundingSet= leaves it"
                .to_owned()
        }
        LearnedAs::User(Some(name), uid) => format!(
            "learned with User={name} (uid {uid}): run the service as that user; AmbientCapabilities= passes the set on to it"
        ),
        LearnedAs::User(None, uid) => format!(
            "learned as uid {uid}: run the service as that User=; AmbientCapabilities= passes the set on to it"
        ),
        LearnedAs::Unknown => {
            "the user it was learned as is not known: for a User= other than root, add AmbientCapabilities= with the same set".to_owned()
        }
    };
    out.push_str(&escape::systemd_comment(&said));
    if w_unit(p) {
        out.push_str(&escape::systemd_comment(&format!(
            "a drop-in for {0}: /etc/systemd/system/{0}.d/capabilities.conf, then `systemctl daemon-reload` and `systemctl restart {0}`",
            p.workload.name
        )));
    }
    out.push_str("[Service]\n");
    let _ = writeln!(out, "CapabilityBoundingSet={set}");
    if matches!(learned, LearnedAs::User(..)) {
        let _ = writeln!(out, "AmbientCapabilities={set}");
    }
    if caps.is_empty() {
        out.push_str("NoNewPrivileges=yes\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::sample;
    use crate::model::profile::RunUser;
    use crate::render::deploy::tests::HOSTILE;

    #[test]
    fn root_services_get_no_ambient_set() {
        let text = systemd(&[sample()]).unwrap();
        assert!(
            text.ends_with("[Service]\nCapabilityBoundingSet=CAP_CHOWN\n"),
            "{text}"
        );
        assert!(text.contains("# learned as root (no User=)"), "{text}");
        let mut none = sample();
        none.suggestion.add.clear();
        let text = systemd(&[none]).unwrap();
        assert!(
            text.ends_with("[Service]\nCapabilityBoundingSet=\nNoNewPrivileges=yes\n"),
            "{text}"
        );
    }

    #[test]
    fn a_unit_is_named_with_its_drop_in() {
        let mut p = sample();
        p.workload.kind = Some(WorkloadKind::Unit);
        p.workload.name = "web\napp.service".into();
        let text = systemd(&[p]).unwrap();
        assert!(text.contains("# learned by cap-trace"), "{text}");
        assert!(text.contains("from service web\\\\napp.service:"), "{text}");
        assert!(
            text.contains("# a drop-in for web\\\\napp.service: /etc/systemd/system/web\\\\napp.service.d/capabilities.conf"),
            "{text}"
        );
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || !l.contains("web")),
            "{text}"
        );
    }

    #[test]
    fn a_user_gets_the_set_ambient() {
        let mut p = sample();
        p.workload.user = Some(RunUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        });
        let text = systemd(&[p]).unwrap();
        assert!(
            text.contains("# learned with User=nobody (uid 65534)"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "[Service]\nCapabilityBoundingSet=CAP_CHOWN\nAmbientCapabilities=CAP_CHOWN\n"
            ),
            "{text}"
        );
        let mut container = sample();
        container.workload.kind = Some(WorkloadKind::Container);
        for c in &mut container.checks {
            c.uid = Some(1000);
        }
        assert!(
            systemd(&[container])
                .unwrap()
                .contains("AmbientCapabilities=CAP_CHOWN")
        );
    }

    #[test]
    fn hostile_names_stay_in_comments() {
        let mut p = sample();
        p.workload.name = HOSTILE.into();
        let text = systemd(&[p.clone()]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.iter().filter(|l| !l.starts_with('#')).count(),
            2,
            "{text}"
        );
        assert!(
            lines
                .iter()
                .all(|l| !l.starts_with('#') || !l.ends_with('\\') || l.ends_with("\\\\")),
            "{text}"
        );
        let err = systemd(&[p, sample()]).unwrap_err().to_string();
        assert!(err.contains("pick one with --name"), "{err}");
    }
}
