//! Kernel side of cap-trace.
//!
//! One event, several hooks: every backend ends in [`on_check`] with the arguments and result of
//! one `cap_capable` call. Userspace loads and attaches only the programs of the backend it picked
//! (`probe.rs`), and passes everything kernel-specific (struct offsets from BTF, tracepoint field
//! offsets, the call-site table built from `/proc/kallsyms`) in the read-only [`SETTINGS`] global.
//!
//! Only cgroups userspace asked for are traced (`TRACED`). Checks are deduplicated per
//! [`CheckKey`] in `CHECKS`: the first occurrence of a key goes through the ring buffer, later ones
//! only bump its counter, which userspace reads at the end. A denied check also opens a per-thread
//! [`Pending`] entry that `sys_exit` turns into an [`OutcomeKey`]: how the syscall that hit the
//! wall ended.
#![no_std]
#![no_main]
// Atomic read-modify-write on map values and globals (core::sync::atomic has no RMW for BPF).
#![feature(core_intrinsics)]
// The placeholder call of `kernel_word`.
#![feature(asm_experimental_arch)]
#![allow(internal_features)]

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xsub};

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task_btf,
        bpf_get_current_uid_gid, bpf_get_stack, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
        bpf_task_pt_regs,
    },
    macros::{fexit, kprobe, kretprobe, map, raw_tracepoint, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{
        FExitContext, ProbeContext, RawTracePointContext, RetProbeContext, TracePointContext,
    },
};
use cap_trace_common::{
    CGROUP_LEVELS, COMM_LEN, CgroupEvent, CheckEvent, CheckKey, Config, KprobeArgs, LastCheck,
    MAX_SITES, NO_SYSCALL, OutcomeEvent, OutcomeKey, Pending, STACK_FRAMES, Settings, Traced,
    backend, check_flags, cut, event_kind, raw_arg, site_class, stat, traced_kind,
};

/// Everything kernel-specific, filled by userspace with `EbpfLoader::override_global`.
#[unsafe(no_mangle)]
static SETTINGS: Settings = Settings::zeroed();

/// Number of live `PENDING` entries: lets `sys_exit` return after one load in the common case.
#[unsafe(no_mangle)]
static mut PENDING_NOW: u64 = 0;

#[map]
static TRACED: HashMap<u64, Traced> = HashMap::with_max_entries(4096, 0);

/// Settings that change while tracing, rewritten whole by userspace. The program never writes
/// `.data` (its own variables live in `.bss`), so userspace's writes race with nothing. A global
/// rather than an array map: one load instead of a lookup on every check.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
static mut CONFIG: Config = Config {
    levels: 0,
    generation: 0,
};

const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
static CHECKS: HashMap<CheckKey, u64> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

#[map]
static OUTCOMES: HashMap<OutcomeKey, u64> = HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

#[map]
static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(8192, 0);

