//! Reading the sysctls a profile records besides the capabilities
//! ([`Environment`](crate::model::profile::Environment)): the host's, and those of a workload's
//! network namespace.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd as _;

use crate::model::profile::Environment;

/// A sysctl by its dotted name, whitespace normalised (`0\t0\n` → `0 0`); `None` where the
/// kernel has no such sysctl (no Yama, say).
fn read(name: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn read_all(names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|n| Some(((*n).to_owned(), read(n)?)))
        .collect()
}

/// The host's sysctls a profile records ([`Environment::HOST_SYSCTLS`]).
pub fn host() -> BTreeMap<String, String> {
    read_all(&Environment::HOST_SYSCTLS)
}

/// The network sysctls ([`Environment::NETWORK_SYSCTLS`]) of `pid`'s network namespace, read
/// by a thread that joins it (`/proc/sys/net` shows the reading thread's namespace); of
/// cap-trace's own namespace without a pid. Empty when the namespace cannot be joined (the
/// process is gone, or cap-trace lacks CAP_SYS_ADMIN).
pub fn network_of(pid: Option<u32>) -> BTreeMap<String, String> {
    let Some(pid) = pid else {
        return read_all(&Environment::NETWORK_SYSCTLS);
    };
    let Ok(ns) = std::fs::File::open(format!("/proc/{pid}/ns/net")) else {
        return BTreeMap::new();
    };
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a descriptor this thread owns; a network namespace may be
        // joined by one thread of a process, and this thread ends after reading.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return BTreeMap::new();
        }
        read_all(&Environment::NETWORK_SYSCTLS)
    })
    .join()
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_has_the_port_start() {
        let own = network_of(None);
        assert!(
            own[Environment::PORT_START].parse::<u32>().is_ok(),
            "{own:?}"
        );
        assert!(
            own[Environment::PING_RANGE].split(' ').count() == 2,
            "{own:?}"
        );
    }
}
