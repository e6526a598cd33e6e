//! Types shared by the cap-trace eBPF programs and the userspace daemon.
//!
//! Every type here crosses the kernel/userspace boundary through a BPF map or the ring buffer,
//! so each one is `#[repr(C)]`, `Copy`, and laid out without implicit padding (explicit `_pad`
//! fields instead), with `u32` where a flag would be a `bool`. The `user` feature adds the
//! `aya::Pod` impls userspace needs to read and write the maps.
#![no_std]

/// Length of `task_struct.comm`, including the terminating NUL.
pub const COMM_LEN: usize = 16;

/// Highest capability number the kernel defines today (`CAP_CHECKPOINT_RESTORE`).
pub const CAP_LAST_CAP: u32 = 40;

/// `CheckKey::syscall` when the check did not happen inside a system call.
pub const NO_SYSCALL: u32 = u32::MAX;

/// Bits of [`CheckKey::flags`].
pub mod check_flags {
    /// `cap_capable` returned an error: the capability was not in effect.
    pub const DENIED: u32 = 1 << 0;
    /// The check was made with `CAP_OPT_NOAUDIT`: a probe, not an enforcement point.
    pub const NOAUDIT: u32 = 1 << 1;
    /// The check was made with `CAP_OPT_INSETID` (from a set*id or setgroups path).
    pub const INSETID: u32 = 1 << 2;
    /// The backend could not tell whether the check was audited (unrecognised call site).
    pub const AUDIT_UNKNOWN: u32 = 1 << 3;
}

/// Ring-buffer record kinds (first field of every record).
pub mod event_kind {
    /// A [`crate::CheckEvent`], first of its key: later occurrences are counted in `CHECKS`.
    pub const CHECK: u32 = 1;
    /// A [`crate::CheckEvent`] that is not counted in `CHECKS` (streaming mode, or the map was
    /// full): the event itself is one occurrence.
    pub const CHECK_UNCOUNTED: u32 = 3;
    /// A [`crate::CgroupEvent`].
    pub const CGROUP: u32 = 4;
    /// An [`crate::OutcomeEvent`].
    pub const OUTCOME: u32 = 2;
    /// A [`crate::MigrationEvent`].
    pub const MIGRATION: u32 = 5;
}

/// Positions of the fields cap-trace reads among the raw `cap_capable` tracepoint's arguments
/// (`cred, target_ns, capable_ns, cap, ret`, as since the tracepoint came in Linux 6.14). Fixed
/// rather than settings: a context read needs a constant offset; userspace checks the kernel's
/// order before using them.
pub mod raw_arg {
    pub const CRED: usize = 0;
    pub const TARGET_NS: usize = 1;
    pub const CAP: usize = 3;
    pub const RET: usize = 4;
}

/// Which backend the programs were loaded for ([`Config`] is shared by all of them).
pub mod backend {
    pub const TRACEPOINT: u32 = 1;
    pub const RAW_TRACEPOINT: u32 = 2;
    pub const FEXIT: u32 = 3;
    pub const KPROBE: u32 = 4;
}

/// How a cgroup in the `TRACED` map is matched.
pub mod traced_kind {
    /// Only tasks whose own cgroup is this one.
    pub const EXACT: u32 = 1;
    /// Tasks in this cgroup or any cgroup below it, recorded under this cgroup.
    pub const SUBTREE: u32 = 2;
    /// Not a workload (userspace looked at it: a service, a container filtered out): tasks
    /// whose own cgroup is this one are not recorded, even when the cgroup is new (see
    /// [`Config::new_after`](super::Config)), so that it stops adding entries to the maps.
    /// Removed once the cgroup is gone.
    pub const IGNORED: u32 = 4;
    /// A cgroup a traced process shares with others (a login shell's session): only the
    /// processes of the trees in `TREES` are recorded, each under its tree's [`tree_key`]; the
    /// cgroup's other tasks are not.
    pub const TREE: u32 = 8;
}

