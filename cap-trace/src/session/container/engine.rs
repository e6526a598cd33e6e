//! Talking to container engines: the Docker-compatible HTTP API on a unix socket (Docker and
//! podman both serve it), with the engines' command-line tools as a fallback.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What an engine says about a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// `podman`, `docker` or `containerd` (what answered).
    pub engine: String,
    /// The engine's version, when it says (`/version`, `docker version`).
    pub engine_version: Option<String>,
    pub image: Option<String>,
    pub running: bool,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub labels: BTreeMap<String, String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    /// The capability set the engine gave it, when the engine says (podman's EffectiveCaps).
    pub effective_caps: Option<Vec<String>>,
    /// Whether it runs under a seccomp filter, when the engine says (containerd's spec);
    /// otherwise inferred from `security_opt`.
    pub seccomp: Option<bool>,
    /// Named from the engine's events alone (it was removed before it could be inspected):
    /// how it was configured (capabilities, seccomp) is unknown.
    pub from_events: bool,
    /// The OCI runtime it runs with, when the engine says (podman's `OCIRuntime`).
    pub oci_runtime: Option<String>,
    /// The engine's whole record of it (Docker's format): what verification re-creates it
    /// from, kept from before a `--rm` container is removed.
    pub record: Option<Value>,
}

impl ContainerInfo {
    /// The capabilities it runs with, from the engine's configuration: podman's EffectiveCaps,
    /// else Docker's default set adjusted by CapAdd/CapDrop (its `ALL` when privileged). The
    /// kernel's view (`/proc/PID/status`) is better while the container runs.
    pub fn configured_caps(&self) -> Option<Vec<crate::linux::caps::Cap>> {
        use crate::linux::caps::{ALL, Cap, defaults};
        if self.from_events {
            return None;
        }
        let parse = |names: &[String]| -> Vec<Cap> {
            names.iter().filter_map(|n| n.parse::<Cap>().ok()).collect()
        };
        if let Some(eff) = &self.effective_caps {
            let mut caps = parse(eff);
            caps.sort();
            return Some(caps);
        }
        if self.engine != "docker" {
            return self
                .privileged
                .then(|| ALL.iter().map(|i| Cap(i.number)).collect());
        }
        let everything = docker_all(self.engine_version.as_deref());
        if self.privileged {
            return Some(everything);
        }
        let all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
        let mut caps: Vec<Cap> = if all(&self.cap_drop) {
            Vec::new()
        } else {
            defaults::DOCKER.to_vec()
        };
        if all(&self.cap_add) {
            caps = everything;
        } else {
            caps.extend(parse(&self.cap_add));
        }
        // Docker applies CapAdd, then CapDrop (but `--cap-drop=ALL` only clears the default).
        if !all(&self.cap_drop) {
            let dropped = parse(&self.cap_drop);
            caps.retain(|c| !dropped.contains(c));
        }
        caps.sort();
        caps.dedup();
        Some(caps)
    }

    /// Whether it runs under a seccomp filter: engines apply their default profile unless told
    /// `seccomp=unconfined` or running privileged.
    pub fn configured_seccomp(&self) -> Option<bool> {
        if self.seccomp.is_some() || self.from_events {
            return self.seccomp;
        }
        Some(
            !self.privileged
                && !self.security_opt.iter().any(|o| {
                    o.replace(':', "=")
                        .eq_ignore_ascii_case("seccomp=unconfined")
                }),
        )
    }
}

/// What Docker's `ALL` (and `--privileged`) grants: every capability it knows. Docker before
/// 23.0 leaves out PERFMON, BPF and CHECKPOINT_RESTORE (capabilities 38-40; moby#41563), and
/// refuses them in `--cap-add` too.
pub fn docker_all(version: Option<&str>) -> Vec<crate::linux::caps::Cap> {
    use crate::linux::caps::{ALL, Cap};
    let last = if docker_knows_new_caps(version) {
        u32::MAX
    } else {
        37
    };
    ALL.iter()
        .map(|i| Cap(i.number))
        .filter(|c| c.0 <= last)
        .collect()
}

/// Whether a Docker engine of this version grants PERFMON, BPF and CHECKPOINT_RESTORE (23.0 and
/// later; an unknown version is taken for a current one).
pub fn docker_knows_new_caps(version: Option<&str>) -> bool {
    let major = version
        .and_then(|v| v.split(['.', '+', '-']).next())
        .and_then(|m| m.parse::<u32>().ok());
    major.is_none_or(|m| m >= 23)
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Io(String),
    #[error("engine answered HTTP {0}: {1}")]
    Http(u16, String),
    #[error("engine answered something that is not a container description: {0}")]
    Parse(String),
}

