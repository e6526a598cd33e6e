//! The task's identity and other kernel reads: fields of the current task and what it points
//! to, kernel words by plain loads, the syscall in flight.
//!
//! On the repeat path a helper call costs tens of ns (on a mitigated VM), so these reads make none
//! that can be avoided:
//! - Task fields are plain loads through the pointer `bpf_get_current_task_btf` returns
//!   ([`field`]). Loads through pointers the verifier trusts (the helper's task and what it points
//!   to) are plain loads once JITed; loads through `bpf_rdonly_cast` pointers carry a range check
//!   (about six instructions each). So the task comes from the helper even though a repeat could
//!   name it from `LAST`: through a cast, its ten or so field loads cost more than the call.
//! - Other kernel words (the call-site words, the saved syscall number) go through the kfunc
//!   `bpf_rdonly_cast` ([`kernel_word`]). aya 0.14 cannot resolve kfuncs: the program makes a
//!   placeholder call ([`RDONLY_CAST_MARK`](cap_trace_common::RDONLY_CAST_MARK)) that
//!   `cap-trace/src/kernel/kfunc.rs` patches in a copy of the object, or turns into a harmless
//!   helper call on kernels before 6.2, where `Settings.cast_type` is 0 and the programs use
//!   `bpf_probe_read_kernel` instead (`cargo xtask vm-test` runs that path on 6.1, and the kfunc
//!   path with fexit and kprobes on 6.12).
//!
//! - Kernels before Linux 5.15 lack `bpf_task_pt_regs`, and before 5.11 also
//!   `bpf_get_current_task_btf` (Debian 11's 5.10): there [`helper_reads`] is true, the task is a
//!   plain number, [`field`] reads with `bpf_probe_read_kernel`, and the saved registers are
//!   found at a fixed place on the task's stack ([`current_syscall`]). Elsewhere the verifier
//!   drops those branches as dead code (the test is of a constant the loader wrote), and never
//!   sees the helpers an old kernel does not know.
//!
//! Verifiers differ: 6.12's refuses arithmetic between some BTF pointers and an unbounded number,
//! which 6.18's allows; a pointer's value read back from map memory is a plain number (see
//! [`current_syscall`]).

use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs,
};
use cap_trace_common::{COMM_LEN, HELPER_READS_MARK, NO_SYSCALL};

use crate::callsite::{SCRATCH, opaque};

/// Whether the kernel lacks `bpf_get_current_task_btf` or `bpf_task_pt_regs` (before Linux
/// 5.15): an immediate the loader writes (see
/// [`HELPER_READS_MARK`](cap_trace_common::HELPER_READS_MARK)), not a setting, so that the test
/// costs newer kernels no load at each field read: the verifier knows the constant and drops the
/// branch, leaving one cleared register.
#[inline(always)]
pub(crate) fn helper_reads() -> bool {
    let value: u64;
    // SAFETY: loads an immediate into a register; touches nothing else.
    unsafe {
        core::arch::asm!(
            "{0} = {mark} ll",
            out(reg) value,
            mark = const HELPER_READS_MARK,
            options(nomem, nostack, preserves_flags),
        );
    }
    value != 0
}

/// The current task, as a pointer the verifier knows the type of (see [`field`]); before Linux
/// 5.11 ([`helper_reads`]), as a plain number.
#[inline(always)]
pub(crate) fn current_task() -> *const u8 {
    if helper_reads() {
        // SAFETY: a helper without arguments.
        return unsafe { bpf_get_current_task() } as *const u8;
    }
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_current_task_btf() as *const u8 }
}

/// Reads the `T` at byte `off` of a kernel object reached through BTF-typed pointers (the current
/// task and what its fields point to). The verifier turns this into a fault-safe load (0 on a
/// fault): much cheaper than `bpf_probe_read_kernel`, a helper call, on the repeat path. Kernels
/// without `bpf_get_current_task_btf` ([`helper_reads`]) only have the helper; elsewhere the
/// verifier knows the constant and drops that branch.
#[inline(always)]
pub(crate) fn field<T>(object: *const u8, off: u32) -> T {
    if helper_reads() {
        // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults; the
        // kernel types read here (integers, pointers) are valid all-zero.
        return unsafe {
            bpf_probe_read_kernel(object.add(off as usize).cast::<T>())
                .unwrap_or_else(|_| core::mem::zeroed())
        };
    }
    // SAFETY: the verifier checks this load and runs it as a fault-safe one (0 on a fault).
    unsafe { core::ptr::read_volatile(object.add(off as usize).cast::<T>()) }
}

/// The kernel word at `addr`, by a plain fault-safe load (0 on a fault). Needs
/// `Settings.cast_type`: the loader turns the placeholder call into one to the kfunc
/// `bpf_rdonly_cast`, which the verifier then reduces to a register move, leaving a pointer it
/// lets the program load through. `bpf_probe_read_kernel` does the same job as a helper call,
/// many times the cost.
#[inline(always)]
pub(crate) fn kernel_word(addr: u64) -> u64 {
    let ptr: *const u8;
    // SAFETY: the loader makes this bpf_rdonly_cast or a harmless helper; r0-r5 are clobbered.
    unsafe {
        core::arch::asm!(
            "call 0x63617374",
            inlateout("r1") addr => _,
            inlateout("r2") u64::from(setting!(cast_type)) => _,
            lateout("r0") ptr,
            lateout("r3") _,
            lateout("r4") _,
            lateout("r5") _,
        );
    }
    field(ptr, 0)
}

/// The task's own credentials (`task_struct.real_cred`).
#[inline(always)]
pub(crate) fn real_cred(task: *const u8) -> u64 {
    field(task, setting!(off_task_real_cred))
}

