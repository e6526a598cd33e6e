//! Writing results: to stdout, or to a file replaced atomically (temp file, fsync, rename) so
//! that a reader never sees half a profile and a crash never loses the previous one.
//!
//! cap-trace runs as root, often in directories other users can write to (`/tmp`, a CI
//! workspace, an export directory). So a path is never simply opened: the directory is reached
//! one component at a time without following a symbolic link another user owns, the directory
//! itself must be one only root or the caller controls (or a sticky one such as `/tmp`), the
//! temp file gets an unpredictable name and is created exclusively without following links,
//! and the final name is replaced by `renameat` in that directory, never written through.

use std::ffi::{CString, OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

/// Symbolic links followed while resolving one path, as the kernel's own limit.
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("refusing to write {path}: {why}; write it somewhere only root or you control")]
    Untrusted { path: String, why: String },
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

/// Who may write a new file: the default mode (`0666` less the umask, as `File::create`), or
/// owner-only (`0600`, for the daemon's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Default,
    Private,
}

/// Writes `data` to `path` atomically, with the default mode for a new file.
///
/// Only regular files are replaced. A path that names something else (`/dev/null`,
/// `/dev/stdout`, a FIFO) owned by root or the caller is written in place: renaming over it
/// would replace the device or pipe with a plain file (as root, for every process on the
/// machine). A symbolic link owned by root or the caller is followed, so the link survives and
/// its target is replaced; one owned by another user is refused. A replaced file keeps its
/// permission bits when it belonged to the caller; the new file is always the caller's.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), WriteError> {
    write_file(path, data, Mode::Default)
}

/// [`write_atomic`] with a chosen mode: [`Mode::Private`] makes the file `0600` whatever it was.
pub fn write_file(path: &Path, data: &[u8], mode: Mode) -> Result<(), WriteError> {
    let caller = Caller::current();
    let io = io_error(path);
    match resolve(path, &caller)? {
        Target::Replace {
            dir,
            name,
            existing,
        } => replace(&dir, &name, data, mode, existing.as_ref(), &caller).map_err(io),
        Target::InPlace(fd) => write_to(fd, data).map_err(io),
    }
}

/// Checks, before any work is done, that `path` could be written: its directory exists, is
/// one cap-trace may write into, and is writable. Nothing is created.
pub fn check_writable(path: &Path) -> Result<(), WriteError> {
    let io = io_error(path);
    match resolve(path, &Caller::current())? {
        Target::Replace { dir, .. } => {
            // SAFETY: a live directory descriptor and a NUL-terminated name.
            check(unsafe {
                libc::faccessat(dir.as_raw_fd(), c".".as_ptr(), libc::W_OK, libc::AT_EACCESS)
            })
            .map(drop)
            .map_err(io)
        }
        Target::InPlace(_) => Ok(()),
    }
}

