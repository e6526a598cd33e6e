//! The fleet view: what each workload holds against what its profile says it needs, and the
//! excess, sorted so that the riskiest excess comes first. Pure data: `cap-trace ps` fills the
//! held sets from `/proc`, the daemon's `report` from its profiles.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use crate::linux::caps::{Cap, Danger};
use crate::model::profile::Profile;

/// Held against needed, for one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// What the profile says it needs (the suggestion).
    pub needed: Vec<Cap>,
    /// Held and not needed: what to drop.
    pub excess: Vec<Cap>,
    /// Needed and not held: the workload lacks it now (it ran elsewhere with more, or fails).
    pub lacking: Vec<Cap>,
}

/// Compares a held set with a needed one.
pub fn compare(held: &[Cap], needed: &[Cap]) -> Comparison {
    let mut needed = needed.to_vec();
    needed.sort();
    needed.dedup();
    let mut excess: Vec<Cap> = held
        .iter()
        .copied()
        .filter(|c| !needed.contains(c))
        .collect();
    excess.sort();
    excess.dedup();
    let lacking = needed
        .iter()
        .copied()
        .filter(|c| !held.contains(c))
        .collect();
    Comparison {
        needed,
        excess,
        lacking,
    }
}

/// The risk of a capability, unknown ones (a newer kernel's) as high: nobody has said they are
/// harmless.
pub fn danger(cap: Cap) -> Danger {
    cap.info().map_or(Danger::High, |i| i.danger)
}

/// High or critical risk.
pub fn is_high_risk(cap: Cap) -> bool {
    danger(cap) >= Danger::High
}

/// Capabilities riskiest first, by number within a risk.
pub fn by_risk(caps: &[Cap]) -> Vec<Cap> {
    let mut caps = caps.to_vec();
    caps.sort_by_key(|c| (Reverse(danger(*c)), *c));
    caps
}

/// Where a workload's needs come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRef {
    /// The file (or daemon) it was read from.
    pub source: String,
    /// No event was lost while it was traced.
    pub complete: bool,
    /// The needed set is a verified minimal one (`run --verify`); else it was observed.
    pub verified: bool,
    /// `--cap-drop=ALL --cap-add=...`: the flags to deploy it with.
    pub flags: String,
}

/// One workload of the fleet view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The profile identity: Kubernetes namespace/workload/container, compose project/service,
    /// else the container's name; `pid N (comm)` for a process outside containers.
    pub identity: String,
    /// `podman`, `docker`, ... ; None for a process outside containers.
    pub engine: Option<String>,
    /// Container id, when a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Effective user ids of its processes.
    #[serde(default)]
    pub users: Vec<u32>,
    /// Its processes.
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Effective capabilities: the union over its processes.
    pub held: Vec<Cap>,
    /// What it holds is not known (a profile whose workload does not run here now): `held` is
    /// empty and the comparison lists only what it needs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_unknown: bool,
    /// Bounding set: the union over its processes (what it could ever regain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounding: Option<Vec<Cap>>,
    /// Set when a profile for its identity was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

impl Row {
    /// What it holds, as the comparison counts it: the bounding set where known (what the
    /// engine granted: a process that dropped to another user holds nothing effective, yet an
    /// exec'd shell or a restart holds it all again), else the effective set.
    pub fn granted(&self) -> &[Cap] {
        self.bounding.as_deref().unwrap_or(&self.held)
    }

    /// What it holds without a known need for it: the excess, else (no profile) all it holds.
    pub fn unjustified(&self) -> &[Cap] {
        self.comparison
            .as_ref()
            .map_or(self.granted(), |c| c.excess.as_slice())
    }

