//! Rendering profiles for where they are deployed: container engine flags, a compose override
//! file ([`compose`]), a Kubernetes patch ([`kubernetes`]), an OCI runtime spec fragment, systemd
//! unit lines ([`systemd`]). Every format that has comments starts with [`header`], escaped for
//! it; strings from the workload reach no output any other way than through
//! [`crate::render::escape`].

pub mod compose;
pub mod kubernetes;
pub mod systemd;

use std::fmt::Write as _;

use crate::linux::caps::Cap;
use crate::model::profile::{Profile, WorkloadKind};
use crate::model::record::Phase;
use crate::render::{escape, set_label};

/// A profile set that a format cannot render as asked (several where it describes one, none
/// that fits): a usage error that says how to pick.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// What every deploy format says first, one line each, unescaped (each format writes them as its
/// own comments): where the set was learned and whether it is verified minimal or only observed,
/// and whether the trace was complete.
pub fn header(p: &Profile) -> Vec<String> {
    let w = &p.workload;
    let what = match w.kind {
        Some(WorkloadKind::Container) => format!("container {}", w.name),
        Some(WorkloadKind::Merged) => format!("the profiles merged as {}", w.name),
        Some(WorkloadKind::Process | WorkloadKind::Cgroup | WorkloadKind::Unit) => {
            crate::render::attached_title(w).unwrap_or_default()
        }
        _ => format!("`{}`", w.name),
    };
    let merged = match w.sources.len() {
        0 | 1 => String::new(),
        n => format!(" ({n} profiles merged)"),
    };
    vec![
        format!(
            "learned by {} from {what}{merged}: {}",
            p.generator,
            set_label(p)
        ),
        match p.incompleteness() {
            None => "complete trace: nothing was lost".to_owned(),
            Some(why) => format!("INCOMPLETE trace ({why}): the set may miss capabilities"),
        },
    ]
}

/// The header of `p` as `#` comment lines, indented by `indent` spaces.
pub(crate) fn hash_header(out: &mut String, p: &Profile, indent: usize) {
    for line in header(p) {
        let _ = write!(out, "{:indent$}{}", "", escape::hash_comment(&line));
    }
}

