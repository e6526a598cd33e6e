//! `cap-trace --container` against real podman containers (runc, a locally built busybox image).

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::time::Duration;

use cap_trace_tests::podman::{self, Background, LEARNING};
use cap_trace_tests::*;
use serde_json::Value;

fn ready(test: &str) -> bool {
    privileged(test) && podman::available(test)
}

/// Profiles one container run: cap-trace waits for it, podman runs it.
fn profile(test: &str, opts: &[&str], script: &str) -> (Value, std::process::Output) {
    let name = podman::name(test);
    podman::image();
    let bg = Background::start(&["--container", &name, "--wait", "60", "--verbose"]);
    let run = podman::run(&name, opts, script);
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "cap-trace failed: {stderr}");
    let profiles = podman::profiles(&json.expect("profile written"));
    assert_eq!(profiles.len(), 1, "{profiles:#?}");
    let p = profiles.into_iter().next().unwrap();
    assert_eq!(p["workload"]["name"], name.as_str());
    (p, run)
}

#[test]
fn chown_in_a_container_needs_exactly_chown() {
    if !ready("chown_in_a_container_needs_exactly_chown") {
        return;
    }
    let (p, run) = profile("chown", &[], "touch /tmp/f && chown nobody /tmp/f");
    assert!(run.status.success());
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    assert_eq!(p["workload"]["kind"], "container");
    assert_eq!(p["workload"]["engine"], "podman");
    assert_eq!(p["workload"]["image"], podman::IMAGE);
    assert_eq!(p["workload"]["id"].as_str().unwrap().len(), 64);
    assert_eq!(p["workload"]["exit_status"], 0);
    // Podman's defaults are not learning mode: the report says how to get a complete profile.
    let warnings = p["warnings"].to_string();
    assert!(
        warnings.contains("--cap-add=ALL --security-opt seccomp=unconfined"),
        "{warnings}"
    );
}

#[test]
fn container_doing_nothing_privileged_needs_nothing() {
    if !ready("container_doing_nothing_privileged_needs_nothing") {
        return;
    }
    for opts in [&[][..], LEARNING] {
        let (p, run) = profile(
            "nothing",
            opts,
            "echo hello; ls / >/dev/null; cat /etc/passwd >/dev/null",
        );
        assert!(run.status.success());
        assert!(suggested(&p).is_empty(), "{p:#}");
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
}

/// The process must still be alive after a second (it exits at once when bind or the drop to
/// nobody fails). /proc is read, not kill -0: signalling nobody's process needs KILL.
const HTTPD: &str = "httpd -f -p 80 -u nobody:nogroup & pid=$!; sleep 1; \
     case \"$(grep State /proc/$pid/status 2>/dev/null)\" in *S*|*R*) exit 0;; *) exit 1;; esac";

const WORKLOADS: &[Workload] = &[
    Workload {
        test: "bind_low_port_and_drop_to_nobody",
        script: HTTPD,
        needs: &["SETGID", "SETUID", "NET_BIND_SERVICE"],
    },
    Workload {
        test: "create_device_node",
        script: "mknod /tmp/null c 1 3",
        needs: &["MKNOD"],
    },
    Workload {
        test: "change_link_mtu",
        script: "ip link set lo mtu 1400",
        needs: &["NET_ADMIN"],
    },
    Workload {
        test: "add_address_over_netlink",
        script: "ip addr add 10.9.9.9/32 dev lo",
        needs: &["NET_ADMIN"],
    },
    Workload {
        test: "read_another_users_private_file",
        script: "cat /secret",
        needs: &["DAC_READ_SEARCH"],
    },
];

/// Runs the workload with these flags and the default seccomp profile.
fn runs_with(w: &Workload, flags: &[String]) -> bool {
    let opts: Vec<&str> = flags.iter().map(String::as_str).collect();
    podman::run(&podman::name(w.test), &opts, w.script)
        .status
        .success()
}

/// `--cap-drop=ALL` and one `--cap-add` per capability, as cap-trace prints them.
fn flags_for(caps: &[String]) -> Vec<String> {
    std::iter::once("--cap-drop=ALL".to_owned())
        .chain(caps.iter().map(|c| format!("--cap-add={c}")))
        .collect()
}

/// Profiles the workload in learning mode and with podman's defaults; each time the
/// suggestion is exactly what it needs, it works with exactly that, and fails without any one.
fn sufficient_and_minimal(w: &Workload) {
    for (mode, opts) in [("learning", LEARNING), ("default", &[][..])] {
        let (p, _) = profile(w.test, opts, w.script);
        let suggestion = suggested(&p);
        let mut expected: Vec<String> = w.needs.iter().map(ToString::to_string).collect();
        let mut got = suggestion.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "{} ({mode}): {p:#}", w.test);
        // The flags exactly as printed for the engine, pasted into `podman run`.
        let printed = printed_flags(&p, "podman");
        assert_eq!(printed, flags_for(&suggestion));
        assert!(
            runs_with(w, &printed),
            "{} ({mode}) fails with {printed:?}",
            w.test
        );
        for drop in &suggestion {
            let fewer: Vec<String> = suggestion.iter().filter(|c| *c != drop).cloned().collect();
            assert!(
                !runs_with(w, &flags_for(&fewer)),
                "{} ({mode}) works without {drop}: the suggestion is not minimal",
                w.test
            );
        }
    }
}

