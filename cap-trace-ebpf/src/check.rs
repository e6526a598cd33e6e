//! One `cap_capable` call, whatever the hook: [`on_check`] counts it as a repeat ([`crate::repeat`])
//! or classifies it ([`audit`]), keys it ([`CheckKey`]), counts it in `CHECKS` and sends its first
//! occurrence to userspace; denials also go to [`crate::outcome`].
//!
//! A check under borrowed credentials (`override_creds`: overlayfs copy-up, ...) is about someone
//! else's capabilities and is only counted in the statistics.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel,
    },
};
use cap_trace_common::{
    CGROUP_LEVELS, CgroupEvent, CheckEvent, CheckKey, LastCheck, Pending, check_flags, event_kind,
    loss_kind, stat,
};

use crate::{
    callsite::{SCRATCH, classify_stack, opaque},
    losses::lost,
    maps::{CHECKS, Counted, EVENTS, bump, count_in},
    outcome::note_denial,
    repeat::{count_if_repeat, remember},
    task::{self, comm, current_syscall, mount_namespace, real_cred, userns_level},
};

/// A `cap_capable` call, whatever the hook that saw it.
pub(crate) struct Check {
    pub(crate) cred: u64,
    pub(crate) target_ns: u64,
    pub(crate) cap: u32,
    pub(crate) ret: i32,
    /// `CAP_OPT_*` bits when the hook sees them (fexit, kprobe); `None` on tracepoints.
    pub(crate) opts: Option<u32>,
}

const CAP_OPT_NOAUDIT: u32 = 1 << 1;
const CAP_OPT_INSETID: u32 = 1 << 2;

#[inline(always)]
pub(crate) fn on_check<C: EbpfContext, const TASK_WORK: bool>(
    ctx: &C,
    task: *const u8,
    last: &mut LastCheck,
    cgroup_id: u64,
    check: &Check,
) -> Result<(), i32> {
    if count_if_repeat(ctx, task, check, last) {
        return Ok(());
    }

    // A check under borrowed credentials (override_creds: overlayfs copy-up, ...) is about
    // someone else's capabilities, not this task's.
    if real_cred(task) != check.cred {
        bump(stat::BORROWED_CREDS);
        return Ok(());
    }

    let Audit {
        mut flags,
        site,
        frames,
    } = audit(ctx, check).ok_or(0)?;
    let denied = check.ret != 0;
    if denied {
        flags |= check_flags::DENIED;
    }

    let userns_level = userns_level(check.target_ns);
    let syscall = current_syscall(task);
    let comm = comm(task);
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let cap_bit = if check.cap < 64 { 1u64 << check.cap } else { 0 };

    // A denial the workload may have hit (audited or unclassified, not a probe): how its
    // syscall ends tells.
    let wall = denied && flags & check_flags::NOAUDIT == 0 && cap_bit != 0;
    let this = Pending {
        cgroup_id,
        denied: cap_bit,
        syscall,
        _pad: 0,
        comm,
    };
    let denied_before = note_denial::<TASK_WORK>(task, tid, &this, wall);

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

    // A cgroup recorded under its own id (a new one): say what it is called.
    if setting!(containers) != 0 && cgroup_id == task::cgroup_id(task) {
        send_cgroup_names(task, cgroup_id);
    }
    send_check(pid_tgid, counted, frames, key);
    Ok(())
}

/// How a check was audited, as the hook's `opts` or the call site tell.
struct Audit {
    /// `check_flags` bits (all but `DENIED`).
    flags: u32,
    /// The call-site rule that classified the check (tracepoints), 0 if none.
    site: u32,
    /// The caller of `cap_capable` and its caller when the call site is unknown, else zero.
    frames: [u64; 2],
}

/// How the check was audited: from `opts` on fexit and kprobes, from the call site on
/// tracepoints (`None` only if the scratch area cannot be had).
#[inline(always)]
fn audit<C: EbpfContext>(ctx: &C, check: &Check) -> Option<Audit> {
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
            // SAFETY: this CPU's element of a per-CPU array, valid for the run, and not aliased.
            let scratch = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
            let (f, rule) = classify_stack(ctx, scratch);
            flags |= f;
            site = rule;
            if f & check_flags::AUDIT_UNKNOWN != 0 {
                frames = [opaque(&scratch.f1), opaque(&scratch.f2)];
            }
        }
    }
    Some(Audit {
        flags,
        site,
        frames,
    })
}

/// Sends a check to userspace: the first of its key (`counted`), or one occurrence of it.
#[inline(always)]
fn send_check(pid_tgid: u64, counted: bool, frames: [u64; 2], key: CheckKey) {
    let cgroup_id = key.cgroup_id;
    match EVENTS.reserve::<CheckEvent>(0) {
        Some(mut entry) => {
            entry.write(CheckEvent {
                kind: if counted {
                    event_kind::CHECK
                } else {
                    event_kind::CHECK_UNCOUNTED
                },
                tgid: (pid_tgid >> 32) as u32,
                tid: pid_tgid as u32,
                uid: bpf_get_current_uid_gid() as u32,
                // SAFETY: a helper without arguments.
                boot_ns: unsafe { bpf_ktime_get_boot_ns() },
                frames,
                key,
            });
            entry.submit(0);
        }
        None => lost(stat::RINGBUF_LOST, cgroup_id, loss_kind::RING_BUFFER),
    }
}

/// Sends the names of the task's cgroup and its ancestors.
#[inline(never)]
fn send_cgroup_names(task: *const u8, cgroup_id: u64) {
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        lost(stat::RINGBUF_LOST, cgroup_id, loss_kind::RING_BUFFER);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the entry just reserved, ours until submit; kernel memory is read by helpers.
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
