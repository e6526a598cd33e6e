//! Rendering profiles for where they are deployed: container engine flags, a compose override
//! file, a Kubernetes securityContext, an OCI runtime spec fragment, systemd unit lines.

use std::fmt::Write as _;

use crate::linux::caps::Cap;
use crate::model::profile::Profile;
use crate::model::record::Phase;

/// A YAML string scalar, double-quoted when plain style could be misread.
pub fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !s.starts_with(['-', '.', '/'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("strings serialize")
    }
}

fn yaml_list(out: &mut String, indent: usize, items: &[String]) {
    if items.is_empty() {
        out.push_str(" []\n");
        return;
    }
    out.push('\n');
    for item in items {
        let _ = writeln!(out, "{}- {}", " ".repeat(indent), yaml_str(item));
    }
}

fn names(caps: &[Cap]) -> Vec<String> {
    caps.iter().map(|c| c.name()).collect()
}

fn kernel_names(caps: &[Cap]) -> Vec<String> {
    caps.iter().map(|c| c.kernel_name()).collect()
}

fn provenance(p: &Profile) -> String {
    format!(
        "learned by {} from {} ({})",
        p.generator,
        p.workload.name,
        if p.trace.complete {
            "complete trace"
        } else {
            "INCOMPLETE trace: events were lost"
        }
    )
}

/// `--cap-drop=ALL --cap-add=A --cap-add=B`, one line per profile (same flags for Docker and
/// podman).
pub fn engine_flags(profiles: &[Profile]) -> String {
    let mut out = String::new();
    for p in profiles {
        if profiles.len() > 1 {
            let _ = writeln!(out, "# {}", p.workload.name);
        }
        let _ = writeln!(out, "{}", p.suggestion.docker_flags());
    }
    out
}

/// Compose service key of a profile: the compose service when known, else the workload name
/// made into a valid key.
pub fn compose_service(p: &Profile) -> String {
    if let Some(c) = &p.workload.compose {
        return c.service.clone();
    }
    let key: String = p
        .workload
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() { "app".into() } else { key }
}

/// A compose file (usable as an override: `-f compose.yaml -f caps.yaml`) with `cap_drop` and
/// `cap_add` for each service; valid for Docker Compose and podman-compose.
pub fn compose(profiles: &[Profile]) -> String {
    let mut out = String::new();
    for p in profiles {
        let _ = writeln!(out, "# {}", provenance(p));
    }
    out.push_str("services:\n");
    for p in profiles {
        let _ = writeln!(out, "  {}:", yaml_str(&compose_service(p)));
        out.push_str("    cap_drop:");
        yaml_list(&mut out, 6, &["ALL".to_owned()]);
        out.push_str("    cap_add:");
        yaml_list(&mut out, 6, &names(&p.suggestion.add));
    }
    out
}

