//! The live view (`--events`): one line per kind of check, the moment it is first seen, as text
//! columns (like bcc's `capable`) or JSON lines.

use std::fmt::Write as _;

use crate::model::record::{Audit, Check, Phase, Verdict};
use crate::model::text::shown;

/// The column titles of [`text_line`].
pub fn text_header() -> String {
    line(
        "TIME",
        "WORKLOAD",
        "PID",
        "COMM",
        "CAPABILITY",
        "VERDICT",
        "AUDIT",
        "SYSCALL",
    )
}

/// One check as a line of text columns: time (UTC), workload, pid, command, capability,
/// verdict, whether the check was audited (an enforcement point) or a probe, syscall. A check
/// the container runtime made while setting the workload up says so after its syscall.
pub fn text_line(workload: &str, check: &Check) -> String {
    let time = check
        .first_seen
        .as_deref()
        .and_then(|t| t.get(11..19))
        .unwrap_or("-");
    let pid = check.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    let verdict = match check.verdict {
        Verdict::Granted => "granted",
        Verdict::Denied => "DENIED",
    };
    let audit = match check.audit {
        Audit::Audited => "yes",
        Audit::Noaudit => "no",
        Audit::Unknown => "?",
    };
    let mut syscall = check.syscall.clone().unwrap_or_else(|| "-".to_owned());
    if check.phase == Phase::Runtime {
        syscall.push_str(" (runtime)");
    }
    line(
        time,
        &clip(&shown(workload), 14),
        &pid,
        &shown(&check.comm),
        &check.cap.to_string(),
        verdict,
        audit,
        &syscall,
    )
}

#[allow(clippy::too_many_arguments)]
fn line(
    time: &str,
    workload: &str,
    pid: &str,
    comm: &str,
    cap: &str,
    verdict: &str,
    audit: &str,
    syscall: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{time:<8} {workload:<14} {pid:>7} {comm:<15} {cap:<16} {verdict:<7} {audit:<5} {syscall}"
    );
    out
}

/// `s` cut to `width` characters, the last one a `~` when something was cut.
fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('~');
    out
}

/// One check as a JSON line: `"event": "check"` (which tells it from the profiles that end
/// the stream), the time (RFC 3339), the workload and the check's fields as the profile names
/// them.
pub fn json_line(workload: &str, check: &Check) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        event: &'a str,
        time: Option<&'a str>,
        workload: &'a str,
        pid: Option<u32>,
        uid: Option<u32>,
        comm: &'a str,
        cap: crate::linux::caps::Cap,
        verdict: Verdict,
        audit: Audit,
        syscall: Option<&'a str>,
        phase: Phase,
        insetid: bool,
        userns_level: u32,
    }
    let line = Line {
        event: "check",
        time: check.first_seen.as_deref(),
        workload,
        pid: check.pid,
        uid: check.uid,
        comm: &check.comm,
        cap: check.cap,
        verdict: check.verdict,
        audit: check.audit,
        syscall: check.syscall.as_deref(),
        phase: check.phase,
        insetid: check.insetid,
        userns_level: check.userns_level,
    };
    format!(
        "{}\n",
        serde_json::to_string(&line).expect("a check serializes")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::caps::Cap;

    fn check() -> Check {
        Check {
            cap: Cap(0),
            verdict: Verdict::Denied,
            audit: Audit::Audited,
            insetid: false,
            userns_level: 0,
            syscall: Some("fchownat".into()),
            comm: "chown".into(),
            phase: Phase::Workload,
            denied_before: Vec::new(),
            site: None,
            count: 1,
            first_seen: Some("2026-11-26T17:40:01.123Z".into()),
            pid: Some(4242),
            uid: Some(0),
            sources: Vec::new(),
        }
    }

    #[test]
    fn text_columns_line_up_under_the_header() {
        let header = text_header();
        let line = text_line("web\nx-a-very-long-container-name", &check());
        assert_eq!(
            line,
            "17:40:01 web\\nx-a-very~    4242 chown           CHOWN            DENIED  yes   fchownat\n"
        );
        // Each value starts under its title (PID, right-aligned, ends under it).
        for title in [
            "WORKLOAD",
            "COMM",
            "CAPABILITY",
            "VERDICT",
            "AUDIT",
            "SYSCALL",
        ] {
            let at = header.find(title).unwrap();
            assert!(
                line.as_bytes()[at - 1] == b' ' && line.as_bytes()[at] != b' ',
                "{title}"
            );
        }
        let pid_end = header.find("PID").unwrap() + 3;
        assert_eq!(&line[pid_end - 4..pid_end], "4242");
        // Only the syscall, the last column, may reach past 80 columns.
        assert!(header.find("SYSCALL").unwrap() < 80);
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let line = json_line("web", &check());
        assert_eq!(line.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "check");
        assert_eq!(v["workload"], "web");
        assert_eq!(v["cap"], "CHOWN");
        assert_eq!(v["verdict"], "denied");
        assert_eq!(v["audit"], "audited");
        assert_eq!(v["syscall"], "fchownat");
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["time"], "2026-11-26T17:40:01.123Z");
    }
}
