#![no_std]
// This file exists to enable the library target (cap-trace's build script depends on it so
// that cargo rebuilds the object when the crate changes). The programs are the binary target,
// `main.rs`, which uses these dependencies.
use aya_ebpf as _;
use cap_trace_common as _;
