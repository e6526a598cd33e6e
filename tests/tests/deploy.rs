//! The deploy formats with their real consumers: compose files deployed with podman-compose and
//! merged by docker-compose 1.x, Kubernetes patches applied by kubectl and validated against the
//! API's schemas, systemd lines read by systemd-analyze; and every format of profiles whose
//! names came from a hostile command line, thread name or container label, with no line
//! injected anywhere.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cap_trace_tests::consumers::{
    compose_config, deployment, kubectl_patch, kubernetes_validate, python_tool, pyyaml,
    systemd_setting, systemd_verify,
};
use cap_trace_tests::engine::{Engine, cap_eff_line};
use cap_trace_tests::podman::{self, Background};
use cap_trace_tests::*;
use serde_json::{Value, json};

/// What a workload or an engine may put in a name: line breaks, a unit section and directive,
/// YAML indicators, quotes, an escape sequence, a trailing backslash.
const HOSTILE: &str =
    "web\n[Service]\nExecStartPre=/tmp/evil\r\n- privileged: true # \"q' \u{1b}[31mRED\\";

fn show(profile: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["show", profile.to_str().unwrap()];
    all.extend(args);
    cap_trace(&all)
}

fn save(dir: &TempDir, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

/// Text for a terminal: no control character but line feeds, and no line that a hostile name
/// started (a unit file has one `[Service]` line of its own).
#[track_caller]
fn assert_terminal_safe(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters: {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("ExecStartPre")),
        "{text}"
    );
    assert!(
        text.lines().filter(|l| l.starts_with("[Service]")).count()
            <= usize::from(text.contains("\nCapabilityBoundingSet=")),
        "{text}"
    );
}

