//! `cap-trace --container` against real containers (runc, a locally built busybox image): the
//! same cases on podman and on the real Docker engine (a private dockerd), each test once per
//! engine (`podman::NAME`, `docker::NAME`).

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::time::{Duration, Instant};

use cap_trace_tests::engine::{self, Engine};
use cap_trace_tests::podman::{self, Background};
use cap_trace_tests::*;
use serde_json::Value;

on_both_engines!(
    chown_in_a_container_needs_exactly_chown,
    container_doing_nothing_privileged_needs_nothing,
    bind_low_port_and_drop_to_nobody,
    create_device_node,
    change_link_mtu,
    add_address_over_netlink,
    read_another_users_private_file,
    denied_checks_in_a_default_container_are_needed_but_missing,
    two_containers_at_once_get_separate_profiles,
    container_already_running_is_picked_up,
    sigterm_ends_the_trace_with_a_complete_report,
    restarts_and_every_container_with_all_containers,
    engine_api_socket,
    runtime_set_up_is_shown_separately_in_verbose_output,
    exec_set_up_is_not_the_workloads,
);

/// The engine's learning-mode flags, as `&str`s.
fn learning(engine: Engine) -> Vec<String> {
    engine.learning()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Profiles one container run: cap-trace waits for it, the engine runs it.
fn profile(
    engine: Engine,
    test: &str,
    opts: &[&str],
    script: &str,
) -> (Value, std::process::Output) {
    let name = podman::name(test);
    engine.image();
    let bg = Background::for_engine(engine, &["--container", &name, "--wait", "60", "--verbose"]);
    let run = engine.run(&name, opts, script);
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "cap-trace failed: {stderr}");
    let profiles = podman::profiles(&json.expect("profile written"));
    assert_eq!(profiles.len(), 1, "{profiles:#?}");
    let p = profiles.into_iter().next().unwrap();
    assert_eq!(p["workload"]["name"], name.as_str());
    (p, run)
}

fn chown_in_a_container_needs_exactly_chown(engine: Engine) {
    if !ready(engine, "chown_in_a_container_needs_exactly_chown") {
        return;
    }
    // It lives on a little: a --rm container gone before its engine is asked is named from
    // the engine's events, which do not say how it was configured (see below).
    let (p, run) = profile(
        engine,
        "chown",
        &[],
        "touch /tmp/f && chown nobody /tmp/f && sleep 2",
    );
    assert!(run.status.success());
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    assert_eq!(p["workload"]["kind"], "container");
    assert_eq!(p["workload"]["engine"], engine.name());
    assert_eq!(p["workload"]["image"], engine.image());
    assert_eq!(p["workload"]["id"].as_str().unwrap().len(), 64);
    assert_eq!(p["workload"]["exit_status"], 0);
    // The engine's defaults are not learning mode: the report says how to get a complete
    // profile, in flags this engine accepts on this host.
    let warnings = p["warnings"].to_string();
    let advice = learning(engine).join(" ");
    assert!(warnings.contains(&advice), "{advice}: {warnings}");
}

fn container_doing_nothing_privileged_needs_nothing(engine: Engine) {
    if !ready(engine, "container_doing_nothing_privileged_needs_nothing") {
        return;
    }
    let learning = learning(engine);
    for opts in [&[][..], &strs(&learning)] {
        let (p, run) = profile(
            engine,
            "nothing",
            opts,
            // Lives long enough for its engine to be asked how it was configured.
            "echo hello; ls / >/dev/null; cat /etc/passwd >/dev/null; sleep 2",
        );
        assert!(run.status.success());
        assert!(suggested(&p).is_empty(), "{p:#}");
        // In learning mode there is nothing more to ask for.
        let warnings = p["warnings"].to_string();
        assert_eq!(
            opts.is_empty(),
            warnings.contains("for a complete profile"),
            "{warnings}"
        );
        // runc's own set-up (mounts, pivot_root, hostname: SYS_ADMIN) happened in the
        // container's cgroup, and is kept apart.
        let checks = p["checks"].as_array().unwrap();
        assert!(
            checks.iter().any(|c| c["phase"] == "runtime"
                && c["cap"] == "SYS_ADMIN"
                && c["audit"] == "audited"
                && c["verdict"] == "granted"),
            "runtime set-up checks are recorded: {p:#}"
        );
    }
}