#[test]
fn bind_low_port_and_drop_to_nobody() {
    if ready("bind_low_port_and_drop_to_nobody") {
        sufficient_and_minimal(&WORKLOADS[0]);
    }
}

#[test]
fn create_device_node() {
    if ready("create_device_node") {
        sufficient_and_minimal(&WORKLOADS[1]);
    }
}

#[test]
fn change_link_mtu() {
    if ready("change_link_mtu") {
        sufficient_and_minimal(&WORKLOADS[2]);
    }
}

#[test]
fn add_address_over_netlink() {
    if ready("add_address_over_netlink") {
        sufficient_and_minimal(&WORKLOADS[3]);
    }
}

#[test]
fn read_another_users_private_file() {
    if ready("read_another_users_private_file") {
        sufficient_and_minimal(&WORKLOADS[4]);
    }
}

#[test]
fn denied_checks_in_a_default_container_are_needed_but_missing() {
    if !ready("denied_checks_in_a_default_container_are_needed_but_missing") {
        return;
    }
    let (p, run) = profile("missing", &[], "mknod /tmp/null c 1 3");
    assert!(!run.status.success(), "podman's defaults lack MKNOD");
    let v = verdict(&p, "MKNOD").unwrap();
    assert_eq!(v["status"], "missing");
    assert!(v["reason"].as_str().unwrap().contains("EPERM"));
}