/// Bit 63, set in every key a process tree's checks are recorded under and in no cgroup id
/// (kernfs ids are an inode number with a generation above it that never gets near bit 63).
pub const TREE_KEY: u64 = 1 << 63;

/// The key the checks of the process tree rooted at `pid` are recorded under.
pub const fn tree_key(pid: u32) -> u64 {
    TREE_KEY | pid as u64
}

/// Indices of the per-CPU `STATS` array.
/// Where a repeated check's fast path stops under `Settings.cut` (benchmark instrumentation:
/// each point adds one part of the work, so the differences between them price each part).
pub mod cut {
    /// Nowhere: the real program.
    pub const NONE: u32 = 0;
    /// After the cgroup filter.
    pub const FILTER: u32 = 1;
    /// After the per-CPU state (the check counts as a repeat).
    pub const STATE: u32 = 2;
    /// After the task's identity: credentials, name, namespaces.
    pub const IDENTITY: u32 = 3;
    /// After the syscall number.
    pub const SYSCALL: u32 = 4;
}

/// The immediate of the placeholder call the loader turns into a call to the kfunc
/// `bpf_rdonly_cast` (kfunc ids differ from kernel to kernel; the loader finds it in the
/// kernel's BTF).
pub const RDONLY_CAST_MARK: i32 = 0x6361_7374;

/// The immediate of the placeholder call the loader turns into a call to the kfunc
/// `bpf_task_work_schedule_resume_impl` (Linux 6.18; `bpf_task_work_schedule_resume` on later
/// kernels), which the task-work programs use to learn how a syscall with a denied check ends.
pub const TASK_WORK_MARK: i32 = 0x7477_726b;

/// The immediate of the placeholder `rX = MARK ll` instructions whose value says whether the
/// kernel lacks the helpers `bpf_get_current_task_btf` (before Linux 5.11) or `bpf_task_pt_regs`
/// (before 5.15): the loader writes 1 there, else 0, into every one. As an immediate, not a
/// setting, so that newer kernels pay nothing for the test: the verifier knows the constant and
/// drops the branch, and what is left is a register cleared (a setting would be a load from the
/// settings at every field read).
pub const HELPER_READS_MARK: i32 = 0x6872_6473;

/// Capabilities that are one side of an alternative (DAC_READ_SEARCH or DAC_OVERRIDE; PERFMON,
/// BPF or CHECKPOINT_RESTORE or SYS_ADMIN): denials of these must be followed every time, since
/// what was denied together in one syscall decides which one is needed. Userspace holds this to
/// its table of alternatives (`model/suggest.rs`).
pub const ALTERNATIVE_CAPS: u64 = 1 << 1 | 1 << 2 | 1 << 21 | 1 << 38 | 1 << 39 | 1 << 40;

pub mod stat {
    /// Ring-buffer reservations that failed: the event was lost (its count was not).
    pub const RINGBUF_LOST: u32 = 0;
    /// Dedupe-map inserts that failed because the map was full: count lost.
    pub const KEYS_FULL: u32 = 1;
    /// Checks made under borrowed credentials (`override_creds`), not counted.
    pub const BORROWED_CREDS: u32 = 2;
    /// kretprobe returns that had no matching entry (entry probe missed).
    pub const KPROBE_ENTRY_MISSED: u32 = 3;
    /// kprobe entries whose return was never seen (kretprobe missed).
    pub const KRETPROBE_MISSED: u32 = 4;
    /// Denials whose syscall outcome could not be tracked (pending map full).
    pub const PENDING_FULL: u32 = 5;
    /// Syscall outcomes recorded.
    pub const OUTCOMES: u32 = 6;
    /// Outcome-map inserts that failed because the map was full.
    pub const OUTCOME_KEYS_FULL: u32 = 7;
    /// Kernel stacks that could not be read (tracepoint backends).
    pub const STACK_ERRORS: u32 = 8;
    /// Full kernel stack walks (the slow path of the tracepoint backends' call-site reading).
    pub const STACK_WALKS: u32 = 9;
    /// Losses that could not be counted against their cgroup (`LOSSES` full): every profile
    /// followed at the time must be taken as incomplete.
    pub const LOSSES_UNATTRIBUTED: u32 = 10;
    /// Traced tasks that moved out of the cgroup their checks were recorded under.
    pub const MIGRATIONS: u32 = 11;
    /// Denials whose task work could not be scheduled: their syscall's outcome was lost.
    pub const TASK_WORK_FAILED: u32 = 12;
    /// Denials whose outcome cannot be known: the thread was exiting, the result was read in
    /// the middle of a syscall (io_uring), the syscall was interrupted by a signal (and may be
    /// restarted), or the check was made by an io_uring worker or a kernel thread, which never
    /// return to user space. The rules then keep the capability, as for any unknown outcome.
    pub const OUTCOMES_UNKNOWN: u32 = 13;
    /// Denials not followed because how their syscall ends is already settled: the same
    /// workload, thread name and syscall failed with EPERM or EACCES after this capability
    /// alone was denied, which makes it "needed but missing" whatever happens next.
    pub const OUTCOMES_SETTLED: u32 = 14;
    pub const COUNT: u32 = 15;
}

