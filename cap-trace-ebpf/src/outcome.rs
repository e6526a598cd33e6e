//! Outcome tracking: a denied check opens a per-thread [`Pending`] entry, and `sys_exit` turns it
//! into an [`OutcomeKey`], how the syscall that hit the wall ended.
//!
//! Every syscall on the machine runs `sys_exit`: `PENDING_NOW`, the number of live entries, lets
//! it return after one load in the common case. The entry also tells a later check in the same
//! syscall what was denied before it (`CheckKey::denied_before`: DAC_READ_SEARCH denied, then
//! DAC_OVERRIDE granted).

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xsub};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::map,
    maps::{HashMap, LruHashMap},
    programs::RawTracePointContext,
};
use cap_trace_common::{OutcomeEvent, OutcomeKey, Pending, event_kind, loss_kind, stat};

use crate::losses::lost;
use crate::maps::{BPF_F_NO_PREALLOC, Counted, EVENTS, bump, count_in};

/// Number of live `PENDING` entries: lets `sys_exit` return after one load in the common case.
#[unsafe(no_mangle)]
static mut PENDING_NOW: u64 = 0;

#[map]
static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(8192, 0);

#[map]
static OUTCOMES: HashMap<OutcomeKey, u64> = HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

#[inline(always)]
pub(crate) fn pending_now() -> u64 {
    // SAFETY: an aligned global `u64`, changed only by atomic adds.
    unsafe { core::ptr::read_volatile(&raw const PENDING_NOW) }
}

/// The capabilities denied earlier in the syscall this thread is in (other than this check's),
/// and, when this check is a wall (`wall`: denied and audited, not a probe), its capability
/// recorded in the thread's pending entry, which is opened if there is none. `this` is the entry
/// this check alone would open. The entry lives until `sys_exit`, so it names this syscall
/// instance exactly.
#[inline(always)]
pub(crate) fn note_denial(tid: u32, this: Pending, wall: bool) -> u64 {
    let entry = if pending_now() != 0 {
        PENDING.get_ptr_mut(&tid)
    } else {
        None
    };
    let Some(entry) = entry else {
        if wall {
            open_pending(tid, &this);
        }
        return 0;
    };
    // SAFETY: `entry` is this thread's, from a map lookup that succeeded: valid for the whole run.
    let entry = unsafe { &mut *entry };
    if entry.syscall == this.syscall && entry.cgroup_id == this.cgroup_id {
        let before = entry.denied & !this.denied;
        if wall {
            entry.denied |= this.denied;
        }
        return before;
    }
    if wall {
        // Left over from a syscall whose exit we did not see (the thread exited).
        *entry = this;
    }
    0
}

#[inline(always)]
fn open_pending(tid: u32, pending: &Pending) {
    if PENDING.insert(&tid, pending, 0).is_ok() {
        // SAFETY: an atomic add to an aligned global `u64`.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut PENDING_NOW, 1) };
    } else {
        lost(stat::PENDING_FULL, pending.cgroup_id, loss_kind::OUTCOMES);
    }
}

pub(crate) fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i32> {
    if pending_now() == 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: a copy of a value from a map lookup that succeeded: valid for the whole run.
    let pending = unsafe { *PENDING.get_ptr(&tid).ok_or(0)? };
    let _ = PENDING.remove(&tid);
    // SAFETY: an atomic subtract from an aligned global `u64`.
    unsafe { atomic_xsub::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut PENDING_NOW, 1) };
    // sys_exit(struct pt_regs *regs, long ret)
    let ret = ctx.arg::<u64>(1) as i64;
    let key = OutcomeKey {
        cgroup_id: pending.cgroup_id,
        denied: pending.denied,
        syscall: pending.syscall,
        result: if ret < 0 { ret as i32 } else { 0 },
        comm: pending.comm,
    };
    bump(stat::OUTCOMES);
    match count_in(&OUTCOMES, &key, 1) {
        Counted::Existing => return Ok(()),
        Counted::New => {}
        Counted::Full => lost(stat::OUTCOME_KEYS_FULL, key.cgroup_id, loss_kind::OUTCOMES),
    }
    match EVENTS.reserve::<OutcomeEvent>(0) {
        Some(mut entry) => {
            entry.write(OutcomeEvent {
                kind: event_kind::OUTCOME,
                tgid: (pid_tgid >> 32) as u32,
                tid,
                _pad: 0,
                // SAFETY: a helper without arguments.
                boot_ns: unsafe { bpf_ktime_get_boot_ns() },
                key,
            });
            entry.submit(0);
        }
        None => lost(stat::RINGBUF_LOST, key.cgroup_id, loss_kind::RING_BUFFER),
    }
    Ok(())
}
