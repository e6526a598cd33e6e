//! The regression gate (`cap-trace check`): a traced workload compared with its baseline. A workload fails it when it now needs a capability
//! its baseline does not grant, or when it hit a wall (a denial that made a syscall fail).

use serde::Serialize;

use crate::linux::caps::Cap;
use crate::model::profile::Profile;
use crate::model::record::Phase;
use crate::model::suggest::Status;

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
pub struct GateVerdict {
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
) -> GateVerdict {
    let granted = &baseline.suggestion.add;
    let new: Vec<Finding> = current
        .suggestion
        .add
        .iter()
        .filter(|c| !granted.contains(c))
        .map(|&c| finding(current, c))
        .collect();
    // A wall --cap-add cannot fix (this host cannot grant it, or a non-root process was
    // denied it) is still a wall when the run did not succeed.
    let failed = !current.succeeded();
    let walls: Vec<Finding> = current
        .suggestion
        .capabilities
        .iter()
        .filter(|v| {
            v.status == Status::Missing
                || (failed && matches!(v.status, Status::HostCannot | Status::NotGrantable))
        })
        .map(|v| finding(current, v.cap))
        .collect();
    let unused: Vec<Cap> = granted
        .iter()
        .copied()
        .filter(|c| !current.suggestion.add.contains(c))
        .collect();
    let passed = new.is_empty() && walls.is_empty() && (!strict || unused.is_empty());
    GateVerdict {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::sample;

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