/// Parses a Docker-format container description (`GET /containers/{id}/json`, `docker
/// inspect`, `podman inspect`).
pub fn parse_inspect(v: &Value, engine: &str) -> Result<ContainerInfo, EngineError> {
    let id = v["Id"]
        .as_str()
        .ok_or_else(|| EngineError::Parse("no Id".into()))?
        .to_owned();
    let name = v["Name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let state = &v["State"];
    let pid = state["Pid"].as_u64().filter(|&p| p > 0).map(|p| p as u32);
    let running = state["Running"].as_bool().unwrap_or(false);
    Ok(ContainerInfo {
        id,
        name,
        engine: engine.to_owned(),
        engine_version: None,
        image: v["Config"]["Image"]
            .as_str()
            .or(v["ImageName"].as_str())
            .map(str::to_owned),
        running,
        pid: if running { pid } else { None },
        exit_code: (!running)
            .then(|| state["ExitCode"].as_i64().map(|c| c as i32))
            .flatten(),
        labels: string_map(&v["Config"]["Labels"]),
        cap_add: strings(&v["HostConfig"]["CapAdd"]),
        cap_drop: strings(&v["HostConfig"]["CapDrop"]),
        privileged: v["HostConfig"]["Privileged"].as_bool().unwrap_or(false),
        security_opt: strings(&v["HostConfig"]["SecurityOpt"]),
        effective_caps: v["EffectiveCaps"]
            .as_array()
            .map(|_| strings(&v["EffectiveCaps"])),
        seccomp: None,
        from_events: false,
        oci_runtime: v["OCIRuntime"].as_str().map(str::to_owned),
        record: Some(v.clone()),
    })
}

/// A JSON object of strings (labels), as a map; anything else is empty.
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The Docker-compatible API on a unix socket.
#[derive(Clone, Debug)]
pub struct Api {
    pub socket: PathBuf,
    /// The engine's version, from `/version`.
    pub version: Option<String>,
}

impl Api {
    /// `GET path`: status and body.
    fn get(&self, path: &str) -> Result<(u16, Vec<u8>), EngineError> {
        self.request("GET", path, None, Duration::from_secs(10))
    }

    /// `METHOD path` with an optional JSON body: status and body. `timeout` bounds each read.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), EngineError> {
        let io = |e: std::io::Error| EngineError::Io(format!("{}: {e}", self.socket.display()));
        let mut stream = UnixStream::connect(&self.socket).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let content = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/json\r\n".to_owned()
        };
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: cap-trace\r\nAccept: application/json\r\n{content}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .map_err(io)?;
        let mut reader = BufReader::new(stream);
        read_response(&mut reader).map_err(io)
    }

    /// The engine's whole record of a container (Docker's format), if it knows it.
    pub(crate) fn record(&self, name_or_id: &str) -> Result<Option<Value>, EngineError> {
        self.get_json(&format!("/containers/{}/json", url_escape(name_or_id)))
    }

    pub(crate) fn get_json(&self, path: &str) -> Result<Option<Value>, EngineError> {
        let (status, body) = self.get(path)?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| EngineError::Parse(e.to_string())),
            404 => Ok(None),
            _ => Err(EngineError::Http(
                status,
                String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect(),
            )),
        }
    }

    /// Which engine serves this socket, and its version.
    pub fn identify(&self) -> Result<(String, Option<String>), EngineError> {
        let version = self.get_json("/version")?.unwrap_or_default();
        Ok(engine_of_version(&version))
    }

    pub fn inspect(
        &self,
        name_or_id: &str,
        engine: &str,
    ) -> Result<Option<ContainerInfo>, EngineError> {
        let Some(v) = self.record(name_or_id)? else {
            return Ok(None);
        };
        let mut info = parse_inspect(&v, engine)?;
        if engine == "podman" {
            // Docker's format leaves out the runtime; podman's own record has it.
            let own = format!("/v4.0.0/libpod/containers/{}/json", url_escape(&info.id));
            if let Ok(Some(own)) = self.get_json(&own) {
                info.oci_runtime = own["OCIRuntime"].as_str().map(str::to_owned);
                if let Some(caps) = own["EffectiveCaps"].as_array() {
                    info.effective_caps = Some(
                        caps.iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect(),
                    );
                }
            }
        }
        Ok(Some(info))
    }

    /// A container that no longer exists, from the engine's event history since `since` (Unix
    /// seconds): how a `--rm` container that already exited is named.
    pub fn from_history(
        &self,
        id: &str,
        since: u64,
        engine: &str,
    ) -> Result<Option<ContainerInfo>, EngineError> {
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + 1;
        let filters = url_escape(r#"{"type":["container"]}"#);
        let (status, body) = self.get(&format!(
            "/events?since={since}&until={until}&filters={filters}"
        ))?;
        if status != 200 {
            return Err(EngineError::Http(
                status,
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        Ok(info_from_events(&body, id, engine))
    }

    /// Ids of running containers.
    pub fn running(&self) -> Result<Vec<String>, EngineError> {
        let list = self.get_json("/containers/json")?.unwrap_or_default();
        Ok(list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["Id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Api {
    /// Names of running containers (`Names` of `GET /containers/json`, without the leading `/`).
    pub fn running_names(&self) -> Result<Vec<String>, EngineError> {
        let list = self.get_json("/containers/json")?.unwrap_or_default();
        Ok(names_of_list(&list))
    }
}

/// The names in a `GET /containers/json` answer.
pub fn names_of_list(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["Names"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/').to_owned())
        .collect()
}

/// The engine and its version from a `GET /version` answer: podman names itself among the
/// components; Docker does not.
pub fn engine_of_version(version: &Value) -> (String, Option<String>) {
    let components = version["Components"].as_array();
    let podman = components.is_some_and(|c| {
        c.iter()
            .any(|c| c["Name"].as_str().is_some_and(|n| n.contains("Podman")))
    });
    let number = version["Version"]
        .as_str()
        .or_else(|| components?.first()?["Version"].as_str())
        .map(str::to_owned);
    let name = if podman { "podman" } else { "docker" };
    (name.to_owned(), number)
}

/// Finds container `id` in a stream of engine events (Docker API objects or `podman events
/// --format json` lines).
pub fn info_from_events(stream: &[u8], id: &str, engine: &str) -> Option<ContainerInfo> {
    let mut info: Option<ContainerInfo> = None;
    for event in serde_json::Deserializer::from_slice(stream).into_iter::<Value>() {
        let Ok(event) = event else { break };
        if event_id(&event) != Some(id) {
            continue;
        }
        let entry = info.get_or_insert_with(|| ContainerInfo {
            id: id.to_owned(),
            engine: engine.to_owned(),
            from_events: true,
            ..Default::default()
        });
        apply_event(&event, entry);
    }
    info.filter(|i| !i.name.is_empty())
}

/// Event attributes that are not the container's labels (Docker and podman put both in one
/// object).
const EVENT_ATTRIBUTES: &[&str] = &[
    "name",
    "image",
    "exitCode",
    "containerExitCode",
    "podId",
    "execID",
    "signal",
    "health_status",
    "detach",
];

/// The container an event is about.
fn event_id(event: &Value) -> Option<&str> {
    // Docker API: {"Type","Action","Actor":{"ID","Attributes":{"name","image"}}};
    // podman events: {"ID","Name","Image","Status","ContainerExitCode"}.
    event["Actor"]["ID"]
        .as_str()
        .or(event["ID"].as_str())
        .or(event["id"].as_str())
}

/// What an event says about its container: name, image, labels, exit code. Returns the action.
fn apply_event<'a>(event: &'a Value, entry: &mut ContainerInfo) -> &'a str {
    // The APIs' events carry labels in `Actor.Attributes`, `podman events` in `Attributes`.
    let attrs = match &event["Actor"]["Attributes"] {
        Value::Object(_) => &event["Actor"]["Attributes"],
        _ => &event["Attributes"],
    };
    let name = attrs["name"].as_str().or(event["Name"].as_str());
    let image = attrs["image"].as_str().or(event["Image"].as_str());
    if let Some(name) = name {
        name.trim_start_matches('/').clone_into(&mut entry.name);
    }
    if let Some(image) = image {
        entry.image = Some(image.to_owned());
    }
    if let Some(labels) = attrs.as_object() {
        for (k, v) in labels {
            if !EVENT_ATTRIBUTES.contains(&k.as_str())
                && let Some(v) = v.as_str()
            {
                entry.labels.insert(k.clone(), v.to_owned());
            }
        }
    }
    let code = attrs["exitCode"]
        .as_str()
        .and_then(|c| c.parse::<i32>().ok())
        .or(attrs["containerExitCode"]
            .as_str()
            .and_then(|c| c.parse::<i32>().ok()))
        .or(event["ContainerExitCode"].as_i64().map(|c| c as i32));
    let action = event["Action"]
        .as_str()
        .or(event["Status"].as_str())
        .unwrap_or("");
    if action == "died" || action == "die" {
        // podman leaves ContainerExitCode out when it is 0.
        entry.exit_code = code.or(Some(0));
    }
    action
}

/// Containers the engines announced on their live event streams, kept for a while after
/// they are removed: a `--rm` container that lived for milliseconds is gone from the engine
/// before its checks are looked at, and an event history query can come back empty while
/// the engine rotates its event log.
#[derive(Debug, Default)]
pub struct Recent {
    seen: std::sync::Mutex<std::collections::HashMap<String, (ContainerInfo, Option<Instant>)>>,
}

impl Recent {
    /// How long a removed container stays nameable.
    const KEEP: Duration = Duration::from_secs(120);

    fn record(&self, event: &Value, engine: &str) {
        let Some(id) = event_id(event) else { return };
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (entry, removed) = seen.entry(id.to_owned()).or_insert_with(|| {
            (
                ContainerInfo {
                    id: id.to_owned(),
                    engine: engine.to_owned(),
                    from_events: true,
                    ..Default::default()
                },
                None,
            )
        });
        if matches!(apply_event(event, entry), "remove" | "destroy") {
            *removed = Some(Instant::now());
        }
        // Bounded under churn: forget what was removed long enough ago.
        seen.retain(|_, (_, removed)| removed.is_none_or(|at| at.elapsed() < Self::KEEP));
    }

    /// What the events said about container `id`, once they named it.
    pub fn get(&self, id: &str) -> Option<ContainerInfo> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(id)
            .map(|(info, _)| info.clone())
            .filter(|i| !i.name.is_empty())
    }

    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Api {
    /// Follows the engine's container events from `since` (Unix seconds) into `recent`, on a
    /// thread of its own, reconnecting if the engine goes away.
    pub fn watch(&self, engine: String, since: u64, recent: std::sync::Arc<Recent>) {
        let api = self.clone();
        let spawned = std::thread::Builder::new()
            .name("engine-events".into())
            .spawn(move || {
                let mut since = since;
                loop {
                    let now = || {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs()
                    };
                    let mut connected = false;
                    if let Err(e) = api.stream_events(since, &engine, &recent, &mut connected) {
                        log::debug!("{} event stream: {e}", api.socket.display());
                    }
                    // Reconnect a little before the stream broke; events seen twice do no
                    // harm. While the engine does not answer, keep asking from where the
                    // last stream broke: what it announces meanwhile is in its history.
                    if connected {
                        since = now().saturating_sub(5);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        if let Err(e) = spawned {
            log::debug!("cannot follow engine events: {e}");
        }
    }

    fn stream_events(
        &self,
        since: u64,
        engine: &str,
        recent: &Recent,
        connected: &mut bool,
    ) -> std::io::Result<()> {
        let mut stream = UnixStream::connect(&self.socket)?;
        *connected = true;
        let filters = url_escape(r#"{"type":["container"]}"#);
        write!(
            stream,
            "GET /events?since={since}&filters={filters} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: cap-trace\r\nAccept: application/json\r\n\r\n"
        )?;
        let mut reader = BufReader::new(stream);
        let mut on_line = |line: &[u8]| {
            if let Ok(event) = serde_json::from_slice::<Value>(line) {
                recent.record(&event, engine);
            }
        };
        read_streamed_lines(&mut reader, &mut on_line)
    }
}

/// Reads a streaming HTTP/1.1 response (chunked or not) and hands each complete line of its
/// body to `on_line`, until the stream ends.
pub fn read_streamed_lines(
    reader: &mut impl BufRead,
    on_line: &mut impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let head = read_head(reader)?;
    if head.status != 200 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("HTTP {}", head.status),
        ));
    }
    let mut pending: Vec<u8> = Vec::new();
    read_body(reader, &head, &mut |data| {
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let rest = pending.split_off(end + 1);
            on_line(&pending[..end]);
            pending = rest;
        }
    })
}

/// Reads an HTTP/1.1 response (Content-Length, chunked, or until close).
pub fn read_response(reader: &mut impl BufRead) -> std::io::Result<(u16, Vec<u8>)> {
    let head = read_head(reader)?;
    let mut body = Vec::new();
    read_body(reader, &head, &mut |data| body.extend_from_slice(data))?;
    Ok((head.status, body))
}

/// An HTTP/1.1 response's status and how its body is framed.
struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Head> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not an HTTP response"))?;
    let mut head = Head {
        status,
        length: None,
        chunked: false,
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
                head.chunked = true;
            }
        }
    }
    Ok(head)
}

/// Hands the body to `on_data` as it arrives: chunk by chunk, `Content-Length` bytes, or
/// until the connection closes.
fn read_body(
    reader: &mut impl BufRead,
    head: &Head,
    on_data: &mut impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    if head.chunked {
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                return Ok(());
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk)?;
            on_data(&chunk);
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(n) = head.length {
        let mut body = vec![0; n];
        reader.read_exact(&mut body)?;
        on_data(&body);
        Ok(())
    } else {
        let mut buf = [0u8; 8192];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            on_data(&buf[..n]);
        }
    }
}

pub fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Parses `crictl inspect` output (Kubernetes CRI runtimes: containerd, CRI-O).
pub fn parse_crictl(v: &Value) -> Result<ContainerInfo, EngineError> {
    let status = &v["status"];
    let id = status["id"]
        .as_str()
        .ok_or_else(|| EngineError::Parse("no status.id".into()))?
        .to_owned();
    let labels = string_map(&status["labels"]);
    let running = status["state"].as_str() == Some("CONTAINER_RUNNING");
    Ok(ContainerInfo {
        id,
        name: status["metadata"]["name"]
            .as_str()
            .or(labels
                .get("io.kubernetes.container.name")
                .map(String::as_str))
            .unwrap_or_default()
            .to_owned(),
        engine: "cri".into(),
        image: status["image"]["image"].as_str().map(str::to_owned),
        running,
        pid: v["info"]["pid"]
            .as_u64()
            .filter(|&p| p > 0 && running)
            .map(|p| p as u32),
        exit_code: (!running)
            .then(|| status["exitCode"].as_i64().map(|c| c as i32))
            .flatten(),
        labels,
        ..Default::default()
    })
}

/// An engine's command-line tool (`podman`, `docker`, or `crictl` for CRI runtimes).
#[derive(Clone, Debug)]
pub struct Cli {
    pub program: String,
    /// The engine's version, asked once.
    version: std::sync::Arc<std::sync::OnceLock<Option<String>>>,
}

impl Cli {
    pub fn new(program: &str) -> Cli {
        Cli {
            program: program.to_owned(),
            version: std::sync::Arc::default(),
        }
    }

    /// The engine's version (the server's, for docker), asked once.
    pub fn version(&self) -> Option<String> {
        self.version
            .get_or_init(|| {
                let format = match self.program.as_str() {
                    "docker" => "{{.Server.Version}}",
                    "podman" => "{{.Client.Version}}",
                    _ => return None,
                };
                let out = Command::new(&self.program)
                    .args(["version", "--format", format])
                    .output()
                    .ok()?;
                let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                (out.status.success() && !v.is_empty()).then_some(v)
            })
            .clone()
    }

    pub fn available(&self) -> bool {
        Command::new(&self.program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn inspect(&self, name_or_id: &str) -> Result<Option<ContainerInfo>, EngineError> {
        if self.program == "crictl" {
            let out = Command::new(&self.program)
                .args(["inspect", "--output", "json", name_or_id])
                .output()
                .map_err(|e| EngineError::Io(format!("crictl: {e}")))?;
            if !out.status.success() {
                return Ok(None);
            }
            let v: Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| EngineError::Parse(e.to_string()))?;
            return parse_crictl(&v).map(Some);
        }
        let out = Command::new(&self.program)
            .args(["inspect", "--type", "container", name_or_id])
            .output()
            .map_err(|e| EngineError::Io(format!("{}: {e}", self.program)))?;
        if !out.status.success() {
            // Both tools exit non-zero for "no such container".
            return Ok(None);
        }
        let v: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| EngineError::Parse(e.to_string()))?;
        match v.as_array().and_then(|a| a.first()) {
            Some(first) => parse_inspect(first, &self.program).map(Some),
            None => Ok(None),
        }
    }

    pub fn from_history(&self, id: &str, since: u64) -> Result<Option<ContainerInfo>, EngineError> {
        if self.program == "crictl" {
            // CRI runtimes keep exited containers until the kubelet removes them.
            return Ok(None);
        }
        let mut cmd = Command::new(&self.program);
        cmd.args([
            "events",
            "--since",
            &since.to_string(),
            "--filter",
            "type=container",
        ]);
        if self.program == "podman" {
            cmd.args(["--stream=false", "--format", "json"]);
        } else {
            cmd.args(["--until", "0s", "--format", "{{json .}}"]);
        }
        let out = cmd
            .output()
            .map_err(|e| EngineError::Io(format!("{}: {e}", self.program)))?;
        Ok(info_from_events(&out.stdout, id, &self.program))
    }

    pub fn running(&self) -> Result<Vec<String>, EngineError> {
        if self.program == "crictl" {
            let out = Command::new(&self.program)
                .args(["ps", "--quiet", "--no-trunc"])
                .output()
                .map_err(|e| EngineError::Io(format!("crictl: {e}")))?;
            return Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect());
        }
        let out = Command::new(&self.program)
            .args(["ps", "--no-trunc", "--format", "{{.ID}}"])
            .output()
            .map_err(|e| EngineError::Io(format!("{}: {e}", self.program)))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect())
    }
}

