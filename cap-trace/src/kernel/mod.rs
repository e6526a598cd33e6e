//! Loading the kernel side and attaching it with the best hook the running kernel offers.
//!
//! Three backends see the same `cap_capable` calls:
//! 1. `tracepoint`: `capability:cap_capable` (Linux 6.14+). No `opts` argument, so the audit flag
//!    comes from the call site (see [`crate::linux::audit`]).
//! 2. `fexit` on `cap_capable` (BTF kernels): arguments, `opts` and the return value.
//! 3. `kprobe` + `kretprobe` on `cap_capable` (any kernel with kprobes).
//!
//! `auto` tries them in that order and keeps the first that loads and attaches.
//!
//! How a syscall with a denied check ends is learned by a BPF task work where the kernel has it
//! (Linux 6.18+: nothing else is attached), else on `raw_syscalls:sys_exit`, which every syscall
//! on the host then pays for ([`OutcomeHook`]).

pub mod btf;
pub mod kallsyms;
mod kfunc;
mod prealloc;
pub mod sites;
pub mod tracefs;

use std::fs::File;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{FExit, KProbe, RawTracePoint, TracePoint};
use aya::{Btf as AyaBtf, Ebpf, EbpfLoader};
use cap_trace_common::{
    CgroupLosses, CheckKey, Config, HELPER_READS_MARK, LastCheck, MAX_SITES, OutcomeKey,
    RDONLY_CAST_MARK, Settings, TASK_WORK_MARK, Traced, backend, raw_arg, stat, traced_kind,
};
use serde::{Deserialize, Serialize};

use crate::kernel::btf::Btf;
use crate::kernel::sites::SiteTable;
use crate::linux::hook::{Backend, TracepointFlavor};

/// The eBPF object built by `build.rs` from `cap-trace-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/cap-trace"));

/// What `--probe` asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProbeChoice {
    Auto,
    Only(Backend),
}

impl std::str::FromStr for ProbeChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ProbeChoice::Auto),
            "tracepoint" => Ok(ProbeChoice::Only(Backend::Tracepoint)),
            "fexit" => Ok(ProbeChoice::Only(Backend::Fexit)),
            "kprobe" => Ok(ProbeChoice::Only(Backend::Kprobe)),
            other => Err(format!(
                "unknown probe `{other}` (expected auto, tracepoint, fexit or kprobe)"
            )),
        }
    }
}

/// How the outcome of a syscall with a denied check is learned.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OutcomeHook {
    /// A BPF task work scheduled by the denied check runs when its thread returns to user
    /// space (kfunc `bpf_task_work_schedule_resume`, Linux 6.18+): only such syscalls pay.
    TaskWork,
    /// A program on `raw_syscalls:sys_exit`: every syscall of every process on the host runs
    /// it (and the kernel's slow syscall path while it is attached).
    SysExit,
}

impl OutcomeHook {
    /// How the hook's name says it.
    fn describe(self) -> &'static str {
        match self {
            OutcomeHook::TaskWork => "outcomes by task work",
            OutcomeHook::SysExit => "outcomes on raw_syscalls:sys_exit",
        }
    }
}

/// Which outcome hook `--outcome-hook` asks for: `None` is the best the kernel offers.
pub type OutcomeChoice = Option<OutcomeHook>;

#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub choice: ProbeChoice,
    pub flavor: TracepointFlavor,
    /// Send every check through the ring buffer instead of deduplicating in the kernel.
    pub stream: bool,
    pub ring_buffer_bytes: u32,
    /// Capacity of the in-kernel dedupe map.
    pub max_keys: u32,
    /// Attach an empty program instead of cap-trace (the benchmark's floor).
    pub floor: bool,
    /// With `floor`: an empty program on raw_syscalls:sys_exit too (cap-trace's full hook set).
    pub floor_sys_exit: bool,
    /// Tracing containers: record each check's mount namespace (tells the runtime from the
    /// container) and the names of new cgroups.
    pub containers: bool,
    /// Benchmark cost breakdown: where a repeated check's fast path stops (0: nowhere).
    pub cut: u32,
    /// The outcome hook asked for (`None`: task work where the kernel has it, else sys_exit).
    pub outcomes: OutcomeChoice,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            choice: ProbeChoice::Auto,
            flavor: TracepointFlavor::default(),
            stream: false,
            ring_buffer_bytes: 1 << 20,
            max_keys: 16384,
            floor: false,
            floor_sys_exit: false,
            containers: false,
            cut: 0,
            outcomes: None,
        }
    }
}

/// Why a backend could not be used, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub backend: Backend,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The command line says what is needed and what is missing (`session::privilege`).
    #[error("permission denied: loading the eBPF programs needs more privileges")]
    NoPermission,
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux): use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since Linux 5.15)"
    )]
    NoBtf,
    #[error("{0}")]
    Kernel(String),
    #[error("no capability hook works on Linux {release}: {}", attempts_summary(.attempts))]
    NoBackend {
        release: String,
        attempts: Vec<Attempt>,
    },
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, String),
}

fn attempts_summary(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.backend, a.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Counters kept by the kernel side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub checks: u64,
    pub ringbuf_lost: u64,
    pub keys_full: u64,
    pub borrowed_creds: u64,
    pub kprobe_entry_missed: u64,
    pub kretprobe_missed: u64,
    pub pending_full: u64,
    pub outcomes: u64,
    pub outcome_keys_full: u64,
    pub stack_errors: u64,
    pub stack_walks: u64,
    /// Losses that could not be counted against their cgroup.
    pub losses_unattributed: u64,
    /// Traced tasks that left the cgroup their checks were recorded under.
    pub migrations: u64,
    /// Denials whose task work could not be scheduled (their outcome is lost).
    pub task_work_failed: u64,
    /// Denials whose outcome cannot be known (the rules keep their capability).
    pub outcomes_unknown: u64,
    /// Denials not followed because their outcome was already settled.
    pub outcomes_settled: u64,
}

impl Stats {
    /// Losses that make a profile incomplete.
    pub fn losses(&self) -> u64 {
        self.ringbuf_lost + self.kprobe_entry_missed + self.kretprobe_missed + self.outcomes_lost()
    }

    /// Denials whose syscall's outcome was lost.
    pub fn outcomes_lost(&self) -> u64 {
        self.pending_full + self.outcome_keys_full + self.task_work_failed
    }
}

