//! `--container NAME --verify`: the runs of verification made by re-creating the container
//! from the engine's record under exactly a candidate set (`session/container/recreate.rs`),
//! each copy followed and traced as the original was, judged by its exit status or its health
//! check, then stopped and removed. The loop itself is `session/verify.rs`'s.

use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::linux::caps::Cap;
use crate::model::profile::Profile;
use crate::model::record::Losses;
use crate::model::verify::{Ending, Verification};
use crate::session::container::engine::Api;
use crate::session::container::recreate::{self, Blueprint, Created, PrivateService};
use crate::session::follow::{self, FollowOptions, Opened};
use crate::session::health::HealthCheck;
use crate::session::launch::Ran;
use crate::session::verify::{self, Runner, VerifyOptions};
use crate::session::{SessionError, say};

/// How the copies of a learned container are judged.
pub struct Settings {
    /// A server's health check (then a run ends with its answer); else a copy runs to its end.
    pub health: Option<HealthCheck>,
    pub strict: bool,
    /// The longest one batch run may take (`--verify-timeout`).
    pub run_timeout: Option<Duration>,
}

/// Verifies the set learned of container `name` (followed by `opened`, which learning used) on
/// copies the engine re-creates from its record, one per run, each removed after its run.
pub(crate) async fn verify_learned(
    opened: &mut Opened,
    learning: &FollowOptions,
    name: &str,
    profile: &Profile,
    settings: Settings,
) -> Result<Verification, SessionError> {
    let info =
        opened.session.info_of(name).cloned().ok_or_else(|| {
            SessionError::runtime(format!("the engine has no record of `{name}`"))
        })?;
    let cannot = |why: String| SessionError::runtime(format!("cannot verify `{name}`: {why}"));
    let record = info.record.as_ref().ok_or_else(|| {
        cannot(format!(
            "{} gives no record to re-create it from (podman and Docker do)",
            info.engine
        ))
    })?;
    let blueprint = recreate::blueprint(record, info.oci_runtime.as_deref()).map_err(cannot)?;
    let still_running = opened.session.is_running(name);
    let publish = ports_policy(&blueprint, still_running, settings.health.as_ref())
        .map_err(|e| SessionError::usage(format!("cannot verify `{name}`: {e}")))?;
    if let Some(restart) = &blueprint.restart {
        say(&format!(
            "the restart policy `{restart}` of {name} is not copied: its copies run with none"
        ));
    }
    // podman without an API socket: its API served privately while verification runs.
    let mut private = None;
    let api = match opened.session.api_for(&info.engine) {
        Some(api) => api,
        None if info.engine == "podman" => {
            let service = PrivateService::start(info.oci_runtime.as_deref()).map_err(cannot)?;
            let api = service.api.clone();
            private = Some(service);
            api
        }
        None => {
            return Err(cannot(format!(
                "no API of {} answers (start its socket, or give --engine-socket)",
                info.engine
            )));
        }
    };
    opened.session.drop_target(name)?;
    let run_opts = FollowOptions {
        targets: Vec::new(),
        all: false,
        duration: None,
        // A server's run ends with its health check's answer (bounded by --health-timeout).
        timeout: if settings.health.is_some() {
            None
        } else {
            Some(verify::run_timeout(profile, settings.run_timeout))
        },
        wait: learning.wait,
        probe: learning.probe.clone(),
        engine_socket: learning.engine_socket.clone(),
        verbose: learning.verbose,
        labels: Vec::new(),
        on_check: None,
        status_line: false,
        end_when_healthy: settings.health.is_some(),
        health: settings.health,
        need_api: false,
        keep_records: false,
    };
    let mut runner = ContainerRunner::new(opened, run_opts, blueprint, api, publish)?;
    let v = verify::verify(
        &mut runner,
        profile,
        VerifyOptions {
            strict: settings.strict,
        },
    )
    .await;
    // Every copy removed before the private API service goes.
    drop(runner);
    drop(private);
    v
}

