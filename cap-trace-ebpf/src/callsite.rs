//! Call-site reading (tracepoint backends): who called `cap_capable`, from the raw stack words
//! or a stack walk, and how the audit table classifies that caller ([`classify_stack`]).
//!
//! The tracepoint has no `opts`: the audit flag comes from the caller of `cap_capable` (and of
//! `security_capable`, which only forwards its caller's), looked up in the call-site ranges
//! userspace built from `/proc/kallsyms` (new rules go in the table in `cap-trace/src/linux/audit.rs`,
//! with a test case). A full stack walk (`bpf_get_stack`, ORC unwinding) costs about a
//! microsecond, so it is only the slow path: the programs read the raw stack words above the
//! tracepoint's frame and take the return addresses where a walk once found them
//! ([`StackLayout`]). The positions move whenever another tracer attaches to the tracepoint or
//! leaves it (see `Stored`). Three things keep a moved layout from giving a wrong answer: the
//! return address into `cap_capable` must be where the layout says, else the check goes down the
//! slow path, which learns the layout again; `f2`, which not every walk sees, is carried by its
//! distance from `f1`, which nothing moves; and a caller the table does not know, as read by the
//! layout, is walked again ([`classify_stack`]). The repeat path reads the same words by the
//! same layout ([`quick_frames`]).
//!
//! Intermediate results go through the per-CPU scratch area rather than registers: values read
//! back from map memory are opaque to the verifier ([`opaque`]), which keeps it from verifying the
//! rest of the program once per call site of the table.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_stack, bpf_probe_read_kernel},
    macros::map,
    maps::PerCpuArray,
};
use cap_trace_common::{MAX_SITES, STACK_FRAMES, backend, check_flags, site_class, stat};

use crate::{maps::bump, task::kernel_word};

/// Classifies the check from its call site (see the module's doc): returns the `check_flags`
/// bits and the 1-based rule index, and leaves the two caller addresses in the scratch area when
/// the site is unknown (for userspace to name).
#[inline(always)]
pub(crate) fn classify_stack<C: EbpfContext>(ctx: &C, scratch: &mut Scratch) -> (u32, u32) {
    scratch.f1 = 0;
    scratch.f2 = 0;
    scratch.used_f2 = 0;
    let fast = fast_frames(ctx, scratch);
    if !fast && !slow_frames(ctx, scratch) {
        return (check_flags::AUDIT_UNKNOWN, 0);
    }
    let mut class = classify_frames(scratch);
    if fast && class == 0 {
        // The table does not know the words where the layout put the callers: a caller it
        // does not list, or a layout that no longer holds. Only a walk can tell.
        scratch.used_f2 = 0;
        if !slow_frames(ctx, scratch) {
            return (check_flags::AUDIT_UNKNOWN, 0);
        }
        class = classify_frames(scratch);
    }
    let rule = opaque(&scratch.rule) as u32;
    if class == u64::from(site_class::AUDIT) {
        (0, rule)
    } else if class == u64::from(site_class::NOAUDIT) {
        (check_flags::NOAUDIT, rule)
    } else if class == u64::from(site_class::AUDIT_INSETID) {
        (check_flags::INSETID, rule)
    } else {
        // Unknown (or FORWARD twice): keep the frames so userspace can name the call site.
        (check_flags::AUDIT_UNKNOWN, 0)
    }
}

/// The site class of the frames in `scratch.f1/f2` (0: unknown, or FORWARD twice), its rule in
/// `scratch.rule`.
#[inline(always)]
fn classify_frames(scratch: &mut Scratch) -> u64 {
    let f1 = opaque(&scratch.f1);
    let f2 = opaque(&scratch.f2);
    find_site(f1, scratch);
    let class = opaque(&scratch.class);
    if class == u64::from(site_class::FORWARD) {
        scratch.used_f2 = 1;
        find_site(f2, scratch);
        let class = opaque(&scratch.class);
        if class == u64::from(site_class::FORWARD) {
            return 0;
        }
        return class;
    }
    class
}

const RAW_WORDS: usize = 32;