/// The kernel side, loaded and attached.
pub struct Probe {
    ebpf: Ebpf,
    pub backend: Backend,
    pub flavor: Option<TracepointFlavor>,
    /// How denied checks' outcomes are learned (`None`: the benchmark's empty programs).
    pub outcomes: Option<OutcomeHook>,
    /// Why the task work was not used where the kernel has it (its program was refused).
    pub task_work_refused: Option<String>,
    /// Backends tried and rejected before this one.
    pub rejected: Vec<Attempt>,
    pub sites: Option<SiteTable>,
    levels: u64,
    /// Bumped on every change to `TRACED` (see `Config::generation`).
    generation: u64,
    /// What `TRACED` holds, as written: `levels` is worked out from it rather than from the
    /// map (which holds an entry for every ignored cgroup).
    traced: std::collections::HashMap<u64, Traced>,
    /// See `Config::new_after`.
    new_after: u64,
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

/// Whether this process holds what loading eBPF programs needs.
fn has_bpf_privileges() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let sys_admin = eff & (1 << 21) != 0;
    let bpf_perfmon = eff & (1 << 39) != 0 && eff & (1 << 38) != 0;
    sys_admin || bpf_perfmon
}

/// Struct offsets from the running kernel's BTF.
struct KernelLayout {
    off_task_real_cred: u32,
    off_userns_level: u32,
    off_regs_syscall: u32,
    off_regs_sp: u32,
    off_task_nsproxy: u32,
    off_nsproxy_mnt_ns: u32,
    off_mntns_inum: u32,
    off_task_cgroups: u32,
    off_css_set_dfl_cgrp: u32,
    off_cgroup_kn: u32,
    off_kn_name: u32,
    off_kn_parent: u32,
    off_task_comm: u32,
    off_kn_id: u32,
    off_task_stack: u32,
    off_cgroup_serial: u32,
    off_task_pid: u32,
    off_task_tgid: u32,
    off_regs_ret: u32,
    off_task_flags: u32,
    off_task_signal: u32,
    off_signal_live: u32,
    /// BTF ids of the kfunc `bpf_rdonly_cast` and of `struct pt_regs`, when the kernel has it.
    rdonly_cast: Option<(u32, u32)>,
    /// BTF id of the kfunc `bpf_task_work_schedule_resume` (or its `_impl`), when the kernel
    /// has it and `struct bpf_task_work`.
    task_work: Option<u32>,
    /// What a kernel without `bpf_get_current_task_btf` or `bpf_task_pt_regs` needs instead.
    helper_reads: Option<HelperReads>,
    /// Tracing programs may use maps allocated as they fill without a kernel warning (Linux
    /// 6.1+, which has the BPF memory allocator): see `prealloc`.
    growing_maps_allowed: bool,
}

/// Where the kernel side finds by itself what the helpers of Linux 5.15 return (see
/// `Settings.helper_reads`).
struct HelperReads {
    regs_in_stack: u32,
    off_cgroup_level: u32,
    off_cgroup_ancestor_ids: u32,
}

impl KernelLayout {
    /// The load-time settings with this kernel's offsets filled in.
    fn settings(&self, options: &ProbeOptions) -> Settings {
        let mut settings = Settings::zeroed();
        settings.stream = u32::from(options.stream);
        settings.off_task_real_cred = self.off_task_real_cred;
        settings.off_userns_level = self.off_userns_level;
        settings.off_regs_syscall = self.off_regs_syscall;
        settings.off_regs_sp = self.off_regs_sp;
        settings.containers = u32::from(options.containers);
        settings.off_task_nsproxy = self.off_task_nsproxy;
        settings.off_nsproxy_mnt_ns = self.off_nsproxy_mnt_ns;
        settings.off_mntns_inum = self.off_mntns_inum;
        settings.off_task_cgroups = self.off_task_cgroups;
        settings.off_css_set_dfl_cgrp = self.off_css_set_dfl_cgrp;
        settings.off_cgroup_kn = self.off_cgroup_kn;
        settings.off_kn_name = self.off_kn_name;
        settings.off_kn_parent = self.off_kn_parent;
        settings.off_task_comm = self.off_task_comm;
        settings.off_kn_id = self.off_kn_id;
        settings.cut = options.cut;
        settings.off_task_stack = self.off_task_stack;
        settings.off_cgroup_serial = self.off_cgroup_serial;
        settings.off_task_pid = self.off_task_pid;
        settings.off_task_tgid = self.off_task_tgid;
        settings.cast_type = self.rdonly_cast.map_or(0, |(_, pt_regs)| pt_regs);
        settings.off_regs_ret = self.off_regs_ret;
        settings.off_task_flags = self.off_task_flags;
        settings.off_task_signal = self.off_task_signal;
        settings.off_signal_live = self.off_signal_live;
        // x86_64 keeps loads in program order, which the filter's check of its cached answer
        // needs (cap-trace-ebpf/src/filter.rs); it loads from numbers through bpf_rdonly_cast.
        settings.cached_chain = u32::from(cfg!(target_arch = "x86_64") && settings.cast_type != 0);
        if let Some(reads) = &self.helper_reads {
            settings.regs_in_stack = reads.regs_in_stack;
            settings.off_cgroup_level = reads.off_cgroup_level;
            settings.off_cgroup_ancestor_ids = reads.off_cgroup_ancestor_ids;
        }
        settings
    }

    /// The placeholder calls of the object and this kernel's kfuncs for them.
    fn kfuncs(&self) -> [kfunc::Kfunc; 2] {
        [
            (RDONLY_CAST_MARK, self.rdonly_cast.map(|(kfunc, _)| kfunc)),
            (TASK_WORK_MARK, self.task_work),
        ]
    }
}

