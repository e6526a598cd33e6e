//! `cap-trace merge`: one profile per workload from several runs, replicas or nodes. Counts add
//! up, and each check remembers which profiles it was seen in. Different workloads stay apart
//! unless they are folded into one on purpose ([`fold`]).
//!
//! Verified sources: when every source is verified, the merged set is the union of their
//! verified sets. It is sufficient for each source (each ran with a subset of it), but the
//! union itself was not ablated: the merged verification says so and lists each source's
//! set. When some source is not verified, the merge is not either.

use std::collections::BTreeMap;

use crate::linux::caps::Cap;
use crate::model::profile::{
    Environment, INCOMPLETE_PREFIX, Profile, TraceInfo, Workload, WorkloadKind,
};
use crate::model::record::{Check, Losses, Outcome};
use crate::model::verify::{CapFinding, Finding, SourceVerification, Verification};

/// Merges `(source name, profile)` pairs workload by workload: profiles of the same workload
/// (the same [`Workload::key`]: the daemon's identity, else the name) become one, different
/// workloads stay separate profiles, in the order they first appear.
pub fn merge_by_workload(inputs: Vec<(String, Profile)>) -> Vec<Profile> {
    let mut groups: Vec<(String, Vec<(String, Profile)>)> = Vec::new();
    for (source, profile) in inputs {
        let key = profile.workload.key().to_owned();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push((source, profile)),
            None => groups.push((key, vec![(source, profile)])),
        }
    }
    groups.into_iter().map(|(_, group)| merge(group)).collect()
}

/// Folds every input into one profile named `name`, whatever workloads they are of: the set
/// that covers them all (for a container image run under several names, say).
pub fn fold(inputs: Vec<(String, Profile)>, name: &str) -> Profile {
    let mut folded = merge(inputs);
    folded.workload.kind = Some(WorkloadKind::Merged);
    name.clone_into(&mut folded.workload.name);
    folded.workload.identity = Some(name.to_owned());
    folded
}

/// Merges `(source name, profile)` pairs into one; the suggestion is derived again from the
/// union.
pub fn merge(inputs: Vec<(String, Profile)>) -> Profile {
    assert!(!inputs.is_empty(), "merge needs at least one profile");
    let mut checks: BTreeMap<_, Check> = BTreeMap::new();
    let mut outcomes: BTreeMap<_, Outcome> = BTreeMap::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    let mut kernels: Vec<String> = Vec::new();
    let mut hooks: Vec<String> = Vec::new();
    let mut losses = Losses::default();
    let mut complete = true;
    let mut incomplete: Vec<String> = Vec::new();
    let mut duration_ms = 0;
    let mut total_checks = 0;
    let mut started: Option<String> = None;
    let first = inputs[0].1.clone();

    for (source, p) in &inputs {
        // A merged input contributes its own sources.
        let from: Vec<String> = if p.workload.sources.is_empty() {
            vec![source.clone()]
        } else {
            p.workload.sources.clone()
        };
        // Profiles that share a source (a run saved, then continued) list it once.
        for s in &from {
            push_once(&mut sources, s);
        }
        push_once(&mut names, &p.workload.name);
        push_once(&mut kernels, &p.trace.kernel);
        push_once(&mut hooks, &p.trace.hook);
        if p.workload.userns_level != first.workload.userns_level {
            warnings.push(format!(
                "{source} ran in a user namespace of another depth ({} instead of {}); its child-namespace checks are judged by the first profile's",
                p.workload.userns_level, first.workload.userns_level
            ));
        }
        losses.add(&p.trace.losses);
        complete &= p.trace.complete;
        for reason in &p.trace.incomplete {
            let reason = if inputs.len() > 1 && !reason.starts_with(source.as_str()) {
                format!("{source}: {reason}")
            } else {
                reason.clone()
            };
            push_once(&mut incomplete, &reason);
        }
        // Counts saturate: a hostile or corrupt input must not wrap them round to small ones.
        duration_ms = p.trace.duration_ms.saturating_add(duration_ms);
        total_checks = p.trace.total_checks.saturating_add(total_checks);
        if started.as_ref().is_none_or(|s| p.trace.started < *s) {
            started = Some(p.trace.started.clone());
        }
        for w in &p.warnings {
            if !w.starts_with("the trace is incomplete") && !w.starts_with(INCOMPLETE_PREFIX) {
                push_once(&mut warnings, w);
            }
        }
        for check in &p.checks {
            let mut check = check.clone();
            if check.sources.is_empty() {
                check.sources.clone_from(&from);
            }
            match checks.get_mut(&check.identity()) {
                None => {
                    checks.insert(check.identity(), check);
                }
                Some(existing) => absorb(existing, check),
            }
        }
        for outcome in &p.outcomes {
            outcomes
                .entry(outcome.identity())
                .and_modify(|o| o.count = o.count.saturating_add(outcome.count))
                .or_insert_with(|| outcome.clone());
        }
    }

    let workloads: Vec<&Workload> = inputs.iter().map(|(_, p)| &p.workload).collect();
    let workload = merged_workload(&workloads, &names, sources);
    let trace = TraceInfo {
        backend: first.trace.backend,
        hook: hooks.join(", "),
        kernel: kernels.join(", "),
        started: started.unwrap_or_default(),
        duration_ms,
        complete,
        incomplete,
        losses,
        total_checks,
        host_bounding: common_bounding(&inputs),
    };
    let mut merged = Profile::new(
        workload,
        trace,
        checks.into_values().collect(),
        outcomes.into_values().collect(),
        warnings,
    );
    if let Some(v) = merged_verification(&inputs) {
        merged.set_verification(v);
    }
    merged.environment = merged_environment(inputs.iter().map(|(_, p)| &p.environment));
    merged
}

