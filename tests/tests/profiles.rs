//! Shipping profiles: every format rendered from a saved profile (the OCI fragment run by
//! runc; compose, Kubernetes and systemd with their consumers in `deploy.rs`), merge, and the
//! check gate.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cap_trace_tests::consumers::schema_errors;
use cap_trace_tests::podman::{self, LEARNING};
use cap_trace_tests::*;

fn write_profile(dir: &TempDir, name: &str, command: &[&str]) -> PathBuf {
    write_profile_with(dir, name, &[], command)
}

fn write_profile_with(dir: &TempDir, name: &str, options: &[&str], command: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["run", "--json", "--output", path.to_str().unwrap()];
    args.extend(options);
    args.push("--");
    args.extend(command);
    ok(&cap_trace(&args));
    path
}

/// A runc bundle with the test image's root filesystem.
fn bundle(dir: &Path, capabilities: serde_json::Value, script: &str) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let name = podman::name("export");
    let created = podman::podman()
        .args(["create", "--name", &name, podman::image(), "true"])
        .output()
        .unwrap();
    assert!(created.status.success());
    let export = podman::podman().args(["export", &name]).output().unwrap();
    podman::remove(&name);
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-x")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tar.stdin.take().unwrap().write_all(&export.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    let spec = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(spec.status.success());
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    config["process"]["capabilities"] = capabilities;
    config["root"]["readonly"] = false.into();
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[test]
fn oci_capabilities_are_accepted_by_runc() {
    if !(privileged("oci_capabilities_are_accepted_by_runc")
        && podman::available("oci_capabilities_are_accepted_by_runc"))
    {
        return;
    }
    let dir = TempDir::new("oci");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let profile = write_profile(
        &dir,
        "chown.json",
        &["chown", "nobody", file.to_str().unwrap()],
    );
    let out = ok(&cap_trace([
        "show",
        profile.to_str().unwrap(),
        "--format",
        "oci",
    ]));
    let caps: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(caps["bounding"], serde_json::json!(["CAP_CHOWN"]));
    let script = "touch /tmp/f && chown nobody /tmp/f && grep CapEff /proc/self/status";
    let run = |caps: serde_json::Value, id: &str| {
        let b = TempDir::new(id);
        bundle(b.path(), caps, script);
        let container = format!("{id}-{}", std::process::id());
        let out = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(b.path())
            .arg(&container)
            .output()
            .unwrap();
        let _ = Command::new("runc")
            .args(["delete", "--force", &container])
            .output();
        out
    };
    let with = run(caps, "oci-with");
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(String::from_utf8_lossy(&with.stdout).contains("CapEff:\t0000000000000001"));
    let empty = serde_json::json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []});
    let without = run(empty, "oci-without");
    assert!(!without.status.success(), "chown worked without CAP_CHOWN");
}

