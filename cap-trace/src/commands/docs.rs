//! `cap-trace completions SHELL` and `cap-trace man`: the shell completions and the manual
//! page, both generated from the command line's clap definition, so they never drift from it.

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::{Failure, exit};
use crate::render::write;

pub fn completions(args: &CompletionsArgs) -> Result<u8, Failure> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "cap-trace", &mut out);
    write::emit(None, &String::from_utf8_lossy(&out))?;
    Ok(exit::OK)
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
