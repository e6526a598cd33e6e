//! cgroup v2: where the hierarchy is, the id the kernel side filters on, and the leaf cgroup
//! `cap-trace run` puts its command in.

use std::io::{self, Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup v2 hierarchy is mounted: cap-trace needs cgroup v2 (unified or hybrid mode; mount it with `mount -t cgroup2 none /sys/fs/cgroup/unified`)"
    )]
    NoCgroup2,
    #[error("cgroup {path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Mount point of the cgroup v2 hierarchy, from a `/proc/self/mountinfo` listing.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        // `36 35 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let mut fields = left.split_whitespace();
        let root = fields.nth(3);
        let mount_point = fields.next();
        if let (Some("/"), Some(mp)) = (root, mount_point) {
            found.push(PathBuf::from(mp.replace("\\040", " ")));
        }
    }
    // Prefer the canonical locations when several views are mounted.
    found
        .iter()
        .find(|p| p.as_os_str() == "/sys/fs/cgroup" || p.as_os_str() == "/sys/fs/cgroup/unified")
        .or(found.first())
        .cloned()
}

/// The cgroup v2 mount point of this machine.
pub fn cgroup2_root() -> Result<PathBuf, CgroupError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err(Path::new("/proc/self/mountinfo")))?;
    parse_cgroup2_mount(&mountinfo).ok_or(CgroupError::NoCgroup2)
}

/// The id `bpf_get_current_cgroup_id()` returns for tasks in this cgroup: its inode number.
pub fn cgroup_id(path: &Path) -> Result<u64, CgroupError> {
    Ok(std::fs::metadata(path).map_err(io_err(path))?.ino())
}

/// Depth of a cgroup below the root (the root is level 0).
pub fn level(root: &Path, path: &Path) -> u32 {
    path.strip_prefix(root)
        .map_or(0, |rel| rel.components().count() as u32)
}

/// The cgroup v2 path of a process, relative to the hierarchy root (`0::/...` line).
pub fn parse_proc_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_owned())
}

pub fn process_cgroup(pid: u32) -> Option<String> {
    parse_proc_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// Whether any process is in the cgroup or below (`populated` in `cgroup.events`).
pub fn populated(path: &Path) -> Result<bool, CgroupError> {
    let events = path.join("cgroup.events");
    let text = std::fs::read_to_string(&events).map_err(io_err(&events))?;
    Ok(parse_populated(&text))
}

fn parse_populated(events: &str) -> bool {
    events
        .lines()
        .find_map(|l| l.strip_prefix("populated "))
        .is_some_and(|v| v.trim() != "0")
}

/// Blocks until the cgroup has no process left (or no longer exists).
pub fn wait_empty(path: &Path) -> Result<(), CgroupError> {
    let events = path.join("cgroup.events");
    let mut file = match std::fs::File::open(&events) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&events)(e)),
    };
    loop {
        let mut text = String::new();
        file.rewind().map_err(io_err(&events))?;
        match file.read_to_string(&mut text) {
            Ok(_) => {}
            // The cgroup was removed under us.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(()),
            Err(e) => return Err(io_err(&events)(e)),
        }
        if !parse_populated(&text) {
            return Ok(());
        }
        // cgroup.events signals changes with POLLPRI; the timeout is only a safety net.
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&file),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&raw mut pfd, 1, 1000) };
    }
}

/// The real user ids the processes in a cgroup (and below) run as, sorted, each once.
pub fn uids(path: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    collect_uids(path, 4, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

fn collect_uids(path: &Path, depth: u32, into: &mut Vec<u32>) {
    if let Ok(procs) = std::fs::read_to_string(path.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| parse_uid(&s));
            into.extend(uid);
        }
    }
    if depth == 0 {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_uids(&entry.path(), depth - 1, into);
            }
        }
    }
}

