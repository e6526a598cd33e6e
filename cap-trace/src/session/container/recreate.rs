//! Containers re-created for verification: a copy of a learned container, from the engine's
//! own record of it (image, command, entrypoint, environment, user, working directory, mounts,
//! network, sysctls, limits, labels), under `--cap-drop=ALL` plus a candidate set, with a
//! fresh name and no restart policy; and what verification asks of the engine's API for them
//! (create, start, exec, stop, remove).
//!
//! What is not copied, and why: the restart policy (a failing run would be restarted for
//! ever; every copy has `no`), compose bookkeeping labels (`com.docker.compose.*`,
//! `io.podman.compose.*`: compose would take the copy for one of its own), network aliases and
//! static addresses (traffic meant for the original would reach the copy), the hostname the
//! engine made up. Host ports the original still holds are not published (see
//! [`Blueprint::ports`]).

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::linux::caps::Cap;
use crate::session::container::engine::{Api, EngineError, url_escape};

/// The label every verification container carries: the original's name.
pub const LABEL: &str = "io.cap-trace.verify-of";

/// What copies of one learned container are made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Blueprint {
    /// The original's name.
    pub name: String,
    /// The create body, without capabilities and ports.
    pub body: Value,
    /// Host ports the original publishes (`80/tcp -> 8080`), when any.
    pub ports: Vec<String>,
    pub port_bindings: Value,
    /// The original's restart policy, when it had one.
    pub restart: Option<String>,
}

/// The fields of `Config` copied as they are.
const CONFIG: &[&str] = &[
    "User",
    "WorkingDir",
    "Tty",
    "StopSignal",
    "ExposedPorts",
    "Volumes",
    "Domainname",
];

/// The fields of `HostConfig` copied as they are (when set).
const HOST_CONFIG: &[&str] = &[
    "Binds",
    "Mounts",
    "NetworkMode",
    "Sysctls",
    "SecurityOpt",
    "ReadonlyRootfs",
    "Tmpfs",
    "Devices",
    "Init",
    "ShmSize",
    "Dns",
    "DnsSearch",
    "DnsOptions",
    "ExtraHosts",
    "GroupAdd",
    "UsernsMode",
    "CgroupnsMode",
    "OomScoreAdj",
    "Memory",
    "MemorySwap",
    "NanoCpus",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "VolumesFrom",
];

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Bool(b) => *b,
    }
}

