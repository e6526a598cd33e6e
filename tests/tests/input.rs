//! Input is validated before any work starts (nothing loaded, nothing run, nothing bound), and
//! no input makes cap-trace panic: every refusal is one `cap-trace: error:` line with a
//! documented exit code.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::process::Output;

use cap_trace_tests::*;

/// Runs cap-trace as `nobody` when the test runs as root: a command that got as far as loading
/// its programs would then fail with exit 3 (not root), so exit 2 shows the input was refused
/// first.
fn before_any_work(args: &[&str]) -> Output {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        cap_trace_under(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ],
            args,
        )
    } else {
        cap_trace(args)
    }
}

#[track_caller]
fn refused(args: &[&str], needle: &str) {
    let out = before_any_work(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("cap-trace: error: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn absurd_numbers_are_refused_not_panicked_on() {
    let dir = TempDir::new("absurd");
    let state = dir.join("state");
    let socket = dir.join("control.sock");
    let (state, socket) = (state.to_str().unwrap(), socket.to_str().unwrap());
    let huge = "99999999999999999999";
    let huge_hours = "99999999999999999999h";
    refused(
        &["--all-containers", "--duration", huge_hours],
        "is too long",
    );
    refused(&["-c", "web", "--wait", huge], "is too long");
    refused(
        &[
            "check",
            "--baseline",
            "b.json",
            "-c",
            "web",
            "--duration",
            huge,
        ],
        "is too long",
    );
    for interval in [huge, "0", "0s", "500ms"] {
        refused(
            &[
                "daemon",
                "--state-dir",
                state,
                "--socket",
                socket,
                "--interval",
                interval,
            ],
            "--interval",
        );
        // Refused before the socket was bound: nothing is left behind.
        assert!(!std::path::Path::new(socket).exists(), "{interval}");
    }
    // 17592186044417M is 2^64 + 1M bytes: wrapped round, it would be a valid 1M.
    refused(
        &["run", "--ring-buffer", "17592186044417M", "--", "true"],
        "must be a power of two",
    );
    refused(
        &["run", "--user", "4294967295", "--", "true"],
        "not a valid user id",
    );
    refused(
        &["run", "--user", "0:4294967295", "--", "true"],
        "not a valid group id",
    );
}

#[test]
fn conflicting_or_unknown_options_are_usage_errors_before_anything_runs() {
    let dir = TempDir::new("options");
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    refused(&["run", "--bogus", "--", "sh", "-c", &touch], "--bogus");
    refused(
        &["run", "--json", "--format", "k8s", "--", "sh", "-c", &touch],
        "--json means --format json",
    );
    refused(
        &[
            "check",
            "--baseline",
            "b.json",
            "--format",
            "compose",
            "run",
            "--",
            "true",
        ],
        "invalid value 'compose' for '--format <FORMAT>' [possible values: text, json]",
    );
    refused(
        &["status", "--format", "oci"],
        "invalid value 'oci' for '--format <FORMAT>' [possible values: text, json]",
    );
    refused(
        &["export", "x", "--format", "json"],
        "export does not take --format",
    );
    refused(&["run", "--", "/nonexistent/program"], "command not found");
    assert!(!marker.exists(), "the command ran");
    // The same option twice the same way is fine.
    let out = cap_trace(["explain", "chown", "--json", "--format", "json"]);
    assert!(ok(&out).contains("\"CHOWN\""));
}

#[test]
fn output_is_checked_before_tracing_and_a_report_that_cannot_be_written_is_not_lost() {
    if !privileged(
        "output_is_checked_before_tracing_and_a_report_that_cannot_be_written_is_not_lost",
    ) {
        return;
    }
    let dir = TempDir::new("output");
    let marker = dir.join("ran");
    let out = cap_trace([
        "run",
        "-o",
        "/nonexistent/d/x.json",
        "--",
        "sh",
        "-c",
        &format!("touch {}", marker.display()),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write /nonexistent/d/x.json"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(
        !marker.exists(),
        "traced although the report could not be written"
    );

    // The directory is there at the start, and the command removes it: the report is not
    // lost, it goes to stdout and the error says so.
    let gone = dir.join("gone");
    std::fs::create_dir(&gone).unwrap();
    let target = gone.join("report.json");
    let out = cap_trace([
        "run",
        "--json",
        "-o",
        target.to_str().unwrap(),
        "--",
        "rmdir",
        gone.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("it was written to stdout instead"),
        "{}",
        stderr(&out)
    );
    let profile: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the report is on stdout");
    assert_eq!(profile["workload"]["command"][0], "rmdir");
}

/// A profile from a real run, as JSON to edit.
fn traced_profile() -> serde_json::Value {
    // A file of this process's own: one left by an earlier run is owned by nobody, and
    // touching it would need more than CHOWN.
    let file = format!("/tmp/cap-trace-input-{}", std::process::id());
    let script = format!("rm -f {file}; touch {file}; chown nobody {file}; rm -f {file}");
    run_profile(&[], &["sh", "-c", &script])
}

#[test]
fn profiles_are_validated_and_merged_counts_saturate() {
    if !privileged("profiles_are_validated_and_merged_counts_saturate") {
        return;
    }
    let dir = TempDir::new("profiles");
    let profile = traced_profile();

    // Capability numbers no kernel can define.
    for cap in ["CAP_64", "CAP_99"] {
        let mut bad = profile.clone();
        bad["checks"][0]["cap"] = cap.into();
        let path = dir.join(&format!("{cap}.json"));
        std::fs::write(&path, bad.to_string()).unwrap();
        for args in [
            vec!["show", path.to_str().unwrap(), "--format", "docker"],
            vec!["merge", path.to_str().unwrap()],
        ] {
            refused(&args, &format!("unknown capability `{cap}`"));
        }
    }
    // Numbers a newer kernel may define but this build has no name for, so cannot render:
    // refused wherever the profile names them, the error saying which, what this build
    // knows, and the fix.
    for (cap, field) in [
        ("CAP_41", "/checks/0/cap"),
        ("CAP_63", "/checks/0/cap"),
        ("CAP_41", "/workload/bounding"),
    ] {
        let mut newer = profile.clone();
        let value = if field.ends_with("bounding") {
            serde_json::json!(["CHOWN", cap])
        } else {
            cap.into()
        };
        *newer.pointer_mut(field).expect(field) = value;
        let path = dir.join(&format!("newer-{cap}.json"));
        std::fs::write(&path, newer.to_string()).unwrap();
        let n = &cap[4..];
        for args in [
            vec!["show", path.to_str().unwrap(), "--format", "docker"],
            vec!["merge", path.to_str().unwrap()],
            vec![
                "check",
                "--baseline",
                path.to_str().unwrap(),
                "--profile",
                path.to_str().unwrap(),
            ],
        ] {
            refused(
                &args,
                &format!(
                    "{}: capability {n} (`{cap}`) is newer than this cap-trace, which knows capabilities 0 to 40 (CHECKPOINT_RESTORE is the last): the profile was learned on a newer kernel; read it with a newer cap-trace",
                    path.display()
                ),
            );
        }
    }

    // Counts near the top add up to the top, not round to small numbers.
    let mut big = profile.clone();
    let n = big["checks"].as_array().unwrap().len();
    for i in 0..n {
        big["checks"][i]["count"] = (u64::MAX - 1).into();
    }
    big["trace"]["total_checks"] = u64::MAX.into();
    let path = dir.join("big.json");
    std::fs::write(&path, big.to_string()).unwrap();
    let out = cap_trace(["merge", path.to_str().unwrap(), path.to_str().unwrap()]);
    let merged: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    for check in merged["checks"].as_array().unwrap() {
        assert_eq!(check["count"], u64::MAX, "{check}");
    }
    assert_eq!(merged["trace"]["total_checks"], u64::MAX);
    assert_eq!(suggested(&merged), ["CHOWN"]);

    // Over the size limit, or a device that never ends: refused at once.
    let huge = dir.join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    refused(&["show", huge.to_str().unwrap()], "larger than 64 MiB");
    refused(
        &["show", "/dev/zero"],
        "is not a cap-trace profile: invalid JSON",
    );
    refused(
        &[
            "check",
            "--baseline",
            "/dev/zero",
            "--profile",
            path.to_str().unwrap(),
        ],
        "/dev/zero",
    );
}
