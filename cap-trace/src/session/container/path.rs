//! Which container a cgroup v2 path belongs to, for every runtime's naming scheme.

/// The runtime family a cgroup path names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Podman,
    Docker,
    /// containerd without Kubernetes (nerdctl, ctr).
    Containerd,
    /// A Kubernetes pod container, run by containerd's CRI plugin.
    KubernetesContainerd,
    /// A Kubernetes pod container, run by CRI-O.
    KubernetesCrio,
    /// A bare container id below a parent no engine names as its own: Docker or podman with a
    /// cgroupfs `--cgroup-parent`, or containerd's `/<namespace>/<id>`. The engine that
    /// answers for the id says which.
    Unknown,
}

impl Runtime {
    pub fn engine_name(self) -> &'static str {
        match self {
            Runtime::Podman => "podman",
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::KubernetesContainerd => "kubernetes (containerd)",
            Runtime::KubernetesCrio => "kubernetes (cri-o)",
            Runtime::Unknown => "unknown",
        }
    }

    /// The runtime family of an engine that named a container (for [`Runtime::Unknown`]).
    pub fn of_engine(engine: &str) -> Option<Runtime> {
        match engine {
            "podman" => Some(Runtime::Podman),
            "docker" => Some(Runtime::Docker),
            "containerd" => Some(Runtime::Containerd),
            _ => None,
        }
    }

    pub fn is_kubernetes(self) -> bool {
        matches!(
            self,
            Runtime::KubernetesContainerd | Runtime::KubernetesCrio
        )
    }
}

/// A container recognised from its cgroup path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CgroupContainer {
    pub runtime: Runtime,
    /// Full container id (64 hex characters; containerd's may be any identifier).
    pub id: String,
    /// containerd's namespace, for a container recognised by [`parse_containerd`].
    pub namespace: Option<String>,
    /// Kubernetes pod UID, with dashes.
    pub pod_uid: Option<String>,
    /// The container's own cgroup (the path up to and including the container's segment); the
    /// given path may be a cgroup below it.
    pub cgroup: String,
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `prefix<id>suffix` → id.
fn id_between<'a>(segment: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let id = segment.strip_prefix(prefix)?.strip_suffix(suffix)?;
    is_id(id).then_some(id)
}

/// Pod UID from `pod<uid>` / `kubepods-<qos>-pod<uid>.slice` (systemd spells dashes `_`).
fn pod_uid(segment: &str) -> Option<String> {
    let at = segment.rfind("pod")?;
    let uid = segment[at + 3..]
        .trim_end_matches(".slice")
        .replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

/// Recognises the container a cgroup path belongs to, or `None` for a cgroup that is not a
/// container's (a service, a conmon, the root).
pub fn parse(path: &str) -> Option<CgroupContainer> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let in_kubepods = segments.iter().any(|s| s.starts_with("kubepods"));
    let pod = segments.iter().find_map(|s| {
        (s.starts_with("pod") || s.contains("-pod"))
            .then(|| pod_uid(s))
            .flatten()
    });
    for (i, segment) in segments.iter().enumerate() {
        let found = if let Some(id) =
            id_between(segment, "libpod-", ".scope").or_else(|| id_between(segment, "libpod-", ""))
        {
            Some((Runtime::Podman, id))
        } else if let Some(id) = id_between(segment, "docker-", ".scope") {
            Some((Runtime::Docker, id))
        } else if let Some(id) = id_between(segment, "cri-containerd-", ".scope") {
            Some((Runtime::KubernetesContainerd, id))
        } else if let Some(id) = id_between(segment, "crio-", ".scope") {
            Some((Runtime::KubernetesCrio, id))
        } else if let Some(id) = id_between(segment, "nerdctl-", ".scope") {
            Some((Runtime::Containerd, id))
        } else if is_id(segment) && i > 0 {
            // cgroupfs drivers name the cgroup after the bare id.
            let parent = segments[i - 1];
            if parent == "docker" {
                Some((Runtime::Docker, *segment))
            } else if in_kubepods && parent.starts_with("pod") {
                Some((Runtime::KubernetesContainerd, *segment))
            } else if !in_kubepods {
                Some((Runtime::Unknown, *segment))
            } else {
                None
            }
        } else {
            None
        };
        if let Some((runtime, id)) = found {
            return Some(CgroupContainer {
                runtime,
                id: id.to_ascii_lowercase(),
                namespace: None,
                pod_uid: if runtime.is_kubernetes() {
                    pod.clone()
                } else {
                    None
                },
                cgroup: format!("/{}", segments[..=i].join("/")),
            });
        }
    }
    None
}

/// A `ctr run` container with an id of the user's choosing: `/<namespace>/<id>`, where
/// `namespace` is one of containerd's (`namespaces`, asked of containerd).
pub fn parse_containerd(path: &str, namespaces: &[String]) -> Option<CgroupContainer> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (ns, id) = match segments.as_slice() {
        [ns, id, ..] => (*ns, *id),
        _ => return None,
    };
    (namespaces.iter().any(|n| n == ns) && super::containerd::valid_id(id)).then(|| {
        CgroupContainer {
            runtime: Runtime::Containerd,
            id: id.to_owned(),
            namespace: Some(ns.to_owned()),
            pod_uid: None,
            cgroup: format!("/{ns}/{id}"),
        }
    })
}

impl CgroupContainer {
    /// What to ask the engines for: `namespace/id` for containerd, else the id.
    pub fn lookup(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.id),
            None => self.id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "2bdacf50c93ebf9aeb522dd810d24b0474e5828f2b8c1e5494585423e5434880";
    const UID: &str = "0f9a4e2c-1b7d-4c6e-9a51-3d2f8e7b6a10";