/// Per-CPU working memory of the call-site classifier.
#[repr(C)]
pub(crate) struct Scratch {
    /// Raw stack words above the tracepoint's frame.
    words: [u64; RAW_WORDS],
    /// Frames from a stack walk.
    frames: [u64; STACK_FRAMES],
    /// Caller of cap_capable, and its caller.
    pub(crate) f1: u64,
    pub(crate) f2: u64,
    /// Binary-search state and result of `find_site`.
    lo: u64,
    hi: u64,
    class: u64,
    rule: u64,
    /// Where `slow_frames` and `learn_layout` found the return addresses.
    found: Found,
    /// 1 when the classification needed the caller of a forwarding site.
    pub(crate) used_f2: u64,
    /// The task's saved user registers, as a number (see `current_syscall`).
    pub(crate) regs: u64,
}

#[map]
pub(crate) static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Reads a value back from map memory: the verifier no longer knows it.
#[inline(always)]
pub(crate) fn opaque(v: &u64) -> u64 {
    // SAFETY: `v` is a reference: valid and aligned.
    unsafe { core::ptr::read_volatile(v) }
}

/// Positions of the return addresses in the scratch area's words or frames (`u64::MAX`: not
/// found yet): `slow_frames` looks for `ra_cap_at` in the walked frames, `learn_layout` for all
/// three in the raw words. Written to memory so that the states of the loops merge.
#[repr(C)]
struct Found {
    ra_cap_at: u64,
    f1_at: u64,
    f2_at: u64,
}

/// Stack layout learned by the slow path, as the fast path reads it ([`layout`]).
#[derive(Copy, Clone)]
pub(crate) struct StackLayout {
    /// Return address into `cap_capable` (0: no layout learned yet).
    pub(crate) ra_cap: u64,
    /// Return address into `security_capable` (0: not learned), the forwarding caller whose
    /// own caller (`f2`) decides.
    pub(crate) ra_fwd: u64,
    /// Positions, in raw stack words, of `ra_cap`, of the caller of `cap_capable` (`f1`) and of
    /// the caller of `security_capable` (`f2`; 0: not learned).
    pub(crate) ra_cap_at: u64,
    pub(crate) f1_at: u64,
    pub(crate) f2_at: u64,
}

/// The layout as stored. The two return addresses are kernel constants. The positions are not:
/// the tracepoint calls a lone program directly but goes through an iterator (a frame more)
/// when several are attached, so every tracer that comes or goes moves them all. They are one
/// word, written at once, so that no reader ever pairs positions of two layouts.
#[repr(C)]
struct Stored {
    ra_cap: u64,
    ra_fwd: u64,
    /// `LEARNED` | `ra_cap_at` | `f1_at` << 8 | `f2_at` << 16 (0: not learned).
    positions: u64,
}

const LEARNED: u64 = 1 << 63;

#[unsafe(no_mangle)]
static mut STACK_LAYOUT: Stored = Stored {
    ra_cap: 0,
    ra_fwd: 0,
    positions: 0,
};

#[inline(always)]
pub(crate) fn layout() -> StackLayout {
    // SAFETY: aligned plain words of a global; the positions are one word (see `Stored`).
    let (ra_cap, ra_fwd, positions) = unsafe {
        (
            core::ptr::read_volatile(&raw const STACK_LAYOUT.ra_cap),
            core::ptr::read_volatile(&raw const STACK_LAYOUT.ra_fwd),
            core::ptr::read_volatile(&raw const STACK_LAYOUT.positions),
        )
    };
    StackLayout {
        ra_cap: if positions & LEARNED != 0 { ra_cap } else { 0 },
        ra_fwd,
        ra_cap_at: positions & 0xff,
        f1_at: (positions >> 8) & 0xff,
        f2_at: (positions >> 16) & 0xff,
    }
}

/// Stores a layout: the constants first, then the positions in one write.
#[inline(always)]
fn store_layout(learned: &StackLayout) {
    // SAFETY: aligned plain words of a global; every writer stores the same constants, and the
    // positions in one write (see `Stored`).
    unsafe {
        core::ptr::write_volatile(&raw mut STACK_LAYOUT.ra_cap, learned.ra_cap);
        core::ptr::write_volatile(&raw mut STACK_LAYOUT.ra_fwd, learned.ra_fwd);
        core::ptr::write_volatile(
            &raw mut STACK_LAYOUT.positions,
            LEARNED | learned.ra_cap_at | learned.f1_at << 8 | learned.f2_at << 16,
        );
    }
}