/// What a cgroup lost: indices of [`CgroupLosses::counts`] (the `LOSSES` map, by cgroup id).
pub mod loss_kind {
    /// Ring-buffer records that could not be reserved.
    pub const RING_BUFFER: usize = 0;
    /// Missed kprobe or kretprobe firings.
    pub const PROBES: usize = 1;
    /// Denials whose syscall outcome could not be followed.
    pub const OUTCOMES: usize = 2;
    /// Traced tasks that left the cgroup (or could not be watched for it): what they did
    /// afterwards is not recorded.
    pub const MIGRATED: usize = 3;
    pub const COUNT: usize = 4;
}

/// Classes of a call site in the audit-classification table (tracepoint backends).
pub mod site_class {
    pub const AUDIT: u32 = 1;
    pub const NOAUDIT: u32 = 2;
    pub const AUDIT_INSETID: u32 = 3;
    /// The function only forwards `opts` from its caller: look one frame further.
    pub const FORWARD: u32 = 4;
}

/// Maximum number of call-site ranges the classifier knows.
pub const MAX_SITES: usize = 32;

/// Number of kernel stack frames the tracepoint backends read.
pub const STACK_FRAMES: usize = 8;

/// Key of the in-kernel dedupe map: one entry per distinct kind of check per workload.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckKey {
    /// cgroup v2 id of the workload the check is recorded under.
    pub cgroup_id: u64,
    /// Bit `n` set when capability `n` was denied (audited or unclassified) earlier in the same
    /// syscall by the same thread: how alternatives such as a denied DAC_READ_SEARCH followed by
    /// a granted DAC_OVERRIDE show up.
    pub denied_before: u64,
    /// Capability number.
    pub cap: u32,
    /// System call in flight (the numbering of the architecture traced), or [`NO_SYSCALL`].
    pub syscall: u32,
    /// [`check_flags`] bits.
    pub flags: u32,
    /// 1-based index of the call-site rule that classified the check (tracepoint backends), 0 if
    /// none.
    pub site: u32,
    /// `level` of the user namespace the capability was checked against (0: initial).
    pub userns_level: u32,
    /// Inode number of the task's mount namespace when tracing containers (a task in the
    /// host's mount namespace is the runtime, never the container), else 0.
    pub mntns: u32,
    /// `comm` of the checking thread.
    pub comm: [u8; COMM_LEN],
}

/// First occurrence of a [`CheckKey`] (or every occurrence in streaming mode).
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct CheckEvent {
    /// [`event_kind::CHECK`].
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    /// `bpf_ktime_get_boot_ns` at the check.
    pub boot_ns: u64,
    /// Caller of `cap_capable` and its caller, when the tracepoint backend could not classify
    /// the site (so userspace can name it); zero otherwise.
    pub frames: [u64; 2],
    pub key: CheckKey,
}

