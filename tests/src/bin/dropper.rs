//! A workload for the tests that drops privileges the way Apache httpd does: as root it gives
//! up its groups, its group and its user for nobody's, and when that fails it says so and
//! goes on as root (Apache logs `setgid: unable to set group id` and serves). It exits 0
//! either way: only the privilege drop tells a good run from a bad one.

// A binary of the tests package: the library's dependencies are not all used here.
#![allow(unused_crate_dependencies)]

fn main() {
    const NOBODY: u32 = 65534;
    let gid = NOBODY;
    // SAFETY: plain set*id calls in a single-threaded program.
    unsafe {
        if libc::setgroups(1, &raw const gid) != 0 {
            eprintln!("dropper: setgroups: {}", std::io::Error::last_os_error());
        }
        if libc::setgid(NOBODY) != 0 {
            eprintln!(
                "dropper: setgid: unable to set group id: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::setuid(NOBODY) != 0 {
            eprintln!(
                "dropper: setuid: unable to set user id: {}",
                std::io::Error::last_os_error()
            );
        }
        println!("dropper: serving as uid {}", libc::getuid());
    }
}
