//! `cap-trace daemon`: follows every container (or a filtered set) for as long as it runs,
//! keeps one profile per container identity, persists them atomically every interval, and
//! answers `status`, `profile` and `export` on a root-only unix socket.
//!
//! A profile file is the union of what earlier daemon runs saved and what this run saw, so a
//! restarted daemon (even after SIGKILL) continues where the last persist left it. Containers
//! that exited are folded into their saved profile and forgotten by the kernel side and the
//! event collector once that profile is written, so memory stays flat under churn. Every
//! profile is held in memory as the JSON it is served as ([`index`]): a request reads no file.
//!
//! - [`state`]: the state dir, its lock and its file names;
//! - [`index`]: the profiles, as served;
//! - [`control`]: the control socket, daemon and client sides.

mod control;
mod index;
mod state;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

pub use control::ask;
pub use state::file_name;

use crate::cli::{DaemonArgs, GlobalArgs};
use crate::commands::daemon::control::{Answer, Ask, Connections};
use crate::commands::daemon::index::Index;
use crate::commands::daemon::state::StateDir;
use crate::commands::global::probe_options;
use crate::error::{Failure, exit};
use crate::model::control::{ContainerStatus, EngineState, MapEntries, Reply, Request, Status};
use crate::model::merge;
use crate::model::profile::{Profile, rfc3339};
use crate::model::record::Losses;
use crate::render::escape;
use crate::session::container::Engines;
use crate::session::follow::{self, FollowOptions, Opened};
use crate::session::privilege;

/// How many exited containers `status` lists (beside every running one).
const EXITED_LISTED: usize = 100;

pub struct DaemonOptions {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub interval: Duration,
    pub follow: FollowOptions,
}

struct Daemon {
    state: StateDir,
    interval: Duration,
    /// Every profile, as last saved or served.
    index: Index,
    /// For each identity followed now: its profile as saved when this run first saw it (what
    /// this run's records are added to). Only live identities are held; the rest is in the
    /// index.
    bases: HashMap<String, Option<Profile>>,
    source: String,
    last_persist: Option<String>,
    persist_error: Option<String>,
    /// Containers seen by this run, and the latest that exited (at most [`EXITED_LISTED`]).
    containers_seen: u64,
    /// Checks this run counted in each identity followed now, as of its last profile.
    run_checks: HashMap<String, u64>,
    /// Checks this run counted in containers followed and since retired.
    retired_checks: u64,
    seen: BTreeSet<String>,
    exited: VecDeque<String>,
    engines: Vec<String>,
    kept: Vec<String>,
}

impl Daemon {
    /// The profiles of the identities followed now (or `only`'s): each one's base with what
    /// this run saw.
    fn current(
        &mut self,
        s: &mut Opened,
        only: Option<&str>,
    ) -> Result<Vec<(String, Profile)>, Failure> {
        let current = s
            .session
            .profiles_by_target((s.started_wall, s.started), false, only)?;
        let mut out = Vec::new();
        for (identity, mut profile) in current {
            profile.workload.identity = Some(identity.clone());
            self.run_checks
                .insert(identity.clone(), profile.trace.total_checks);
            let base = self
                .bases
                .entry(identity.clone())
                .or_insert_with(|| self.index.profile(&identity));
            out.push((identity, combine(base.clone(), profile, &self.source)));
        }
        Ok(out)
    }

    /// Writes every profile followed now, each on its own: one that cannot be written is
    /// reported and retried next time, and holds up no other. Exited containers whose profile
    /// is written are folded in and forgotten.
    fn persist(&mut self, s: &mut Opened) -> Result<(), Failure> {
        // What persisting says goes on a line of its own.
        s.session.clear_status();
        let profiles = self.current(s, None)?;
        let mut written = BTreeSet::new();
        let mut failures = Vec::new();
        for (identity, profile) in &profiles {
            match self.state.write(identity, profile) {
                Ok(()) => {
                    written.insert(identity.clone());
                }
                Err(e) => failures.push(e.to_string()),
            }
            self.index.insert(identity, profile);
        }
        self.note_failures(&failures);
        if !written.is_empty() || failures.is_empty() {
            self.last_persist = Some(rfc3339(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
            ));
        }
        // Exited containers are on disk now: fold them in and forget them.
        for target in s.session.retire_exited(|t| written.contains(t))? {
            // Its profile is on disk now: a later incarnation starts from there.
            self.bases.remove(&target);
            let counted = self.run_checks.remove(&target).unwrap_or(0);
            self.retired_checks = self.retired_checks.saturating_add(counted);
            self.seen.remove(&target);
            self.exited.push_back(target);
            if self.exited.len() > EXITED_LISTED {
                self.exited.pop_front();
            }
        }
        Ok(())
    }