/// Levels of cgroup names a [`CgroupEvent`] carries (the cgroup and its ancestors).
pub const CGROUP_LEVELS: usize = 4;
/// Bytes kept of each cgroup name.
pub const CGROUP_NAME_LEN: usize = 96;

/// The names of a task's cgroup and its ancestors, sent (when tracing containers) with the
/// first check of a new cgroup (`Config::new_after`): how a container that lives a few
/// milliseconds is still recognised after its cgroup is gone.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct CgroupEvent {
    /// [`event_kind::CGROUP`].
    pub kind: u32,
    pub _pad: u32,
    pub cgroup_id: u64,
    /// NUL-terminated names, the cgroup's own first; empty past the root.
    pub names: [[u8; CGROUP_NAME_LEN]; CGROUP_LEVELS],
}

/// Key of the outcome map: how a syscall that had a denied check ended.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutcomeKey {
    pub cgroup_id: u64,
    /// Bit `n` set when capability `n` was denied (audited or unclassified) during the syscall.
    pub denied: u64,
    pub syscall: u32,
    /// 0 when the syscall succeeded, `-errno` when it failed.
    pub result: i32,
    pub comm: [u8; COMM_LEN],
}

/// First occurrence of an [`OutcomeKey`].
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct OutcomeEvent {
    /// [`event_kind::OUTCOME`].
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub _pad: u32,
    pub boot_ns: u64,
    pub key: OutcomeKey,
}

/// Value of the `LOSSES` map: what one cgroup lost, by [`loss_kind`].
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLosses {
    pub counts: [u64; loss_kind::COUNT],
}

/// Bytes kept of the path of the cgroup a task moved to.
pub const CGROUP_PATH_LEN: usize = 128;

/// A traced task moved to a cgroup outside the one its checks were recorded under
/// (`cgroup:cgroup_attach_task` on the unified hierarchy, or a child born elsewhere with
/// `clone3(CLONE_INTO_CGROUP)`): its later checks are no longer this workload's.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct MigrationEvent {
    /// [`event_kind::MIGRATION`].
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub _pad: u32,
    /// The cgroup the task's checks were recorded under.
    pub from_cgroup: u64,
    /// The cgroup it moved to.
    pub to_cgroup: u64,
    pub comm: [u8; COMM_LEN],
    /// Path of `to_cgroup` below the cgroup v2 root (NUL-terminated, cut at
    /// [`CGROUP_PATH_LEN`]; empty when the kernel did not give it).
    pub path: [u8; CGROUP_PATH_LEN],
}

/// Per-thread state of a syscall that had a denied check, until it returns (`denied` is 0 once
/// its outcome was taken).
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct Pending {
    pub cgroup_id: u64,
    pub denied: u64,
    pub syscall: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}

/// Arguments of `cap_capable` kept from kprobe entry to return.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct KprobeArgs {
    pub cred: u64,
    pub target_ns: u64,
    pub cap: u32,
    pub opts: u32,
}

/// Value of the `TRACED` map.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Traced {
    /// [`traced_kind`].
    pub kind: u32,
    /// cgroup level (depth below the root) of the traced cgroup.
    pub level: u32,
}

/// One range of kernel text in the call-site classifier, `[start, end)`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteRange {
    pub start: u64,
    pub end: u64,
    /// [`site_class`].
    pub class: u32,
    /// 1-based rule index reported in [`CheckKey::site`].
    pub rule: u32,
}