fn kernel_layout(btf: &Btf) -> Result<KernelLayout, ProbeError> {
    let err = |e: btf::BtfError| ProbeError::Kernel(format!("reading kernel BTF: {e}"));
    #[cfg(target_arch = "x86_64")]
    let (syscall_reg, ret_reg) = ("orig_ax", "ax");
    // `regs[0]`: the array's offset is its first element's.
    #[cfg(target_arch = "aarch64")]
    let (syscall_reg, ret_reg) = ("syscallno", "regs");
    Ok(KernelLayout {
        off_task_real_cred: btf.member_offset("task_struct", "real_cred").map_err(err)?,
        off_userns_level: btf.member_offset("user_namespace", "level").map_err(err)?,
        off_regs_syscall: btf.member_offset("pt_regs", syscall_reg).map_err(err)?,
        off_regs_sp: btf.member_offset("pt_regs", "sp").map_err(err)?,
        off_task_nsproxy: btf.member_offset("task_struct", "nsproxy").map_err(err)?,
        off_nsproxy_mnt_ns: btf.member_offset("nsproxy", "mnt_ns").map_err(err)?,
        off_mntns_inum: btf.member_offset("mnt_namespace", "ns").map_err(err)?
            + btf.member_offset("ns_common", "inum").map_err(err)?,
        off_task_cgroups: btf.member_offset("task_struct", "cgroups").map_err(err)?,
        off_css_set_dfl_cgrp: btf.member_offset("css_set", "dfl_cgrp").map_err(err)?,
        off_cgroup_kn: btf.member_offset("cgroup", "kn").map_err(err)?,
        off_kn_name: btf.member_offset("kernfs_node", "name").map_err(err)?,
        // Renamed __parent in Linux 6.15.
        off_kn_parent: btf
            .member_offset("kernfs_node", "__parent")
            .or_else(|_| btf.member_offset("kernfs_node", "parent"))
            .map_err(err)?,
        off_task_comm: btf.member_offset("task_struct", "comm").map_err(err)?,
        off_kn_id: btf.member_offset("kernfs_node", "id").map_err(err)?,
        off_task_stack: btf.member_offset("task_struct", "stack").map_err(err)?,
        off_cgroup_serial: btf.member_offset("cgroup", "self").map_err(err)?
            + btf
                .member_offset("cgroup_subsys_state", "serial_nr")
                .map_err(err)?,
        off_task_pid: btf.member_offset("task_struct", "pid").map_err(err)?,
        off_task_tgid: btf.member_offset("task_struct", "tgid").map_err(err)?,
        off_regs_ret: btf.member_offset("pt_regs", ret_reg).map_err(err)?,
        off_task_flags: btf.member_offset("task_struct", "flags").map_err(err)?,
        off_task_signal: btf.member_offset("task_struct", "signal").map_err(err)?,
        off_signal_live: btf.member_offset("signal_struct", "live").map_err(err)?,
        rdonly_cast: btf.func_id("bpf_rdonly_cast").zip(btf.struct_id("pt_regs")),
        task_work: task_work_kfunc(btf),
        helper_reads: helper_reads(btf).map_err(err)?,
        growing_maps_allowed: btf.struct_id("bpf_mem_alloc").is_some(),
    })
}

/// The BTF id of the kfunc that schedules a task work on return to user space: named with
/// `_impl` in Linux 6.18, and without on kernels that made its last argument implicit (the
/// programs pass NULL for it either way). Never the `_signal` flavour: it makes an interruptible
/// wait later in the same syscall fail.
fn task_work_kfunc(btf: &Btf) -> Option<u32> {
    btf.struct_id("bpf_task_work")?;
    btf.func_id("bpf_task_work_schedule_resume_impl")
        .or_else(|| btf.func_id("bpf_task_work_schedule_resume"))
}

/// On kernels before Linux 5.15, what the kernel side does in place of the helpers
/// `bpf_get_current_task_btf` (5.11), `bpf_task_pt_regs` (5.15) and, for tracing programs,
/// `bpf_get_current_ancestor_cgroup_id` (5.11); `None` where the kernel has them all.
fn helper_reads(btf: &Btf) -> Result<Option<HelperReads>, btf::BtfError> {
    let has = |helper| btf.enum_has("bpf_func_id", helper);
    if has("BPF_FUNC_get_current_task_btf") && has("BPF_FUNC_task_pt_regs") {
        return Ok(None);
    }
    // task_pt_regs(): the user registers are the last thing on the task's kernel stack.
    let regs_in_stack = thread_size() - btf.struct_size("pt_regs")?;
    Ok(Some(HelperReads {
        regs_in_stack,
        off_cgroup_level: btf.member_offset("cgroup", "level")?,
        // Replaced by `ancestors` (pointers) in Linux 6.0, long after both helpers arrived.
        off_cgroup_ancestor_ids: btf.member_offset("cgroup", "ancestor_ids")?,
    }))
}

/// The size of a task's kernel stack (THREAD_SIZE), at whose top the kernel saves the user
/// registers. 16 KiB on x86_64 (no top padding on 64-bit) and on arm64, whose stacks are a
/// page when pages are larger. (Kernels built with KASAN double it; those are test kernels.)
fn thread_size() -> u32 {
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        (page.max(0) as u32).max(16384)
    }
    #[cfg(not(target_arch = "aarch64"))]
    16384
}

impl Probe {
    /// Loads and attaches the kernel side with the requested (or best working) backend.
    pub fn load(options: &ProbeOptions) -> Result<Probe, ProbeError> {
        if !has_bpf_privileges() {
            return Err(ProbeError::NoPermission);
        }
        bump_memlock_rlimit();
        let started = std::time::Instant::now();
        let btf = match Btf::from_sys_fs() {
            Ok(btf) => btf,
            Err(btf::BtfError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(ProbeError::NoBtf);
            }
            Err(e) => return Err(ProbeError::Kernel(format!("reading kernel BTF: {e}"))),
        };
        let layout = kernel_layout(&btf)?;
        let tp_params = btf.raw_tracepoint_params("cap_capable").ok();
        // Everything needed from it is out; aya's loader parses the BTF once more.
        drop(btf);
        log::debug!("kernel BTF read in {} ms", started.elapsed().as_millis());
        let order: &[Backend] = match options.choice {
            ProbeChoice::Auto => &[Backend::Tracepoint, Backend::Fexit, Backend::Kprobe],
            ProbeChoice::Only(ref b) => std::slice::from_ref(b),
        };
        // One patched copy of the object serves every backend tried.
        let (mut object, _) = kfunc::patch(OBJECT, &layout.kfuncs()).map_err(ProbeError::Kernel)?;
        let helper_reads = u32::from(layout.helper_reads.is_some());
        kfunc::set_immediates(&mut object, HELPER_READS_MARK, helper_reads)
            .map_err(ProbeError::Kernel)?;
        if !layout.growing_maps_allowed {
            prealloc::preallocate(&mut object, &prealloc::GROWING_MAPS)
                .map_err(ProbeError::Kernel)?;
        }
        let mut rejected = Vec::new();
        for &backend in order {
            match Self::try_backend(
                backend,
                options,
                tp_params.as_deref(),
                &layout,
                object.bytes(),
            ) {
                Ok(mut probe) => {
                    probe.rejected = rejected;
                    // Loading freed far more than tracing will use: give it back (glibc
                    // keeps it otherwise; musl returns large frees by itself).
                    #[cfg(target_env = "gnu")]
                    // SAFETY: malloc_trim only releases free heap memory.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                    return Ok(probe);
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Unavailable(error)) => {
                    log::debug!("{backend} backend unavailable: {error}");
                    rejected.push(Attempt { backend, error });
                }
            }
        }
        Err(ProbeError::NoBackend {
            release: kernel_release(),
            attempts: rejected,
        })
    }

