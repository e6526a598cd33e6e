//! The real consumers of the deploy formats, as the tests run them: PyYAML (as compose tools
//! and kubernetes-validate read YAML), kubectl (`patch --local`: the strategic merge a cluster
//! does), kubernetes-validate (the API's schemas, strict), podman-compose 1.6 and
//! docker-compose 1.x (`config`: how they merge an override into a base file), and
//! `systemd-analyze verify` (what systemd makes of unit lines). `cargo xtask setup` installs
//! them.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub use crate::engine::python_tool;
use crate::{TempDir, workspace_root};

/// Runs `cmd` with `input` on its stdin.
pub fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

/// PyYAML's safe loader, reading a tagged node (compose's `!override`) as the node itself.
const LOAD_YAML: &str = "import json, sys, yaml
class Loader(yaml.SafeLoader):
    pass
def untagged(loader, suffix, node):
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)
Loader.add_multi_constructor('!', untagged)
json.dump(yaml.load(sys.stdin.buffer, Loader=Loader), sys.stdout)
";

/// The YAML document as PyYAML's safe loader reads it (tags such as compose's `!override`
/// read as the node they tag), as JSON; panics when it does not parse.
#[track_caller]
pub fn pyyaml(text: &str) -> Value {
    let out = with_stdin(
        Command::new(python_tool("python")).args(["-c", LOAD_YAML]),
        text.as_bytes(),
    );
    assert!(
        out.status.success(),
        "PyYAML refused:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Applies `patch` to the resource `base` (JSON) as `kubectl patch --local` does (a strategic
/// merge, no cluster needed), and returns the patched resource.
#[track_caller]
pub fn kubectl_patch(base: &Value, patch: &str) -> Value {
    let dir = TempDir::new("kubectl");
    let base_file = dir.join("base.json");
    std::fs::write(&base_file, base.to_string()).unwrap();
    let patch_file = dir.join("patch.yaml");
    std::fs::write(&patch_file, patch).unwrap();
    let out = Command::new(python_tool("kubectl"))
        .args(["patch", "--local", "-o", "json", "-f"])
        .arg(&base_file)
        .arg("--patch-file")
        .arg(&patch_file)
        .env("KUBECONFIG", dir.join("none"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl patch refused:\n{patch}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Validates a resource against Kubernetes' schemas (strict: no unknown field), offline.
#[track_caller]
pub fn kubernetes_validate(resource: &Value) {
    let dir = TempDir::new("k8s-validate");
    let file = dir.join("resource.json");
    std::fs::write(&file, resource.to_string()).unwrap();
    let out = Command::new(python_tool("kubernetes-validate"))
        .args(["--strict", "-k", "1.30.0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate refused {resource:#}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Deployment whose container `container` runs privileged with SYS_ADMIN added, as root:
/// what a patch must take away.
pub fn deployment(name: &str, container: &str) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": container, "image": "example/app:1",
                     "securityContext": {"privileged": true, "runAsUser": 0,
                                         "capabilities": {"add": ["SYS_ADMIN", "NET_RAW"],
                                                          "drop": ["MKNOD"]}}},
                    {"name": "sidecar", "image": "example/sidecar:1"}
                ]}
            }
        }
    })
}

/// What `systemd-analyze verify` makes of a `[Service]` fragment in a unit with `ExecStart=`
/// (and `User=`, when given): the unit as systemd dumps it at debug level. Panics when verify
/// fails.
#[track_caller]
pub fn systemd_verify(fragment: &str, user: Option<&str>) -> String {
    let dir = TempDir::new("systemd");
    let unit = dir.join("cap-trace-probe.service");
    let mut text = format!("[Unit]\nDescription=probe\n\n{fragment}");
    text.push_str("ExecStart=/bin/true\n");
    if let Some(user) = user {
        text.push_str(&format!("User={user}\n"));
    }
    std::fs::write(&unit, &text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify:\n{text}\n{log}"
    );
    log
}

/// The value systemd parsed for `key` (`CapabilityBoundingSet`, `AmbientCapabilities`) in a
/// [`systemd_verify`] dump, if it shows one.
pub fn systemd_setting(log: &str, key: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_owned())
}

/// `TOOL -f BASE -f OVERRIDE config` in `dir`: the merged compose file, or the tool's error.
pub fn compose_config(tool: &Path, dir: &Path, files: &[&str]) -> Output {
    let mut cmd = Command::new(tool);
    cmd.current_dir(dir).env_remove("DOCKER_HOST");
    for f in files {
        cmd.args(["-f", f]);
    }
    cmd.arg("config").output().unwrap()
}

/// The errors Debian's python3-jsonschema finds in each file against `docs/profile.schema.json`
/// (draft 2020-12), one `FILE: PATH: MESSAGE` line each; empty when every file is valid.
pub fn schema_errors(files: &[&Path]) -> String {
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
for name in sys.argv[2:]:
    document = json.load(open(name))
    for profile in document if isinstance(document, list) else [document]:
        for e in validator.iter_errors(profile):
            print("%s: %s: %s" % (name, "/".join(map(str, e.absolute_path)), e.message[:300]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(workspace_root().join("docs/profile.schema.json"))
        .args(files)
        .output()
        .expect("python3 runs (cargo xtask setup installs python3-jsonschema)");
    assert!(
        out.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
