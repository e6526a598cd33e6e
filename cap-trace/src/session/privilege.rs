//! cap-trace's own privileges: [`TRACING`] is the one statement of what tracing needs and why,
//! which `--help`, the errors and the README (held to it by a test) all use; the daemon checks
//! them before it starts and reduces them once its programs are attached.
//!
//! Loading and attaching the programs needs CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels
//! before 5.8), and the tracepoint backend reads `/proc/kallsyms` addresses (CAP_SYSLOG).
//! Afterwards the daemon only reads and updates its maps through descriptors it already holds,
//! reads `/proc` and `/sys/fs/cgroup`, and talks to the container engine's socket: CAP_BPF (or
//! CAP_SYS_ADMIN where there is no CAP_BPF) is all it keeps, and the bounding set is cut to the
//! same, so nothing it executes can regain more.

use crate::linux::caps::Cap;

/// What tracing needs, each capability with why (when cap-trace does not run as root).
pub const TRACING: [(&str, &str); 3] = [
    ("BPF", "load the eBPF programs and create their maps"),
    (
        "PERFMON",
        "attach the programs to the kernel's capability hook and let them read kernel memory",
    ),
    (
        "SYSLOG",
        "read kernel addresses in /proc/kallsyms, which tell an enforcement point from a probe",
    ),
];