    fn try_backend(
        backend: Backend,
        options: &ProbeOptions,
        tp_params: Option<&[String]>,
        layout: &KernelLayout,
        object: &[u8],
    ) -> Result<Probe, AttemptError> {
        let mut settings = layout.settings(options);
        let mut sites = None;
        let mut flavor = None;
        match backend {
            Backend::Tracepoint => {
                sites = Some(tracepoint_settings(&mut settings, tp_params)?);
                settings.backend = match options.flavor {
                    TracepointFlavor::Classic => backend::TRACEPOINT,
                    TracepointFlavor::Raw => backend::RAW_TRACEPOINT,
                };
                flavor = Some(options.flavor);
            }
            Backend::Fexit => settings.backend = backend::FEXIT,
            Backend::Kprobe => settings.backend = backend::KPROBE,
        }

        let t = std::time::Instant::now();
        // No CO-RE relocations to make (kernel offsets arrive as globals): let go of the kernel
        // BTF aya's loader parsed before the object is loaded, rather than holding both.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global("SETTINGS", &settings, true)
            .map_max_entries("EVENTS", options.ring_buffer_bytes)
            .map_max_entries("CHECKS", options.max_keys)
            .load(object)
            .map_err(|e| classify_load_error(&e.to_string()))?;

        log::debug!("{backend}: object loaded in {} ms", t.elapsed().as_millis());
        let t = std::time::Instant::now();
        let (outcomes, task_work_refused) = if options.floor {
            attach_floor(&mut ebpf, backend, options)?;
            (None, None)
        } else {
            let (hook, refused) = attach_backend(&mut ebpf, backend, options, layout)?;
            attach_members(&mut ebpf).map_err(AttemptError::Unavailable)?;
            (Some(hook), refused)
        };
        log::debug!(
            "{backend}: programs verified and attached in {} ms",
            t.elapsed().as_millis()
        );
        Ok(Probe {
            ebpf,
            backend,
            flavor,
            outcomes,
            task_work_refused,
            rejected: Vec::new(),
            sites,
            levels: 0,
            generation: 0,
            traced: std::collections::HashMap::new(),
            new_after: 0,
        })
    }

    /// A human name for the hook in use and how outcomes are learned, e.g. `tracepoint
    /// (raw_tracepoint capability:cap_capable, outcomes by task work)`.
    pub fn hook_name(&self) -> String {
        let hook = match self.flavor {
            Some(TracepointFlavor::Raw) => "raw_tracepoint capability:cap_capable",
            Some(TracepointFlavor::Classic) => "capability:cap_capable",
            None => match self.backend {
                Backend::Fexit => "cap_capable",
                Backend::Kprobe => "cap_capable + kretprobe",
                Backend::Tracepoint => unreachable!(),
            },
        };
        match self.outcomes {
            Some(outcomes) => format!("{} ({hook}, {})", self.backend, outcomes.describe()),
            None => format!("{} ({hook})", self.backend),
        }
    }

