//! The subcommands, one file each: the only users of the command line's [`Failure`].
//! [`dispatch`] routes a parsed command line to its file; [`global`] is what the global
//! options mean for every command (probe options, colours, the format and the output).

pub mod attach;
pub mod check;
pub mod containers;
pub mod daemon;
pub mod docs;
pub mod explain;
pub mod export;
pub mod global;
pub mod merge;
pub mod profile;
pub mod ps;
pub mod report;
pub mod run;
pub mod show;
pub mod status;

use crate::cli::{Cli, Command};
use crate::error::Failure;

/// Runs the command a command line asks for; returns the exit code.
pub async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let global = cli.global;
    global::validate(&global, cli.command.as_ref())?;
    let Some(command) = cli.command else {
        if let Some(target) = attach::target(&cli.containers) {
            return attach::command(target, cli.containers, &global).await;
        }
        return containers::command(cli.containers, &global).await;
    };
    match command {
        Command::Run(args) => run::command(args, &global).await,
        Command::Show(args) => show::command(&args, &global),
        Command::Merge(args) => merge::command(&args, &global),
        Command::Check(args) => check::command(args, &global).await,
        Command::Daemon(args) => daemon::command(args, &global).await,
        Command::Status(args) => status::command(&args, &global).await,
        Command::Profile(args) => profile::command(args, &global).await,
        Command::Export(args) => export::command(&args).await,
        Command::Explain(args) => explain::command(&args, &global),
        Command::Ps(args) => ps::command(&args, &global).await,
        Command::Report(args) => report::command(&args, &global).await,
        Command::Completions(args) => docs::completions(&args),
        Command::Man => docs::man(),
    }
}