/// Settings fixed at load time (a read-only global).
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct Settings {
    /// [`backend`] the programs are attached with.
    pub backend: u32,
    /// 1: send every check through the ring buffer instead of deduplicating in the kernel.
    pub stream: u32,
    /// Byte offset of `task_struct.real_cred`.
    pub off_task_real_cred: u32,
    /// Byte offset of `user_namespace.level`.
    pub off_userns_level: u32,
    /// Byte offset, in `struct pt_regs`, of the syscall number (`orig_ax` on x86_64, `syscallno`
    /// on arm64), read as a 4-byte `int` on both.
    pub off_regs_syscall: u32,
    /// Byte offset, in `struct pt_regs`, of the stack pointer.
    pub off_regs_sp: u32,
    /// Byte offsets in the `capability:cap_capable` tracepoint record.
    pub tp_off_cred: u32,
    pub tp_off_target_ns: u32,
    pub tp_off_cap: u32,
    pub tp_off_ret: u32,
    /// Number of valid entries in `sites`.
    pub nsites: u32,
    /// 1: tracing containers: record the mount namespace of each check, and name new cgroups.
    pub containers: u32,
    /// Byte offsets of `task_struct.nsproxy`, `nsproxy.mnt_ns` and the `inum` of
    /// `mnt_namespace.ns`.
    pub off_task_nsproxy: u32,
    pub off_nsproxy_mnt_ns: u32,
    pub off_mntns_inum: u32,
    /// Byte offsets to reach a task's cgroup v2 name: `task_struct.cgroups`,
    /// `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.name` and its parent pointer.
    pub off_task_cgroups: u32,
    pub off_css_set_dfl_cgrp: u32,
    pub off_cgroup_kn: u32,
    pub off_kn_name: u32,
    pub off_kn_parent: u32,
    /// Byte offsets of `task_struct.comm` and `kernfs_node.id` (a cgroup's id).
    pub off_task_comm: u32,
    pub off_kn_id: u32,
    /// Benchmark instrumentation: 0 in normal use; otherwise the [`cut`] point at which a
    /// repeated check stops, to measure what each part of the fast path costs.
    pub cut: u32,
    /// BTF id of `struct pt_regs` when the kernel has the kfunc `bpf_rdonly_cast` (0: it does
    /// not): with it, any kernel word is read by a plain load instead of a helper call.
    pub cast_type: u32,
    /// Byte offset of `task_struct.stack`.
    pub off_task_stack: u32,
    /// Byte offset of a cgroup's serial number (`cgroup.self.serial_nr`): unique for the
    /// kernel's lifetime, so it names a cgroup one load short of `kernfs_node.id`.
    pub off_cgroup_serial: u32,
    /// Byte offsets of `task_struct.pid` and `task_struct.tgid`.
    pub off_task_pid: u32,
    pub off_task_tgid: u32,
    /// Byte offset, in `struct pt_regs`, of the syscall's return value (`ax` on x86_64,
    /// `regs[0]` on arm64).
    pub off_regs_ret: u32,
    /// Byte offset of `task_struct.flags` (`PF_*`).
    pub off_task_flags: u32,
    /// 1 when the cgroup filter may verify its cached answer with loads from the cached
    /// addresses, which the CPU then makes at once (needs `cast_type`, and a CPU that keeps
    /// loads in program order, as x86_64 does: see `filter.rs`).
    pub cached_chain: u32,
    /// On kernels without the helpers `bpf_get_current_task_btf` (before Linux 5.11) or
    /// `bpf_task_pt_regs` (before 5.15), as [`HELPER_READS_MARK`] says: the task is
    /// `bpf_get_current_task`'s plain number, every kernel word is read with
    /// `bpf_probe_read_kernel`, the saved registers are found at `regs_in_stack` and a cgroup's
    /// ancestors in `cgroup.ancestor_ids`. There, where the user registers sit above
    /// `task_struct.stack` (THREAD_SIZE less `sizeof(struct pt_regs)`), what `bpf_task_pt_regs`
    /// would return.
    pub regs_in_stack: u32,
    /// On those kernels: byte offsets of `cgroup.level` and `cgroup.ancestor_ids` (the ids of
    /// a cgroup's ancestors by level, until Linux 5.19).
    pub off_cgroup_level: u32,
    pub off_cgroup_ancestor_ids: u32,
    /// Byte offsets of `task_struct.signal` and `signal_struct.live` (the threads of a process
    /// that have not exited yet: 0 when its last thread exits).
    pub off_task_signal: u32,
    pub off_signal_live: u32,

    /// `[start, end)` of `cap_capable`, to find its frame in a kernel stack.
    pub cap_capable_start: u64,
    pub cap_capable_end: u64,
    /// Call-site classifier, sorted by `start`.
    pub sites: [SiteRange; MAX_SITES],
}