    /// Reports persist failures on stderr (each new one once) and in `status`.
    fn note_failures(&mut self, failures: &[String]) {
        let Some(first) = failures.first() else {
            if self.persist_error.take().is_some() {
                eprintln!("cap-trace: profiles written again");
            }
            return;
        };
        let error = if failures.len() == 1 {
            first.clone()
        } else {
            format!("{first} (and {} more)", failures.len() - 1)
        };
        if self.persist_error.as_deref() != Some(error.as_str()) {
            for failure in failures {
                eprintln!("cap-trace: error: {failure}; still tracing, will retry");
            }
        }
        self.persist_error = Some(error);
    }

    /// Notes the containers the session follows now, for `status`.
    fn note_containers(&mut self, s: &Opened) {
        for (name, _) in s.session.containers() {
            if self.seen.insert(name.to_owned()) {
                self.containers_seen += 1;
                self.exited.retain(|e| e != name);
            }
        }
    }

    fn status(&self, s: &mut Opened) -> Result<Status, Failure> {
        let stats = s.session.tracer.stats()?;
        let running: HashMap<&str, bool> = s.session.containers().collect();
        let mut containers: Vec<ContainerStatus> = running
            .iter()
            .map(|(name, running)| ContainerStatus {
                name: (*name).to_owned(),
                running: *running,
            })
            .collect();
        containers.extend(
            self.exited
                .iter()
                .filter(|name| !running.contains_key(name.as_str()))
                .map(|name| ContainerStatus {
                    name: name.clone(),
                    running: false,
                }),
        );
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        let (rss, peak) = memory();
        let profiles = self.index.len()
            + running
                .keys()
                .filter(|name| !self.index.contains(name))
                .count();
        Ok(Status {
            backend: s.session.tracer.probe.backend.to_string(),
            hook: s.session.tracer.probe.hook_name(),
            engines: self.engines.clone(),
            engine_state: s
                .session
                .engines
                .health()
                .into_iter()
                .map(|h| EngineState {
                    engine: h.engine,
                    answering: h.answering,
                    since: rfc3339(
                        h.since
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default(),
                    ),
                    error: h.error,
                })
                .collect(),
            waiting_for_names: s.session.waiting_for_names() as u64,
            capabilities: self.kept.clone(),
            uptime_s: s.started.elapsed().as_secs(),
            state_dir: self.state.path.display().to_string(),
            interval_s: self.interval.as_secs_f64(),
            profiles,
            containers,
            containers_seen: self.containers_seen,
            // The kernel side also counts new cgroups' checks until they are found not to
            // be followed: only followed containers' are this figure.
            checks: self
                .retired_checks
                .saturating_add(s.session.followed_checks()?),
            events: s.session.tracer.collector.events,
            losses: Losses::from(&stats),
            map_entries: {
                let [checks, outcomes, traced, losses, members] =
                    s.session.tracer.probe.map_entries();
                MapEntries {
                    checks,
                    outcomes,
                    traced,
                    losses,
                    members,
                }
            },
            last_persist: self.last_persist.clone(),
            persist_error: self.persist_error.clone(),
            peak_rss_kib: peak,
            rss_kib: rss,
        })
    }

    /// Answers a request from what the daemon holds: the index, brought up to date for the
    /// containers followed now (only the one asked for, for `profile NAME`).
    fn answer(&mut self, s: &mut Opened, request: Request) -> Answer {
        let result = match request {
            Request::Status {} => self.status(s).map(|status| {
                Answer::Reply(Box::new(Reply {
                    ok: true,
                    error: None,
                    status: Some(status),
                    profiles: Vec::new(),
                    report: None,
                }))
            }),
            Request::Profiles {} => self
                .refresh(s, None)
                .map(|()| Answer::Profiles(self.index.all())),
            Request::Report {} => self
                .refresh(s, None)
                .map(|()| Answer::Reply(Box::new(Reply::report(self.index.report())))),
            Request::Profile { name } => {
                let target = s.session.target_of(&name).map(str::to_owned);
                let refreshed = match &target {
                    Some(target) => self.refresh(s, Some(target)),
                    None => Ok(()),
                };
                refreshed.map(|()| {
                    let found = target
                        .as_deref()
                        .and_then(|t| self.index.find(t))
                        .or_else(|| self.index.find(&name));
                    match found {
                        Some((_, json)) => Answer::Profiles(vec![json]),
                        None => Answer::Reply(Box::new(Reply::error(format!(
                            "no profile for `{name}` (see `cap-trace status` for the containers seen)"
                        )))),
                    }
                })
            }
        };
        result.unwrap_or_else(|e| Answer::Reply(Box::new(Reply::error(e.message))))
    }

