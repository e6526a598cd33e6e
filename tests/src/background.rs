//! `cap-trace` running in the background while a test starts its containers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::{TempDir, bin};

/// `cap-trace ARGS --format json --output FILE`, running.
pub struct Background {
    child: Child,
    stderr: Arc<Mutex<String>>,
    pub output: PathBuf,
    _dir: TempDir,
}

impl Background {
    /// Starts `cap-trace ARGS --format json --output FILE` and waits until it says it is
    /// waiting for (or tracing) its containers.
    pub fn start(args: &[&str]) -> Background {
        Background::start_env(args, &[])
    }

    /// [`Background::start`] with the environment under which cap-trace finds `engine`.
    pub fn for_engine(engine: Engine, args: &[&str]) -> Background {
        let env = engine.cap_trace_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Background::start_env(args, &env)
    }

    /// [`Background::start`] with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Background {
        let mut cmd = Command::new(bin());
        cmd.args(args).envs(env.iter().copied());
        Background::spawn(cmd)
    }

    /// Starts a prepared cap-trace command (`--format json --output FILE` are added) and
    /// waits until it says it is waiting for (or tracing) its containers.
    pub fn spawn(mut cmd: Command) -> Background {
        let dir = TempDir::new("background");
        let output = dir.join("profiles.json");
        let mut child = cmd
            .args(["--format", "json", "--output"])
            .arg(&output)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .env_remove("LD_LIBRARY_PATH")
            .spawn()
            .expect("start cap-trace");
        let stderr = crate::capture_stderr(&mut child);
        let bg = Background {
            child,
            stderr,
            output,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = bg.stderr();
            if text.contains("waiting for") || text.contains("tracing") {
                return bg;
            }
            assert!(
                !(text.contains("error:") || Instant::now() > deadline),
                "cap-trace did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for cap-trace to finish and returns its exit code.
    pub fn wait(mut self, timeout: Duration) -> (Option<i32>, String, Option<serde_json::Value>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cap-trace did not finish in {timeout:?}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let the reader thread catch the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let json = std::fs::read_to_string(&self.output)
            .ok()
            .map(|t| serde_json::from_str(&t).expect("cap-trace wrote JSON"));
        (status.code(), self.stderr(), json)
    }

    /// Sends SIGTERM (as a service manager would) and returns what `wait` returns.
    pub fn stop(self, timeout: Duration) -> (Option<i32>, String, Option<serde_json::Value>) {
        self.signal(libc::SIGTERM, timeout)
    }

    /// Sends SIGINT (Ctrl-C on a terminal) and returns what `wait` returns.
    pub fn interrupt(self, timeout: Duration) -> (Option<i32>, String, Option<serde_json::Value>) {
        self.signal(libc::SIGINT, timeout)
    }

    fn signal(
        self,
        signal: libc::c_int,
        timeout: Duration,
    ) -> (Option<i32>, String, Option<serde_json::Value>) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.wait(timeout)
    }
}

/// The profiles of a cap-trace JSON output: one object, or an array of them.
pub fn profiles(json: &serde_json::Value) -> Vec<serde_json::Value> {
    match json.as_array() {
        Some(a) => a.clone(),
        None => vec![json.clone()],
    }
}