    /// Starts tracing a cgroup (by its cgroup v2 id), or, with [`traced_kind::IGNORED`], stops
    /// tracing the tasks whose own cgroup it is.
    pub fn trace_cgroup(&mut self, id: u64, traced: Traced) -> Result<(), ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("TRACED", e.to_string());
        let mut map: HashMap<_, u64, Traced> =
            HashMap::try_from(self.ebpf.map_mut("TRACED").expect("TRACED map")).map_err(map_err)?;
        map.insert(id, traced, 0).map_err(map_err)?;
        self.traced.insert(id, traced);
        self.levels = levels(self.traced.values());
        // Invalidates the kernel side's cached answers.
        self.generation += 1;
        self.write_config()
    }

    /// Ignores a cgroup found not to be followed (see [`traced_kind::IGNORED`]).
    pub fn ignore_cgroup(&mut self, id: u64) -> Result<(), ProbeError> {
        self.trace_cgroup(
            id,
            Traced {
                kind: traced_kind::IGNORED,
                level: 0,
            },
        )
    }

    /// Stops tracing (or ignoring) a cgroup.
    pub fn untrace_cgroup(&mut self, id: u64) -> Result<(), ProbeError> {
        self.untrace_cgroups(&[id])
    }

    /// Stops tracing (or ignoring) cgroups.
    pub fn untrace_cgroups(&mut self, ids: &[u64]) -> Result<(), ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("TRACED", e.to_string());
        let mut map: HashMap<_, u64, Traced> =
            HashMap::try_from(self.ebpf.map_mut("TRACED").expect("TRACED map")).map_err(map_err)?;
        for id in ids {
            let _ = map.remove(id);
            self.traced.remove(id);
        }
        self.levels = levels(self.traced.values());
        self.generation += 1;
        self.write_config()
    }

    /// Records every task of a cgroup whose id is above `after` (a cgroup created after it),
    /// under its own cgroup; `None` stops it (see `Config::new_after`).
    pub fn trace_new_cgroups(&mut self, after: Option<u64>) -> Result<(), ProbeError> {
        self.new_after = after.unwrap_or(0);
        self.generation += 1;
        self.write_config()
    }

    fn write_config(&mut self) -> Result<(), ProbeError> {
        // The `CONFIG` global, alone in `.data`.
        let map_err = |e: aya::maps::MapError| ProbeError::Map("CONFIG", e.to_string());
        let mut config: Array<_, Config> =
            Array::try_from(self.ebpf.map_mut(".data").expect(".data map")).map_err(map_err)?;
        config
            .set(
                0,
                Config {
                    levels: self.levels,
                    generation: self.generation,
                    new_after: self.new_after,
                },
                0,
            )
            .map_err(map_err)
    }

    /// The ring buffer, to be read by the event loop (can be taken once).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.ebpf
            .take_map("EVENTS")
            .and_then(|m| RingBuf::try_from(m).ok())
    }

    /// Every dedupe key and its count, including the repeats each CPU has not yet added to
    /// `CHECKS` (its `LAST` entry). A CPU that flushes while we read makes us read again, so no
    /// repeat is counted twice or missed.
    pub fn checks(&self) -> Result<Vec<(CheckKey, u64)>, ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("CHECKS", e.to_string());
        let map: HashMap<_, CheckKey, u64> =
            HashMap::try_from(self.ebpf.map("CHECKS").expect("CHECKS map")).map_err(map_err)?;
        for _ in 0..1000 {
            let before = self.last_checks()?;
            let checks: Vec<(CheckKey, u64)> = map
                .iter()
                .map(|r| r.map_err(map_err))
                .collect::<Result<_, _>>()?;
            let after = self.last_checks()?;
            let stable = before
                .iter()
                .zip(after.iter())
                .all(|(b, a)| b.seq == a.seq && b.seq % 2 == 0);
            if stable {
                return Ok(merge_unflushed(checks, after.iter()));
            }
        }
        Err(ProbeError::Map(
            "LAST",
            "counts kept changing while being read".into(),
        ))
    }

    /// Each CPU's [`LastCheck`].
    fn last_checks(&self) -> Result<aya::maps::PerCpuValues<LastCheck>, ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("LAST", e.to_string());
        let last: PerCpuArray<_, LastCheck> =
            PerCpuArray::try_from(self.ebpf.map("LAST").expect("LAST map")).map_err(map_err)?;
        last.get(&0, 0).map_err(map_err)
    }

    /// Every syscall-outcome key and its count.
    pub fn outcomes(&self) -> Result<Vec<(OutcomeKey, u64)>, ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("OUTCOMES", e.to_string());
        let map: HashMap<_, OutcomeKey, u64> =
            HashMap::try_from(self.ebpf.map("OUTCOMES").expect("OUTCOMES map")).map_err(map_err)?;
        map.iter().map(|r| r.map_err(map_err)).collect()
    }

    /// Forgets the keys of cgroups that are no longer traced (the daemon's churn).
    pub fn forget(&mut self, cgroup_ids: &[u64]) -> Result<(), ProbeError> {
        let cgroup_ids: std::collections::HashSet<u64> = cgroup_ids.iter().copied().collect();
        remove_keys(&mut self.ebpf, "CHECKS", |k: &CheckKey| {
            cgroup_ids.contains(&k.cgroup_id)
        })?;
        remove_keys(&mut self.ebpf, "OUTCOMES", |k: &OutcomeKey| {
            cgroup_ids.contains(&k.cgroup_id)
        })?;
        let map_err = |e: aya::maps::MapError| ProbeError::Map("LOSSES", e.to_string());
        let mut losses: HashMap<_, u64, CgroupLosses> =
            HashMap::try_from(self.ebpf.map_mut("LOSSES").expect("LOSSES map")).map_err(map_err)?;
        for id in &cgroup_ids {
            let _ = losses.remove(id);
        }
        Ok(())
    }

    /// What each cgroup lost, by cgroup id.
    pub fn losses(&self) -> Result<std::collections::HashMap<u64, CgroupLosses>, ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("LOSSES", e.to_string());
        let map: HashMap<_, u64, CgroupLosses> =
            HashMap::try_from(self.ebpf.map("LOSSES").expect("LOSSES map")).map_err(map_err)?;
        map.iter().map(|r| r.map_err(map_err)).collect()
    }

    /// Enters tasks already in a traced cgroup when tracing began as members of `cgroup_id`
    /// (new ones are entered by the kernel side as they fork or move in): so that one that
    /// leaves is noticed. A task already entered keeps its entry.
    pub fn enter_members(&mut self, tids: &[u32], cgroup_id: u64) -> Result<(), ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("MEMBERS", e.to_string());
        let mut map: HashMap<_, u32, u64> =
            HashMap::try_from(self.ebpf.map_mut("MEMBERS").expect("MEMBERS map"))
                .map_err(map_err)?;
        for tid in tids {
            // BPF_NOEXIST: the kernel side may have entered it meanwhile, and knows better.
            let _ = map.insert(tid, cgroup_id, 1);
        }
        Ok(())
    }

    /// Enters processes (by process id) in the traced tree whose checks are recorded under
    /// `key` (`tree_key`); the kernel side enters the processes they fork from now on.
    pub fn enter_tree(&mut self, pids: &[u32], key: u64) -> Result<(), ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("TREES", e.to_string());
        let mut map: HashMap<_, u32, u64> =
            HashMap::try_from(self.ebpf.map_mut("TREES").expect("TREES map")).map_err(map_err)?;
        for pid in pids {
            map.insert(pid, key, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// The processes of the traced trees whose last thread has not exited yet (an entered
    /// process that was already gone may be among them).
    pub fn tree(&self) -> Vec<u32> {
        HashMap::<_, u32, u64>::try_from(self.ebpf.map("TREES").expect("TREES map"))
            .map(|map| map.keys().filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    /// How many entries the maps hold now: checks, outcomes, traced cgroups, cgroups with
    /// losses, tasks watched.
    pub fn map_entries(&self) -> [u64; 5] {
        [
            count_keys::<CheckKey, u64>(&self.ebpf, "CHECKS"),
            count_keys::<OutcomeKey, u64>(&self.ebpf, "OUTCOMES"),
            self.traced.len() as u64,
            count_keys::<u64, CgroupLosses>(&self.ebpf, "LOSSES"),
            count_keys::<u32, u64>(&self.ebpf, "MEMBERS"),
        ]
    }

    /// Kernel-side counters, summed over CPUs.
    pub fn stats(&self) -> Result<Stats, ProbeError> {
        let map_err = |e: aya::maps::MapError| ProbeError::Map("STATS", e.to_string());
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("STATS").expect("STATS map")).map_err(map_err)?;
        let mut values = [0u64; stat::COUNT as usize];
        for (i, value) in values.iter_mut().enumerate() {
            *value = map.get(&(i as u32), 0).map_err(map_err)?.iter().sum();
        }
        Ok(Stats {
            checks: self.last_checks()?.iter().map(|l| l.checks).sum(),
            ringbuf_lost: values[stat::RINGBUF_LOST as usize],
            keys_full: values[stat::KEYS_FULL as usize],
            borrowed_creds: values[stat::BORROWED_CREDS as usize],
            kprobe_entry_missed: values[stat::KPROBE_ENTRY_MISSED as usize],
            kretprobe_missed: values[stat::KRETPROBE_MISSED as usize],
            pending_full: values[stat::PENDING_FULL as usize],
            outcomes: values[stat::OUTCOMES as usize],
            outcome_keys_full: values[stat::OUTCOME_KEYS_FULL as usize],
            stack_errors: values[stat::STACK_ERRORS as usize],
            stack_walks: values[stat::STACK_WALKS as usize],
            losses_unattributed: values[stat::LOSSES_UNATTRIBUTED as usize],
            migrations: values[stat::MIGRATIONS as usize],
            task_work_failed: values[stat::TASK_WORK_FAILED as usize],
            outcomes_unknown: values[stat::OUTCOMES_UNKNOWN as usize],
            outcomes_settled: values[stat::OUTCOMES_SETTLED as usize],
        })
    }
}

/// The cgroup levels at which SUBTREE entries live (see `Config::levels`).
fn levels<'a>(traced: impl Iterator<Item = &'a Traced>) -> u64 {
    traced
        .filter(|t| t.kind == traced_kind::SUBTREE && t.level < 31)
        .fold(0u64, |acc, t| acc | 1 << t.level)
}

/// How many keys the hash map `name` holds (0 if it cannot be read).
fn count_keys<K: aya::Pod, V: aya::Pod>(ebpf: &Ebpf, name: &str) -> u64 {
    ebpf.map(name)
        .and_then(|m| HashMap::<_, K, V>::try_from(m).ok())
        .map_or(0, |map| map.keys().flatten().count() as u64)
}

/// Removes the keys of the hash map `name` that `doomed` picks.
fn remove_keys<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    doomed: impl Fn(&K) -> bool,
) -> Result<(), ProbeError> {
    let map_err = |e: aya::maps::MapError| ProbeError::Map(name, e.to_string());
    let mut map: HashMap<_, K, u64> =
        HashMap::try_from(ebpf.map_mut(name).expect("map in the object")).map_err(map_err)?;
    let keys: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| doomed(k))
        .collect();
    for key in keys {
        let _ = map.remove(&key);
    }
    Ok(())
}

