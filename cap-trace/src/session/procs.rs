//! What the processes on this host hold, from `/proc/PID/status` (no tracing, no BPF): every
//! process, grouped by the container its cgroup names.

use std::collections::BTreeMap;

use crate::linux::caps::{self, Cap};
use crate::session::cgroup;
use crate::session::container::path::{self, CgroupContainer};
use crate::session::container::{self, Engines};

/// One process's identity and capability sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
    /// Effective user id.
    pub euid: u32,
    pub effective: u64,
    pub bounding: u64,
    /// A kernel thread (no user space to speak of).
    pub kthread: bool,
    /// Its command line (`/proc/PID/cmdline`), when read.
    pub cmdline: Vec<String>,
}

/// Parses `/proc/PID/status`; None when a field it needs is missing.
pub fn parse_status(pid: u32, status: &str) -> Option<Process> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let mask = |name: &str| field(name).and_then(caps::parse_mask);
    let ppid: Option<u32> = field("PPid:").and_then(|v| v.parse().ok());
    Some(Process {
        pid,
        comm: field("Name:").unwrap_or_default().to_owned(),
        // Uid: real, effective, saved, filesystem.
        euid: field("Uid:")?.split_whitespace().nth(1)?.parse().ok()?,
        effective: mask("CapEff:")?,
        bounding: mask("CapBnd:")?,
        kthread: field("Kthread:").map_or(pid == 2 || ppid == Some(2), |v| v == "1"),
        cmdline: Vec::new(),
    })
}

/// Every process the host's `/proc` shows (those that exit meanwhile are left out), with its
/// cgroup v2 path.
pub fn all() -> Vec<(Process, Option<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<(Process, Option<String>)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let mut process = parse_status(pid, &status)?;
            process.cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| parse_cmdline(&raw))
                .unwrap_or_default();
            Some((process, cgroup::process_cgroup(pid)))
        })
        .collect();
    out.sort_by_key(|(p, _)| p.pid);
    out
}

/// The arguments of `/proc/PID/cmdline` (NUL-terminated), bytes that are not UTF-8 written
/// `\xNN` as `cap-trace run` records a command.
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.strip_suffix(b"\0")
        .unwrap_or(raw)
        .split(|b| *b == 0)
        .filter(|_| !raw.is_empty())
        .map(crate::model::text::from_bytes)
        .collect()
}

/// The processes of one container.
#[derive(Debug, Clone)]
pub struct Holding {
    pub container: CgroupContainer,
    pub processes: Vec<Process>,
}

impl Holding {
    /// Union of the effective sets.
    pub fn effective(&self) -> Vec<Cap> {
        caps::from_mask(self.processes.iter().fold(0, |m, p| m | p.effective))
    }

    /// Union of the bounding sets.
    pub fn bounding(&self) -> Vec<Cap> {
        caps::from_mask(self.processes.iter().fold(0, |m, p| m | p.bounding))
    }

    /// Distinct effective user ids.
    pub fn users(&self) -> Vec<u32> {
        let mut users: Vec<u32> = self.processes.iter().map(|p| p.euid).collect();
        users.sort_unstable();
        users.dedup();
        users
    }
}

/// Groups processes by the container their cgroup names; the rest (kernel threads left out)
/// are returned apart.
pub fn by_container(processes: Vec<(Process, Option<String>)>) -> (Vec<Holding>, Vec<Process>) {
    let mut containers: BTreeMap<String, Holding> = BTreeMap::new();
    let mut outside = Vec::new();
    for (process, cgroup) in processes {
        match cgroup.as_deref().and_then(path::parse) {
            Some(container) => containers
                .entry(container.id.clone())
                .or_insert_with(|| Holding {
                    container,
                    processes: Vec::new(),
                })
                .processes
                .push(process),
            None if !process.kthread => outside.push(process),
            None => {}
        }
    }
    (containers.into_values().collect(), outside)
}

/// A running container: its processes, and the identity its profiles are kept under.
#[derive(Debug, Clone)]
pub struct Running {
    pub holding: Holding,
    /// Kubernetes namespace/workload/container, compose project/service, else its name; the
    /// first 12 characters of its id when no engine knows it.
    pub identity: String,
    pub engine: Option<String>,
    pub image: Option<String>,
    /// Its labels, when an engine knows it.
    pub labels: Option<BTreeMap<String, String>>,
}

/// Every running container, named through `engines`, and the processes outside containers.
pub fn running(engines: &Engines) -> (Vec<Running>, Vec<Process>) {
    let (containers, outside) = by_container(all());
    let running = containers
        .into_iter()
        .map(|holding| {
            let c = &holding.container;
            match engines.inspect(&c.id) {
                Some(info) => {
                    let workload =
                        container::workload(&info, Some(c.runtime), c.pod_uid.as_deref());
                    Running {
                        identity: workload.name,
                        engine: workload.engine,
                        image: workload.image,
                        labels: Some(info.labels),
                        holding,
                    }
                }
                None => Running {
                    identity: c.id.chars().take(12).collect(),
                    engine: Some(c.runtime.engine_name().to_owned()),
                    image: None,
                    labels: None,
                    holding,
                },
            }
        })
        .collect();
    (running, outside)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\thttpd\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4242\nPPid:\t4200\nUid:\t0\t65534\t0\t65534\nGid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nSeccomp:\t2\n";

    #[test]
    fn parses_status() {
        let p = parse_status(4242, STATUS).unwrap();
        assert_eq!(p.comm, "httpd");
        assert_eq!(p.euid, 65534);
        assert_eq!(p.effective, 0xa804_25fb);
        assert_eq!(p.bounding, 0xa804_25fb);
        assert!(!p.kthread);
        let kthread = format!("{STATUS}Kthread:\t1\n");
        assert!(parse_status(4242, &kthread).unwrap().kthread);
        let old_kernel_kthread = STATUS.replace("PPid:\t4200", "PPid:\t2");
        assert!(parse_status(4242, &old_kernel_kthread).unwrap().kthread);
        assert_eq!(parse_status(1, "Name:\tx\n"), None);
    }

    #[test]
    fn parses_cmdline() {
        assert_eq!(parse_cmdline(b"sleep\x00600\x00"), ["sleep", "600"]);
        assert_eq!(parse_cmdline(b"sh\x00-c\x00\x00"), ["sh", "-c", ""]);
        assert_eq!(parse_cmdline(b"a\xff"), ["a\\xff"]);
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn groups_by_container() {
        let id = "2bdacf50c93ebf9aeb522dd810d24b0474e5828f2b8c1e5494585423e5434880";
        let p = |pid: u32, euid: u32, eff: u64| Process {
            pid,
            comm: "sh".into(),
            euid,
            effective: eff,
            bounding: 0xa804_25fb,
            kthread: false,
            cmdline: Vec::new(),
        };
        let (containers, outside) = by_container(vec![
            (
                p(10, 0, 0xa804_25fb),
                Some(format!("/libpod_parent/libpod-{id}")),
            ),
            (
                p(11, 65534, 0),
                Some(format!("/libpod_parent/libpod-{id}/sub")),
            ),
            (p(12, 0, u64::MAX), Some("/system.slice/ssh.service".into())),
            (p(13, 0, u64::MAX), None),
        ]);
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert_eq!(c.container.id, id);
        assert_eq!(c.users(), [0, 65534]);
        assert_eq!(c.effective().len(), 14);
        assert_eq!(c.bounding().len(), 14);
        assert_eq!(outside.iter().map(|p| p.pid).collect::<Vec<_>>(), [12, 13]);
    }
}
