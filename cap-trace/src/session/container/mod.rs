//! Containers: finding them through their engines, recognising their cgroups, and what a
//! profile records about them.

pub mod engine;
pub mod path;

use crate::linux::caps::{self, Cap};
use crate::model::profile::{ComposeInfo, KubernetesInfo, Workload, WorkloadKind, workload_of_pod};

pub use engine::{ContainerInfo, Engines, Health, Lookup};

/// Compose service of a container, from the labels Docker Compose and podman-compose set.
pub fn compose(info: &ContainerInfo) -> Option<ComposeInfo> {
    let label = |keys: &[&str]| keys.iter().find_map(|k| info.labels.get(*k).cloned());
    let service = label(&["com.docker.compose.service", "io.podman.compose.service"])?;
    Some(ComposeInfo {
        project: label(&["com.docker.compose.project", "io.podman.compose.project"]),
        service,
    })
}

/// Kubernetes names of a container, from the labels the CRI runtimes set.
pub fn kubernetes(info: &ContainerInfo, pod_uid: Option<&str>) -> Option<KubernetesInfo> {
    let label = |k: &str| info.labels.get(k).cloned();
    let k8s = KubernetesInfo {
        namespace: label("io.kubernetes.pod.namespace"),
        pod: label("io.kubernetes.pod.name"),
        container: label("io.kubernetes.container.name"),
        pod_uid: label("io.kubernetes.pod.uid").or_else(|| pod_uid.map(str::to_owned)),
    };
    (k8s.namespace.is_some() || k8s.pod.is_some() || k8s.pod_uid.is_some()).then_some(k8s)
}

/// The name a container's profile is kept under, stable across restarts and re-creation:
/// Kubernetes namespace/pod/container, else the compose project/service, else the engine name.
pub fn identity(info: &ContainerInfo, pod_uid: Option<&str>) -> String {
    if let Some(k) = kubernetes(info, pod_uid)
        && let (Some(ns), Some(pod), Some(c)) = (&k.namespace, &k.pod, &k.container)
    {
        return format!("{ns}/{}/{c}", workload_of_pod(pod));
    }
    if let Some(c) = compose(info) {
        return match c.project {
            Some(p) => format!("{p}/{}", c.service),
            None => c.service,
        };
    }
    if info.name.is_empty() {
        info.id.chars().take(12).collect()
    } else {
        info.name.clone()
    }
}

/// What a running process holds: from `/proc/PID/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSecurity {
    pub effective: Option<Vec<Cap>>,
    pub bounding: Option<Vec<Cap>>,
    pub seccomp: Option<bool>,
}

/// Effective and bounding capabilities and seccomp mode of a running process.
pub fn process_security(pid: u32) -> ProcessSecurity {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|status| parse_status(&status))
        .unwrap_or_default()
}

pub fn parse_status(status: &str) -> ProcessSecurity {
    use crate::session::privilege::status_caps;
    let seccomp = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map(|m| m != 0);
    ProcessSecurity {
        effective: status_caps(status, "CapEff:"),
        bounding: status_caps(status, "CapBnd:"),
        seccomp,
    }
}

/// Profile metadata of a container.
pub fn workload(
    info: &ContainerInfo,
    runtime: Option<path::Runtime>,
    pod_uid: Option<&str>,
) -> Workload {
    Workload {
        kind: Some(WorkloadKind::Container),
        name: identity(info, pod_uid),
        id: Some(info.id.clone()),
        engine: Some(match runtime {
            Some(r) if r.is_kubernetes() => r.engine_name().to_owned(),
            _ => info.engine.clone(),
        }),
        image: info.image.clone(),
        exit_status: info.exit_code,
        compose: compose(info),
        kubernetes: kubernetes(info, pod_uid),
        ..Default::default()
    }
}

/// Capabilities this machine can grant at all: the bounding set of pid 1 (or of cap-trace).
pub fn host_capabilities() -> Option<Vec<Cap>> {
    ["/proc/1/status", "/proc/self/status"]
        .iter()
        .find_map(|p| {
            let status = std::fs::read_to_string(p).ok()?;
            let bnd = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
            u64::from_str_radix(bnd.trim(), 16)
                .ok()
                .map(caps::from_mask)
        })
}

