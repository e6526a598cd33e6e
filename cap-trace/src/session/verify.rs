//! `--verify`: the learned set proven by running the workload under it, then made minimal by
//! running it without each capability in turn. The policy (what passes, the order of removals)
//! is `model/verify.rs`; this drives the runs, through a [`Runner`]: a command run again by the
//! launcher, or a container re-created by its engine.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use crate::linux::caps::Cap;
use crate::model::profile::Profile;
use crate::model::verify::{
    Ablation, Expect, Observed, Purpose, Run, Verification, judge, last_line,
};
use crate::session::health::HealthCheck;
use crate::session::launch::{Launcher, Output, Ran, Spec, User};
use crate::session::{SessionError, say};

/// Runs the workload holding exactly a capability set.
pub(crate) trait Runner {
    async fn run(&mut self, set: &[Cap]) -> Result<Ran, SessionError>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// A check granted in the learning run that is denied and fails its syscall fails a run.
    pub strict: bool,
}

/// How long one verification run may take when not told: five times the learning run, and at
/// least 10 s.
pub fn run_timeout(learning: &Profile, asked: Option<Duration>) -> Duration {
    asked.unwrap_or_else(|| {
        Duration::from_millis(learning.trace.duration_ms.saturating_mul(5))
            .max(Duration::from_secs(10))
    })
}

/// Why the learning run cannot be verified against, if it cannot.
fn unverifiable(learning: &Profile) -> Option<String> {
    if learning.ending().is_none() {
        return Some(
            "the learning run did not end and had no health check: nothing tells whether a run works (give --health, or let the workload exit)".into(),
        );
    }
    if let Some(h) = learning.workload.health.as_ref().filter(|h| !h.passed) {
        return Some(format!(
            "its health check `{}` did not pass in the learning run: nothing to verify against",
            h.command
        ));
    }
    None
}