/// The real uid of a `/proc/PID/status`.
fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// Kills every process in the cgroup.
pub fn kill_all(path: &Path) {
    // cgroup.kill (Linux 5.14+) kills atomically, including processes being forked.
    if std::fs::write(path.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    if let Ok(procs) = std::fs::read_to_string(path.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A cgroup cap-trace created and removes when dropped.
pub struct Leaf {
    pub path: PathBuf,
    pub id: u64,
}

impl Leaf {
    /// Creates `<root>/cap-trace/<name>`.
    pub fn create(name: &str) -> Result<Leaf, CgroupError> {
        let root = cgroup2_root()?;
        let parent = root.join("cap-trace");
        match std::fs::create_dir(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&parent)(e)),
        }
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(io_err(&path))?;
        let id = cgroup_id(&path)?;
        Ok(Leaf { path, id })
    }

    /// Path of `cgroup.procs`, which a process writes its pid (or 0) to, to join.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        // A cgroup can only be removed once empty; stragglers are killed first.
        for attempt in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) => {
                    if attempt == 0 {
                        kill_all(&self.path);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        log::warn!("could not remove cgroup {}", self.path.display());
    }
}

/// The processes in the cgroup at `path` itself (`cgroup.procs`), sorted.
pub fn processes(path: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(path.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Every thread in the cgroup at `path` and the cgroups below it (`cgroup.threads`), a few
/// levels down.
pub fn threads(path: &Path) -> Vec<u32> {
    fn collect(dir: &Path, depth: u32, into: &mut Vec<u32>) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.threads")) {
            into.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if depth == 0 {
            return;
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&entry.path(), depth - 1, into);
            }
        }
    }
    let mut tids = Vec::new();
    collect(path, 4, &mut tids);
    tids
}

/// An id above every existing cgroup's: cgroup ids only grow, so a cgroup with a higher id was
/// created after this call. Made by creating a cgroup below `<root>/cap-trace` and removing it
/// again; where that is not allowed (a read-only cgroup mount), the highest id in the tree (a
/// cgroup created while the tree is read may then be taken for an older one).
pub fn id_watermark(root: &Path) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    if let Ok(leaf) = Leaf::create(&format!("watermark-{}-{nanos}", std::process::id())) {
        return leaf.id;
    }
    let mut ids = std::collections::HashMap::new();
    scan(root, TREE_DEPTH, &mut ids);
    ids.into_keys()
        .max()
        .unwrap_or(0)
        .max(cgroup_id(root).unwrap_or(0))
}

/// How deep below the root containers are looked for (rootless podman under systemd is 5
/// levels down, a Kubernetes container 4, a custom parent adds its own).
pub const TREE_DEPTH: u32 = 8;

/// Records the id → path of every cgroup below `dir`, `depth` levels down.
pub fn scan<S: std::hash::BuildHasher>(
    dir: &Path,
    depth: u32,
    into: &mut std::collections::HashMap<u64, PathBuf, S>,
) {
    for path in child_dirs(dir) {
        if let Ok(id) = cgroup_id(&path) {
            into.insert(id, path.clone());
        }
        if depth > 1 {
            scan(&path, depth - 1, into);
        }
    }
}

/// The directories directly below `dir` (none when it cannot be read: it may be gone).
fn child_dirs(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flat_map(Iterator::flatten)
        .filter(|entry| entry.file_type().is_ok_and(|k| k.is_dir()))
        .map(|entry| entry.path())
}

/// Learns the id → path of cgroups as they are created below some directories (inotify), so
/// that a container that lives only a few milliseconds can still be named after its cgroup is
/// gone.
pub struct Watcher {
    fd: std::os::fd::OwnedFd,
    /// Watch descriptor → (directory, how many levels below it are still watched).
    dirs: std::collections::HashMap<i32, (PathBuf, u32)>,
}

