//! The Kubernetes output: a strategic-merge patch of the workload's pod template, for
//! `kubectl patch KIND NAME --patch-file FILE`, with each container's `securityContext`. A
//! strategic merge replaces the `capabilities` lists (they have no merge key), merges the
//! container into the one of the same name, and leaves the rest of the workload as it is.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::model::profile::{PodOwner, Profile, pod_owner};
use crate::render::deploy::{RenderError, hash_header, listed, names, workload_uids, yaml_list};
use crate::render::escape;

/// A DNS-1123 label, as Kubernetes requires of container names: lower-case letters, digits
/// and `-`, starting and ending with a letter or digit, at most 63 characters.
pub fn dns_label(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(63);
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "app".to_owned()
    } else {
        out.to_owned()
    }
}

/// The container's name in the pod spec, and where it comes from: Kubernetes' own when known,
/// else the compose service, the program a command ran, or the container's name.
fn named(p: &Profile) -> (String, &'static str) {
    let w = &p.workload;
    if let Some(name) = w.kubernetes.as_ref().and_then(|k| k.container.as_deref()) {
        return (dns_label(name), "its Kubernetes label");
    }
    if let Some(c) = &w.compose {
        return (dns_label(&c.service), "the compose service");
    }
    if let Some(program) = w.command.as_ref().and_then(|c| c.first()) {
        return (
            dns_label(program.rsplit('/').next().unwrap_or(program)),
            "the command",
        );
    }
    (
        dns_label(w.name.rsplit('/').next().unwrap_or(&w.name)),
        "the container's name",
    )
}

fn container_name(p: &Profile) -> String {
    named(p).0
}

/// The workload a profile's pod belongs to: namespace and pod, when Kubernetes ran it.
fn pod_of(p: &Profile) -> Option<(Option<&str>, &str)> {
    let k = p.workload.kubernetes.as_ref()?;
    Some((k.namespace.as_deref(), k.pod.as_deref()?))
}

/// A word for a shell command line in a comment: as it is when it is plain, else single-quoted,
/// so that a name with `$(...)` or `;` pasted into a shell stays a name.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// How to apply the patch, as comment lines.
fn instructions(p: &Profile) -> Vec<String> {
    let Some((namespace, pod)) = pod_of(p) else {
        return vec![
            "a strategic-merge patch of a workload's pod template: apply it with".into(),
            "  kubectl patch deployment|statefulset|daemonset NAME --patch-file THIS_FILE".into(),
            {
                let (name, from) = named(p);
                format!(
                    "the container is named {name} here (from {from}): use the name it has in your pod spec"
                )
            },
        ];
    };
    let ns = namespace
        .map(|n| format!("-n {} ", shell_word(n)))
        .unwrap_or_default();
    match pod_owner(pod) {
        Some((owner, name)) => {
            let kind = match owner {
                PodOwner::Deployment => "deployment",
                PodOwner::DaemonSet => "daemonset",
                PodOwner::StatefulSet => "statefulset",
            };
            let mut lines = vec![
                format!(
                    "a strategic-merge patch of the pod template of pod {pod}'s {kind}: apply it with"
                ),
                format!(
                    "  kubectl {ns}patch {kind} {} --patch-file THIS_FILE",
                    shell_word(name)
                ),
            ];
            if owner == PodOwner::DaemonSet {
                lines.push("(a Job's pods are named alike; a Job's template cannot change: re-create it with these fields)".into());
            }
            lines
        }
        None => vec![
            format!(
                "a strategic-merge patch of the pod template of the workload that owns pod {pod}: apply it with"
            ),
            format!(
                "  kubectl {ns}patch deployment|statefulset|daemonset NAME --patch-file THIS_FILE"
            ),
            "(a bare pod's capabilities cannot change: re-create it with these fields)".into(),
        ],
    }
}

/// Whether `runAsNonRoot: true` is safe, and with which `runAsUser`: every check the workload
/// made came from the same non-root user, and it needs no capability (Kubernetes gives a
/// non-root process no capabilities: it has no ambient set). `runAsNonRoot` alone would refuse
/// an image whose user is a name, which the kubelet cannot check.
pub fn run_as_non_root(p: &Profile) -> Result<u32, String> {
    match workload_uids(p).as_slice() {
        [] => Err("no check recorded which user the workload runs as".into()),
        uids if uids.contains(&0) => Err("the workload runs as root (uid 0)".into()),
        [uid] if p.suggestion.add.is_empty() => Ok(*uid),
        [_] => Err("it needs capabilities, which Kubernetes gives only to root".into()),
        _ => Err("the workload ran as several users".into()),
    }
}

fn container(out: &mut String, p: &Profile) {
    hash_header(out, p, 8);
    let _ = writeln!(out, "        - name: {}", escape::yaml(&container_name(p)));
    out.push_str("          securityContext:\n");
    out.push_str("            allowPrivilegeEscalation: false\n");
    // The workload's own `privileged: true` would grant every capability.
    out.push_str("            privileged: false\n");
    match run_as_non_root(p) {
        Ok(uid) => {
            out.push_str(
                "            # every check came from this non-root user and no capability is needed\n",
            );
            out.push_str("            runAsNonRoot: true\n");
            let _ = writeln!(out, "            runAsUser: {uid}");
        }
        Err(why) => {
            out.push_str(&format!(
                "            {}",
                escape::hash_comment(&format!("runAsNonRoot is not advised: {why}"))
            ));
        }
    }
    out.push_str("            capabilities:\n");
    out.push_str("              drop:");
    yaml_list(out, 16, &["ALL".to_owned()]);
    out.push_str("              add:");
    yaml_list(out, 16, &names(&p.suggestion.add));
}