impl Cli {
    /// Names of running containers (crictl: their metadata names).
    pub fn running_names(&self) -> Result<Vec<String>, EngineError> {
        let args: &[&str] = if self.program == "crictl" {
            &["ps", "--output", "json"]
        } else {
            &["ps", "--format", "{{.Names}}"]
        };
        let out = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|e| EngineError::Io(format!("{}: {e}", self.program)))?;
        if !out.status.success() {
            return Err(EngineError::Io(format!(
                "{} ps: {}",
                self.program,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or_default()
            )));
        }
        if self.program == "crictl" {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            return Ok(v["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_owned))
                .collect());
        }
        // Docker lists a container's several names (links) separated by commas.
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .flat_map(|l| l.split(','))
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect())
    }
}

/// Whether an engine answers, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `podman at /run/podman/podman.sock`, `docker CLI`, ...
    pub engine: String,
    pub answering: bool,
    /// When it last started or stopped answering.
    pub since: std::time::SystemTime,
    /// Why it does not answer.
    pub error: Option<String>,
    /// Not asked again before this (an engine that just failed is not asked on every tick).
    retry_at: Option<Instant>,
}

/// What the engines say about a container.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Found(Box<ContainerInfo>),
    /// An engine answered that there is no such container.
    Absent,
    /// No engine answered: nothing can be said yet.
    Unreachable,
}