    /// Brings the index up to date with what this run saw (of `only`, if given).
    fn refresh(&mut self, s: &mut Opened, only: Option<&str>) -> Result<(), Failure> {
        s.session.tracer.drain();
        s.session.classify_new_cgroups()?;
        for (identity, profile) in self.current(s, only)? {
            self.index.insert(&identity, &profile);
        }
        Ok(())
    }
}

/// What this run saw of an identity, added to its saved profile if it has one.
fn combine(saved: Option<Profile>, current: Profile, source: &str) -> Profile {
    let workload = current.workload.clone();
    let mut inputs: Vec<(String, Profile)> =
        saved.map(|p| ("saved".into(), p)).into_iter().collect();
    inputs.push((source.into(), current));
    let mut merged = merge::merge(inputs);
    // The latest incarnation describes the container (id, image, capability set).
    let sources = std::mem::take(&mut merged.workload.sources);
    merged.workload = workload;
    merged.workload.sources = sources;
    merged
}

/// Resident memory now and at peak, KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub async fn command(args: DaemonArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    daemon(DaemonOptions {
        state_dir: args.state_dir,
        socket: args.socket.socket,
        interval: args.interval,
        follow: FollowOptions {
            all: args.containers.is_empty(),
            targets: args.containers,
            duration: None,
            timeout: None,
            wait: Duration::MAX,
            probe: probe_options(&args.probe),
            engine_socket: args.engine_socket,
            verbose: global.verbose,
            labels: args.labels,
            on_check: None,
            // Sign of life in the foreground on a terminal (never under a service manager).
            status_line: std::io::stderr().is_terminal(),
            health: None,
            end_when_healthy: false,
            need_api: false,
            keep_records: false,
        },
    })
    .await?;
    Ok(exit::OK)
}

/// How the engines are reached, for `status`: API sockets, else CLIs.
fn engine_names(engines: &Engines) -> Vec<String> {
    engines.health().into_iter().map(|h| h.engine).collect()
}

/// Everything that needs privilege is done: programs attached, socket bound. Naming
/// containers through an engine's API socket needs none; its CLI (podman's at least) does,
/// so without a socket the daemon keeps what it has rather than go blind. Returns the
/// capabilities kept, by name.
fn drop_privileges(engines: &mut Engines) -> Result<Vec<String>, Failure> {
    if engines.apis.is_empty() && !engines.clis.is_empty() {
        eprintln!(
            "cap-trace: warning: no container engine API socket answers, and naming containers \
             with the engine's CLI needs root's privileges, so the daemon keeps them; start the \
             engine's socket (podman: `systemctl enable --now podman.socket`) or pass \
             --engine-socket to let it drop them"
        );
        Ok(privilege::current()
            .iter()
            .map(ToString::to_string)
            .collect())
    } else {
        engines.drop_clis();
        Ok(privilege::drop_to_tracing()?)
    }
}

pub async fn daemon(opts: DaemonOptions) -> Result<(), Failure> {
    privilege::require_tracing_capabilities()?;
    let state = StateDir::open(&opts.state_dir)?;
    // Read once at start: unreadable profiles are set aside now, not at the first persist.
    let index = state.read()?;
    let saved = index.len();
    raise_limits();
    let (listener, _bound) = control::bind(&opts.socket)?;
    let mut s = follow::open(&opts.follow)?;
    let engines = engine_names(&s.session.engines);
    let kept = drop_privileges(&mut s.session.engines)?;
    eprintln!(
        "cap-trace: daemon tracing {} with {}; {} saved profile{} in {}; control socket {}; kept {}",
        followed(&opts.follow.targets, &opts.follow.labels),
        s.session.tracer.probe.hook_name(),
        saved,
        if saved == 1 { "" } else { "s" },
        opts.state_dir.display(),
        opts.socket.display(),
        if kept.is_empty() {
            "no capabilities".to_string()
        } else {
            kept.join(",")
        }
    );
    let mut d = Daemon {
        state,
        interval: opts.interval,
        index,
        bases: HashMap::default(),
        source: format!("{}:{}", hostname(), rfc3339(s.started_wall)),
        last_persist: None,
        persist_error: None,
        containers_seen: 0,
        run_checks: HashMap::default(),
        retired_checks: 0,
        seen: BTreeSet::new(),
        exited: VecDeque::new(),
        engines,
        kept,
    };
    d.run(&mut s, &listener).await?;
    s.session.tracer.drain();
    s.session.classify_new_cgroups()?;
    d.persist(&mut s)?;
    s.session.clear_status();
    eprintln!(
        "cap-trace: daemon stopped; profiles in {}",
        opts.state_dir.display()
    );
    Ok(())
}

