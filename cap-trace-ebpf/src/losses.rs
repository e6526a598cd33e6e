//! What each cgroup lost: `LOSSES`, by cgroup id, counted where something could not be
//! recorded ([`lost`]): a ring-buffer record that could not be reserved, a missed probe, a
//! denial whose outcome could not be followed, a task that left the cgroup. Userspace marks
//! exactly the profiles of those cgroups incomplete, with how much each lost, rather than
//! every profile written after any loss.
//!
//! Only failure paths come here: nothing on the way of a check that is recorded. A loss that
//! cannot be counted against its cgroup (`LOSSES` full) is counted in `STATS` as unattributed,
//! and userspace then takes every profile it follows as incomplete.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::HashMap};
use cap_trace_common::{CgroupLosses, loss_kind, stat};

use crate::maps::{BPF_F_NO_PREALLOC, bump};

#[map]
static LOSSES: HashMap<u64, CgroupLosses> = HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

/// Counts one loss of `kind` ([`loss_kind`]) against `cgroup_id`, and in `STATS` at `index`.
#[inline(never)]
pub(crate) fn lost(index: u32, cgroup_id: u64, kind: usize) {
    bump(index);
    if kind >= loss_kind::COUNT {
        return;
    }
    if count(cgroup_id, kind) {
        return;
    }
    let mut first = CgroupLosses::default();
    first.counts[kind] = 1;
    // Another CPU may have inserted it meanwhile: then count into its entry.
    if LOSSES
        .insert(&cgroup_id, &first, u64::from(BPF_NOEXIST))
        .is_err()
        && !count(cgroup_id, kind)
    {
        bump(stat::LOSSES_UNATTRIBUTED);
    }
}

/// Adds one to `cgroup_id`'s count of `kind`, if it has an entry.
#[inline(always)]
fn count(cgroup_id: u64, kind: usize) -> bool {
    let Some(entry) = LOSSES.get_ptr_mut(&cgroup_id) else {
        return false;
    };
    // SAFETY: `entry` is from a map lookup that succeeded: valid for the whole run; `kind` is
    // below `loss_kind::COUNT` (checked by the caller).
    unsafe {
        let counter = (&raw mut (*entry).counts).cast::<u64>().add(kind);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1);
    }
    true
}