/// What writing `path` means once it is resolved.
enum Target {
    /// A regular file (or none yet): replaced by a rename in its directory.
    Replace {
        dir: OwnedFd,
        name: OsString,
        existing: Option<libc::stat>,
    },
    /// A device, FIFO or socket, open for writing in place.
    InPlace(OwnedFd),
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Resolves `path` without following what another user controls.
fn resolve(path: &Path, caller: &Caller) -> Result<Target, WriteError> {
    let display = path.display().to_string();
    let io = io_error(path);
    let untrusted = |why: String| WriteError::Untrusted {
        path: display.clone(),
        why,
    };
    let mut path = path.to_path_buf();
    let mut links = 0;
    loop {
        let (dir, name) = split(&path).map_err(&io)?;
        let dir_fd = open_dir(&dir, caller, &mut links).map_err(|e| e.with_path(&display))?;
        let Some(st) = lstat_at(&dir_fd, &name).map_err(&io)? else {
            return Ok(Target::Replace {
                dir: dir_fd,
                name,
                existing: None,
            });
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {
                return Ok(Target::Replace {
                    dir: dir_fd,
                    name,
                    existing: Some(st),
                });
            }
            libc::S_IFDIR => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "is a directory",
                )));
            }
            libc::S_IFLNK => {
                if !caller.trusts(st.st_uid) {
                    return Err(untrusted(format!(
                        "it is a symbolic link owned by {}",
                        user_name(st.st_uid)
                    )));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(io(std::io::Error::from_raw_os_error(libc::ELOOP)));
                }
                // `/dev/stdout` leads to /proc/self/fd/1, a link to an open file that may
                // have no path (a pipe, a socket): write to what it is open on.
                if on_procfs(&dir_fd) {
                    let fd = open_at(dir_fd.as_raw_fd(), &name, libc::O_WRONLY, 0).map_err(&io)?;
                    if fstat(&fd).map_err(&io)?.st_mode & libc::S_IFMT != libc::S_IFREG {
                        return Ok(Target::InPlace(fd));
                    }
                }
                let target = read_link_at(&dir_fd, &name).map_err(&io)?;
                path = dir.join(target);
            }
            _ => {
                if !caller.trusts(st.st_uid) {
                    return Err(untrusted(format!(
                        "it is a special file owned by {}",
                        user_name(st.st_uid)
                    )));
                }
                let fd = open_at(
                    dir_fd.as_raw_fd(),
                    &name,
                    libc::O_WRONLY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(&io)?;
                return Ok(Target::InPlace(fd));
            }
        }
    }
}

/// Writes a rendered result to `output` (atomically) or to stdout.
pub fn emit(output: Option<&Path>, text: &str) -> Result<(), WriteError> {
    match output {
        Some(path) => Ok(write_atomic(path, text.as_bytes())?),
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => Ok(()),
                // `cap-trace ... | head` is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(WriteError::Stdout(e)),
            }
        }
    }
}

/// Whose files and links may be followed: root's and the caller's own.
struct Caller {
    euid: u32,
    umask: u32,
}

impl Caller {
    fn current() -> Caller {
        // Read, not set and restored: umask(2) is process-wide, and another thread may be
        // creating a file meanwhile.
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022);
        Caller {
            // SAFETY: geteuid cannot fail.
            euid: unsafe { libc::geteuid() },
            umask,
        }
    }

    fn trusts(&self, uid: u32) -> bool {
        uid == 0 || uid == self.euid
    }
}

/// Why a directory could not be used.
enum DirError {
    Io(std::io::Error),
    Untrusted(String),
}

impl DirError {
    fn with_path(self, path: &str) -> WriteError {
        match self {
            DirError::Io(source) => WriteError::Io {
                path: path.to_owned(),
                source,
            },
            DirError::Untrusted(why) => WriteError::Untrusted {
                path: path.to_owned(),
                why,
            },
        }
    }
}

impl From<std::io::Error> for DirError {
    fn from(e: std::io::Error) -> DirError {
        DirError::Io(e)
    }
}

/// `path` as (directory, file name); a bare name is in the current directory.
fn split(path: &Path) -> std::io::Result<(PathBuf, OsString)> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

