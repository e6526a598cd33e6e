//! `cap-trace check`: the regression gate. A workload fails it when it now needs a capability
//! its baseline does not grant, or when it hit a wall (a denial that made a syscall fail).

use std::fmt::Write as _;

use serde::Serialize;

use crate::linux::caps::Cap;
use crate::model::profile::Profile;
use crate::model::record::Phase;
use crate::model::suggest::Status;
use crate::render::text::Style;

/// What triggered a capability: a thread, a syscall, how often.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Trigger {
    pub comm: String,
    pub syscall: Option<String>,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub cap: Cap,
    pub status: Status,
    pub reason: String,
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub workload: String,
    pub baseline: String,
    pub passed: bool,
    /// Required now, not granted by the baseline.
    pub new: Vec<Finding>,
    /// Denied, and the syscall failed: the set it ran with is too small.
    pub walls: Vec<Finding>,
    /// Granted by the baseline, no longer needed.
    pub unused: Vec<Cap>,
}

fn triggers(profile: &Profile, cap: Cap) -> Vec<Trigger> {
    let mut out: Vec<Trigger> = profile
        .checks
        .iter()
        .filter(|c| c.cap == cap && c.phase == Phase::Workload)
        .map(|c| Trigger {
            comm: c.comm.clone(),
            syscall: c.syscall.clone(),
            count: c.count,
        })
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.count));
    out
}

fn finding(profile: &Profile, cap: Cap) -> Finding {
    let verdict = profile.suggestion.verdict(cap);
    Finding {
        cap,
        status: verdict.map_or(Status::Required, |v| v.status),
        reason: verdict.map(|v| v.reason.clone()).unwrap_or_default(),
        triggers: triggers(profile, cap),
    }
}

/// Compares a traced profile with its baseline. `strict`: capabilities no longer needed fail
/// the gate too.
pub fn compare(
    baseline: &Profile,
    baseline_name: &str,
    current: &Profile,
    strict: bool,
) -> Verdict {
    let granted = &baseline.suggestion.add;
    let new: Vec<Finding> = current
        .suggestion
        .add
        .iter()
        .filter(|c| !granted.contains(c))
        .map(|&c| finding(current, c))
        .collect();
    let walls: Vec<Finding> = current
        .suggestion
        .missing()
        .map(|v| finding(current, v.cap))
        .collect();
    let unused: Vec<Cap> = granted
        .iter()
        .copied()
        .filter(|c| !current.suggestion.add.contains(c))
        .collect();
    let passed = new.is_empty() && walls.is_empty() && (!strict || unused.is_empty());
    Verdict {
        workload: current.workload.name.clone(),
        baseline: baseline_name.to_owned(),
        passed,
        new,
        walls,
        unused,
    }
}

/// The baseline profile for a traced workload: the one with the same name when the baseline
/// file holds several, else the only one.
pub fn baseline_for<'a>(baselines: &'a [Profile], current: &Profile) -> Option<&'a Profile> {
    match baselines {
        [only] => Some(only),
        many => many
            .iter()
            .find(|b| b.workload.name == current.workload.name),
    }
}

fn describe(t: &Trigger) -> String {
    format!(
        "{}: {} (x{})",
        t.comm,
        t.syscall.as_deref().unwrap_or("(no syscall)"),
        t.count
    )
}

pub fn text(verdicts: &[Verdict], style: Style) -> String {
    let mut out = String::new();
    for v in verdicts {
        let head = if v.passed {
            style.green("passed")
        } else {
            style.red("FAILED")
        };
        let _ = writeln!(out, "check {head}: {} against {}", v.workload, v.baseline);
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

pub fn json(verdicts: &[Verdict]) -> String {
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
    use crate::model::fixtures::{check, sample};
    use crate::model::profile::Profile;
    use crate::model::record::{Audit, Outcome, Verdict as V};

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
        let current = Profile::new(
            base.workload.clone(),
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

    #[test]
    fn baselines_are_matched_by_name() {
        let mut a = sample();
        a.workload.name = "a".into();
        let mut b = sample();
        b.workload.name = "b".into();
        let both = vec![a, b.clone()];
        assert_eq!(baseline_for(&both, &b).unwrap().workload.name, "b");
        let mut c = sample();
        c.workload.name = "c".into();
        assert!(baseline_for(&both, &c).is_none());
        assert_eq!(baseline_for(&both[..1], &c).unwrap().workload.name, "a");
    }
}
