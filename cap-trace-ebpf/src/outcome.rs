//! Outcome tracking: a denied check opens a per-thread [`Pending`] entry, and `sys_exit` turns it
//! into an [`OutcomeKey`], how the syscall that hit the wall ended.

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xsub};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::map,
    maps::{HashMap, LruHashMap},
    programs::RawTracePointContext,
};
use cap_trace_common::{COMM_LEN, OutcomeEvent, OutcomeKey, Pending, event_kind, stat};

use crate::maps::{BPF_F_NO_PREALLOC, Counted, EVENTS, bump, count_in};

/// Number of live `PENDING` entries: lets `sys_exit` return after one load in the common case.
#[unsafe(no_mangle)]
static mut PENDING_NOW: u64 = 0;

#[map]
pub(crate) static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(8192, 0);

#[map]
static OUTCOMES: HashMap<OutcomeKey, u64> = HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

#[inline(always)]
pub(crate) fn pending_now() -> u64 {
    unsafe { core::ptr::read_volatile(&raw const PENDING_NOW) }
}

#[inline(always)]
pub(crate) fn open_pending(
    tid: u32,
    cgroup_id: u64,
    cap_bit: u64,
    syscall: u32,
    comm: [u8; COMM_LEN],
) {
    let pending = Pending {
        cgroup_id,
        denied: cap_bit,
        syscall,
        _pad: 0,
        comm,
    };
    if PENDING.insert(&tid, &pending, 0).is_ok() {
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut PENDING_NOW, 1) };
    } else {
        bump(stat::PENDING_FULL);
    }
}

pub(crate) fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i32> {
    if pending_now() == 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let pending = unsafe { *PENDING.get_ptr(&tid).ok_or(0)? };
    let _ = PENDING.remove(&tid);
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
        Counted::Full => bump(stat::OUTCOME_KEYS_FULL),
    }
    match EVENTS.reserve::<OutcomeEvent>(0) {
        Some(mut entry) => {
            entry.write(OutcomeEvent {
                kind: event_kind::OUTCOME,
                tgid: (pid_tgid >> 32) as u32,
                tid,
                _pad: 0,
                boot_ns: unsafe { bpf_ktime_get_boot_ns() },
                key,
            });
            entry.submit(0);
        }
        None => bump(stat::RINGBUF_LOST),
    }
    Ok(())
}