/// A capability number this cap-trace does not know (CAP_41, from a newer kernel) is refused
/// alike by the JSON Schema and by cap-trace reading the profile; so is a name no kernel has.
#[test]
fn the_schema_refuses_the_capabilities_cap_trace_refuses() {
    let dir = TempDir::new("schema-caps");
    let fixture = workspace_root().join("tests/fixtures/profiles/v2.json");
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    // The schema names exactly the capabilities cap-trace knows.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("docs/profile.schema.json")).unwrap(),
    )
    .unwrap();
    let known: serde_json::Value =
        serde_json::from_str(&ok(&cap_trace(["explain", "--all", "--json"]))).unwrap();
    let names: Vec<&serde_json::Value> = known
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    let listed: Vec<&serde_json::Value> = schema["$defs"]["cap"]["anyOf"][0]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(listed, names);
    // What cap-trace writes and reads: names, and the numbers 0 to 40.
    let mut known = profile.clone();
    known["checks"][0]["cap"] = "CAP_40".into();
    let known_file = dir.join("known.json");
    std::fs::write(&known_file, known.to_string()).unwrap();
    assert_eq!(schema_errors(&[&known_file]), "");
    ok(&cap_trace(["show", known_file.to_str().unwrap()]));
    for (cap, says) in [
        ("CAP_41", "newer than this cap-trace"),
        ("CAP_63", "newer than this cap-trace"),
        ("FROBNICATE", "unknown capability `FROBNICATE`"),
    ] {
        let mut wrong = profile.clone();
        wrong["checks"][0]["cap"] = cap.into();
        let file = dir.join(&format!("{cap}.json"));
        std::fs::write(&file, wrong.to_string()).unwrap();
        let errors = schema_errors(&[&file]);
        assert_eq!(errors.lines().count(), 1, "{cap}: {errors}");
        assert!(errors.contains("checks/0/cap: "), "{cap}: {errors}");
        let out = cap_trace(["show", file.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{cap}: {err}");
        assert_eq!(err.lines().count(), 1, "{cap}: {err}");
        assert!(err.starts_with("cap-trace: error: "), "{cap}: {err}");
        assert!(err.contains(says), "{cap}: {err}");
    }
}

#[test]
fn profiles_match_their_json_schema() {
    if !privileged("profiles_match_their_json_schema") {
        return;
    }
    let dir = TempDir::new("schema");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let file = file.to_str().unwrap();
    // Real profiles of this cap-trace: a trace, a verified one, a merge of both, and what
    // `show` writes again from the fixtures (versions 1 and 2, verified and not, as earlier
    // cap-trace wrote them: v1.json has no "$schema").
    let plain = write_profile(&dir, "plain.json", &["chown", "nobody", file]);
    let verified = write_profile_with(
        &dir,
        "verified.json",
        &["--verify"],
        &[
            "sh",
            "-c",
            &format!("chown nobody {file}; chown root {file}"),
        ],
    );
    let merged = dir.join("merged.json");
    ok(&cap_trace([
        "merge",
        "--output",
        merged.to_str().unwrap(),
        plain.to_str().unwrap(),
        verified.to_str().unwrap(),
    ]));
    let fixtures = workspace_root().join("tests/fixtures/profiles");
    let mut files = vec![plain.clone(), verified.clone(), merged];
    for name in ["v1.json", "v2.json", "v2-verified.json"] {
        let fixture = fixtures.join(name);
        let shown = dir.join(&format!("shown-{name}"));
        let json = ok(&cap_trace(["show", fixture.to_str().unwrap(), "--json"]));
        std::fs::write(&shown, json).unwrap();
        files.extend([fixture, shown]);
    }
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    assert_eq!(schema_errors(&paths), "");

    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&verified).unwrap()).unwrap();
    assert_eq!(
        written["$schema"],
        "https://raw.githubusercontent.com/cap-trace/cap-trace/main/docs/profile.schema.json"
    );
    assert_eq!(written["verification"]["verified"], true, "{written}");

    // The schema refuses what cap-trace does not write: a field it does not know, a
    // capability that is not one, a status no version has.
    let mut wrong = written.clone();
    wrong["workload"]["colour"] = "blue".into();
    wrong["checks"][0]["cap"] = "CAP_64".into();
    wrong["suggestion"]["capabilities"][0]["status"] = "from_the_future".into();
    let wrong_file = dir.join("wrong.json");
    std::fs::write(&wrong_file, wrong.to_string()).unwrap();
    let errors = schema_errors(&[&wrong_file]);
    assert_eq!(errors.lines().count(), 3, "{errors}");
    for part in [
        "workload: ",
        "checks/0/cap: ",
        "suggestion/capabilities/0/status: ",
    ] {
        assert!(errors.contains(part), "{part} in {errors}");
    }
}

#[test]
fn every_format_renders_from_a_saved_profile() {
    if !privileged("every_format_renders_from_a_saved_profile") {
        return;
    }
    let dir = TempDir::new("formats");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let profile = write_profile(&dir, "p.json", &["chown", "nobody", file.to_str().unwrap()]);
    let p = profile.to_str().unwrap();
    let show = |format: &str| ok(&cap_trace(["show", p, "--format", format]));
    assert_eq!(show("docker"), "--cap-drop=ALL --cap-add=CHOWN\n");
    assert_eq!(show("podman"), "--cap-drop=ALL --cap-add=CHOWN\n");
    // Run as root: the bounding set alone, no ambient set.
    let systemd = show("systemd");
    assert!(
        systemd.ends_with("[Service]\nCapabilityBoundingSet=CAP_CHOWN\n"),
        "{systemd}"
    );
    let text = show("text");
    assert!(text.contains("Suggestion: --cap-drop=ALL --cap-add=CHOWN"));
    let json: serde_json::Value = serde_json::from_str(&show("json")).unwrap();
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    assert_eq!(json, original, "show --format json reproduces the profile");
}

