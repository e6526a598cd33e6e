//! How a syscall with a denied check ends: a denial the workload may have hit (a "wall": denied,
//! audited) is noted in its thread's [`Slot`] in `PENDING`, and when the syscall returns, its
//! result becomes an [`OutcomeKey`] counted in `OUTCOMES` (the first of each key also goes through
//! the ring buffer).
//!
//! Two ways to learn the result, chosen at load time (separate programs: `TASK_WORK`):
//! - **Task work** (kernels with `bpf_task_work_schedule_resume`, Linux 6.18+): the denied check
//!   schedules a callback that runs when its thread returns to user space and reads the result
//!   from the thread's saved registers ([`crate::taskwork`]). Only syscalls with a followed
//!   denial pay anything.
//! - **`raw_syscalls:sys_exit`** ([`try_sys_exit`]) elsewhere: every syscall of every process on
//!   the host runs it, and takes the kernel's slow syscall path while any program is attached
//!   there. `PENDING_NOW`, the number of slots waiting for a result, lets it return after one load
//!   in the common case.
//!
//! The slot also tells a later check in the same syscall what was denied before it
//! (`CheckKey::denied_before`: DAC_READ_SEARCH denied, then DAC_OVERRIDE granted); `DENIALS`,
//! bumped by every denial noted, tells the repeat path whether one may have been
//! ([`LastCheck::denials`](cap_trace_common::LastCheck)).
//!
//! A slot stays in the map for its thread (LRU), with `denied` 0 between syscalls: the task work
//! lives in it, and a callback must not remove its own element.

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xsub};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    btf_maps::LruHashMap,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::{btf_map, map},
    maps::HashMap,
    programs::RawTracePointContext,
};
use cap_trace_common::{
    NO_SYSCALL, OutcomeEvent, OutcomeKey, Pending, event_kind, loss_kind, stat,
};

use crate::{
    losses::lost,
    maps::{BPF_F_NO_PREALLOC, Counted, EVENTS, bump, count_in},
    task::{current_syscall, current_task},
    taskwork::{self, bpf_task_work},
};

/// A thread's pending outcome and, on kernels with it, the task work that takes it.
#[repr(C)]
pub(crate) struct Slot {
    /// First, so that it is 8-byte aligned: the kernel finds it by its type's name.
    pub(crate) work: bpf_task_work,
    pub(crate) pending: Pending,
}

/// One slot per thread. BTF-defined: the kernel accepts a `bpf_task_work` only in a map whose
/// value type it can read.
#[btf_map]
pub(crate) static PENDING: LruHashMap<u32, Slot, 8192> = LruHashMap::new();

#[map]
static OUTCOMES: HashMap<OutcomeKey, u64> = HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

/// Number of slots waiting for a result (`denied` not 0): lets `sys_exit`, and checks, skip the
/// lookup in the common case. A result that never comes (the thread was killed in the syscall,
/// the slot evicted) leaves it one too high: that only costs lookups.
#[unsafe(no_mangle)]
static mut PENDING_NOW: u64 = 0;

/// Denials noted so far (see the module's doc).
#[unsafe(no_mangle)]
static mut DENIALS: u64 = 0;

const EPERM: i32 = 1;
const EACCES: i32 = 13;

#[inline(always)]
fn pending_now() -> u64 {
    // SAFETY: an aligned global `u64`, changed only by atomic adds.
    unsafe { core::ptr::read_volatile(&raw const PENDING_NOW) }
}

#[inline(always)]
pub(crate) fn denials() -> u64 {
    // SAFETY: an aligned global `u64`, changed only by atomic adds.
    unsafe { core::ptr::read_volatile(&raw const DENIALS) }
}

/// The capabilities denied earlier in the syscall this thread is in (other than this check's),
/// and, when this check is a wall (denied and audited, not a probe), its capability noted in the
/// thread's slot, whose outcome is then followed (`TASK_WORK`: by a task work, else by
/// `sys_exit`). `this` is what this check alone would note. A slot names one syscall instance
/// exactly: it is emptied when the syscall returns.
#[inline(always)]
pub(crate) fn note_denial<const TASK_WORK: bool>(
    task: *const u8,
    tid: u32,
    this: &Pending,
    wall: bool,
) -> u64 {
    // Null when the thread has no slot, never an `Option<*mut _>`: a `None` leaves the pointer
    // undefined, and LLVM may spill that register, which the verifier refuses as a read of an
    // uninitialised one ("R4 !read_ok": the fexit task-work program on Linux 6.19).
    let slot: *mut Slot = if pending_now() != 0 {
        PENDING.get_ptr_mut(tid).unwrap_or_default()
    } else {
        core::ptr::null_mut()
    };
    if wall {
        // SAFETY: an atomic add to an aligned global `u64`.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut DENIALS, 1) };
    }
    if !slot.is_null() {
        // SAFETY: this thread's slot, from a map lookup that succeeded: valid for the whole run.
        let pending = unsafe { &mut (*slot).pending };
        if pending.denied != 0
            && pending.syscall == this.syscall
            && pending.cgroup_id == this.cgroup_id
        {
            let before = pending.denied & !this.denied;
            if wall {
                pending.denied |= this.denied;
            }
            return before;
        }
    }
    if wall {
        if TASK_WORK {
            taskwork::follow(task, tid, slot, this);
        } else {
            // A slot found here is empty, or left over from a syscall whose exit was not seen.
            match if slot.is_null() {
                slot_of(tid)
            } else {
                Some(slot)
            } {
                Some(slot) => open(slot, this),
                None => lost(stat::PENDING_FULL, this.cgroup_id, loss_kind::OUTCOMES),
            }
        }
    }
    0
}