/// What the merged profiles were learned under: each setting the inputs agree on, and the
/// lowest `ip_unprivileged_port_start` (the most permissive, where a check may have been
/// missing) where they differ.
fn merged_environment<'a>(mut all: impl Iterator<Item = &'a Environment>) -> Environment {
    let Some(first) = all.next() else {
        return Environment::default();
    };
    let mut merged = first.clone();
    for e in all {
        if merged.engine_version != e.engine_version {
            merged.engine_version = None;
        }
        let lowest_port = merged
            .port_start()
            .zip(e.port_start())
            .map(|(a, b)| a.min(b));
        merged.network.retain(|k, v| e.network.get(k) == Some(v));
        merged.host.retain(|k, v| e.host.get(k) == Some(v));
        if let Some(port) = lowest_port {
            merged
                .network
                .insert(Environment::PORT_START.to_owned(), port.to_string());
        }
    }
    merged
}

/// The capabilities every host involved can grant (unknown when one is unknown).
fn common_bounding(inputs: &[(String, Profile)]) -> Option<Vec<Cap>> {
    let mut common: Option<Vec<Cap>> = None;
    for (_, p) in inputs {
        let bounding = p.trace.host_bounding.as_ref()?;
        common = Some(match common {
            None => bounding.clone(),
            Some(c) => c.into_iter().filter(|x| bounding.contains(x)).collect(),
        });
    }
    common
}

