//! Profiles and records for the model's and the renderers' unit tests.

use crate::linux::caps::Cap;
use crate::linux::hook::Backend;
use crate::model::profile::{Profile, TraceInfo, Workload, WorkloadKind};
use crate::model::record::{Audit, Check, Losses, Phase, Verdict};

pub(crate) fn check(cap: u32, verdict: Verdict, audit: Audit, syscall: &str, comm: &str) -> Check {
    Check {
        cap: Cap(cap),
        verdict,
        audit,
        insetid: false,
        userns_level: 0,
        syscall: Some(syscall.into()),
        comm: comm.into(),
        phase: Phase::Workload,
        denied_before: vec![],
        site: None,
        count: 1,
        first_seen: None,
        pid: None,
        uid: None,
        sources: vec![],
    }
}

pub(crate) fn trace_info() -> TraceInfo {
    TraceInfo {
        backend: Backend::Tracepoint,
        hook: "tracepoint".into(),
        kernel: "6.18.0".into(),
        started: "2026-11-22T10:00:00.000Z".into(),
        duration_ms: 5,
        complete: true,
        incomplete: Vec::new(),
        losses: Losses::default(),
        total_checks: 1,
        host_bounding: None,
    }
}

pub(crate) fn sample() -> Profile {
    Profile::new(
        Workload {
            kind: Some(WorkloadKind::Command),
            name: "chown nobody /tmp/x".into(),
            command: Some(vec!["chown".into(), "nobody".into(), "/tmp/x".into()]),
            exit_status: Some(0),
            ..Default::default()
        },
        trace_info(),
        vec![
            check(0, Verdict::Granted, Audit::Audited, "fchownat", "chown"),
            check(21, Verdict::Granted, Audit::Noaudit, "mmap", "chown"),
        ],
        vec![],
        vec![],
    )
}

/// A fleet row of a podman container run by root and nobody: with a profile (and its
/// comparison) when `needed` is given.
pub(crate) fn fleet_row(
    identity: &str,
    held: &[Cap],
    needed: Option<&[Cap]>,
) -> crate::model::fleet::Row {
    use crate::model::fleet::{ProfileRef, Row, compare};
    Row {
        identity: identity.into(),
        engine: Some("podman".into()),
        id: None,
        image: None,
        users: vec![0, 65534],
        pids: vec![7],
        held: held.to_vec(),
        held_unknown: false,
        bounding: None,
        profile: needed.map(|_| ProfileRef {
            source: "web.json".into(),
            complete: true,
            verified: false,
            flags: "--cap-drop=ALL --cap-add=NET_BIND_SERVICE".into(),
        }),
        comparison: needed.map(|n| compare(held, n)),
    }
}
