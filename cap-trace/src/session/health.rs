//! Health checks (`--health`): a command that tells whether the workload works, retried until
//! it passes or its time is up. On the host, a shell command with `CAP_TRACE_PID` (and, for a
//! container, `CAP_TRACE_CONTAINER` and `CAP_TRACE_ENGINE`) in its environment; inside a
//! container, through the engine's exec (`session/container/recreate.rs`).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::model::verify::HealthResult;

/// A health check as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub command: String,
    /// Run inside the container (`--health-exec`) rather than on the host.
    pub inside: bool,
    /// How long it may take to pass, from the workload's start.
    pub timeout: Duration,
}

/// How long to wait between attempts.
const PAUSE: Duration = Duration::from_millis(500);

/// The most of an attempt's output kept.
const KEEP: usize = 2048;

/// Retries `attempt` (given the time left) until it returns status 0 or `deadline` passes.
pub async fn poll<F, Fut>(check: &HealthCheck, deadline: Instant, mut attempt: F) -> HealthResult
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = (Option<i32>, String)>,
{
    let mut result = HealthResult {
        command: check.command.clone(),
        inside: check.inside,
        passed: false,
        attempts: 0,
        status: None,
        output: String::new(),
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() && result.attempts > 0 {
            return result;
        }
        result.attempts += 1;
        let (status, output) = attempt(left.max(Duration::from_secs(1))).await;
        result.status = status;
        result.output = tail(&output);
        if status == Some(0) {
            result.passed = true;
            return result;
        }
        if Instant::now() + PAUSE >= deadline {
            return result;
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// One attempt of a host command: `sh -c COMMAND`, killed when `limit` passes.
pub async fn on_host(
    command: &str,
    env: &[(String, String)],
    limit: Duration,
) -> (Option<i32>, String) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, child).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status.code(), text)
        }
        Ok(Err(e)) => (None, format!("cannot run the health check: {e}")),
        Err(_) => (None, format!("no answer within {} s", limit.as_secs())),
    }
}

/// The end of some output, at most [`KEEP`] bytes, cut at a character boundary.
pub fn tail(output: &str) -> String {
    if output.len() <= KEEP {
        return output.to_owned();
    }
    let mut start = output.len() - KEEP;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    output[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(timeout_ms: u64) -> HealthCheck {
        HealthCheck {
            command: "probe".into(),
            inside: false,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn retries_until_it_passes() {
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        let result = poll(&check(10_000), deadline, |_| {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    (Some(7), "refused\n".to_owned())
                } else {
                    (Some(0), "ok\n".to_owned())
                }
            }
        })
        .await;
        assert!(result.passed);
        assert_eq!(result.attempts, 3);
        assert_eq!(result.output, "ok\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn gives_up_at_the_deadline_with_the_last_answer() {
        let deadline = Instant::now() + Duration::from_millis(1200);
        let result = poll(&check(1200), deadline, |_| async {
            (Some(7), "curl: (7) Failed to connect\n".to_owned())
        })
        .await;
        assert!(!result.passed);
        assert!((2..=4).contains(&result.attempts), "{}", result.attempts);
        assert_eq!(result.status, Some(7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn host_commands_get_their_environment_and_a_time_limit() {
        let env = [("CAP_TRACE_PID".to_owned(), "4242".to_owned())];
        let (status, out) = on_host(
            "echo pid=$CAP_TRACE_PID; exit 3",
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status, Some(3));
        assert_eq!(out, "pid=4242\n");
        let (status, out) = on_host("sleep 5", &[], Duration::from_millis(100)).await;
        assert_eq!(status, None);
        assert!(out.contains("no answer"), "{out}");
    }

    #[test]
    fn keeps_the_end_of_long_output() {
        let long = format!("{}é{}", "a".repeat(3000), "b".repeat(100));
        let t = tail(&long);
        assert!(t.len() <= KEEP);
        assert!(t.ends_with("bbb"));
    }
}