/// Advice when the container did not run in learning mode (every capability the host can grant,
/// no seccomp filter).
pub fn learning_mode_warning(
    caps: Option<&[Cap]>,
    seccomp: Option<bool>,
    host: Option<&[Cap]>,
) -> Option<String> {
    let host_count = host.map_or(caps::ALL.len(), <[Cap]>::len);
    let lacking: Vec<Cap> = match (caps, host) {
        (Some(c), Some(h)) => h.iter().copied().filter(|x| !c.contains(x)).collect(),
        (Some(c), None) => caps::ALL
            .iter()
            .map(|i| Cap(i.number))
            .filter(|x| !c.contains(x))
            .collect(),
        (None, _) => Vec::new(),
    };
    let filtered = seccomp == Some(true);
    if lacking.is_empty() && !filtered {
        return None;
    }
    let mut why = Vec::new();
    if filtered {
        why.push("a seccomp filter: syscalls it blocks never reach a capability check".to_owned());
    }
    if !lacking.is_empty() {
        why.push(format!(
            "{} of the {host_count} capabilities this host grants: what it lacked shows up only where a denial made a syscall fail",
            host_count.saturating_sub(lacking.len())
        ));
    }
    Some(format!(
        "the container ran with {}; for a complete profile, trace a staging run with --cap-add=ALL --security-opt seccomp=unconfined",
        why.join(", and with ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(labels: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef".into(),
            name: "shop_web_1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn identities() {
        assert_eq!(identity(&info(&[]), None), "shop_web_1");
        let compose = info(&[
            ("com.docker.compose.service", "web"),
            ("com.docker.compose.project", "shop"),
        ]);
        assert_eq!(identity(&compose, None), "shop/web");
        let podman_compose = info(&[("io.podman.compose.service", "db")]);
        assert_eq!(identity(&podman_compose, None), "db");
        let k8s = info(&[
            ("io.kubernetes.pod.namespace", "prod"),
            ("io.kubernetes.pod.name", "web-7d4b9c8f5-x2k9q"),
            ("io.kubernetes.container.name", "nginx"),
        ]);
        assert_eq!(identity(&k8s, None), "prod/web/nginx");
        let unnamed = ContainerInfo {
            id: "0123456789abcdef".into(),
            ..Default::default()
        };
        assert_eq!(identity(&unnamed, None), "0123456789ab");
    }

    #[test]
    fn kubernetes_info_from_path_alone() {
        let k = kubernetes(&info(&[]), Some("0f9a4e2c-1b7d-4c6e-9a51-3d2f8e7b6a10")).unwrap();
        assert_eq!(
            k.pod_uid.as_deref(),
            Some("0f9a4e2c-1b7d-4c6e-9a51-3d2f8e7b6a10")
        );
        assert!(kubernetes(&info(&[]), None).is_none());
    }

    #[test]
    fn proc_status() {
        let status = "Name:\tsleep\nCapEff:\t00000000800405fb\nCapBnd:\t00000000800405fb\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        let p = parse_status(status);
        assert_eq!(p.effective.unwrap().len(), 11);
        assert_eq!(p.bounding.unwrap().len(), 11);
        assert_eq!(p.seccomp, Some(true));
        let p = parse_status("CapEff:\t000001ffffffffff\nSeccomp:\t0\n");
        assert_eq!(p.effective.unwrap().len(), 41);
        assert_eq!(p.bounding, None);
        assert_eq!(p.seccomp, Some(false));
    }

    #[test]
    fn learning_mode_advice() {
        let full: Vec<Cap> = (0..41).map(Cap).collect();
        assert_eq!(learning_mode_warning(Some(&full), Some(false), None), None);
        let w = learning_mode_warning(Some(&full[..11]), Some(true), None).unwrap();
        assert!(w.contains("seccomp filter"), "{w}");
        assert!(w.contains("11 of the 41 capabilities"), "{w}");
        assert!(w.contains("--cap-add=ALL --security-opt seccomp=unconfined"));
        // A host that cannot grant SYS_RESOURCE: a container with the other 40 has them all.
        let host: Vec<Cap> = full.iter().copied().filter(|c| c.0 != 24).collect();
        assert_eq!(
            learning_mode_warning(Some(&host), Some(false), Some(&host)),
            None
        );
        let w = learning_mode_warning(Some(&host[..11]), Some(false), Some(&host)).unwrap();
        assert!(w.contains("11 of the 40 capabilities"), "{w}");
        // Unknown capabilities (the container exited before it was looked at): no claim.
        assert_eq!(learning_mode_warning(None, None, None), None);
    }
}
