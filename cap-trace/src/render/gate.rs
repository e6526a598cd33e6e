//! The regression gate's verdicts, as text or JSON (schema `cap-trace/check`).

use std::fmt::Write as _;

use crate::model::gate::{GateVerdict, Trigger};
use crate::render::escape;
use crate::render::text::Style;

fn describe(t: &Trigger) -> String {
    format!(
        "{}: {} (x{})",
        escape::text(&t.comm),
        t.syscall.as_deref().unwrap_or("(no syscall)"),
        t.count
    )
}

pub fn text(verdicts: &[GateVerdict], style: Style) -> String {
    let mut out = String::new();
    for v in verdicts {
        let head = if v.passed {
            style.green("passed")
        } else {
            style.red("FAILED")
        };
        let _ = writeln!(
            out,
            "check {head}: {} against {}",
            escape::text(&v.workload),
            escape::text(&v.baseline)
        );
        let findings = v
            .new
            .iter()
            .map(|f| ("+", "newly needed (", ")", f))
            .chain(v.walls.iter().map(|f| ("!", "hit a wall: ", "", f)));
        for (mark, before, after, f) in findings {
            let _ = writeln!(
                out,
                "  {} {:<18} {before}{}{after}; triggered by {}",
                style.red(mark),
                f.cap.name(),
                f.reason,
                f.triggers
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for cap in &v.unused {
            let _ = writeln!(
                out,
                "  {} {:<18} granted by the baseline, no longer needed: drop it",
                style.green("-"),
                cap.name()
            );
        }
        if v.passed && v.new.is_empty() && v.unused.is_empty() {
            let _ = writeln!(out, "  nothing new is required");
        }
    }
    out
}

pub fn json(verdicts: &[GateVerdict]) -> String {
    let passed = verdicts.iter().all(|v| v.passed);
    let value = serde_json::json!({
        "schema": "cap-trace/check",
        "version": 1,
        "passed": passed,
        "workloads": verdicts,
    });
    format!("{}\n", serde_json::to_string_pretty(&value).expect("json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::caps::Cap;
    use crate::model::fixtures::{check, sample};
    use crate::model::gate::{Trigger, compare};
    use crate::model::profile::Profile;
    use crate::model::record::{Audit, Outcome, Phase, Verdict as V};

    fn with(extra: Vec<crate::model::record::Check>, outcomes: Vec<Outcome>) -> Profile {
        let base = sample();
        let mut checks = base.checks.clone();
        checks.extend(extra);
        Profile::new(base.workload, base.trace, checks, outcomes, vec![])
    }

    #[test]
    fn same_needs_pass() {
        let v = compare(&sample(), "base.json", &sample(), false);
        assert!(v.passed);
        assert!(v.new.is_empty() && v.walls.is_empty() && v.unused.is_empty());
        assert!(text(&[v], Style::plain()).contains("nothing new is required"));
    }

    #[test]
    fn a_new_capability_fails_with_its_triggers() {
        let mut mknod = check(27, V::Granted, Audit::Audited, "mknodat", "mknod");
        mknod.count = 3;
        let current = with(vec![mknod], vec![]);
        let v = compare(&sample(), "base.json", &current, false);
        assert!(!v.passed);
        assert_eq!(v.new.len(), 1);
        assert_eq!(v.new[0].cap, Cap(27));
        assert_eq!(
            v.new[0].triggers,
            [Trigger {
                comm: "mknod".into(),
                syscall: Some("mknodat".into()),
                count: 3
            }]
        );
        let t = text(std::slice::from_ref(&v), Style::plain());
        assert!(t.contains("check FAILED"), "{t}");
        assert!(t.contains("+ MKNOD"), "{t}");
        assert!(t.contains("mknod: mknodat (x3)"), "{t}");
        let j: serde_json::Value = serde_json::from_str(&json(&[v])).unwrap();
        assert_eq!(j["passed"], false);
        assert_eq!(j["workloads"][0]["new"][0]["cap"], "MKNOD");
        assert_eq!(
            j["workloads"][0]["new"][0]["triggers"][0]["syscall"],
            "mknodat"
        );
    }

    #[test]
    fn unused_is_an_opportunity_unless_strict() {
        let mut base = with(
            vec![check(27, V::Granted, Audit::Audited, "mknodat", "mknod")],
            vec![],
        );
        base.workload.name = "w".into();
        let v = compare(&base, "base.json", &sample(), false);
        assert!(v.passed);
        assert_eq!(v.unused, [Cap(27)]);
        assert!(text(&[v], Style::plain()).contains("- MKNOD"));
        assert!(!compare(&base, "base.json", &sample(), true).passed);
    }

    #[test]
    fn hitting_a_wall_fails_even_when_the_baseline_grants_it() {
        let denied = check(0, V::Denied, Audit::Audited, "fchownat", "chown");
        let outcome = Outcome {
            syscall: Some("fchownat".into()),
            comm: "chown".into(),
            phase: Phase::Workload,
            denied: vec![Cap(0)],
            result: "EPERM".into(),
            count: 1,
        };
        let base = sample();
        // chown fails when its chown(2) does: a wall the run did not get past.
        let mut failed = base.workload.clone();
        failed.exit_status = Some(1);
        let current = Profile::new(
            failed,
            base.trace.clone(),
            vec![denied],
            vec![outcome],
            vec![],
        );
        let v = compare(&base, "base.json", &current, false);
        assert!(!v.passed);
        assert!(v.new.is_empty());
        assert_eq!(v.walls[0].cap, Cap(0));
        assert!(text(&[v], Style::plain()).contains("! CHOWN"));
    }
}
