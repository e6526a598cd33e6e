//! A workload for the outcome tests: two threads make denied capability checks at the same time,
//! one whose syscalls fail and one whose syscalls succeed anyway, each under its own name so that
//! their outcomes can be told apart.
//!
//! Usage (as an unprivileged user): `denials ROOT_FILE OWN_FILE N`
//! - thread `walls`: N times `chown(ROOT_FILE, nobody)`: CHOWN is denied and chown fails (EPERM);
//! - thread `detours`: N times `chmod(OWN_FILE, 02644)` on a file of its own whose group it is
//!   not in: FSETID is denied, the kernel drops the set-group-ID bit, and chmod succeeds.
//!
//! Exits non-zero unless every call ended as expected, and prints what each thread saw.

// A helper binary of the test package: it links the package's dependencies and needs only libc.
#![allow(unused_crate_dependencies)]

use std::ffi::CString;
use std::sync::{Arc, Barrier};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root_file, own_file, n] = args.as_slice() else {
        eprintln!("usage: denials ROOT_FILE OWN_FILE N");
        std::process::exit(2);
    };
    let n: u32 = n.parse().expect("N is a number");
    let root_file = CString::new(root_file.as_str()).unwrap();
    let own_file = CString::new(own_file.as_str()).unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let walls = {
        let barrier = Arc::clone(&barrier);
        std::thread::spawn(move || {
            name_thread(c"walls");
            barrier.wait();
            // SAFETY: chown on a NUL-terminated path.
            tally(n, || unsafe {
                libc::chown(root_file.as_ptr(), 65534, u32::MAX)
            })
        })
    };
    let detours = std::thread::spawn(move || {
        name_thread(c"detours");
        barrier.wait();
        // SAFETY: chmod on a NUL-terminated path.
        tally(n, || unsafe { libc::chmod(own_file.as_ptr(), 0o2644) })
    });
    let (walls, detours) = (walls.join().unwrap(), detours.join().unwrap());
    println!(
        "walls: {} EPERM of {n}; detours: {} ok of {n}",
        walls.eperm, detours.ok
    );
    if walls.eperm != n || detours.ok != n {
        std::process::exit(1);
    }
}

#[derive(Default)]
struct Tally {
    ok: u32,
    eperm: u32,
}

fn tally(n: u32, call: impl Fn() -> libc::c_int) -> Tally {
    let mut tally = Tally::default();
    for _ in 0..n {
        if call() == 0 {
            tally.ok += 1;
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            tally.eperm += 1;
        }
    }
    tally
}

fn name_thread(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of under 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}
