//! The test harness's engines themselves: a private Docker engine and containerd that run real
//! containers and leave nothing of the host's touched.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::path::Path;

use cap_trace_tests::engine::Engine;
use cap_trace_tests::*;

#[test]
fn both_engines_run_the_test_image_in_learning_mode() {
    for engine in Engine::ALL {
        if !(privileged("both_engines_run_the_test_image_in_learning_mode")
            && engine.available("both_engines_run_the_test_image_in_learning_mode"))
        {
            continue;
        }
        let name = podman::name("harness");
        let learning = engine.learning();
        let opts: Vec<&str> = learning.iter().map(String::as_str).collect();
        let out = engine.run(
            &name,
            &opts,
            "grep -E '^(CapEff|Seccomp):' /proc/self/status; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; tail -1 /proc/self/cgroup",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {text}{}",
            engine.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every capability the host grants, and no filter.
        let host = std::fs::read_to_string("/proc/self/status").unwrap();
        let bounding = host
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .unwrap()
            .trim();
        let eff = text
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap()
            .trim();
        let (eff, bounding) = (
            u64::from_str_radix(eff, 16).unwrap(),
            u64::from_str_radix(bounding, 16).unwrap(),
        );
        match engine {
            Engine::Podman => assert_eq!(eff, bounding, "{text}"),
            // Docker 20.10's ALL stops at AUDIT_READ (37).
            Engine::Docker => assert_eq!(eff, bounding & ((1 << 38) - 1), "{text}"),
        }
        assert!(text.contains("Seccomp:\t0"), "{text}");
        let port_start: u32 = text.lines().nth(2).unwrap().trim().parse().unwrap();
        assert_eq!(port_start, engine.unprivileged_port_start());
        let cgroup = text.lines().nth(3).unwrap();
        match engine {
            Engine::Podman => assert!(cgroup.starts_with("0::/libpod_parent/libpod-"), "{cgroup}"),
            Engine::Docker => assert!(cgroup.starts_with("0::/docker/"), "{cgroup}"),
        }
    }
}

#[test]
fn the_private_docker_engine_leaves_the_hosts_docker_alone() {
    if !(privileged("the_private_docker_engine_leaves_the_hosts_docker_alone")
        && Engine::Docker.available("the_private_docker_engine_leaves_the_hosts_docker_alone"))
    {
        return;
    }
    let before: Vec<bool> = HOST_PATHS.iter().map(|p| Path::new(p).exists()).collect();
    let dockerd = docker::shared().unwrap();
    assert!(docker::ping(dockerd.socket()));
    let name = podman::name("host-alone");
    let out = Engine::Docker.run(&name, &[], "true");
    assert!(out.status.success(), "{out:?}");
    let after: Vec<bool> = HOST_PATHS.iter().map(|p| Path::new(p).exists()).collect();
    assert_eq!(before, after, "{HOST_PATHS:?}");
}

/// What dockerd and containerd create when they run with their defaults.
const HOST_PATHS: &[&str] = &[
    "/var/run/docker.sock",
    "/var/lib/docker",
    "/etc/docker/key.json",
    "/run/containerd/containerd.sock",
    "/var/lib/containerd",
];

#[test]
fn ctr_runs_a_container_in_the_private_containerd() {
    if !(privileged("ctr_runs_a_container_in_the_private_containerd")
        && Engine::Docker.available("ctr_runs_a_container_in_the_private_containerd"))
    {
        return;
    }
    let containerd = docker::shared_containerd().unwrap();
    let ns = docker::CTR_NAMESPACE;
    let image = docker::ctr_image();
    let id = format!("harness-{}", std::process::id());
    let out = containerd
        .ctr(ns)
        .args(["run", "--rm", image, &id, "tail", "-1", "/proc/self/cgroup"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("0::/{ns}/{id}")
    );
}
