//! The cgroup filter: which workload, if any, a task's check is recorded under.
//!
//! `TRACED` holds the cgroups userspace asked for, each matched exactly or with its subtree, and
//! those it looked at and ignores ([`traced_kind`]). While userspace watches for containers,
//! `CONFIG.new_after` also records every task of a cgroup created since it started watching
//! (cgroup ids only grow) under that cgroup: a container is seen from its first check wherever
//! its cgroup is and whenever its parent was made, and the host's older cgroups cost one
//! comparison. The answer for the CPU's last cgroup is cached in
//! [`LastCheck`] (`cg_*`), keyed by the cgroup's serial number (`cgroup.self.serial_nr`, never
//! reused, one dependent load short of the id), until userspace changes `TRACED` and bumps
//! [`Config::generation`](cap_trace_common::Config). `CONFIG` is alone in `.data`, which userspace
//! rewrites whole, so reading it is one load, not a map lookup.
//!
//! The serial number is at the end of a pointer chain (`task->cgroups->dfl_cgrp->self.serial_nr`),
//! and when the workload ran in between, each load of it is a cache miss that waits for the one
//! before. So where it is sound (`Settings.cached_chain`) the cache also keeps the chain's
//! addresses, and a check verifies the cached answer with three loads that need nothing from each
//! other and go at once: the task's `css_set` pointer, the cached `css_set`'s cgroup pointer, the
//! cached cgroup's serial number. All three equal to the cache means the chain gives the cached
//! serial number: the task's `css_set` is the cached one (alive: the task holds it), its cgroup the
//! cached one, and that cgroup's serial number, never reused, the cached one, whatever was freed
//! and reallocated at those addresses meanwhile. It needs the loads seen in program order (x86_64;
//! elsewhere a load from the cached `css_set` could see its memory before the `css_set` now there
//! was initialised) and `bpf_rdonly_cast`, to load from an address held as a number.

use aya_ebpf::{
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid},
    macros::map,
    maps::HashMap,
};
use cap_trace_common::{Config, LastCheck, TREE_KEY, Traced, traced_kind};

use crate::{
    maps::BPF_F_NO_PREALLOC,
    task::{field, helper_reads, id_of, kernel_word},
};

#[map]
static TRACED: HashMap<u64, Traced> = HashMap::with_max_entries(16384, 0);

/// The processes of the traced process trees (by process id) and the key each tree's checks are
/// recorded under ([`cap_trace_common::tree_key`]): asked only for tasks whose own cgroup is a
/// [`traced_kind::TREE`] one. Userspace enters a tree's processes when it starts tracing it;
/// `members.rs` enters each process one of them forks, and removes a process when its last
/// thread exits.
#[map]
pub(crate) static TREES: HashMap<u32, u64> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// Settings that change while tracing, rewritten whole by userspace. The program never writes
/// `.data` (its own variables live in `.bss`), so userspace's writes race with nothing. A global
/// rather than an array map: one load instead of a lookup on every check.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
static mut CONFIG: Config = Config {
    levels: 0,
    generation: 0,
    new_after: 0,
};

/// The workload a task's check is recorded under, or `None` when the task is not traced.
///
/// The answer for the CPU's last cgroup is cached until userspace changes `TRACED` (a cgroup's
/// ancestors never change), so a busy CPU skips the hash lookups. The cache is keyed by the
/// cgroup's serial number, which is never reused: one dependent load fewer than its id, and
/// each is a cache miss when the workload has run in between.
///
/// In a cgroup a traced process tree shares with other processes ([`traced_kind::TREE`]), the
/// cgroup's answer is [`TREE_KEY`], cached like any other, and the current process is then
/// looked up in [`TREES`]: only tasks in such a cgroup pay that lookup, every other check one
/// comparison.
#[inline(always)]
pub(crate) fn traced_cgroup(task: *const u8, last: &mut LastCheck) -> Option<u64> {
    // Plain numbers (0: not traced), not `Option`s, across the map lookup: the verifier
    // refuses an undefined register that LLVM may keep for a `None` (DEVELOPERS.md).
    let mut answer = cgroup_answer(task, last).unwrap_or(0);
    if answer == TREE_KEY {
        answer = in_tree();
    }
    (answer != 0).then_some(answer)
}

/// The key of the current process's tree, or 0 when it belongs to no traced one.
#[inline(always)]
pub(crate) fn in_tree() -> u64 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    match TREES.get_ptr(&tgid) {
        // SAFETY: from a map lookup that succeeded: valid for the whole run.
        Some(key) => unsafe { *key },
        None => 0,
    }
}