/// Adds each CPU's unflushed repeats to their key's count.
fn merge_unflushed<'a>(
    mut checks: Vec<(CheckKey, u64)>,
    last: impl Iterator<Item = &'a LastCheck>,
) -> Vec<(CheckKey, u64)> {
    for entry in last.filter(|l| l.count != 0) {
        match checks.iter_mut().find(|(k, _)| *k == entry.key) {
            Some((_, count)) => *count += entry.count,
            None => checks.push((entry.key, entry.count)),
        }
    }
    checks
}

enum AttemptError {
    /// This backend cannot work here; try the next one.
    Unavailable(String),
    /// Nothing else will work either (e.g. no permission).
    Fatal(ProbeError),
}

fn classify_load_error(message: &str) -> AttemptError {
    if message.contains("Operation not permitted") || message.contains("EPERM") {
        // Map creation failing with EPERM as root means a locked-down kernel or missing
        // capabilities: no backend will do better.
        if !has_bpf_privileges() {
            return AttemptError::Fatal(ProbeError::NoPermission);
        }
    }
    AttemptError::Unavailable(format!("loading the eBPF object failed: {message}"))
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, AttemptError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or_else(|| {
        AttemptError::Unavailable(format!("program {name} missing from the object"))
    })?;
    prog.try_into()
        .map_err(|e: aya::programs::ProgramError| AttemptError::Unavailable(e.to_string()))
}

/// Turns aya's errors into a short reason. aya's message names the failing call and keeps the
/// kernel's answer (the errno) as its source: both are kept.
fn describe_program_error(what: &str, e: &aya::programs::ProgramError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    log::trace!("{what}: {text}");
    summarize_program_error(what, &text)
}

/// The one-line reason for a program that did not load or attach, from aya's error text.
fn summarize_program_error(what: &str, text: &str) -> String {
    let io = |needle: &str| text.contains(needle);
    // A verifier log is long and its reason is the last line before its statistics (a load
    // refused before verification has an empty log).
    let statistics = ["verification time", "stack depth", "processed "];
    let verifier = text.split_once("Verifier output:").and_then(|(head, log)| {
        let reason = log
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !statistics.iter().any(|s| l.starts_with(s)))?;
        Some((head.trim(), reason))
    });
    if let Some((head, reason)) = verifier {
        format!("{what}: {head} The verifier said: {reason}")
    } else if io("Operation not permitted") || io("os error 1)") {
        format!(
            "{what}: the kernel refused the program (permission denied; lockdown or a restricted sysctl)"
        )
    } else if io("os error 2)") || io("No such file or directory") {
        format!("{what}: not present in this kernel ({})", first_line(text))
    } else if io("os error 524") || io("os error 95") || io("not supported") {
        format!(
            "{what}: not supported by this kernel ({})",
            first_line(text)
        )
    } else {
        let short: String = text.lines().take(3).collect::<Vec<_>>().join(" ");
        format!("{what}: {short}")
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

/// What the tracepoint backends add to the settings: the tracepoint's field offsets (from its
/// tracefs `format`), checked against the raw tracepoint's argument positions, and the audit
/// call sites on this kernel. Returns the call-site table.
fn tracepoint_settings(
    settings: &mut Settings,
    tp_params: Option<&[String]>,
) -> Result<SiteTable, AttemptError> {
    let root = tracefs::tracefs_root().map_err(AttemptError::Unavailable)?;
    let format_path = root.join("events/capability/cap_capable/format");
    let format = std::fs::read_to_string(&format_path).map_err(|_| {
        AttemptError::Unavailable(format!(
            "no capability:cap_capable tracepoint (added in Linux 6.14; this is {})",
            kernel_release()
        ))
    })?;
    let fields =
        tracefs::parse_format(&format).map_err(|e| AttemptError::Unavailable(e.to_string()))?;
    let off = |name, size| {
        tracefs::field_offset(&fields, name, size)
            .map_err(|e| AttemptError::Unavailable(e.to_string()))
    };
    settings.tp_off_cred = off("cred", 8)?;
    settings.tp_off_target_ns = off("target_ns", 8)?;
    settings.tp_off_cap = off("cap", 4)?;
    settings.tp_off_ret = off("ret", 4)?;
    let positions = tracefs::raw_positions(&fields, tp_params);
    let pos = |name: &str| {
        positions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                AttemptError::Unavailable(format!(
                    "raw tracepoint cap_capable has no argument for `{name}`"
                ))
            })
    };
    // The program reads the arguments at fixed positions.
    for (name, expected) in [
        ("cred", raw_arg::CRED),
        ("target_ns", raw_arg::TARGET_NS),
        ("cap", raw_arg::CAP),
        ("ret", raw_arg::RET),
    ] {
        let at = pos(name)?;
        if at as usize != expected {
            return Err(AttemptError::Unavailable(format!(
                "raw tracepoint cap_capable has `{name}` as argument {at}, not {expected}"
            )));
        }
    }
    let kallsyms = File::open("/proc/kallsyms")
        .map_err(|e| AttemptError::Unavailable(format!("cannot read /proc/kallsyms: {e}")))?;
    let table =
        SiteTable::from_kallsyms(kallsyms).map_err(|e| AttemptError::Unavailable(e.to_string()))?;
    settings.cap_capable_start = table.cap_capable.0;
    settings.cap_capable_end = table.cap_capable.1;
    settings.nsites = table.ranges.len() as u32;
    for (slot, range) in settings.sites.iter_mut().zip(&table.ranges) {
        *slot = *range;
    }
    debug_assert!(table.ranges.len() <= MAX_SITES);
    Ok(table)
}