#[test]
fn two_containers_at_once_get_separate_profiles() {
    if !ready("two_containers_at_once_get_separate_profiles") {
        return;
    }
    podman::image();
    let a = podman::name("pair-a");
    let b = podman::name("pair-b");
    let bg = Background::start(&["--container", &a, "--container", &b, "--wait", "60"]);
    let (a2, b2) = (a.clone(), b.clone());
    let ta = std::thread::spawn(move || {
        podman::run(
            &a2,
            LEARNING,
            "touch /tmp/f; chown nobody /tmp/f; sleep 0.5",
        )
    });
    let tb =
        std::thread::spawn(move || podman::run(&b2, LEARNING, "mknod /tmp/n c 1 3; sleep 0.5"));
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

#[test]
fn container_already_running_is_picked_up() {
    if !ready("container_already_running_is_picked_up") {
        return;
    }
    let name = podman::name("running");
    let started = podman::podman()
        .args(["run", "-d", "--rm", "--name", &name])
        .args(podman::RUN_OPTS)
        .arg(podman::image())
        .args([
            "sh",
            "-c",
            "sleep 2; touch /tmp/f; chown nobody /tmp/f; sleep 0.3",
        ])
        .output()
        .unwrap();
    assert!(started.status.success());
    let bg = Background::start(&["--container", &name]);
    assert!(
        bg.stderr().contains("tracing") || !bg.stderr().contains("waiting"),
        "{}",
        bg.stderr()
    );
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
}

#[test]
fn unknown_container_is_a_clear_error_after_the_wait() {
    if !ready("unknown_container_is_a_clear_error_after_the_wait") {
        return;
    }
    let started = std::time::Instant::now();
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

#[test]
fn sigterm_ends_the_trace_with_a_complete_report() {
    if !ready("sigterm_ends_the_trace_with_a_complete_report") {
        return;
    }
    let name = podman::name("sigterm");
    podman::image();
    let bg = Background::start(&["--container", &name, "--wait", "60"]);
    let n = name.clone();
    let runner = std::thread::spawn(move || {
        podman::run(&n, LEARNING, "touch /tmp/f; chown nobody /tmp/f; sleep 20")
    });
    std::thread::sleep(Duration::from_secs(2));
    let (code, stderr, json) = bg.stop(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    podman::remove(&name);
    let _ = runner.join();
}

#[test]
fn restarts_and_every_container_with_all_containers() {
    if !ready("restarts_and_every_container_with_all_containers") {
        return;
    }
    podman::image();
    let a = podman::name("all-a");
    let b = podman::name("all-b");
    let bg = Background::start(&["--all-containers", "--duration", "8s", "--verbose"]);
    assert!(
        podman::run(&a, LEARNING, "touch /tmp/f; chown nobody /tmp/f")
            .status
            .success()
    );
    // The same container name run again: one profile for both runs.
    assert!(
        podman::run(&a, LEARNING, "mknod /tmp/n c 1 3")
            .status
            .success()
    );
    assert!(podman::run(&b, LEARNING, "true").status.success());
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
    assert!(suggested(by_name(&b)).is_empty());
}

#[test]
fn docker_compatible_api_socket() {
    if !ready("docker_compatible_api_socket") {
        return;
    }
    podman::image();
    let service = podman::ApiService::start();
    let socket = &service.socket;
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
    let run = podman::run(
        &name,
        LEARNING,
        "touch /tmp/f; chown nobody /tmp/f; sleep 0.5",
    );
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    drop(service);
    assert!(run.status.success());
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    assert_eq!(p["workload"]["engine"], "podman");

    // A socket nobody answers on is a clear error.
    let out = cap_trace(["--container", "x", "--engine-socket", "/nonexistent.sock"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        cap_trace_tests::stderr(&out).contains("no container engine answers on /nonexistent.sock")
    );
}

#[test]
fn runtime_set_up_is_shown_separately_in_verbose_output() {
    if !ready("runtime_set_up_is_shown_separately_in_verbose_output") {
        return;
    }
    let name = podman::name("verbose");
    podman::image();
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
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(podman::run(&name, LEARNING, "true").status.success());
    assert!(child.wait().unwrap().success());
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

#[test]
fn podman_exec_set_up_is_not_the_workloads() {
    if !ready("podman_exec_set_up_is_not_the_workloads") {
        return;
    }
    let name = podman::name("exec");
    let started = podman::podman()
        .args(["run", "-d", "--rm", "--name", &name])
        .args(podman::RUN_OPTS)
        .args(LEARNING)
        .arg(podman::image())
        .args(["sh", "-c", "sleep 3"])
        .output()
        .unwrap();
    assert!(started.status.success());
    let bg = Background::start(&["--container", &name]);
    // runc exec sets the exec'd process up (namespaces, capabilities) inside the cgroup.
    let exec = podman::podman()
        .args([
            "exec",
            &name,
            "sh",
            "-c",
            "touch /tmp/f; chown nobody /tmp/f",
        ])
        .output()
        .unwrap();
    assert!(
        exec.status.success(),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let (code, stderr, json) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.unwrap()).remove(0);
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
}