impl Settings {
    pub const fn zeroed() -> Self {
        Self {
            backend: 0,
            stream: 0,
            off_task_real_cred: 0,
            off_userns_level: 0,
            off_regs_syscall: 0,
            off_regs_sp: 0,
            tp_off_cred: 0,
            tp_off_target_ns: 0,
            tp_off_cap: 0,
            tp_off_ret: 0,
            nsites: 0,
            containers: 0,
            off_task_nsproxy: 0,
            off_nsproxy_mnt_ns: 0,
            off_mntns_inum: 0,
            off_task_cgroups: 0,
            off_css_set_dfl_cgrp: 0,
            off_cgroup_kn: 0,
            off_kn_name: 0,
            off_kn_parent: 0,
            off_task_comm: 0,
            off_kn_id: 0,
            cut: 0,
            cast_type: 0,
            off_task_stack: 0,
            off_cgroup_serial: 0,
            off_task_pid: 0,
            off_task_tgid: 0,
            off_regs_ret: 0,
            off_task_flags: 0,
            cached_chain: 0,
            regs_in_stack: 0,
            off_cgroup_level: 0,
            off_cgroup_ancestor_ids: 0,
            off_task_signal: 0,
            off_signal_live: 0,
            cap_capable_start: 0,
            cap_capable_end: 0,
            sites: [SiteRange {
                start: 0,
                end: 0,
                class: 0,
                rule: 0,
            }; MAX_SITES],
        }
    }
}

/// Settings that change while tracing (the `CONFIG` global, alone in `.data`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct Config {
    /// Bit `n` set when a SUBTREE entry of `TRACED` lives at cgroup level `n`: the levels at
    /// which a task's ancestors are looked up.
    pub levels: u64,
    /// Bumped by userspace after every change to `TRACED` or `new_after`: per-CPU caches of
    /// "is this cgroup traced" answers are valid only for the generation they were made in.
    pub generation: u64,
    /// When not 0, a task whose own cgroup's id is above this one is recorded under its own
    /// cgroup: cgroup ids only grow, so these are the cgroups created after userspace took
    /// this id, wherever they are in the tree (a container starting under any parent, created
    /// at any time).
    pub new_after: u64,
}

/// Per-CPU memory of the last counted check (element 0 of the `LAST` per-CPU array).
///
/// A workload repeats the same check over and over from the same task; the kernel side counts
/// a repeat here, without hashing the dedupe key, and adds the count to `CHECKS` when a
/// different check comes along on that CPU. Readers add `count` to `key`'s entry; `seq` is odd
/// while such a flush is under way, so a reader that sees it change reads again.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct LastCheck {
    pub seq: u64,
    /// Checks seen in traced cgroups on this CPU (repeats or not).
    pub checks: u64,
    /// Repeats of `key` not yet added to `CHECKS`.
    pub count: u64,
    /// What makes a repeat: same task, credentials, namespace, capability, options and call
    /// site (the two return addresses above `cap_capable` on tracepoint backends).
    pub task: u64,
    pub cred: u64,
    pub target_ns: u64,
    pub leaf: u64,
    pub generation: u64,
    pub nsproxy: u64,
    pub f1: u64,
    pub f2: u64,
    /// Where the repeat path finds what it compares, worked out once by the check that set
    /// `key`: the task's kernel stack and the address of its saved syscall number
    /// (`syscall_at`, 0: not known), and where the return address into `cap_capable`
    /// (`ra_cap`, 0: not known), `f1` and `f2` (when `f2` is not 0) sit, in words from the
    /// tracepoint's arguments (the stack moves from syscall to syscall; these do not).
    pub stack: u64,
    pub syscall_at: u64,
    pub ra_cap: u64,
    pub ra_cap_at: u64,
    pub f1_at: u64,
    pub f2_at: u64,
    pub cap: u32,
    pub opts: u32,
    /// 1 when the fields above describe a counted check.
    pub valid: u32,
    /// 1 when `cg_leaf`'s answer is cached: `cg_traced` (0: not traced). `cg_serial` is the
    /// serial number of the cgroup `cg_leaf` names; `cg_css` and `cg_cgroup` are the addresses
    /// of the last task's `css_set` and of its cgroup, where the filter verifies the answer.
    pub cg_valid: u32,
    pub cg_serial: u64,
    pub cg_css: u64,
    pub cg_cgroup: u64,
    pub cg_leaf: u64,
    pub cg_generation: u64,
    pub cg_traced: u64,
    /// The kernel side's count of denials that opened or joined a pending syscall outcome
    /// (`DENIALS`), when `key` was set: a check repeats `key` only if no such denial happened
    /// since, so that nothing was denied before it in its syscall.
    pub denials: u64,
    pub key: CheckKey,
}

