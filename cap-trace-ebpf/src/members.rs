//! Traced tasks that leave: `MEMBERS` knows, for every task in a traced cgroup, the cgroup its
//! checks are recorded under, so that a task moved out of it (by itself or by another process
//! writing `cgroup.procs`) is noticed rather than silently no longer traced.
//!
//! The cgroup filter answers for the cgroup a task is in now; once a task has moved, nothing on
//! its checks says where it came from. So membership is kept from the start: a task that moves
//! into a traced cgroup (`cgroup:cgroup_attach_task`), and every child a traced task forks
//! (`sched:sched_process_fork`), is entered; an exiting task leaves (`sched:sched_process_exit`);
//! tasks already in a cgroup when userspace starts tracing it are entered by userspace. When a
//! member moves somewhere its checks are no longer recorded under the same workload (untraced,
//! or out of the recorded cgroup's subtree), or a traced task's child is born elsewhere
//! (`clone3(CLONE_INTO_CGROUP)`), a [`MigrationEvent`] names it and the recorded cgroup counts a
//! loss ([`crate::losses`]): userspace marks that profile incomplete and says which process left.
//!
//! A process tree traced in a cgroup it shares with others (`--pid`, [`traced_kind::TREE`]) is
//! kept here too: a tree process's child joins `TREES` when it is forked, and a process leaves
//! when its last thread exits (DEVELOPERS.md, "A process tree in a shared cgroup").
//!
//! None of this is on a check's path: forks, exits and cgroup moves pay for it (a lookup or two
//! per fork and exit, machine-wide while cap-trace runs; moves are rare).

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes},
    macros::map,
    maps::HashMap,
    programs::RawTracePointContext,
};
use cap_trace_common::{
    CGROUP_PATH_LEN, COMM_LEN, MigrationEvent, TREE_KEY, event_kind, loss_kind, stat, traced_kind,
};

use crate::{
    filter::{TREES, in_tree, lookup_traced, new_cgroup, traced_entry},
    losses::lost,
    maps::{BPF_F_NO_PREALLOC, EVENTS},
    task::{current_task, dfl_cgroup, id_of},
};

/// Every task in a traced cgroup (by thread id) and the cgroup its checks are recorded under.
#[map]
static MEMBERS: HashMap<u32, u64> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// Levels of cgroup ancestors looked at when judging where a task moved.
const DEPTH: usize = 16;