/// Whether copies publish the original's host ports: yes once it has stopped (they are free);
/// while it runs they cannot, so they publish none, which is safe only when the health check
/// reaches the copy itself (inside it, or through `$CAP_TRACE_PID`): a check of the host's
/// port would be answered by the original and pass every run.
fn ports_policy(
    blueprint: &Blueprint,
    still_running: bool,
    health: Option<&HealthCheck>,
) -> Result<bool, String> {
    if blueprint.ports.is_empty() {
        return Ok(false);
    }
    if !still_running {
        return Ok(true);
    }
    let reaches_the_copy = health.is_none_or(|h| h.inside || h.command.contains("CAP_TRACE_PID"));
    if reaches_the_copy {
        say(&format!(
            "its copies publish no host ports: {} holds {} while it runs",
            blueprint.name,
            blueprint.ports.join(", ")
        ));
        return Ok(false);
    }
    Err(format!(
        "it still holds the host port{} it publishes ({}), so its copies cannot publish them, and a --health on the host could be answered by it instead of the copy: run the check inside each copy (--health-exec CMD), reach the copy through its network namespace (`nsenter -t $CAP_TRACE_PID -n CMD`), or stop the container before learning ends",
        if blueprint.ports.len() == 1 { "" } else { "s" },
        blueprint.ports.join(", ")
    ))
}

/// Copies of a learned container, run one at a time in the session that learned it.
pub(crate) struct ContainerRunner<'a> {
    pub(crate) opened: &'a mut Opened,
    /// How each copy is followed: its health check (then it ends when answered), else
    /// `duration` bounds a batch run.
    pub(crate) opts: FollowOptions,
    pub(crate) blueprint: Blueprint,
    /// Every copy not removed yet (removed when this is dropped: errors, Ctrl-C).
    pub(crate) created: Created,
    /// Publish the original's host ports (the original no longer holds them).
    pub(crate) publish: bool,
    number: usize,
    /// Ctrl-C or SIGTERM between two runs' follows (they have their own).
    sigint: Signal,
    sigterm: Signal,
}

impl<'a> ContainerRunner<'a> {
    pub(crate) fn new(
        opened: &'a mut Opened,
        opts: FollowOptions,
        blueprint: Blueprint,
        api: Api,
        publish: bool,
    ) -> Result<Self, SessionError> {
        Ok(ContainerRunner {
            opened,
            opts,
            blueprint,
            created: Created {
                api,
                ids: Vec::new(),
            },
            publish,
            number: 0,
            sigint: signal(SignalKind::interrupt()).map_err(SessionError::runtime)?,
            sigterm: signal(SignalKind::terminate()).map_err(SessionError::runtime)?,
        })
    }

    fn signalled(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut any = false;
        for s in [&mut self.sigint, &mut self.sigterm] {
            while let Poll::Ready(Some(())) = s.poll_recv(&mut cx) {
                any = true;
            }
        }
        any
    }

    /// A name no container has: `NAME-verify-N`.
    fn fresh_name(&mut self) -> Result<String, SessionError> {
        loop {
            self.number += 1;
            let name = format!("{}-verify-{}", self.blueprint.name, self.number);
            match self.created.api.record(&name) {
                Ok(None) => return Ok(name),
                Ok(Some(_)) => {}
                Err(e) => return Err(SessionError::runtime(format!("{e}"))),
            }
        }
    }

    fn interrupted(started: Instant) -> Ran {
        Ran {
            checks: Vec::new(),
            outcomes: Vec::new(),
            status: None,
            ending: None,
            health: None,
            uids: Vec::new(),
            output: String::new(),
            duration: started.elapsed(),
            interrupted: true,
            losses: Losses::default(),
            warnings: Vec::new(),
        }
    }

    /// Stops and removes a copy, and forgets it.
    fn discard(&mut self, name: &str, id: &str) -> Result<(), SessionError> {
        let _ = recreate::stop(&self.created.api, id, Duration::from_secs(5));
        recreate::remove(&self.created.api, id).map_err(|e| {
            SessionError::runtime(format!("cannot remove verification container {name}: {e}"))
        })?;
        self.created.removed(id);
        self.opened.session.drop_target(name)
    }
}