/// `CAP_BPF, CAP_PERFMON and CAP_SYSLOG`.
pub fn tracing_names() -> String {
    let names: Vec<String> = TRACING.iter().map(|(c, _)| format!("CAP_{c}")).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The table as the README shows it.
pub fn markdown() -> String {
    let mut out = String::from("| capability | needed to |\n| --- | --- |\n");
    for (cap, why) in TRACING {
        out.push_str(&format!("| `CAP_{cap}` | {why} |\n"));
    }
    out
}

/// What this process lacks of [`TRACING`], each with why, as one phrase ("CAP_SYSLOG (to read
/// kernel addresses ...)"); empty when it lacks nothing (or its capabilities cannot be read).
pub fn lacking_for_tracing() -> String {
    let Ok((effective, _, _)) = get() else {
        return String::new();
    };
    TRACING
        .iter()
        .filter(|(name, _)| {
            name.parse::<Cap>()
                .is_ok_and(|c| c.0 < 64 && effective & (1 << c.0) == 0)
        })
        .map(|(name, why)| format!("CAP_{name} (to {why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_SETPCAP: u32 = 8;
const CAP_BPF: u32 = 39;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

/// The effective, permitted and inheritable sets of this process.
fn get() -> std::io::Result<(u64, u64, u64)> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a v3 header and room for two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let join = |f: fn(&Data) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

fn set(effective: u64, permitted: u64) -> std::io::Result<()> {
    capset(effective, permitted, 0)
}

/// Sets this thread's effective, permitted and inheritable sets. Only a syscall: safe between
/// fork and exec.
pub(crate) fn capset(effective: u64, permitted: u64, inheritable: u64) -> std::io::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        Data {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: capset with a v3 header and two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Highest capability this kernel knows.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// What tracing needs to keep after attaching, on this kernel.
fn needed_after_attach() -> u64 {
    if last_cap() >= CAP_BPF {
        1 << CAP_BPF
    } else {
        1 << CAP_SYS_ADMIN
    }
}

/// Which capabilities, by name, `mask` lacks of `needed`.
fn missing(mask: u64, needed: &[u32]) -> Vec<String> {
    needed
        .iter()
        .filter(|&&c| mask & (1 << c) == 0)
        .map(|&c| Cap(c).to_string())
        .collect()
}

/// Why cap-trace's own capabilities are not what tracing takes.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot read own capabilities: {0}")]
    Read(std::io::Error),
    #[error(
        "cap-trace daemon needs {} to load its programs: run it as root, or grant them (see deploy/cap-trace.service)",
        .0.join(" and ")
    )]
    Lacking(Vec<String>),
    #[error("cannot drop privileges ({what}): {source}")]
    Drop {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Refuses to start without what loading the programs takes, naming what is missing.
pub fn require_tracing_capabilities() -> Result<(), PrivilegeError> {
    let (effective, _, _) = get().map_err(PrivilegeError::Read)?;
    if effective & (1 << CAP_SYS_ADMIN) != 0 {
        return Ok(());
    }
    let lacking = if last_cap() >= CAP_BPF {
        let needed: Vec<u32> = TRACING
            .iter()
            .filter_map(|(name, _)| name.parse::<Cap>().ok())
            .map(|c| c.0)
            .collect();
        missing(effective, &needed)
    } else {
        vec![Cap(CAP_SYS_ADMIN).to_string()]
    };
    if lacking.is_empty() {
        return Ok(());
    }
    Err(PrivilegeError::Lacking(lacking))
}

/// Drops every capability but what tracing keeps needing, from the effective, permitted,
/// inheritable, ambient and bounding sets. Returns the names kept.
pub fn drop_to_tracing() -> Result<Vec<String>, PrivilegeError> {
    let fail = |what: &'static str, source: std::io::Error| PrivilegeError::Drop { what, source };
    let (_, permitted, _) = get().map_err(|e| fail("capget", e))?;
    let keep = needed_after_attach() & permitted;
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
    if permitted & (1 << CAP_SETPCAP) != 0 {
        for cap in 0..=last_cap() {
            if keep & (1 << cap) == 0 {
                // SAFETY: plain prctl calls.
                let rc = unsafe {
                    libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0)
                };
                if rc != 0 {
                    return Err(fail("bounding set", std::io::Error::last_os_error()));
                }
            }
        }
    }
    // SAFETY: plain prctl call.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    set(keep, keep).map_err(|e| fail("capset", e))?;
    // SAFETY: plain prctl call; nothing the daemon runs may gain privileges either.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Ok((0..64)
        .filter(|c| keep & (1 << c) != 0)
        .map(|c| Cap(c).to_string())
        .collect())
}

/// The bounding set of this host, as cap-trace saw it when first asked (its own `CapBnd`,
/// read before the daemon drops anything): what any process started here can hold at most.
pub fn host_bounding() -> Option<Vec<Cap>> {
    static BOUNDING: std::sync::OnceLock<Option<Vec<Cap>>> = std::sync::OnceLock::new();
    BOUNDING
        .get_or_init(|| {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            status_caps(&status, "CapBnd:")
        })
        .clone()
}

/// A capability mask of `/proc/PID/status` (`CapEff:`, `CapBnd:`, ...).
pub fn status_caps(status: &str, field: &str) -> Option<Vec<Cap>> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .map(crate::linux::caps::from_mask)
}

/// The capabilities of this process right now (for status and tests).
pub fn current() -> Vec<Cap> {
    get()
        .map(|(e, _, _)| crate::linux::caps::from_mask(e))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        let mask = 1u64 << CAP_BPF;
        assert_eq!(missing(mask, &[CAP_BPF, 38]), vec!["PERFMON"]);
        assert!(missing(u64::MAX, &[CAP_BPF, 38]).is_empty());
    }

    #[test]
    fn the_table_names_real_capabilities() {
        for (name, _) in TRACING {
            assert!(name.parse::<Cap>().is_ok(), "{name}");
        }
        assert_eq!(tracing_names(), "CAP_BPF, CAP_PERFMON and CAP_SYSLOG");
    }

    /// The README's "Requirements" states the table, word for word.
    #[test]
    fn readme_states_the_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md beside the workspace's Cargo.toml");
        assert!(
            readme.contains(&markdown()),
            "README.md's Requirements must hold this table:\n{}",
            markdown()
        );
        assert!(readme.contains(&format!("Root, or {}", tracing_names())));
    }

    #[test]
    fn reads_status_masks() {
        let status = "Name:\tx\nCapEff:\t0000000000000001\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(status_caps(status, "CapEff:"), Some(vec![Cap(0)]));
        assert_eq!(status_caps(status, "CapBnd:").unwrap().len(), 40);
        assert_eq!(status_caps(status, "CapAmb:"), None);
        assert!(host_bounding().is_some_and(|b| !b.is_empty()));
    }

    #[test]
    fn reads_own_capabilities() {
        // Whatever we run as, the call works and effective is within permitted.
        let (effective, permitted, _) = get().unwrap();
        assert_eq!(effective & !permitted, 0);
    }
}
