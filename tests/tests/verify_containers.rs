//! `cap-trace --container NAME --verify` on podman and on the real Docker engine: the learned
//! set proven on copies of the container that the engine re-creates from its own record, each
//! under `--cap-drop=ALL` plus a candidate set, judged by its exit status; every copy removed,
//! also when Ctrl-C ends verification half-way. (A server judged by its health check is in
//! servers.rs.)

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::time::{Duration, Instant};

use cap_trace_tests::engine::{Engine, flags_for, host_lacks};
use cap_trace_tests::podman::{self, Background};
use cap_trace_tests::*;
use serde_json::Value;

on_both_engines!(a_batch_container_is_verified);

/// A batch job with a case of each kind observation alone cannot settle: CHOWN, SETUID and
/// SETGID needed (`&&` fails the job without them; its `su` drops to nobody); DAC_OVERRIDE
/// needed to write into a directory of mode 000, whose search also asks for DAC_READ_SEARCH
/// first (subsumed); SYS_ADMIN granted in learning mode and used (`hostname`), but the job
/// goes on without it (granted but unneeded); SYS_RESOURCE to lower its OOM score, denied
/// (no container here can hold it) and ignored (a tolerated denial).
const JOB: &str = "touch /tmp/x && chown 1000 /tmp/x \
                   && mkdir /tmp/d && chmod 000 /tmp/d && touch /tmp/d/x \
                   && su -s /bin/sh nobody -c true \
                   && { hostname verified 2>/dev/null || true; } \
                   && { echo -1000 > /proc/self/oom_score_adj || true; } 2>/dev/null \
                   && sleep 1";

/// What the job needs, exactly.
const MINIMAL: [&str; 4] = ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"];

/// Copies of `name` the engine still has (running or not).
fn copies_left(engine: Engine, name: &str) -> Vec<String> {
    copies(engine, name, "-a")
}

/// Copies of `name` running now.
fn copies_running(engine: Engine, name: &str) -> Vec<String> {
    copies(engine, name, "--filter=status=running")
}

fn copies(engine: Engine, name: &str, which: &str) -> Vec<String> {
    let out = engine
        .cli()
        .args(["ps", which, "--format", "{{.Names}}"])
        .args(["--filter", &format!("label=io.cap-trace.verify-of={name}")])
        .output()
        .expect("run the engine's ps");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn status<'a>(p: &'a Value, cap: &str) -> &'a str {
    verdict(p, cap)
        .and_then(|v| v["status"].as_str())
        .unwrap_or("(none)")
}