/// Attaches the backend's programs with the best outcome hook the kernel and `options` allow:
/// the task-work programs where the kernel has the kfunc (nothing on `sys_exit`), else the
/// `sys_exit` ones and `sys_exit`. Returns the hook used and, when the kernel has task works but
/// its program was refused (`--outcome-hook` not given), why.
fn attach_backend(
    ebpf: &mut Ebpf,
    backend: Backend,
    options: &ProbeOptions,
    layout: &KernelLayout,
) -> Result<(OutcomeHook, Option<String>), AttemptError> {
    let flavor = options.flavor;
    if backend == Backend::Kprobe {
        attach_kprobe_entry(ebpf).map_err(AttemptError::Unavailable)?;
    }
    let mut refused = None;
    let hook = match (options.outcomes, layout.task_work) {
        (Some(OutcomeHook::TaskWork), None) => {
            return Err(AttemptError::Unavailable(format!(
                "this kernel ({}) has no BPF task work (kfunc bpf_task_work_schedule_resume, Linux 6.18+)",
                kernel_release()
            )));
        }
        (Some(OutcomeHook::TaskWork), Some(_)) => {
            attach_check(ebpf, backend, flavor, OutcomeHook::TaskWork)
                .map_err(AttemptError::Unavailable)?;
            OutcomeHook::TaskWork
        }
        (None, Some(_)) => match attach_check(ebpf, backend, flavor, OutcomeHook::TaskWork) {
            Ok(()) => OutcomeHook::TaskWork,
            Err(e) => {
                log::debug!("{backend}: task work not used: {e}");
                refused = Some(e);
                OutcomeHook::SysExit
            }
        },
        (Some(OutcomeHook::SysExit) | None, None) | (Some(OutcomeHook::SysExit), Some(_)) => {
            OutcomeHook::SysExit
        }
    };
    if hook == OutcomeHook::SysExit {
        attach_check(ebpf, backend, flavor, OutcomeHook::SysExit)
            .map_err(AttemptError::Unavailable)?;
        attach_sys_exit(ebpf, "sys_exit").map_err(AttemptError::Unavailable)?;
    }
    Ok((hook, refused))
}

/// Traced tasks that leave their cgroup (see cap-trace-ebpf/src/members.rs).
fn attach_members(ebpf: &mut Ebpf) -> Result<(), String> {
    for (name, what, tracepoint) in [
        (
            "process_fork",
            "sched:sched_process_fork",
            "sched_process_fork",
        ),
        (
            "process_exit",
            "sched:sched_process_exit",
            "sched_process_exit",
        ),
        (
            "cgroup_attach",
            "cgroup:cgroup_attach_task",
            "cgroup_attach_task",
        ),
    ] {
        load_attach::<RawTracePoint, _>(ebpf, name, (what, what), RawTracePoint::load, |p| {
            p.attach(tracepoint)
        })?;
    }
    Ok(())
}

/// The benchmark's floor: empty programs on the backend's hook (the tracepoint's), and on
/// `sys_exit` when asked.
fn attach_floor(
    ebpf: &mut Ebpf,
    backend: Backend,
    options: &ProbeOptions,
) -> Result<(), AttemptError> {
    let attached = match (backend, options.flavor) {
        (Backend::Tracepoint, TracepointFlavor::Classic) => load_attach::<TracePoint, _>(
            ebpf,
            "floor_tp",
            ("tracepoint program", "capability:cap_capable"),
            TracePoint::load,
            |p| p.attach("capability", "cap_capable"),
        ),
        (Backend::Tracepoint, TracepointFlavor::Raw) => load_attach::<RawTracePoint, _>(
            ebpf,
            "floor_raw",
            ("raw tracepoint program", "raw tracepoint cap_capable"),
            RawTracePoint::load,
            |p| p.attach("cap_capable"),
        ),
        (Backend::Fexit | Backend::Kprobe, _) => {
            Err("the benchmark's empty programs are the tracepoint backend's".into())
        }
    };
    attached.map_err(AttemptError::Unavailable)?;
    if options.floor_sys_exit {
        attach_sys_exit(ebpf, "floor_sys_exit").map_err(AttemptError::Unavailable)?;
    }
    Ok(())
}

/// The program that sees `cap_capable` on this backend, following outcomes with `outcomes`
/// (the kernel side's names: see `cap-trace-ebpf/src/hooks.rs`).
fn check_program(
    backend: Backend,
    flavor: TracepointFlavor,
    outcomes: OutcomeHook,
) -> &'static str {
    let (sys_exit, task_work) = match (backend, flavor) {
        (Backend::Tracepoint, TracepointFlavor::Classic) => ("cap_capable_tp", "taskwork_tp"),
        (Backend::Tracepoint, TracepointFlavor::Raw) => ("cap_capable_raw", "taskwork_raw"),
        (Backend::Fexit, _) => ("cap_capable_fexit", "taskwork_fexit"),
        (Backend::Kprobe, _) => ("cap_capable_return", "taskwork_return"),
    };
    match outcomes {
        OutcomeHook::SysExit => sys_exit,
        OutcomeHook::TaskWork => task_work,
    }
}

/// Loads and attaches the program that sees `cap_capable` (the kretprobe on the kprobe backend).
fn attach_check(
    ebpf: &mut Ebpf,
    backend: Backend,
    flavor: TracepointFlavor,
    outcomes: OutcomeHook,
) -> Result<(), String> {
    let name = check_program(backend, flavor, outcomes);
    match (backend, flavor) {
        (Backend::Tracepoint, TracepointFlavor::Classic) => load_attach::<TracePoint, _>(
            ebpf,
            name,
            ("tracepoint program", "capability:cap_capable"),
            TracePoint::load,
            |p| p.attach("capability", "cap_capable"),
        ),
        (Backend::Tracepoint, TracepointFlavor::Raw) => load_attach::<RawTracePoint, _>(
            ebpf,
            name,
            ("raw tracepoint program", "raw tracepoint cap_capable"),
            RawTracePoint::load,
            |p| p.attach("cap_capable"),
        ),
        (Backend::Fexit, _) => {
            let btf = AyaBtf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
            load_attach::<FExit, _>(
                ebpf,
                name,
                ("fexit program", "fexit on cap_capable"),
                |p| p.load("cap_capable", &btf),
                FExit::attach,
            )
        }
        (Backend::Kprobe, _) => load_attach::<KProbe, _>(
            ebpf,
            name,
            ("kretprobe program", "kretprobe on cap_capable"),
            KProbe::load,
            |p| p.attach("cap_capable", 0),
        ),
    }
}