/// Verifies the suggestion of `learning` by running the workload: the learned set, then
/// without each capability.
pub(crate) async fn verify<R: Runner>(
    runner: &mut R,
    learning: &Profile,
    opts: VerifyOptions,
) -> Result<Verification, SessionError> {
    let learned = learning.suggestion.add.clone();
    let mut v = Verification {
        strict: opts.strict,
        learned: learned.clone(),
        set: learned.clone(),
        ..Verification::default()
    };
    if let Some(problem) = unverifiable(learning) {
        say(&format!("not verifying: {problem}"));
        v.problem = Some(problem);
        return Ok(v);
    }
    let ending = learning.ending().expect("checked");
    let expect = Expect {
        ending,
        health: learning.workload.health.is_some(),
        strict: opts.strict,
        learning_checks: &learning.checks,
        learning_uids: &learning.workload.uids,
    };
    let started = Instant::now();
    let mut session = Runs {
        runner,
        expect: &expect,
        runs: Vec::new(),
        interrupted: false,
    };
    let Some(start) = session.sufficient(learning, &learned).await? else {
        v.problem = Some(if session.interrupted() {
            interrupted(session.runs.len())
        } else {
            format!(
                "the learned set does not work: {}",
                session.runs[0]
                    .failure()
                    .unwrap_or_else(|| "the run failed".into())
            )
        });
        v.runs = session.runs;
        v.duration_ms = started.elapsed().as_millis() as u64;
        say(&format!(
            "verification failed: {}",
            crate::model::text::shown(v.problem.as_deref().unwrap_or_default())
        ));
        return Ok(v);
    };
    let mut ablation = Ablation::new(&start);
    while let Some((cap, candidate)) = ablation.next_removal() {
        let index = session.runs.len();
        let passed = session.run(Purpose::Without, Some(cap), &candidate).await?;
        if session.interrupted() {
            v.problem = Some(interrupted(session.runs.len()));
            v.runs = session.runs;
            v.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(v);
        }
        ablation.record(cap, candidate, passed, index);
    }
    v.verified = true;
    v.set = ablation.current().to_vec();
    v.capabilities = ablation.findings(&session.runs);
    v.runs = session.runs;
    v.duration_ms = started.elapsed().as_millis() as u64;
    say(&format!(
        "verified in {} run{} ({:.1} s): {}",
        v.runs.len(),
        plural(v.runs.len()),
        v.total_seconds(),
        if v.set.is_empty() {
            "no capability is needed".to_owned()
        } else {
            v.set
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    Ok(v)
}

fn interrupted(runs: usize) -> String {
    format!(
        "interrupted (Ctrl-C or SIGTERM) in run {runs}: the set is not verified; run again to verify it"
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The runs made so far, and how to make one.
struct Runs<'a, R: Runner> {
    runner: &'a mut R,
    expect: &'a Expect<'a>,
    runs: Vec<Run>,
    /// Ctrl-C or SIGTERM ended a run: no more runs.
    interrupted: bool,
}

impl<R: Runner> Runs<'_, R> {
    fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// Runs the workload with `set`, judges the run and keeps it. Returns whether it passed.
    async fn run(
        &mut self,
        purpose: Purpose,
        removed: Option<Cap>,
        set: &[Cap],
    ) -> Result<bool, SessionError> {
        let number = self.runs.len() + 1;
        let title = match removed {
            Some(cap) => format!("without {cap}"),
            None => "with the learned set".to_owned(),
        };
        let ran = self.runner.run(set).await?;
        if ran.interrupted {
            self.interrupted = true;
            say(&format!("verification run {number} interrupted"));
            self.runs.push(Run {
                purpose,
                removed,
                set: set.to_vec(),
                passed: false,
                ending: None,
                health: None,
                duration_ms: ran.duration.as_millis() as u64,
                uids: Vec::new(),
                evidence: Vec::new(),
                output: String::new(),
            });
            return Ok(false);
        }
        let (passed, evidence) = judge(
            self.expect,
            &Observed {
                checks: &ran.checks,
                outcomes: &ran.outcomes,
                ending: ran.ending,
                health: ran.health.as_ref(),
                uids: &ran.uids,
            },
        );
        let run = Run {
            purpose,
            removed,
            set: set.to_vec(),
            passed,
            ending: ran.ending,
            health: ran.health,
            duration_ms: ran.duration.as_millis() as u64,
            uids: ran.uids,
            evidence,
            output: ran.output,
        };
        say(&format!(
            "verification run {number} {title}: {} ({:.1} s){}",
            if passed { "passed" } else { "failed" },
            ran.duration.as_secs_f64(),
            run.failure()
                .map(|f| format!(": {}", crate::model::text::shown(&last_line(&f))))
                .unwrap_or_default()
        ));
        self.runs.push(run);
        Ok(passed)
    }

    /// The set ablation starts from: the learned one when a run passes with it; else every
    /// capability the workload was seen to use (what the rules took away from the learned
    /// set), when that passes. None when neither does, or when interrupted.
    async fn sufficient(
        &mut self,
        learning: &Profile,
        learned: &[Cap],
    ) -> Result<Option<Vec<Cap>>, SessionError> {
        if self.run(Purpose::Sufficiency, None, learned).await? {
            return Ok(Some(learned.to_vec()));
        }
        if self.interrupted() {
            return Ok(None);
        }
        let mut observed: Vec<Cap> = learning
            .suggestion
            .capabilities
            .iter()
            .filter(|v| v.status.suggested() || v.status.observed())
            .map(|v| v.cap)
            .collect();
        observed.sort();
        if observed == learned {
            return Ok(None);
        }
        say("the learned set failed; trying every capability the workload was seen to use");
        if self.run(Purpose::Observed, None, &observed).await? {
            Ok(Some(observed))
        } else {
            Ok(None)
        }
    }
}

/// A command run again by the launcher, as the learning run ran it.
pub struct CommandRunner<'a> {
    pub launcher: &'a mut Launcher,
    pub command: &'a [OsString],
    pub user: Option<User>,
    pub health: Option<&'a HealthCheck>,
    pub timeout: Duration,
}

impl Runner for CommandRunner<'_> {
    async fn run(&mut self, set: &[Cap]) -> Result<Ran, SessionError> {
        self.launcher
            .run(&Spec {
                command: self.command,
                user: self.user,
                caps: Some(set),
                output: Output::Capture,
                health: self.health,
                timeout: if self.health.is_some() {
                    None
                } else {
                    Some(self.timeout)
                },
                interruptible: true,
            })
            .await
    }
}
