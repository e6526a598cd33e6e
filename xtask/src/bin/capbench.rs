//! The capability-heavy microbenchmark: a tight loop of `setgroups(0, NULL)`, which as root makes
//! exactly one capability check (CAP_SETGID, from ns_capable_setid) per call and no other work
//! worth the name. Prints `calls=N ns_per_call=X seconds=Y`.
//!
//! Usage: capbench CALLS [THREADS]

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let threads: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let per_thread = calls / threads;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    // SAFETY: setgroups(0, NULL) with a raw syscall (glibc's wrapper would
                    // broadcast it to every thread).
                    let rc = unsafe {
                        libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>())
                    };
                    if rc != 0 {
                        eprintln!(
                            "capbench: setgroups failed: {}",
                            std::io::Error::last_os_error()
                        );
                        std::process::exit(1);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = started.elapsed();
    let total = per_thread * threads;
    println!(
        "calls={total} ns_per_call={:.1} seconds={:.3}",
        elapsed.as_nanos() as f64 / per_thread as f64,
        elapsed.as_secs_f64()
    );
}