impl Watcher {
    pub fn new() -> io::Result<Watcher> {
        // SAFETY: plain inotify_init1; the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Watcher {
            fd,
            dirs: std::collections::HashMap::new(),
        })
    }

    /// Watches `dir` and, as they appear, its subdirectories `depth` levels down.
    pub fn watch(&mut self, dir: &Path, depth: u32) -> io::Result<()> {
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: valid descriptor and NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                c.as_ptr(),
                libc::IN_CREATE | libc::IN_ONLYDIR,
            )
        };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.dirs.insert(wd, (dir.to_owned(), depth));
        Ok(())
    }

    /// Watches `dir` and every directory below it, `depth` levels down, as they are and as
    /// they appear. Only `dir` itself must be watchable; below it, what cannot be watched (the
    /// watch limit reached) is left out.
    pub fn watch_tree(&mut self, dir: &Path, depth: u32) -> io::Result<()> {
        self.watch(dir, depth)?;
        if depth == 0 {
            return Ok(());
        }
        for path in child_dirs(dir) {
            if let Err(e) = self.watch_tree(&path, depth - 1) {
                log::debug!("cannot watch {}: {e}", path.display());
            }
        }
        Ok(())
    }

    /// The directories already below `dir` (just watched): recorded as created, and watched
    /// `depth` levels down.
    fn created_before_watch(
        &mut self,
        dir: &Path,
        depth: u32,
        paths: &mut std::collections::HashMap<u64, PathBuf>,
        created: &mut Vec<PathBuf>,
    ) {
        for path in child_dirs(dir) {
            if let Ok(id) = cgroup_id(&path) {
                paths.insert(id, path.clone());
            }
            created.push(path.clone());
            if depth > 0 {
                let _ = self.watch(&path, depth - 1);
                self.created_before_watch(&path, depth - 1, paths, created);
            }
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }

    /// Reads pending notifications; new cgroups go into `paths` (id → path) and are returned.
    pub fn read(&mut self, paths: &mut std::collections::HashMap<u64, PathBuf>) -> Vec<PathBuf> {
        let mut created = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: reading into a local buffer from our descriptor.
            let n = unsafe { libc::read(self.raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return created;
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let field =
                    |at: usize| u32::from_ne_bytes(buf[off + at..off + at + 4].try_into().unwrap());
                let wd = field(0) as i32;
                let mask = field(4);
                let len = field(12) as usize;
                let name = &buf[off + 16..(off + 16 + len).min(n)];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                off += 16 + len;
                if mask & libc::IN_IGNORED != 0 {
                    // The directory is gone (its watch with it): forget it.
                    self.dirs.remove(&wd);
                    continue;
                }
                if mask & libc::IN_ISDIR == 0 || mask & libc::IN_CREATE == 0 {
                    continue;
                }
                let Some((dir, depth)) = self.dirs.get(&wd).cloned() else {
                    continue;
                };
                let path =
                    dir.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name));
                if let Ok(id) = cgroup_id(&path) {
                    paths.insert(id, path.clone());
                }
                created.push(path.clone());
                if depth > 0 {
                    let _ = self.watch(&path, depth - 1);
                    // What was made inside it before its watch was: a runtime makes a new
                    // parent and the container's cgroup in it at once.
                    self.created_before_watch(&path, depth - 1, paths, &mut created);
                }
            }
        }
    }
}

impl std::os::fd::AsRawFd for Watcher {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_made_before_its_parent_was_watched_is_seen() {
        let root =
            std::env::temp_dir().join(format!("cap-trace-unit-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
        let mut watcher = Watcher::new().unwrap();
        watcher.watch_tree(&root, 2).unwrap();
        // A new parent and its child at once, before the watcher reads: the child's creation
        // was never announced (the parent had no watch yet). Directories two levels down are
        // watched, so what is made in them is seen, and nothing deeper.
        std::fs::create_dir_all(root.join("parent/leaf/deeper/deepest")).unwrap();
        let mut paths = std::collections::HashMap::new();
        let mut created = watcher.read(&mut paths);
        created.sort();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            created,
            [
                root.join("parent"),
                root.join("parent/leaf"),
                root.join("parent/leaf/deeper")
            ]
        );
    }

    #[test]
    fn reads_real_uids() {
        assert_eq!(parse_uid("Name:\tx\nUid:\t33\t0\t0\t0\n"), Some(33));
        assert_eq!(parse_uid("Name:\tx\n"), None);
    }

    #[test]
    fn finds_cgroup2_mounts() {
        let hybrid = "\
25 20 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A container's view of a sub-tree is not the root.
        let nested = "40 30 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(parse_cgroup2_mount(nested), None);
        assert_eq!(parse_cgroup2_mount("garbage\n"), None);
    }

    #[test]
    fn parses_proc_cgroup() {
        let hybrid = "9:name=systemd:/libpod_parent/libpod-a60938\n1:cpu:/x\n0::/libpod_parent/libpod-a60938\n";
        assert_eq!(
            parse_proc_cgroup(hybrid).as_deref(),
            Some("/libpod_parent/libpod-a60938")
        );
        assert_eq!(parse_proc_cgroup("0::/\n").as_deref(), Some("/"));
        assert_eq!(parse_proc_cgroup("1:cpu:/x\n"), None);
    }

    #[test]
    fn levels() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(level(root, root), 0);
        assert_eq!(level(root, Path::new("/sys/fs/cgroup/cap-trace/run-1")), 2);
    }

    #[test]
    fn populated_flag() {
        assert!(parse_populated("populated 1\nfrozen 0\n"));
        assert!(!parse_populated("populated 0\nfrozen 0\n"));
    }
}
