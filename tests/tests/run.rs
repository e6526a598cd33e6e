//! `cap-trace run` against the real kernel: real eBPF programs, real commands.

// Each test file is a crate of its own, linked with every dependency of the package.
#![allow(unused_crate_dependencies)]

use cap_trace_tests::*;

#[test]
fn chown_needs_exactly_chown() {
    if !privileged("chown_needs_exactly_chown") {
        return;
    }
    let dir = TempDir::new("chown");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let profile = run_profile(&[], &["chown", "nobody", file.to_str().unwrap()]);
    assert_eq!(suggested(&profile), ["CHOWN"], "{profile:#}");
    assert_eq!(profile["workload"]["exit_status"], 0);
    let chown = verdict(&profile, "CHOWN").expect("CHOWN verdict");
    assert_eq!(chown["status"], "required");
    // The evidence names the program and the syscall that made the check.
    let evidence = chown["evidence"][0].as_str().unwrap();
    assert!(
        evidence.starts_with("chown: ") && evidence.contains("chown"),
        "{evidence}"
    );
    // And the file really changed owner: the command ran for real.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), 65534);
}

#[test]
fn text_report_ends_with_the_suggestion_line() {
    if !privileged("text_report_ends_with_the_suggestion_line") {
        return;
    }
    let dir = TempDir::new("chown-text");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let out = cap_trace(["run", "--", "chown", "nobody", file.to_str().unwrap()]);
    let text = ok(&out);
    assert!(
        text.trim_end()
            .ends_with("Suggestion: --cap-drop=ALL --cap-add=CHOWN"),
        "{text}"
    );
}

/// The report's title is the command line, quoted so that a shell reads it back as the same
/// arguments: spaces, quotes, a newline and an escape sequence included.
#[test]
fn the_run_title_reads_back_as_the_same_argv() {
    if !privileged("the_run_title_reads_back_as_the_same_argv") {
        return;
    }
    let argv = [
        "sh",
        "-c",
        "exit 0",
        "two words",
        "it's \"quoted\"",
        "line\nbreak",
        "\u{1b}[31mred",
        "$(touch /tmp/cap-trace-title-ran)",
    ];
    let mut args = vec!["run", "--"];
    args.extend(argv);
    let out = cap_trace(&args);
    let text = ok(&out);
    let title = text.lines().next().expect("a title line");
    assert!(!title.contains('\u{1b}'), "{title}");
    let read = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg(format!("printf '%s\\0' {title}"))
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("bash runs");
    assert!(read.status.success(), "{title}");
    let words: Vec<String> = read
        .stdout
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    assert_eq!(words, argv, "title {title}");
    assert!(!std::path::Path::new("/tmp/cap-trace-title-ran").exists());
}

#[test]
fn true_needs_nothing_and_its_sys_admin_probes_are_not_required() {
    if !privileged("true_needs_nothing") {
        return;
    }
    let profile = run_profile(&[], &["true"]);
    assert!(suggested(&profile).is_empty(), "{profile:#}");
    // exec and mmap ask for SYS_ADMIN without audit (memory overcommit): shown, not required.
    let sys_admin = verdict(&profile, "SYS_ADMIN").expect("noaudit SYS_ADMIN probes are shown");
    assert_eq!(sys_admin["status"], "probed");
    assert!(sys_admin["count"].as_u64().unwrap() >= 1);
    let checks = profile["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["cap"] == "SYS_ADMIN"
        && c["audit"] == "noaudit"
        && c["verdict"] == "granted"
        && c["comm"] == "true"));

    let out = cap_trace(["run", "--", "true"]);
    let text = ok(&out);
    assert!(
        text.trim_end().ends_with("Suggestion: --cap-drop=ALL"),
        "{text}"
    );
    assert!(text.contains("probed, not required"), "{text}");
}

#[test]
fn allocating_and_exec_heavy_program_needs_nothing() {
    if !privileged("allocating_and_exec_heavy_program_needs_nothing") {
        return;
    }
    // Many mmap/brk/exec calls, each with a noaudit SYS_ADMIN check, and reads of sysctls.
    let script = "i=0; while [ $i -lt 20 ]; do x=$(seq 1 2000 | sort -r | head -1); i=$((i+1)); done; \
                  cat /proc/sys/kernel/pid_max >/dev/null; exec true";
    let profile = run_profile(&[], &["sh", "-c", script]);
    assert!(suggested(&profile).is_empty(), "{profile:#}");
    let sys_admin = verdict(&profile, "SYS_ADMIN").unwrap();
    assert_eq!(sys_admin["status"], "probed");
    assert!(sys_admin["count"].as_u64().unwrap() > 20);
}

