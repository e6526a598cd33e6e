//! `cap-trace completions SHELL` and `cap-trace man`: the shell completions and the manual
//! page, both generated from the command line's clap definition, so they never drift from it.

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::{Failure, exit};
use crate::render::write;

pub fn completions(args: &CompletionsArgs) -> Result<u8, Failure> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut completed(), BIN, &mut out);
    let mut script = String::from_utf8_lossy(&out).into_owned();
    if args.shell == clap_complete::Shell::Bash {
        // clap_complete's bash script dispatches to `cap__trace__subcmd__run` but names the
        // case `cap__subcmd__trace__subcmd__run` (a `-` in the program's name taken for a
        // subcommand separator): without this no subcommand's options would be completed.
        let sep = "__subcmd__";
        script = script.replace(
            &format!("{}{sep}", BIN.replace('-', sep)),
            &format!("{}{sep}", BIN.replace('-', "__")),
        );
    }
    write::emit(None, &script)?;
    Ok(exit::OK)
}

/// The program's name, as completions know it.
const BIN: &str = "cap-trace";

/// The command line as completions offer it: without the options and subcommands `--help`
/// hides (benchmark switches, options a subcommand refuses), which clap_complete's generators
/// would offer all the same.
fn completed() -> clap::Command {
    let mut command = Cli::command();
    // Global options are copied into each subcommand by now.
    command.build();
    visible(&command)
}

/// `command` and its subcommands with only what they show in `--help`.
fn visible(command: &clap::Command) -> clap::Command {
    // Its own help and version flags, help subcommand included, are copied like the rest.
    let mut out = clap::Command::new(command.get_name().to_owned())
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true);
    if let Some(about) = command.get_about() {
        out = out.about(about.clone());
    }
    if let Some(version) = command.get_version() {
        out = out.version(version.to_owned());
    }
    // Each subcommand has its copies of the global options already (hidden where it does not
    // take them): copied again, they would come back.
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        out = out.arg(arg.clone().global(false));
    }
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(visible(sub));
    }
    out
}

pub fn man() -> Result<u8, Failure> {
    write::emit(None, &man_page())?;
    Ok(exit::OK)
}

/// The manual page: the command with its options, then a section per subcommand.
pub fn man_page() -> String {
    let command = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut out)
        .expect("roff renders into memory");
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("cap-trace {}", sub.get_name());
        let mut page = Vec::new();
        let sub = sub.clone().name(name.clone()).bin_name(name.clone());
        let man = clap_mangen::Man::new(sub);
        // A section per subcommand, its synopsis, description and options as subsections.
        man.render_synopsis_section(&mut page).expect("in memory");
        man.render_description_section(&mut page)
            .expect("in memory");
        man.render_options_section(&mut page).expect("in memory");
        let title = name.to_uppercase().replace('-', "\\-");
        out.extend(format!(".SH \"{title}\"\n").into_bytes());
        out.extend(
            String::from_utf8_lossy(&page)
                .replace(".SH ", ".SS ")
                .into_bytes(),
        );
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The long options each (sub)command's completions offer, by subcommand (`""`: the
    /// command itself).
    fn offered(command: &clap::Command, path: &str, into: &mut Vec<(String, String)>) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                into.push((path.to_owned(), long.to_owned()));
            }
        }
        for sub in command.get_subcommands() {
            offered(sub, sub.get_name(), into);
        }
    }

    #[test]
    fn completions_offer_what_help_shows() {
        let mut all = Cli::command();
        all.build();
        let mut shown = Vec::new();
        offered(&completed(), "", &mut shown);
        let mut every = Vec::new();
        offered(&all, "", &mut every);
        let hidden: Vec<_> = every.iter().filter(|o| !shown.contains(o)).collect();
        let has = |list: &[(String, String)], sub: &str, long: &str| {
            list.iter().any(|(s, l)| s == sub && l == long)
        };
        // Benchmark switches and options a subcommand refuses are not offered...
        for (sub, long) in [
            ("", "floor"),
            ("run", "stream"),
            ("daemon", "format"),
            ("daemon", "output"),
        ] {
            assert!(
                has(&every, sub, long) && !has(&shown, sub, long),
                "{sub} --{long}"
            );
        }
        // ...and what --help shows is.
        for (sub, long) in [
            ("", "events"),
            ("run", "verify"),
            ("daemon", "state-dir"),
            ("show", "format"),
        ] {
            assert!(has(&shown, sub, long), "{sub} --{long}");
        }
        assert!(hidden.len() >= 4, "{hidden:?}");
    }
}