fn cstr(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn check(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn open_at(
    dir: libc::c_int,
    name: &OsStr,
    flags: libc::c_int,
    mode: u32,
) -> std::io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: a NUL-terminated name; the descriptor returned is owned by the OwnedFd.
    let fd = check(unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: openat returned a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live descriptor and a valid stat buffer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) })?;
    Ok(st)
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
fn lstat_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<Option<libc::stat>> {
    let c = cstr(name)?;
    // SAFETY: as in fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live descriptor, a NUL-terminated name and a valid stat buffer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &raw mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match check(rc) {
        Ok(_) => Ok(Some(st)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_link_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<PathBuf> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: a live descriptor, a NUL-terminated name and a buffer of the length given.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// Opens the directory `path` one component at a time. A symbolic link on the way is
/// followed only when root or the caller owns it, and the directory reached must be one only
/// they can change (owned by them, and not writable by others unless sticky).
fn open_dir(path: &Path, caller: &Caller, links: &mut usize) -> Result<OwnedFd, DirError> {
    let mut pending: Vec<OsString> = Vec::new();
    let mut seen = PathBuf::from(if path.is_absolute() { "/" } else { "." });
    let start = if path.is_absolute() { "/" } else { "." };
    let mut fd = open_at(
        libc::AT_FDCWD,
        OsStr::new(start),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    push_components(&mut pending, path);
    while let Some(component) = pending.pop() {
        if component == "/" {
            fd = open_at(
                libc::AT_FDCWD,
                OsStr::new("/"),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            seen = PathBuf::from("/");
            continue;
        }
        match open_at(
            fd.as_raw_fd(),
            &component,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        ) {
            Ok(next) => {
                fd = next;
                seen.push(&component);
            }
            // ELOOP: the component is a symbolic link (ENOTDIR on some file systems).
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let Some(st) = lstat_at(&fd, &component)? else {
                    return Err(e.into());
                };
                if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                    return Err(e.into());
                }
                if !caller.trusts(st.st_uid) {
                    return Err(DirError::Untrusted(format!(
                        "{} is a symbolic link owned by {}",
                        seen.join(&component).display(),
                        user_name(st.st_uid)
                    )));
                }
                *links += 1;
                if *links > MAX_LINKS {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP).into());
                }
                push_components(&mut pending, &read_link_at(&fd, &component)?);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let st = fstat(&fd)?;
    if !caller.trusts(st.st_uid) {
        return Err(DirError::Untrusted(format!(
            "the directory {} belongs to {}",
            seen.display(),
            user_name(st.st_uid)
        )));
    }
    if st.st_mode & libc::S_IWOTH != 0 && st.st_mode & libc::S_ISVTX == 0 {
        return Err(DirError::Untrusted(format!(
            "anyone may write to the directory {} (it is not sticky)",
            seen.display()
        )));
    }
    Ok(fd)
}

/// Pushes the components of `path` on a stack, first component last (so it pops first); an
/// absolute path starts again from `/`.
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let mut parts: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::RootDir => parts.push(OsString::from("/")),
            std::path::Component::CurDir => {}
            other => parts.push(other.as_os_str().to_owned()),
        }
    }
    stack.extend(parts.into_iter().rev());
}

/// An unpredictable temp name, short enough for any target name's directory.
fn temp_name() -> OsString {
    let mut bytes = [0u8; 12];
    // SAFETY: a buffer of the length given. A short read leaves zeros, still combined with the
    // pid and the time below.
    let _ = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let mut name = format!(".cap-trace-{}-{nanos:08x}-", std::process::id());
    for b in bytes {
        name.push_str(&format!("{b:02x}"));
    }
    name.push_str(".tmp");
    OsString::from(name)
}

/// Writes a temp file in `dir` and renames it over `name`.
fn replace(
    dir: &OwnedFd,
    name: &OsStr,
    data: &[u8],
    mode: Mode,
    existing: Option<&libc::stat>,
    caller: &Caller,
) -> std::io::Result<()> {
    let perm = match (mode, existing) {
        (Mode::Private, _) => 0o600,
        // The caller's own file keeps its permissions; another user's planted file does not
        // pass its (perhaps world-writable) mode on.
        (Mode::Default, Some(st)) if st.st_uid == caller.euid => st.st_mode & 0o7777,
        (Mode::Default, _) => 0o666 & !caller.umask,
    };
    let (tmp, file) = loop {
        let tmp = temp_name();
        match open_at(
            dir.as_raw_fd(),
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        ) {
            Ok(fd) => break (tmp, std::fs::File::from(fd)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        let mut file = file;
        // SAFETY: a live descriptor; fchmod does not follow anything.
        check(unsafe { libc::fchmod(file.as_raw_fd(), perm as libc::mode_t) })?;
        file.write_all(data)?;
        file.sync_all()?;
        let from = cstr(&tmp)?;
        let to = cstr(name)?;
        // SAFETY: two NUL-terminated names in the same live directory.
        check(unsafe {
            libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr())
        })?;
        // Make the rename itself durable.
        // SAFETY: a live directory descriptor.
        let _ = unsafe { libc::fsync(dir.as_raw_fd()) };
        Ok(())
    })();
    if result.is_err()
        && let Ok(c) = cstr(&tmp)
    {
        // SAFETY: a NUL-terminated name in a live directory.
        unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
    }
    result
}