impl Runner for ContainerRunner<'_> {
    async fn run(&mut self, set: &[Cap]) -> Result<Ran, SessionError> {
        let started = Instant::now();
        if self.signalled() {
            return Ok(Self::interrupted(started));
        }
        let name = self.fresh_name()?;
        let body = self.blueprint.body(set, self.publish);
        self.opened.session.follow_target(&name)?;
        let id = recreate::create(&self.created.api, &name, &body).map_err(|e| {
            SessionError::runtime(format!("cannot create verification container {name}: {e}"))
        })?;
        self.created.ids.push(id.clone());
        if self.signalled() {
            self.discard(&name, &id)?;
            return Ok(Self::interrupted(started));
        }
        // The follow's clock (its --wait and times) starts with this copy.
        self.opened.started = Instant::now();
        self.opened.started_wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let output = match recreate::start(&self.created.api, &id) {
            Ok(()) => None,
            Err(e) => Some(format!("the engine could not start it: {e}")),
        };
        let (profiles, interrupted) = if output.is_none() {
            follow::learn(self.opened, &self.opts).await?
        } else {
            (Vec::new(), false)
        };
        let (checks, outcomes) = self.opened.session.records_of(&name)?;
        // What the copy printed, before it is gone: a failed run's own words are evidence.
        // (Unreadable logs leave it empty: the run is judged without them.)
        let output = output.unwrap_or_else(|| {
            recreate::logs(&self.created.api, &id)
                .map(|printed| crate::session::health::tail(&printed))
                .unwrap_or_default()
        });
        let profile = profiles
            .iter()
            .find(|(target, _)| *target == name)
            .map(|(_, p)| p.clone());
        self.discard(&name, &id)?;
        if interrupted || self.signalled() {
            return Ok(Self::interrupted(started));
        }
        let (ending, health, uids) = match profile {
            Some(p) => {
                let ending = p.ending().or(Some(Ending::TimedOut));
                (ending, p.workload.health, p.workload.uids)
            }
            None => (None, None, Vec::new()),
        };
        Ok(Ran {
            checks,
            outcomes,
            status: None,
            ending,
            health,
            uids,
            output,
            duration: started.elapsed(),
            interrupted: false,
            losses: Losses::default(),
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blueprint(ports: &[&str]) -> Blueprint {
        Blueprint {
            name: "web".into(),
            body: serde_json::json!({}),
            ports: ports.iter().map(ToString::to_string).collect(),
            port_bindings: serde_json::Value::Null,
            restart: None,
        }
    }

    fn check(command: &str, inside: bool) -> HealthCheck {
        HealthCheck {
            command: command.into(),
            inside,
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn copies_never_publish_ports_the_original_holds() {
        let none = blueprint(&[]);
        assert_eq!(ports_policy(&none, true, None), Ok(false));
        let web = blueprint(&["80/tcp -> 8080"]);
        // Stopped: its ports are free for the copies.
        assert_eq!(ports_policy(&web, false, None), Ok(true));
        let host = check("curl -sf http://127.0.0.1:8080/", false);
        assert_eq!(ports_policy(&web, false, Some(&host)), Ok(true));
        // Running: a host check of its port would be answered by the original.
        let refused = ports_policy(&web, true, Some(&host)).unwrap_err();
        assert!(refused.contains("80/tcp -> 8080"), "{refused}");
        assert!(refused.contains("--health-exec"), "{refused}");
        // A check that reaches the copy itself is sound without ports.
        let inside = check("curl -sf http://127.0.0.1/", true);
        assert_eq!(ports_policy(&web, true, Some(&inside)), Ok(false));
        let netns = check(
            "nsenter -t $CAP_TRACE_PID -n curl -sf http://127.0.0.1/",
            false,
        );
        assert_eq!(ports_policy(&web, true, Some(&netns)), Ok(false));
        assert_eq!(ports_policy(&web, true, None), Ok(false));
    }
}