#[test]
fn merge_unions_runs_of_a_workload_and_keeps_workloads_apart() {
    if !privileged("merge_unions_runs_of_a_workload_and_keeps_workloads_apart") {
        return;
    }
    let dir = TempDir::new("merge");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let a = write_profile(&dir, "a.json", &["chown", "nobody", file.to_str().unwrap()]);
    let node = dir.join("n");
    let b = write_profile(
        &dir,
        "b.json",
        &["mknod", node.to_str().unwrap(), "c", "1", "3"],
    );
    // Two different commands stay two profiles, each with its own set.
    let apart: serde_json::Value = serde_json::from_str(&ok(&cap_trace([
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ])))
    .unwrap();
    let apart = apart.as_array().unwrap();
    assert_eq!(apart.len(), 2);
    assert_eq!(suggested(&apart[0]), ["CHOWN"]);
    assert_eq!(suggested(&apart[1]), ["MKNOD"]);
    // --name picks one of them.
    let picked = ok(&cap_trace([
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--name",
        apart[1]["workload"]["name"].as_str().unwrap(),
        "--format",
        "docker",
    ]));
    assert_eq!(picked, "--cap-drop=ALL --cap-add=MKNOD\n");

    // --as folds them into one, on purpose.
    let merged = dir.join("merged.json");
    ok(&cap_trace([
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--as",
        "tools",
        "--output",
        merged.to_str().unwrap(),
    ]));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    assert_eq!(m["schema"], "cap-trace/profile");
    assert_eq!(suggested(&m), ["CHOWN", "MKNOD"]);
    assert_eq!(m["workload"]["kind"], "merged");
    assert_eq!(m["workload"]["name"], "tools");
    assert_eq!(m["workload"]["sources"].as_array().unwrap().len(), 2);
    let chown = m["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cap"] == "CHOWN")
        .unwrap();
    assert_eq!(chown["sources"], serde_json::json!([a.to_str().unwrap()]));
    // Runs of the same command are one workload: merging a profile with itself doubles the
    // counts.
    let twice = ok(&cap_trace([
        "merge",
        a.to_str().unwrap(),
        a.to_str().unwrap(),
    ]));
    let t: serde_json::Value = serde_json::from_str(&twice).unwrap();
    let count = |v: &serde_json::Value| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cap"] == "CHOWN")
            .unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    let single: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    assert_eq!(count(&t), 2 * count(&single));
}

