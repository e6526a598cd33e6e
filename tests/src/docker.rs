//! A private Docker engine (Debian's `docker.io`, dockerd 20.10) and a private containerd for
//! the tests.
//!
//! Everything an engine keeps lives under one directory of its own: containerd's root, state
//! and sockets; dockerd's data root, exec root, pid file, socket, `daemon.json` and trust key.
//! Nothing of the host's is used or touched: not `/var/lib/docker`, `/etc/docker`,
//! `/var/run/docker.sock` nor a system containerd (dockerd is handed the private containerd's
//! socket). dockerd runs with `--bridge=none --iptables=false --ip-masq=false` and the cgroupfs
//! driver: containers get no network but loopback, and land in `/docker/<id>`.
//!
//! One engine of each per test process ([`shared`], [`shared_containerd`]), started on first
//! use and stopped when the process exits. The daemons are tied to the test process (they get
//! SIGTERM if it dies), and what a killed test process left behind is removed by the next one.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Where a test process keeps its engines: `/tmp/cap-trace-engines-<pid>`.
const DIR_PREFIX: &str = "cap-trace-engines-";

/// The containerd namespace dockerd keeps its containers in (dockerd removes them itself).
const DOCKER_NAMESPACE: &str = "moby";

/// A daemon the harness started: stopped with SIGTERM, then SIGKILL after a grace period.
struct Daemon {
    name: &'static str,
    child: Mutex<Option<Child>>,
    log: PathBuf,
}

