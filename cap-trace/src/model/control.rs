//! The daemon's control protocol: what `cap-trace status`, `profile` and `export` ask on its
//! socket (one JSON object per line) and what it answers.

use serde::{Deserialize, Serialize};

use crate::model::fleet::Row;
use crate::model::profile::Profile;
use crate::model::record::Losses;

/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/cap-trace/control.sock";

/// The state dir the daemon is deployed with (`deploy/`), where `ps` and `report` look for
/// profiles when no daemon answers on the control socket.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cap-trace";

/// A request on the control socket (one JSON object per line).
#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "request", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    // Struct variants, so that unknown fields are refused for these too.
    Status {},
    Profile {
        name: String,
    },
    Profiles {},
    /// What every profiled identity held against what it needs (the fleet view).
    Report {},
}

/// The reply: `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
#[derive(Debug, Deserialize, Serialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<Profile>,
    /// The answer to `report`: one row per identity, riskiest excess first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Vec<Row>>,
}

impl Reply {
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
            status: None,
            profiles: Vec::new(),
            report: None,
        }
    }

    pub fn profiles(profiles: Vec<Profile>) -> Reply {
        Reply {
            ok: true,
            error: None,
            status: None,
            profiles,
            report: None,
        }
    }

    pub fn report(report: Vec<Row>) -> Reply {
        Reply {
            ok: true,
            error: None,
            status: None,
            profiles: Vec::new(),
            report: Some(report),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Status {
    pub backend: String,
    pub hook: String,
    /// How containers are named: engine API sockets, else CLIs.
    pub engines: Vec<String>,
    /// Whether each of them answers now.
    #[serde(default)]
    pub engine_state: Vec<EngineState>,
    /// cgroups with checks that wait for a container name (while no engine answers, say):
    /// their checks are kept, and they are named once an engine answers.
    #[serde(default)]
    pub waiting_for_names: u64,
    /// The capabilities the daemon kept after attaching.
    pub capabilities: Vec<String>,
    pub uptime_s: u64,
    pub state_dir: String,
    pub interval_s: f64,
    /// Profiles held (saved ones and containers seen by this run).
    pub profiles: usize,
    /// Containers followed now, and the latest that exited (at most 100).
    pub containers: Vec<ContainerStatus>,
    pub containers_seen: u64,
    /// Capability checks seen in followed containers since start.
    pub checks: u64,
    /// Ring-buffer events received since start.
    pub events: u64,
    pub losses: Losses,
    /// How many entries the kernel side's maps hold: flat under churn.
    #[serde(default)]
    pub map_entries: MapEntries,
    pub last_persist: Option<String>,
    /// The last persist error, if the last persist failed (the daemon keeps tracing).
    pub persist_error: Option<String>,
    /// Peak resident memory of the daemon, KiB.
    pub peak_rss_kib: u64,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ContainerStatus {
    pub name: String,
    pub running: bool,
}

/// Whether an engine answers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct EngineState {
    /// `podman at /run/podman/podman.sock`, `docker CLI`, ...
    pub engine: String,
    pub answering: bool,
    /// When it last started or stopped answering (RFC 3339).
    pub since: String,
    /// Why it does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How many entries the kernel side's maps hold.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct MapEntries {
    /// Distinct checks counted.
    pub checks: u64,
    /// Distinct syscall outcomes counted.
    pub outcomes: u64,
    /// cgroups traced, watched or ignored.
    pub traced: u64,
    /// cgroups with losses counted.
    pub losses: u64,
    /// Tasks watched for leaving their cgroup.
    pub members: u64,
}