/// Says once, for each variable, that an engine address other than a unix socket
/// (`tcp://`, `ssh://`, ...) is not used, and how to name the engine instead.
fn unsupported_host(var: &str, value: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if said.iter().any(|v| v == var) {
        return;
    }
    said.push(var.to_owned());
    log::warn!(
        "{var}={value} is not supported: cap-trace asks engines through a unix socket only (the containers it traces run on this host); set {var}=unix:///PATH/TO/SOCKET or pass --engine-socket PATH"
    );
}

/// Up to three of `names` a user may have meant by `target`, nearest first: a few letters off
/// (swapped, missing, extra or wrong; one edit per four characters, at least one, case aside),
/// or one a leading part of the other (`web` and `web-1`).
pub fn similar_names<'a>(target: &str, names: &'a [String]) -> Vec<&'a str> {
    let target = target.to_lowercase();
    let most = (target.chars().count() / 4).max(1);
    let mut near: Vec<(usize, &str)> = names
        .iter()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let distance = crate::linux::caps::edits(&target, &lower);
            let shorter = target.len().min(lower.len());
            let leading =
                shorter >= 3 && (lower.starts_with(&target) || target.starts_with(&lower));
            (distance > 0 && (distance <= most || leading)).then_some((distance, name.as_str()))
        })
        .collect();
    near.sort_unstable();
    near.truncate(3);
    near.into_iter().map(|(_, name)| name).collect()
}

