//! Files root writes cannot be hijacked by another local user: planted symbolic links,
//! directories that user owns, and temp names planted ahead of time.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use cap_trace_tests::*;

/// Runs a shell script as nobody (as a hostile local user would).
fn nobody(script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("run setpriv")
}

/// [`nobody`], which must succeed.
fn as_nobody(script: &str) {
    let out = nobody(script);
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A profile to render (written by cap-trace as root into a private directory).
fn profile(dir: &TempDir) -> PathBuf {
    let path = dir.join("p.json");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    ok(&cap_trace([
        "run",
        "--json",
        "--output",
        path.to_str().unwrap(),
        "--",
        "chown",
        "nobody",
        file.to_str().unwrap(),
    ]));
    path
}

/// A file only root may write, standing for /etc/shadow.
struct Victim(PathBuf);

impl Victim {
    fn new(dir: &TempDir) -> Victim {
        let path = dir.join("victim");
        std::fs::write(&path, "precious\n").unwrap();
        Victim(path)
    }

    #[track_caller]
    fn assert_intact(&self) {
        assert_eq!(
            std::fs::read_to_string(&self.0).unwrap(),
            "precious\n",
            "root wrote through the planted link"
        );
    }
}

/// A world-writable sticky directory, as /tmp is, for the hostile user to plant things in.
fn sticky_tmp(test: &str) -> TempDir {
    let dir = TempDir::new(test);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// `cap-trace show PROFILE [EXTRA...] -o TARGET`, as root.
fn show_to(profile: &Path, target: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["show", profile.to_str().unwrap()];
    args.extend(extra);
    args.extend(["-o", target.to_str().unwrap()]);
    cap_trace(args)
}

#[track_caller]
fn refused(out: &std::process::Output, needle: &str) {
    assert_eq!(out.status.code(), Some(4), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("cap-trace: error: refusing to write"),
        "{err}"
    );
    assert!(err.contains(needle), "{err}");
}

#[test]
fn a_symlink_another_user_planted_in_tmp_is_not_followed() {
    if !privileged("a_symlink_another_user_planted_in_tmp_is_not_followed") {
        return;
    }
    let private = TempDir::new("writes-private");
    let p = profile(&private);
    let victim = Victim::new(&private);
    let tmp = sticky_tmp("writes-link");
    let planted = tmp.join("r.json");
    as_nobody(&format!(
        "ln -s {} {}",
        victim.0.display(),
        planted.display()
    ));
    for format in ["k8s", "json", "text"] {
        let out = show_to(&p, &planted, &["--format", format]);
        refused(&out, "symbolic link owned by nobody");
        victim.assert_intact();
    }
}

#[test]
fn a_directory_another_user_owns_is_not_written_into() {
    if !privileged("a_directory_another_user_owns_is_not_written_into") {
        return;
    }
    let private = TempDir::new("writes-private");
    let p = profile(&private);
    let victim = Victim::new(&private);
    let tmp = sticky_tmp("writes-dir");
    let exp = tmp.join("exp");
    // Works even with fs.protected_symlinks=1: the link sits in nobody's own directory.
    as_nobody(&format!(
        "mkdir {exp} && ln -s {victim} {exp}/out.json",
        exp = exp.display(),
        victim = victim.0.display()
    ));
    let out = show_to(&p, &exp.join("out.json"), &[]);
    refused(&out, "belongs to nobody");
    victim.assert_intact();
    // A fresh name in that directory is refused too: nobody could swap it meanwhile.
    let out = show_to(&p, &exp.join("new.json"), &[]);
    refused(&out, "belongs to nobody");
    assert!(!exp.join("new.json").exists());
    // And a directory reached through nobody's symlink.
    let via = tmp.join("via");
    as_nobody(&format!(
        "ln -s {} {}",
        private.path().display(),
        via.display()
    ));
    let out = show_to(&p, &via.join("victim"), &[]);
    refused(&out, "symbolic link owned by nobody");
    victim.assert_intact();
}

#[test]
fn temp_names_planted_ahead_of_time_are_not_used() {
    if !privileged("temp_names_planted_ahead_of_time_are_not_used") {
        return;
    }
    let private = TempDir::new("writes-private");
    let p = profile(&private);
    let victim = Victim::new(&private);
    let tmp = sticky_tmp("writes-temp");
    let target = tmp.join("o.json");
    // Links at every temp name the next few thousand cap-trace processes could pick, in the
    // `.NAME.tmp-PID` form and in any other fixed form: none may be written through.
    // One process plants them all, so that planting uses up no pid.
    as_nobody(&format!(
        "cd {} && python3 -c '
import os
last = int(open(\"/proc/sys/kernel/ns_last_pid\").read())
for p in range(last + 1, last + 3000):
    os.symlink(\"{}\", f\".o.json.tmp-{{p}}\")
'",
        tmp.path().display(),
        victim.0.display()
    ));
    ok(&show_to(&p, &target, &[]));
    victim.assert_intact();
    let meta = std::fs::symlink_metadata(&target).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.uid(), 0, "the output is root's");
    assert!(std::fs::read_to_string(&target).unwrap().contains("CHOWN"));
}

#[test]
fn a_file_another_user_planted_is_replaced_by_roots_own() {
    if !privileged("a_file_another_user_planted_is_replaced_by_roots_own") {
        return;
    }
    let private = TempDir::new("writes-private");
    let p = profile(&private);
    let tmp = sticky_tmp("writes-planted");
    let target = tmp.join("baseline.json");
    as_nobody(&format!(
        "echo planted > {t} && chmod 0666 {t}",
        t = target.display()
    ));
    ok(&show_to(&p, &target, &["--json"]));
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(
        meta.uid(),
        0,
        "owned by root, not by the user who planted it"
    );
    assert_eq!(
        meta.mode() & 0o022,
        0,
        "not writable by others: {:o}",
        meta.mode()
    );
    // nobody cannot tamper with the baseline now.
    let out = nobody(&format!("echo tampered > {}", target.display()));
    assert!(!out.status.success());
    assert!(std::fs::read_to_string(&target).unwrap().contains("CHOWN"));
}

#[test]
fn roots_own_symlink_is_still_followed() {
    if !privileged("roots_own_symlink_is_still_followed") {
        return;
    }
    let private = TempDir::new("writes-private");
    let p = profile(&private);
    let real = private.join("real.json");
    let link = private.join("link.json");
    std::fs::write(&real, "old").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ok(&show_to(&p, &link, &[]));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::read_to_string(&real).unwrap().contains("CHOWN"));
}