/// Workload names for an error message: escaped, quoted, comma-separated.
pub(crate) fn listed(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{}`", escape::text(n.as_ref())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one profile a single-workload format describes, or an error naming the choices.
pub(crate) fn only_one<'a>(
    profiles: &'a [Profile],
    format: &str,
) -> Result<&'a Profile, RenderError> {
    match profiles {
        [one] => Ok(one),
        [] => Err(RenderError(format!("no profile to render as {format}"))),
        many => Err(RenderError(format!(
            "the {format} format describes one workload and there are {} profiles ({}): pick one with --name NAME",
            many.len(),
            listed(many.iter().map(|p| p.workload.key()))
        ))),
    }
}

pub(crate) fn names(caps: &[Cap]) -> Vec<String> {
    caps.iter().map(|c| c.name()).collect()
}

pub(crate) fn kernel_names(caps: &[Cap]) -> Vec<String> {
    caps.iter().map(|c| c.kernel_name()).collect()
}

/// A YAML block sequence of `items` after a key (` []` when empty).
pub(crate) fn yaml_list(out: &mut String, indent: usize, items: &[String]) {
    if items.is_empty() {
        out.push_str(" []\n");
        return;
    }
    out.push('\n');
    for item in items {
        let _ = writeln!(out, "{:indent$}- {}", "", escape::yaml(item));
    }
}

/// Users the workload's own checks ran as (first occurrence of each kind of check).
pub(crate) fn workload_uids(p: &Profile) -> Vec<u32> {
    let mut uids: Vec<u32> = p
        .checks
        .iter()
        .filter(|c| c.phase == Phase::Workload)
        .filter_map(|c| c.uid)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// `--cap-drop=ALL --cap-add=A --cap-add=B`, one line per profile (same flags for Docker and
/// podman), each after a comment naming its workload when there are several.
pub fn engine_flags(profiles: &[Profile]) -> String {
    let mut out = String::new();
    for p in profiles {
        if profiles.len() > 1 {
            out.push_str(&escape::hash_comment(&p.workload.name));
        }
        let _ = writeln!(out, "{}", p.suggestion.docker_flags());
    }
    out
}

/// The `process.capabilities` object of an OCI runtime spec. A workload that runs as root gets
/// the set as bounding, effective and permitted; one that runs as another user needs it
/// inheritable and ambient too, or it would lose it at exec.
pub fn oci_value(p: &Profile) -> serde_json::Value {
    let set = kernel_names(&p.suggestion.add);
    let non_root = {
        let uids = workload_uids(p);
        !uids.is_empty() && !uids.contains(&0)
    };
    let passed_on = if non_root { set.clone() } else { Vec::new() };
    serde_json::json!({
        "bounding": set,
        "effective": set,
        "permitted": set,
        "inheritable": passed_on,
        "ambient": passed_on,
    })
}

/// `process.capabilities` for the one profile (a runtime spec is one container's).
pub fn oci(profiles: &[Profile]) -> Result<String, RenderError> {
    let p = only_one(profiles, "oci")?;
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&oci_value(p)).expect("json")
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::fixtures::sample;
    use crate::model::profile::Environment;

    /// A profile whose every name is hostile: line breaks, a unit section and directive, an
    /// escape sequence, quotes, YAML indicators, a NUL, a byte that was not UTF-8.
    pub(crate) const HOSTILE: &str =
        "web\n[Service]\nExecStartPre=/tmp/evil\r\n\u{1b}[31mRED \"q\" 'q' a: b # c\0 \\xff\\";

    #[test]
    fn header_is_escaped_in_every_comment() {
        let mut p = sample();
        p.workload.name = HOSTILE.into();
        let lines = header(&p);
        assert!(lines[0].contains(HOSTILE));
        let mut out = String::new();
        hash_header(&mut out, &p, 2);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.lines().all(|l| l.starts_with("  # ")), "{out}");
        assert!(!out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\0'));
        let flags = engine_flags(&[p.clone(), sample()]);
        assert_eq!(flags.lines().count(), 4, "{flags}");
        assert!(
            flags
                .lines()
                .all(|l| l.starts_with("# ") || l.starts_with("--cap-drop=ALL"))
        );
    }

    /// `sample()` as learned under Docker: its containers' port start and ping range.
    fn learned_under_docker() -> Profile {
        let mut p = sample();
        p.workload.engine = Some("docker".into());
        p.environment.engine_version = Some("20.10.24".into());
        p.environment
            .network
            .insert(Environment::PORT_START.into(), "0".into());
        p.environment
            .network
            .insert(Environment::PING_RANGE.into(), "0 2147483647".into());
        p
    }

    #[test]
    fn a_docker_profile_warns_where_the_target_is_stricter() {
        let p = learned_under_docker();
        assert!(environment_warnings(&p, Target::Docker).is_empty());
        for target in [
            Target::Podman,
            Target::Kubernetes,
            Target::Compose,
            Target::Other,
        ] {
            let w = environment_warnings(&p, target);
            assert_eq!(w.len(), 2, "{target:?}: {w:?}");
            assert!(w[0].contains("was 0 (docker 20.10.24)"), "{w:?}");
            assert!(w[0].contains("from 0 to 1023") && w[0].contains("NET_BIND_SERVICE"));
            assert!(w[1].contains("NET_RAW"), "{w:?}");
        }
    }

    #[test]
    fn no_warning_for_what_the_set_has_or_a_strict_place() {
        let mut p = learned_under_docker();
        p.suggestion.add.extend([Cap(10), Cap(13)]);
        assert!(environment_warnings(&p, Target::Podman).is_empty());
        // Learned under podman: group 0 may ping there and under podman, nowhere stricter
        // needs more than the set unless the target lets no group ping.
        let mut p = sample();
        p.environment
            .network
            .insert(Environment::PORT_START.into(), "1024".into());
        p.environment
            .network
            .insert(Environment::PING_RANGE.into(), "0 0".into());
        assert!(environment_warnings(&p, Target::Podman).is_empty());
        assert!(environment_warnings(&p, Target::Docker).is_empty());
        assert_eq!(environment_warnings(&p, Target::Kubernetes).len(), 1);
        // Nothing recorded (an older profile): nothing to compare.
        assert!(environment_warnings(&sample(), Target::Other).is_empty());
    }

    #[test]
    fn engine_flags_line() {
        assert_eq!(
            engine_flags(&[sample()]),
            "--cap-drop=ALL --cap-add=CHOWN\n"
        );
    }

    #[test]
    fn oci_capabilities() {
        let v = oci_value(&sample());
        assert_eq!(v["bounding"], serde_json::json!(["CAP_CHOWN"]));
        assert_eq!(v["effective"], serde_json::json!(["CAP_CHOWN"]));
        assert_eq!(v["permitted"], serde_json::json!(["CAP_CHOWN"]));
        assert_eq!(v["ambient"], serde_json::json!([]));
        let mut non_root = sample();
        for c in &mut non_root.checks {
            c.uid = Some(1000);
        }
        assert_eq!(
            oci_value(&non_root)["ambient"],
            serde_json::json!(["CAP_CHOWN"])
        );
    }

    #[test]
    fn single_workload_formats_ask_to_pick_one() {
        let mut a = sample();
        a.workload.name = "a\u{1b}".into();
        let err = oci(&[a, sample()]).unwrap_err().to_string();
        assert!(err.contains("pick one with --name"), "{err}");
        assert!(err.contains("`a\\e`"), "{err}");
        assert!(oci(&[sample()]).is_ok());
    }
}

/// Where a deploy format's output runs, as far as the settings that decide whether an
/// operation needs a capability at all go (see [`Environment`](crate::model::profile::Environment)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `docker run`: Docker sets `ip_unprivileged_port_start=0` and `ping_group_range=0
    /// 2147483647` in every container with a network namespace of its own.
    Docker,
    /// `podman run` (4.x): the kernel's port start (1024) and `ping_group_range=0 0`.
    Podman,
    /// Kubernetes: what the node's runtime sets (containerd 2 as Docker does; containerd 1
    /// and CRI-O the kernel's defaults).
    Kubernetes,
    /// A compose file: Docker's or podman's, whichever runs it.
    Compose,
    /// A systemd unit or an OCI runtime: the host's or the kernel's defaults.
    Other,
}