/// The blueprint of a container from its inspect record (Docker's format, which podman's
/// compatible API serves too). `runtime`: the OCI runtime it ran with, when the engine says
/// it elsewhere (podman's libpod record).
pub fn blueprint(inspect: &Value, runtime: Option<&str>) -> Result<Blueprint, String> {
    let name = inspect["Name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let config = &inspect["Config"];
    let host = &inspect["HostConfig"];
    let image = inspect["Image"]
        .as_str()
        .or(config["Image"].as_str())
        .ok_or("the engine's record names no image")?;
    let mut body = Map::new();
    body.insert("Image".into(), json!(image));
    for (key, value) in [
        ("Cmd", &config["Cmd"]),
        ("Entrypoint", &config["Entrypoint"]),
    ] {
        if is_set(value) {
            body.insert(key.into(), value.clone());
        }
    }
    // The engine adds HOSTNAME itself; the copy gets its own.
    if let Some(env) = config["Env"].as_array() {
        let env: Vec<Value> = env
            .iter()
            .filter(|e| !e.as_str().is_some_and(|s| s.starts_with("HOSTNAME=")))
            .cloned()
            .collect();
        body.insert("Env".into(), Value::Array(env));
    }
    for key in CONFIG {
        if is_set(&config[key]) {
            body.insert((*key).into(), config[key].clone());
        }
    }
    // podman's record gives the stop signal as a number; create takes a string.
    if let Some(n) = config["StopSignal"].as_u64() {
        body.insert("StopSignal".into(), json!(n.to_string()));
    }
    // A hostname the user chose (not the engine's pick of the id's first 12 characters).
    let id = inspect["Id"].as_str().unwrap_or_default();
    if let Some(h) = config["Hostname"]
        .as_str()
        .filter(|h| !h.is_empty() && !id.starts_with(h))
    {
        body.insert("Hostname".into(), json!(h));
    }
    let mut labels: Map<String, Value> = config["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !k.starts_with("com.docker.compose.") && !k.starts_with("io.podman.compose.")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    labels.insert(LABEL.into(), json!(name));
    body.insert("Labels".into(), Value::Object(labels));

    body.insert(
        "HostConfig".into(),
        Value::Object(host_config(host, runtime)),
    );

    let port_bindings = host["PortBindings"].clone();
    let mut ports = Vec::new();
    if let Some(bindings) = port_bindings.as_object() {
        for (port, binds) in bindings {
            for b in binds.as_array().into_iter().flatten() {
                if let Some(hp) = b["HostPort"].as_str().filter(|p| !p.is_empty()) {
                    ports.push(format!("{port} -> {hp}"));
                }
            }
        }
    }
    if host["PublishAllPorts"].as_bool() == Some(true) {
        ports.push("every exposed port (-P)".into());
    }
    let restart = host["RestartPolicy"]["Name"]
        .as_str()
        .filter(|r| !r.is_empty() && *r != "no")
        .map(str::to_owned);
    Ok(Blueprint {
        name,
        body: Value::Object(body),
        ports,
        port_bindings,
        restart,
    })
}

/// The copy's `HostConfig`: the original's settings that shape what it may do and see, never
/// privileged, never restarted, never removed by the engine behind verification's back.
fn host_config(host: &Value, runtime: Option<&str>) -> Map<String, Value> {
    let mut hc = Map::new();
    for key in HOST_CONFIG {
        if is_set(&host[key]) {
            hc.insert((*key).into(), host[key].clone());
        }
    }
    // Namespaces shared with the host or another container; the engines' own words for
    // private ones differ ("private", "shareable") and are their default anyway.
    for key in ["IpcMode", "PidMode", "UTSMode"] {
        if let Some(mode) = host[key]
            .as_str()
            .filter(|m| *m == "host" || m.starts_with("container:"))
        {
            hc.insert(key.into(), json!(mode));
        }
    }
    if let Some(limit) = host["PidsLimit"].as_i64().filter(|&l| l > 0) {
        hc.insert("PidsLimit".into(), json!(limit));
    }
    if let Some(ulimits) = host["Ulimits"].as_array().filter(|u| !u.is_empty()) {
        // podman says RLIMIT_NOFILE, Docker nofile: both take nofile.
        let normalised: Vec<Value> = ulimits
            .iter()
            .map(|u| {
                let name = u["Name"].as_str().unwrap_or_default();
                let name = name
                    .strip_prefix("RLIMIT_")
                    .unwrap_or(name)
                    .to_ascii_lowercase();
                json!({"Name": name, "Soft": u["Soft"], "Hard": u["Hard"]})
            })
            .collect();
        hc.insert("Ulimits".into(), Value::Array(normalised));
    }
    let runtime = runtime
        .or(host["Runtime"].as_str())
        .filter(|r| !r.is_empty() && *r != "oci");
    if let Some(runtime) = runtime {
        hc.insert("Runtime".into(), json!(runtime));
    }
    hc.insert("Privileged".into(), json!(false));
    hc.insert("RestartPolicy".into(), json!({"Name": "no"}));
    hc.insert("AutoRemove".into(), json!(false));
    hc
}

impl Blueprint {
    /// The create body of a copy holding exactly `set`. With `publish`, the original's host
    /// ports are published too (they are free: the original has stopped).
    pub fn body(&self, set: &[Cap], publish: bool) -> Value {
        let mut body = self.body.clone();
        let hc = &mut body["HostConfig"];
        hc["CapDrop"] = json!(["ALL"]);
        hc["CapAdd"] = Value::Array(set.iter().map(|c| json!(c.kernel_name())).collect());
        if publish && is_set(&self.port_bindings) {
            hc["PortBindings"] = self.port_bindings.clone();
        }
        body
    }
}

/// The message of an engine's error answer (`{"message": ...}`), else the body.
fn engine_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(300)
                .collect()
        })
}