#[map]
static KPROBE_ARGS: LruHashMap<u32, KprobeArgs> = LruHashMap::with_max_entries(8192, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// The last counted check on each CPU and how often it repeated since ([`LastCheck`]).
#[map]
static LAST: PerCpuArray<LastCheck> = PerCpuArray::with_max_entries(1, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Reads a field of [`SETTINGS`] so that the compiler cannot fold the default value in.
macro_rules! setting {
    ($($field:tt)+) => {
        {
            #[allow(unused_unsafe)]
            let value = unsafe { core::ptr::read_volatile(&raw const SETTINGS.$($field)+) };
            value
        }
    };
}

const EEXIST: i32 = 17;

/// A `cap_capable` call, whatever the hook that saw it.
struct Check {
    cred: u64,
    target_ns: u64,
    cap: u32,
    ret: i32,
    /// `CAP_OPT_*` bits when the hook sees them (fexit, kprobe); `None` on tracepoints.
    opts: Option<u32>,
}

const CAP_OPT_NOAUDIT: u32 = 1 << 1;
const CAP_OPT_INSETID: u32 = 1 << 2;

// ---------------------------------------------------------------------------------------------
// Hooks: thin entries calling `try_*`.

#[tracepoint(category = "capability", name = "cap_capable")]
pub fn cap_capable_tp(ctx: TracePointContext) -> u32 {
    let _ = try_cap_capable_tp(&ctx);
    0
}

fn try_cap_capable_tp(ctx: &TracePointContext) -> Result<(), i32> {
    let task = current_task();
    let last = last_check().ok_or(0)?;
    let cgroup = traced_cgroup(task, last).ok_or(0)?;
    // Field offsets come from the tracepoint's `format` file, read at start-up.
    let check = unsafe {
        Check {
            cred: ctx.read_at::<u64>(setting!(tp_off_cred) as usize)?,
            target_ns: ctx.read_at::<u64>(setting!(tp_off_target_ns) as usize)?,
            cap: ctx.read_at::<i32>(setting!(tp_off_cap) as usize)? as u32,
            ret: ctx.read_at::<i32>(setting!(tp_off_ret) as usize)?,
            opts: None,
        }
    };
    on_check(ctx, task, last, cgroup, &check)
}

#[raw_tracepoint(tracepoint = "cap_capable")]
pub fn cap_capable_raw(ctx: RawTracePointContext) -> i32 {
    let _ = try_cap_capable_raw(&ctx);
    0
}

fn try_cap_capable_raw(ctx: &RawTracePointContext) -> Result<(), i32> {
    let task = current_task();
    let last = last_check().ok_or(0)?;
    let cgroup = traced_cgroup(task, last).ok_or(0)?;
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
    on_check(ctx, task, last, cgroup, &check)
}

#[fexit(function = "cap_capable")]
pub fn cap_capable_fexit(ctx: FExitContext) -> i32 {
    let _ = try_cap_capable_fexit(&ctx);
    0
}

fn try_cap_capable_fexit(ctx: &FExitContext) -> Result<(), i32> {
    let task = current_task();
    let last = last_check().ok_or(0)?;
    let cgroup = traced_cgroup(task, last).ok_or(0)?;
    // cap_capable(cred, target_ns, cap, opts); an fexit program finds the return value right
    // after the arguments, which works on every kernel with fexit (bpf_get_func_ret needs 5.17).
    let check = Check {
        cred: ctx.arg::<u64>(0),
        target_ns: ctx.arg::<u64>(1),
        cap: ctx.arg::<u64>(2) as u32,
        opts: Some(ctx.arg::<u64>(3) as u32),
        ret: ctx.arg::<u64>(4) as i32,
    };
    on_check(ctx, task, last, cgroup, &check)
}

#[kprobe(function = "cap_capable")]
pub fn cap_capable_entry(ctx: ProbeContext) -> u32 {
    let _ = try_cap_capable_entry(&ctx);
    0
}

fn try_cap_capable_entry(ctx: &ProbeContext) -> Result<(), i32> {
    traced_cgroup(current_task(), last_check().ok_or(0)?).ok_or(0)?;
    let tid = bpf_get_current_pid_tgid() as u32;
    let args = KprobeArgs {
        cred: ctx.arg::<u64>(0).ok_or(0)?,
        target_ns: ctx.arg::<u64>(1).ok_or(0)?,
        cap: ctx.arg::<u64>(2).ok_or(0)? as u32,
        opts: ctx.arg::<u64>(3).ok_or(0)? as u32,
    };
    // cap_capable does not recurse: a leftover entry means its return probe was missed.
    if KPROBE_ARGS.get_ptr(&tid).is_some() {
        bump(stat::KRETPROBE_MISSED);
    }
    KPROBE_ARGS.insert(&tid, &args, 0)
}

#[kretprobe(function = "cap_capable")]
pub fn cap_capable_return(ctx: RetProbeContext) -> u32 {
    let _ = try_cap_capable_return(&ctx);
    0
}

fn try_cap_capable_return(ctx: &RetProbeContext) -> Result<(), i32> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(args) = KPROBE_ARGS.get_ptr(&tid) else {
        if traced_cgroup(current_task(), last_check().ok_or(0)?).is_some() {
            bump(stat::KPROBE_ENTRY_MISSED);
        }
        return Ok(());
    };
    let args = unsafe { *args };
    let _ = KPROBE_ARGS.remove(&tid);
    let task = current_task();
    let last = last_check().ok_or(0)?;
    let cgroup = traced_cgroup(task, last).ok_or(0)?;
    let check = Check {
        cred: args.cred,
        target_ns: args.target_ns,
        cap: args.cap,
        opts: Some(args.opts),
        ret: ctx.ret::<u64>() as i32,
    };
    on_check(ctx, task, last, cgroup, &check)
}

/// How a syscall that had a denied check ended.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_sys_exit(&ctx);
    0
}

fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i32> {
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

// Empty programs on the same hooks: the floor the benchmark compares against.

#[tracepoint(category = "capability", name = "cap_capable")]
pub fn floor_tp(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "cap_capable")]
pub fn floor_raw(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn floor_sys_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

// ---------------------------------------------------------------------------------------------
// Shared logic.

/// The workload a task's check is recorded under, or `None` when the task is not traced.
///
/// The answer for the CPU's last cgroup is cached until userspace changes `TRACED` (a cgroup's
/// ancestors never change), so a busy CPU skips the hash lookups. The cache is keyed by the
/// cgroup's serial number, which is never reused: one dependent load fewer than its id, and
/// each is a cache miss when the workload has run in between.
#[inline(always)]
fn traced_cgroup(task: *const u8, last: &mut LastCheck) -> Option<u64> {
    let cgroup = dfl_cgroup(task);
    let serial: u64 = field(cgroup, setting!(off_cgroup_serial));
    let generation = unsafe { core::ptr::read_volatile(&raw const CONFIG.generation) };
    if last.cg_valid != 0 && last.cg_serial == serial && last.cg_generation == generation {
        return (last.cg_traced != 0).then_some(last.cg_traced);
    }
    // The id of the same cgroup the serial number came from (the task may move meanwhile).
    let leaf = id_of(cgroup);
    let traced = lookup_traced(leaf);
    last.cg_serial = serial;
    last.cg_leaf = leaf;
    last.cg_generation = generation;
    last.cg_traced = traced.unwrap_or(0);
    last.cg_valid = 1;
    traced
}

#[inline(always)]
fn lookup_traced(leaf: u64) -> Option<u64> {
    if let Some(traced) = TRACED.get_ptr(&leaf) {
        let kind = unsafe { (*traced).kind };
        if kind == traced_kind::EXACT || kind == traced_kind::SUBTREE {
            return Some(leaf);
        }
    }
    let levels = unsafe { core::ptr::read_volatile(&raw const CONFIG.levels) };
    if levels == 0 {
        return None;
    }
    // Look the task's ancestors up at the levels where SUBTREE/DESCENDANTS entries live.
    let mut level = 0u32;
    while level < 32 {
        if levels & (1u64 << level) != 0 {
            let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            if ancestor == 0 {
                return None;
            }
            if let Some(traced) = TRACED.get_ptr(&ancestor) {
                match unsafe { (*traced).kind } {
                    traced_kind::SUBTREE => return Some(ancestor),
                    traced_kind::DESCENDANTS => {
                        return (leaf != ancestor).then_some(leaf);
                    }
                    _ => {}
                }
            }
        }
        level += 1;
    }
    None
}

/// This CPU's [`LastCheck`]: looked up once per program run and passed along.
#[inline(always)]
fn last_check() -> Option<&'static mut LastCheck> {
    LAST.get_ptr_mut(0).map(|last| unsafe { &mut *last })
}

#[inline(always)]
fn on_check<C: EbpfContext>(
    ctx: &C,
    task: *const u8,
    last: &mut LastCheck,
    cgroup_id: u64,
    check: &Check,
) -> Result<(), i32> {
    // Counted here rather than in STATS: one lookup fewer on every check.
    last.checks += 1;
    if setting!(cut) == cut::STATE {
        last.count += 1;
        return Ok(());
    }
    if is_repeat(ctx, task, check, last) {
        last.count += 1;
        return Ok(());
    }
    flush(last);
    last.valid = 0;

    // A check under borrowed credentials (override_creds: overlayfs copy-up, ...) is about
    // someone else's capabilities, not this task's.
    if real_cred(task) != check.cred {
        bump(stat::BORROWED_CREDS);
        return Ok(());
    }

    let mut flags = 0;
    let mut site = 0;
    let mut frames = [0u64; 2];
    match check.opts {
        Some(opts) => {
            if opts & CAP_OPT_NOAUDIT != 0 {
                flags |= check_flags::NOAUDIT;
            }
            if opts & CAP_OPT_INSETID != 0 {
                flags |= check_flags::INSETID;
            }
        }
        None => {
            let scratch = unsafe { &mut *SCRATCH.get_ptr_mut(0).ok_or(0)? };
            let (f, rule) = classify_stack(ctx, scratch);
            flags |= f;
            site = rule;
            if f & check_flags::AUDIT_UNKNOWN != 0 {
                frames = [opaque(&scratch.f1), opaque(&scratch.f2)];
            }
        }
    }
    let denied = check.ret != 0;
    if denied {
        flags |= check_flags::DENIED;
    }

    let userns_level = unsafe {
        bpf_probe_read_kernel(
            (check.target_ns as *const u8)
                .add(setting!(off_userns_level) as usize)
                .cast::<u32>(),
        )
        .unwrap_or(0)
    };
    let syscall = current_syscall(task);
    let comm = comm(task);
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let cap_bit = if check.cap < 64 { 1u64 << check.cap } else { 0 };

    // Caps denied earlier in this same syscall: the pending entry lives until sys_exit, so it
    // names this syscall instance exactly.
    let mut denied_before = 0u64;
    if pending_now() != 0 {
        if let Some(pending) = PENDING.get_ptr_mut(&tid) {
            let pending = unsafe { &mut *pending };
            if pending.syscall == syscall && pending.cgroup_id == cgroup_id {
                denied_before = pending.denied & !cap_bit;
                if denied && flags & check_flags::NOAUDIT == 0 {
                    pending.denied |= cap_bit;
                }
            } else if denied && flags & check_flags::NOAUDIT == 0 {
                // Left over from a syscall whose exit we did not see (the thread exited).
                *pending = Pending {
                    cgroup_id,
                    denied: cap_bit,
                    syscall,
                    _pad: 0,
                    comm,
                };
            }
        } else if denied && flags & check_flags::NOAUDIT == 0 {
            open_pending(tid, cgroup_id, cap_bit, syscall, comm);
        }
    } else if denied && flags & check_flags::NOAUDIT == 0 {
        open_pending(tid, cgroup_id, cap_bit, syscall, comm);
    }

    let key = CheckKey {
        cgroup_id,
        denied_before,
        cap: check.cap,
        syscall,
        flags,
        site,
        userns_level,
        mntns: if setting!(containers) != 0 {
            mount_namespace(task)
        } else {
            0
        },
        comm,
    };

    let counted = if setting!(stream) != 0 {
        false
    } else {
        match count_in(&CHECKS, &key, 1) {
            Counted::Existing => {
                remember(ctx, task, check, &key, last);
                return Ok(());
            }
            Counted::New => {
                remember(ctx, task, check, &key, last);
                true
            }
            Counted::Full => {
                // Map full: the event itself carries the count, so nothing is lost.
                bump(stat::KEYS_FULL);
                false
            }
        }
    };

    // A cgroup first seen through a DESCENDANTS entry: say what it is called.
    if setting!(containers) != 0 && cgroup_id == self::cgroup_id(task) {
        send_cgroup_names(task, cgroup_id);
    }
    match EVENTS.reserve::<CheckEvent>(0) {
        Some(mut entry) => {
            entry.write(CheckEvent {
                kind: if counted {
                    event_kind::CHECK
                } else {
                    event_kind::CHECK_UNCOUNTED
                },
                tgid: (pid_tgid >> 32) as u32,
                tid,
                uid: bpf_get_current_uid_gid() as u32,
                boot_ns: unsafe { bpf_ktime_get_boot_ns() },
                frames,
                key,
            });
            entry.submit(0);
        }
        None => bump(stat::RINGBUF_LOST),
    }
    Ok(())
}