/// What the engines say of a container name that is not running: the running containers it
/// may have meant, and which engines were asked.
pub fn not_running_hint(engines: &Engines, target: &str) -> String {
    let (names, asked) = engines.running_names();
    let asked = if asked.is_empty() {
        "no engine".to_owned()
    } else {
        asked.join(", ")
    };
    let quoted: Vec<String> = similar_names(target, &names)
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect();
    match quoted.as_slice() {
        [] => format!("no running container has a similar name (asked {asked})"),
        [one] => format!("did you mean {one}? (running, a similar name; asked {asked})"),
        [first @ .., last] => format!(
            "did you mean {} or {last}? (running, similar names; asked {asked})",
            first.join(", ")
        ),
    }
}

/// Every way to reach an engine on this machine, most direct first.
#[derive(Clone, Debug, Default)]
pub struct Engines {
    pub apis: Vec<(Api, String)>,
    pub clis: Vec<Cli>,
    /// containerd, through `ctr` (containers started with `ctr run`).
    pub ctr: Option<super::containerd::Ctr>,
    /// Containers the API engines' live event streams announced (see [`Engines::watch`]).
    pub recent: std::sync::Arc<Recent>,
    /// Each API's and CLI's health, in that order.
    health: std::sync::Arc<std::sync::Mutex<Vec<Health>>>,
}

