//! The state dir: one profile file per container identity, owner-only, and a lock that keeps a
//! second daemon out (two daemons on one dir would each add what they saw to the same files,
//! doubling every count).

use std::fs::File;
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::commands::daemon::index::Index;
use crate::error::Failure;
use crate::model::profile::Profile;
use crate::render::write::{Mode, WriteError, write_file};

/// Longest file name stem: with `-`, a 16-digit hash, `.json` and `.invalid` (a file set
/// aside), a name stays far below the 255 bytes a file name may have.
const MAX_STEM: usize = 200;

/// File name of a profile: the identity with `/` as `~` (compose `project/service`, Kubernetes
/// `namespace/workload/container`), anything outside `[A-Za-z0-9._-]` as `_`. When that
/// changed anything else, or the name would be too long, a hash of the identity is added (and
/// the name cut): two identities never share a file, and no name is too long to write.
pub fn file_name(identity: &str) -> String {
    let mut altered = false;
    let mut name: String = identity
        .chars()
        .map(|c| match c {
            '/' => '~',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
            _ => {
                altered = true;
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
        altered = true;
    }
    if altered || name.len() > MAX_STEM {
        // ASCII only by now: cutting at a byte count cuts at a character.
        name.truncate(MAX_STEM - 17);
        name.push_str(&format!("-{:016x}", fnv1a(identity.as_bytes())));
    }
    name.push_str(".json");
    name
}

/// FNV-1a, 64 bits: stable from release to release, as file names must be.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The state dir, locked for this daemon.
pub(super) struct StateDir {
    pub(super) path: PathBuf,
    /// Holds the lock (`.lock`, `flock`) for as long as the daemon runs.
    _lock: File,
}

impl StateDir {
    /// Creates the state dir owner-only (`0700`), or makes an existing one so: the profiles in
    /// it say what every container does and may hold names from the workloads. A directory
    /// cap-trace may not write into safely (another user's) is refused at start, not at the
    /// first persist; so is one another daemon uses.
    pub(super) fn open(dir: &Path) -> Result<StateDir, Failure> {
        use std::os::unix::fs::DirBuilderExt as _;
        let fail = |e: &dyn std::fmt::Display| {
            Failure::environment(format!("cannot use state dir {}: {e}", dir.display()))
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(&e))?;
        crate::render::write::check_writable(&dir.join("profile.json")).map_err(|e| fail(&e))?;
        let meta = std::fs::metadata(dir).map_err(|e| fail(&e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(&e))?;
        }
        let lock = lock(dir)?;
        Ok(StateDir {
            path: dir.to_owned(),
            _lock: lock,
        })
    }

    /// The profiles saved in the dir, by identity. A file that does not parse is set aside
    /// (renamed `*.invalid`) with a warning rather than stopping the daemon or being
    /// overwritten; one whose name is not the one its identity maps to now (written by an
    /// older cap-trace) is renamed.
    pub(super) fn read(&self) -> Result<Index, Failure> {
        let mut index = Index::default();
        let entries = std::fs::read_dir(&self.path).map_err(|e| {
            Failure::environment(format!(
                "cannot read state dir {}: {e}",
                self.path.display()
            ))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match Profile::read(&path) {
                Ok(p) => {
                    let identity = p
                        .workload
                        .identity
                        .clone()
                        .unwrap_or_else(|| p.workload.name.clone());
                    let wanted = self.path.join(file_name(&identity));
                    if wanted != path && !wanted.exists() {
                        let _ = std::fs::rename(&path, &wanted);
                    }
                    index.insert(&identity, &p);
                }
                Err(e) => set_aside(&path, &e),
            }
        }
        Ok(index)
    }

    /// Writes one profile (owner-only, atomically).
    pub(super) fn write(&self, identity: &str, profile: &Profile) -> Result<(), WriteError> {
        write_file(
            &self.path.join(file_name(identity)),
            profile.to_json().as_bytes(),
            Mode::Private,
        )
    }
}

/// Renames a profile that does not parse to `*.invalid` (`*.invalid.N` when that name is
/// taken: an earlier one set aside is never replaced), so it is neither lost nor overwritten,
/// and says what happened: where it went, or why it could not be moved and that it stays.
fn set_aside(path: &Path, error: &dyn std::fmt::Display) {
    match rename_aside(path) {
        Ok(aside) => eprintln!(
            "cap-trace: warning: {error}; set aside as {} and started afresh",
            aside.display()
        ),
        Err(e) => eprintln!(
            "cap-trace: warning: {error}; it could not be set aside ({e}): it stays where it is, and a profile written under its name replaces it"
        ),
    }
}

/// Moves `path` to the first free name of `NAME.invalid`, `NAME.invalid.2`, ... (never over
/// an existing file: `RENAME_NOREPLACE`).
fn rename_aside(path: &Path) -> std::io::Result<PathBuf> {
    let from = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let first = path.with_extension("json.invalid");
    for n in 1..=100 {
        let aside = if n == 1 {
            first.clone()
        } else {
            PathBuf::from(format!("{}.{n}", first.display()))
        };
        let to = std::ffi::CString::new(aside.as_os_str().as_bytes())?;
        // SAFETY: renameat2(2) with two NUL-terminated paths; by its syscall number, as the
        // static musl build's C library has no wrapper for it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(aside);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // A file system without RENAME_NOREPLACE: the dir is root's alone (0700), so a
            // look before the rename is not raced.
            Some(libc::EINVAL) if !aside.exists() => {
                std::fs::rename(path, &aside)?;
                return Ok(aside);
            }
            Some(libc::EEXIST | libc::EINVAL) => {}
            _ => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{} and 99 more names are taken",
        first.display()
    )))
}

/// Takes the state dir's lock (`flock` on `.lock`, which holds the owner's pid), or says which
/// daemon holds it.
fn lock(dir: &Path) -> Result<File, Failure> {
    let path = dir.join(".lock");
    let fail = |e: &dyn std::fmt::Display| {
        Failure::environment(format!("cannot lock state dir {}: {e}", dir.display()))
    };
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| fail(&e))?;
    // The dir is root's and 0700 (checked above): nobody else can have put a link here, and
    // O_NOFOLLOW refuses one anyway.
    // SAFETY: open(2) with a NUL-terminated path; the descriptor is owned by the File below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(fail(&std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: flock(2) on a live descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(Failure::environment(format!(
                "another cap-trace daemon{} uses the state dir {}: two would count every check twice; stop it, or give this one another --state-dir",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
                dir.display()
            )));
        }
        return Err(fail(&e));
    }
    use std::io::Write as _;
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_identities_apart_and_short() {
        let cases = [
            ("web", "web.json"),
            ("shop/web", "shop~web.json"),
            ("prod/api/server", "prod~api~server.json"),
            ("a-b_c.d", "a-b_c.d.json"),
        ];
        for (identity, expected) in cases {
            assert_eq!(file_name(identity), expected, "{identity}");
        }
        // What had to be changed gets the identity's hash: no two identities share a file.
        let distinct = [
            "a b", "a_b", "a\tb", "shop~web", "shop/web", "", "_", ".x", "_.x",
        ];
        let names: std::collections::BTreeSet<String> =
            distinct.iter().map(|i| file_name(i)).collect();
        assert_eq!(names.len(), distinct.len(), "{names:?}");
        assert!(file_name("a b").starts_with("a_b-"), "{}", file_name("a b"));
        assert!(file_name("../etc").starts_with("_..~etc-"));
        // Long identities (a 245-character compose project, say) make short names.
        for len in [200, 245, 250, 1000, 10_000] {
            let long = "x".repeat(len);
            let name = file_name(&long);
            assert!(
                name.len() + ".invalid".len() <= 255,
                "{len}: {}",
                name.len()
            );
            assert_ne!(name, file_name(&"x".repeat(len + 1)));
        }
        let unicode = "é".repeat(300);
        assert!(file_name(&unicode).len() <= 230);
        // Stable from release to release.
        assert_eq!(file_name("a b"), "a_b-e63f991904833892.json");
    }
}
