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
//! CALL picks the call (`setgroups` by default):
//! - `getpid`: a syscall without a capability check, what any process on the machine makes;
//! - `denied`: `setgroups(0, NULL)` by a user without CAP_SETGID: a denied check whose syscall
//!   fails with EPERM, every call (the wall a workload keeps hitting);
//! - `detour:PATH`: `chmod(PATH, 02644)` on the caller's own file of a group it is not in: CAP_FSETID
//!   is denied, the kernel drops the bit, and chmod succeeds, every call (a denial whose outcome
//!   must be followed every time).
//!
//! Usage: capbench CALLS [THREADS [TOUCH_KIB [CALL]]]

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
    let call = match args.next() {
        None => Call::Setgroups,
        Some(name) => Call::parse(&name).unwrap_or_else(|| {
            eprintln!("capbench: unknown call {name} (setgroups, getpid, denied, detour:PATH)");
            std::process::exit(2);
        }),
    };
    let call: &'static Call = Box::leak(Box::new(call));
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
                        call.make();
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

/// The call the loop makes.
enum Call {
    Setgroups,
    Getpid,
    Denied,
    Detour(std::ffi::CString),
}

impl Call {
    fn parse(name: &str) -> Option<Call> {
        match name {
            "setgroups" => Some(Call::Setgroups),
            "getpid" => Some(Call::Getpid),
            "denied" => Some(Call::Denied),
            _ => Some(Call::Detour(
                std::ffi::CString::new(name.strip_prefix("detour:")?).ok()?,
            )),
        }
    }

    /// Makes the call once; exits if it did not end as it should.
    fn make(&self) {
        // Raw syscalls: glibc's setgroups would broadcast to every thread, and a libc may cache
        // getpid.
        // SAFETY: setgroups(0, NULL), getpid() and chmod on a NUL-terminated path.
        let (rc, expected) = unsafe {
            match self {
                Call::Setgroups | Call::Denied => (
                    libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                    if matches!(self, Call::Denied) { -1 } else { 0 },
                ),
                Call::Getpid => (libc::syscall(libc::SYS_getpid), 0),
                Call::Detour(path) => (libc::syscall(libc::SYS_chmod, path.as_ptr(), 0o2644), 0),
            }
        };
        let errno = std::io::Error::last_os_error();
        let fine = if expected == 0 {
            rc >= 0
        } else {
            rc == -1 && errno.raw_os_error() == Some(libc::EPERM)
        };
        if !fine {
            eprintln!("capbench: the call ended with {rc} ({errno})");
            std::process::exit(1);
        }
    }
}