impl Engines {
    /// Finds engines: `socket` if given (a Docker-compatible API, or containerd's), else
    /// `$DOCKER_HOST`/`$CONTAINER_HOST`, the default podman and Docker sockets, the CLI tools
    /// and containerd (`$CONTAINERD_ADDRESS` or its default socket).
    pub fn discover(socket: Option<&Path>) -> Engines {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(s) = socket {
            candidates.push(s.to_owned());
        } else {
            for var in ["CONTAINER_HOST", "DOCKER_HOST"] {
                let Some(value) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
                    continue;
                };
                match value.strip_prefix("unix://") {
                    Some(path) => candidates.push(path.into()),
                    None => unsupported_host(var, &value),
                }
            }
            candidates.push("/run/podman/podman.sock".into());
            candidates.push("/var/run/docker.sock".into());
        }
        let mut apis = Vec::new();
        for socket in candidates {
            if !socket.exists() || apis.iter().any(|(a, _): &(Api, String)| a.socket == socket) {
                continue;
            }
            let mut api = Api {
                socket,
                version: None,
            };
            match api.identify() {
                Ok((engine, version)) => {
                    api.version = version;
                    apis.push((api, engine));
                }
                Err(e) => log::debug!("engine socket {}: {e}", api.socket.display()),
            }
        }
        let (clis, ctr) = match socket {
            Some(s) if apis.is_empty() => (Vec::new(), super::containerd::Ctr::connect(s)),
            Some(_) => (Vec::new(), None),
            None => (
                ["podman", "docker", "crictl"]
                    .into_iter()
                    .map(Cli::new)
                    .filter(Cli::available)
                    .collect(),
                super::containerd::Ctr::discover(),
            ),
        };
        let now = std::time::SystemTime::now();
        let health = apis
            .iter()
            .map(|(api, engine): &(Api, String)| format!("{engine} at {}", api.socket.display()))
            .chain(clis.iter().map(|c: &Cli| format!("{} CLI", c.program)))
            .map(|engine| Health {
                engine,
                answering: true,
                since: now,
                error: None,
                retry_at: None,
            })
            .collect();
        Engines {
            apis,
            clis,
            ctr,
            recent: std::sync::Arc::default(),
            health: std::sync::Arc::new(std::sync::Mutex::new(health)),
        }
    }

    /// Each engine's health: whether it answered when last asked, since when, and why not.
    pub fn health(&self) -> Vec<Health> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Drops the CLI tools (the daemon does once its privileges are dropped: they need root's).
    pub fn drop_clis(&mut self) {
        let apis = self.apis.len();
        self.clis.clear();
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .truncate(apis);
    }

    /// Whether engine `index` (APIs first, then CLIs) may be asked now.
    fn may_ask(&self, index: usize) -> bool {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(index)
            .and_then(|h| h.retry_at)
            .is_none_or(|at| Instant::now() >= at)
    }

    /// Records how engine `index` answered: `Err` only when it could not be reached at all.
    fn note<T>(&self, index: usize, result: &Result<T, EngineError>) {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(h) = health.get_mut(index) else {
            return;
        };
        let error = match result {
            Err(EngineError::Io(e)) => Some(e.clone()),
            Err(e @ EngineError::Http(status, _)) if *status >= 500 => Some(e.to_string()),
            _ => None,
        };
        let answering = error.is_none();
        if answering != h.answering {
            h.since = std::time::SystemTime::now();
            if answering {
                log::warn!("{} answers again", h.engine);
            } else {
                log::warn!(
                    "{} does not answer ({}): containers started meanwhile are traced and named once it does",
                    h.engine,
                    error.as_deref().unwrap_or_default()
                );
            }
        }
        h.answering = answering;
        h.retry_at = (!answering).then(|| Instant::now() + Duration::from_secs(1));
        h.error = error;
    }

    /// Whether any engine answered when last asked.
    pub fn any_answering(&self) -> bool {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|h| h.answering)
    }

    pub fn is_empty(&self) -> bool {
        self.apis.is_empty() && self.clis.is_empty() && self.ctr.is_none()
    }

    /// containerd's namespaces, when containerd is reachable.
    pub fn containerd_namespaces(&self) -> Vec<String> {
        self.ctr
            .as_ref()
            .map(super::containerd::Ctr::namespaces)
            .unwrap_or_default()
    }

    /// Starts following every API engine's container events from `since` (Unix seconds).
    pub fn watch(&self, since: u64) {
        for (api, engine) in &self.apis {
            api.watch(engine.clone(), since, self.recent.clone());
        }
    }

    /// A container that no longer exists: from the live event streams, else the engines'
    /// event histories.
    pub fn named_by_events(&self, id: &str, since: u64) -> Option<ContainerInfo> {
        self.recent.get(id).or_else(|| self.from_history(id, since))
    }

    /// Looks up the container a cgroup path names: containerd's own (`/<namespace>/<id>`) in
    /// containerd, any other by its id in every engine.
    pub fn lookup_found(&self, found: &super::path::CgroupContainer) -> Lookup {
        if found.namespace.is_none() {
            return self.lookup(&found.id);
        }
        match self.ctr.as_ref().map(|c| c.inspect(&found.lookup())) {
            Some(Ok(Some(info))) => Lookup::Found(Box::new(info)),
            Some(Err(e)) => {
                log::debug!("ctr: {e}");
                Lookup::Unreachable
            }
            Some(Ok(None)) | None => Lookup::Absent,
        }
    }

    /// [`Engines::lookup_found`], when only a found container matters.
    pub fn inspect_found(&self, found: &super::path::CgroupContainer) -> Option<ContainerInfo> {
        match self.lookup_found(found) {
            Lookup::Found(info) => Some(*info),
            Lookup::Absent | Lookup::Unreachable => None,
        }
    }

    /// Looks a container up by name or id in every engine.
    pub fn inspect(&self, name_or_id: &str) -> Option<ContainerInfo> {
        match self.lookup(name_or_id) {
            Lookup::Found(info) => Some(*info),
            Lookup::Absent | Lookup::Unreachable => None,
        }
    }

    /// Looks a container up by name or id in every engine, telling "no such container" from
    /// "no engine answered".
    pub fn lookup(&self, name_or_id: &str) -> Lookup {
        let mut answered = false;
        for (i, (api, engine)) in self.apis.iter().enumerate() {
            if !self.may_ask(i) {
                continue;
            }
            let result = api.inspect(name_or_id, engine);
            self.note(i, &result);
            match result {
                Ok(Some(mut info)) => {
                    info.engine_version.clone_from(&api.version);
                    return Lookup::Found(Box::new(info));
                }
                Ok(None) => answered = true,
                Err(e) => log::debug!("{}: {e}", api.socket.display()),
            }
        }
        for (i, cli) in self.clis.iter().enumerate() {
            let index = self.apis.len() + i;
            if !self.may_ask(index) {
                continue;
            }
            let result = cli.inspect(name_or_id);
            self.note(index, &result);
            match result {
                Ok(Some(mut info)) => {
                    info.engine_version = cli.version();
                    return Lookup::Found(Box::new(info));
                }
                Ok(None) => answered = true,
                Err(e) => log::debug!("{}: {e}", cli.program),
            }
        }
        match self.ctr.as_ref().map(|c| c.inspect(name_or_id)) {
            Some(Ok(Some(info))) => return Lookup::Found(Box::new(info)),
            Some(Ok(None)) => answered = true,
            Some(Err(e)) => log::debug!("ctr: {e}"),
            None => {}
        }
        if answered {
            Lookup::Absent
        } else {
            Lookup::Unreachable
        }
    }

    /// A container that no longer exists, from the engines' event histories.
    pub fn from_history(&self, id: &str, since: u64) -> Option<ContainerInfo> {
        for (i, (api, engine)) in self.apis.iter().enumerate() {
            if !self.may_ask(i) {
                continue;
            }
            let result = api.from_history(id, since, engine);
            self.note(i, &result);
            match result {
                Ok(Some(info)) => return Some(info),
                Ok(None) => {}
                Err(e) => log::debug!("{} events: {e}", api.socket.display()),
            }
        }
        for cli in &self.clis {
            match cli.from_history(id, since) {
                Ok(Some(info)) => return Some(info),
                Ok(None) => {}
                Err(e) => log::debug!("{} events: {e}", cli.program),
            }
        }
        None
    }

    /// Each engine asked, as it was found: `podman at /run/podman/podman.sock`, `docker CLI`,
    /// `containerd at /run/containerd/containerd.sock (ctr)`.
    pub fn describe(&self) -> Vec<String> {
        self.health()
            .into_iter()
            .map(|h| h.engine)
            .chain(
                self.ctr
                    .iter()
                    .map(|c| format!("containerd at {} (ctr)", c.socket.display())),
            )
            .collect()
    }

    /// Names of every running container, as [`Engines::running`] asks (the CLIs when no API
    /// answers), and the engines that were asked.
    pub fn running_names(&self) -> (Vec<String>, Vec<String>) {
        let mut names: Vec<String> = Vec::new();
        let mut asked: Vec<String> = Vec::new();
        fn ask(
            engine: String,
            answer: Result<Vec<String>, EngineError>,
            names: &mut Vec<String>,
            asked: &mut Vec<String>,
        ) {
            match answer {
                Ok(found) => {
                    asked.push(engine);
                    names.extend(found);
                }
                Err(_) => asked.push(format!("{engine} (no answer)")),
            }
        }
        for (api, engine) in &self.apis {
            let engine = format!("{engine} at {}", api.socket.display());
            ask(engine, api.running_names(), &mut names, &mut asked);
        }
        if names.is_empty() {
            for cli in &self.clis {
                let engine = format!("{} CLI", cli.program);
                ask(engine, cli.running_names(), &mut names, &mut asked);
            }
        }
        if let Some(ctr) = &self.ctr {
            asked.push(format!("containerd at {} (ctr)", ctr.socket.display()));
            names.extend(ctr.running());
        }
        names.sort();
        names.dedup();
        (names, asked)
    }

    /// Ids of every running container every engine knows.
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for (api, _) in &self.apis {
            ids.extend(api.running().unwrap_or_default());
        }
        if ids.is_empty() {
            for cli in &self.clis {
                ids.extend(cli.running().unwrap_or_default());
            }
        }
        if let Some(ctr) = &self.ctr {
            ids.extend(ctr.running());
        }
        ids.sort();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_api_inspect() {
        let v: Value = serde_json::from_str(
            r#"{"Id":"abc","Name":"/web","State":{"Status":"running","Running":true,"Pid":4242,"ExitCode":0},
                "Config":{"Image":"nginx:1","Labels":{"com.docker.compose.service":"web","com.docker.compose.project":"shop"}},
                "HostConfig":{"CapAdd":["NET_ADMIN"],"CapDrop":null,"Privileged":false,"SecurityOpt":["seccomp=unconfined"]}}"#,
        )
        .unwrap();
        let info = parse_inspect(&v, "docker").unwrap();
        assert_eq!(info.name, "web");
        assert_eq!(info.pid, Some(4242));
        assert!(info.running);
        assert_eq!(info.image.as_deref(), Some("nginx:1"));
        assert_eq!(info.labels["com.docker.compose.service"], "web");
        assert_eq!(info.cap_add, ["NET_ADMIN"]);
        assert!(info.cap_drop.is_empty());
        assert_eq!(info.security_opt, ["seccomp=unconfined"]);
        assert_eq!(info.exit_code, None);
    }

    #[test]
    fn parses_exited_podman_inspect() {
        let v: Value = serde_json::from_str(
            r#"{"Id":"def","Name":"job","ImageName":"localhost/bb:1","State":{"Status":"exited","Running":false,"Pid":0,"ExitCode":3},
                "Config":{"Labels":null},"HostConfig":{"CapAdd":[],"CapDrop":["ALL"]}}"#,
        )
        .unwrap();
        let info = parse_inspect(&v, "podman").unwrap();
        assert_eq!(info.name, "job");
        assert_eq!(info.pid, None);
        assert_eq!(info.exit_code, Some(3));
        assert_eq!(info.image.as_deref(), Some("localhost/bb:1"));
        assert_eq!(info.cap_drop, ["ALL"]);
        assert!(parse_inspect(&serde_json::json!({}), "x").is_err());
    }

    #[test]
    fn configured_capabilities() {
        let docker = ContainerInfo {
            engine: "docker".into(),
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["CHOWN".into(), "MKNOD".into()],
            ..Default::default()
        };
        let caps = docker.configured_caps().unwrap();
        assert_eq!(caps.len(), 14 - 2 + 1);
        assert!(caps.contains(&crate::linux::caps::Cap(12)));
        assert!(!caps.contains(&crate::linux::caps::Cap(0)));
        let minimal = ContainerInfo {
            engine: "docker".into(),
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["CAP_CHOWN".into()],
            ..Default::default()
        };
        assert_eq!(
            minimal.configured_caps().unwrap(),
            [crate::linux::caps::Cap(0)]
        );
        let podman = ContainerInfo {
            engine: "podman".into(),
            effective_caps: Some(vec!["CAP_CHOWN".into(), "CAP_KILL".into()]),
            ..Default::default()
        };
        assert_eq!(podman.configured_caps().unwrap().len(), 2);
        assert_eq!(podman.configured_seccomp(), Some(true));
        let privileged = ContainerInfo {
            privileged: true,
            ..Default::default()
        };
        assert_eq!(privileged.configured_caps().unwrap().len(), 41);
        assert_eq!(privileged.configured_seccomp(), Some(false));
        let unconfined = ContainerInfo {
            security_opt: vec!["seccomp=unconfined".into()],
            ..Default::default()
        };
        assert_eq!(unconfined.configured_seccomp(), Some(false));
        assert_eq!(ContainerInfo::default().configured_caps(), None);
    }

    #[test]
    fn parses_crictl_inspect() {
        let v: Value = serde_json::from_str(
            r#"{"status":{"id":"abc123","metadata":{"name":"nginx"},"state":"CONTAINER_RUNNING",
                "image":{"image":"docker.io/library/nginx:1.27"},
                "labels":{"io.kubernetes.container.name":"nginx","io.kubernetes.pod.name":"web-7d4b9c8f5-x2k9q",
                          "io.kubernetes.pod.namespace":"prod","io.kubernetes.pod.uid":"0f9a4e2c-1b7d-4c6e-9a51-3d2f8e7b6a10"}},
                "info":{"pid":4242}}"#,
        )
        .unwrap();
        let info = parse_crictl(&v).unwrap();
        assert_eq!(info.name, "nginx");
        assert_eq!(info.pid, Some(4242));
        assert!(info.running);
        assert_eq!(
            crate::session::container::identity(&info, None),
            "prod/web/nginx"
        );
        let k8s = crate::session::container::kubernetes(&info, None).unwrap();
        assert_eq!(k8s.pod.as_deref(), Some("web-7d4b9c8f5-x2k9q"));
        assert!(parse_crictl(&serde_json::json!({"status":{}})).is_err());
    }

    #[test]
    fn reads_http_responses() {
        let plain =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            read_response(&mut &plain[..]).unwrap(),
            (200, b"{}".to_vec())
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n";
        assert_eq!(
            read_response(&mut &chunked[..]).unwrap(),
            (200, b"[1,2]".to_vec())
        );
        let closed = b"HTTP/1.0 404 Not Found\r\n\r\nno such container";
        assert_eq!(read_response(&mut &closed[..]).unwrap().0, 404);
        assert!(read_response(&mut &b"garbage"[..]).is_err());
    }

    #[test]
    fn names_removed_containers_from_event_history() {
        let podman = br#"{"ID":"aaa","Image":"localhost/bb:1","Name":"other","Status":"start","Type":"container"}
{"ID":"bbb","Image":"localhost/bb:1","Name":"job","Status":"start","Type":"container","Attributes":{}}
{"ID":"bbb","Image":"localhost/bb:1","Name":"job","Status":"died","ContainerExitCode":3,"Type":"container","Attributes":{"team":"shop"}}
"#;
        let info = info_from_events(podman, "bbb", "podman").unwrap();
        assert_eq!(info.name, "job");
        // `podman events` (the CLI) puts the labels beside the event, not under an actor.
        assert_eq!(info.labels["team"], "shop");
        assert_eq!(info.image.as_deref(), Some("localhost/bb:1"));
        assert_eq!(info.exit_code, Some(3));
        assert!(!info.running);
        let docker = br#"{"status":"start","id":"ccc","Type":"container","Action":"start","Actor":{"ID":"ccc","Attributes":{"name":"web","image":"nginx","com.docker.compose.service":"web"}},"time":1}{"Type":"container","Action":"die","Actor":{"ID":"ccc","Attributes":{"name":"web","exitCode":"0"}}}"#;
        let info = info_from_events(docker, "ccc", "docker").unwrap();
        assert_eq!(info.name, "web");
        assert_eq!(info.exit_code, Some(0));
        assert_eq!(info.labels["com.docker.compose.service"], "web");
        assert_eq!(info_from_events(docker, "zzz", "docker"), None);
        let zero = br#"{"ID":"ddd","Name":"ok","Status":"died","Type":"container"}"#;
        assert_eq!(
            info_from_events(zero, "ddd", "podman").unwrap().exit_code,
            Some(0)
        );
        assert_eq!(info_from_events(b"not json", "ccc", "docker"), None);
    }

    #[test]
    fn labels_without_dots_are_labels_and_attributes_are_not() {
        let docker = br#"{"Type":"container","Action":"start","Actor":{"ID":"eee","Attributes":{"name":"w","image":"i","team":"shop","podId":"p","exitCode":"1"}}}"#;
        let info = info_from_events(docker, "eee", "podman").unwrap();
        assert_eq!(
            info.labels.into_iter().collect::<Vec<_>>(),
            [("team".to_string(), "shop".to_string())]
        );
    }

    #[test]
    fn streamed_events_are_read_line_by_line_across_chunks() {
        // Two events split across chunks at awkward places, then the end of the stream.
        let first = r#"{"Type":"container","Action":"start","Actor":{"ID":"a1","Attributes":{"name":"web"}}}"#;
        let second = r#"{"Type":"container","Action":"remove","Actor":{"ID":"a1","Attributes":{"name":"web"}}}"#;
        let body = format!("{first}\n{second}\n");
        let (one, two) = body.split_at(30);
        let (two, three) = two.split_at(70);
        let mut http = String::from(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for part in [one, two, three] {
            http.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
        }
        http.push_str("0\r\n\r\n");
        let mut lines = Vec::new();
        read_streamed_lines(&mut http.as_bytes(), &mut |l| {
            lines.push(String::from_utf8(l.to_vec()).unwrap());
        })
        .unwrap();
        assert_eq!(lines, [first, second]);

        let recent = Recent::default();
        for line in &lines {
            recent.record(&serde_json::from_str(line).unwrap(), "docker");
        }
        let info = recent.get("a1").unwrap();
        assert_eq!(
            (info.name.as_str(), info.engine.as_str()),
            ("web", "docker")
        );
        assert_eq!(recent.get("zz"), None);

        let refused = "HTTP/1.1 500 Internal Server Error\r\n\r\n";
        assert!(read_streamed_lines(&mut refused.as_bytes(), &mut |_| {}).is_err());
    }

    #[test]
    fn similar_container_names() {
        let names: Vec<String> = [
            "web-1",
            "web-2",
            "db",
            "ct-hint-9-web",
            "webhook",
            "cache",
            "web-3",
            "WBE",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(similar_names("ct-hint-9-wbe", &names), ["ct-hint-9-web"]);
        // A leading part of running names: the nearest three.
        assert_eq!(similar_names("web", &names), ["WBE", "web-1", "web-2"]);
        assert_eq!(similar_names("dv", &names), ["db"]);
        assert!(similar_names("postgres", &names).is_empty());
        // The name itself is running: nothing to suggest.
        assert!(similar_names("cache", &names).is_empty());
        let list: Value = serde_json::json!([
            {"Id": "a", "Names": ["/web-1"]},
            {"Id": "b", "Names": ["/db", "/shop/db"]},
            {"Id": "c"}
        ]);
        assert_eq!(names_of_list(&list), ["web-1", "db", "shop/db"]);
    }

    #[test]
    fn escapes_names_in_urls() {
        assert_eq!(url_escape("web-1_a.b"), "web-1_a.b");
        assert_eq!(url_escape("a/b c"), "a%2Fb%20c");
    }
}