/// The thread's slot, made if it has none (`None` only if the map refuses it).
#[inline(always)]
pub(crate) fn slot_of(tid: u32) -> Option<*mut Slot> {
    if let Some(slot) = PENDING.get_ptr_mut(tid) {
        return Some(slot);
    }
    let empty = Slot {
        work: bpf_task_work::EMPTY,
        pending: Pending {
            cgroup_id: 0,
            denied: 0,
            syscall: NO_SYSCALL,
            _pad: 0,
            comm: [0; 16],
        },
    };
    // NOEXIST: never replace a slot, whose task work may be queued.
    let _ = PENDING.insert(tid, &empty, u64::from(BPF_NOEXIST));
    PENDING.get_ptr_mut(tid)
}

/// Makes `slot` wait for this syscall's result, with `this` noted.
#[inline(always)]
pub(crate) fn open(slot: *mut Slot, this: &Pending) {
    // SAFETY: a slot from a map lookup that succeeded: valid for the whole run.
    let pending = unsafe { &mut (*slot).pending };
    if pending.denied == 0 {
        // SAFETY: an atomic add to an aligned global `u64`.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut PENDING_NOW, 1) };
    }
    // Field by field: the slot's task work is the kernel's.
    pending.cgroup_id = this.cgroup_id;
    pending.denied = this.denied;
    pending.syscall = this.syscall;
    pending.comm = this.comm;
}

/// The slot's pending outcome, which it gives up (`None` if it had none).
#[inline(always)]
pub(crate) fn take(slot: *mut Slot) -> Option<Pending> {
    // SAFETY: a slot from a map lookup (or the task work's own element): valid for the run.
    let pending = unsafe { &mut (*slot).pending };
    if pending.denied == 0 {
        return None;
    }
    let taken = Pending {
        cgroup_id: pending.cgroup_id,
        denied: pending.denied,
        syscall: pending.syscall,
        _pad: 0,
        comm: pending.comm,
    };
    pending.denied = 0;
    // SAFETY: an atomic subtract from an aligned global `u64`.
    unsafe { atomic_xsub::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut PENDING_NOW, 1) };
    Some(taken)
}

/// Whether `key` was counted: how a syscall of this kind ended before.
#[inline(always)]
pub(crate) fn seen(key: &OutcomeKey) -> bool {
    OUTCOMES.get_ptr(key).is_some()
}

/// Whether this syscall's denial is settled: the same workload, thread name and syscall failed
/// with EPERM or EACCES after this capability alone was denied, which makes it "needed but
/// missing" (`model/suggest.rs`) whatever later ones do. Not for the capabilities of an
/// alternative, where what else was denied decides.
#[inline(always)]
pub(crate) fn settled(this: &Pending) -> bool {
    if this.denied & cap_trace_common::ALTERNATIVE_CAPS != 0 {
        return false;
    }
    let mut key = OutcomeKey {
        cgroup_id: this.cgroup_id,
        denied: this.denied,
        syscall: this.syscall,
        result: -EPERM,
        comm: this.comm,
    };
    if seen(&key) {
        return true;
    }
    key.result = -EACCES;
    seen(&key)
}

/// Counts how a syscall with a denied check ended (`None`: it cannot be known), and sends the
/// first of its kind to userspace.
#[inline(always)]
pub(crate) fn record(pid_tgid: u64, pending: &Pending, result: Option<i64>) {
    // -ERESTARTSYS ... -ERESTART_RESTARTBLOCK: interrupted by a signal, to be restarted (which
    // makes its own checks) or to fail with EINTR; the kernel has not decided yet.
    let Some(ret) = result.filter(|r| !(-516..=-512).contains(r)) else {
        bump(stat::OUTCOMES_UNKNOWN);
        return;
    };
    let key = OutcomeKey {
        cgroup_id: pending.cgroup_id,
        denied: pending.denied,
        syscall: pending.syscall,
        result: if ret < 0 { ret as i32 } else { 0 },
        comm: pending.comm,
    };
    bump(stat::OUTCOMES);
    match count_in(&OUTCOMES, &key, 1) {
        Counted::Existing => return,
        Counted::New => {}
        Counted::Full => lost(stat::OUTCOME_KEYS_FULL, key.cgroup_id, loss_kind::OUTCOMES),
    }
    match EVENTS.reserve::<OutcomeEvent>(0) {
        Some(mut entry) => {
            entry.write(OutcomeEvent {
                kind: event_kind::OUTCOME,
                tgid: (pid_tgid >> 32) as u32,
                tid: pid_tgid as u32,
                _pad: 0,
                // SAFETY: a helper without arguments.
                boot_ns: unsafe { bpf_ktime_get_boot_ns() },
                key,
            });
            entry.submit(0);
        }
        None => lost(stat::RINGBUF_LOST, key.cgroup_id, loss_kind::RING_BUFFER),
    }
}

/// `raw_syscalls:sys_exit`: the result of a syscall whose thread has a pending outcome.
pub(crate) fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i32> {
    if pending_now() == 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let slot = PENDING.get_ptr_mut(pid_tgid as u32).ok_or(0)?;
    let pending = take(slot).ok_or(0)?;
    // sys_exit(struct pt_regs *regs, long ret)
    let ret = ctx.arg::<u64>(1) as i64;
    // A check made outside a syscall (a fault) is not this syscall's.
    let same = pending.syscall != NO_SYSCALL && current_syscall(current_task()) == pending.syscall;
    record(pid_tgid, &pending, same.then_some(ret));
    Ok(())
}