/// The patch for one workload's containers; profiles of several workloads are refused with a
/// way to pick one.
pub fn kubernetes(profiles: &[Profile]) -> Result<String, RenderError> {
    let workload = |p: &Profile| match pod_of(p) {
        Some((ns, pod)) => {
            let owner = pod_owner(pod).map_or(pod, |(_, name)| name);
            format!("{}/{owner}", ns.unwrap_or(""))
        }
        None => p.workload.key().to_owned(),
    };
    let workloads: BTreeSet<String> = profiles.iter().map(workload).collect();
    if workloads.len() > 1 {
        return Err(RenderError(format!(
            "a patch is for one workload and the profiles are of {} ({}): pick one with --name NAME",
            workloads.len(),
            listed(profiles.iter().map(|p| p.workload.key()))
        )));
    }
    let Some(first) = profiles.first() else {
        return Err(RenderError("no profile to render as k8s".into()));
    };
    let mut seen = BTreeSet::new();
    for p in profiles {
        if !seen.insert(container_name(p)) {
            return Err(RenderError(format!(
                "several profiles are of container `{}`: merge them first (`cap-trace merge FILES --as NAME` for replicas such as a StatefulSet's pods)",
                container_name(p)
            )));
        }
    }
    let mut out = String::new();
    for line in instructions(first) {
        out.push_str(&escape::hash_comment(&line));
    }
    out.push_str("spec:\n  template:\n    spec:\n      containers:\n");
    for p in profiles {
        container(&mut out, p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::sample;
    use crate::model::profile::KubernetesInfo;
    use crate::render::deploy::tests::HOSTILE;

    fn pod(namespace: &str, pod: &str, container: &str) -> Profile {
        let mut p = sample();
        p.workload.name = format!("{namespace}/{pod}/{container}");
        p.workload.kubernetes = Some(KubernetesInfo {
            namespace: Some(namespace.into()),
            pod: Some(pod.into()),
            container: Some(container.into()),
            pod_uid: None,
        });
        p
    }

    #[test]
    fn container_names_are_dns_labels() {
        assert_eq!(dns_label("nginx"), "nginx");
        assert_eq!(dns_label("--help me_now.v2--"), "help-me-now-v2");
        assert_eq!(dns_label(&"a".repeat(100)), "a".repeat(63));
        assert_eq!(dns_label(&format!("{}-b", "a".repeat(62))), "a".repeat(62));
        assert_eq!(dns_label("日本"), "app");
        let mut p = sample();
        p.workload.command = Some(vec!["/usr/sbin/Chown_X".into(), "-R".into()]);
        assert_eq!(container_name(&p), "chown-x");
        for s in [HOSTILE, "-x", "", "a--b", "ÄÖ"] {
            let l = dns_label(s);
            assert!(
                l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'),
                "{l}"
            );
            assert!(
                l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
    }

    #[test]
    fn a_patch_of_the_deployment() {
        let text = kubernetes(&[pod("prod", "web-7d4b9c8f5-x2k9q", "nginx")]).unwrap();
        assert!(
            text.contains("#   kubectl -n prod patch deployment web --patch-file THIS_FILE\n"),
            "{text}"
        );
        assert!(
            text.contains("spec:\n  template:\n    spec:\n      containers:\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "        - name: nginx\n          securityContext:\n            allowPrivilegeEscalation: false\n            privileged: false\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "              drop:\n                - ALL\n              add:\n                - CHOWN\n"
            ),
            "{text}"
        );
        assert!(text.contains("runAsNonRoot is not advised"), "{text}");
        let set = kubernetes(&[
            pod("prod", "db-0", "postgres"),
            pod("prod", "db-1", "exporter"),
        ])
        .unwrap();
        assert!(set.contains("patch statefulset db "), "{set}");
        let err = kubernetes(&[pod("prod", "db-0", "x"), pod("dev", "db-0", "x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pick one with --name"), "{err}");
    }

    #[test]
    fn run_as_non_root_only_with_its_user() {
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
        assert_eq!(run_as_non_root(&p), Ok(1000));
        let text = kubernetes(&[p.clone()]).unwrap();
        assert!(
            text.contains("            runAsNonRoot: true\n            runAsUser: 1000\n"),
            "{text}"
        );
        p.checks[0].uid = Some(1001);
        assert!(run_as_non_root(&p).unwrap_err().contains("several users"));
    }

    #[test]
    fn hostile_labels_reach_only_comments_and_quoted_words() {
        let text =
            kubernetes(&[pod(HOSTILE, &format!("{HOSTILE}-7d4b9c8f5-x2k9q"), HOSTILE)]).unwrap();
        for line in text.lines() {
            let t = line.trim_start();
            assert!(
                t.starts_with('#')
                    || [
                        "spec:",
                        "template:",
                        "containers:",
                        "securityContext:",
                        "capabilities:",
                        "drop:",
                        "add:",
                        "- ALL",
                        "- CHOWN",
                        "allowPrivilegeEscalation: false",
                        "privileged: false"
                    ]
                    .contains(&t)
                    || t.starts_with("- name: web-service-execstartpre-tmp-evil"),
                "{line:?} in\n{text}"
            );
        }
        assert!(text.contains("kubectl -n 'web"), "{text}");
    }
}
