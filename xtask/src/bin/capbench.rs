//! The capability-heavy microbenchmark: a tight loop of `setgroups(0, NULL)`, which as root makes
//! exactly one capability check (CAP_SETGID, from ns_capable_setid) per call and no other work
//! worth the name. Prints `calls=N ns_per_call=X low_ns_per_call=L seconds=Y`: `X` over the whole
//! run, `L` the 10th percentile of the run's 100 equal slices (each thread's), where what else
//! runs on a shared machine weighs least.
//!
//! With TOUCH_KIB, each thread writes one byte per cache line of a buffer that large between
//! calls, as a workload doing real work between its checks would: what tracing costs when its
//! data has left the caches (the timings then include the writes; read the programs' own cost
//! from the kernel's accounting).
//!
//! Usage: capbench CALLS [THREADS [TOUCH_KIB]]

// A second binary of the xtask package: it links xtask's dependencies and needs only libc.
#![allow(unused_crate_dependencies)]

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let threads: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let touch: usize = args
        .next()
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(0)
        * 1024;
    let per_thread = calls / threads;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; touch];
                // Timed in slices: the quickest show the cost of a call without what the rest of a
                // shared machine adds at random.
                let slices = SLICES.min(per_thread.max(1));
                let mut slice_ns = Vec::with_capacity(slices as usize);
                for s in 0..slices {
                    let n = per_thread / slices + u64::from(s < per_thread % slices);
                    let t = Instant::now();
                    for _ in 0..n {
                        setgroups();
                        for byte in buffer.iter_mut().step_by(64) {
                            // Volatile: the writes are the point, not their result.
                            unsafe { std::ptr::write_volatile(byte, byte.wrapping_add(1)) };
                        }
                    }
                    if n > 0 {
                        slice_ns.push(t.elapsed().as_nanos() as f64 / n as f64);
                    }
                }
                slice_ns
            })
        })
        .collect();
    let mut slice_ns: Vec<f64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    let total = per_thread * threads;
    slice_ns.sort_by(f64::total_cmp);
    let low = slice_ns
        .get(slice_ns.len() / 10)
        .copied()
        .unwrap_or(f64::NAN);
    println!(
        "calls={total} ns_per_call={:.1} low_ns_per_call={low:.1} seconds={:.3}",
        elapsed.as_nanos() as f64 / per_thread as f64,
        elapsed.as_secs_f64()
    );
}

/// Slices each thread's calls are timed in.
const SLICES: u64 = 100;

fn setgroups() {
    // SAFETY: setgroups(0, NULL) with a raw syscall (glibc's wrapper would broadcast it to every
    // thread).
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) };
    if rc != 0 {
        eprintln!(
            "capbench: setgroups failed: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
}