    /// `holds 14, needs 2, drop 12 (2 high risk)`, or `holds 14 (3 high risk), no profile`.
    pub fn summary(&self) -> String {
        let high = |caps: &[Cap]| caps.iter().filter(|c| is_high_risk(**c)).count();
        let risk = |n: usize| {
            if n == 0 {
                String::new()
            } else {
                format!(" ({n} high risk)")
            }
        };
        match &self.comparison {
            Some(c) if self.held_unknown => {
                format!("needs {}, held unknown (not running)", c.needed.len())
            }
            Some(c) => {
                let mut s = format!(
                    "holds {}, needs {}, drop {}{}",
                    self.granted().len(),
                    c.needed.len(),
                    c.excess.len(),
                    risk(high(&c.excess))
                );
                if !c.lacking.is_empty() {
                    s.push_str(&format!(", lacks {}", c.lacking.len()));
                }
                s
            }
            None => format!(
                "holds {}{}, no profile",
                self.granted().len(),
                risk(high(self.granted()))
            ),
        }
    }

    /// The sort key: the worst risk it holds without need, how many high-risk ones, how many.
    fn risk_key(&self) -> (Option<Danger>, usize, usize) {
        let caps = self.unjustified();
        (
            caps.iter().map(|c| danger(*c)).max(),
            caps.iter().filter(|c| is_high_risk(**c)).count(),
            caps.len(),
        )
    }
}

/// Riskiest excess first; then by identity.
pub fn sort_by_risk(rows: &mut [Row]) {
    rows.sort_by(riskier_first);
}

/// The order of [`sort_by_risk`]: riskiest excess first, then by identity.
pub fn riskier_first(a: &Row, b: &Row) -> std::cmp::Ordering {
    b.risk_key()
        .cmp(&a.risk_key())
        .then_with(|| a.identity.cmp(&b.identity))
}

/// The profile reference and the comparison of `held` with what `profile` needs.
pub fn against(held: &[Cap], profile: &Profile, source: &str) -> (ProfileRef, Comparison) {
    (
        ProfileRef {
            source: source.to_owned(),
            complete: profile.trace.complete,
            verified: profile.verified(),
            flags: profile.suggestion.docker_flags(),
        },
        compare(held, &profile.suggestion.add),
    )
}

/// A workload's row from its profile alone: what it ran with, recorded when it was profiled,
/// against what it needs.
pub fn row_of(profile: &Profile, source: &str) -> Row {
    let held = profile.workload.capabilities.clone().unwrap_or_default();
    let (profile_ref, comparison) = against(&held, profile, source);
    Row {
        identity: profile.workload.key().to_owned(),
        engine: profile.workload.engine.clone(),
        id: profile.workload.id.clone(),
        image: profile.workload.image.clone(),
        users: Vec::new(),
        pids: Vec::new(),
        held,
        held_unknown: false,
        bounding: None,
        profile: Some(profile_ref),
        comparison: Some(comparison),
    }
}

