//! `cap-trace daemon`: follows every container (or a filtered set) for as long as it runs,
//! keeps one profile per container identity, persists them atomically every interval, and
//! answers `status`, `profile` and `export` on a root-only unix socket.
//!
//! A profile file is the union of what earlier daemon runs saved and what this run saw, so a
//! restarted daemon (even after SIGKILL) continues where the last persist left it. Containers
//! that exited are folded into their saved profile and forgotten by the kernel side and the
//! event collector, so memory stays flat under churn.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::cli::{DaemonArgs, GlobalArgs};
use crate::commands::global::probe_options;
use crate::error::{Failure, exit};
use crate::model::control::{ContainerStatus, Reply, Request, Status};
use crate::model::merge;
use crate::model::profile::Profile;
use crate::model::record::Losses;
use crate::render::write::{Mode, write_file};
use crate::session::container::Engines;
use crate::session::follow::{self, FollowOptions, Opened};
use crate::session::privilege;

/// Largest request accepted on the socket.
const MAX_REQUEST: usize = 64 * 1024;

pub struct DaemonOptions {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub interval: Duration,
    pub follow: FollowOptions,
}

/// File name of a profile: the identity with `/` as `~` (compose `project/service`, Kubernetes
/// `namespace/workload/container`), anything outside `[A-Za-z0-9._-]` as `_`.
pub fn file_name(identity: &str) -> String {
    let mut name: String = identity
        .chars()
        .map(|c| match c {
            '/' => '~',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
            _ => '_',
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    name.push_str(".json");
    name
}

/// The profiles in the state dir, by identity. A file that does not parse is set aside
/// (renamed `*.invalid`) with a warning rather than stopping the daemon or being overwritten.
fn read_saved(dir: &Path) -> Result<BTreeMap<String, Profile>, Failure> {
    let mut saved = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::environment(format!("cannot read state dir {}: {e}", dir.display()))
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match Profile::read(&path) {
            Ok(p) => {
                let identity = p
                    .workload
                    .identity
                    .clone()
                    .unwrap_or_else(|| p.workload.name.clone());
                saved.insert(identity, p);
            }
            Err(e) => set_aside(&path, &e),
        }
    }
    Ok(saved)
}

/// Renames a profile that does not parse to `*.invalid`, so it is neither lost nor overwritten.
fn set_aside(path: &Path, error: &dyn std::fmt::Display) {
    let aside = path.with_extension("json.invalid");
    let _ = std::fs::rename(path, &aside);
    eprintln!(
        "cap-trace: warning: {error}; set aside as {} and started afresh",
        aside.display()
    );
}

/// The saved profile of one identity, if there is one (and it parses).
fn read_one(dir: &Path, identity: &str) -> Option<Profile> {
    let path = dir.join(file_name(identity));
    if !path.exists() {
        return None;
    }
    match Profile::read(&path) {
        Ok(p) => Some(p),
        Err(e) => {
            set_aside(&path, &e);
            None
        }
    }
}

/// What a control-socket connection asks the main loop.
struct Ask {
    request: Request,
    reply: oneshot::Sender<Reply>,
}

struct Daemon {
    opts_dir: PathBuf,
    interval: Duration,
    /// For each identity followed now: its profile on disk when this run first saw it (what
    /// this run's records are added to). Only live identities are held, so memory does not
    /// grow with the number of containers ever seen; the rest is on disk.
    bases: std::collections::HashMap<String, Option<Profile>>,
    source: String,
    last_persist: Option<String>,
    persist_error: Option<String>,
    containers_seen: std::collections::BTreeSet<String>,
    engines: Vec<String>,
    kept: Vec<String>,
    /// Cgroups of containers retired lately, and when.
    retired: Vec<(std::time::Instant, Vec<u64>)>,
}

impl Daemon {
    /// The profiles of the identities followed now: each one's base with what this run saw.
    fn current(&mut self, s: &mut Opened) -> Result<BTreeMap<String, Profile>, Failure> {
        let current = s
            .session
            .profiles_by_target((s.started_wall, s.started), false)?;
        let mut out = BTreeMap::new();
        for (identity, mut profile) in current {
            profile.workload.identity = Some(identity.clone());
            let base = self
                .bases
                .entry(identity.clone())
                .or_insert_with(|| read_one(&self.opts_dir, &identity));
            let merged = combine(base.clone(), profile, &self.source);
            out.insert(identity, merged);
        }
        Ok(out)
    }

    /// How many profiles there are: on disk, or followed now and not written yet.
    fn profile_count(&self, s: &Opened) -> usize {
        let mut names: std::collections::BTreeSet<String> = std::fs::read_dir(&self.opts_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // The daemon names its files itself, in lower case.
                    .filter(|n| {
                        #[allow(clippy::case_sensitive_file_extension_comparisons)]
                        n.ends_with(".json")
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (name, _) in s.session.containers() {
            names.insert(file_name(name));
        }
        names.len()
    }

    /// Every profile: those on disk, with the current ones in place of theirs.
    fn all(&mut self, s: &mut Opened) -> Result<BTreeMap<String, Profile>, Failure> {
        let current = self.current(s)?;
        let mut all = read_saved(&self.opts_dir)?;
        all.extend(current);
        Ok(all)
    }

    /// Writes every profile that changed; keeps tracing whatever happens.
    fn persist(&mut self, s: &mut Opened) -> Result<(), Failure> {
        let profiles = self.current(s)?;
        let mut failed = None;
        for (identity, profile) in &profiles {
            let path = self.opts_dir.join(file_name(identity));
            if let Err(e) = write_file(&path, profile.to_json().as_bytes(), Mode::Private) {
                failed = Some(e.to_string());
            }
        }
        match failed {
            Some(e) => {
                if self.persist_error.as_deref() != Some(e.as_str()) {
                    eprintln!("cap-trace: error: {e}; still tracing, will retry");
                }
                self.persist_error = Some(e);
            }
            None => {
                if self.persist_error.take().is_some() {
                    eprintln!("cap-trace: profiles written again");
                }
                self.last_persist = Some(crate::model::profile::rfc3339(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default(),
                ));
                // Exited containers are on disk now: fold them in and forget them.
                self.retire_exited(s)?;
            }
        }
        Ok(())
    }

    fn retire_exited(&mut self, s: &mut Opened) -> Result<(), Failure> {
        for (target, ids) in s.session.retire_exited()? {
            self.containers_seen.insert(target.clone());
            // Its profile is on disk now: a later incarnation starts from there.
            self.bases.remove(&target);
            self.retired.push((std::time::Instant::now(), ids));
        }
        // A CPU's cache of its last check can still hold a retired container's repeats (they
        // were counted in the profile just written) and add them back to the kernel's table
        // when it next flushes: forget retired cgroups again for a while so the table stays
        // bounded under churn.
        self.retired
            .retain(|(at, _)| at.elapsed() < Duration::from_secs(600));
        let again: Vec<u64> = self
            .retired
            .iter()
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        if !again.is_empty() {
            s.session
                .tracer
                .probe
                .forget(&again)
                .map_err(Failure::runtime)?;
        }
        Ok(())
    }

    fn status(&self, s: &mut Opened) -> Result<Status, Failure> {
        let stats = s.session.tracer.stats()?;
        let live: Vec<ContainerStatus> = self
            .containers_seen
            .iter()
            .map(|name| ContainerStatus {
                name: name.clone(),
                running: s
                    .session
                    .containers()
                    .any(|(target, running)| target == name && running),
            })
            .collect();
        let (rss, peak) = memory();
        let profiles = self.profile_count(s);
        Ok(Status {
            backend: s.session.tracer.probe.backend.to_string(),
            hook: s.session.tracer.probe.hook_name(),
            engines: self.engines.clone(),
            capabilities: self.kept.clone(),
            uptime_s: s.started.elapsed().as_secs(),
            state_dir: self.opts_dir.display().to_string(),
            interval_s: self.interval.as_secs_f64(),
            profiles,
            containers: live,
            containers_seen: self.containers_seen.len() as u64,
            checks: stats.checks,
            events: s.session.tracer.collector.events,
            losses: Losses::from(&stats),
            last_persist: self.last_persist.clone(),
            persist_error: self.persist_error.clone(),
            peak_rss_kib: peak,
            rss_kib: rss,
        })
    }

    fn answer(&mut self, s: &mut Opened, request: Request) -> Reply {
        let result = match request {
            Request::Status {} => self.status(s).map(|status| Reply {
                ok: true,
                error: None,
                status: Some(status),
                profiles: Vec::new(),
            }),
            Request::Profiles {} => self
                .all(s)
                .map(|p| Reply::profiles(p.into_values().collect())),
            Request::Profile { name } => self.all(s).map(|mut all| {
                let found = all.remove(&name).or_else(|| {
                    all.into_values().find(|p| {
                        p.workload.name == name || p.workload.id.as_deref() == Some(&name)
                    })
                });
                match found {
                    Some(p) => Reply::profiles(vec![p]),
                    None => Reply::error(format!(
                        "no profile for `{name}` (see `cap-trace status` for the containers seen)"
                    )),
                }
            }),
        };
        result.unwrap_or_else(|e| Reply::error(e.message))
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

/// Creates the state dir owner-only (`0700`), or makes an existing one so: the profiles in it
/// say what every container does and may hold names from the workloads. A directory cap-trace
/// may not write into safely (another user's) is refused at start, not at the first persist.
fn state_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::DirBuilderExt as _;
    let fail = |e: &dyn std::fmt::Display| {
        Failure::environment(format!("cannot use state dir {}: {e}", dir.display()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(&e))?;
    crate::render::write::check_writable(&dir.join("profile.json")).map_err(|e| fail(&e))?;
    let meta = std::fs::metadata(dir).map_err(|e| fail(&e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(&e))?;
    }
    Ok(())
}

/// Binds the control socket: root-only, replacing a stale socket but never a live daemon's.
fn bind(path: &Path) -> Result<UnixListener, Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::environment(format!("cannot create {}: {e}", dir.display())))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Failure::environment(format!(
                "another cap-trace daemon answers on {}: stop it, or pass another --socket",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Failure::environment(format!("cannot listen on {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Failure::environment(format!("cannot protect {}: {e}", path.display())))?;
    Ok(listener)
}

/// Serves one connection: requests line by line, each answered by the main loop. Only root
/// may ask (the socket is 0600 too, but a descriptor can be passed on).
async fn serve(stream: UnixStream, asks: mpsc::Sender<Ask>) {
    let uid = stream.peer_cred().map_or(u32::MAX, |c| c.uid());
    let (read, mut write) = stream.into_split();
    if uid != 0 {
        let reply = Reply::error("permission denied: the cap-trace control socket is root-only");
        let _ = write.write_all(reply_line(&reply).as_bytes()).await;
        return;
    }
    let mut lines = BufReader::new(read.take(MAX_REQUEST as u64 * 16));
    loop {
        let mut line = String::new();
        let n = match tokio::time::timeout(Duration::from_secs(60), lines.read_line(&mut line))
            .await
        {
            Ok(Ok(n)) => n,
            // Idle for a minute: close.
            Err(_) => return,
            // Unreadable or not UTF-8: say so, then close.
            Ok(Err(_)) => {
                let reply = Reply::error("malformed request: expected one JSON object per line");
                let _ = write.write_all(reply_line(&reply).as_bytes()).await;
                return;
            }
        };
        if n == 0 {
            return;
        }
        let reply = if line.len() > MAX_REQUEST {
            Reply::error(format!("request too large (limit {MAX_REQUEST} bytes)"))
        } else {
            match serde_json::from_str::<Request>(line.trim()) {
                Err(e) => Reply::error(format!(
                    "malformed request: {e} (expected {{\"request\": \"status\"|\"profile\"|\"profiles\"}})"
                )),
                Ok(request) => {
                    let (tx, rx) = oneshot::channel();
                    if asks.send(Ask { request, reply: tx }).await.is_err() {
                        return;
                    }
                    match rx.await {
                        Ok(reply) => reply,
                        Err(_) => return,
                    }
                }
            }
        };
        if write
            .write_all(reply_line(&reply).as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn reply_line(reply: &Reply) -> String {
    let mut s = serde_json::to_string(reply).expect("reply serializes");
    s.push('\n');
    s
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
            wait: Duration::MAX,
            probe: probe_options(&args.probe),
            engine_socket: args.engine_socket,
            verbose: global.verbose,
            labels: args.labels,
        },
    })
    .await?;
    Ok(exit::OK)
}

/// How the engines are reached, for `status`: API sockets, else CLIs.
fn engine_names(engines: &Engines) -> Vec<String> {
    engines
        .apis
        .iter()
        .map(|(api, engine)| format!("{engine} at {}", api.socket.display()))
        .chain(engines.clis.iter().map(|c| format!("{} CLI", c.program)))
        .collect()
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
        engines.clis.clear();
        Ok(privilege::drop_to_tracing()?)
    }
}

pub async fn daemon(opts: DaemonOptions) -> Result<(), Failure> {
    privilege::require_tracing_capabilities()?;
    state_dir(&opts.state_dir)?;
    // Read once at start: unreadable profiles are set aside now, not at the first persist.
    let saved = read_saved(&opts.state_dir)?.len();
    let listener = bind(&opts.socket)?;
    let mut s = follow::open(&opts.follow)?;
    let engines = engine_names(&s.session.engines);
    let kept = drop_privileges(&mut s.session.engines)?;
    eprintln!(
        "cap-trace: daemon tracing {} with {}; {} saved profile{} in {}; control socket {}; kept {}",
        if opts.follow.targets.is_empty() {
            "all containers".to_string()
        } else {
            opts.follow.targets.join(", ")
        },
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
        opts_dir: opts.state_dir.clone(),
        interval: opts.interval,
        bases: std::collections::HashMap::default(),
        source: format!(
            "{}:{}",
            hostname(),
            crate::model::profile::rfc3339(s.started_wall)
        ),
        last_persist: None,
        persist_error: None,
        containers_seen: std::collections::BTreeSet::default(),
        engines,
        kept,
        retired: Vec::new(),
    };
    d.run(&mut s, &listener).await?;
    s.session.tracer.drain();
    s.session.classify_new_cgroups()?;
    d.persist(&mut s)?;
    eprintln!(
        "cap-trace: daemon stopped; profiles in {}",
        opts.state_dir.display()
    );
    let _ = std::fs::remove_file(&opts.socket);
    Ok(())
}

impl Daemon {
    /// Follows containers, answers the control socket and persists every interval, until
    /// SIGINT or SIGTERM.
    async fn run(&mut self, s: &mut Opened, listener: &UnixListener) -> Result<(), Failure> {
        let (ask_tx, mut ask_rx) = mpsc::channel::<Ask>(64);
        let mut sigint = signal(SignalKind::interrupt()).map_err(Failure::runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(Failure::runtime)?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut persist = tokio::time::interval(self.interval);
        persist.tick().await;
        loop {
            tokio::select! {
                result = s.take_in() => result?,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(serve(stream, ask_tx.clone()));
                    }
                }
                Some(ask) = ask_rx.recv() => {
                    s.session.tracer.drain();
                    s.session.classify_new_cgroups()?;
                    let reply = self.answer(s, ask.request);
                    let _ = ask.reply.send(reply);
                }
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = tick.tick() => {
                    s.session.tick()?;
                    for (name, _) in s.session.containers() {
                        if !self.containers_seen.contains(name) {
                            self.containers_seen.insert(name.to_owned());
                        }
                    }
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

/// A client of the control socket: sends one request, returns the reply.
pub async fn ask(socket: &Path, request: &Request) -> Result<Reply, Failure> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::PermissionDenied => "the control socket is root-only: run as root",
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                "is `cap-trace daemon` running? (pass --socket if it listens elsewhere)"
            }
            _ => "check --socket",
        };
        Failure::environment(format!("cannot reach {}: {e}; {fix}", socket.display()))
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).expect("request serializes");
    line.push('\n');
    // The daemon may answer (a refusal) and close before reading the request: its reply is
    // still there to read, so a failed write is only reported if no reply comes.
    let sent = write.write_all(line.as_bytes()).await;
    let mut reply = String::new();
    let received = BufReader::new(read).read_line(&mut reply).await;
    match (sent, received) {
        (_, Ok(n)) if n > 0 => {}
        (Err(e), _) | (_, Err(e)) => return Err(Failure::runtime(format!("control socket: {e}"))),
        (Ok(()), Ok(_)) => {
            return Err(Failure::runtime(
                "control socket: the daemon closed the connection without a reply",
            ));
        }
    }
    let reply: Reply = serde_json::from_str(&reply)
        .map_err(|e| Failure::runtime(format!("control socket: unreadable reply: {e}")))?;
    if !reply.ok {
        return Err(Failure::runtime(
            reply.error.unwrap_or_else(|| "request failed".into()),
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_identities_apart() {
        let cases = [
            ("web", "web.json"),
            ("shop/web", "shop~web.json"),
            ("prod/api/server", "prod~api~server.json"),
            ("a b", "a_b.json"),
            ("../etc", "_..~etc.json"),
            ("", "_.json"),
        ];
        for (identity, expected) in cases {
            assert_eq!(file_name(identity), expected, "{identity}");
        }
    }

    #[test]
    fn requests_parse_strictly() {
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"request":"status"}"#).unwrap(),
            Request::Status {}
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"request":"profile","name":"web"}"#).unwrap(),
            Request::Profile { name: "web".into() }
        );
        for bad in [
            "",
            "{",
            r#"{"request":"reboot"}"#,
            r#"{"request":"profile"}"#,
            r#"{"request":"status","x":1}"#,
            "[1,2]",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }
}