fn expect(status: u16, body: &[u8], ok: &[u16]) -> Result<(), EngineError> {
    if ok.contains(&status) {
        Ok(())
    } else {
        Err(EngineError::Http(status, engine_message(body)))
    }
}

const CALL: Duration = Duration::from_secs(30);

/// Creates a container; returns its id.
pub fn create(api: &Api, name: &str, body: &Value) -> Result<String, EngineError> {
    log::debug!("creating container {name}: {body}");
    let (status, answer) = api.request(
        "POST",
        &format!("/containers/create?name={}", url_escape(name)),
        Some(body),
        CALL,
    )?;
    expect(status, &answer, &[200, 201])?;
    let v: Value =
        serde_json::from_slice(&answer).map_err(|e| EngineError::Parse(e.to_string()))?;
    v["Id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| EngineError::Parse("no Id in the create answer".into()))
}

pub fn start(api: &Api, id: &str) -> Result<(), EngineError> {
    let (status, answer) = api.request("POST", &format!("/containers/{id}/start"), None, CALL)?;
    expect(status, &answer, &[204, 304])
}

/// Stops a container: its stop signal, then SIGKILL after `grace`.
pub fn stop(api: &Api, id: &str, grace: Duration) -> Result<(), EngineError> {
    let (status, answer) = api.request(
        "POST",
        &format!("/containers/{id}/stop?t={}", grace.as_secs()),
        None,
        CALL + grace,
    )?;
    expect(status, &answer, &[204, 304, 404])
}

/// The last lines a container printed (stdout and stderr, in the order they came), as text.
pub fn logs(api: &Api, id: &str) -> Result<String, EngineError> {
    let (status, stream) = api.request(
        "GET",
        &format!("/containers/{id}/logs?stdout=true&stderr=true&tail={LOG_LINES}"),
        None,
        CALL,
    )?;
    expect(status, &stream, &[200])?;
    Ok(demultiplex(&stream))
}

/// How many of a copy's last lines are asked for (what is kept is cut to a few KiB after).
const LOG_LINES: u32 = 50;

/// Removes a container (running or not) and its anonymous volumes.
pub fn remove(api: &Api, id: &str) -> Result<(), EngineError> {
    let (status, answer) = api.request(
        "DELETE",
        &format!("/containers/{id}?force=true&v=true"),
        None,
        CALL,
    )?;
    expect(status, &answer, &[200, 204, 404])
}

/// Runs `sh -c COMMAND` inside a container and waits for it (at most `limit`): its exit status
/// and output.
pub fn exec(api: &Api, id: &str, command: &str, limit: Duration) -> (Option<i32>, String) {
    match exec_inner(api, id, command, limit) {
        Ok(result) => result,
        Err(e) => (
            None,
            format!("cannot run the health check in the container: {e}"),
        ),
    }
}

fn exec_inner(
    api: &Api,
    id: &str,
    command: &str,
    limit: Duration,
) -> Result<(Option<i32>, String), EngineError> {
    let create = json!({
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": false,
        "Cmd": ["sh", "-c", command],
    });
    let (status, answer) = api.request(
        "POST",
        &format!("/containers/{id}/exec"),
        Some(&create),
        CALL,
    )?;
    expect(status, &answer, &[200, 201])?;
    let exec: Value =
        serde_json::from_slice(&answer).map_err(|e| EngineError::Parse(e.to_string()))?;
    let exec_id = exec["Id"]
        .as_str()
        .ok_or_else(|| EngineError::Parse("no exec Id".into()))?
        .to_owned();
    // Attached: the answer streams its output until the command ends.
    let (status, stream) = api.request(
        "POST",
        &format!("/exec/{exec_id}/start"),
        Some(&json!({"Detach": false, "Tty": false})),
        limit,
    )?;
    expect(status, &stream, &[200, 101])?;
    let output = demultiplex(&stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = api
            .get_json(&format!("/exec/{exec_id}/json"))?
            .unwrap_or_default();
        if state["Running"].as_bool() != Some(true) {
            let code = state["ExitCode"].as_i64().map(|c| c as i32);
            return Ok((code, output));
        }
        if Instant::now() > deadline {
            return Ok((None, output));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text of an attached, non-TTY stream: frames of an 8-byte header (stream, 0, 0, 0,
/// big-endian length) and the data. A stream that is not framed is returned as it is.
pub fn demultiplex(stream: &[u8]) -> String {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 8 && rest[0] <= 2 && rest[1..4] == [0, 0, 0] {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + len).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    if out.is_empty() && !rest.is_empty() {
        out.extend_from_slice(rest);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// podman's API served by cap-trace itself, for as long as verification runs, when no API
/// socket answers: the podman command's own way to create containers from a record.
pub struct PrivateService {
    child: Child,
    dir: PathBuf,
    pub api: Api,
}

impl PrivateService {
    /// Starts `podman [--runtime RUNTIME] system service` on a socket in a private directory.
    pub fn start(runtime: Option<&str>) -> Result<PrivateService, String> {
        let dir = std::env::temp_dir().join(format!(
            "cap-trace-engine-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        ));
        // A fresh directory only root may enter: nothing another user prepared.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let socket = dir.join("podman.sock");
        let mut cmd = Command::new("podman");
        if let Some(r) = runtime {
            cmd.args(["--runtime", r]);
        }
        let child = cmd
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start podman's API service: {e}"))?;
        let mut service = PrivateService {
            child,
            dir,
            api: Api {
                socket,
                version: None,
            },
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while service.api.identify().is_err() {
            if Instant::now() > deadline || service.child.try_wait().ok().flatten().is_some() {
                return Err(
                    "podman's API service did not start (run `podman system service` to see why)"
                        .into(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(service)
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every verification container created and not yet removed: removed when dropped (an error,
/// a panic, Ctrl-C), so that none is left behind.
pub struct Created {
    pub api: Api,
    pub ids: Vec<String>,
}

impl Created {
    pub fn removed(&mut self, id: &str) {
        self.ids.retain(|i| i != id);
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            if let Err(e) = remove(&self.api, &id) {
                eprintln!("cap-trace: warning: cannot remove verification container {id}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker_record() -> Value {
        serde_json::from_str(
            r#"{"Id":"0123456789abcdef0123","Name":"/web","Image":"sha256:feed",
            "Config":{"Hostname":"0123456789ab","User":"www-data","WorkingDir":"/srv","Tty":false,
              "Env":["PATH=/bin","HOSTNAME=0123456789ab","FOO=bar"],"Cmd":["nginx","-g","daemon off;"],
              "Entrypoint":null,"Image":"nginx:1","StopSignal":"SIGQUIT",
              "Labels":{"team":"shop","com.docker.compose.service":"web","com.docker.compose.project":"p"},
              "ExposedPorts":{"80/tcp":{}}},
            "HostConfig":{"Binds":["/srv/www:/usr/share/nginx/html:ro"],"NetworkMode":"none",
              "PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},
              "RestartPolicy":{"Name":"unless-stopped","MaximumRetryCount":0},
              "CapAdd":["ALL"],"CapDrop":["SYS_RESOURCE"],"Privileged":true,
              "Sysctls":{"net.ipv4.ip_unprivileged_port_start":"1024"},
              "SecurityOpt":["seccomp=unconfined"],"ReadonlyRootfs":true,"Runtime":"runc",
              "IpcMode":"private","PidMode":"","UTSMode":"host","PidsLimit":0,"ShmSize":67108864,
              "Ulimits":[{"Name":"RLIMIT_NOFILE","Soft":20000,"Hard":20000}],
              "Mounts":[{"Type":"tmpfs","Target":"/cache"}]}}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_copy_is_the_original_under_exactly_the_set() {
        let bp = blueprint(&docker_record(), None).unwrap();
        assert_eq!(bp.name, "web");
        assert_eq!(bp.ports, ["80/tcp -> 8080"]);
        assert_eq!(bp.restart.as_deref(), Some("unless-stopped"));
        let body = bp.body(&[Cap(0), Cap(10)], false);
        assert_eq!(body["Image"], "sha256:feed");
        assert_eq!(body["Cmd"], json!(["nginx", "-g", "daemon off;"]));
        assert!(body.get("Entrypoint").is_none());
        assert_eq!(body["Env"], json!(["PATH=/bin", "FOO=bar"]));
        assert_eq!(body["User"], "www-data");
        assert_eq!(body["WorkingDir"], "/srv");
        assert_eq!(body["StopSignal"], "SIGQUIT");
        assert!(
            body.get("Hostname").is_none(),
            "the engine's own hostname is not copied"
        );
        assert_eq!(
            body["Labels"],
            json!({"team": "shop", "io.cap-trace.verify-of": "web"})
        );
        let hc = &body["HostConfig"];
        assert_eq!(hc["CapDrop"], json!(["ALL"]));
        assert_eq!(hc["CapAdd"], json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]));
        assert_eq!(hc["Privileged"], false);
        assert_eq!(hc["RestartPolicy"], json!({"Name": "no"}));
        assert_eq!(hc["Binds"], json!(["/srv/www:/usr/share/nginx/html:ro"]));
        assert_eq!(hc["Mounts"], json!([{"Type": "tmpfs", "Target": "/cache"}]));
        assert_eq!(hc["NetworkMode"], "none");
        assert_eq!(hc["Sysctls"]["net.ipv4.ip_unprivileged_port_start"], "1024");
        assert_eq!(hc["SecurityOpt"], json!(["seccomp=unconfined"]));
        assert_eq!(hc["ReadonlyRootfs"], true);
        assert_eq!(hc["Runtime"], "runc");
        assert_eq!(hc["UTSMode"], "host");
        assert!(hc.get("IpcMode").is_none() && hc.get("PidMode").is_none());
        assert!(hc.get("PidsLimit").is_none());
        assert_eq!(
            hc["Ulimits"],
            json!([{"Name": "nofile", "Soft": 20000, "Hard": 20000}])
        );
        // Ports only when asked (the original no longer holds them).
        assert!(hc.get("PortBindings").is_none());
        let body = bp.body(&[], true);
        assert_eq!(
            body["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
            "8080"
        );
        assert_eq!(body["HostConfig"]["CapAdd"], json!([]));
    }

    #[test]
    fn podman_records_too() {
        let mut v = docker_record();
        v["HostConfig"]["Runtime"] = json!("oci");
        v["Config"]["Entrypoint"] = json!([]);
        v["Config"]["Hostname"] = json!("web-host");
        v["HostConfig"]["PidsLimit"] = json!(2048);
        v["Config"]["StopSignal"] = json!(15);
        let bp = blueprint(&v, Some("runc")).unwrap();
        assert_eq!(bp.body["HostConfig"]["Runtime"], "runc");
        assert_eq!(bp.body["Hostname"], "web-host");
        assert_eq!(bp.body["HostConfig"]["PidsLimit"], 2048);
        assert_eq!(bp.body["StopSignal"], "15");
        assert!(bp.body.get("Entrypoint").is_none());
        let bp = blueprint(&v, None).unwrap();
        assert!(
            bp.body["HostConfig"].get("Runtime").is_none(),
            "podman's `oci` is no runtime name"
        );
        assert!(blueprint(&json!({"Name": "x"}), None).is_err());
    }

    #[test]
    fn attached_streams_are_demultiplexed() {
        let mut stream = vec![1, 0, 0, 0, 0, 0, 0, 3];
        stream.extend_from_slice(b"ok\n");
        stream.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        stream.extend_from_slice(b"err\n");
        assert_eq!(demultiplex(&stream), "ok\nerr\n");
        assert_eq!(demultiplex(b"plain text"), "plain text");
        assert_eq!(
            engine_message(br#"{"message":"no such image"}"#),
            "no such image"
        );
        assert_eq!(engine_message(b"oops"), "oops");
    }
}
