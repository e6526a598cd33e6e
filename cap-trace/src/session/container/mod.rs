//! Containers: finding them through their engines, recognising their cgroups, and what a
//! profile records about them.

pub mod containerd;
pub mod engine;
pub mod path;
pub mod recreate;

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

/// Seconds since boot (`CLOCK_BOOTTIME`, the clock `/proc/PID/stat` start times count in).
pub fn boot_time() -> Option<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    (rc == 0).then(|| std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// When a process started, as time since boot (`/proc/PID/stat`, field 22).
pub fn process_start(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(std::time::Duration::from_millis(ticks * 1000 / hz))
}

/// Capabilities the engine's learning mode grants on this host: every capability the host
/// has, but for Docker only those its `ALL` knows.
fn learning_mode_grants(info: &ContainerInfo, host: Option<&[Cap]>) -> Vec<Cap> {
    let host: Vec<Cap> = host.map_or_else(
        || caps::ALL.iter().map(|i| Cap(i.number)).collect(),
        <[Cap]>::to_vec,
    );
    if info.engine == "docker" {
        let known = engine::docker_all(info.engine_version.as_deref());
        host.into_iter().filter(|c| known.contains(c)).collect()
    } else {
        host
    }
}

/// How to run the container in learning mode with its engine on this host: every capability
/// the host grants, no seccomp filter. Docker and Kubernetes refuse `ALL` where the host's
/// bounding set lacks one of theirs ("unable to apply caps"), so those are dropped again.
pub fn learning_mode_flags(info: &ContainerInfo, host: Option<&[Cap]>) -> String {
    let lacks: Vec<Cap> = match host {
        Some(host) => {
            let known = if info.engine == "docker" {
                engine::docker_all(info.engine_version.as_deref())
            } else {
                caps::ALL.iter().map(|i| Cap(i.number)).collect()
            };
            known.into_iter().filter(|c| !host.contains(c)).collect()
        }
        None => Vec::new(),
    };
    match info.engine.as_str() {
        "docker" => {
            let mut flags = vec!["--cap-add=ALL".to_owned()];
            flags.extend(lacks.iter().map(|c| format!("--cap-drop={}", c.name())));
            flags.push("--security-opt seccomp=unconfined".to_owned());
            flags.join(" ")
        }
        "containerd" => "`ctr run --privileged`".to_owned(),
        "cri" => {
            let drop: Vec<String> = lacks.iter().map(|c| c.name()).collect();
            format!(
                "securityContext: {{capabilities: {{add: [ALL]{}}}, seccompProfile: {{type: Unconfined}}}}",
                if drop.is_empty() {
                    String::new()
                } else {
                    format!(", drop: [{}]", drop.join(", "))
                }
            )
        }
        // podman grants what the host has of ALL.
        _ => "--cap-add=ALL --security-opt seccomp=unconfined".to_owned(),
    }
}

/// Advice when the container did not run in learning mode (every capability its engine can
/// grant on this host, no seccomp filter), in flags for its engine.
pub fn learning_mode_warning(
    caps: Option<&[Cap]>,
    seccomp: Option<bool>,
    host: Option<&[Cap]>,
    info: &ContainerInfo,
) -> Option<String> {
    if caps.is_none() && seccomp.is_none() && info.from_events {
        return Some(format!(
            "how the container was configured is unknown (it was removed before its engine could be asked, and the engine's events do not say), so whether it could reach every capability check cannot be told; for a complete profile, trace a staging run with {} (one that lives long enough for its engine to be asked)",
            learning_mode_flags(info, host)
        ));
    }
    let host_count = host.map_or(caps::ALL.len(), <[Cap]>::len);
    let grants = learning_mode_grants(info, host);
    let lacking: Vec<Cap> = match caps {
        Some(c) => grants.iter().copied().filter(|x| !c.contains(x)).collect(),
        None => Vec::new(),
    };
    let filtered = seccomp == Some(true);
    let beyond: Vec<String> = match (caps, host) {
        (Some(c), Some(h)) => h
            .iter()
            .filter(|x| !grants.contains(x) && !c.contains(x))
            .map(|x| x.name())
            .collect(),
        _ => Vec::new(),
    };
    let engine_limit = (!beyond.is_empty()).then(|| {
        format!(
            "Docker {} cannot grant {} (its ALL stops at AUDIT_READ): checks of those show only as denials",
            info.engine_version.as_deref().unwrap_or(""),
            beyond.join(", ")
        )
        .replace("Docker  ", "Docker ")
    });
    if lacking.is_empty() && !filtered {
        return engine_limit;
    }
    let mut why = Vec::new();
    if filtered {
        why.push("a seccomp filter: syscalls it blocks never reach a capability check".to_owned());
    }
    if !lacking.is_empty() {
        let held = caps.map_or(0, |c| {
            c.iter()
                .filter(|x| host.is_none_or(|h| h.contains(x)))
                .count()
        });
        why.push(format!(
            "{held} of the {host_count} capabilities this host grants: what it lacked shows up only where a denial made a syscall fail"
        ));
    }
    let mut warning = format!(
        "the container ran with {}; for a complete profile, trace a staging run with {}",
        why.join(", and with "),
        learning_mode_flags(info, host)
    );
    if let Some(limit) = engine_limit {
        warning.push_str(&format!(" ({limit})"));
    }
    Some(warning)
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
    fn a_container_known_only_from_events_is_not_guessed_at() {
        let gone = ContainerInfo {
            engine: "podman".into(),
            from_events: true,
            ..info(&[])
        };
        assert_eq!(gone.configured_caps(), None);
        assert_eq!(gone.configured_seccomp(), None);
        let warning = learning_mode_warning(None, None, None, &gone).unwrap();
        assert!(
            warning.starts_with("how the container was configured is unknown"),
            "{warning}"
        );
        assert!(!warning.contains("seccomp filter"), "{warning}");
        // Inspected: the engine's defaults are what it ran with.
        let inspected = ContainerInfo {
            from_events: false,
            ..gone
        };
        assert_eq!(inspected.configured_seccomp(), Some(true));
        let warning =
            learning_mode_warning(None, inspected.configured_seccomp(), None, &inspected).unwrap();
        assert!(warning.contains("a seccomp filter"), "{warning}");
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
        let podman = ContainerInfo {
            engine: "podman".into(),
            ..Default::default()
        };
        let full: Vec<Cap> = (0..41).map(Cap).collect();
        assert_eq!(
            learning_mode_warning(Some(&full), Some(false), None, &podman),
            None
        );
        let w = learning_mode_warning(Some(&full[..11]), Some(true), None, &podman).unwrap();
        assert!(w.contains("seccomp filter"), "{w}");
        assert!(w.contains("11 of the 41 capabilities"), "{w}");
        assert!(
            w.ends_with("--cap-add=ALL --security-opt seccomp=unconfined"),
            "{w}"
        );
        // A host that cannot grant SYS_RESOURCE: a container with the other 40 has them all.
        let host: Vec<Cap> = full.iter().copied().filter(|c| c.0 != 24).collect();
        assert_eq!(
            learning_mode_warning(Some(&host), Some(false), Some(&host), &podman),
            None
        );
        let w =
            learning_mode_warning(Some(&host[..11]), Some(false), Some(&host), &podman).unwrap();
        assert!(w.contains("11 of the 40 capabilities"), "{w}");
        // Unknown capabilities (the container exited before it was looked at): no claim.
        assert_eq!(learning_mode_warning(None, None, None, &podman), None);
    }

    #[test]
    fn learning_mode_on_docker_drops_what_the_host_lacks() {
        let host: Vec<Cap> = (0..41).map(Cap).filter(|c| c.0 != 24).collect();
        let docker = ContainerInfo {
            engine: "docker".into(),
            engine_version: Some("20.10.24+dfsg1".into()),
            ..Default::default()
        };
        assert_eq!(
            learning_mode_flags(&docker, Some(&host)),
            "--cap-add=ALL --cap-drop=SYS_RESOURCE --security-opt seccomp=unconfined"
        );
        let defaults = caps::defaults::DOCKER.to_vec();
        let w = learning_mode_warning(Some(&defaults), Some(true), Some(&host), &docker).unwrap();
        assert!(w.contains("14 of the 40 capabilities"), "{w}");
        assert!(
            w.contains("--cap-add=ALL --cap-drop=SYS_RESOURCE --security-opt seccomp=unconfined"),
            "{w}"
        );
        // Docker 20.10's learning mode: all it can grant, and a note on what it cannot.
        let learned: Vec<Cap> = host.iter().copied().filter(|c| c.0 <= 37).collect();
        let w = learning_mode_warning(Some(&learned), Some(false), Some(&host), &docker).unwrap();
        assert_eq!(
            w,
            "Docker 20.10.24+dfsg1 cannot grant PERFMON, BPF, CHECKPOINT_RESTORE (its ALL stops at AUDIT_READ): checks of those show only as denials"
        );
        // Docker 23 and later grant them.
        let docker27 = ContainerInfo {
            engine_version: Some("27.1.0".into()),
            ..docker.clone()
        };
        assert_eq!(
            learning_mode_warning(Some(&host), Some(false), Some(&host), &docker27),
            None
        );
        // A host with every capability: nothing to drop.
        let all: Vec<Cap> = (0..41).map(Cap).collect();
        assert_eq!(
            learning_mode_flags(&docker27, Some(&all)),
            "--cap-add=ALL --security-opt seccomp=unconfined"
        );
        let cri = ContainerInfo {
            engine: "cri".into(),
            ..Default::default()
        };
        assert_eq!(
            learning_mode_flags(&cri, Some(&host)),
            "securityContext: {capabilities: {add: [ALL], drop: [SYS_RESOURCE]}, seccompProfile: {type: Unconfined}}"
        );
    }

    #[test]
    fn process_start_times() {
        let me = process_start(std::process::id()).unwrap();
        let now = boot_time().unwrap();
        assert!(me <= now, "{me:?} {now:?}");
        assert_eq!(process_start(u32::MAX), None);
    }
}
