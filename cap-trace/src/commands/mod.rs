//! The subcommands: the only users of the command line's `Failure`.

pub mod daemon;
pub mod run;
