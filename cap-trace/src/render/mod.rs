//! Every output, rendered from profiles: the text report, the deploy formats, and writing the
//! result (atomically) where it was asked for.

pub mod deploy;
pub mod escape;
pub mod gate;
pub mod status;
pub mod text;
pub mod write;
