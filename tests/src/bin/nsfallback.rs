//! A workload for the tests: starts a helper in a new mount namespace with
//! `clone(CLONE_NEWNS)`, and when that is refused (no CAP_SYS_ADMIN) falls back to a plain
//! fork, as real servers do. Either way the helper does its work and the program exits 0.

// A binary of the tests package: the library's dependencies are not all used here.
#![allow(unused_crate_dependencies)]

fn main() {
    // SAFETY: raw clone with only CLONE_NEWNS | SIGCHLD and no new stack behaves like fork.
    let mut pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_NEWNS | libc::SIGCHLD,
            0,
            0,
            0,
            0,
        )
    };
    if pid < 0 {
        let err = std::io::Error::last_os_error();
        eprintln!("nsfallback: clone(CLONE_NEWNS): {err}; falling back to fork");
        // SAFETY: fork in a single-threaded program.
        pid = libc::pid_t::from(unsafe { libc::fork() }).into();
    }
    match pid {
        0 => {
            // The helper: some work, then exit.
            let sum: u64 = (1..=1000).sum();
            std::process::exit(i32::from(sum != 500_500));
        }
        p if p < 0 => {
            eprintln!("nsfallback: fork: {}", std::io::Error::last_os_error());
            std::process::exit(2);
        }
        p => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(p as libc::pid_t, &raw mut status, 0) };
            let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            std::process::exit(i32::from(!ok));
        }
    }
}