impl Daemon {
    fn start(
        name: &'static str,
        log: PathBuf,
        build: impl FnOnce() -> Command + Send + 'static,
    ) -> Result<Daemon, String> {
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = spawn_tied(move || {
            let mut cmd = build();
            cmd.stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file);
            Ok(cmd)
        })
        .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Daemon {
            name,
            child: Mutex::new(Some(child)),
            log,
        })
    }

    /// Whether it still runs; if not, the end of its log says why.
    fn check_alive(&self) -> Result<(), String> {
        let mut guard = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(child) = guard.as_mut() else {
            return Err(format!("{} was stopped", self.name));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}): {}",
                self.name,
                tail(&self.log, 20)
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    fn stop(&self, grace: Duration) {
        let Some(mut child) = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return;
        };
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Spawns a command whose process gets SIGTERM when the test process dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that spawned the child exits, and test threads
/// come and go: every daemon is therefore spawned by one thread that lives as long as the
/// process.
fn spawn_tied(
    build: impl FnOnce() -> std::io::Result<Command> + Send + 'static,
) -> std::io::Result<Child> {
    type Job = Box<dyn FnOnce() -> std::io::Result<Child> + Send>;
    type Request = (Job, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("engine-spawner".into())
            .spawn(move || {
                for (job, reply) in rx {
                    let _ = reply.send(job());
                }
            })
            .expect("spawn the engine spawner thread");
        Mutex::new(tx)
    });
    let job: Job = Box::new(move || {
        let mut cmd = build()?;
        // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn()
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((job, reply_tx))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// Waits until `ready` holds, or the daemon dies, or `timeout` passes.
fn wait_ready(daemon: &Daemon, timeout: Duration, ready: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        daemon.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not answer within {timeout:?}: {}",
                daemon.name,
                tail(&daemon.log, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A private containerd (Debian's `containerd` 1.6): its own root, state and sockets, no CRI.
pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    daemon: Daemon,
}

impl Containerd {
    /// Starts containerd in `dir` (created) and waits until `ctr version` answers.
    pub fn start(dir: &Path) -> Result<Containerd, String> {
        std::fs::create_dir_all(dir.join("root")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("state")).map_err(|e| e.to_string())?;
        let socket = dir.join("containerd.sock");
        // A unix socket path holds at most 107 bytes (and ".ttrpc" is appended to one).
        assert!(
            socket.as_os_str().len() < 100,
            "{} is too long for a socket",
            socket.display()
        );
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 root = \"{d}/root\"\n\
                 state = \"{d}/state\"\n\
                 [grpc]\n  address = \"{d}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
                 [debug]\n  address = \"\"\n\
                 [metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
                d = dir.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let daemon = Daemon::start("containerd", dir.join("containerd.log"), move || {
            let mut cmd = Command::new("containerd");
            cmd.arg("--config").arg(config);
            cmd
        })?;
        let containerd = Containerd {
            dir: dir.to_owned(),
            socket,
            daemon,
        };
        wait_ready(&containerd.daemon, Duration::from_secs(30), || {
            containerd
                .ctr("default")
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
        Ok(containerd)
    }

    /// The socket `ctr --address` and `dockerd --containerd` take.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `ctr --address SOCKET --namespace NAMESPACE`.
    pub fn ctr(&self, namespace: &str) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", namespace]);
        cmd
    }

    /// Removes every container (and its task) of every namespace but Docker's, then stops
    /// containerd. Shims of tasks left running would outlive it.
    pub fn stop(&self) {
        if self.daemon.check_alive().is_ok() {
            let namespaces = self
                .ctr("default")
                .args(["namespaces", "ls", "-q"])
                .output();
            let namespaces = namespaces
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for ns in namespaces
                .lines()
                .map(str::trim)
                .filter(|n| *n != DOCKER_NAMESPACE)
            {
                let ids = self.ctr(ns).args(["containers", "ls", "-q"]).output();
                let ids = ids
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                for id in ids.lines().map(str::trim).filter(|i| !i.is_empty()) {
                    ctr_remove(self, ns, id);
                }
            }
        }
        self.daemon.stop(Duration::from_secs(10));
    }

    /// The directory containerd keeps everything in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Kills a `ctr` container's task and deletes both (whatever state they are in).
pub fn ctr_remove(containerd: &Containerd, namespace: &str, id: &str) {
    let _ = containerd
        .ctr(namespace)
        .args(["tasks", "kill", "--signal", "SIGKILL", id])
        .output();
    // The task is deleted once it has exited; it takes a moment after the kill.
    for _ in 0..50 {
        let out = containerd
            .ctr(namespace)
            .args(["tasks", "delete", id])
            .output();
        let gone = out.is_ok_and(|o| {
            o.status.success() || String::from_utf8_lossy(&o.stderr).contains("not found")
        });
        if gone {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = containerd
        .ctr(namespace)
        .args(["containers", "delete", id])
        .output();
}

/// A private Docker engine.
pub struct Dockerd {
    socket: PathBuf,
    daemon: Daemon,
}

impl Dockerd {
    /// Starts dockerd in `dir` (created) on the given containerd and waits until its API
    /// answers `/_ping`.
    pub fn start(dir: &Path, containerd: &Containerd) -> Result<Dockerd, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let socket = dir.join("docker.sock");
        // Its own daemon.json (not /etc/docker/daemon.json), and in it its own trust key: 20.10
        // writes /etc/docker/key.json otherwise, and the key path has no command-line flag.
        let config = dir.join("daemon.json");
        std::fs::write(
            &config,
            serde_json::json!({ "deprecated-key-path": dir.join("key.json") }).to_string(),
        )
        .map_err(|e| e.to_string())?;
        let (d, containerd_socket, sock) = (
            dir.to_owned(),
            containerd.socket().to_owned(),
            socket.clone(),
        );
        let daemon = Daemon::start("dockerd", dir.join("dockerd.log"), move || {
            let mut cmd = Command::new("dockerd");
            cmd.arg("--data-root")
                .arg(d.join("data"))
                .arg("--exec-root")
                .arg(d.join("exec"))
                .arg("--pidfile")
                .arg(d.join("docker.pid"))
                .arg("--host")
                .arg(format!("unix://{}", sock.display()))
                .arg("--containerd")
                .arg(containerd_socket)
                .arg("--config-file")
                .arg(config)
                .args([
                    "--iptables=false",
                    "--ip-masq=false",
                    "--ip6tables=false",
                    "--bridge=none",
                    "--userland-proxy=false",
                    "--storage-driver=overlay2",
                    "--exec-opt",
                    "native.cgroupdriver=cgroupfs",
                    "--log-level=warn",
                ]);
            cmd
        })?;
        let dockerd = Dockerd { socket, daemon };
        wait_ready(&dockerd.daemon, Duration::from_secs(60), || {
            ping(&dockerd.socket)
        })?;
        Ok(dockerd)
    }

    /// The engine's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://SOCKET`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The `docker` command-line tool, talking to this engine.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.arg("--host").arg(self.host());
        cmd
    }

    /// Stops dockerd (it stops the containers still running first).
    pub fn stop(&self) {
        self.daemon.stop(Duration::from_secs(20));
    }
}

/// Whether a Docker API answers `GET /_ping` on `socket`.
pub fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains(" 200 ")
}

/// Whether dockerd and containerd are installed.
pub fn installed() -> bool {
    ["dockerd", "containerd", "ctr", "docker"].iter().all(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The directory this test process keeps its engines in.
fn engines_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        sweep_stale();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the engines' directory");
        // SAFETY: registers a plain function, called once at exit.
        unsafe { libc::atexit(stop_shared) };
        dir
    })
}

static CONTAINERD: OnceLock<Result<Containerd, String>> = OnceLock::new();
static DOCKERD: OnceLock<Result<Dockerd, String>> = OnceLock::new();

/// The private containerd of this test process (started on first use).
pub fn shared_containerd() -> Result<&'static Containerd, String> {
    CONTAINERD
        .get_or_init(|| Containerd::start(&engines_dir().join("containerd")))
        .as_ref()
        .map_err(Clone::clone)
}

/// The private Docker engine of this test process (started on first use, on the shared
/// containerd).
pub fn shared() -> Result<&'static Dockerd, String> {
    DOCKERD
        .get_or_init(|| {
            let containerd = shared_containerd()?;
            Dockerd::start(&engines_dir().join("docker"), containerd)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Stops the shared engines and removes their directory (at exit).
extern "C" fn stop_shared() {
    if let Some(Ok(dockerd)) = DOCKERD.get() {
        dockerd.stop();
    }
    if let Some(Ok(containerd)) = CONTAINERD.get() {
        containerd.stop();
    }
    if let Some(dir) = engines_dir_if_made() {
        remove_engine_dir(dir);
    }
}

fn engines_dir_if_made() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
    dir.exists().then_some(dir)
}

/// Unmounts what the engines left mounted below `dir` (dockerd leaves its network namespace
/// at `exec/netns/default`) and removes it.
fn remove_engine_dir(dir: PathBuf) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| Path::new(m).starts_with(&dir))
        .collect();
    mounts.sort_unstable_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        if let Ok(c) = std::ffi::CString::new(m) {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Removes the engine directories of test processes that no longer exist (killed before
/// they could clean up).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_engine_dir(entry.path());
        }
    }
}

/// The containerd namespace the tests run `ctr` containers in.
pub const CTR_NAMESPACE: &str = "cap-trace-test";

/// The test image in the shared containerd's [`CTR_NAMESPACE`] (imported once, from the
/// private Docker engine's `docker save`).
pub fn ctr_image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    let image = crate::engine::IMAGE;
    DONE.get_or_init(|| {
        let dockerd = shared().unwrap_or_else(|e| panic!("the test Docker engine: {e}"));
        let containerd = shared_containerd().unwrap_or_else(|e| panic!("containerd: {e}"));
        crate::engine::Engine::Docker.image();
        let dir = crate::TempDir::new("ctr-image");
        let archive = dir.join("image.tar");
        let saved = dockerd
            .docker()
            .args(["save", "--output"])
            .arg(&archive)
            .arg(image)
            .output()
            .expect("run docker save");
        assert!(saved.status.success(), "docker save: {saved:?}");
        let imported = containerd
            .ctr(CTR_NAMESPACE)
            .args(["images", "import"])
            .arg(&archive)
            .output()
            .expect("run ctr images import");
        assert!(imported.status.success(), "ctr images import: {imported:?}");
    });
    image
}

/// Runs `cmd` in a mount namespace of its own where `/run` (and so `/var/run`) is an empty
/// tmpfs: no engine socket of the host's is there. With `socket`, that socket is mounted at
/// `/run/docker.sock`, where Docker's socket is by default. The host's mounts are untouched.
pub fn with_private_run(cmd: &mut Command, socket: Option<&Path>) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    let cstr = |s: &[u8]| CString::new(s).expect("no NUL in a path");
    let (root, run, tmpfs, target) = (
        cstr(b"/"),
        cstr(b"/run"),
        cstr(b"tmpfs"),
        cstr(b"/run/docker.sock"),
    );
    let source = socket.map(|s| cstr(s.as_os_str().as_bytes()));
    let fail = || Err(std::io::Error::last_os_error());
    // SAFETY: only async-signal-safe system calls on strings made before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            let none = std::ptr::null();
            if libc::mount(
                none,
                root.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                none.cast(),
            ) != 0
                || libc::mount(tmpfs.as_ptr(), run.as_ptr(), tmpfs.as_ptr(), 0, none.cast()) != 0
            {
                return fail();
            }
            if let Some(source) = &source {
                let fd = libc::open(target.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600);
                if fd < 0 {
                    return fail();
                }
                libc::close(fd);
                if libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    none,
                    libc::MS_BIND,
                    none.cast(),
                ) != 0
                {
                    return fail();
                }
            }
            Ok(())
        });
    }
}

/// A directory holding only the `docker` command: as `PATH`, it hides every other engine's
/// tool (podman, ctr) from cap-trace.
pub fn docker_only_path() -> crate::TempDir {
    let dir = crate::TempDir::new("docker-only-path");
    let docker = ["/usr/local/bin/docker", "/usr/bin/docker"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("the docker command");
    std::os::unix::fs::symlink(docker, dir.join("docker")).unwrap();
    dir
}

/// A docker CLI configuration whose current context is the private engine: the CLI reaches
/// it with `DOCKER_CONFIG` and `DOCKER_CONTEXT` alone, without `DOCKER_HOST`.
pub fn docker_context(dockerd: &Dockerd) -> crate::TempDir {
    let dir = crate::TempDir::new("docker-config");
    let out = Command::new("docker")
        .arg("--config")
        .arg(dir.path())
        .args(["context", "create", "cap-trace-test", "--docker"])
        .arg(format!("host={}", dockerd.host()))
        .output()
        .expect("run docker context create");
    assert!(out.status.success(), "docker context create: {out:?}");
    dir
}
