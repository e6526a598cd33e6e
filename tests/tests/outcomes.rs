//! How the syscalls of denied checks end, followed by each outcome hook this kernel offers: a
//! BPF task work (Linux 6.18+), and `raw_syscalls:sys_exit` (every kernel). The hook is chosen
//! with the hidden `--outcome-hook` option; by default cap-trace takes the task work where the
//! kernel has it.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cap_trace_tests::*;

/// Whether the running kernel can schedule BPF task works.
fn kernel_has_task_work() -> bool {
    std::fs::read_to_string("/proc/kallsyms").is_ok_and(|symbols| {
        symbols.lines().any(|l| {
            l.ends_with(" bpf_task_work_schedule_resume_impl")
                || l.ends_with(" bpf_task_work_schedule_resume")
        })
    })
}

/// The outcome hooks this kernel offers, as `--outcome-hook` names them.
fn hooks() -> Vec<&'static str> {
    if kernel_has_task_work() {
        vec!["task-work", "sys-exit"]
    } else {
        vec!["sys-exit"]
    }
}

/// How the hook shows in a profile's `trace.hook`.
fn described(hook: &str) -> &'static str {
    match hook {
        "task-work" => "outcomes by task work",
        _ => "outcomes on raw_syscalls:sys_exit",
    }
}

#[test]
fn the_task_work_is_used_where_the_kernel_has_it() {
    if !privileged("the_task_work_is_used_where_the_kernel_has_it") {
        return;
    }
    let expected = if kernel_has_task_work() {
        "task-work"
    } else {
        "sys-exit"
    };
    let profile = run_profile(&[], &["true"]);
    let hook = profile["trace"]["hook"].as_str().unwrap();
    assert!(
        hook.ends_with(&format!(", {})", described(expected))),
        "{hook}"
    );
    for hook in hooks() {
        let profile = run_profile(&["--outcome-hook", hook], &["true"]);
        let named = profile["trace"]["hook"].as_str().unwrap();
        assert!(named.contains(described(hook)), "{hook}: {named}");
    }
}

/// The names of the raw tracepoints a process holds BPF links to (`tp_name` in their fdinfo).
fn raw_tracepoints_of(pid: u32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("tp_name:"))
                .map(|name| name.trim().to_owned())
        })
        .collect()
}

#[test]
fn nothing_is_attached_to_sys_exit_with_the_task_work() {
    if !privileged("nothing_is_attached_to_sys_exit_with_the_task_work") {
        return;
    }
    for hook in hooks() {
        let mut child = std::process::Command::new(bin())
            .args(["run", "--outcome-hook", hook, "--verbose", "--"])
            .args(["sleep", "2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = capture_stderr(&mut child);
        // cap-trace says when it is attached; its links are open from then on.
        wait_for_stderr(&stderr, "attached to", std::time::Duration::from_secs(30));
        let tracepoints = raw_tracepoints_of(child.id());
        assert!(child.wait().unwrap().success());
        assert!(
            tracepoints.iter().any(|t| t == "cap_capable"),
            "{hook}: {tracepoints:?}"
        );
        let on_sys_exit = tracepoints.iter().any(|t| t == "sys_exit");
        assert_eq!(on_sys_exit, hook == "sys-exit", "{hook}: {tracepoints:?}");
    }
}

/// The `denials` helper, copied where an unprivileged user may run it.
fn denials_helper(dir: &Path) -> String {
    let helper = dir.join("denials");
    std::fs::copy(env!("CARGO_BIN_EXE_denials"), &helper).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    helper.display().to_string()
}

/// `(result, count)` of each outcome of the thread named `comm`.
fn outcomes_of(profile: &serde_json::Value, comm: &str) -> Vec<(String, u64)> {
    profile["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["comm"] == comm)
        .map(|o| {
            (
                o["result"].as_str().unwrap().to_owned(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn each_thread_gets_its_own_syscalls_outcomes() {
    if !privileged("each_thread_gets_its_own_syscalls_outcomes") {
        return;
    }
    const CALLS: u64 = 300;
    let dir = TempDir::new("outcomes");
    let helper = denials_helper(dir.path());
    // root's file, which nobody may not give away: chown fails with EPERM.
    let root_file = dir.join("root-file");
    std::fs::write(&root_file, "x").unwrap();
    // nobody's file in a set-group-ID directory of group root: nobody is not in the file's
    // group, so chmod g+s is denied FSETID and drops the bit, and succeeds.
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2775)).unwrap();
    let own_file = shared.join("own-file");
    std::fs::write(&own_file, "x").unwrap();
    for path in [&shared, &own_file] {
        std::os::unix::fs::chown(path, Some(65534), Some(0)).unwrap();
    }
    for hook in hooks() {
        let profile = run_profile(
            &["--user", "nobody", "--outcome-hook", hook],
            &[
                &helper,
                root_file.to_str().unwrap(),
                own_file.to_str().unwrap(),
                &CALLS.to_string(),
            ],
        );
        assert_eq!(profile["workload"]["exit_status"], 0, "{hook}: {profile:#}");
        assert_eq!(profile["trace"]["complete"], true, "{hook}");
        assert!(
            profile["trace"]["hook"]
                .as_str()
                .unwrap()
                .contains(described(hook))
        );

        // The wall: judged by its EPERM (a non-root process: not something --cap-add can
        // give), every check counted.
        let chown = verdict(&profile, "CHOWN").expect("CHOWN verdict");
        assert_eq!(chown["status"], "not_grantable", "{hook}: {profile:#}");
        assert!(
            chown["reason"]
                .as_str()
                .unwrap()
                .contains("chown then failed with EPERM"),
            "{hook}: {chown}"
        );
        assert_eq!(chown["count"], CALLS, "{hook}");
        let walls = outcomes_of(&profile, "walls");
        assert!(walls.iter().all(|(r, _)| r == "EPERM"), "{hook}: {walls:?}");
        // sys_exit follows every one; the task work stops following once the first failed
        // with EPERM (the outcome is settled: needed but missing whatever comes next).
        let expected = if hook == "task-work" { 1 } else { CALLS };
        assert_eq!(walls, [("EPERM".to_owned(), expected)], "{hook}");

        // The detour: denied, not required; every syscall followed, none confused with the
        // other thread's, although both ran at once.
        let fsetid = verdict(&profile, "FSETID").expect("FSETID verdict");
        assert_eq!(fsetid["status"], "not_required", "{hook}: {profile:#}");
        let detours = outcomes_of(&profile, "detours");
        assert_eq!(detours, [("ok".to_owned(), CALLS)], "{hook}");
        assert!(suggested(&profile).is_empty(), "{hook}");
    }
}