/// Reads the kernel word at `ptr + off` (0 if it cannot be read).
#[inline(always)]
fn read(ptr: u64, off: u32) -> u64 {
    if ptr == 0 {
        return 0;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults.
    unsafe { bpf_probe_read_kernel((ptr as *const u8).add(off as usize).cast::<u64>()) }
        .unwrap_or(0)
}

/// Reads the `u32` at `ptr + off` (0 if it cannot be read).
#[inline(always)]
fn read_u32(ptr: u64, off: u32) -> u32 {
    if ptr == 0 {
        return 0;
    }
    // SAFETY: as in `read`.
    unsafe { bpf_probe_read_kernel((ptr as *const u8).add(off as usize).cast::<u32>()) }
        .unwrap_or(0)
}

/// A task's cgroup v2 (`task->cgroups->dfl_cgrp`), for a task that is not the current one.
#[inline(always)]
fn cgroup_of(task: u64) -> u64 {
    read(
        read(task, setting!(off_task_cgroups)),
        setting!(off_css_set_dfl_cgrp),
    )
}

/// Where a task in `cgroup` is traced, as the filter answers for the current task
/// ([`lookup_traced`]: the cgroup's own entry first, then its topmost SUBTREE ancestor, then
/// the cgroup itself if it is new), and whether `recorded` is that cgroup or one of its
/// ancestors. One pass up the tree; the last (topmost) ancestor entry found wins.
#[inline(never)]
fn answer_for(cgroup: u64, recorded: u64) -> (Option<u64>, bool) {
    let mut kn = read(cgroup, setting!(off_cgroup_kn));
    let leaf = read(kn, setting!(off_kn_id));
    let inside = leaf == recorded;
    match traced_entry(leaf).map(|t| t.kind) {
        Some(traced_kind::EXACT | traced_kind::SUBTREE) => return (Some(leaf), inside),
        Some(traced_kind::IGNORED) => return (None, inside),
        _ => {}
    }
    // 0: no SUBTREE ancestor (yet).
    let mut found = 0;
    let mut inside = inside;
    let mut level = 1;
    while level < DEPTH {
        kn = read(kn, setting!(off_kn_parent));
        if kn == 0 {
            break;
        }
        let id = read(kn, setting!(off_kn_id));
        inside |= id == recorded;
        if let Some(traced) = traced_entry(id)
            && traced.kind == traced_kind::SUBTREE
        {
            found = id;
        }
        level += 1;
    }
    if found == 0 {
        return (new_cgroup(leaf), inside);
    }
    (Some(found), inside)
}

/// Enters `tid` as recorded under `cgroup`, or moves its entry there.
#[inline(always)]
fn enter(tid: u32, cgroup: u64) {
    if let Some(entry) = MEMBERS.get_ptr_mut(&tid) {
        // SAFETY: from a map lookup that succeeded: valid for the whole run.
        unsafe { *entry = cgroup };
        return;
    }
    if MEMBERS
        .insert(&tid, &cgroup, u64::from(BPF_NOEXIST))
        .is_err()
        && MEMBERS.get_ptr(&tid).is_none()
    {
        // Full: this task could leave unseen, so its workload cannot be vouched for.
        lost(stat::MIGRATIONS, cgroup, loss_kind::MIGRATED);
    }
}

/// A member moved from `recorded` to `to` (its v2 cgroup): reports it, counts it as a loss of
/// `recorded`, and moves its entry to where it is traced now (if anywhere).
#[inline(never)]
fn report(task: u64, recorded: u64, to: u64, path: u64) {
    lost(stat::MIGRATIONS, recorded, loss_kind::MIGRATED);
    let Some(mut entry) = EVENTS.reserve::<MigrationEvent>(0) else {
        lost(stat::RINGBUF_LOST, recorded, loss_kind::RING_BUFFER);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the entry just reserved, ours until submit; kernel memory is read by
    // helpers that fail rather than fault.
    unsafe {
        (*ev).kind = event_kind::MIGRATION;
        (*ev).tgid = read_u32(task, setting!(off_task_tgid));
        (*ev).tid = read_u32(task, setting!(off_task_pid));
        (*ev)._pad = 0;
        (*ev).from_cgroup = recorded;
        (*ev).to_cgroup = id_of_raw(to);
        let comm = &mut (*ev).comm;
        *comm = [0; COMM_LEN];
        let _ = aya_ebpf::helpers::bpf_probe_read_kernel_buf(
            (task as *const u8).add(setting!(off_task_comm) as usize),
            comm,
        );
        let out = &mut (*ev).path;
        out[0] = 0;
        if path != 0 {
            let _ = bpf_probe_read_kernel_str_bytes(path as *const u8, out);
        }
        out[CGROUP_PATH_LEN - 1] = 0;
    }
    entry.submit(0);
}

/// A cgroup's id (`cgroup->kn->id`) through reads that cannot fault.
#[inline(always)]
fn id_of_raw(cgroup: u64) -> u64 {
    read(read(cgroup, setting!(off_cgroup_kn)), setting!(off_kn_id))
}

/// `cgroup:cgroup_attach_task(dst_cgrp, path, task, threadgroup)`: a task was moved (after the
/// move). Moves on the v1 hierarchies are left alone: the task's v2 cgroup is then not `dst`.
pub(crate) fn on_attach(ctx: &RawTracePointContext) {
    let dst: u64 = ctx.arg(0);
    let path: u64 = ctx.arg(1);
    let task: u64 = ctx.arg(2);
    if dst == 0 || cgroup_of(task) != dst {
        return;
    }
    let tid = read_u32(task, setting!(off_task_pid));
    let recorded = MEMBERS.get_ptr(&tid).map(|r| {
        // SAFETY: from a map lookup that succeeded: valid for the whole run.
        unsafe { *r }
    });
    let (now, inside) = answer_for(dst, recorded.unwrap_or(0));
    match (recorded, now) {
        // Still within its workload's cgroup (a sub-cgroup userspace names as the same
        // workload): it stays recorded under the workload's own.
        (Some(recorded), Some(now)) if now == recorded || inside => {}
        (Some(recorded), now) => {
            report(task, recorded, dst, path);
            match now {
                Some(now) => enter(tid, now),
                None => {
                    let _ = MEMBERS.remove(&tid);
                }
            }
        }
        (None, Some(now)) => enter(tid, now),
        (None, None) => {}
    }
}

/// `sched:sched_process_fork(parent, child)`: a traced task's child is a member too; one born
/// in another cgroup (`CLONE_INTO_CGROUP`) has left at birth.
pub(crate) fn on_fork(ctx: &RawTracePointContext) {
    let parent = current_task();
    let parent_cgroup = dfl_cgroup(parent);
    let Some(mut traced) = lookup_traced(parent_cgroup, id_of(parent_cgroup)) else {
        return;
    };
    let child: u64 = ctx.arg(1);
    if traced == TREE_KEY {
        // A cgroup shared with other processes: a traced tree's process's child joins its
        // tree (a thread's process is in it already); any other task's is not traced.
        let key = in_tree();
        if key == 0 {
            return;
        }
        let tgid = read_u32(child, setting!(off_task_tgid));
        if TREES.insert(&tgid, &key, 0).is_err() {
            // Full: this process's checks would go unseen.
            lost(stat::MIGRATIONS, key, loss_kind::MIGRATED);
        }
        traced = key;
    }
    // The parent's own membership, when it has one, is the workload it belongs to.
    let parent_tid = bpf_get_current_pid_tgid() as u32;
    let recorded = MEMBERS.get_ptr(&parent_tid).map_or(traced, |r| {
        // SAFETY: from a map lookup that succeeded: valid for the whole run.
        unsafe { *r }
    });
    let tid = read_u32(child, setting!(off_task_pid));
    let born_in = cgroup_of(child);
    if born_in == parent_cgroup as u64 {
        enter(tid, recorded);
        return;
    }
    match answer_for(born_in, recorded) {
        (Some(now), inside) if now == recorded || inside => enter(tid, recorded),
        (now, _) => {
            report(child, recorded, born_in, 0);
            if let Some(now) = now {
                enter(tid, now);
            }
        }
    }
}

/// `sched:sched_process_exit`: the exiting thread is a member no more; when it is the last of a
/// traced tree's process (`signal->live`, which `do_exit` decrements before this tracepoint),
/// the process leaves its tree. One lookup for a process of no tree.
pub(crate) fn on_exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let _ = MEMBERS.remove(&(pid_tgid as u32));
    let tgid = (pid_tgid >> 32) as u32;
    if TREES.get_ptr(&tgid).is_none() {
        return;
    }
    let signal = read(current_task() as u64, setting!(off_task_signal));
    if signal != 0 && read_u32(signal, setting!(off_signal_live)) == 0 {
        let _ = TREES.remove(&tgid);
    }
}