/// Every rendered format of `profile`, checked with its consumer: nothing a name holds ends a
/// comment, no `ExecStartPre=` reaches systemd, and the YAML parses to what cap-trace meant.
fn every_format_is_safe(profile: &Path, expect: &[&str]) {
    let text = ok(&show(
        profile,
        &["--format", "text", "--verbose", "--explain"],
    ));
    assert_terminal_safe(&text);

    let flags = ok(&show(profile, &["--format", "docker"]));
    assert_terminal_safe(&flags);
    assert!(
        flags
            .lines()
            .all(|l| l.starts_with("# ") || l.starts_with("--cap-drop=ALL")),
        "{flags}"
    );

    let oci: Value = serde_json::from_str(&ok(&show(profile, &["--format", "oci"]))).unwrap();
    assert_eq!(
        oci["bounding"],
        json!(
            expect
                .iter()
                .map(|c| format!("CAP_{c}"))
                .collect::<Vec<_>>()
        )
    );

    let unit = ok(&show(profile, &["--format", "systemd"]));
    assert_terminal_safe(&unit);
    let dump = systemd_verify(&unit, None);
    assert!(!dump.contains("/tmp/evil"), "{dump}");
    let parsed = systemd_setting(&dump, "CapabilityBoundingSet").unwrap_or_default();
    let want: Vec<String> = expect
        .iter()
        .map(|c| format!("cap_{}", c.to_lowercase()))
        .collect();
    assert_eq!(parsed, want.join(" "), "{unit}\n{dump}");

    let patch = ok(&show(profile, &["--format", "k8s"]));
    assert_terminal_safe(&patch);
    let doc = pyyaml(&patch);
    let containers = doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "{patch}");
    let name = containers[0]["name"].as_str().unwrap();
    assert!(
        name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-'),
        "not a DNS-1123 label: {name}"
    );
    let patched = kubectl_patch(&deployment("app", name), &patch);
    kubernetes_validate(&patched);
    let sc = &patched["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["capabilities"]["add"], json!(expect), "{patched:#}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["privileged"], false);
}

/// A command line and a thread name chosen to break outputs: a newline and a unit directive in
/// an argument, bytes that are not UTF-8 and an escape sequence in another, and a thread that
/// names itself the same way before it makes its capability check.
#[test]
fn hostile_command_lines_and_thread_names_are_escaped_in_every_format() {
    if !privileged("hostile_command_lines_and_thread_names_are_escaped_in_every_format") {
        return;
    }
    let dir = TempDir::new("hostile-run");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let script = format!("chown nobody {}\nExecStartPre=/tmp/evil", file.display());
    let profile = dir.join("run.json");
    let out = cap_trace([
        OsStr::new("run"),
        OsStr::new("--json"),
        OsStr::new("--output"),
        profile.as_os_str(),
        OsStr::new("--"),
        OsStr::new("sh"),
        OsStr::new("-c"),
        OsStr::new(&script),
        OsStr::from_bytes(b"\xff\xfe\x1b[31m: #\"'"),
    ]);
    ok(&out);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    // Bytes that are not UTF-8 are kept, written \xNN, not replaced.
    assert_eq!(json["workload"]["command"][3], "\\xff\\xfe\u{1b}[31m: #\"'");
    assert_eq!(suggested(&json), ["CHOWN"]);
    every_format_is_safe(&profile, &["CHOWN"]);

    // A thread that names itself (prctl PR_SET_NAME) with a newline and an escape sequence.
    let chown = dir.join("comm.json");
    let python = "import ctypes, os, sys\n\
                  ctypes.CDLL(None).prctl(15, b'ev\\nil\\x1b[2J\\xff', 0, 0, 0)\n\
                  os.chown(sys.argv[1], 65534, -1)";
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        chown.to_str().unwrap(),
        "--",
        "python3",
        "-c",
        python,
        file.to_str().unwrap(),
    ]));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&chown).unwrap()).unwrap();
    let comms: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cap"] == "CHOWN")
        .map(|c| c["comm"].as_str().unwrap())
        .collect();
    assert_eq!(comms, ["ev\nil\u{1b}[2J\\xff"], "{json:#}");
    every_format_is_safe(&chown, &["CHOWN"]);
    let out = show(&chown, &["--format", "text", "--verbose"]);
    assert!(
        ok(&out).contains("ev\\nil\\e[2J\\xff: chown"),
        "{}",
        stdout(&out)
    );
    // The same in the regression gate's verdict, which names the thread that needs CHOWN.
    let nothing = dir.join("true.json");
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        nothing.to_str().unwrap(),
        "--",
        "true",
    ]));
    let out = cap_trace([
        "check",
        "--baseline",
        nothing.to_str().unwrap(),
        "--profile",
        chown.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ev\\nil\\e[2J\\xff: chown"),
        "{}",
        stdout(&out)
    );
    assert_terminal_safe(&stdout(&out));
}

/// Containers whose compose and Kubernetes labels were set by whoever started them, under
/// podman and under Docker.
#[test]
fn hostile_container_labels_are_escaped_in_every_format() {
    let test = "hostile_container_labels_are_escaped_in_every_format";
    if !privileged(test) {
        return;
    }
    for engine in Engine::ALL {
        if engine.available(test) {
            hostile_labels_on(engine);
        }
    }
}

fn hostile_labels_on(engine: Engine) {
    let dir = TempDir::new("hostile-labels");
    let compose = podman::name("hostile-compose");
    let k8s = podman::name("hostile-k8s");
    engine.image();
    let bg = Background::for_engine(
        engine,
        &["--container", &compose, "--container", &k8s, "--wait", "60"],
    );
    // Alive a moment after its check, so that its labels are read before `--rm` removes it.
    let script = "touch /tmp/f && chown nobody /tmp/f && sleep 1";
    let compose_labels = [
        "--label".to_owned(),
        format!("com.docker.compose.project={HOSTILE}"),
        "--label".to_owned(),
        "com.docker.compose.service=on".to_owned(),
    ];
    let k8s_labels = [
        "--label".to_owned(),
        format!("io.kubernetes.pod.namespace={HOSTILE}"),
        "--label".to_owned(),
        format!("io.kubernetes.pod.name={HOSTILE}-7d4b9c8f5-x2k9q"),
        "--label".to_owned(),
        format!("io.kubernetes.container.name=-{HOSTILE}"),
    ];
    let learning = engine.learning();
    for (name, labels) in [(&compose, &compose_labels[..]), (&k8s, &k8s_labels[..])] {
        let mut opts: Vec<&str> = labels.iter().map(String::as_str).collect();
        opts.extend(learning.iter().map(String::as_str));
        let run = engine.run(name, &opts, script);
        assert!(run.status.success(), "{engine:?}: {run:?}");
    }
    let (code, log, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{log}");
    assert_terminal_safe(&log);
    let all = podman::profiles(&json.unwrap());
    assert_eq!(all.len(), 2);
    let both = save(&dir, "both.json", &Value::Array(all.clone()));
    let compose_name = format!("{HOSTILE}/on");
    assert!(
        all.iter()
            .any(|p| p["workload"]["name"] == compose_name.as_str()),
        "{:?}",
        all.iter()
            .map(|p| &p["workload"]["name"])
            .collect::<Vec<_>>()
    );

    // A file with two workloads: the single-workload formats ask which one, in one safe line.
    for format in ["systemd", "oci", "k8s"] {
        let out = show(&both, &["--format", format]);
        assert_eq!(out.status.code(), Some(2), "{format}: {}", stdout(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("pick one with --name"), "{err}");
        assert_terminal_safe(&err);
    }
    for p in &all {
        let one = save(&dir, "one.json", p);
        every_format_is_safe(&one, &["CHOWN"]);
        // --name picks the same profile out of the file that holds both.
        let name = p["workload"]["name"].as_str().unwrap();
        let picked = ok(&show(&both, &["--name", name, "--format", "systemd"]));
        assert_eq!(picked, ok(&show(&one, &["--format", "systemd"])));
    }

    // The compose service `on` is a boolean to YAML 1.1 unless quoted: the override names
    // service "on", and podman-compose merges it into the base file's service of that name.
    let out = show(&both, &["--format", "compose"]);
    let text = ok(&out);
    assert_terminal_safe(&text);
    let doc = pyyaml(&text);
    assert_eq!(doc["services"].as_object().unwrap().len(), 1, "{text}");
    assert!(text.contains("# left out: "), "{text}");
    std::fs::write(dir.join("caps.yml"), &text).unwrap();
    std::fs::write(
        dir.join("compose.yml"),
        "services:\n  \"on\":\n    image: busybox\n    cap_add: [SYS_ADMIN]\n",
    )
    .unwrap();
    let merged = compose_config(
        &python_tool("podman-compose"),
        dir.path(),
        &["compose.yml", "caps.yml"],
    );
    assert!(merged.status.success(), "{merged:?}");
    let merged = pyyaml(&stdout(&merged));
    assert_eq!(
        merged["services"]["on"]["cap_add"],
        json!(["CHOWN"]),
        "{merged:#}"
    );
    assert_eq!(merged["services"]["on"]["cap_drop"], json!(["ALL"]));
}

/// A compose service that runs httpd as nobody (SETUID, SETGID, and NET_BIND_SERVICE under
/// podman, whose containers keep the kernel's unprivileged port start) and one that chowns a
/// file (CHOWN), in one project.
fn compose_project(image: &str) -> String {
    let web = "grep CapEff /proc/self/status; httpd -f -p 80 -u nobody:nogroup & pid=$$!; sleep 1; \
               case \"$$(grep State /proc/$$pid/status)\" in *S*|*R*) echo WEB WORKS; exit 0;; *) echo WEB BROKEN; exit 1;; esac";
    let worker =
        "grep CapEff /proc/self/status; touch /tmp/f && chown nobody /tmp/f && echo WORKER WORKS";
    let service = |name: &str, script: &str| {
        format!(
            "  {name}:\n    image: {image}\n    command: [\"sh\", \"-c\", {}]\n    network_mode: none\n    ulimits:\n      nofile: {{soft: 20000, hard: 20000}}\n      nproc: {{soft: 1000, hard: 1000}}\n",
            serde_json::to_string(script).unwrap()
        )
    };
    format!(
        "services:\n{}{}",
        service("web", web),
        service("worker", worker)
    )
}

/// A compose project of the test in a directory of its own, run with the engine's compose tool
/// (podman-compose 1.6, or docker-compose 1.29 against the private Docker engine).
struct Project {
    engine: Engine,
    dir: TempDir,
    name: String,
}

impl Project {
    /// Writes compose.yml; learning.yml (learning mode); granting.yml, a deployed base file
    /// that grants more than the services need.
    fn new(engine: Engine) -> Project {
        let dir = TempDir::new("compose");
        std::fs::write(dir.join("compose.yml"), compose_project(engine.image())).unwrap();
        let drops: Vec<String> = engine
            .learning()
            .iter()
            .filter_map(|f| f.strip_prefix("--cap-drop=").map(str::to_owned))
            .collect();
        let learning = format!(
            "    cap_add: [ALL]\n    cap_drop: {}\n    security_opt: [seccomp=unconfined]\n",
            serde_json::to_string(&drops).unwrap()
        );
        std::fs::write(
            dir.join("learning.yml"),
            format!("services:\n  web:\n{learning}  worker:\n{learning}"),
        )
        .unwrap();
        std::fs::write(
            dir.join("granting.yml"),
            "services:\n  web:\n    cap_add: [SYS_ADMIN]\n  worker:\n    cap_add: [SYS_ADMIN, NET_ADMIN]\n",
        )
        .unwrap();
        let name = format!("ctcompose{}{}", std::process::id(), engine.name());
        Project { engine, dir, name }
    }

    /// `TOOL -p PROJECT -f FILE... up`, then `down`: what the containers printed.
    fn up(&self, files: &[&str]) -> String {
        let run = |args: &[&str]| {
            let mut cmd = self.engine.compose(self.dir.path());
            cmd.args(["-p", &self.name]);
            for f in files {
                cmd.args(["-f", f]);
            }
            cmd.args(args).output().unwrap()
        };
        let up = run(&["up"]);
        run(&["down", "-t", "0"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        )
    }

    /// Learns both services in learning mode and saves their profiles as two nodes would:
    /// node-a/shop.json and node-b/shop.json.
    fn learn_on_two_nodes(&self) {
        // Both tools name the containers <project>_<service>_1.
        let web = format!("{}_web_1", self.name);
        let worker = format!("{}_worker_1", self.name);
        let bg = Background::for_engine(
            self.engine,
            &["--container", &web, "--container", &worker, "--wait", "60"],
        );
        let out = self.up(&["compose.yml", "learning.yml"]);
        assert!(
            out.contains("WEB WORKS") && out.contains("WORKER WORKS"),
            "{out}"
        );
        let (code, log, json) = bg.wait(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{log}");
        let profiles = Value::Array(podman::profiles(&json.unwrap()));
        for node in ["node-a", "node-b"] {
            std::fs::create_dir(self.dir.join(node)).unwrap();
            std::fs::write(self.dir.join(node).join("shop.json"), profiles.to_string()).unwrap();
        }
    }

    /// `cap-trace merge node-a/shop.json node-b/shop.json ARGS`.
    fn merge(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec![
            "merge".to_owned(),
            self.dir.join("node-a/shop.json").display().to_string(),
            self.dir.join("node-b/shop.json").display().to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        cap_trace(&all)
    }
}

/// docker-compose 1.x refuses the `!override` tag loudly, and merges plain lists as the file
/// says it does.
fn docker_compose_v1_does_what_the_files_say(project: &Project) {
    let v1 = Path::new("/usr/bin/docker-compose");
    let dir = project.dir.path();
    let refused = compose_config(v1, dir, &["compose.yml", "granting.yml", "caps.yml"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("!override"),
        "{}",
        stderr(&refused)
    );
    let union = compose_config(v1, dir, &["compose.yml", "granting.yml", "caps-plain.yml"]);
    assert!(union.status.success(), "{}", stderr(&union));
    let union = pyyaml(&stdout(&union));
    assert_eq!(
        union["services"]["worker"]["cap_add"],
        json!(["CHOWN", "NET_ADMIN", "SYS_ADMIN"])
    );
}

/// The compose override end to end, under podman-compose 1.6 and docker-compose 1.29 (against
/// Docker): two services learned under the tool, the README's `merge node-a/*.json
/// node-b/*.json --format compose`, deployed with exactly the learned sets: with `!override`
/// over a base file that adds SYS_ADMIN (podman-compose; docker-compose 1.x refuses the tag),
/// and with `--compose-lists merge` over a base that adds nothing (both tools).
#[test]
fn compose_override_deploys_exactly_the_learned_sets() {
    let test = "compose_override_deploys_exactly_the_learned_sets";
    if !privileged(test) {
        return;
    }
    for engine in Engine::ALL {
        if engine.available(test) {
            compose_on(engine);
        }
    }
}

fn compose_on(engine: Engine) {
    let project = Project::new(engine);
    project.learn_on_two_nodes();
    // Each service stays its own profile, with both nodes' runs.
    let merged: Value = serde_json::from_str(&ok(&project.merge(&[]))).unwrap();
    let merged = merged.as_array().unwrap();
    assert_eq!(merged.len(), 2, "{merged:#?}");
    for p in merged {
        assert_eq!(p["workload"]["sources"].as_array().unwrap().len(), 2);
    }
    let learned = |service: &str| {
        let p = merged
            .iter()
            .find(|p| p["workload"]["compose"]["service"] == service)
            .unwrap();
        suggested(p)
    };
    let (web, worker) = (learned("web"), learned("worker"));
    // Docker lets any user bind low ports in its containers; podman does not.
    let mut web_needs = vec!["SETGID", "SETUID"];
    if engine.unprivileged_port_start() > 80 {
        web_needs.push("NET_BIND_SERVICE");
    }
    assert_eq!(web, web_needs);
    assert_eq!(worker, ["CHOWN"]);
    let deployed_exactly = |out: &str| {
        assert!(out.contains(&cap_eff_line(&web)), "web, {engine:?}: {out}");
        assert!(
            out.contains(&cap_eff_line(&worker)),
            "worker, {engine:?}: {out}"
        );
        assert!(
            out.contains("WEB WORKS") && out.contains("WORKER WORKS"),
            "{out}"
        );
    };

    let caps_yml = ok(&project.merge(&["--format", "compose"]));
    assert!(caps_yml.contains("    cap_add: !override\n"), "{caps_yml}");
    std::fs::write(project.dir.join("caps.yml"), &caps_yml).unwrap();
    let doc = pyyaml(&caps_yml);
    assert_eq!(doc["services"]["web"]["cap_add"], json!(web));
    assert_eq!(doc["services"]["worker"]["cap_add"], json!(worker));
    let plain = ok(&project.merge(&["--format", "compose", "--compose-lists", "merge"]));
    assert!(plain.contains("MERGES"), "{plain}");
    std::fs::write(project.dir.join("caps-plain.yml"), &plain).unwrap();

    match engine {
        // !override replaces the granting base's cap_add.
        Engine::Podman => {
            deployed_exactly(&project.up(&["compose.yml", "granting.yml", "caps.yml"]));
        }
        Engine::Docker => docker_compose_v1_does_what_the_files_say(&project),
    }
    // Plain lists over a base that adds nothing: exact, with either tool.
    deployed_exactly(&project.up(&["compose.yml", "caps-plain.yml"]));

    // Another project's `web` does not collide with this one's: the file is refused until one
    // project is picked.
    let mut other = merged[0].clone();
    other["workload"]["name"] = json!("blog/web");
    other["workload"]["compose"]["project"] = json!("blog");
    let two = save(
        &project.dir,
        "two.json",
        &json!([merged[0].clone(), merged[1].clone(), other]),
    );
    let out = show(&two, &["--format", "compose"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pick one with --name PROJECT"),
        "{}",
        stderr(&out)
    );
    let picked = ok(&show(
        &two,
        &["--format", "compose", "--name", &project.name],
    ));
    assert_eq!(pyyaml(&picked)["services"].as_object().unwrap().len(), 2);
}

/// The Kubernetes patch applied as a cluster applies it, and validated: a root workload keeps
/// its capability and loses `privileged`; a non-root one that needs nothing runs as its own
/// user with `runAsNonRoot`.
#[test]
fn kubernetes_patch_is_applied_by_kubectl_and_valid() {
    if !privileged("kubernetes_patch_is_applied_by_kubectl_and_valid") {
        return;
    }
    let dir = TempDir::new("k8s");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let root = dir.join("chown.json");
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        root.to_str().unwrap(),
        "--",
        "chown",
        "nobody",
        file.to_str().unwrap(),
    ]));
    let nobody = dir.join("true.json");
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        nobody.to_str().unwrap(),
        "--user",
        "nobody",
        "--",
        "true",
    ]));
    for (profile, container, add, user) in [
        (&root, "chown", json!(["CHOWN"]), None),
        (&nobody, "true", json!([]), Some(65534)),
    ] {
        let patch = ok(&show(profile, &["--format", "k8s"]));
        assert!(patch.contains("kubectl patch deployment"), "{patch}");
        let patched = kubectl_patch(&deployment("app", container), &patch);
        kubernetes_validate(&patched);
        let containers = patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        // Merged into the container of that name; the sidecar is left alone.
        assert_eq!(containers.len(), 2, "{patched:#}");
        assert_eq!(
            containers[1],
            json!({"name": "sidecar", "image": "example/sidecar:1"})
        );
        let sc = &containers[0]["securityContext"];
        assert_eq!(
            sc["capabilities"],
            json!({"add": add, "drop": ["ALL"]}),
            "{patch}"
        );
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        match user {
            Some(uid) => {
                assert_eq!(sc["runAsNonRoot"], true, "{patch}");
                assert_eq!(sc["runAsUser"], uid, "{patch}");
            }
            None => {
                assert_eq!(sc["runAsNonRoot"], Value::Null, "{patch}");
                assert_eq!(sc["runAsUser"], 0, "the base's user stays: {patch}");
            }
        }
    }
}

/// systemd lines as systemd reads them: a service learned as root gets its set through the
/// bounding set alone; one learned with `--user` gets it ambient, and the header names the user.
#[test]
fn systemd_lines_are_read_by_systemd_as_written() {
    if !privileged("systemd_lines_are_read_by_systemd_as_written") {
        return;
    }
    let dir = TempDir::new("systemd");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let f = file.to_str().unwrap();
    // Root's own file, which the run as nobody may not chown.
    let roots = dir.join("g");
    std::fs::write(&roots, "x").unwrap();
    let root = dir.join("root.json");
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        root.to_str().unwrap(),
        "--",
        "chown",
        "nobody",
        f,
    ]));
    // As nobody, the chown of root's file is denied and fails: CHOWN is needed but missing.
    let user = dir.join("user.json");
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        user.to_str().unwrap(),
        "--user",
        "nobody",
        "--",
        "chown",
        "nobody",
        roots.to_str().unwrap(),
    ]));
    let unit = ok(&show(&root, &["--format", "systemd"]));
    assert!(unit.contains("# learned as root (no User=)"), "{unit}");
    assert!(!unit.contains("AmbientCapabilities"), "{unit}");
    let dump = systemd_verify(&unit, None);
    assert_eq!(
        systemd_setting(&dump, "CapabilityBoundingSet").as_deref(),
        Some("cap_chown")
    );
    assert_eq!(
        systemd_setting(&dump, "AmbientCapabilities"),
        None,
        "{dump}"
    );

    let unit = ok(&show(&user, &["--format", "systemd"]));
    assert!(
        unit.contains("# learned with User=nobody (uid 65534)"),
        "{unit}"
    );
    let dump = systemd_verify(&unit, Some("nobody"));
    assert_eq!(
        systemd_setting(&dump, "CapabilityBoundingSet").as_deref(),
        Some("cap_chown")
    );
    assert_eq!(
        systemd_setting(&dump, "AmbientCapabilities").as_deref(),
        Some("cap_chown")
    );
}

/// A format that cannot render what was just traced does not lose the trace: the profile is
/// written as JSON, and the one-line error says how to render it (a container not started by
/// a compose tool, asked for as a compose override).
#[test]
fn a_trace_the_format_cannot_render_is_kept_as_json() {
    if !Engine::Podman.available("a_trace_the_format_cannot_render_is_kept_as_json") {
        return;
    }
    let engine = Engine::Podman;
    let name = podman::name("kept-json");
    engine.remove(&name);
    let started = engine.run_detached(&name, &["--rm"], "sleep 3");
    assert!(started.status.success(), "{started:?}");
    let out = cap_trace(["--container", &name, "--format", "compose"]);
    engine.remove(&name);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let profile: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(profile["workload"]["name"], name.as_str());
    let all = stderr(&out);
    // Beside the lines on the container's start and exit, one error.
    let errors: Vec<&str> = all.lines().filter(|l| l.contains("error")).collect();
    let [err] = errors.as_slice() else {
        panic!("{all}")
    };
    assert!(err.starts_with("cap-trace: error: "), "{all}");
    assert!(
        err.contains("no profile here is of a compose service"),
        "{err}"
    );
    assert!(
        err.contains("the profiles were written as JSON instead"),
        "{err}"
    );
}