/// Whether this check repeats the CPU's last counted one exactly: same task, namespace,
/// capability, options, cgroup, syscall, comm, mount namespace and call site, the task's own
/// credentials, and nothing denied in flight. Every field of its [`CheckKey`] then has the same
/// value. (Not the same `cred` pointer: setgroups and friends install new credentials on every
/// call.)
#[inline(always)]
fn is_repeat<C: EbpfContext>(ctx: &C, task: *const u8, check: &Check, last: &LastCheck) -> bool {
    if last.valid == 0
        || check.ret != 0
        || pending_now() != 0
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
        syscall_number(kernel_word(last.syscall_at) as i64)
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
    const _: () = assert!(
        core::mem::offset_of!(CheckKey, comm) % 8 == 0 && core::mem::align_of::<CheckKey>() == 8
    );
    unsafe { core::ptr::read((&raw const key.comm).cast::<[u64; 2]>()) }
}

/// The current task, as a pointer the verifier knows the type of (see [`field`]).
#[inline(always)]
fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task_btf() as *const u8 }
}

/// Reads the `T` at byte `off` of a kernel object reached through BTF-typed pointers (the current
/// task and what its fields point to). The verifier turns this into a fault-safe load (0 on a
/// fault): much cheaper than `bpf_probe_read_kernel`, a helper call, on the repeat path.
#[inline(always)]
fn field<T>(object: *const u8, off: u32) -> T {
    unsafe { core::ptr::read_volatile(object.add(off as usize).cast::<T>()) }
}

