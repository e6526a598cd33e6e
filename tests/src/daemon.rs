//! A `cap-trace daemon` run by a test: started, waited for until its control socket is up,
//! asked over that socket, and stopped (with SIGTERM, however the test ends).

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::podman::ApiService;
use crate::{bin, cap_trace, capture_stderr, ok};

/// How long a daemon may take to load its programs and bind its socket on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
    socket: PathBuf,
    engine: Option<ApiService>,
}

impl Daemon {
    /// `cap-trace daemon --state-dir STATE --socket SOCKET`, its stderr piped: the caller adds
    /// its options and hands it to [`Daemon::start`].
    pub fn command(state: &Path, socket: &Path) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("daemon")
            .arg("--state-dir")
            .arg(state)
            .arg("--socket")
            .arg(socket)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("LD_LIBRARY_PATH");
        cmd
    }

    /// Starts `cmd` (made by [`Daemon::command`] with `socket`) and waits until the daemon
    /// says its control socket is up.
    pub fn start(cmd: &mut Command, socket: &Path) -> Daemon {
        let mut child = cmd.spawn().expect("start the daemon");
        let stderr = capture_stderr(&mut child);
        let d = Daemon {
            child,
            stderr,
            socket: socket.to_owned(),
            engine: None,
        };
        crate::wait_for_stderr(&d.stderr, "control socket", START_TIMEOUT);
        d
    }

    /// Keeps the engine API service the daemon names containers through until the daemon is
    /// stopped.
    #[must_use]
    pub fn naming_through(mut self, engine: ApiService) -> Daemon {
        self.engine = Some(engine);
        self
    }

    /// The engine API service given to [`Daemon::naming_through`].
    pub fn engine(&self) -> &ApiService {
        self.engine
            .as_ref()
            .expect("the daemon names through an API service")
    }

    /// [`Daemon::engine`], to stop or restart it.
    pub fn engine_mut(&mut self) -> &mut ApiService {
        self.engine
            .as_mut()
            .expect("the daemon names through an API service")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What the daemon said on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `cap-trace status --json` against this daemon.
    pub fn status(&self) -> Value {
        let out = cap_trace([
            "status".as_ref(),
            "--json".as_ref(),
            "--socket".as_ref(),
            self.socket.as_os_str(),
        ]);
        serde_json::from_str(&ok(&out)).unwrap()
    }

    /// One request line on a connection of its own; the reply, parsed.
    pub fn request(&self, request: &str) -> Value {
        let mut stream = UnixStream::connect(&self.socket).expect("connect to the daemon");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        writeln!(stream, "{request}").unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// SIGKILL: the daemon ends without a word (what it persisted is what is left).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; asserts that the daemon ends, successfully, within a minute (it writes every
    /// profile once more on its way out). Its stderr.
    pub fn stop(self) -> String {
        self.stop_within(Duration::from_secs(60))
    }

    /// [`Daemon::stop`] within `limit`.
    pub fn stop_within(mut self, limit: Duration) -> String {
        // SAFETY: kill(2) on our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let signalled = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                signalled.elapsed() < limit,
                "the daemon did not end within {limit:?} of SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The rest of what it said on its way out.
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr();
        assert!(status.success(), "daemon failed ({status}): {stderr}");
        stderr
    }
}

impl Drop for Daemon {
    /// A test that fails midway still lets the daemon end as a service does (its socket
    /// removed, its programs detached); SIGKILL if it does not within 20 s.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: kill(2) on our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
