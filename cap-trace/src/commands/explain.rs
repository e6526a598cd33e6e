//! `cap-trace explain CAP... | --all`: what a capability allows and how dangerous it is.

use crate::cli::{ExplainArgs, Format, GlobalArgs};
use crate::commands::global::{emit, style, text_or_json_only};
use crate::error::{Failure, exit};
use crate::linux::caps::{self, Cap};

pub fn command(args: &ExplainArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let caps: Vec<Cap> = if args.all {
        caps::ALL.iter().map(|c| Cap(c.number)).collect()
    } else {
        args.caps
            .iter()
            .map(|s| s.parse::<Cap>().map_err(Failure::usage))
            .collect::<Result<_, _>>()?
    };
    let text = match global.format() {
        Format::Json => {
            let items: Vec<_> = caps
                .iter()
                .filter_map(|c| c.info())
                .map(|i| {
                    serde_json::json!({
                        "name": i.name,
                        "number": i.number,
                        "danger": i.danger,
                        "allows": i.allows,
                        "advice": i.advice,
                    })
                })
                .collect();
            format!("{}\n", serde_json::to_string_pretty(&items).expect("json"))
        }
        Format::Text => {
            let style = style(global);
            let mut out = String::new();
            for info in caps.iter().filter_map(|c| c.info()) {
                out.push_str(&format!(
                    "{} (CAP_{}, {}): {} risk\n  allows: {}\n  advice: {}\n",
                    style.bold(info.name),
                    info.name,
                    info.number,
                    info.danger,
                    info.allows,
                    info.advice
                ));
            }
            out
        }
        other => return Err(text_or_json_only("explain", other)),
    };
    emit(global, &text)?;
    Ok(exit::OK)
}