/// The kernel word at `addr`, by a plain fault-safe load (0 on a fault). Needs
/// `Settings.cast_type`: the loader turns the placeholder call into one to the kfunc
/// `bpf_rdonly_cast`, which the verifier then reduces to a register move, leaving a pointer it
/// lets the program load through. `bpf_probe_read_kernel` does the same job as a helper call,
/// many times the cost.
#[inline(always)]
fn kernel_word(addr: u64) -> u64 {
    let ptr: *const u8;
    unsafe {
        core::arch::asm!(
            "call 0x63617374",
            inlateout("r1") addr => _,
            inlateout("r2") setting!(cast_type) as u64 => _,
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
fn real_cred(task: *const u8) -> u64 {
    field(task, setting!(off_task_real_cred))
}

/// The task's `nsproxy` pointer: it changes with setns/unshare.
#[inline(always)]
fn nsproxy(task: *const u8) -> u64 {
    field(task, setting!(off_task_nsproxy))
}

/// The task's name (`task_struct.comm`, NUL-padded by the kernel), read as two words.
#[inline(always)]
fn comm_words(task: *const u8) -> [u64; 2] {
    let off = setting!(off_task_comm);
    [field(task, off), field(task, off + 8)]
}

/// The task's name as bytes.
#[inline(always)]
fn comm(task: *const u8) -> [u8; COMM_LEN] {
    unsafe { core::mem::transmute(comm_words(task)) }
}

/// The task's cgroup v2 id, as `bpf_get_current_cgroup_id` finds it
/// (`task->cgroups->dfl_cgrp->kn->id`).
#[inline(always)]
fn cgroup_id(task: *const u8) -> u64 {
    id_of(dfl_cgroup(task))
}

/// The task's cgroup v2 (`task->cgroups->dfl_cgrp`).
#[inline(always)]
fn dfl_cgroup(task: *const u8) -> *const u8 {
    let css_set: *const u8 = field(task, setting!(off_task_cgroups));
    field(css_set, setting!(off_css_set_dfl_cgrp))
}

/// A cgroup's id (`cgroup->kn->id`).
#[inline(always)]
fn id_of(cgroup: *const u8) -> u64 {
    let kn: *const u8 = field(cgroup, setting!(off_cgroup_kn));
    field(kn, setting!(off_kn_id))
}

/// Makes this counted check the CPU's last one (granted checks with nothing denied before
/// them only: those are the ones `is_repeat` can vouch for).
#[inline(always)]
fn remember<C: EbpfContext>(
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
        let scratch = unsafe { &*scratch };
        f1 = opaque(&scratch.f1);
        if f1 == layout()[1] {
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
    if let Some(at) = syscall_address(task, unsafe {
        core::ptr::read_volatile(&raw const REGS_IN_STACK)
    }) && syscall_number(kernel_word(at) as i64) == key.syscall
    {
        last.stack = field(task, setting!(off_task_stack));
        last.syscall_at = at;
    }
    if check.opts.is_none() && setting!(cast_type) != 0 {
        let learned = layout();
        let [ra_cap, ra_fwd, at_cap, at_f1, at_f2] = learned;
        // `f2 != 0` when the classification used it: the repeat path compares it then.
        if let Some(base) = stack_base(ctx)
            && ra_cap != 0
            && frames_at(learned, |i| stack_word(base, i)) == Some((f1, f2))
            && (f2 != 0 || f1 != ra_fwd || at_f2 == 0)
        {
            last.ra_cap = ra_cap;
            last.ra_cap_at = at_cap;
            last.f1_at = at_f1;
            last.f2_at = at_f2;
        }
    }
    last.key = *key;
    last.count = 0;
    last.valid = 1;
}

/// How `count_in` counted.
enum Counted {
    /// The key was there: its count went up.
    Existing,
    /// The key is new, with `n` as its count.
    New,
    /// `CHECKS` is full: nothing was counted.
    Full,
}

/// Adds `n` to `key`'s count in `map` (`CHECKS` or `OUTCOMES`), inserting the key if it is new.
#[inline(always)]
fn count_in<K>(map: &HashMap<K, u64>, key: &K, n: u64) -> Counted {
    if let Some(total) = map.get_ptr_mut(key) {
        atomic_add(total, n);
        return Counted::Existing;
    }
    match map.insert(key, &n, BPF_NOEXIST as u64) {
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

/// Adds the CPU's uncounted repeats to `CHECKS`; `seq` tells readers a flush is under way.
#[inline(always)]
fn flush(last: &mut LastCheck) {
    let count = last.count;
    if count == 0 {
        return;
    }
    unsafe { core::ptr::write_volatile(&mut last.seq, last.seq + 1) };
    let key = last.key;
    if let Counted::Full = count_in(&CHECKS, &key, count) {
        bump(stat::KEYS_FULL);
    }
    unsafe { core::ptr::write_volatile(&mut last.count, 0) };
    unsafe { core::ptr::write_volatile(&mut last.seq, last.seq + 1) };
}

/// The two return addresses above `cap_capable` as the learned stack layout finds them (what
/// `is_repeat` compares; `None` until the layout is known or if it does not hold for this
/// stack). Plain loads through `kernel_word` where the kernel allows them; otherwise one
/// `bpf_probe_read_kernel` covers the three words (a helper call costs far more than the bytes).
#[inline(always)]
fn quick_frames<C: EbpfContext>(ctx: &C) -> Option<(u64, u64)> {
    let learned = layout();
    let [ra_cap, _, at_cap, at_f1, at_f2] = learned;
    if ra_cap == 0 {
        return None;
    }
    let base = stack_base(ctx)?;
    if setting!(cast_type) != 0 {
        // The positions are below RAW_WORDS; the mask shows the verifier the bound (`base` may
        // be the context pointer, which only moves by a bounded amount).
        return frames_at(learned, |i| stack_word(base, i));
    }
    let scratch = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    // The learned positions are ordered (at_cap < at_f1 < at_f2, or at_f2 == 0) and below
    // RAW_WORDS; the masks only show the verifier the bounds.
    let first = at_cap & (RAW_WORDS as u64 - 1);
    let span = (at_f1.max(at_f2) + 1).saturating_sub(first) & (RAW_WORDS as u64 - 1);
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(scratch.words.as_mut_ptr().cast::<u8>(), span as usize * 8)
    };
    let from = (base + first * 8) as *const u8;
    if unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(from, bytes) }.is_err() {
        return None;
    }
    frames_at(learned, |i| word(&scratch.words, i.wrapping_sub(first)))
}

/// Raw stack word `i` above `base` by a plain load (needs `Settings.cast_type`). Positions are
/// below RAW_WORDS; the mask shows the verifier the bound (`base` may be the context pointer,
/// which only moves by a bounded amount).
#[inline(always)]
fn stack_word(base: u64, i: u64) -> u64 {
    kernel_word(base + (i & (RAW_WORDS as u64 - 1)) * 8)
}

/// The two return addresses above `cap_capable` from the words `at` returns by position in the
/// `learned` layout (one read of it, so that both come from the same layout), or `None` if the
/// return address into `cap_capable` is not where it should be.
#[inline(always)]
fn frames_at(learned: [u64; 5], at: impl Fn(u64) -> u64) -> Option<(u64, u64)> {
    let [ra_cap, ra_fwd, at_cap, at_f1, at_f2] = learned;
    if at(at_cap) != ra_cap {
        return None;
    }
    let f1 = at(at_f1);
    let f2 = if f1 == ra_fwd && at_f2 != 0 {
        at(at_f2)
    } else {
        0
    };
    Some((f1, f2))
}

#[inline(always)]
fn open_pending(tid: u32, cgroup_id: u64, cap_bit: u64, syscall: u32, comm: [u8; COMM_LEN]) {
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

/// Sends the names of the task's cgroup and its ancestors.
#[inline(never)]
fn send_cgroup_names(task: *const u8, cgroup_id: u64) {
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        bump(stat::RINGBUF_LOST);
        return;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).kind = event_kind::CGROUP;
        (*ev)._pad = 0;
        (*ev).cgroup_id = cgroup_id;
        let read = |ptr: u64, off: u32| -> u64 {
            if ptr == 0 {
                return 0;
            }
            bpf_probe_read_kernel((ptr as *const u8).add(off as usize).cast::<u64>()).unwrap_or(0)
        };
        let css_set = read(task as u64, setting!(off_task_cgroups));
        let cgrp = read(css_set, setting!(off_css_set_dfl_cgrp));
        let mut kn = read(cgrp, setting!(off_cgroup_kn));
        let mut level = 0;
        while level < CGROUP_LEVELS {
            let name = &mut (*ev).names[level];
            name[0] = 0;
            if kn != 0 {
                let ptr = read(kn, setting!(off_kn_name));
                if ptr != 0 {
                    let _ =
                        aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(ptr as *const u8, name);
                }
                kn = read(kn, setting!(off_kn_parent));
            }
            level += 1;
        }
    }
    entry.submit(0);
}

/// Inode number of a task's mount namespace (0 if it cannot be read).
#[inline(always)]
fn mount_namespace(task: *const u8) -> u32 {
    let nsproxy: *const u8 = field(task, setting!(off_task_nsproxy));
    let mnt_ns: *const u8 = field(nsproxy, setting!(off_nsproxy_mnt_ns));
    field(mnt_ns, setting!(off_mntns_inum))
}

/// Where the user registers sit relative to `task_struct.stack` (a kernel constant: THREAD_SIZE
/// less the registers and padding), learned from `bpf_task_pt_regs`; 0 until then.
#[unsafe(no_mangle)]
static mut REGS_IN_STACK: u64 = 0;

/// The syscall the task is in, from the user registers saved at kernel entry.
#[inline(always)]
fn current_syscall(task: *const u8) -> u32 {
    let in_stack = unsafe { core::ptr::read_volatile(&raw const REGS_IN_STACK) };
    let nr = if let Some(at) = syscall_address(task, in_stack) {
        kernel_word(at) as i64
    } else {
        let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
        if setting!(cast_type) != 0
            && let Some(scratch) = SCRATCH.get_ptr_mut(0)
        {
            let stack: u64 = field(task, setting!(off_task_stack));
            // The address goes through map memory first: read back, it is a plain number.
            // Arithmetic between the pointer itself and an unbounded number is refused by
            // some verifiers (Linux 6.12).
            let scratch = unsafe { &mut *scratch };
            unsafe { core::ptr::write_volatile(&mut scratch.regs, regs as u64) };
            let regs_at = opaque(&scratch.regs);
            unsafe {
                core::ptr::write_volatile(&raw mut REGS_IN_STACK, regs_at.wrapping_sub(stack))
            };
        }
        field::<i64>(regs, setting!(off_regs_syscall))
    };
    syscall_number(nr)
}

/// Where the task's saved syscall number is, when it can be read with a plain load.
#[inline(always)]
fn syscall_address(task: *const u8, in_stack: u64) -> Option<u64> {
    if setting!(cast_type) == 0 || in_stack == 0 {
        return None;
    }
    let stack: u64 = field(task, setting!(off_task_stack));
    Some(stack + in_stack + setting!(off_regs_syscall) as u64)
}

#[inline(always)]
fn syscall_number(nr: i64) -> u32 {
    if (0..4096).contains(&nr) {
        nr as u32
    } else {
        NO_SYSCALL
    }
}

/// Tracepoints carry no `opts`: tell an audited check from a probe by who called `cap_capable`
/// (and who called `security_capable`), using the call-site table userspace built from
/// `/proc/kallsyms`. Returns the `check_flags` bits and the 1-based rule index, and leaves the
/// two caller addresses in the scratch area when the site is unknown (for userspace to name).
///
/// Walking the stack with `bpf_get_stack` costs about a microsecond here (ORC unwinding), so it
/// is only the slow path. The fast path reads the raw stack words above the tracepoint's frame
/// and takes the return addresses where the slow path found them: the return address into
/// `cap_capable` must be there exactly, else the check goes down the slow path (which learns
/// the layout again), so a wrong layout can only cost time, never a wrong answer.
///
/// Intermediate results go through the per-CPU scratch area rather than registers: values
/// read back from map memory are opaque to the verifier, which keeps it from verifying the
/// rest of the program once per call site of the table.
#[inline(always)]
fn classify_stack<C: EbpfContext>(ctx: &C, scratch: &mut Scratch) -> (u32, u32) {
    scratch.f1 = 0;
    scratch.f2 = 0;
    scratch.used_f2 = 0;
    if !fast_frames(ctx, scratch) && !slow_frames(ctx, scratch) {
        return (check_flags::AUDIT_UNKNOWN, 0);
    }
    let f1 = opaque(&scratch.f1);
    let f2 = opaque(&scratch.f2);
    find_site(f1, scratch);
    let mut class = opaque(&scratch.class);
    if class == site_class::FORWARD as u64 {
        scratch.used_f2 = 1;
        find_site(f2, scratch);
        class = opaque(&scratch.class);
    }
    let rule = opaque(&scratch.rule) as u32;
    if class == site_class::AUDIT as u64 {
        (0, rule)
    } else if class == site_class::NOAUDIT as u64 {
        (check_flags::NOAUDIT, rule)
    } else if class == site_class::AUDIT_INSETID as u64 {
        (check_flags::INSETID, rule)
    } else {
        // Unknown (or FORWARD twice): keep the frames so userspace can name the call site.
        (check_flags::AUDIT_UNKNOWN, 0)
    }
}

const RAW_WORDS: usize = 32;

/// Per-CPU working memory of the call-site classifier.
#[repr(C)]
pub struct Scratch {
    /// Raw stack words above the tracepoint's frame.
    words: [u64; RAW_WORDS],
    /// Frames from a stack walk.
    frames: [u64; STACK_FRAMES],
    /// Caller of cap_capable, and its caller.
    f1: u64,
    f2: u64,
    /// Binary-search state and result of `find_site`.
    lo: u64,
    hi: u64,
    class: u64,
    rule: u64,
    /// Positions found by `learn_layout`.
    at: [u64; 3],
    /// 1 when the classification needed the caller of a forwarding site.
    used_f2: u64,
    /// The task's saved user registers, as a number (see `current_syscall`).
    regs: u64,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Reads a value back from map memory: the verifier no longer knows it.
#[inline(always)]
fn opaque(v: &u64) -> u64 {
    unsafe { core::ptr::read_volatile(v) }
}

/// Stack layout learned by the slow path: `[return address into cap_capable, return address
/// into security_capable, index of the first in the raw words, index of the caller of
/// cap_capable, index of the caller of security_capable]`. The addresses are kernel constants
/// and the indices depend only on which tracepoint machinery runs, so concurrent writers agree.
#[unsafe(no_mangle)]
static mut STACK_LAYOUT: [u64; 5] = [0; 5];

#[inline(always)]
fn layout() -> [u64; 5] {
    unsafe { core::ptr::read_volatile(&raw const STACK_LAYOUT) }
}

/// Where the raw stack words start: the tracepoint's own frame.
#[inline(always)]
fn stack_base<C: EbpfContext>(ctx: &C) -> Option<u64> {
    if setting!(backend) == backend::TRACEPOINT {
        // perf stores the caller registers (captured in perf_trace_cap_capable) in the first
        // word of the record; their sp is that function's frame.
        let regs: u64 = unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const u64).ok()? };
        unsafe {
            bpf_probe_read_kernel(
                (regs as *const u8)
                    .add(setting!(off_regs_sp) as usize)
                    .cast::<u64>(),
            )
            .ok()
        }
    } else {
        // A raw tracepoint's arguments live on the stack of bpf_trace_run5.
        Some(ctx.as_ptr() as u64)
    }
}

#[inline(always)]
fn read_raw_stack<C: EbpfContext>(ctx: &C, scratch: &mut Scratch) -> bool {
    let Some(base) = stack_base(ctx) else {
        return false;
    };
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(scratch.words.as_mut_ptr().cast::<u8>(), RAW_WORDS * 8)
    };
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(base as *const u8, bytes).is_ok() }
}

