//! The profile and the rules over it: pure data (serde only), no kernel, no I/O but reading a
//! profile file.

pub mod control;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod fleet;
pub mod gate;
pub mod merge;
pub mod profile;
pub mod record;
pub mod suggest;
pub mod text;
pub mod verify;