#[test]
fn failing_command_status_is_reported() {
    if !privileged("failing_command_status_is_reported") {
        return;
    }
    let profile = run_profile(&[], &["sh", "-c", "exit 3"]);
    assert_eq!(profile["workload"]["exit_status"], 3);
    let out = cap_trace(["run", "--", "sh", "-c", "exit 3"]);
    // cap-trace itself succeeded: the command's status is in the report.
    let text = ok(&out);
    assert!(text.contains("exited with status 3"), "{text}");

    let profile = run_profile(&[], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(profile["workload"]["exit_signal"], 15);
}

#[test]
fn descendants_are_traced_until_they_exit() {
    if !privileged("descendants_are_traced_until_they_exit") {
        return;
    }
    let dir = TempDir::new("daemonized");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    // The command returns at once; its background child chowns later.
    let script = format!("(sleep 0.3; chown nobody {}) & exit 0", file.display());
    let profile = run_profile(&[], &["sh", "-c", &script]);
    assert_eq!(suggested(&profile), ["CHOWN"], "{profile:#}");
}

#[test]
fn selected_backend_is_reported() {
    if !privileged("selected_backend_is_reported") {
        return;
    }
    let profile = run_profile(&[], &["true"]);
    let backend = profile["trace"]["backend"].as_str().unwrap();
    assert!(["tracepoint", "fexit", "kprobe"].contains(&backend));
    assert!(
        profile["trace"]["hook"]
            .as_str()
            .unwrap()
            .starts_with(backend)
    );
    assert_eq!(profile["trace"]["complete"], true);
    let out = cap_trace(["run", "--verbose", "--", "true"]);
    ok(&out);
    assert!(
        stderr(&out).contains(&format!("attached to {backend}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn this_kernel_uses_the_tracepoint() {
    if !privileged("this_kernel_uses_the_tracepoint") {
        return;
    }
    if !std::path::Path::new("/sys/kernel/tracing/events/capability/cap_capable").exists()
        && !std::path::Path::new("/sys/kernel/debug/tracing/events/capability/cap_capable").exists()
    {
        eprintln!("SKIPPED this_kernel_uses_the_tracepoint: no cap_capable tracepoint here");
        return;
    }
    let profile = run_profile(&["--probe", "auto"], &["true"]);
    assert_eq!(profile["trace"]["backend"], "tracepoint");
    let profile = run_profile(&["--probe", "tracepoint"], &["true"]);
    assert_eq!(profile["trace"]["backend"], "tracepoint");
}

#[test]
fn unavailable_backend_gives_a_clear_error() {
    if !privileged("unavailable_backend_gives_a_clear_error") {
        return;
    }
    // On a kernel without kprobes (this one) or a kernel that has them, the answer is clear.
    let out = cap_trace(["run", "--probe", "kprobe", "--", "true"]);
    if out.status.success() {
        return;
    }
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("cap-trace: error: no capability hook works on Linux"),
        "{err}"
    );
    assert!(err.contains("kprobe: "), "{err}");
}

/// Starts cap-trace as root without CHOWN in its bounding set: nothing it starts can hold it.
const WITHOUT_CHOWN: &[&str] = &["setpriv", "--bounding-set=-chown", "--inh-caps=-chown"];

#[test]
fn denied_check_that_fails_the_syscall_is_needed_but_missing() {
    if !privileged("denied_check_that_fails_the_syscall_is_needed_but_missing") {
        return;
    }
    let dir = TempDir::new("denied");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    // Root run without CHOWN (which this host can grant): chown(2) is denied and fails with
    // EPERM, and chown exits 1.
    let profile = run_profile(
        &["--caps", "none"],
        &["chown", "nobody", file.to_str().unwrap()],
    );
    assert_ne!(profile["workload"]["exit_status"], 0);
    let chown = verdict(&profile, "CHOWN").expect("CHOWN verdict");
    assert_eq!(chown["status"], "missing", "{profile:#}");
    assert!(chown["reason"].as_str().unwrap().contains("EPERM"));
    assert_eq!(suggested(&profile), ["CHOWN"]);
    let outcomes = profile["outcomes"].as_array().unwrap();
    assert!(
        outcomes
            .iter()
            .any(|o| o["result"] == "EPERM" && o["denied"][0] == "CHOWN")
    );
    let out = cap_trace([
        "run",
        "--caps",
        "none",
        "--",
        "chown",
        "nobody",
        file.to_str().unwrap(),
    ]);
    assert!(ok(&out).contains("needed but missing"));

    // When this host cannot grant it at all (cap-trace's own bounding set lacks it), adding
    // it cannot help: said, and left out.
    let profile = run_profile_under(
        WITHOUT_CHOWN,
        &[],
        &["chown", "nobody", file.to_str().unwrap()],
    );
    assert_eq!(
        verdict(&profile, "CHOWN").unwrap()["status"],
        "host_cannot",
        "{profile:#}"
    );
    assert!(suggested(&profile).is_empty());
    let out = cap_trace_under(
        WITHOUT_CHOWN,
        ["run", "--", "chown", "nobody", file.to_str().unwrap()],
    );
    assert!(
        ok(&out).contains("this host cannot grant: CHOWN"),
        "{}",
        stdout(&out)
    );
}

/// Every capability this host grants but `except`, as `--caps` takes them.
fn all_but(except: u32) -> String {
    let out = std::process::Command::new("capsh")
        .arg(format!("--decode={:#x}", host_bounding() & !(1 << except)))
        .output()
        .expect("capsh");
    // `0x...=cap_chown,cap_dac_override,...`
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().split_once('=').unwrap().1.to_owned()
}

#[test]
fn read_search_is_preferred_over_override() {
    if !privileged("read_search_is_preferred_over_override") {
        return;
    }
    let dir = TempDir::new("read-search");
    let file = dir.join("secret");
    std::fs::write(&file, "s3cret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["nobody:nogroup", file.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    // Root without DAC_READ_SEARCH reads another user's 0600 file through DAC_OVERRIDE;
    // least privilege is DAC_READ_SEARCH.
    let profile = run_profile(&["--caps", &all_but(2)], &["cat", file.to_str().unwrap()]);
    assert_eq!(profile["workload"]["exit_status"], 0);
    assert_eq!(suggested(&profile), ["DAC_READ_SEARCH"], "{profile:#}");
    assert_eq!(
        verdict(&profile, "DAC_OVERRIDE").unwrap()["status"],
        "replaced"
    );
    // With everything available the kernel grants DAC_READ_SEARCH first: same answer.
    let profile = run_profile(&[], &["cat", file.to_str().unwrap()]);
    assert_eq!(suggested(&profile), ["DAC_READ_SEARCH"], "{profile:#}");
    // On a host that cannot grant DAC_READ_SEARCH, DAC_OVERRIDE is what it takes.
    let profile = run_profile_under(
        &[
            "setpriv",
            "--bounding-set=-dac_read_search",
            "--inh-caps=-dac_read_search",
        ],
        &[],
        &["cat", file.to_str().unwrap()],
    );
    assert_eq!(suggested(&profile), ["DAC_OVERRIDE"], "{profile:#}");
}

#[test]
fn checks_in_a_child_user_namespace_do_not_count() {
    if !privileged("checks_in_a_child_user_namespace_do_not_count") {
        return;
    }
    // Inside its own user namespace the command is "root" and sets a hostname in its own UTS
    // namespace: that needs nothing from the host.
    let profile = run_profile(
        &[],
        &[
            "unshare",
            "--user",
            "--map-root-user",
            "--uts",
            "hostname",
            "sandbox",
        ],
    );
    assert_eq!(profile["workload"]["exit_status"], 0, "{profile:#}");
    assert!(suggested(&profile).is_empty(), "{profile:#}");
    let sys_admin = verdict(&profile, "SYS_ADMIN").unwrap();
    assert!(
        ["child_userns", "probed"].contains(&sys_admin["status"].as_str().unwrap()),
        "{profile:#}"
    );
    let checks = profile["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["cap"] == "SYS_ADMIN"
            && c["userns_level"] == 1
            && c["verdict"] == "granted")
    );
}

#[test]
fn launcher_checks_are_not_the_commands() {
    if !privileged("launcher_checks_are_not_the_commands") {
        return;
    }
    let profile = run_profile(&[], &["true"]);
    for check in profile["checks"].as_array().unwrap() {
        if check["comm"] == "cap-trace-exec" {
            assert_eq!(check["phase"], "runtime");
        }
    }
}

#[test]
fn bad_input_gives_one_line_errors_and_exit_2() {
    // These fail before anything is loaded: no root needed.
    let out = cap_trace(["run", "--probe", "magic", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "invalid value 'magic' for '--probe <PROBE>' [possible values: auto, tracepoint, fexit, kprobe]"
        ),
        "{}",
        stderr(&out)
    );

    let out = cap_trace(["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("CMD"), "{}", stderr(&out));

    let out = cap_trace(["run", "--ring-buffer", "1000", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_command_is_a_usage_error() {
    if !privileged("missing_command_is_a_usage_error") {
        return;
    }
    let out = cap_trace(["run", "--", "/nonexistent/program"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(
        err.trim(),
        "cap-trace: error: cannot run `/nonexistent/program`: command not found"
    );
}

#[test]
fn json_to_stdout_stays_parseable_when_the_command_prints() {
    if !privileged("json_to_stdout_stays_parseable_when_the_command_prints") {
        return;
    }
    let out = cap_trace(["run", "--json", "--", "echo", "hello"]);
    let text = ok(&out);
    let profile: serde_json::Value = serde_json::from_str(&text).expect("stdout is the profile");
    assert_eq!(profile["schema"], "cap-trace/profile");
    assert_eq!(profile["version"], 2);
    assert!(stderr(&out).contains("hello"));
}

#[test]
fn ctrl_c_reaches_the_command_even_when_cap_trace_started_with_it_ignored() {
    if !privileged("ctrl_c_reaches_the_command_even_when_cap_trace_started_with_it_ignored") {
        return;
    }
    use std::os::unix::process::CommandExt as _;
    let dir = TempDir::new("sigint");
    let output = dir.join("profile.json");
    // As a script's background job starts it: SIGINT ignored.
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["run", "--json", "-o"])
        .arg(&output)
        .args(["--", "sleep", "30"])
        .env_remove("LD_LIBRARY_PATH");
    // SAFETY: signal(2) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // Wait for the command to run (cap-trace's child), then press Ctrl-C once.
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&children)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the command did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command ignored the Ctrl-C passed on to it");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(
        profile["workload"]["exit_signal"],
        libc::SIGINT,
        "{profile:#}"
    );
}

#[test]
fn a_process_that_leaves_the_traced_cgroup_makes_the_profile_incomplete_and_is_named() {
    if !privileged(
        "a_process_that_leaves_the_traced_cgroup_makes_the_profile_incomplete_and_is_named",
    ) {
        return;
    }
    let dir = TempDir::new("escape");
    let file = dir.join("f");
    std::fs::write(&file, "").unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = mounts
        .lines()
        .find(|l| l.contains(" - cgroup2 ") && l.split_whitespace().nth(3) == Some("/"))
        .and_then(|l| l.split_whitespace().nth(4))
        .expect("a cgroup2 mount")
        .to_owned();
    // The shell moves itself to the root cgroup, then chowns: out of the trace.
    let script = format!("echo $$ > {root}/cgroup.procs; chown 1 {}", file.display());
    let p = run_profile(&[], &["sh", "-c", &script]);
    assert_eq!(p["trace"]["complete"], false, "{p:#}");
    assert_eq!(p["trace"]["losses"]["migrated"], 1, "{p:#}");
    let warnings = p["warnings"].to_string();
    assert!(
        warnings.contains("1 process left the traced cgroup"),
        "{warnings}"
    );
    assert!(
        warnings.contains("(sh) left the traced cgroup for cgroup /"),
        "{warnings}"
    );
    // A process that stays is traced whole, and nothing is said.
    let script = format!("chown 1 {}", file.display());
    let p = run_profile(&[], &["sh", "-c", &script]);
    assert_eq!(p["trace"]["complete"], true, "{p:#}");
    assert_eq!(suggested(&p), ["CHOWN"]);
}

/// The kernel side reads who called `cap_capable` from raw stack words, at positions a stack
/// walk found; every tracer that attaches to the tracepoint or leaves it moves those positions
/// (the kernel calls a lone program directly, several through an iterator). A trace that sees
/// other tracers come and go still names every call site, as it does alone.
#[test]
fn call_sites_stay_known_while_other_tracers_come_and_go() {
    if !privileged("call_sites_stay_known_while_other_tracers_come_and_go") {
        return;
    }
    let dir = TempDir::new("sites");
    let d = dir.join("d");
    // Every round: checks that security_capable forwards (chown, chmod: its caller decides)
    // and others it does not (exec's memory probe), so the layout is learned from both.
    let script = format!(
        "end=$(( $(date +%s) + 10 )); while [ $(date +%s) -lt $end ]; do \
         mkdir -p {d}; chown 1:1 {d}; chmod 700 {d}; rmdir {d}; done",
        d = d.display()
    );
    let traced = std::thread::spawn(move || run_profile(&[], &["sh", "-c", &script]));
    let mut others = 0;
    while !traced.is_finished() {
        ok(&cap_trace(["run", "--", "true"]));
        others += 1;
    }
    let profile = traced.join().expect("the traced run");
    let unknown: Vec<String> = profile["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["audit"] == "unknown")
        .map(|c| format!("{} {} {}", c["cap"], c["comm"], c["site"]))
        .collect();
    assert!(
        unknown.is_empty(),
        "{others} other traces came and went; call sites not known: {unknown:#?}"
    );
    assert!(others >= 2, "{others} other traces");
    for cap in ["CHOWN", "FOWNER"] {
        assert!(verdict(&profile, cap).is_some(), "{cap}: {profile:#}");
    }
}
