//! The repeat path: each CPU remembers its last counted check ([`LastCheck`], in `LAST`) and
//! counts exact repeats of it without hashing their key.
//!
//! Repeats are the common case (a service makes the same check from the same place over and
//! over). A check with the same task, namespace, capability, options, cgroup, syscall, comm and
//! call-site words only bumps a per-CPU counter, without hashing the 56-byte key; the count moves
//! to `CHECKS` when another check comes along ([`flush`]). Readers add the per-CPU counts back, and
//! retry if a flush ran meanwhile (`seq`), so counts stay exact. The check that sets `LAST`
//! ([`remember`]) also works out where a repeat finds its syscall number and call-site words
//! (`syscall_at`, `ra_cap_at`, ...), so a repeat loads each with one instruction.
//!
//! Costs, as measured on a mitigated VM (the benchmark prices the parts: `--only programs`):
//! - A helper call is the expensive part (tens of ns each on a mitigated VM), so the repeat path
//!   makes none that can be avoided: see [`crate::task`].
//! - In a real workload a repeat's cost is cache misses more than instructions: with 1 MiB touched
//!   between checks (a syscall-heavy workload does that much), a repeat costs about twice what it
//!   does in a tight loop, and each load in a pointer chain (`task->cgroups->dfl_cgrp->kn->id`) is
//!   a miss of about 20 ns that nothing overlaps. Keep chains short here; measure with a loop that
//!   touches memory between checks.
//! - `Settings.cut` (`cap-trace run --cost-cut N`, hidden) stops a repeated check's fast path at
//!   fixed points ([`cut`]: after the filter, the per-CPU state, the identity, the syscall); the
//!   benchmark runs each to price each part. The verifier knows the value, so only the branch it
//!   takes is kept: normal runs pay a load and a compare per point.

use aya_ebpf::{EbpfContext, macros::map, maps::PerCpuArray};
use cap_trace_common::{CheckKey, LastCheck, cut, stat};

use crate::{
    callsite::{SCRATCH, frames_at, layout, opaque, quick_frames, stack_base, stack_word},
    check::Check,
    maps::{CHECKS, Counted, bump, count_in},
    outcome::denials,
    task::{
        REGS_IN_STACK, comm_words, current_syscall, field, kernel_word, nsproxy, real_cred,
        syscall_address, syscall_number,
    },
};

/// The last counted check on each CPU and how often it repeated since ([`LastCheck`]).
#[map]
static LAST: PerCpuArray<LastCheck> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's [`LastCheck`]: looked up once per program run and passed along.
#[inline(always)]
pub(crate) fn last_check() -> Option<&'static mut LastCheck> {
    // SAFETY: this CPU's element of a per-CPU array, valid for the run, and taken once per run.
    LAST.get_ptr_mut(0).map(|last| unsafe { &mut *last })
}

/// The fast path: a check that repeats this CPU's last counted one exactly is counted here (true);
/// any other makes the CPU flush and forget the last one (false), and goes the long way.
#[inline(always)]
pub(crate) fn count_if_repeat<C: EbpfContext>(
    ctx: &C,
    task: *const u8,
    check: &Check,
    last: &mut LastCheck,
) -> bool {
    // Counted here rather than in STATS: one lookup fewer on every check.
    last.checks += 1;
    if setting!(cut) == cut::STATE {
        last.count += 1;
        return true;
    }
    if is_repeat(ctx, task, check, last) {
        last.count += 1;
        return true;
    }
    flush(last);
    last.valid = 0;
    false
}

/// Whether this check repeats the CPU's last counted one exactly: same task, namespace,
/// capability, options, cgroup, syscall, comm, mount namespace and call site, the task's own
/// credentials, and no denial noted since (host-wide: see [`crate::outcome`]). Every field of its [`CheckKey`] then has the same
/// value. (Not the same `cred` pointer: setgroups and friends install new credentials on every
/// call.)
#[inline(always)]
fn is_repeat<C: EbpfContext>(ctx: &C, task: *const u8, check: &Check, last: &LastCheck) -> bool {
    if last.valid == 0
        || check.ret != 0
        // A denial since: something may have been denied before this check in its syscall.
        || last.denials != denials()
        // traced_cgroup() has just validated cg_leaf/cg_generation for this task.
        || last.leaf != last.cg_leaf
        || last.generation != last.cg_generation
        || last.task != task as u64
        || last.target_ns != check.target_ns
        || last.cap != check.cap
        || last.opts != check.opts.unwrap_or(u32::MAX)
    {
        return false;
    }
    // The task's identity: plain loads through BTF-typed pointers, no helper calls.
    let comm = comm_words(task);
    let last_comm = key_comm_words(&last.key);
    if real_cred(task) != check.cred
        || comm[0] != last_comm[0]
        || comm[1] != last_comm[1]
        || (setting!(containers) != 0 && nsproxy(task) != last.nsproxy)
    {
        return false;
    }
    if setting!(cut) == cut::IDENTITY {
        return true;
    }
    // Where `remember` could work the addresses out, the syscall number and the call-site
    // words are one load each; the same task on the same stack finds them at the same places.
    // (`cast_type` first: without the kfunc the verifier must see `kernel_word` as dead code.)
    let syscall = if setting!(cast_type) != 0 && last.syscall_at != 0 {
        if field::<u64>(task, setting!(off_task_stack)) != last.stack {
            return false;
        }
        syscall_number(kernel_word(last.syscall_at) as i32)
    } else {
        current_syscall(task)
    };
    if syscall != last.key.syscall {
        return false;
    }
    if setting!(cut) == cut::SYSCALL {
        return true;
    }
    if check.opts.is_some() {
        return true;
    }
    if setting!(cast_type) != 0 && last.ra_cap != 0 {
        let Some(base) = stack_base(ctx) else {
            return false;
        };
        return stack_word(base, last.ra_cap_at) == last.ra_cap
            && stack_word(base, last.f1_at) == last.f1
            && (last.f2 == 0 || stack_word(base, last.f2_at) == last.f2);
    }
    match quick_frames(ctx) {
        Some((f1, f2)) => f1 == last.f1 && f2 == last.f2,
        None => false,
    }
}

