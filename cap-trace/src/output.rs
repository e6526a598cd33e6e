//! Writing results: to stdout, or to a file replaced atomically (temp file, fsync, rename) so
//! that a reader never sees half a profile and a crash never loses the previous one.

use std::io::Write;
use std::path::Path;

use crate::error::Failure;

/// Writes `data` to `path` atomically.
///
/// Only regular files are replaced. A path that names something else (`/dev/null`,
/// `/dev/stdout`, a FIFO) is written in place: renaming over it would replace the device or
/// pipe with a plain file (as root, for every process on the machine). A symlink is followed,
/// so the link survives and its target is replaced; an existing file keeps its permissions.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let existing = match std::fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(meta) = &existing
        && !meta.is_file()
    {
        if meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        return file.write_all(data).and_then(|()| file.flush());
    }
    let target = match &existing {
        Some(_) if std::fs::symlink_metadata(path)?.file_type().is_symlink() => {
            std::fs::canonicalize(path)?
        }
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        if let Some(meta) = &existing {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a rendered result to `output` (atomically) or to stdout.
pub fn emit(output: Option<&Path>, text: &str) -> Result<(), Failure> {
    match output {
        Some(path) => write_atomic(path, text.as_bytes())
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display()))),
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => Ok(()),
                // `cap-trace ... | head` is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(Failure::runtime(format!("cannot write to stdout: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("cap-trace-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
        assert_eq!(err.code, crate::error::exit::RUNTIME);
        assert!(
            err.message
                .contains("cannot write /nonexistent-dir-cap-trace/p.json")
        );
    }

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cap-trace-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_fifo_is_written_in_place_not_replaced() {
        use std::os::unix::fs::FileTypeExt as _;
        let dir = scratch_dir("fifo");
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
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
    fn a_symlink_survives_and_its_target_is_replaced() {
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
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch_dir("mode");
        let path = dir.join("p.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = scratch_dir("dir");
        let err = write_atomic(&dir, b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::IsADirectory);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