/// A workload's row from its profile where nothing of it runs here: what it needs, and that
/// what it holds is unknown.
pub fn needs_only(profile: &Profile, source: &str) -> Row {
    let mut row = row_of(profile, source);
    row.held = Vec::new();
    row.held_unknown = true;
    if let Some(c) = &mut row.comparison {
        c.excess.clear();
        c.lacking.clear();
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::caps::{defaults, from_mask};

    fn names(caps: &[Cap]) -> Vec<String> {
        caps.iter().map(|c| c.name()).collect()
    }

    fn row(identity: &str, held: &[Cap], needed: Option<&[Cap]>) -> Row {
        crate::model::fixtures::fleet_row(identity, held, needed)
    }

    #[test]
    fn excess_and_lacking() {
        let c = compare(defaults::DOCKER, &[Cap(10), Cap(12), Cap(10)]);
        assert_eq!(names(&c.needed), ["NET_BIND_SERVICE", "NET_ADMIN"]);
        assert_eq!(c.excess.len(), 13);
        assert!(!c.excess.contains(&Cap(10)));
        assert_eq!(names(&c.lacking), ["NET_ADMIN"]);
        let none = compare(&[], &[]);
        assert!(none.excess.is_empty() && none.lacking.is_empty());
    }

    #[test]
    fn summaries() {
        let privileged = from_mask(0x1ff_ffff_ffff);
        let r = row("web", &privileged, Some(&[Cap(6), Cap(7)]));
        // 39 excess; high or critical: NET_ADMIN, SYS_MODULE, SYS_RAWIO, SYS_PTRACE,
        // SYS_ADMIN, SYS_BOOT, SYS_TIME, AUDIT_CONTROL, MAC_OVERRIDE, MAC_ADMIN, BPF.
        assert_eq!(r.summary(), "holds 41, needs 2, drop 39 (11 high risk)");
        let r = row("db", defaults::DOCKER, Some(&[Cap(10), Cap(12)]));
        assert_eq!(r.summary(), "holds 14, needs 2, drop 13, lacks 1");
        let r = row("x", &[Cap(12), Cap(0)], None);
        assert_eq!(r.summary(), "holds 2 (1 high risk), no profile");
        let r = row("idle", &[], Some(&[]));
        assert_eq!(r.summary(), "holds 0, needs 0, drop 0");
        let mut p = crate::model::fixtures::sample();
        p.workload.identity = Some("gone".into());
        let r = needs_only(&p, "gone.json");
        assert!(r.held_unknown && r.held.is_empty());
        let c = r.comparison.as_ref().unwrap();
        assert!(c.excess.is_empty() && c.lacking.is_empty());
        assert_eq!(c.needed, p.suggestion.add);
        assert_eq!(r.summary(), "needs 1, held unknown (not running)");
    }

    #[test]
    fn rows_from_profiles() {
        let mut p = crate::model::fixtures::sample();
        p.workload.identity = Some("shop/web".into());
        p.workload.capabilities = Some(defaults::DOCKER.to_vec());
        let r = row_of(&p, "shop~web.json");
        assert_eq!(r.identity, "shop/web");
        assert_eq!(r.held.len(), 14);
        let c = r.comparison.as_ref().unwrap();
        assert_eq!(c.needed, p.suggestion.add);
        assert_eq!(
            c.excess.len() + c.needed.iter().filter(|n| r.held.contains(n)).count(),
            14
        );
        let profile = r.profile.unwrap();
        assert_eq!(profile.source, "shop~web.json");
        assert_eq!(profile.flags, p.suggestion.docker_flags());
        assert_eq!(profile.complete, p.trace.complete);
    }

    #[test]
    fn a_process_that_dropped_its_capabilities_is_judged_by_its_bounding_set() {
        // httpd started as root and switched to nobody: nothing effective, 11 granted.
        let mut r = row("web", &[], None);
        r.bounding = Some(from_mask(0x8004_05fb));
        r.comparison = Some(compare(r.granted(), &[Cap(6), Cap(7), Cap(10)]));
        assert_eq!(r.summary(), "holds 11, needs 3, drop 8");
        assert_eq!(r.unjustified().len(), 8);
    }

    #[test]
    fn riskiest_excess_first() {
        let net_admin = [defaults::DOCKER, &[Cap(12)]].concat();
        let mut rows = vec![
            row("b-default", defaults::DOCKER, Some(&[])),
            row("d-lean", &[Cap(10)], Some(&[Cap(10)])),
            row("a-default", defaults::DOCKER, Some(&[Cap(0)])),
            row("c-net-admin", &net_admin, Some(&[])),
            row(
                "e-privileged",
                &from_mask(0x1ff_ffff_ffff),
                Some(&[Cap(21)]),
            ),
            row("f-unprofiled", &[Cap(12)], None),
        ];
        sort_by_risk(&mut rows);
        let order: Vec<&str> = rows.iter().map(|r| r.identity.as_str()).collect();
        // Critical excess first, then high (more high-risk ones first), then the medium ones
        // (more first), then nothing to drop.
        assert_eq!(
            order,
            [
                "e-privileged",
                "c-net-admin",
                "f-unprofiled",
                "b-default",
                "a-default",
                "d-lean"
            ]
        );
        assert_eq!(
            names(&by_risk(&[Cap(0), Cap(21), Cap(12), Cap(60)])),
            ["SYS_ADMIN", "NET_ADMIN", "CAP_60", "CHOWN"]
        );
    }
}
