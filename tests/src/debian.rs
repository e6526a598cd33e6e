//! Real server software for the tests: a Debian bookworm image with apache2 and nginx as Debian
//! packages them, built from Debian's archive with `mmdebstrap` (`tests/image/debian-servers.sh`)
//! and imported into each engine with its `import`.
//!
//! The root file system is built once per machine and cached in [`CACHE_DIR`] under a hash of
//! its recipe (the build script and its customize hook): changing the recipe builds a new one.
//! Each engine imports it once, as an image whose tag carries the same hash.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::engine::Engine;
use crate::{skip_or_fail, workspace_root};

/// Where the built root file system is kept between runs (root's, not writable by others).
pub const CACHE_DIR: &str = "/var/cache/cap-trace-tests";

/// The recipe's files, in the order they are hashed.
const RECIPE: [&str; 2] = [
    "tests/image/debian-servers.sh",
    "tests/image/debian-servers-customize.sh",
];

/// PATH in the image (a Debian root's usual one; `import` sets no environment of its own).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// True when the image can be built here (mmdebstrap installed); else skips or fails.
pub fn available(test: &str) -> bool {
    let ok = Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok || skip_or_fail(
        test,
        "mmdebstrap is not installed (run `cargo xtask setup`)",
    )
}

/// The first 16 hex digits of the SHA-256 of the recipe's files, one after the other.
fn recipe_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut recipe = Vec::new();
        for file in RECIPE {
            recipe.extend(std::fs::read(workspace_root().join(file)).expect("read the recipe"));
        }
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run sha256sum");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&recipe)
            .expect("write to sha256sum");
        let out = child.wait_with_output().expect("run sha256sum");
        assert!(out.status.success(), "sha256sum of the image recipe failed");
        String::from_utf8_lossy(&out.stdout)[..16].to_owned()
    })
}

/// Opens (creating if needed) the cache directory, refusing one another user could write to.
fn cache_dir() -> PathBuf {
    let dir = PathBuf::from(CACHE_DIR);
    std::fs::create_dir_all(&dir).expect("create the image cache directory");
    let meta = std::fs::symlink_metadata(&dir).expect("stat the image cache directory");
    assert!(
        meta.is_dir() && meta.uid() == 0 && meta.permissions().mode() & 0o022 == 0,
        "{CACHE_DIR} must be a directory owned by root and writable by root alone"
    );
    dir
}

/// Holds an exclusive lock on a file of the cache directory while alive (test binaries run in
/// parallel and share the cache and the engines' storage).
struct Lock(#[allow(dead_code)] std::fs::File);

impl Lock {
    fn take(path: &Path) -> Lock {
        let file = std::fs::File::create(path).expect("create a lock file");
        // SAFETY: flock on an open file descriptor; released when the file is closed.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        Lock(file)
    }
}

/// The image's root file system as a tarball: from the cache, or built now (and cached).
pub fn tarball() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = cache_dir();
        let hash = recipe_hash();
        let tar = dir.join(format!("debian-servers-{hash}.tar"));
        let _lock = Lock::take(&dir.join(".debian-servers.lock"));
        if tar.exists() {
            return tar;
        }
        // Built beside its final name and renamed into place: never a half-written tarball.
        let partial = dir.join(format!(".debian-servers-{hash}.{}.tar", std::process::id()));
        let started = Instant::now();
        let out = Command::new("sh")
            .arg(workspace_root().join(RECIPE[0]))
            .arg(&partial)
            .output()
            .expect("run tests/image/debian-servers.sh");
        if !out.status.success() {
            let _ = std::fs::remove_file(&partial);
            panic!(
                "building the Debian server image failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::rename(&partial, &tar).expect("move the image into the cache");
        eprintln!(
            "built the Debian server image in {:.0} s: {}",
            started.elapsed().as_secs_f64(),
            tar.display()
        );
        tar
    })
}

/// The image in `engine`, imported from [`tarball`] once (per engine, across test runs).
pub fn image(engine: Engine) -> String {
    static DONE: Mutex<Vec<Engine>> = Mutex::new(Vec::new());
    let name = format!("cap-trace-test:debian-servers-{}", recipe_hash());
    let name = match engine {
        Engine::Podman => format!("localhost/{name}"),
        Engine::Docker => name,
    };
    let mut done = DONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if done.contains(&engine) {
        return name;
    }
    let tar = tarball();
    let _lock = Lock::take(&cache_dir().join(format!(".import-{}.lock", engine.name())));
    let exists = engine
        .cli()
        .args(["image", "inspect", &name])
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let started = Instant::now();
        engine.import_with_path(tar, &name, PATH);
        eprintln!(
            "imported the Debian server image into {} in {:.1} s",
            engine.name(),
            started.elapsed().as_secs_f64()
        );
    }
    done.push(engine);
    name
}