/// What the daemon follows, for its start line: the containers named, else all containers,
/// narrowed by the `--label` filters.
fn followed(targets: &[String], labels: &[(String, String)]) -> String {
    let mut what = if targets.is_empty() {
        "all containers".to_string()
    } else {
        let names: Vec<_> = targets.iter().map(|t| escape::text(t)).collect();
        format!("containers {}", names.join(", "))
    };
    if !labels.is_empty() {
        let labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| escape::text(&format!("{k}={v}")).into_owned())
            .collect();
        what.push_str(" labelled ");
        what.push_str(&labels.join(" and "));
    }
    what
}

/// The daemon holds a descriptor per connection, per file written and per engine request:
/// it takes what the hard limit allows.
fn raise_limits() {
    control::raise_descriptor_limit();
}

impl Daemon {
    /// Follows containers, answers the control socket and persists every interval, until
    /// SIGINT or SIGTERM. SIGHUP writes every profile at once and goes on.
    async fn run(&mut self, s: &mut Opened, listener: &UnixListener) -> Result<(), Failure> {
        let (ask_tx, mut ask_rx) = mpsc::channel::<Ask>(64);
        let mut sigint = signal(SignalKind::interrupt()).map_err(Failure::runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(Failure::runtime)?;
        let mut sighup = signal(SignalKind::hangup()).map_err(Failure::runtime)?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut persist = tokio::time::interval(self.interval);
        persist.tick().await;
        let mut connections = Connections::new(control::cap());
        // After a failed accept (out of descriptors), when to accept again.
        let mut accept_again: Option<tokio::time::Instant> = None;
        let mut descriptors_warned = false;
        loop {
            tokio::select! {
                result = s.take_in() => result?,
                accepted = listener.accept(), if accept_again.is_none() => match accepted {
                    Ok((stream, _)) => connections.admit(stream, ask_tx.clone()),
                    Err(e) => {
                        // Out of descriptors (or memory): make room, and wait a little rather
                        // than retry at once (the socket stays readable: that would spin).
                        if !descriptors_warned {
                            s.session.clear_status();
                            eprintln!(
                                "cap-trace: warning: cannot accept control connections: {e} ({} open); closing idle ones",
                                connections.len()
                            );
                            descriptors_warned = true;
                        }
                        connections.close_idlest();
                        accept_again =
                            Some(tokio::time::Instant::now() + Duration::from_millis(100));
                    }
                },
                () = async {
                    if let Some(at) = accept_again {
                        tokio::time::sleep_until(at).await;
                    }
                }, if accept_again.is_some() => accept_again = None,
                Some(ask) = ask_rx.recv() => {
                    s.session.tracer.drain();
                    s.session.classify_new_cgroups()?;
                    let answer = self.answer(s, ask.request);
                    let _ = ask.answer.send(answer);
                }
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = sighup.recv() => {
                    s.session.tracer.drain();
                    s.session.classify_new_cgroups()?;
                    self.persist(s)?;
                    s.session.say("SIGHUP: profiles written");
                }
                _ = tick.tick() => {
                    s.session.tick()?;
                    self.note_containers(s);
                    // In the foreground on a terminal (at most once a second): how long the
                    // daemon has run, its containers, checks and losses.
                    s.session.draw_status(s.started.elapsed(), None);
                }
                _ = persist.tick() => self.persist(s)?,
            }
        }
        Ok(())
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".into(), |h| h.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_line_says_what_is_followed() {
        assert_eq!(followed(&[], &[]), "all containers");
        let label = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            followed(&[], &[label("app", "shop"), label("tier", "web")]),
            "all containers labelled app=shop and tier=web"
        );
        assert_eq!(
            followed(&["web".into(), "db\n".into()], &[label("app", "x\u{1b}")]),
            "containers web, db\\n labelled app=x\\e"
        );
    }
}
