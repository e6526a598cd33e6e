//! The Linux capabilities: numbers, names, what each one allows and how dangerous it is.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How much of the system a capability hands over.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Danger {
    /// Narrow, hard to turn into more privilege.
    Low,
    /// Bypasses a class of checks on the workload's own files or processes.
    Medium,
    /// Reaches other workloads or the host in a meaningful way.
    High,
    /// Equivalent or close to full root on the host.
    Critical,
}

impl fmt::Display for Danger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Danger::Low => "low",
            Danger::Medium => "medium",
            Danger::High => "high",
            Danger::Critical => "critical",
        })
    }
}

/// Static facts about one capability.
#[derive(Debug)]
pub struct CapInfo {
    pub number: u32,
    /// Name without the `CAP_` prefix, as Docker, podman and Kubernetes spell it.
    pub name: &'static str,
    pub danger: Danger,
    /// What holding it allows.
    pub allows: &'static str,
    /// When a workload legitimately needs it, and what to prefer.
    pub advice: &'static str,
}

macro_rules! caps {
    ($($num:literal $name:ident $danger:ident $allows:literal $advice:literal;)*) => {
        /// Every capability the kernel defines, indexed by number.
        pub const ALL: &[CapInfo] = &[
            $(CapInfo {
                number: $num,
                name: stringify!($name),
                danger: Danger::$danger,
                allows: $allows,
                advice: $advice,
            },)*
        ];
    };
}