/// A workload, the capabilities it needs, and the script that succeeds only with all of them.
struct Workload {
    test: &'static str,
    script: &'static str,
    needs: &'static [&'static str],
    /// Needed where the engine leaves `net.ipv4.ip_unprivileged_port_start` at 1024 (podman),
    /// not where it sets 0 (Docker).
    needs_below_1024: &'static [&'static str],
}

/// The process must still be alive after a second (it exits at once when bind or the drop to
/// nobody fails). /proc is read, not kill -0: signalling nobody's process needs KILL.
const HTTPD: &str = "httpd -f -p 80 -u nobody:nogroup & pid=$!; sleep 1; \
     case \"$(grep State /proc/$pid/status 2>/dev/null)\" in *S*|*R*) exit 0;; *) exit 1;; esac";

const WORKLOADS: &[Workload] = &[
    Workload {
        test: "bind_low_port_and_drop_to_nobody",
        script: HTTPD,
        needs: &["SETGID", "SETUID"],
        needs_below_1024: &["NET_BIND_SERVICE"],
    },
    Workload {
        test: "create_device_node",
        script: "mknod /tmp/null c 1 3",
        needs: &["MKNOD"],
        needs_below_1024: &[],
    },
    Workload {
        test: "change_link_mtu",
        script: "ip link set lo mtu 1400",
        needs: &["NET_ADMIN"],
        needs_below_1024: &[],
    },
    Workload {
        test: "add_address_over_netlink",
        script: "ip addr add 10.9.9.9/32 dev lo",
        needs: &["NET_ADMIN"],
        needs_below_1024: &[],
    },
    Workload {
        test: "read_another_users_private_file",
        script: "cat /secret",
        needs: &["DAC_READ_SEARCH"],
        needs_below_1024: &[],
    },
];

/// Runs the workload with these flags and the default seccomp profile.
fn runs_with(engine: Engine, w: &Workload, flags: &[String]) -> bool {
    engine
        .run(&podman::name(w.test), &strs(flags), w.script)
        .status
        .success()
}

/// Profiles the workload in learning mode and with the engine's defaults; each time the
/// suggestion is exactly what it needs, it works with exactly that, and fails without any one.
fn sufficient_and_minimal(engine: Engine, w: &Workload) {
    let learning = learning(engine);
    for (mode, opts) in [("learning", strs(&learning)), ("default", Vec::new())] {
        let (p, _) = profile(engine, w.test, &opts, w.script);
        let suggestion = suggested(&p);
        let mut expected: Vec<String> = w.needs.iter().map(ToString::to_string).collect();
        if engine.unprivileged_port_start() > 0 {
            expected.extend(w.needs_below_1024.iter().map(ToString::to_string));
        }
        let mut got = suggestion.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "{} ({mode}): {p:#}", w.test);
        // The flags exactly as printed for the engine, pasted into its `run`.
        let printed = printed_flags(&p, engine.name());
        assert_eq!(printed, engine::flags_for(&suggestion));
        assert!(
            runs_with(engine, w, &printed),
            "{} ({mode}) fails with {printed:?}",
            w.test
        );
        for drop in &suggestion {
            let fewer: Vec<String> = suggestion.iter().filter(|c| *c != drop).cloned().collect();
            assert!(
                !runs_with(engine, w, &engine::flags_for(&fewer)),
                "{} ({mode}) works without {drop}: the suggestion is not minimal",
                w.test
            );
        }
    }
}

fn bind_low_port_and_drop_to_nobody(engine: Engine) {
    if ready(engine, "bind_low_port_and_drop_to_nobody") {
        sufficient_and_minimal(engine, &WORKLOADS[0]);
    }
}

fn create_device_node(engine: Engine) {
    if ready(engine, "create_device_node") {
        sufficient_and_minimal(engine, &WORKLOADS[1]);
    }
}

