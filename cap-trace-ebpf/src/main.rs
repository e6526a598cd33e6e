//! Kernel side of cap-trace.
//!
//! One event, several hooks: every backend ends in [`check::on_check`] with the arguments and
//! result of one `cap_capable` call. Userspace loads and attaches only the programs of the backend
//! it picked (`cap-trace/src/kernel/mod.rs`), and passes everything kernel-specific in the read-only
//! [`SETTINGS`] global (`EbpfLoader::override_global`): struct offsets from BTF
//! (`task_struct.real_cred`, `user_namespace.level`, `pt_regs.orig_ax` or `syscallno`, `pt_regs.sp`, ...),
//! tracepoint field offsets from the tracefs `format` file, and the call-site ranges from
//! `/proc/kallsyms`.
//!
//! Only cgroups userspace asked for are traced ([`filter`]). Checks are deduplicated per
//! [`CheckKey`](cap_trace_common::CheckKey) in `CHECKS`: the first occurrence of a key goes
//! through the ring buffer, later ones only bump its counter, which userspace reads at the end
//! ([`check`], [`maps`]); exact repeats are counted per CPU first ([`repeat`]). A denied check
//! also notes a per-thread [`Pending`](cap_trace_common::Pending) outcome that a task work
//! ([`taskwork`], Linux 6.18+) or `sys_exit` turns into an
//! [`OutcomeKey`](cap_trace_common::OutcomeKey) when its syscall returns: how the syscall that
//! hit the wall ended ([`outcome`]). On tracepoints the audit flag comes from the call site ([`callsite`]); kernel
//! memory is read as [`task`] says.
//!
//! Everything is `#[inline(always)]` into the programs (one codegen unit): the modules cost nothing
//! at run time. Keep it so on the repeat path, where a check costs tens of nanoseconds.
#![no_std]
#![no_main]
// Atomic read-modify-write on map values and globals (core::sync::atomic has no RMW for BPF).
#![feature(core_intrinsics)]
// The placeholder calls of `kernel_word` and the task work.
#![feature(asm_experimental_arch)]
#![allow(internal_features)]
// aya-ebpf's map methods take `impl Borrow<K>`. Passing `&key` lets the helper point at the
// key where it already is; passing it by value, as this lint asks, copies it to the stack first
// (41 more instructions in the tracepoint program).
#![allow(clippy::needless_borrows_for_generic_args)]
// Kernel memory is read at offsets BTF gives for the field's own type, so the field is aligned
// for it; a misaligned read would not pass the verifier in the first place.
#![allow(clippy::cast_ptr_alignment)]
// Every `unsafe` block says in one line why it is sound.
#![warn(clippy::undocumented_unsafe_blocks)]

use cap_trace_common::Settings;
// The library target exists for cap-trace's build script (see lib.rs); the programs need
// nothing from it.
use cap_trace_ebpf as _;

/// Everything kernel-specific, filled by userspace with `EbpfLoader::override_global`.
#[unsafe(no_mangle)]
static SETTINGS: Settings = Settings::zeroed();

/// Reads a field of [`SETTINGS`] so that the compiler cannot fold the default value in.
macro_rules! setting {
    ($($field:tt)+) => {
        {
            #[allow(unused_unsafe)]
            // SAFETY: SETTINGS is read-only (`.rodata`): nothing writes it while programs run.
            let value = unsafe { core::ptr::read_volatile(&raw const $crate::SETTINGS.$($field)+) };
            value
        }
    };
}

mod callsite;
mod check;
mod filter;
mod hooks;
mod losses;
mod maps;
mod members;
mod outcome;
mod repeat;
mod task;
mod taskwork;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
