//! The programs: thin entries, one per hook, that read the hook's arguments and call
//! [`on_check`]; and empty programs on the same hooks, the floor the benchmark compares against.
//!
//! Each `cap_capable` program comes twice: `cap_capable_*` follows denials with `sys_exit`, and
//! `taskwork_*` with a task work ([`crate::outcome`]); the same code (`TASK_WORK`), separate
//! programs, because kernels without task works refuse the callback's address even in dead code.
//! Names stay within the kernel's 15 characters.
//!
//! Each entry calls a `try_*` returning `Result`, whose `Err` only stops the program (the return
//! value is always 0). Context reads need constant offsets in the instruction, so the raw
//! tracepoint's argument positions are constants ([`raw_arg`]); the loader checks them against
//! the kernel's order (the tracepoint's format fields matched to the BTF prototype
//! `btf_trace_cap_capable`) and refuses the raw flavour if they differ. The classic tracepoint
//! reads its record at the offsets of the `format` file, from [`SETTINGS`](crate::SETTINGS).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe, map, raw_tracepoint, tracepoint},
    maps::LruHashMap,
    programs::{
        FExitContext, ProbeContext, RawTracePointContext, RetProbeContext, TracePointContext,
    },
};
use cap_trace_common::{KprobeArgs, LastCheck, cut, loss_kind, raw_arg, stat};

use crate::{
    check::{Check, on_check},
    filter::traced_cgroup,
    losses::lost,
    members::{on_attach, on_exit, on_fork},
    outcome::try_sys_exit,
    repeat::last_check,
    task::current_task,
};

#[map]
static KPROBE_ARGS: LruHashMap<u32, KprobeArgs> = LruHashMap::with_max_entries(8192, 0);

/// What every `cap_capable` hook starts with: the current task, this CPU's [`LastCheck`] and the
/// workload the check is recorded under; `None` when the task is not traced.
#[inline(always)]
fn enter() -> Option<(*const u8, &'static mut LastCheck, u64)> {
    let task = current_task();
    let last = last_check()?;
    let cgroup = traced_cgroup(task, last)?;
    Some((task, last, cgroup))
}

#[tracepoint(category = "capability", name = "cap_capable")]
pub(crate) fn cap_capable_tp(ctx: TracePointContext) -> u32 {
    let _ = try_cap_capable_tp::<false>(&ctx);
    0
}

#[tracepoint(category = "capability", name = "cap_capable")]
pub(crate) fn taskwork_tp(ctx: TracePointContext) -> u32 {
    let _ = try_cap_capable_tp::<true>(&ctx);
    0
}

#[inline(always)]
fn try_cap_capable_tp<const TASK_WORK: bool>(ctx: &TracePointContext) -> Result<(), i32> {
    let (task, last, cgroup) = enter().ok_or(0)?;
    // Field offsets come from the tracepoint's `format` file, read at start-up.
    // SAFETY: read_at reads the context with bpf_probe_read_kernel, which fails rather than faults.
    let check = unsafe {
        Check {
            cred: ctx.read_at::<u64>(setting!(tp_off_cred) as usize)?,
            target_ns: ctx.read_at::<u64>(setting!(tp_off_target_ns) as usize)?,
            cap: ctx.read_at::<i32>(setting!(tp_off_cap) as usize)? as u32,
            ret: ctx.read_at::<i32>(setting!(tp_off_ret) as usize)?,
            opts: None,
        }
    };
    on_check::<_, TASK_WORK>(ctx, task, last, cgroup, &check)
}

#[raw_tracepoint(tracepoint = "cap_capable")]
pub(crate) fn cap_capable_raw(ctx: RawTracePointContext) -> i32 {
    let _ = try_cap_capable_raw::<false>(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "cap_capable")]
pub(crate) fn taskwork_raw(ctx: RawTracePointContext) -> i32 {
    let _ = try_cap_capable_raw::<true>(&ctx);
    0
}

#[inline(always)]
fn try_cap_capable_raw<const TASK_WORK: bool>(ctx: &RawTracePointContext) -> Result<(), i32> {
    let (task, last, cgroup) = enter().ok_or(0)?;
    if setting!(cut) == cut::FILTER {
        return Ok(());
    }
    let check = Check {
        cred: ctx.arg::<u64>(raw_arg::CRED),
        target_ns: ctx.arg::<u64>(raw_arg::TARGET_NS),
        cap: ctx.arg::<u64>(raw_arg::CAP) as u32,
        ret: ctx.arg::<u64>(raw_arg::RET) as i32,
        opts: None,
    };
    on_check::<_, TASK_WORK>(ctx, task, last, cgroup, &check)
}

