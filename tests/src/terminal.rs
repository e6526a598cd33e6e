//! cap-trace on a terminal, as a user sees it: run on a pseudo-terminal by `script`
//! (util-linux), and what it drew there.

use std::process::Command;

use crate::TempDir;

/// cap-trace on a terminal: run by `script` (util-linux) on a pseudo-terminal, what it writes
/// there kept in a file (the typescript). Killed, with what it runs, if the test ends first.
pub struct OnTerminal {
    script: std::process::Child,
    typescript: std::path::PathBuf,
    _dir: TempDir,
}

impl OnTerminal {
    /// Runs `command` (a shell command line) on a terminal.
    pub fn start(command: &str) -> OnTerminal {
        let dir = TempDir::new("terminal");
        let typescript = dir.join("typescript");
        let script = Command::new("script")
            .args(["-qfec", command])
            .arg(&typescript)
            .env_remove("COLUMNS")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run script (util-linux)");
        OnTerminal {
            script,
            typescript,
            _dir: dir,
        }
    }

    /// What was written to the terminal so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.typescript).unwrap_or_default()).into_owned()
    }

    pub fn wait_for(&self, needle: &str, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.text().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "no `{needle}` in {timeout:?}: {:?}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits for the command to end, a success within a minute; returns what it wrote.
    pub fn finish(mut self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = self.script.try_wait().unwrap() {
                assert!(status.success(), "{status}: {:?}", self.text());
                return self.text();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not done in a minute: {:?}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        if self.script.try_wait().ok().flatten().is_none() {
            // script passes a hang-up on to what it runs.
            let _ = self.script.kill();
            let _ = self.script.wait();
        }
    }
}

/// The status lines drawn in `text` (each redrawn in place: `\r`, the line, erase to the end).
pub fn status_lines(text: &str) -> Vec<&str> {
    text.split('\r')
        .filter_map(|part| part.strip_suffix("\u{1b}[K"))
        .filter(|line| !line.is_empty())
        .collect()
}