impl Target {
    /// The strictest port start and ping group range the workload may meet there.
    fn strictest(self) -> (u32, Option<(u32, u32)>) {
        match self {
            Target::Docker => (0, Some((0, 2_147_483_647))),
            Target::Podman => (1024, Some((0, 0))),
            Target::Kubernetes | Target::Compose | Target::Other => (1024, None),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Target::Docker => "Docker",
            Target::Podman => "podman (which keeps the kernel's 1024 and lets only group 0 ping)",
            Target::Kubernetes => {
                "Kubernetes (containerd 1.x and CRI-O keep the kernel's defaults: ports from 1024, no group may ping)"
            }
            Target::Compose => "a compose tool (podman keeps the kernel's port start of 1024)",
            Target::Other => {
                "the target (the kernel's defaults are ports from 1024, no group may ping)"
            }
        }
    }
}

/// What deploying `p` to `target` may need beyond its set: capabilities no check showed where
/// it was learned because a sysctl there let the operation through without one (Docker's
/// port start of 0, its ping group range). Unescaped: the caller shows them.
pub fn environment_warnings(p: &Profile, target: Target) -> Vec<String> {
    const NET_BIND_SERVICE: Cap = Cap(10);
    const NET_RAW: Cap = Cap(13);
    let env = &p.environment;
    let has = |cap: Cap| p.suggestion.add.contains(&cap);
    let learned_under = env
        .engine_version
        .as_deref()
        .map(|v| {
            format!(
                " ({} {v})",
                p.workload.engine.as_deref().unwrap_or("engine")
            )
        })
        .unwrap_or_default();
    let (port_there, ping_there) = target.strictest();
    let mut warnings = Vec::new();
    if let Some(port) = env.port_start()
        && port < port_there
        && !has(NET_BIND_SERVICE)
    {
        warnings.push(format!(
            "{}: learned where net.ipv4.ip_unprivileged_port_start was {port}{learned_under}: binding a port from {port} to {} needed no capability there, but needs NET_BIND_SERVICE under {}; add it if the workload listens on such a port, or set the sysctl to {port} there",
            p.workload.name,
            port_there - 1,
            target.describe()
        ));
    }
    let covered = |(a, b): (u32, u32), (c, d): (u32, u32)| c > d || (a <= c && d <= b);
    if let Some((first, last)) = env.ping_range()
        && first <= last
        && !ping_there.is_some_and(|there| covered(there, (first, last)))
        && !has(NET_RAW)
    {
        warnings.push(format!(
            "{}: learned where net.ipv4.ping_group_range was {first} {last}{learned_under}: ICMP echo sockets (ping) needed no capability there, but need NET_RAW under {} unless the workload's group is in its range; add it if the workload pings, or set the sysctl there",
            p.workload.name,
            target.describe()
        ));
    }
    warnings
}