fn a_batch_container_is_verified(engine: Engine) {
    let test = "a_batch_container_is_verified";
    if !ready(engine, test) {
        return;
    }
    engine.image();
    let name = podman::name(test);
    let bg = Background::for_engine(engine, &["--container", &name, "--verify"]);
    let learning: Vec<String> = engine.learning();
    let learning: Vec<&str> = learning.iter().map(String::as_str).collect();
    let out = engine.run(&name, &learning, JOB);
    assert!(out.status.success(), "the learning run: {out:?}");
    let (code, stderr, json) = bg.wait(Duration::from_secs(240));
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.expect("profile written")).remove(0);
    let v = &p["verification"];
    eprintln!(
        "{test} ({}): learned {}, verified {:?} in {} runs, {} ms",
        engine.name(),
        v["learned"],
        suggested(&p),
        v["runs"].as_array().map_or(0, Vec::len),
        v["duration_ms"]
    );
    assert_eq!(v["verified"], true, "{stderr}\n{p:#}");
    let learned: Vec<&str> = v["learned"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Without verification: a superset of it, SYS_ADMIN among it, said to be unverified.
    assert!(learned.contains(&"SYS_ADMIN"), "{learned:?}");
    for cap in MINIMAL {
        assert!(learned.contains(&cap), "{cap}: {learned:?}");
    }
    // Verified: exactly the minimal set, each capability with the run that showed it.
    assert_eq!(suggested(&p), MINIMAL, "{p:#}");
    assert_eq!(p["suggestion"]["verified"], true);
    for cap in MINIMAL {
        assert_eq!(status(&p, cap), "needed", "{cap}: {p:#}");
    }
    eprintln!(
        "{test} ({}): SYS_ADMIN {}, DAC_READ_SEARCH {}, SYS_RESOURCE {}",
        engine.name(),
        status(&p, "SYS_ADMIN"),
        status(&p, "DAC_READ_SEARCH"),
        status(&p, "SYS_RESOURCE")
    );
    assert_eq!(status(&p, "SYS_ADMIN"), "not_needed", "{p:#}");
    assert_eq!(status(&p, "DAC_READ_SEARCH"), "subsumed", "{p:#}");
    // Where the host cannot grant SYS_RESOURCE (as here) that is what is said; elsewhere the
    // job ran with it, and without it went on.
    let sys_resource = if host_lacks().contains(&"SYS_RESOURCE") {
        "host_cannot"
    } else {
        "not_needed"
    };
    assert_eq!(status(&p, "SYS_RESOURCE"), sys_resource, "{p:#}");
    // One line per run, not the copies' comings and goings; the copies are gone.
    assert!(
        stderr.contains("verification run 1 with the learned set: passed"),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("{name}-verify-")), "{stderr}");
    assert_eq!(copies_left(engine, &name), Vec::<String>::new());
    // A failed run keeps what the copy printed, read from the engine before it was removed,
    // and the report quotes it.
    let without_chown = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["removed"] == "CHOWN")
        .expect("a run without CHOWN");
    assert_eq!(without_chown["passed"], false, "{without_chown:#}");
    let printed = without_chown["output"].as_str().unwrap_or_default();
    assert!(
        printed.contains("chown") && printed.contains("Operation not permitted"),
        "{without_chown:#}"
    );
    let file = TempDir::new("verified-container");
    let saved = file.join("p.json");
    std::fs::write(&saved, p.to_string()).unwrap();
    let report = ok(&cap_trace(["show", saved.to_str().unwrap(), "--verbose"]));
    assert!(
        report.contains("it printed: chown: /tmp/x: Operation not permitted"),
        "{report}"
    );
    // The verified flags, as printed, run the job.
    let printed = printed_flags(&p, engine.name());
    assert_eq!(printed, flags_for(&MINIMAL.map(String::from)));
    let rerun = podman::name("rerun");
    let flags: Vec<&str> = printed.iter().map(String::as_str).collect();
    let out = engine.run(&rerun, &flags, JOB);
    assert!(
        out.status.success(),
        "with the verified flags {printed:?}: {out:?}"
    );
}

/// Ctrl-C while a copy runs: cap-trace stops, removes the copy, and says the set is not
/// verified.
#[test]
fn ctrl_c_during_verification_leaves_no_copy() {
    let engine = Engine::Podman;
    let test = "ctrl_c_during_verification_leaves_no_copy";
    if !ready(engine, test) {
        return;
    }
    engine.image();
    let name = podman::name(test);
    let bg = Background::for_engine(engine, &["--container", &name, "--verify"]);
    let out = engine.run(&name, &[], "chown 1000 /tmp && sleep 2");
    assert!(out.status.success(), "the learning run: {out:?}");
    // Interrupted while the first copy runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while copies_running(engine, &name).is_empty() {
        assert!(Instant::now() < deadline, "no copy ran: {}", bg.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, stderr, json) = bg.interrupt(Duration::from_secs(60));
    assert_eq!(copies_left(engine, &name), Vec::<String>::new(), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    let p = podman::profiles(&json.expect("profile written")).remove(0);
    let v = &p["verification"];
    assert_eq!(v["verified"], false, "{p:#}");
    assert!(
        v["problem"]
            .as_str()
            .is_some_and(|s| s.contains("interrupted")),
        "{p:#}"
    );
    // The suggestion stays the learned one, marked as not verified.
    assert_eq!(suggested(&p), ["CHOWN"], "{p:#}");
    assert_eq!(p["suggestion"]["verified"], false);
}

/// Verification takes one named container: anything else is a usage error (exit 2, one line).
#[test]
fn verification_takes_one_named_container() {
    for args in [
        &["--all-containers", "--verify"][..],
        &["--container", "a", "--container", "b", "--verify"],
        &["--all-containers", "--health", "true"],
    ] {
        let out = cap_trace(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("cap-trace: error: ") && stderr.contains("--container NAME"),
            "{stderr}"
        );
    }
}