/// What the current task's cgroup says (see [`traced_cgroup`]), through the per-CPU cache.
#[inline(always)]
fn cgroup_answer(task: *const u8, last: &mut LastCheck) -> Option<u64> {
    // SAFETY: a plain-data global the programs never write (userspace rewrites it whole).
    let generation = unsafe { core::ptr::read_volatile(&raw const CONFIG.generation) };
    let css: *const u8 = field(task, setting!(off_task_cgroups));
    let cached = last.cg_valid != 0 && last.cg_generation == generation;
    if cached && setting!(cached_chain) != 0 {
        // From the cached addresses, not from `css`: the three loads go at once (module doc).
        let cgroup = kernel_word(last.cg_css + u64::from(setting!(off_css_set_dfl_cgrp)));
        let serial = kernel_word(last.cg_cgroup + u64::from(setting!(off_cgroup_serial)));
        if css as u64 == last.cg_css && cgroup == last.cg_cgroup && serial == last.cg_serial {
            return (last.cg_traced != 0).then_some(last.cg_traced);
        }
    }
    let cgroup: *const u8 = field(css, setting!(off_css_set_dfl_cgrp));
    let serial: u64 = field(cgroup, setting!(off_cgroup_serial));
    last.cg_css = css as u64;
    last.cg_cgroup = cgroup as u64;
    if cached && last.cg_serial == serial {
        return (last.cg_traced != 0).then_some(last.cg_traced);
    }
    // The id of the same cgroup the serial number came from (the task may move meanwhile).
    let leaf = id_of(cgroup);
    let traced = lookup_traced(cgroup, leaf);
    last.cg_serial = serial;
    last.cg_leaf = leaf;
    last.cg_generation = generation;
    last.cg_traced = traced.unwrap_or(0);
    last.cg_valid = 1;
    traced
}

/// The workload `cgroup` (the current task's, whose id is `leaf`) is recorded under, from
/// `TRACED`; [`TREE_KEY`] for a cgroup whose process trees are traced (the process decides).
#[inline(always)]
pub(crate) fn lookup_traced(cgroup: *const u8, leaf: u64) -> Option<u64> {
    if let Some(traced) = TRACED.get_ptr(&leaf) {
        // SAFETY: `traced` is from a map lookup that succeeded: valid for the whole run.
        match unsafe { (*traced).kind } {
            traced_kind::EXACT | traced_kind::SUBTREE => return Some(leaf),
            traced_kind::IGNORED => return None,
            traced_kind::TREE => return Some(TREE_KEY),
            _ => {}
        }
    }
    // SAFETY: a plain-data global the programs never write (userspace rewrites it whole).
    let levels = unsafe { core::ptr::read_volatile(&raw const CONFIG.levels) };
    // Look the task's ancestors up at the levels where SUBTREE entries live.
    let mut level = 0u32;
    while levels != 0 && level < 32 {
        if levels & (1u64 << level) != 0 {
            let ancestor = ancestor_id(cgroup, level);
            if ancestor == 0 {
                break;
            }
            if let Some(traced) = TRACED.get_ptr(&ancestor)
                // SAFETY: `traced` is from a map lookup that succeeded: valid for the whole run.
                && unsafe { (*traced).kind } == traced_kind::SUBTREE
            {
                return Some(ancestor);
            }
        }
        level += 1;
    }
    new_cgroup(leaf)
}

/// `leaf` itself when it is a cgroup created since userspace started watching for containers
/// (`CONFIG.new_after`): its tasks are recorded under it.
#[inline(always)]
pub(crate) fn new_cgroup(leaf: u64) -> Option<u64> {
    // SAFETY: a plain-data global the programs never write (userspace rewrites it whole).
    let new_after = unsafe { core::ptr::read_volatile(&raw const CONFIG.new_after) };
    (new_after != 0 && leaf > new_after).then_some(leaf)
}

/// The `TRACED` entry of a cgroup, if it has one.
#[inline(always)]
pub(crate) fn traced_entry(id: u64) -> Option<Traced> {
    // SAFETY: from a map lookup that succeeded: valid for the whole run.
    TRACED.get_ptr(&id).map(|t| unsafe { *t })
}

/// The id of the task's cgroup's ancestor at `level` (0 past the cgroup's own level), as
/// `bpf_get_current_ancestor_cgroup_id` finds it. Tracing programs cannot call that helper before
/// Linux 5.11; there (`helper_reads`), `cgroup.ancestor_ids[level]` holds the same id.
#[inline(always)]
fn ancestor_id(cgroup: *const u8, level: u32) -> u64 {
    if helper_reads() {
        let own: i32 = field(cgroup, setting!(off_cgroup_level));
        if level.cast_signed() > own {
            return 0;
        }
        return field(cgroup, setting!(off_cgroup_ancestor_ids) + (level & 31) * 8);
    }
    // SAFETY: any level is valid: past the task's own the helper returns 0.
    unsafe { bpf_get_current_ancestor_cgroup_id(level.cast_signed()) }
}