/// Where the raw stack words start: the tracepoint's own frame.
#[inline(always)]
pub(crate) fn stack_base<C: EbpfContext>(ctx: &C) -> Option<u64> {
    if setting!(backend) == backend::TRACEPOINT {
        // perf stores the caller registers (captured in perf_trace_cap_capable) in the first
        // word of the record; their sp is that function's frame.
        // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults.
        let regs: u64 = unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const u64).ok()? };
        // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults.
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
    // SAFETY: the bytes of `scratch.words`, which the `&mut` holds alone.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(scratch.words.as_mut_ptr().cast::<u8>(), RAW_WORDS * 8)
    };
    // SAFETY: bpf_probe_read_kernel_buf checks the address and fails rather than faults.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(base as *const u8, bytes).is_ok() }
}

#[inline(always)]
fn word(words: &[u64; RAW_WORDS], i: u64) -> u64 {
    words[i as usize & (RAW_WORDS - 1)]
}

/// Caller of cap_capable and its caller, from the raw stack words, into `scratch.f1/f2`.
#[inline(always)]
fn fast_frames<C: EbpfContext>(ctx: &C, scratch: &mut Scratch) -> bool {
    let learned = layout();
    if learned.ra_cap == 0
        || !read_raw_stack(ctx, scratch)
        || word(&scratch.words, learned.ra_cap_at) != learned.ra_cap
    {
        return false;
    }
    let f1 = word(&scratch.words, learned.f1_at);
    scratch.f1 = f1;
    if f1 == learned.ra_fwd && learned.f2_at != 0 {
        scratch.f2 = word(&scratch.words, learned.f2_at);
        return true;
    }
    // A caller other than security_capable decides on its own; if it is security_capable
    // reached through another call site, only a walk can find its caller.
    find_site(f1, scratch);
    opaque(&scratch.class) != u64::from(site_class::FORWARD)
}

/// Caller of cap_capable and its caller from a real stack walk; also learns the layout the
/// fast path uses.
#[inline(always)]
fn slow_frames<C: EbpfContext>(ctx: &C, scratch: &mut Scratch) -> bool {
    bump(stat::STACK_WALKS);
    // SAFETY: the program's own context, and a buffer of the size passed (`scratch.frames`).
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
    scratch.found.ra_cap_at = u64::MAX;
    let mut i = 0;
    while i < STACK_FRAMES {
        let frame = scratch.frames[i];
        if i + 2 < n
            && frame >= start
            && frame < end
            && opaque(&scratch.found.ra_cap_at) == u64::MAX
        {
            scratch.found.ra_cap_at = i as u64;
        }
        i += 1;
    }
    let at = opaque(&scratch.found.ra_cap_at);
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
    scratch.found = Found {
        ra_cap_at: u64::MAX,
        f1_at: u64::MAX,
        f2_at: u64::MAX,
    };
    let mut i = 0;
    while i < RAW_WORDS {
        let w = scratch.words[i];
        if opaque(&scratch.found.ra_cap_at) == u64::MAX {
            if w == ra_cap {
                scratch.found.ra_cap_at = i as u64;
            }
        } else if opaque(&scratch.found.f1_at) == u64::MAX {
            if w == f1 {
                scratch.found.f1_at = i as u64;
            }
        } else if opaque(&scratch.found.f2_at) == u64::MAX && w == f2 {
            scratch.found.f2_at = i as u64;
        }
        i += 1;
    }
    let ra_cap_at = opaque(&scratch.found.ra_cap_at);
    let f1_at = opaque(&scratch.found.f1_at);
    let f2_at = opaque(&scratch.found.f2_at);
    if ra_cap_at == u64::MAX || f1_at == u64::MAX {
        return;
    }
    let old = layout();
    let mut learned = StackLayout {
        ra_cap,
        ra_fwd: old.ra_fwd,
        ra_cap_at,
        f1_at,
        f2_at: 0,
    };
    find_site(f1, scratch);
    if f2_at != u64::MAX && opaque(&scratch.class) == u64::from(site_class::FORWARD) {
        learned.ra_fwd = f1;
        learned.f2_at = f2_at;
    } else if old.ra_cap != 0 && old.f2_at > old.f1_at {
        // Not seen on this stack: `f2` is as far above `f1` as before (the frame of
        // security_capable), wherever the tracepoint's machinery moved both.
        let carried = old.f2_at - old.f1_at + f1_at;
        if carried < RAW_WORDS as u64 {
            learned.f2_at = carried;
        }
    }
    store_layout(&learned);
}

