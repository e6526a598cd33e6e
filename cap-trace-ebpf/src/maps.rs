//! The maps several modules share: the dedupe map `CHECKS`, the statistics `STATS` and the ring
//! buffer `EVENTS`, and how they are counted into ([`count_in`], [`bump`]). A map with one user
//! sits beside it.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use cap_trace_common::{CheckKey, stat};

pub(crate) const BPF_F_NO_PREALLOC: u32 = 1;

const EEXIST: i32 = 17;

#[map]
pub(crate) static CHECKS: HashMap<CheckKey, u64> =
    HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// How `count_in` counted.
pub(crate) enum Counted {
    /// The key was there: its count went up.
    Existing,
    /// The key is new, with `n` as its count.
    New,
    /// `CHECKS` is full: nothing was counted.
    Full,
}

/// Adds `n` to `key`'s count in `map` (`CHECKS` or `OUTCOMES`), inserting the key if it is new.
#[inline(always)]
pub(crate) fn count_in<K>(map: &HashMap<K, u64>, key: &K, n: u64) -> Counted {
    if let Some(total) = map.get_ptr_mut(key) {
        atomic_add(total, n);
        return Counted::Existing;
    }
    match map.insert(key, &n, u64::from(BPF_NOEXIST)) {
        Ok(()) => Counted::New,
        Err(e) if e == -EEXIST => {
            // Another CPU inserted the same key between our lookup and insert.
            if let Some(total) = map.get_ptr_mut(key) {
                atomic_add(total, n);
            }
            Counted::Existing
        }
        Err(_) => Counted::Full,
    }
}

#[inline(always)]
fn atomic_add(count: *mut u64, n: u64) {
    // SAFETY: `count` points into a map value, valid for the whole run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, n) };
}

#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: this CPU's element of a per-CPU array, from a successful lookup.
        unsafe { *counter += 1 };
    }
}