/// The sources' verifications, merged (see the module's comment); none when no source was
/// verified or attempted.
fn merged_verification(inputs: &[(String, Profile)]) -> Option<Verification> {
    if inputs.iter().all(|(_, p)| p.verification.is_none()) {
        return None;
    }
    let mut sources: Vec<SourceVerification> = Vec::new();
    for (source, p) in inputs {
        match &p.verification {
            // A merged input contributes its own sources.
            Some(v) if !v.sources.is_empty() => sources.extend(v.sources.iter().cloned()),
            Some(v) => sources.push(SourceVerification {
                source: source.clone(),
                verified: v.verified,
                set: v.set.clone(),
            }),
            None => sources.push(SourceVerification {
                source: source.clone(),
                verified: false,
                set: p.suggestion.add.clone(),
            }),
        }
    }
    let verified = sources.iter().all(|s| s.verified);
    let mut set: Vec<Cap> = sources.iter().flat_map(|s| s.set.clone()).collect();
    set.sort();
    set.dedup();
    // A capability is needed when some source needs it; not needed when none does.
    let mut capabilities: Vec<CapFinding> = Vec::new();
    for (_, p) in inputs {
        for f in p.verification.iter().flat_map(|v| &v.capabilities) {
            match capabilities.iter_mut().find(|c| c.cap == f.cap) {
                Some(c) if c.finding == Finding::NotNeeded && f.finding != Finding::NotNeeded => {
                    *c = f.clone();
                }
                Some(_) => {}
                None => capabilities.push(f.clone()),
            }
        }
    }
    for c in &mut capabilities {
        if c.finding == Finding::NotNeeded && set.contains(&c.cap) {
            // Not verified as not needed everywhere: another source's set holds it.
            c.finding = Finding::Needed;
            c.reason = "needed by another source (in its verified set)".into();
        }
    }
    capabilities.sort_by_key(|c| c.cap);
    Some(Verification {
        verified,
        strict: inputs
            .iter()
            .all(|(_, p)| p.verification.as_ref().is_some_and(|v| v.strict)),
        learned: set.clone(),
        set,
        runs: Vec::new(),
        capabilities,
        duration_ms: inputs
            .iter()
            .filter_map(|(_, p)| p.verification.as_ref())
            .map(|v| v.duration_ms)
            .sum(),
        problem: (!verified).then(|| {
            "some sources were not verified: the merged set is the union of what each was seen or verified to need".to_owned()
        }),
        sources,
    })
}

/// Adds `item` to `list` unless it is there already (first occurrence first).
fn push_once<T: PartialEq + Clone>(list: &mut Vec<T>, item: &T) {
    if !list.contains(item) {
        list.push(item.clone());
    }
}

/// Folds `check` into the same check from another profile: the counts add up, the earliest
/// first occurrence is kept, and every source is listed once.
fn absorb(existing: &mut Check, check: Check) {
    existing.count = existing.count.saturating_add(check.count);
    if check.first_seen.is_some()
        && (existing.first_seen.is_none() || check.first_seen < existing.first_seen)
    {
        existing.first_seen = check.first_seen;
        existing.pid = check.pid;
        existing.uid = check.uid;
    }
    for s in check.sources {
        push_once(&mut existing.sources, &s);
    }
}