#[test]
fn check_gate_exit_codes_with_real_workloads() {
    if !privileged("check_gate_exit_codes_with_real_workloads") {
        return;
    }
    let dir = TempDir::new("gate");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let f = file.to_str().unwrap();
    let base = write_profile(&dir, "base.json", &["chown", "nobody", f]);
    let b = base.to_str().unwrap();

    // Same needs: 0.
    let out = cap_trace(["check", "--baseline", b, "run", "--", "chown", "nobody", f]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("check passed"));

    // The workload starts needing MKNOD: 1, with the comm, syscall and count.
    let node = dir.join("node");
    let script = format!("chown nobody {f}; mknod {} c 1 3", node.display());
    let out = cap_trace(["check", "--baseline", b, "run", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("check FAILED"), "{text}");
    assert!(text.contains("+ MKNOD"), "{text}");
    assert!(text.contains("mknod: mknodat (x1)"), "{text}");

    // The same against a saved profile, as JSON.
    std::fs::remove_file(&node).unwrap();
    let new = dir.join("new.json");
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        new.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ]));
    let out = cap_trace([
        "check",
        "--baseline",
        b,
        "--profile",
        new.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["passed"], false);
    assert_eq!(j["workloads"][0]["new"][0]["cap"], "MKNOD");

    // A capability the baseline grants but the workload no longer uses: an opportunity...
    let merged = dir.join("both.json");
    ok(&cap_trace([
        "merge",
        b,
        new.to_str().unwrap(),
        "--as",
        "chown and mknod",
        "--output",
        merged.to_str().unwrap(),
    ]));
    let m = merged.to_str().unwrap();
    let out = cap_trace(["check", "--baseline", m, "run", "--", "chown", "nobody", f]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("- MKNOD"), "{}", stdout(&out));
    // ... or a failure, when asked.
    let out = cap_trace([
        "check",
        "--baseline",
        m,
        "--fail-on-unused",
        "run",
        "--",
        "chown",
        "nobody",
        f,
    ]);
    assert_eq!(out.status.code(), Some(1));

    // Verifying a deployed, reduced set: run without CHOWN, the chown hits a wall: 1.
    let out = cap_trace_under(
        &["setpriv", "--bounding-set=-chown", "--inh-caps=-chown"],
        ["check", "--baseline", b, "run", "--", "chown", "nobody", f],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("! CHOWN"), "{}", stdout(&out));

    // Usage and input errors: 2.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"schema\": \"cap-trace/profile\", \"version\": 1").unwrap();
    for args in [
        vec!["check", "--baseline", bad.to_str().unwrap(), "--profile", b],
        vec!["check", "--baseline", "/nonexistent.json", "--profile", b],
        vec!["check", "--baseline", b],
        vec!["check", "--profile", b],
    ] {
        let out = cap_trace(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    }
}

#[test]
fn check_gate_on_a_container() {
    if !(privileged("check_gate_on_a_container") && podman::available("check_gate_on_a_container"))
    {
        return;
    }
    let dir = TempDir::new("gate-container");
    let base = write_profile(
        &dir,
        "base.json",
        &[
            "sh",
            "-c",
            "touch /tmp/cap-trace-gate; chown nobody /tmp/cap-trace-gate",
        ],
    );
    let name = podman::name("gate");
    podman::image();
    let mut child = Command::new(bin())
        .args([
            "check",
            "--baseline",
            base.to_str().unwrap(),
            "--container",
            &name,
            "--wait",
            "60",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = capture_stderr(&mut child);
    wait_for_stderr(&stderr, "waiting for", Duration::from_secs(30));
    assert!(
        podman::run(
            &name,
            LEARNING,
            "touch /tmp/f; chown nobody /tmp/f; mknod /tmp/n c 1 3"
        )
        .status
        .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr.lock().unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains("+ MKNOD"));
}

#[test]
fn bad_input_is_exit_2_and_nothing_is_half_written() {
    let dir = TempDir::new("bad-input");
    let malformed = dir.join("malformed.json");
    std::fs::write(&malformed, "{ not json").unwrap();
    let future = dir.join("future.json");
    std::fs::write(&future, r#"{"schema": "cap-trace/profile", "version": 99}"#).unwrap();
    let other = dir.join("other.json");
    std::fs::write(&other, r#"{"hello": "world"}"#).unwrap();
    let unreadable = dir.join("missing.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["show", malformed.to_str().unwrap()],
            "is not a cap-trace profile: invalid JSON",
        ),
        (
            vec!["show", future.to_str().unwrap()],
            "is a version 99 profile; this cap-trace reads versions 1 and 2",
        ),
        (
            vec!["show", other.to_str().unwrap()],
            "is not a cap-trace profile",
        ),
        (
            vec!["show", unreadable.to_str().unwrap()],
            "cannot read profile",
        ),
        (vec!["explain", "CAP_FLY"], "unknown capability `CAP_FLY`"),
        (
            vec!["explain", "chown", "wizardry"],
            "unknown capability `wizardry`",
        ),
    ];
    for (args, message) in cases {
        let out = cap_trace(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("cap-trace: error: "), "{err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let out = cap_trace(["explain", "net_bind_service", "CAP_SYS_ADMIN"]);
    let text = ok(&out);
    assert!(
        text.contains("NET_BIND_SERVICE") && text.contains("critical risk"),
        "{text}"
    );

    // A merge that fails leaves an existing output file as it was, and no temporary file.
    let target = dir.join("merged.json");
    std::fs::write(&target, "previous").unwrap();
    let out = cap_trace([
        "merge",
        malformed.to_str().unwrap(),
        "--output",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "previous");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names.iter().any(|n| n.to_string_lossy().contains(".tmp")),
        "{names:?}"
    );

    // Writing into a directory that does not exist: a runtime error, one line.
    let out = cap_trace(["explain", "chown", "--output", "/nonexistent-dir/x.txt"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("cannot write /nonexistent-dir/x.txt"));
}