#[inline(always)]
fn word(words: &[u64; RAW_WORDS], i: u64) -> u64 {
    words[i as usize & (RAW_WORDS - 1)]
}

/// Caller of cap_capable and its caller, from the raw stack words, into `scratch.f1/f2`.
#[inline(always)]
fn fast_frames<C: EbpfContext>(ctx: &C, scratch: &mut Scratch) -> bool {
    let [ra_cap, ra_fwd, at_cap, at_f1, at_f2] = layout();
    if ra_cap == 0 || !read_raw_stack(ctx, scratch) || word(&scratch.words, at_cap) != ra_cap {
        return false;
    }
    let f1 = word(&scratch.words, at_f1);
    scratch.f1 = f1;
    if f1 == ra_fwd && at_f2 != 0 {
        scratch.f2 = word(&scratch.words, at_f2);
        return true;
    }
    // A caller other than security_capable decides on its own; if it is security_capable
    // reached through another call site, only a walk can find its caller.
    find_site(f1, scratch);
    opaque(&scratch.class) != site_class::FORWARD as u64
}

/// Caller of cap_capable and its caller from a real stack walk; also learns the layout the
/// fast path uses.
#[inline(always)]
fn slow_frames<C: EbpfContext>(ctx: &C, scratch: &mut Scratch) -> bool {
    bump(stat::STACK_WALKS);
    let n = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            scratch.frames.as_mut_ptr().cast(),
            (STACK_FRAMES * 8) as u32,
            0,
        )
    };
    if n <= 0 {
        bump(stat::STACK_ERRORS);
        return false;
    }
    let n = (n as usize / 8).min(STACK_FRAMES);
    let start = setting!(cap_capable_start);
    let end = setting!(cap_capable_end);
    // Index of the cap_capable frame, written to memory so the loop's states merge.
    scratch.at[0] = u64::MAX;
    let mut i = 0;
    while i < STACK_FRAMES {
        let frame = scratch.frames[i];
        if i + 2 < n && frame >= start && frame < end && opaque(&scratch.at[0]) == u64::MAX {
            scratch.at[0] = i as u64;
        }
        i += 1;
    }
    let at = opaque(&scratch.at[0]);
    if at == u64::MAX {
        bump(stat::STACK_ERRORS);
        return false;
    }
    let ra_cap = scratch.frames[at as usize & (STACK_FRAMES - 1)];
    scratch.f1 = scratch.frames[(at as usize + 1) & (STACK_FRAMES - 1)];
    scratch.f2 = scratch.frames[(at as usize + 2) & (STACK_FRAMES - 1)];
    learn_layout(ctx, scratch, ra_cap);
    true
}