/// Users the workload's own checks ran as (first occurrence of each kind of check).
fn workload_uids(p: &Profile) -> Vec<u32> {
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

/// Whether `runAsNonRoot: true` is safe: every check the workload made came from a non-root
/// user, and it needs no capability (Kubernetes gives a non-root process no capabilities: it
/// has no ambient set).
pub fn run_as_non_root(p: &Profile) -> Result<(), String> {
    let uids = workload_uids(p);
    if uids.is_empty() {
        return Err("no check recorded which user the workload runs as".into());
    }
    if uids.contains(&0) {
        return Err("the workload runs as root (uid 0)".into());
    }
    if !p.suggestion.add.is_empty() {
        return Err("it needs capabilities, which Kubernetes gives only to root".into());
    }
    Ok(())
}

/// The container `securityContext` for each profile, in a `containers:` list to paste into a
/// pod spec.
pub fn kubernetes(profiles: &[Profile]) -> String {
    let mut out = String::new();
    for p in profiles {
        let _ = writeln!(out, "# {}", provenance(p));
    }
    out.push_str("containers:\n");
    for p in profiles {
        let name = p
            .workload
            .kubernetes
            .as_ref()
            .and_then(|k| k.container.clone())
            .unwrap_or_else(|| {
                compose_service(p)
                    .to_ascii_lowercase()
                    .replace(['_', '.'], "-")
            });
        let _ = writeln!(out, "  - name: {}", yaml_str(&name));
        out.push_str("    securityContext:\n");
        out.push_str("      allowPrivilegeEscalation: false\n");
        match run_as_non_root(p) {
            Ok(()) => out.push_str(
                "      # every check came from a non-root user and no capability is needed\n      runAsNonRoot: true\n",
            ),
            Err(why) => {
                let _ = writeln!(out, "      # runAsNonRoot is not advised: {why}");
            }
        }
        out.push_str("      capabilities:\n");
        out.push_str("        drop:");
        yaml_list(&mut out, 10, &["ALL".to_owned()]);
        out.push_str("        add:");
        yaml_list(&mut out, 10, &names(&p.suggestion.add));
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

/// `process.capabilities` for one profile, or an object of them keyed by workload name.
pub fn oci(profiles: &[Profile]) -> String {
    let value = match profiles {
        [one] => oci_value(one),
        many => serde_json::Value::Object(
            many.iter()
                .map(|p| (p.workload.name.clone(), oci_value(p)))
                .collect(),
        ),
    };
    format!("{}\n", serde_json::to_string_pretty(&value).expect("json"))
}

/// `[Service]` lines for a systemd unit.
pub fn systemd(profiles: &[Profile]) -> String {
    let mut out = String::new();
    for p in profiles {
        let _ = writeln!(out, "# {}", provenance(p));
        let set = kernel_names(&p.suggestion.add).join(" ");
        out.push_str("[Service]\n");
        let _ = writeln!(out, "CapabilityBoundingSet={set}");
        // For a service that runs as User=..., the capabilities it needs must be ambient.
        let _ = writeln!(out, "AmbientCapabilities={set}");
        if p.suggestion.add.is_empty() {
            out.push_str("NoNewPrivileges=yes\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::sample;
    use crate::model::profile::{ComposeInfo, KubernetesInfo};

    #[test]
    fn yaml_strings() {
        assert_eq!(yaml_str("web"), "web");
        assert_eq!(yaml_str("my-app_1"), "my-app_1");
        assert_eq!(yaml_str("yes"), "\"yes\"");
        assert_eq!(yaml_str("1.5"), "\"1.5\"");
        assert_eq!(yaml_str("a: b"), "\"a: b\"");
        assert_eq!(yaml_str(""), "\"\"");
        assert_eq!(yaml_str("-x"), "\"-x\"");
    }

    #[test]
    fn engine_flags_line() {
        assert_eq!(
            engine_flags(&[sample()]),
            "--cap-drop=ALL --cap-add=CHOWN\n"
        );
    }

    #[test]
    fn compose_override() {
        let mut p = sample();
        p.workload.compose = Some(ComposeInfo {
            project: Some("shop".into()),
            service: "web".into(),
        });
        let text = compose(&[p]);
        assert!(
            text.contains(
                "services:\n  web:\n    cap_drop:\n      - ALL\n    cap_add:\n      - CHOWN\n"
            ),
            "{text}"
        );
        let mut none = sample();
        none.suggestion.add.clear();
        none.workload.name = "chown nobody /tmp/x".into();
        let text = compose(&[none]);
        assert!(text.contains("  chown_nobody__tmp_x:\n"), "{text}");
        assert!(text.contains("    cap_add: []\n"), "{text}");
    }

    #[test]
    fn kubernetes_security_context() {
        let mut p = sample();
        p.workload.kubernetes = Some(KubernetesInfo {
            namespace: Some("prod".into()),
            pod: Some("web-1".into()),
            container: Some("nginx".into()),
            pod_uid: None,
        });
        let text = kubernetes(&[p]);
        assert!(
            text.contains(
                "  - name: nginx\n    securityContext:\n      allowPrivilegeEscalation: false\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("        drop:\n          - ALL\n        add:\n          - CHOWN\n"),
            "{text}"
        );
        assert!(text.contains("runAsNonRoot is not advised"), "{text}");
    }

    #[test]
    fn run_as_non_root_only_when_safe() {
        let mut p = sample();
        assert!(run_as_non_root(&p).is_err());
        for c in &mut p.checks {
            c.uid = Some(1000);
        }
        assert!(
            run_as_non_root(&p)
                .unwrap_err()
                .contains("needs capabilities")
        );
        p.suggestion.add.clear();
        assert_eq!(run_as_non_root(&p), Ok(()));
        assert!(kubernetes(&[p]).contains("      runAsNonRoot: true\n"));
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
    fn systemd_lines() {
        let text = systemd(&[sample()]);
        assert!(
            text.contains(
                "[Service]\nCapabilityBoundingSet=CAP_CHOWN\nAmbientCapabilities=CAP_CHOWN\n"
            ),
            "{text}"
        );
        let mut none = sample();
        none.suggestion.add.clear();
        let text = systemd(&[none]);
        assert!(
            text.contains("CapabilityBoundingSet=\nAmbientCapabilities=\nNoNewPrivileges=yes\n"),
            "{text}"
        );
    }
}