/// Binary search of the sorted call-site ranges: class and rule into `scratch` (0 if none).
#[inline(always)]
fn find_site(addr: u64, scratch: &mut Scratch) {
    scratch.lo = 0;
    scratch.hi = u64::from(setting!(nsites)).min(MAX_SITES as u64);
    scratch.class = 0;
    scratch.rule = 0;
    let mut step = 0;
    while step < 6 {
        let lo = opaque(&scratch.lo);
        let hi = opaque(&scratch.hi);
        if lo < hi {
            // lo + hi stays under 2 * MAX_SITES, so the plain sum cannot overflow; midpoint()
            // would be more instructions in a loop the verifier walks in full.
            #[allow(clippy::manual_midpoint)]
            let mid = ((lo + hi) / 2) as usize & (MAX_SITES - 1);
            let range = setting!(sites[mid]);
            if addr < range.start {
                scratch.hi = mid as u64;
            } else if addr >= range.end {
                scratch.lo = mid as u64 + 1;
            } else {
                scratch.class = u64::from(range.class);
                scratch.rule = u64::from(range.rule);
                scratch.hi = 0;
            }
        }
        step += 1;
    }
}

/// The two return addresses above `cap_capable` as the learned stack layout finds them (what
/// `is_repeat` compares; `None` until the layout is known or if it does not hold for this
/// stack). Plain loads through `kernel_word` where the kernel allows them; otherwise one
/// `bpf_probe_read_kernel` covers the three words (a helper call costs far more than the bytes).
#[inline(always)]
pub(crate) fn quick_frames<C: EbpfContext>(ctx: &C) -> Option<(u64, u64)> {
    let learned = layout();
    if learned.ra_cap == 0 {
        return None;
    }
    let base = stack_base(ctx)?;
    if setting!(cast_type) != 0 {
        // The positions are below RAW_WORDS; the mask shows the verifier the bound (`base` may
        // be the context pointer, which only moves by a bounded amount).
        return frames_at(learned, |i| stack_word(base, i));
    }
    // SAFETY: this CPU's element of a per-CPU array, valid for the run, and not aliased.
    let scratch = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    // The learned positions are ordered (ra_cap_at < f1_at < f2_at, or f2_at == 0) and below
    // RAW_WORDS; the masks only show the verifier the bounds.
    let first = learned.ra_cap_at & (RAW_WORDS as u64 - 1);
    let span =
        (learned.f1_at.max(learned.f2_at) + 1).saturating_sub(first) & (RAW_WORDS as u64 - 1);
    // SAFETY: `span` is below RAW_WORDS (masked): bytes of `scratch.words`, held alone.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(scratch.words.as_mut_ptr().cast::<u8>(), span as usize * 8)
    };
    let from = (base + first * 8) as *const u8;
    // SAFETY: bpf_probe_read_kernel_buf checks the address and fails rather than faults.
    if unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(from, bytes) }.is_err() {
        return None;
    }
    frames_at(learned, |i| word(&scratch.words, i.wrapping_sub(first)))
}

/// Raw stack word `i` above `base` by a plain load (needs `Settings.cast_type`). Positions are
/// below RAW_WORDS; the mask shows the verifier the bound (`base` may be the context pointer,
/// which only moves by a bounded amount).
#[inline(always)]
pub(crate) fn stack_word(base: u64, i: u64) -> u64 {
    kernel_word(base + (i & (RAW_WORDS as u64 - 1)) * 8)
}

/// The two return addresses above `cap_capable` from the words `at` returns by position in the
/// `learned` layout (one read of it, so that both come from the same layout), or `None` if the
/// return address into `cap_capable` is not where it should be.
#[inline(always)]
pub(crate) fn frames_at(learned: StackLayout, at: impl Fn(u64) -> u64) -> Option<(u64, u64)> {
    if at(learned.ra_cap_at) != learned.ra_cap {
        return None;
    }
    let f1 = at(learned.f1_at);
    let f2 = if f1 == learned.ra_fwd && learned.f2_at != 0 {
        at(learned.f2_at)
    } else {
        0
    };
    Some((f1, f2))
}