#[inline(always)]
fn learn_layout<C: EbpfContext>(ctx: &C, scratch: &mut Scratch, ra_cap: u64) {
    let f1 = opaque(&scratch.f1);
    let f2 = opaque(&scratch.f2);
    if !read_raw_stack(ctx, scratch) {
        return;
    }
    // Positions of the three return addresses, in order, in one pass.
    scratch.at = [u64::MAX; 3];
    let mut i = 0;
    while i < RAW_WORDS {
        let w = scratch.words[i];
        if opaque(&scratch.at[0]) == u64::MAX {
            if w == ra_cap {
                scratch.at[0] = i as u64;
            }
        } else if opaque(&scratch.at[1]) == u64::MAX {
            if w == f1 {
                scratch.at[1] = i as u64;
            }
        } else if opaque(&scratch.at[2]) == u64::MAX && w == f2 {
            scratch.at[2] = i as u64;
        }
        i += 1;
    }
    let at = [
        opaque(&scratch.at[0]),
        opaque(&scratch.at[1]),
        opaque(&scratch.at[2]),
    ];
    if at[0] == u64::MAX || at[1] == u64::MAX {
        return;
    }
    let mut current = layout();
    current[0] = ra_cap;
    current[2] = at[0];
    current[3] = at[1];
    find_site(f1, scratch);
    if at[2] != u64::MAX && opaque(&scratch.class) == site_class::FORWARD as u64 {
        current[1] = f1;
        current[4] = at[2];
    }
    unsafe { core::ptr::write_volatile(&raw mut STACK_LAYOUT, current) };
}

/// Binary search of the sorted call-site ranges: class and rule into `scratch` (0 if none).
#[inline(always)]
fn find_site(addr: u64, scratch: &mut Scratch) {
    scratch.lo = 0;
    scratch.hi = (setting!(nsites) as u64).min(MAX_SITES as u64);
    scratch.class = 0;
    scratch.rule = 0;
    let mut step = 0;
    while step < 6 {
        let lo = opaque(&scratch.lo);
        let hi = opaque(&scratch.hi);
        if lo < hi {
            let mid = ((lo + hi) / 2) as usize & (MAX_SITES - 1);
            let range = setting!(sites[mid]);
            if addr < range.start {
                scratch.hi = mid as u64;
            } else if addr >= range.end {
                scratch.lo = mid as u64 + 1;
            } else {
                scratch.class = range.class as u64;
                scratch.rule = range.rule as u64;
                scratch.hi = 0;
            }
        }
        step += 1;
    }
}

#[inline(always)]
fn atomic_add(count: *mut u64, n: u64) {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, n) };
}

#[inline(always)]
fn pending_now() -> u64 {
    unsafe { core::ptr::read_volatile(&raw const PENDING_NOW) }
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        unsafe { *counter += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