caps! {
    0 CHOWN Medium "change the owner and group of any file"
        "needed by installers and entrypoints that chown volumes at start-up; do that at build time instead";
    1 DAC_OVERRIDE Medium "bypass read, write and execute permission checks on files"
        "rarely needed outside installs; DAC_READ_SEARCH is enough when the workload only reads";
    2 DAC_READ_SEARCH Medium "bypass read permission on files and search permission on directories, and open files by handle"
        "needed to read files owned by other users; open_by_handle_at makes it a container-escape primitive on some setups";
    3 FOWNER Medium "bypass checks that require owning a file (chmod, utime, xattrs, sticky directories)"
        "usually an entrypoint that chmods files it did not create";
    4 FSETID Low "keep set-user-ID and set-group-ID bits when a file is modified or chowned"
        "rarely needed at run time";
    5 KILL Medium "send signals to processes of other users"
        "needed by supervisors that manage processes running as other users";
    6 SETGID Medium "change group IDs and supplementary groups"
        "needed by servers that start as root and drop to an unprivileged group";
    7 SETUID Medium "change user IDs"
        "needed by servers that start as root and drop to an unprivileged user; prefer starting as that user";
    8 SETPCAP Medium "change capability bounding and inheritable sets, and grant capabilities to other threads"
        "needed by process managers that drop capabilities before exec";
    9 LINUX_IMMUTABLE Medium "set the immutable and append-only file attributes"
        "almost never needed in a container";
    10 NET_BIND_SERVICE Low "bind sockets to ports below 1024"
        "the usual need of a web server on port 80 or 443; alternatively lower net.ipv4.ip_unprivileged_port_start";
    11 NET_BROADCAST Low "broadcast and listen to multicast (unused by the kernel today)"
        "not needed: the kernel no longer checks it";
    12 NET_ADMIN High "configure interfaces, routes, firewall rules and other network settings"
        "needed by VPNs, CNI plugins and routers; it reaches every container sharing the network namespace";
    13 NET_RAW Medium "use raw and packet sockets, bind to any address"
        "needed by ping on kernels without unprivileged ICMP sockets, and by packet capture; allows spoofing on the container network";
    14 IPC_LOCK Low "lock memory (mlock, mlockall, SHM_LOCK) beyond RLIMIT_MEMLOCK"
        "needed by databases and crypto software that pin memory";
    15 IPC_OWNER Medium "bypass permission checks on System V IPC objects"
        "rarely needed";
    16 SYS_MODULE Critical "load and unload kernel modules"
        "never grant to a workload: equivalent to full control of the host kernel";
    17 SYS_RAWIO Critical "perform raw I/O on devices and ports, map low memory"
        "needed only by hardware tools; close to full control of the host";
    18 SYS_CHROOT Low "use chroot"
        "needed by build tools and some daemons that chroot themselves";
    19 SYS_PTRACE High "trace and inspect any process, read its memory"
        "needed by debuggers and profilers; lets the workload read secrets from its neighbours";
    20 SYS_PACCT Low "configure process accounting"
        "almost never needed";
    21 SYS_ADMIN Critical "mount filesystems, set the hostname, use many administrative ioctls, and more"
        "close to root: grant it only when nothing narrower works (BPF, PERFMON, CHECKPOINT_RESTORE, SYSLOG are split out of it)";
    22 SYS_BOOT Critical "reboot the machine and load a new kernel"
        "never grant to a workload";
    23 SYS_NICE Low "raise process priority, set real-time scheduling and CPU affinity of other processes"
        "needed by latency-sensitive workloads";
    24 SYS_RESOURCE Medium "override resource limits and quotas"
        "needed by workloads that raise their own limits above the hard limit";
    25 SYS_TIME Critical "set the system clock"
        "the clock is shared with the host: only time daemons need it";
    26 SYS_TTY_CONFIG Low "configure TTY devices (vhangup)"
        "almost never needed";
    27 MKNOD Medium "create device special files"
        "needed by image builders and init systems that populate /dev";
    28 LEASE Low "take file leases on files the workload does not own"
        "needed by file servers such as Samba";
    29 AUDIT_WRITE Low "write records to the kernel audit log"
        "needed by login programs (sshd, su) that emit audit records";
    30 AUDIT_CONTROL High "configure the audit subsystem and its rules"
        "never needed by an application";
    31 SETFCAP Medium "set file capabilities"
        "needed by image builders; lets the workload create privileged binaries";
    32 MAC_OVERRIDE High "override mandatory access control (Smack)"
        "never needed by an application";
    33 MAC_ADMIN High "configure mandatory access control (Smack, AppArmor, SELinux policy)"
        "never needed by an application";
    34 SYSLOG Medium "use privileged syslog operations and read kernel addresses"
        "needed to read the kernel ring buffer (dmesg)";
    35 WAKE_ALARM Low "set timers that wake the system from suspend"
        "almost never needed in a container";
    36 BLOCK_SUSPEND Low "block system suspend"
        "almost never needed in a container";
    37 AUDIT_READ Medium "read the audit log through a multicast netlink socket"
        "needed by audit collectors";
    38 PERFMON Medium "use performance monitoring (perf_event_open, BPF tracing)"
        "the narrow alternative to SYS_ADMIN for profilers";
    39 BPF High "load BPF programs and create maps"
        "the narrow alternative to SYS_ADMIN for BPF tools; still reaches kernel memory";
    40 CHECKPOINT_RESTORE Medium "checkpoint and restore processes (set PIDs, read /proc/PID/map_files)"
        "the narrow alternative to SYS_ADMIN for CRIU";
}

/// How many capabilities a kernel can define: its capability sets are 64-bit masks.
pub const MAX_CAPS: u32 = 64;
/// (narrow, broad): where the kernel checks `narrow` first and falls back to `broad`.
pub const ALTERNATIVES: &[(Cap, Cap)] = &[
    (Cap(2), Cap(1)),   // DAC_READ_SEARCH, DAC_OVERRIDE
    (Cap(38), Cap(21)), // PERFMON, SYS_ADMIN
    (Cap(39), Cap(21)), // BPF, SYS_ADMIN
    (Cap(40), Cap(21)), // CHECKPOINT_RESTORE, SYS_ADMIN
];

/// A capability, by number. Displays as its name without the `CAP_` prefix.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(pub u32);

