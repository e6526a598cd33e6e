//! Outcomes by BPF task work (Linux 6.18+): a followed denial schedules a callback for its
//! thread (`bpf_task_work_schedule_resume`), which the kernel runs when the thread returns to
//! user space (`task_work_run`), after the syscall stored its result in the saved registers.
//! Nothing is attached to `raw_syscalls:sys_exit`, so syscalls without a followed denial pay
//! nothing; a scheduled callback costs about a microsecond (one `irq_work` self-interrupt and
//! the task-work round trip, on a VM).
//!
//! What the kernel asks for, and why it is done so here:
//! - The `struct bpf_task_work` must sit in the value of a BTF-defined hash, LRU-hash or array
//!   map, found by its type's name ([`bpf_task_work`], in [`Slot`]); the kfunc's `tw` argument
//!   points at it, in a value looked up in the map passed with it.
//! - The callback is a static subprogram passed by address (`BPF_PSEUDO_FUNC`): never
//!   `#[no_mangle]`, or its BTF linkage becomes global and the verifier refuses it. Kernels before
//!   5.13 refuse such an address even in dead code, so these are separate programs.
//! - aya 0.14 cannot resolve kfuncs: the call is a placeholder
//!   ([`TASK_WORK_MARK`](cap_trace_common::TASK_WORK_MARK)) that `cap-trace/src/kernel/kfunc.rs`
//!   patches, as for `bpf_rdonly_cast`. The kfunc returns an `int`: `r0` is sign-extended.
//! - `_resume`, never `_signal`: a signal-style task work makes `signal_pending()` true, which
//!   aborts any interruptible sleep later in the same syscall (a blocking read then restarts for
//!   ever).
//! - `-EBUSY`: the thread's callback for this same syscall is still queued (a callback runs before
//!   the thread's next syscall), so the denial joins it.
//! - The callback may see a result that is not the syscall's: io_uring runs task works inside
//!   `io_uring_enter` (`ax` still holds the entry's -ENOSYS), a thread killed in the syscall runs
//!   it on its way out (`PF_EXITING`), and an `irq_work` taken late would run it on another return
//!   to user space (another syscall number). Those outcomes are unknown. io_uring workers and
//!   kernel threads never return to user space: their denials are not followed.
//! - Removing a slot (LRU eviction) or unloading cancels its queued task work.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_task_pt_regs};
use cap_trace_common::{NO_SYSCALL, Pending, TASK_WORK_MARK, loss_kind, stat};

use crate::{
    losses::lost,
    maps::bump,
    outcome::{self, PENDING, Slot},
    task::{current_syscall, current_task, field},
};

/// The kernel's `struct bpf_task_work` (uapi `linux/bpf.h`): same name, size and alignment.
#[repr(C, align(8))]
#[allow(non_camel_case_types)]
pub(crate) struct bpf_task_work {
    opaque: u64,
}

impl bpf_task_work {
    pub(crate) const EMPTY: Self = Self { opaque: 0 };
}

const EBUSY: i64 = 16;
const ENOSYS: i64 = 38;
const PF_EXITING: u32 = 0x0000_0004;
const PF_IO_WORKER: u32 = 0x0000_0010;
const PF_KTHREAD: u32 = 0x0020_0000;

/// Follows a wall denial that opens its thread's pending outcome (`slot`: the thread's slot if
/// the caller found one, else null): schedules the callback, or joins the one already queued.
#[inline(always)]
pub(crate) fn follow(task: *const u8, tid: u32, slot: *mut Slot, this: &Pending) {
    if field::<u32>(task, setting!(off_task_flags)) & (PF_IO_WORKER | PF_KTHREAD) != 0 {
        bump(stat::OUTCOMES_UNKNOWN);
        return;
    }
    if outcome::settled(this) {
        bump(stat::OUTCOMES_SETTLED);
        return;
    }
    let found = if slot.is_null() {
        outcome::slot_of(tid)
    } else {
        Some(slot)
    };
    let Some(slot) = found else {
        lost(stat::PENDING_FULL, this.cgroup_id, loss_kind::OUTCOMES);
        return;
    };
    let rc = schedule(task, slot);
    if rc == 0 || rc == -EBUSY {
        outcome::open(slot, this);
    } else {
        lost(stat::TASK_WORK_FAILED, this.cgroup_id, loss_kind::OUTCOMES);
    }
}

/// `bpf_task_work_schedule_resume(task, &slot.work, &PENDING, on_syscall_return, NULL)`.
#[inline(always)]
fn schedule(task: *const u8, slot: *mut Slot) -> i64 {
    let map = (&raw const PENDING).cast::<c_void>() as u64;
    let callback = on_syscall_return as *const () as u64;
    let rc: u64;
    // SAFETY: the loader makes this the kfunc (or drops the program); r0-r5 are clobbered. The
    // verifier checks every argument: the trusted current task, the task work of a value of the
    // map passed, and a static callback.
    unsafe {
        core::arch::asm!(
            "call {mark}",
            mark = const TASK_WORK_MARK,
            inlateout("r1") task as u64 => _,
            inlateout("r2") slot as u64 => _,
            inlateout("r3") map => _,
            inlateout("r4") callback => _,
            inlateout("r5") 0u64 => _,
            lateout("r0") rc,
        );
    }
    i64::from(rc as i32)
}

/// The task work: runs in the thread that made the denied check when it returns to user space
/// (`int (*)(struct bpf_map *, void *key, void *value)`; the kernel ignores the result).
#[inline(never)]
extern "C" fn on_syscall_return(_map: *mut c_void, _key: *mut c_void, value: *mut c_void) -> i32 {
    let Some(pending) = outcome::take(value.cast::<Slot>()) else {
        return 0;
    };
    let task = current_task();
    // SAFETY: `task` comes from bpf_get_current_task_btf, as the helper requires.
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
    let ret: i64 = field(regs, setting!(off_regs_ret));
    let known = field::<u32>(task, setting!(off_task_flags)) & PF_EXITING == 0
        && ret != -ENOSYS
        && pending.syscall != NO_SYSCALL
        && current_syscall(task) == pending.syscall;
    outcome::record(bpf_get_current_pid_tgid(), &pending, known.then_some(ret));
    0
}