fn change_link_mtu(engine: Engine) {
    if ready(engine, "change_link_mtu") {
        sufficient_and_minimal(engine, &WORKLOADS[2]);
    }
}

fn add_address_over_netlink(engine: Engine) {
    if ready(engine, "add_address_over_netlink") {
        sufficient_and_minimal(engine, &WORKLOADS[3]);
    }
}

fn read_another_users_private_file(engine: Engine) {
    if ready(engine, "read_another_users_private_file") {
        sufficient_and_minimal(engine, &WORKLOADS[4]);
    }
}

fn denied_checks_in_a_default_container_are_needed_but_missing(engine: Engine) {
    if !ready(
        engine,
        "denied_checks_in_a_default_container_are_needed_but_missing",
    ) {
        return;
    }
    let (p, run) = profile(engine, "missing", &[], "ip link set lo mtu 1400");
    assert!(
        !run.status.success(),
        "the engine's defaults lack NET_ADMIN"
    );
    let v = verdict(&p, "NET_ADMIN").unwrap();
    assert_eq!(v["status"], "missing");
    assert!(v["reason"].as_str().unwrap().contains("EPERM"));
}

fn two_containers_at_once_get_separate_profiles(engine: Engine) {
    if !ready(engine, "two_containers_at_once_get_separate_profiles") {
        return;
    }
    engine.image();
    let a = podman::name("pair-a");
    let b = podman::name("pair-b");
    let bg = Background::for_engine(
        engine,
        &["--container", &a, "--container", &b, "--wait", "60"],
    );
    let (a2, b2) = (a.clone(), b.clone());
    let ta = std::thread::spawn(move || {
        engine.run(
            &a2,
            &strs(&engine.learning()),
            "touch /tmp/f; chown nobody /tmp/f; sleep 0.5",
        )
    });
    let tb = std::thread::spawn(move || {
        engine.run(
            &b2,
            &strs(&engine.learning()),
            "mknod /tmp/n c 1 3; sleep 0.5",
        )
    });
    assert!(ta.join().unwrap().status.success());
    assert!(tb.join().unwrap().status.success());
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let profiles = podman::profiles(&json.unwrap());
    assert_eq!(profiles.len(), 2);
    let by_name = |n: &str| {
        profiles
            .iter()
            .find(|p| p["workload"]["name"] == n)
            .unwrap()
    };
    assert_eq!(suggested(by_name(&a)), ["CHOWN"]);
    assert_eq!(suggested(by_name(&b)), ["MKNOD"]);
}

fn container_already_running_is_picked_up(engine: Engine) {
    if !ready(engine, "container_already_running_is_picked_up") {
        return;
    }
    let name = podman::name("running");
    // It waits for /tmp/go, made once cap-trace is attached, then does its work.
    let started = engine.run_detached(
        &name,
        &["--rm"],
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; touch /tmp/f; chown nobody /tmp/f; sleep 0.3",
    );
    assert!(started.status.success(), "{started:?}");
    let _removal = engine.remove_on_drop(&name);
    let bg = Background::for_engine(engine, &["--container", &name]);
    assert!(bg.stderr().contains("tracing"), "{}", bg.stderr());
    engine.touch_in(&name, "/tmp/go");
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    // It was looked at while running: the capability set it ran with is known.
    let ran_with = p["workload"]["capabilities"]
        .as_array()
        .expect("current capabilities");
    assert!(ran_with.iter().any(|c| c == "CHOWN"));
    assert_eq!(p["workload"]["seccomp"], true);
    // But not from its first process: the profile says it is incomplete, and why.
    assert_eq!(p["trace"]["complete"], false, "{p:#}");
    let why = p["trace"]["incomplete"][0].as_str().unwrap();
    assert!(
        why.starts_with("attached ") && why.contains(" s after the container started"),
        "{why}"
    );
    assert!(
        why.contains("restart the container while cap-trace runs"),
        "{why}"
    );
    // Every rendering says so in its header.
    let dir = TempDir::new("late");
    let saved = dir.join("late.json");
    std::fs::write(&saved, p.to_string()).unwrap();
    for format in ["k8s", "systemd"] {
        let out = ok(&cap_trace([
            "show",
            saved.to_str().unwrap(),
            "--format",
            format,
        ]));
        assert!(
            out.contains("INCOMPLETE trace (attached "),
            "{format}: {out}"
        );
    }
    let text = ok(&cap_trace(["show", saved.to_str().unwrap()]));
    assert!(
        text.contains("the profile is incomplete: attached "),
        "{text}"
    );
}