    #[test]
    // A table of cases, one per runtime and cgroup manager: long, and one thing.
    #[allow(clippy::too_many_lines)]
    fn recognises_every_runtime() {
        let uid_ = UID.replace('-', "_");
        // (path, runtime, container cgroup, pod uid)
        let cases: Vec<(String, Option<Runtime>, &str, Option<&str>)> = vec![
            // podman, cgroupfs manager (this machine)
            (
                format!("/libpod_parent/libpod-{ID}"),
                Some(Runtime::Podman),
                "/libpod_parent/libpod-ID",
                None,
            ),
            // podman, systemd manager, rootful; with the "container" sub-cgroup
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                Some(Runtime::Podman),
                "/machine.slice/libpod-ID.scope",
                None,
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Some(Runtime::Podman),
                "/machine.slice/libpod-ID.scope",
                None,
            ),
            // podman rootless
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                ),
                Some(Runtime::Podman),
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ID.scope",
                None,
            ),
            // docker, systemd and cgroupfs drivers
            (
                format!("/system.slice/docker-{ID}.scope"),
                Some(Runtime::Docker),
                "/system.slice/docker-ID.scope",
                None,
            ),
            (
                format!("/docker/{ID}"),
                Some(Runtime::Docker),
                "/docker/ID",
                None,
            ),
            // a process in a sub-cgroup of a docker container (systemd inside)
            (
                format!("/docker/{ID}/init.scope"),
                Some(Runtime::Docker),
                "/docker/ID",
                None,
            ),
            // containerd (nerdctl)
            (
                format!("/system.slice/nerdctl-{ID}.scope"),
                Some(Runtime::Containerd),
                "/system.slice/nerdctl-ID.scope",
                None,
            ),
            // a bare id below any other parent: containerd's namespace, or Docker or podman
            // with a cgroupfs --cgroup-parent; the engine that knows the id says which
            (
                format!("/default/{ID}"),
                Some(Runtime::Unknown),
                "/default/ID",
                None,
            ),
            (
                format!("/ci/jobs/{ID}"),
                Some(Runtime::Unknown),
                "/ci/jobs/ID",
                None,
            ),
            // podman with a cgroupfs --cgroup-parent three levels down
            (
                format!("/ci/jobs/x/libpod-{ID}"),
                Some(Runtime::Podman),
                "/ci/jobs/x/libpod-ID",
                None,
            ),
            // Kubernetes with containerd, systemd driver
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
                ),
                Some(Runtime::KubernetesContainerd),
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podUID_.slice/cri-containerd-ID.scope",
                Some(UID),
            ),
            // Kubernetes with containerd, cgroupfs driver, guaranteed QoS
            (
                format!("/kubepods/pod{UID}/{ID}"),
                Some(Runtime::KubernetesContainerd),
                "/kubepods/podUID/ID",
                Some(UID),
            ),
            (
                format!("/kubepods/besteffort/pod{UID}/{ID}"),
                Some(Runtime::KubernetesContainerd),
                "/kubepods/besteffort/podUID/ID",
                Some(UID),
            ),
            // Kubernetes with CRI-O
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope"
                ),
                Some(Runtime::KubernetesCrio),
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podUID_.slice/crio-ID.scope",
                Some(UID),
            ),
            // Not containers: services, conmon, the root, a pod without container, short ids
            ("/system.slice/sshd.service".into(), None, "", None),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-conmon-{ID}.scope"
                ),
                None,
                "",
                None,
            ),
            ("/".into(), None, "", None),
            (String::new(), None, "", None),
            (format!("/kubepods/besteffort/pod{UID}"), None, "", None),
            ("/libpod_parent/libpod-abc".into(), None, "", None),
            ("/cap-trace/run-123".into(), None, "", None),
        ];
        for (path, runtime, cgroup, pod) in cases {
            let got = parse(&path);
            match runtime {
                None => assert_eq!(got, None, "{path}"),
                Some(runtime) => {
                    let got = got.unwrap_or_else(|| panic!("{path} not recognised"));
                    assert_eq!(got.runtime, runtime, "{path}");
                    assert_eq!(got.id, ID, "{path}");
                    let expected = cgroup
                        .replace("UID_", &uid_)
                        .replace("UID", UID)
                        .replace("ID", ID);
                    assert_eq!(got.cgroup, expected, "{path}");
                    assert_eq!(got.pod_uid.as_deref(), pod, "{path}");
                }
            }
        }
    }

    #[test]
    fn containerd_ids_of_the_users_choosing() {
        let namespaces = vec!["cap-trace-test".to_owned(), "default".to_owned()];
        let found = parse_containerd("/cap-trace-test/web-1", &namespaces).unwrap();
        assert_eq!(found.runtime, Runtime::Containerd);
        assert_eq!(found.id, "web-1");
        assert_eq!(found.lookup(), "cap-trace-test/web-1");
        assert_eq!(found.cgroup, "/cap-trace-test/web-1");
        // Not a namespace of containerd's: a service, a user's slice.
        assert_eq!(
            parse_containerd("/system.slice/sshd.service", &namespaces),
            None
        );
        assert_eq!(parse_containerd("/default", &namespaces), None);
        assert_eq!(parse_containerd("/default/-x", &namespaces), None);
        assert_eq!(parse(&format!("/default/{ID}")).unwrap().lookup(), ID);
    }

    #[test]
    fn ids_are_normalised() {
        let upper = ID.to_ascii_uppercase();
        assert_eq!(parse(&format!("/docker/{upper}")).unwrap().id, ID);
    }
}
