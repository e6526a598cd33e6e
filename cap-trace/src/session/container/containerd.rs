//! containerd without Kubernetes (`ctr run`, nerdctl): containers are named `namespace/id`, asked
//! about with containerd's own tool, `ctr --address SOCKET`.
//!
//! The socket is `--engine-socket` when it is containerd's, else `$CONTAINERD_ADDRESS`, else
//! containerd's default. Docker's own containers live in containerd's `moby` namespace: they
//! are named through Docker, not here.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::session::container::engine::{ContainerInfo, EngineError, string_map};
use crate::session::container::path::CgroupContainer;

/// containerd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// The namespace dockerd keeps its containers in.
const DOCKER_NAMESPACE: &str = "moby";

/// `ctr` talking to one containerd.
#[derive(Clone, Debug)]
pub struct Ctr {
    pub socket: PathBuf,
}

impl Ctr {
    /// containerd on `socket`, if it answers `ctr version`.
    pub fn connect(socket: &Path) -> Option<Ctr> {
        // ctr retries a socket nobody listens on for 10 s: look first.
        std::os::unix::net::UnixStream::connect(socket).ok()?;
        let ctr = Ctr {
            socket: socket.to_owned(),
        };
        let out = ctr.command(None).arg("version").output().ok()?;
        // `ctr version` prints the client's version even when the server does not answer.
        (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Server:"))
            .then_some(ctr)
    }

    /// containerd where `ctr` looks by itself: `$CONTAINERD_ADDRESS`, else the default socket.
    pub fn discover() -> Option<Ctr> {
        let socket = std::env::var_os("CONTAINERD_ADDRESS")
            .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from);
        Ctr::connect(&socket)
    }

    fn command(&self, namespace: Option<&str>) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--connect-timeout", "2s"]);
        if let Some(ns) = namespace {
            cmd.args(["--namespace", ns]);
        }
        cmd
    }

    fn lines(&self, namespace: Option<&str>, args: &[&str]) -> Result<String, EngineError> {
        let out = self
            .command(namespace)
            .args(args)
            .output()
            .map_err(|e| EngineError::Io(format!("ctr: {e}")))?;
        if !out.status.success() {
            return Err(EngineError::Io(format!(
                "ctr {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// containerd's namespaces (Docker's left out).
    pub fn namespaces(&self) -> Vec<String> {
        self.lines(None, &["namespaces", "list", "--quiet"])
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty() && *n != DOCKER_NAMESPACE)
            .map(str::to_owned)
            .collect()
    }

    /// A container by `namespace/id`, or by id in any namespace.
    pub fn inspect(&self, name_or_id: &str) -> Result<Option<ContainerInfo>, EngineError> {
        let (namespaces, id) = match name_or_id.split_once('/') {
            Some((ns, id)) => (vec![ns.to_owned()], id),
            None => (self.namespaces(), name_or_id),
        };
        if !valid_id(id) {
            return Ok(None);
        }
        for ns in namespaces {
            let Ok(text) = self.lines(Some(&ns), &["containers", "info", id]) else {
                continue;
            };
            let v: Value =
                serde_json::from_str(&text).map_err(|e| EngineError::Parse(e.to_string()))?;
            let tasks = self
                .lines(Some(&ns), &["tasks", "list"])
                .unwrap_or_default();
            return parse_info(&v, &ns, task_of(&tasks, id)).map(Some);
        }
        Ok(None)
    }

    /// `namespace/id` of every running task.
    pub fn running(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for ns in self.namespaces() {
            let tasks = self
                .lines(Some(&ns), &["tasks", "list"])
                .unwrap_or_default();
            for line in tasks.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let [id, _, "RUNNING", ..] = fields.as_slice() {
                    ids.push(format!("{ns}/{id}"));
                }
            }
        }
        ids
    }
}

/// A containerd container known only from its cgroup path (`/<namespace>/<id>`, the namespace
/// one of containerd's): gone before containerd was asked.
pub fn from_path(found: &CgroupContainer) -> ContainerInfo {
    ContainerInfo {
        name: found.lookup(),
        id: found.id.clone(),
        engine: "containerd".into(),
        ..Default::default()
    }
}

/// Whether `id` is a containerd identifier (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 76 long).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 76
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The task of container `id` in a `ctr tasks list` table: its pid and status.
pub fn task_of(table: &str, id: &str) -> Option<(u32, String)> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [task, pid, status, ..] if *task == id => {
                Some((pid.parse().ok()?, (*status).to_owned()))
            }
            _ => None,
        }
    })
}

/// Parses `ctr containers info` (the container record with its OCI spec).
pub fn parse_info(
    v: &Value,
    namespace: &str,
    task: Option<(u32, String)>,
) -> Result<ContainerInfo, EngineError> {
    let id = v["ID"]
        .as_str()
        .ok_or_else(|| EngineError::Parse("no ID".into()))?
        .to_owned();
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
    };
    let running = task.as_ref().is_some_and(|(_, s)| s == "RUNNING");
    let process = &v["Spec"]["process"];
    Ok(ContainerInfo {
        name: format!("{namespace}/{id}"),
        id,
        engine: "containerd".into(),
        image: v["Image"]
            .as_str()
            .filter(|i| !i.is_empty())
            .map(str::to_owned),
        running,
        pid: task.filter(|_| running).map(|(pid, _)| pid),
        labels: string_map(&v["Labels"]),
        effective_caps: strings(&process["capabilities"]["effective"]),
        seccomp: Some(!v["Spec"]["linux"]["seccomp"].is_null()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ctr_container_info() {
        let v: Value = serde_json::from_str(
            r#"{"ID":"web-1","Labels":{"app":"demo","io.containerd.image.config.stop-signal":"SIGTERM"},
                "Image":"localhost/bb:1","Runtime":{"Name":"io.containerd.runc.v2"},
                "Spec":{"process":{"capabilities":{"effective":["CAP_CHOWN","CAP_NET_RAW"]}},
                        "linux":{"cgroupsPath":"/cap-trace-test/web-1"}}}"#,
        )
        .unwrap();
        let tasks =
            "TASK     PID      STATUS\nweb-1    4242     RUNNING\nold      0        STOPPED\n";
        let info = parse_info(&v, "cap-trace-test", task_of(tasks, "web-1")).unwrap();
        assert_eq!(info.name, "cap-trace-test/web-1");
        assert_eq!(info.id, "web-1");
        assert_eq!(info.engine, "containerd");
        assert_eq!(info.pid, Some(4242));
        assert!(info.running);
        assert_eq!(info.labels["app"], "demo");
        assert_eq!(info.configured_caps().unwrap().len(), 2);
        assert_eq!(info.configured_seccomp(), Some(false));
        assert_eq!(task_of(tasks, "old"), Some((0, "STOPPED".into())));
        assert_eq!(task_of(tasks, "none"), None);
        assert!(parse_info(&serde_json::json!({}), "ns", None).is_err());
    }

    #[test]
    fn containerd_ids() {
        assert!(valid_id("web-1"));
        assert!(valid_id("a.b_c"));
        assert!(!valid_id(""));
        assert!(!valid_id("-x"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"x".repeat(77)));
    }
}