impl Cap {
    pub fn info(self) -> Option<&'static CapInfo> {
        ALL.get(self.0 as usize)
    }

    /// Name without `CAP_`, or `CAP_<n>` for numbers newer than this build.
    pub fn name(self) -> String {
        match self.info() {
            Some(info) => info.name.to_owned(),
            None => format!("CAP_{}", self.0),
        }
    }

    /// Name with the `CAP_` prefix, as systemd and OCI specs spell it.
    pub fn kernel_name(self) -> String {
        match self.info() {
            Some(info) => format!("CAP_{}", info.name),
            None => format!("CAP_{}", self.0),
        }
    }

    pub fn bit(self) -> u64 {
        if self.0 < 64 { 1 << self.0 } else { 0 }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(info) => f.write_str(info.name),
            None => write!(f, "CAP_{}", self.0),
        }
    }
}

/// A capability name that is not one the kernel defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCap(pub String);

impl std::error::Error for UnknownCap {}

impl fmt::Display for UnknownCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown capability `{}`", self.0)?;
        match closest(&self.0) {
            Some(name) => write!(f, ": did you mean {name}?")?,
            None => write!(
                f,
                " (expected a name such as NET_BIND_SERVICE or CAP_CHOWN)"
            )?,
        }
        write!(f, " (see `cap-trace explain --all`)")
    }
}

/// The capability whose name is nearest to `s` (letters swapped, missing, extra or wrong, the
/// `CAP_` prefix and case aside), if one is near enough to be what was meant.
pub fn closest(s: &str) -> Option<&'static str> {
    let upper = s.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    // One edit in a short name, two in a longer one.
    let most = if bare.len() <= 4 { 1 } else { 2 };
    ALL.iter()
        .map(|info| (edits(bare, info.name), info.name))
        .filter(|(d, _)| *d <= most)
        .min()
        .map(|(_, name)| name)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// adjacent letters, each one edit (also how near a container name is to one asked for).
pub fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

impl FromStr for Cap {
    type Err = UnknownCap;

    /// Accepts `CHOWN`, `CAP_CHOWN`, `cap_chown` and `chown`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        ALL.iter()
            .find(|info| info.name == bare)
            .map(|info| Cap(info.number))
            .ok_or_else(|| UnknownCap(s.to_owned()))
    }
}