impl LastCheck {
    pub const fn zeroed() -> Self {
        Self {
            seq: 0,
            checks: 0,
            count: 0,
            task: 0,
            cred: 0,
            target_ns: 0,
            leaf: 0,
            generation: 0,
            nsproxy: 0,
            f1: 0,
            f2: 0,
            stack: 0,
            syscall_at: 0,
            ra_cap: 0,
            ra_cap_at: 0,
            f1_at: 0,
            f2_at: 0,
            cap: 0,
            opts: 0,
            valid: 0,
            cg_valid: 0,
            cg_serial: 0,
            cg_css: 0,
            cg_cgroup: 0,
            cg_leaf: 0,
            cg_generation: 0,
            cg_traced: 0,
            denials: 0,
            key: CheckKey {
                cgroup_id: 0,
                denied_before: 0,
                cap: 0,
                syscall: 0,
                flags: 0,
                site: 0,
                userns_level: 0,
                mntns: 0,
                comm: [0; COMM_LEN],
            },
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::{
        CgroupEvent, CgroupLosses, CheckEvent, CheckKey, Config, KprobeArgs, LastCheck,
        MigrationEvent, OutcomeEvent, OutcomeKey, Pending, Settings, SiteRange, Traced,
    };
    unsafe impl aya::Pod for CheckKey {}
    unsafe impl aya::Pod for CheckEvent {}
    unsafe impl aya::Pod for OutcomeKey {}
    unsafe impl aya::Pod for OutcomeEvent {}
    unsafe impl aya::Pod for CgroupEvent {}
    unsafe impl aya::Pod for CgroupLosses {}
    unsafe impl aya::Pod for MigrationEvent {}
    unsafe impl aya::Pod for Pending {}
    unsafe impl aya::Pod for KprobeArgs {}
    unsafe impl aya::Pod for Traced {}
    unsafe impl aya::Pod for SiteRange {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for LastCheck {}
}

// The layouts above must not grow implicit padding: these sizes are what the kernel side writes.
const _: () = {
    assert!(size_of::<CheckKey>() == 56);
    assert!(size_of::<CheckEvent>() == 96);
    assert!(size_of::<OutcomeKey>() == 40);
    assert!(size_of::<OutcomeEvent>() == 64);
    assert!(size_of::<CgroupEvent>() == 16 + CGROUP_NAME_LEN * CGROUP_LEVELS);
    assert!(size_of::<Pending>() == 40);
    assert!(size_of::<KprobeArgs>() == 24);
    assert!(size_of::<Traced>() == 8);
    assert!(size_of::<SiteRange>() == 24);
    assert!(size_of::<Settings>() == 160 + 24 * MAX_SITES);
    assert!(size_of::<CgroupLosses>() == 8 * loss_kind::COUNT);
    assert!(size_of::<MigrationEvent>() == 48 + CGROUP_PATH_LEN);
    assert!(size_of::<Config>() == 24);
    assert!(size_of::<LastCheck>() == 88 + 48 + 16 + 56 + 56);
};