/// The task's `nsproxy` pointer: it changes with setns/unshare.
#[inline(always)]
pub(crate) fn nsproxy(task: *const u8) -> u64 {
    field(task, setting!(off_task_nsproxy))
}

/// The task's name (`task_struct.comm`, NUL-padded by the kernel), read as two words.
#[inline(always)]
pub(crate) fn comm_words(task: *const u8) -> [u64; 2] {
    let off = setting!(off_task_comm);
    [field(task, off), field(task, off + 8)]
}

/// The task's name as bytes.
#[inline(always)]
pub(crate) fn comm(task: *const u8) -> [u8; COMM_LEN] {
    // SAFETY: `[u64; 2]` and `[u8; COMM_LEN]` are both 16 bytes, and any bytes are valid.
    unsafe { core::mem::transmute(comm_words(task)) }
}

/// The task's cgroup v2 id, as `bpf_get_current_cgroup_id` finds it
/// (`task->cgroups->dfl_cgrp->kn->id`).
#[inline(always)]
pub(crate) fn cgroup_id(task: *const u8) -> u64 {
    id_of(dfl_cgroup(task))
}

/// The task's cgroup v2 (`task->cgroups->dfl_cgrp`).
#[inline(always)]
pub(crate) fn dfl_cgroup(task: *const u8) -> *const u8 {
    let css_set: *const u8 = field(task, setting!(off_task_cgroups));
    field(css_set, setting!(off_css_set_dfl_cgrp))
}

/// A cgroup's id (`cgroup->kn->id`).
#[inline(always)]
pub(crate) fn id_of(cgroup: *const u8) -> u64 {
    let kn: *const u8 = field(cgroup, setting!(off_cgroup_kn));
    field(kn, setting!(off_kn_id))
}

/// The `level` of a user namespace (0: the initial one, or if it cannot be read).
#[inline(always)]
pub(crate) fn userns_level(user_ns: u64) -> u32 {
    // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults.
    unsafe {
        bpf_probe_read_kernel(
            (user_ns as *const u8)
                .add(setting!(off_userns_level) as usize)
                .cast::<u32>(),
        )
        .unwrap_or(0)
    }
}

/// Inode number of a task's mount namespace (0 if it cannot be read).
#[inline(always)]
pub(crate) fn mount_namespace(task: *const u8) -> u32 {
    let nsproxy: *const u8 = field(task, setting!(off_task_nsproxy));
    let mnt_ns: *const u8 = field(nsproxy, setting!(off_nsproxy_mnt_ns));
    field(mnt_ns, setting!(off_mntns_inum))
}

/// Where the user registers sit relative to `task_struct.stack` (a kernel constant: THREAD_SIZE
/// less the registers and padding), learned from `bpf_task_pt_regs`; 0 until then.
#[unsafe(no_mangle)]
pub(crate) static mut REGS_IN_STACK: u64 = 0;

/// The syscall the task is in, from the user registers saved at kernel entry.
#[inline(always)]
pub(crate) fn current_syscall(task: *const u8) -> u32 {
    // SAFETY: an aligned global `u64`; every writer stores the same kernel constant.
    let in_stack = unsafe { core::ptr::read_volatile(&raw const REGS_IN_STACK) };
    let nr = if let Some(at) = syscall_address(task, in_stack) {
        kernel_word(at) as i32
    } else if helper_reads() {
        // No bpf_task_pt_regs (before Linux 5.15): the registers are at a fixed place on the
        // task's stack.
        let stack: u64 = field(task, setting!(off_task_stack));
        let regs = (stack + u64::from(setting!(regs_in_stack))) as *const u8;
        field::<i32>(regs, setting!(off_regs_syscall))
    } else {
        // SAFETY: `task` comes from bpf_get_current_task_btf, as the helper requires.
        let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
        if setting!(cast_type) != 0
            && let Some(scratch) = SCRATCH.get_ptr_mut(0)
        {
            let stack: u64 = field(task, setting!(off_task_stack));
            // The address goes through map memory first: read back, it is a plain number.
            // Arithmetic between the pointer itself and an unbounded number is refused by
            // some verifiers (Linux 6.12).
            // SAFETY: this CPU's element of a per-CPU array, valid for the run, and not aliased.
            let scratch = unsafe { &mut *scratch };
            // SAFETY: a store through a live `&mut`.
            unsafe { core::ptr::write_volatile(&raw mut scratch.regs, regs as u64) };
            let regs_at = opaque(&scratch.regs);
            // SAFETY: an aligned global `u64`; every writer stores the same kernel constant.
            unsafe {
                core::ptr::write_volatile(&raw mut REGS_IN_STACK, regs_at.wrapping_sub(stack));
            };
        }
        field::<i32>(regs, setting!(off_regs_syscall))
    };
    syscall_number(nr)
}

/// Where the task's saved syscall number is, when it can be read with a plain load.
#[inline(always)]
pub(crate) fn syscall_address(task: *const u8, in_stack: u64) -> Option<u64> {
    if setting!(cast_type) == 0 || in_stack == 0 {
        return None;
    }
    let stack: u64 = field(task, setting!(off_task_stack));
    Some(stack + in_stack + u64::from(setting!(off_regs_syscall)))
}

/// The syscall number saved at kernel entry, as the `int` it is: arm64's `pt_regs.syscallno` is
/// 4 bytes (the verifier refuses an 8-byte load of it), and x86_64's 8-byte `orig_ax` holds the
/// same number in its low half (little-endian), -1 outside a syscall. A word read at its
/// address is cut to its low half (`as i32`) for the same reason.
#[inline(always)]
pub(crate) fn syscall_number(nr: i32) -> u32 {
    if (0..4096).contains(&nr) {
        nr as u32
    } else {
        NO_SYSCALL
    }
}