fn write_to(fd: OwnedFd, data: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::from(fd);
    file.write_all(data)?;
    file.flush()
}

fn on_procfs(dir: &OwnedFd) -> bool {
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a live descriptor and a valid statfs buffer.
    let ok = unsafe { libc::fstatfs(dir.as_raw_fd(), &raw mut fs) } == 0;
    // `f_type` is signed in glibc and unsigned in musl; both widen to i128 without a cast.
    ok && i128::from(fs.f_type) == i128::from(libc::PROC_SUPER_MAGIC)
}

/// `name (uid N)` for a uid, or `uid N`.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| format!("{name} (uid {uid})"))
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cap-trace-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_atomically_and_leaves_no_temp_file() {
        let dir = scratch_dir("atomic");
        let path = dir.join("p.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_keeps_the_old_file() {
        let missing = Path::new("/nonexistent-dir-cap-trace/p.json");
        assert!(write_atomic(missing, b"x").is_err());
        let err = emit(Some(missing), "x").unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot write /nonexistent-dir-cap-trace/p.json"),
            "{err}"
        );
    }

    #[test]
    fn a_fifo_is_written_in_place_not_replaced() {
        use std::os::unix::fs::FileTypeExt as _;
        let dir = scratch_dir("fifo");
        let fifo = dir.join("pipe");
        let c = CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A non-blocking reader lets the writer open the FIFO without a second thread.
        let mut reader = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap()
        };
        write_atomic(&fifo, b"profile").unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut reader, &mut got).unwrap();
        assert_eq!(got, "profile");
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO was replaced by {kind:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dev_null_stays_a_device() {
        use std::os::unix::fs::FileTypeExt as _;
        write_atomic(Path::new("/dev/null"), b"discarded").unwrap();
        let kind = std::fs::symlink_metadata("/dev/null").unwrap().file_type();
        assert!(kind.is_char_device(), "/dev/null became {kind:?}");
    }

    #[test]
    fn dev_stdout_is_written_to_what_it_is_open_on() {
        // The test's stdout may be a pipe or a file; /dev/stderr through a pipe we make.
        let (read, write) = {
            let mut fds = [0; 2];
            // SAFETY: a valid array of two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: pipe returned two fresh descriptors.
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        };
        let path = format!("/proc/self/fd/{}", write.as_raw_fd());
        write_atomic(Path::new(&path), b"through the pipe").unwrap();
        drop(write);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut got).unwrap();
        assert_eq!(got, "through the pipe");
    }

    #[test]
    fn the_callers_own_symlink_survives_and_its_target_is_replaced() {
        let dir = scratch_dir("link");
        let target = dir.join("real.json");
        let link = dir.join("link.json");
        std::fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        // A relative link and a link through a linked directory too.
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink("sub", dir.join("via")).unwrap();
        std::os::unix::fs::symlink("../real.json", sub.join("rel.json")).unwrap();
        write_atomic(&dir.join("via/rel.json"), b"newer").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "newer");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_callers_own_file_keeps_its_mode_and_private_is_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch_dir("mode");
        let path = dir.join("p.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        write_file(&path, b"private", Mode::Private).unwrap();
        assert_eq!(mode(&path), 0o600);
        let fresh = dir.join("fresh.json");
        write_file(&fresh, b"x", Mode::Private).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = scratch_dir("dir");
        let err = write_atomic(&dir, b"x").unwrap_err();
        assert!(
            matches!(&err, WriteError::Io { source, .. } if source.kind() == std::io::ErrorKind::IsADirectory),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temp_names_are_short_and_differ() {
        let a = temp_name();
        let b = temp_name();
        assert_ne!(a, b);
        assert!(a.len() < 64, "{a:?}");
        // A target name of 255 bytes is fine: the temp name does not contain it.
        let dir = scratch_dir("long");
        let long = dir.join("x".repeat(250) + ".json");
        write_atomic(&long, b"x").unwrap();
        assert_eq!(std::fs::read(&long).unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