#[fexit(function = "cap_capable")]
pub(crate) fn cap_capable_fexit(ctx: FExitContext) -> i32 {
    let _ = try_cap_capable_fexit::<false>(&ctx);
    0
}

#[fexit(function = "cap_capable")]
pub(crate) fn taskwork_fexit(ctx: FExitContext) -> i32 {
    let _ = try_cap_capable_fexit::<true>(&ctx);
    0
}

#[inline(always)]
fn try_cap_capable_fexit<const TASK_WORK: bool>(ctx: &FExitContext) -> Result<(), i32> {
    let (task, last, cgroup) = enter().ok_or(0)?;
    // cap_capable(cred, target_ns, cap, opts); an fexit program finds the return value right
    // after the arguments, which works on every kernel with fexit (bpf_get_func_ret needs 5.17).
    let check = Check {
        cred: ctx.arg::<u64>(0),
        target_ns: ctx.arg::<u64>(1),
        cap: ctx.arg::<u64>(2) as u32,
        opts: Some(ctx.arg::<u64>(3) as u32),
        ret: ctx.arg::<u64>(4) as i32,
    };
    on_check::<_, TASK_WORK>(ctx, task, last, cgroup, &check)
}

#[kprobe(function = "cap_capable")]
pub(crate) fn cap_capable_entry(ctx: ProbeContext) -> u32 {
    let _ = try_cap_capable_entry(&ctx);
    0
}

fn try_cap_capable_entry(ctx: &ProbeContext) -> Result<(), i32> {
    let (_, _, cgroup) = enter().ok_or(0)?;
    let tid = bpf_get_current_pid_tgid() as u32;
    let args = KprobeArgs {
        cred: ctx.arg::<u64>(0).ok_or(0)?,
        target_ns: ctx.arg::<u64>(1).ok_or(0)?,
        cap: ctx.arg::<u64>(2).ok_or(0)? as u32,
        opts: ctx.arg::<u64>(3).ok_or(0)? as u32,
    };
    // cap_capable does not recurse: a leftover entry means its return probe was missed.
    if KPROBE_ARGS.get_ptr(&tid).is_some() {
        lost(stat::KRETPROBE_MISSED, cgroup, loss_kind::PROBES);
    }
    KPROBE_ARGS.insert(&tid, &args, 0)
}

#[kretprobe(function = "cap_capable")]
pub(crate) fn cap_capable_return(ctx: RetProbeContext) -> u32 {
    let _ = try_cap_capable_return::<false>(&ctx);
    0
}

#[kretprobe(function = "cap_capable")]
pub(crate) fn taskwork_return(ctx: RetProbeContext) -> u32 {
    let _ = try_cap_capable_return::<true>(&ctx);
    0
}

#[inline(always)]
fn try_cap_capable_return<const TASK_WORK: bool>(ctx: &RetProbeContext) -> Result<(), i32> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(args) = KPROBE_ARGS.get_ptr(&tid) else {
        if let Some((_, _, cgroup)) = enter() {
            lost(stat::KPROBE_ENTRY_MISSED, cgroup, loss_kind::PROBES);
        }
        return Ok(());
    };
    // SAFETY: `args` is from a map lookup that succeeded: valid for the whole run.
    let args = unsafe { *args };
    let _ = KPROBE_ARGS.remove(&tid);
    let (task, last, cgroup) = enter().ok_or(0)?;
    let check = Check {
        cred: args.cred,
        target_ns: args.target_ns,
        cap: args.cap,
        opts: Some(args.opts),
        ret: ctx.ret::<u64>() as i32,
    };
    on_check::<_, TASK_WORK>(ctx, task, last, cgroup, &check)
}

/// How a syscall that had a denied check ended (without task works).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub(crate) fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_sys_exit(&ctx);
    0
}

/// A task moved to another cgroup: a traced one that leaves is reported ([`crate::members`]).
#[raw_tracepoint(tracepoint = "cgroup_attach_task")]
pub(crate) fn cgroup_attach(ctx: RawTracePointContext) -> i32 {
    on_attach(&ctx);
    0
}

/// A task forked: a traced task's child is traced too ([`crate::members`]).
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub(crate) fn process_fork(ctx: RawTracePointContext) -> i32 {
    on_fork(&ctx);
    0
}

/// A task exits ([`crate::members`]).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub(crate) fn process_exit(_ctx: RawTracePointContext) -> i32 {
    on_exit();
    0
}

// Empty programs on the same hooks: the floor the benchmark compares against.

#[tracepoint(category = "capability", name = "cap_capable")]
pub(crate) fn floor_tp(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "cap_capable")]
pub(crate) fn floor_raw(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub(crate) fn floor_sys_exit(_ctx: RawTracePointContext) -> i32 {
    0
}