/// The kprobe backend's entry probe, which keeps `cap_capable`'s arguments for its return probe.
fn attach_kprobe_entry(ebpf: &mut Ebpf) -> Result<(), String> {
    if !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return Err("kprobes are not enabled in this kernel (CONFIG_KPROBES)".into());
    }
    load_attach::<KProbe, _>(
        ebpf,
        "cap_capable_entry",
        ("kprobe program", "kprobe on cap_capable"),
        KProbe::load,
        |p| p.attach("cap_capable", 0),
    )
}

/// The program `name` on `raw_syscalls:sys_exit`.
fn attach_sys_exit(ebpf: &mut Ebpf, name: &str) -> Result<(), String> {
    load_attach::<RawTracePoint, _>(
        ebpf,
        name,
        ("sys_exit", "raw_syscalls:sys_exit"),
        RawTracePoint::load,
        |p| p.attach("sys_exit"),
    )
}

/// Loads the program `name` and attaches it: the step every hook takes. `what` names the
/// program and the hook, in that order, in the error.
fn load_attach<T, Link>(
    ebpf: &mut Ebpf,
    name: &str,
    (program_what, hook_what): (&str, &str),
    load: impl FnOnce(&mut T) -> Result<(), aya::programs::ProgramError>,
    attach: impl FnOnce(&mut T) -> Result<Link, aya::programs::ProgramError>,
) -> Result<(), String>
where
    for<'a> &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog: &mut T = program(ebpf, name).map_err(|e| match e {
        AttemptError::Unavailable(s) => s,
        AttemptError::Fatal(e) => e.to_string(),
    })?;
    load(prog).map_err(|e| describe_program_error(program_what, &e))?;
    attach(prog).map_err(|e| describe_program_error(hook_what, &e))?;
    Ok(())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn bump_memlock_rlimit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct; failure only matters on old kernels.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const rlim) };
    if rc != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK (fine on Linux 5.11+)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_side_knows_every_capability() {
        assert_eq!(
            crate::linux::caps::ALL.len() as u32,
            cap_trace_common::CAP_LAST_CAP + 1
        );
    }

    #[test]
    fn program_errors_in_one_line() {
        // As aya reports a verifier rejection (Linux 6.12, shortened).
        let verifier = "the BPF_PROG_LOAD syscall returned Invalid argument (os error 22). \
                        Verifier output: 0: R1=ctx() R10=fp0\n\
                        ; #[fexit(function = \"cap_capable\")] @ main.rs:163\n\
                        397: (1f) r3 -= r2\n\
                        math between ptr_ pointer and register with unbounded min value is not allowed\n\
                        verification time 101584 usec\n\
                        stack depth 232+0+0\n\
                        processed 1237 insns (limit 1000000) max_states_per_insn 2\n\n";
        let cases = [
            (
                verifier,
                "fexit program: the BPF_PROG_LOAD syscall returned Invalid argument (os error 22). \
                 The verifier said: math between ptr_ pointer and register with unbounded min value is not allowed",
            ),
            (
                "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1)",
                "fexit program: the kernel refused the program (permission denied; lockdown or a restricted sysctl)",
            ),
            (
                "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1). Verifier output: \n",
                "fexit program: the kernel refused the program (permission denied; lockdown or a restricted sysctl)",
            ),
            (
                "error attaching: No such file or directory (os error 2)",
                "fexit program: not present in this kernel (error attaching: No such file or directory (os error 2))",
            ),
            // An fexit attach refused on arm64 6.1 (no ftrace direct calls), with its errno.
            (
                "`bpf_raw_tracepoint_open` failed: Unknown error 524 (os error 524)",
                "fexit program: not supported by this kernel (`bpf_raw_tracepoint_open` failed: Unknown error 524 (os error 524))",
            ),
            (
                "something else\nsecond\nthird\nfourth",
                "fexit program: something else second third",
            ),
        ];
        for (text, want) in cases {
            let got = summarize_program_error("fexit program", text);
            assert_eq!(got, want);
            assert!(!got.contains('\n'));
        }
    }

    #[test]
    fn a_refused_attach_keeps_the_errno() {
        // What aya returns when the kernel refuses an fexit attach (arm64 6.1).
        let e = aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_raw_tracepoint_open",
            io_error: std::io::Error::from_raw_os_error(524),
        });
        let got = describe_program_error("fexit on cap_capable", &e);
        assert!(got.starts_with("fexit on cap_capable: not supported by this kernel ("));
        assert!(got.contains("bpf_raw_tracepoint_open"), "{got}");
        assert!(got.contains("os error 524"), "{got}");
    }

    fn key(cap: u32) -> CheckKey {
        CheckKey {
            cgroup_id: 7,
            denied_before: 0,
            cap,
            syscall: 116,
            flags: 0,
            site: 1,
            userns_level: 0,
            mntns: 0,
            comm: *b"capbench\0\0\0\0\0\0\0\0",
        }
    }

    fn last(cap: u32, count: u64) -> LastCheck {
        LastCheck {
            count,
            key: key(cap),
            valid: 1,
            ..LastCheck::zeroed()
        }
    }

    #[test]
    fn unflushed_repeats_are_added_to_their_key() {
        let checks = vec![(key(6), 10), (key(0), 1)];
        let cpus = [last(6, 5), last(6, 0), last(0, 2)];
        let mut merged = merge_unflushed(checks, cpus.iter());
        merged.sort_by_key(|(k, _)| k.cap);
        assert_eq!(merged, vec![(key(0), 3), (key(6), 15)]);
    }

    #[test]
    fn unflushed_repeats_of_a_key_not_in_the_map_are_kept() {
        // The key was forgotten (or the map was full) after the CPU remembered it.
        let merged = merge_unflushed(Vec::new(), [last(21, 4)].iter());
        assert_eq!(merged, vec![(key(21), 4)]);
    }
}