/// The merged workload: the first profile's, named after every workload merged, without the
/// facts of one run, and with the compose, Kubernetes and user facts only where every input
/// agrees on them.
fn merged_workload(all: &[&Workload], names: &[String], sources: Vec<String>) -> Workload {
    let first = all[0];
    let same_workload = names.len() == 1;
    let agreed = |f: &dyn Fn(&Workload) -> bool| all.iter().all(|w| f(w));
    Workload {
        compose: first
            .compose
            .clone()
            .filter(|_| agreed(&|w| w.compose == first.compose)),
        kubernetes: first
            .kubernetes
            .clone()
            .filter(|_| agreed(&|w| w.kubernetes == first.kubernetes)),
        user: first
            .user
            .clone()
            .filter(|_| agreed(&|w| w.user == first.user)),
        identity: first
            .identity
            .clone()
            .filter(|_| agreed(&|w| w.identity == first.identity)),
        kind: if same_workload {
            first.kind
        } else {
            Some(WorkloadKind::Merged)
        },
        name: names.join(" + "),
        sources,
        // Facts of one run (its id, exit status, capability set) do not describe the merge.
        id: None,
        exit_status: None,
        exit_signal: None,
        capabilities: None,
        bounding: None,
        health: None,
        stopped: false,
        uids: Vec::new(),
        seccomp: None,
        command: if same_workload {
            first.command.clone()
        } else {
            None
        },
        ..first.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::caps::Cap;
    use crate::model::fixtures::{check, sample};
    use crate::model::record::{Audit, Verdict};

    #[test]
    fn environment_kept_where_agreed_and_the_lowest_port_start() {
        let mut a = sample();
        a.environment.engine_version = Some("20.10.24".into());
        a.environment
            .network
            .insert(Environment::PORT_START.into(), "1024".into());
        a.environment
            .network
            .insert(Environment::PING_RANGE.into(), "0 0".into());
        a.environment
            .host
            .insert("kernel.kptr_restrict".into(), "1".into());
        let mut b = a.clone();
        b.environment.engine_version = Some("4.3.1".into());
        b.environment
            .network
            .insert(Environment::PORT_START.into(), "0".into());
        b.environment
            .network
            .insert(Environment::PING_RANGE.into(), "0 2147483647".into());
        let m = merge(vec![("a".into(), a.clone()), ("b".into(), b)]);
        assert_eq!(m.environment.engine_version, None);
        assert_eq!(m.environment.port_start(), Some(0));
        assert_eq!(m.environment.ping_range(), None);
        assert_eq!(m.environment.host["kernel.kptr_restrict"], "1");
        let same = merge(vec![("a".into(), a.clone()), ("a2".into(), a.clone())]);
        assert_eq!(same.environment, a.environment);
    }

    #[test]
    fn union_of_replicas_with_counts_and_sources() {
        let a = sample();
        let mut b = sample();
        b.checks.push(check(
            27,
            Verdict::Granted,
            Audit::Audited,
            "mknodat",
            "mknod",
        ));
        b.trace.duration_ms = 10;
        let merged = merge(vec![("a.json".into(), a.clone()), ("b.json".into(), b)]);
        assert_eq!(merged.suggestion.add, vec![Cap(0), Cap(27)]);
        assert_eq!(merged.workload.sources, ["a.json", "b.json"]);
        assert_eq!(merged.workload.kind, a.workload.kind);
        let chown = merged.checks.iter().find(|c| c.cap == Cap(0)).unwrap();
        assert_eq!(chown.count, 2);
        assert_eq!(chown.sources, ["a.json", "b.json"]);
        let mknod = merged.checks.iter().find(|c| c.cap == Cap(27)).unwrap();
        assert_eq!(mknod.sources, ["b.json"]);
        assert_eq!(merged.trace.duration_ms, 15);
        assert!(merged.trace.complete);
        assert_eq!(merged.workload.exit_status, None);
    }

    #[test]
    fn merging_merged_profiles_keeps_original_sources() {
        let ab = merge(vec![
            ("a.json".into(), sample()),
            ("b.json".into(), sample()),
        ]);
        let abc = merge(vec![("ab.json".into(), ab), ("c.json".into(), sample())]);
        assert_eq!(abc.workload.sources, ["a.json", "b.json", "c.json"]);
        assert_eq!(
            abc.checks.iter().find(|c| c.cap == Cap(0)).unwrap().count,
            3
        );
    }

    #[test]
    fn a_source_shared_by_two_inputs_is_listed_once() {
        // A daemon run saved (a, b), then continued as b: b's profile is merged in again.
        let ab = merge(vec![
            ("a.json".into(), sample()),
            ("b.json".into(), sample()),
        ]);
        let again = merge(vec![("saved".into(), ab), ("b.json".into(), sample())]);
        assert_eq!(again.workload.sources, ["a.json", "b.json"]);
    }

    fn verified(p: Profile, set: &[u32], not_needed: &[u32]) -> Profile {
        let mut p = p;
        p.set_verification(Verification {
            verified: true,
            learned: set.iter().chain(not_needed).map(|&n| Cap(n)).collect(),
            set: set.iter().map(|&n| Cap(n)).collect(),
            capabilities: not_needed
                .iter()
                .map(|&n| CapFinding {
                    cap: Cap(n),
                    finding: Finding::NotNeeded,
                    run: 2,
                    reason: "not needed".into(),
                })
                .collect(),
            duration_ms: 1000,
            ..Verification::default()
        });
        p
    }

    #[test]
    fn verified_sources_merge_into_the_union_of_their_sets() {
        let mut b = sample();
        b.checks.push(check(
            27,
            Verdict::Granted,
            Audit::Audited,
            "mknodat",
            "mknod",
        ));
        b.checks.push(check(
            19,
            Verdict::Granted,
            Audit::Audited,
            "readlinkat",
            "ps",
        ));
        b.derive();
        let a = verified(sample(), &[0], &[]);
        let b = verified(b, &[27], &[0, 19]);
        let merged = merge(vec![("a.json".into(), a.clone()), ("b.json".into(), b)]);
        let v = merged.verification.as_ref().unwrap();
        assert!(v.verified);
        assert_eq!(v.sources.len(), 2);
        assert_eq!(v.duration_ms, 2000);
        // CHOWN is needed by a although b did without it; SYS_PTRACE by neither.
        assert_eq!(merged.suggestion.add, vec![Cap(0), Cap(27)]);
        assert!(merged.verified());
        // One unverified source: the merge is not verified, and says why.
        let merged = merge(vec![("a.json".into(), a), ("c.json".into(), sample())]);
        let v = merged.verification.as_ref().unwrap();
        assert!(!v.verified);
        assert!(v.problem.as_deref().unwrap().contains("not verified"));
        assert!(!merged.verified());
    }

    #[test]
    fn different_workloads_stay_apart_unless_folded() {
        let mut web = sample();
        web.workload.name = "shop/web".into();
        web.workload.compose = Some(crate::model::profile::ComposeInfo {
            project: Some("shop".into()),
            service: "web".into(),
        });
        let mut worker = web.clone();
        worker.workload.name = "shop/worker".into();
        worker.workload.compose.as_mut().unwrap().service = "worker".into();
        let inputs = vec![
            ("a/web.json".into(), web.clone()),
            ("a/worker.json".into(), worker.clone()),
            ("b/web.json".into(), web.clone()),
        ];
        let merged = merge_by_workload(inputs.clone());
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].workload.name, "shop/web");
        assert_eq!(merged[0].workload.sources, ["a/web.json", "b/web.json"]);
        assert_eq!(merged[0].workload.compose, web.workload.compose);
        assert_eq!(merged[1].workload.name, "shop/worker");
        assert_eq!(merged[1].workload.sources, ["a/worker.json"]);
        let all = fold(inputs, "shop");
        assert_eq!(all.workload.name, "shop");
        assert_eq!(all.workload.kind, Some(WorkloadKind::Merged));
        // Folded services are no one service: the compose facts are not kept.
        assert_eq!(all.workload.compose, None);
    }

    #[test]
    fn different_workloads_and_losses() {
        let a = sample();
        let mut b = sample();
        b.workload.name = "other".into();
        b.trace.complete = false;
        b.trace.losses.ring_buffer = 4;
        let merged = merge(vec![("a".into(), a), ("b".into(), b)]);
        assert_eq!(merged.workload.kind, Some(WorkloadKind::Merged));
        assert_eq!(merged.workload.name, "chown nobody /tmp/x + other");
        assert!(!merged.trace.complete);
        assert_eq!(merged.trace.losses.ring_buffer, 4);
        assert!(merged.warnings[0].contains("incomplete"));
    }

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        let mut a = sample();
        a.checks[0].count = u64::MAX - 1;
        a.trace.total_checks = u64::MAX;
        a.trace.duration_ms = u64::MAX;
        a.trace.losses.ring_buffer = u64::MAX;
        a.trace.complete = false;
        let b = sample();
        let merged = merge(vec![("a".into(), a), ("b".into(), b.clone())]);
        let chown = merged.checks.iter().find(|c| c.cap == Cap(0)).unwrap();
        assert_eq!(chown.count, u64::MAX);
        assert_eq!(merged.trace.total_checks, u64::MAX);
        assert_eq!(merged.trace.duration_ms, u64::MAX);
        assert_eq!(merged.trace.losses.ring_buffer, u64::MAX);
        assert_eq!(merged.trace.losses.total(), u64::MAX);
        assert_eq!(merged.counts_by_cap()[&Cap(0)], u64::MAX);
    }
}