#[test]
fn unknown_container_is_a_clear_error_after_the_wait() {
    if !(privileged("unknown_container_is_a_clear_error_after_the_wait")
        && podman::available("unknown_container_is_a_clear_error_after_the_wait"))
    {
        return;
    }
    let started = Instant::now();
    let out = cap_trace(["--container", "no-such-container-here", "--wait", "2s"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(started.elapsed() >= Duration::from_secs(2));
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("cap-trace: error: container `no-such-container-here` not found"),
        "{err}"
    );
    assert!(last.contains("--wait"), "{last}");
}

fn sigterm_ends_the_trace_with_a_complete_report(engine: Engine) {
    if !ready(engine, "sigterm_ends_the_trace_with_a_complete_report") {
        return;
    }
    let name = podman::name("sigterm");
    engine.image();
    let bg = Background::for_engine(engine, &["--container", &name, "--wait", "60"]);
    let n = name.clone();
    let runner = std::thread::spawn(move || {
        engine.run(
            &n,
            &strs(&engine.learning()),
            "touch /tmp/f; chown nobody /tmp/f; touch /tmp/chowned; sleep 20",
        )
    });
    // Stopped once the container has done its work, while it still runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine.exec(&name, "test -e /tmp/chowned").status.success() {
        assert!(Instant::now() < deadline, "the container did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, stderr, json) = bg.stop(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    assert_eq!(p["trace"]["complete"], true, "{p:#}");
    engine.remove(&name);
    let _ = runner.join();
}

fn restarts_and_every_container_with_all_containers(engine: Engine) {
    if !ready(engine, "restarts_and_every_container_with_all_containers") {
        return;
    }
    engine.image();
    let learning = learning(engine);
    let a = podman::name("all-a");
    let b = podman::name("all-b");
    // Running before cap-trace starts: its profile cannot be complete.
    let early = podman::name("all-early");
    let started = engine.run_detached(&early, &["--rm"], "sleep 5");
    assert!(started.status.success(), "{started:?}");
    let bg = Background::for_engine(
        engine,
        &["--all-containers", "--duration", "8s", "--verbose"],
    );
    assert!(
        engine
            .run(&a, &strs(&learning), "touch /tmp/f; chown nobody /tmp/f")
            .status
            .success()
    );
    // The same container name run again: one profile for both runs.
    assert!(
        engine
            .run(&a, &strs(&learning), "mknod /tmp/n c 1 3")
            .status
            .success()
    );
    assert!(engine.run(&b, &strs(&learning), "true").status.success());
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let profiles = podman::profiles(&json.unwrap());
    let by_name = |n: &str| {
        profiles
            .iter()
            .find(|p| p["workload"]["name"] == n)
            .unwrap_or_else(|| panic!("no profile for {n}: {profiles:#?}"))
    };
    let pa = by_name(&a);
    let mut got = suggested(pa);
    got.sort();
    assert_eq!(got, ["CHOWN", "MKNOD"], "{stderr}");
    assert!(
        pa["warnings"].to_string().contains("started 2 times"),
        "{pa:#}"
    );
    assert_eq!(pa["workload"]["engine"], engine.name());
    assert!(suggested(by_name(&b)).is_empty());
    // Seen from their first process, a and b are complete; the early one says it is not.
    assert_eq!(pa["trace"]["complete"], true, "{pa:#}");
    assert_eq!(by_name(&b)["trace"]["complete"], true);
    let pe = by_name(&early);
    assert_eq!(pe["trace"]["complete"], false, "{pe:#}");
    let why = pe["trace"]["incomplete"][0].as_str().unwrap_or_default();
    assert!(why.starts_with("attached "), "{pe:#}");
}

/// Containers named through the engine's API socket given with `--engine-socket` alone:
/// podman's Docker-compatible service, or the Docker engine's own socket.
fn engine_api_socket(engine: Engine) {
    if !ready(engine, "engine_api_socket") {
        return;
    }
    engine.image();
    let podman_service = (engine == Engine::Podman).then(podman::ApiService::start);
    let socket = match &podman_service {
        Some(service) => service.socket.clone(),
        None => docker::shared().unwrap().socket().to_owned(),
    };
    let name = podman::name("api");
    let bg = Background::start(&[
        "--container",
        &name,
        "--wait",
        "60",
        "--engine-socket",
        socket.to_str().unwrap(),
        "--verbose",
    ]);
    let run = engine.run(
        &name,
        &strs(&learning(engine)),
        "touch /tmp/f; chown nobody /tmp/f; sleep 0.5",
    );
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    drop(podman_service);
    assert!(run.status.success());
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    assert_eq!(p["workload"]["engine"], engine.name());

    // A socket nobody answers on is a clear error.
    let out = cap_trace(["--container", "x", "--engine-socket", "/nonexistent.sock"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        cap_trace_tests::stderr(&out).contains("no container engine answers on /nonexistent.sock")
    );
}

fn runtime_set_up_is_shown_separately_in_verbose_output(engine: Engine) {
    if !ready(
        engine,
        "runtime_set_up_is_shown_separately_in_verbose_output",
    ) {
        return;
    }
    let name = podman::name("verbose");
    engine.image();
    let dir = TempDir::new("verbose");
    let out_path = dir.join("report.txt");
    let mut child = std::process::Command::new(bin())
        .args([
            "--container",
            &name,
            "--wait",
            "60",
            "--verbose",
            "--output",
        ])
        .arg(&out_path)
        .envs(engine.cap_trace_env())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = capture_stderr(&mut child);
    wait_for_stderr(&stderr, "waiting for", Duration::from_secs(30));
    assert!(
        engine
            .run(&name, &strs(&learning(engine)), "true")
            .status
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", stderr.lock().unwrap());
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        text.contains("runtime set-up (not part of the workload):"),
        "{text}"
    );
    assert!(text.contains("runc:[2:INIT]"), "{text}");
    assert!(
        text.lines().any(|l| l == "Suggestion: --cap-drop=ALL"),
        "{text}"
    );
}

fn exec_set_up_is_not_the_workloads(engine: Engine) {
    if !ready(engine, "exec_set_up_is_not_the_workloads") {
        return;
    }
    let name = podman::name("exec");
    let mut opts = vec!["--rm".to_owned()];
    opts.extend(learning(engine));
    // It runs until the exec'd process is done.
    let started = engine.run_detached(
        &name,
        &strs(&opts),
        "while [ ! -e /tmp/done ]; do sleep 0.1; done",
    );
    assert!(started.status.success(), "{started:?}");
    let _removal = engine.remove_on_drop(&name);
    let bg = Background::for_engine(engine, &["--container", &name]);
    // runc exec sets the exec'd process up (namespaces, capabilities) inside the cgroup.
    let exec = engine.exec(&name, "touch /tmp/f; chown nobody /tmp/f");
    assert!(
        exec.status.success(),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    engine.touch_in(&name, "/tmp/done");
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
}

/// Profiles one run of a Docker container with cap-trace prepared by `prepare` (its engine
/// discovery is what is under test).
fn docker_profile_with(test: &str, prepare: impl FnOnce(&mut std::process::Command)) -> Value {
    let engine = Engine::Docker;
    engine.image();
    let name = podman::name(test);
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["--container", &name, "--wait", "60"]);
    prepare(&mut cmd);
    let bg = Background::spawn(cmd);
    let run = engine.run(
        &name,
        &strs(&learning(engine)),
        "touch /tmp/f; chown nobody /tmp/f",
    );
    assert!(run.status.success(), "{run:?}");
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    assert_eq!(p["workload"]["name"], name.as_str(), "{p:#}");
    assert_eq!(p["workload"]["engine"], "docker", "{p:#}");
    assert_eq!(p["workload"]["image"], engine.image(), "{p:#}");
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    p
}

#[test]
fn docker_named_through_its_default_socket() {
    if !ready(Engine::Docker, "docker_named_through_its_default_socket") {
        return;
    }
    let dockerd = docker::shared().unwrap();
    // cap-trace sees the engine at /var/run/docker.sock, and nothing else: no DOCKER_HOST, no
    // podman, no engine CLI that would answer.
    let p = docker_profile_with("default-socket", |cmd| {
        docker::with_private_run(cmd, Some(dockerd.socket()));
        cmd.env_remove("DOCKER_HOST")
            .env_remove("CONTAINER_HOST")
            .env("PATH", "/nonexistent");
    });
    assert_eq!(
        p["environment"]["engine_version"],
        docker_server_version().as_str(),
        "{p:#}"
    );
}

/// The private Docker engine's version, as it reports it.
fn docker_server_version() -> String {
    let out = Engine::Docker
        .cli()
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn docker_named_through_its_cli() {
    if !ready(Engine::Docker, "docker_named_through_its_cli") {
        return;
    }
    let dockerd = docker::shared().unwrap();
    let path = docker::docker_only_path();
    let config = docker::docker_context(dockerd);
    // No socket cap-trace could find: only the docker command, which reaches the engine
    // through its own configuration (a context).
    let p = docker_profile_with("cli", |cmd| {
        docker::with_private_run(cmd, None);
        cmd.env_remove("DOCKER_HOST")
            .env_remove("CONTAINER_HOST")
            .env("PATH", path.path())
            .env("DOCKER_CONFIG", config.path())
            .env("DOCKER_CONTEXT", "cap-trace-test");
    });
    assert_eq!(
        p["environment"]["engine_version"],
        docker_server_version().as_str(),
        "{p:#}"
    );
}

#[test]
fn docker_compose_labels_name_the_profile() {
    if !ready(Engine::Docker, "docker_compose_labels_name_the_profile") {
        return;
    }
    let engine = Engine::Docker;
    let dir = TempDir::new("docker-compose");
    std::fs::write(
        dir.join("compose.yml"),
        format!(
            "version: \"3\"\nservices:\n  web:\n    image: {}\n    network_mode: none\n    cap_add: [ALL]\n    cap_drop: [{}]\n    security_opt: [seccomp=unconfined]\n    command: [\"sh\", \"-c\", \"touch /tmp/f; chown nobody /tmp/f\"]\n",
            engine.image(),
            engine::host_lacks().join(", ")
        ),
    )
    .unwrap();
    let project = format!("ctdc{}", std::process::id());
    // docker-compose 1.29 names the container <project>_<service>_1.
    let container = format!("{project}_web_1");
    let bg = Background::for_engine(engine, &["--container", &container, "--wait", "60"]);
    let up = engine
        .compose(dir.path())
        .args(["-p", &project, "up", "--no-color"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{up:?}");
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    let _ = engine
        .compose(dir.path())
        .args(["-p", &project, "down", "-t", "0"])
        .output();
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    // Named after the compose service (the labels docker-compose set), not the container.
    assert_eq!(p["workload"]["name"], format!("{project}/web"), "{p:#}");
    assert_eq!(p["workload"]["compose"]["project"], project.as_str());
    assert_eq!(p["workload"]["compose"]["service"], "web");
    assert_eq!(p["workload"]["engine"], "docker");
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
}

/// A container started with `ctr run`, with an id of the user's choosing, is found by that id
/// and named `namespace/id`; through `$CONTAINERD_ADDRESS` (where ctr looks) and through
/// `--engine-socket`.
#[test]
fn containerd_ctr_container_is_found_and_named() {
    if !ready(
        Engine::Docker,
        "containerd_ctr_container_is_found_and_named",
    ) {
        return;
    }
    let containerd = docker::shared_containerd().unwrap();
    let image = docker::ctr_image();
    let ns = docker::CTR_NAMESPACE;
    for (i, how) in ["CONTAINERD_ADDRESS", "--engine-socket"]
        .into_iter()
        .enumerate()
    {
        let id = format!("web-{}-{i}", std::process::id());
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["--container", &id, "--wait", "60"]);
        if how == "--engine-socket" {
            cmd.arg("--engine-socket").arg(containerd.socket());
        } else {
            cmd.env("CONTAINERD_ADDRESS", containerd.socket());
        }
        let bg = Background::spawn(cmd);
        let run = containerd
            .ctr(ns)
            .args(["run", "--rm", image, &id, "sh", "-c"])
            // Alive long enough for `ctr` to answer: containerd forgets a `--rm` container
            // at once, and one gone before that is named from its cgroup, without its image.
            .arg("touch /tmp/f; chown nobody /tmp/f; sleep 5")
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        let (code, stderr, json) = bg.wait(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{how}: {stderr}");
        let p = podman::profiles(&json.unwrap()).remove(0);
        assert_eq!(p["workload"]["name"], format!("{ns}/{id}"), "{how}: {p:#}");
        assert_eq!(p["workload"]["id"], id.as_str(), "{p:#}");
        assert_eq!(p["workload"]["engine"], "containerd", "{p:#}");
        assert_eq!(p["workload"]["image"], image, "{p:#}");
        assert_eq!(suggested(&p), ["CHOWN"], "{how}: {p:#}");
    }
}

/// A profile learned under Docker, whose containers may bind ports below 1024 and ping without
/// a capability, records those settings; rendered for podman it warns that NET_BIND_SERVICE
/// (and NET_RAW) may be needed there, and podman indeed refuses the server without it. Rendered
/// for Docker it warns of nothing.
#[test]
fn a_docker_profile_rendered_for_podman_warns_of_what_podman_needs() {
    if !ready(Engine::Docker, "a_docker_profile_rendered_for_podman_warns")
        || !ready(Engine::Podman, "a_docker_profile_rendered_for_podman_warns")
    {
        return;
    }
    let w = &WORKLOADS[0];
    let (p, run) = profile(
        Engine::Docker,
        w.test,
        &strs(&learning(Engine::Docker)),
        w.script,
    );
    assert!(run.status.success(), "{run:?}");
    assert_eq!(suggested(&p), ["SETGID", "SETUID"], "{p:#}");
    let env = &p["environment"];
    assert_eq!(
        env["network"]["net.ipv4.ip_unprivileged_port_start"], "0",
        "{p:#}"
    );
    assert_eq!(
        env["network"]["net.ipv4.ping_group_range"], "0 2147483647",
        "{p:#}"
    );
    for host in ["kernel.perf_event_paranoid", "kernel.kptr_restrict"] {
        let value =
            std::fs::read_to_string(format!("/proc/sys/{}", host.replace('.', "/"))).unwrap();
        assert_eq!(env["host"][host], value.trim(), "{p:#}");
    }
    let dir = TempDir::new("environment");
    let saved = dir.join("docker.json");
    std::fs::write(&saved, p.to_string()).unwrap();
    let show = |format: &str| cap_trace(["show", saved.to_str().unwrap(), "--format", format]);
    for format in ["podman", "k8s", "systemd"] {
        let out = show(format);
        ok(&out);
        let warned = stderr(&out);
        assert!(
            warned.contains("ip_unprivileged_port_start was 0")
                && warned.contains("needs NET_BIND_SERVICE"),
            "{format}: {warned}"
        );
        assert!(warned.contains("need NET_RAW"), "{format}: {warned}");
    }
    let out = show("docker");
    ok(&out);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // The warning is true: podman runs the server only with NET_BIND_SERVICE added.
    let printed = printed_flags(&p, "podman");
    assert!(!runs_with(Engine::Podman, w, &printed), "{printed:?}");
    let mut with = printed.clone();
    with.push("--cap-add=NET_BIND_SERVICE".into());
    assert!(runs_with(Engine::Podman, w, &with), "{with:?}");
}
