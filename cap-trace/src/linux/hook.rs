//! The kernel hooks that can observe `cap_capable`. The kind is part of every profile (its
//! `trace.backend`), so it is named here, below both the loader and the model.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A way of observing `cap_capable`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Tracepoint,
    Fexit,
    Kprobe,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Tracepoint => "tracepoint",
            Backend::Fexit => "fexit",
            Backend::Kprobe => "kprobe",
        })
    }
}

/// How the tracepoint backend attaches: both see the same event, at different costs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TracepointFlavor {
    /// `BPF_PROG_TYPE_TRACEPOINT` through perf: the record is built, then the program runs.
    Classic,
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT`: the program gets the tracepoint's arguments directly.
    #[default]
    Raw,
}