/// A key's `comm` as two words (8-byte aligned in `CheckKey`, so two loads instead of sixteen).
#[inline(always)]
fn key_comm_words(key: &CheckKey) -> [u64; 2] {
    const _: () =
        assert!(core::mem::offset_of!(CheckKey, comm) % 8 == 0 && align_of::<CheckKey>() == 8);
    // SAFETY: `comm` is 16 bytes, 8-byte aligned in `CheckKey` (asserted above).
    unsafe { core::ptr::read((&raw const key.comm).cast::<[u64; 2]>()) }
}

/// Makes this counted check the CPU's last one (granted checks with nothing denied before
/// them only: those are the ones `is_repeat` can vouch for).
#[inline(always)]
pub(crate) fn remember<C: EbpfContext>(
    ctx: &C,
    task: *const u8,
    check: &Check,
    key: &CheckKey,
    last: &mut LastCheck,
) {
    if check.ret != 0 || key.denied_before != 0 {
        return;
    }
    let (mut f1, mut f2) = (0, 0);
    if check.opts.is_none() {
        let Some(scratch) = SCRATCH.get_ptr(0) else {
            return;
        };
        // SAFETY: this CPU's element of a per-CPU array, valid for the run, not written.
        let scratch = unsafe { &*scratch };
        f1 = opaque(&scratch.f1);
        if f1 == layout().ra_fwd {
            f2 = opaque(&scratch.f2);
        } else if opaque(&scratch.used_f2) != 0 {
            // Classified through another forwarding site: quick_frames cannot see its caller.
            return;
        }
    }
    last.task = task as u64;
    last.target_ns = check.target_ns;
    last.cap = check.cap;
    last.opts = check.opts.unwrap_or(u32::MAX);
    last.leaf = last.cg_leaf;
    last.generation = last.cg_generation;
    last.nsproxy = if setting!(containers) != 0 {
        nsproxy(task)
    } else {
        0
    };
    last.f1 = f1;
    last.f2 = f2;
    // The addresses the repeat path loads from: only if reading them now gives what the slow
    // path found (else the repeat path takes the long way).
    last.syscall_at = 0;
    last.ra_cap = 0;
    // SAFETY: REGS_IN_STACK is an aligned global `u64` (see `current_syscall`).
    if let Some(at) = syscall_address(task, unsafe {
        core::ptr::read_volatile(&raw const REGS_IN_STACK)
    }) && syscall_number(kernel_word(at) as i32) == key.syscall
    {
        last.stack = field(task, setting!(off_task_stack));
        last.syscall_at = at;
    }
    if check.opts.is_none() && setting!(cast_type) != 0 {
        let learned = layout();
        // `f2 != 0` when the classification used it: the repeat path compares it then.
        if let Some(base) = stack_base(ctx)
            && learned.ra_cap != 0
            && frames_at(learned, |i| stack_word(base, i)) == Some((f1, f2))
            && (f2 != 0 || f1 != learned.ra_fwd || learned.f2_at == 0)
        {
            last.ra_cap = learned.ra_cap;
            last.ra_cap_at = learned.ra_cap_at;
            last.f1_at = learned.f1_at;
            last.f2_at = learned.f2_at;
        }
    }
    last.denials = denials();
    last.key = *key;
    last.count = 0;
    last.valid = 1;
}

/// Adds the CPU's uncounted repeats to `CHECKS`; `seq` tells readers a flush is under way.
#[inline(always)]
fn flush(last: &mut LastCheck) {
    let count = last.count;
    if count == 0 {
        return;
    }
    // SAFETY: a store through a live `&mut`.
    unsafe { core::ptr::write_volatile(&raw mut last.seq, last.seq + 1) };
    let key = last.key;
    if let Counted::Full = count_in(&CHECKS, &key, count) {
        bump(stat::KEYS_FULL);
    }
    // SAFETY: a store through a live `&mut`.
    unsafe { core::ptr::write_volatile(&raw mut last.count, 0) };
    // SAFETY: a store through a live `&mut`.
    unsafe { core::ptr::write_volatile(&raw mut last.seq, last.seq + 1) };
}