impl Serialize for Cap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Cap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        // `CAP_<n>`: the number of a capability. One this build has no name for (a profile
        // learned on a newer kernel) cannot be rendered into --cap-add or a unit, so it is
        // refused rather than carried along; capability sets are 64-bit masks, so no kernel
        // can define 64 or more.
        if let Some(n) = s.strip_prefix("CAP_").and_then(|n| n.parse::<u64>().ok()) {
            return match u32::try_from(n).ok().filter(|&n| n < MAX_CAPS) {
                Some(n) if n <= LAST.0 => Ok(Cap(n)),
                Some(n) => Err(serde::de::Error::custom(newer_than_this_build(n))),
                None => Err(serde::de::Error::custom(format!(
                    "unknown capability `{s}`: no kernel defines capability numbers above {}",
                    MAX_CAPS - 1
                ))),
            };
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The last capability this build knows (and the kernel side records): CHECKPOINT_RESTORE.
#[allow(clippy::cast_possible_truncation)] // 41 entries.
pub const LAST: Cap = Cap(ALL.len() as u32 - 1);

/// What [`newer_than_this_build`] says, to tell its error from others.
const NEWER: &str = "is newer than this cap-trace, which knows capabilities 0 to";

/// Why capability `n` (above [`LAST`], below 64) is refused: named, with the fix.
pub fn newer_than_this_build(n: u32) -> String {
    format!(
        "capability {n} (`CAP_{n}`) {NEWER} {} ({} is the last): the profile was learned on a newer kernel; read it with a newer cap-trace",
        LAST.0, LAST
    )
}

/// Whether an error message is [`newer_than_this_build`]'s.
pub fn is_newer_than_this_build(message: &str) -> bool {
    message.contains(NEWER)
}

/// Capabilities a container engine grants when none are dropped or added.
pub mod defaults {
    use super::Cap;

    /// Docker's (and containerd's, CRI-O's) default set: 14 capabilities.
    pub const DOCKER: &[Cap] = &[
        Cap(0),  // CHOWN
        Cap(1),  // DAC_OVERRIDE
        Cap(3),  // FOWNER
        Cap(4),  // FSETID
        Cap(5),  // KILL
        Cap(6),  // SETGID
        Cap(7),  // SETUID
        Cap(8),  // SETPCAP
        Cap(10), // NET_BIND_SERVICE
        Cap(13), // NET_RAW
        Cap(18), // SYS_CHROOT
        Cap(27), // MKNOD
        Cap(29), // AUDIT_WRITE
        Cap(31), // SETFCAP
    ];
}

/// Parses a capability mask as printed in `/proc/PID/status` (`CapEff:` etc.).
pub fn from_mask(mask: u64) -> Vec<Cap> {
    (0..64).filter(|n| mask & (1 << n) != 0).map(Cap).collect()
}

pub fn to_mask(caps: &[Cap]) -> u64 {
    caps.iter().fold(0, |mask, cap| mask | cap.bit())
}

/// A capability bitmap as `/proc/PID/status` prints it (`CapEff:\t00000000a80425fb`), with or
/// without `0x`: at most 16 hex digits.
pub fn parse_mask(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// A bitmap's capabilities this build knows, and the bits above the last of them (a newer
/// kernel's capabilities, or garbage).
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub mask: u64,
    pub known: Vec<Cap>,
    pub unknown: Vec<u32>,
}

pub fn decode(mask: u64) -> Decoded {
    let (known, unknown): (Vec<Cap>, Vec<Cap>) = from_mask(mask)
        .into_iter()
        .partition(|c| c.info().is_some());
    Decoded {
        mask,
        known,
        unknown: unknown.into_iter().map(|c| c.0).collect(),
    }
}

impl Decoded {
    /// The line `capsh --decode=MASK` prints: `0x%016x=cap_a,cap_b,41`.
    pub fn capsh_line(&self) -> String {
        let names = self
            .known
            .iter()
            .map(|c| c.kernel_name().to_ascii_lowercase())
            .chain(self.unknown.iter().map(u32::to_string));
        format!(
            "0x{:016x}={}",
            self.mask,
            names.collect::<Vec<_>>().join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_number() {
        for (i, info) in ALL.iter().enumerate() {
            assert_eq!(info.number as usize, i, "{}", info.name);
        }
    }

    #[test]
    fn parses_every_spelling() {
        for s in ["CHOWN", "CAP_CHOWN", "cap_chown", "chown", " Chown "] {
            assert_eq!(s.parse::<Cap>(), Ok(Cap(0)), "{s}");
        }
        assert_eq!("net_bind_service".parse::<Cap>(), Ok(Cap(10)));
        assert_eq!("CAP_CHECKPOINT_RESTORE".parse::<Cap>(), Ok(Cap(40)));
    }

    #[test]
    fn rejects_unknown_names() {
        let err = "CAP_FLY".parse::<Cap>().unwrap_err();
        assert_eq!(err, UnknownCap("CAP_FLY".into()));
        assert!(err.to_string().contains("unknown capability `CAP_FLY`"));
        assert!("".parse::<Cap>().is_err());
        assert!("CAP_".parse::<Cap>().is_err());
    }

    #[test]
    fn names_and_display() {
        assert_eq!(Cap(21).to_string(), "SYS_ADMIN");
        assert_eq!(Cap(21).kernel_name(), "CAP_SYS_ADMIN");
        assert_eq!(Cap(55).to_string(), "CAP_55");
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&vec![Cap(0), Cap(10), Cap(40)]).unwrap();
        assert_eq!(json, r#"["CHOWN","NET_BIND_SERVICE","CHECKPOINT_RESTORE"]"#);
        let back: Vec<Cap> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![Cap(0), Cap(10), Cap(40)]);
        assert!(serde_json::from_str::<Cap>(r#""WIZARD""#).is_err());
        assert_eq!(serde_json::from_str::<Cap>(r#""CAP_21""#).unwrap(), Cap(21));
        assert_eq!(serde_json::from_str::<Cap>(r#""CAP_40""#).unwrap(), LAST);
        for newer in ["CAP_41", "CAP_63"] {
            let err = serde_json::from_str::<Cap>(&format!("\"{newer}\"")).unwrap_err();
            let n = &newer[4..];
            assert!(
                err.to_string().starts_with(&format!(
                    "capability {n} (`{newer}`) is newer than this cap-trace, which knows capabilities 0 to 40 (CHECKPOINT_RESTORE is the last)"
                )),
                "{err}"
            );
            assert!(err.to_string().contains("newer cap-trace"), "{err}");
        }
        for beyond in [
            "CAP_64",
            "CAP_99",
            "CAP_4294967296",
            "CAP_99999999999999999999",
        ] {
            let err = serde_json::from_str::<Cap>(&format!("\"{beyond}\"")).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("unknown capability `{beyond}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn masks() {
        // podman's default set as seen in /proc/self/status inside a container.
        let caps = from_mask(0x800405fb);
        let names: Vec<String> = caps.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "KILL",
                "SETGID",
                "SETUID",
                "SETPCAP",
                "NET_BIND_SERVICE",
                "SYS_CHROOT",
                "SETFCAP"
            ]
        );
        assert_eq!(to_mask(&caps), 0x800405fb);
        assert_eq!(defaults::DOCKER.len(), 14);
    }

    #[test]
    fn parses_proc_status_bitmaps() {
        assert_eq!(parse_mask("00000000a80425fb"), Some(0xa804_25fb));
        assert_eq!(parse_mask("0xa80425fb"), Some(0xa804_25fb));
        assert_eq!(parse_mask("0XA80425FB"), Some(0xa804_25fb));
        assert_eq!(parse_mask("0"), Some(0));
        assert_eq!(parse_mask("ffffffffffffffff"), Some(u64::MAX));
        for bad in ["", "0x", "chown", "0x1g", "1ffffffffffffffff", "-1", "+1"] {
            assert_eq!(parse_mask(bad), None, "{bad}");
        }
        // No capability name is all hex digits, so a name is never taken for a bitmap.
        assert!(ALL.iter().all(|c| parse_mask(c.name).is_none()));
    }

    #[test]
    fn decodes_as_capsh_does() {
        // Lines printed by capsh --decode (libcap2-bin 2.66); the end-to-end test compares
        // with capsh itself.
        assert_eq!(decode(0).capsh_line(), "0x0000000000000000=");
        assert_eq!(
            decode(0xa804_25fb).capsh_line(),
            "0x00000000a80425fb=cap_chown,cap_dac_override,cap_fowner,cap_fsetid,cap_kill,\
             cap_setgid,cap_setuid,cap_setpcap,cap_net_bind_service,cap_net_raw,cap_sys_chroot,\
             cap_mknod,cap_audit_write,cap_setfcap"
        );
        assert_eq!(
            decode(0x300_0000_0000).capsh_line(),
            "0x0000030000000000=cap_checkpoint_restore,41"
        );
        let all = decode(u64::MAX);
        assert_eq!(all.known.len(), ALL.len());
        assert_eq!(all.unknown, (41..64).collect::<Vec<_>>());
        assert_eq!(decode(0x1ff_ffff_ffff).unknown, Vec::<u32>::new());
    }

    #[test]
    fn unknown_names_get_the_nearest_one_suggested() {
        assert_eq!(closest("CHWON"), Some("CHOWN"));
        assert_eq!(closest("cap_net_bind_servce"), Some("NET_BIND_SERVICE"));
        assert_eq!(closest("SYSADMIN"), Some("SYS_ADMIN"));
        assert_eq!(closest("KILLL"), Some("KILL"));
        assert_eq!(closest("ROOT"), None);
        assert_eq!(closest("EVERYTHING"), None);
        let err = "CHWON".parse::<Cap>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown capability `CHWON`: did you mean CHOWN? (see `cap-trace explain --all`)"
        );
        let err = "ROOT".parse::<Cap>().unwrap_err().to_string();
        assert!(err.contains("expected a name such as"), "{err}");
    }
}
