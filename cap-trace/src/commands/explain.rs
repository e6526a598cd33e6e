//! `cap-trace explain CAP|BITMAP... | --all`: what a capability allows and how dangerous it
//! is; a bitmap from `/proc/PID/status` is decoded as `capsh --decode` does.

use crate::cli::{ExplainArgs, Format, GlobalArgs};
use crate::commands::global::{emit, format_refused, style, terminal_width};
use crate::error::{Failure, exit};
use crate::linux::caps::{self, Cap, CapInfo, Decoded};

/// One argument: a capability by name, or a bitmap.
enum Item {
    Cap(Cap),
    Mask(Decoded),
}

fn item(arg: &str) -> Result<Item, Failure> {
    if let Some(mask) = caps::parse_mask(arg.trim()) {
        return Ok(Item::Mask(caps::decode(mask)));
    }
    let digits = arg.trim().trim_start_matches("0x");
    if digits.len() > 16 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::usage(format!(
            "bitmap `{arg}` is wider than 64 bits: give it as /proc/PID/status prints it (16 hex digits, such as 00000000a80425fb)"
        )));
    }
    arg.parse::<Cap>().map(Item::Cap).map_err(Failure::usage)
}
use crate::render::text::wrap;

pub fn command(args: &ExplainArgs, global: &GlobalArgs) -> Result<u8, Failure> {
    let items: Vec<Item> = if args.all {
        caps::ALL.iter().map(|c| Item::Cap(Cap(c.number))).collect()
    } else {
        args.caps
            .iter()
            .map(|s| item(s))
            .collect::<Result<_, _>>()?
    };
    let text = match global.format() {
        Format::Json => {
            let json: Vec<_> = items.iter().map(item_json).collect();
            format!("{}\n", serde_json::to_string_pretty(&json).expect("json"))
        }
        Format::Text => {
            let style = style(global);
            let mut out = String::new();
            for item in &items {
                match item {
                    Item::Cap(cap) => {
                        if let Some(info) = cap.info() {
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
                    }
                    Item::Mask(decoded) => out.push_str(&mask_text(decoded)),
                }
            }
            // `allows:` and `advice:` run on under their first word.
            wrap(&out, terminal_width(global), 10)
        }
        other => return Err(format_refused("explain", other)),
    };
    emit(global, &text)?;
    Ok(exit::OK)
}

fn info_json(info: &CapInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "number": info.number,
        "danger": info.danger,
        "allows": info.allows,
        "advice": info.advice,
    })
}

fn item_json(item: &Item) -> serde_json::Value {
    match item {
        Item::Cap(cap) => cap.info().map_or(serde_json::Value::Null, info_json),
        Item::Mask(decoded) => serde_json::json!({
            "bitmap": format!("0x{:016x}", decoded.mask),
            "capabilities": decoded.known.iter().filter_map(|c| c.info()).map(info_json).collect::<Vec<_>>(),
            "unknown_bits": decoded.unknown,
        }),
    }
}

/// The `capsh --decode` line, then one line per capability with its risk and what it allows.
fn mask_text(decoded: &Decoded) -> String {
    let mut out = format!("{}\n", decoded.capsh_line());
    let width = decoded
        .known
        .iter()
        .map(|c| c.name().len())
        .chain(decoded.unknown.iter().map(|n| format!("bit {n}").len()))
        .max()
        .unwrap_or(0);
    if decoded.known.is_empty() && decoded.unknown.is_empty() {
        out.push_str("  no capabilities\n");
    }
    for info in decoded.known.iter().filter_map(|c| c.info()) {
        out.push_str(&format!(
            "  {:width$}  {:8}  {}\n",
            info.name,
            info.danger.to_string(),
            info.allows
        ));
    }
    for bit in &decoded.unknown {
        out.push_str(&format!(
            "  {:width$}  {:8}  not a capability this cap-trace knows (the last is {}): a newer kernel's, or not a capability bitmap\n",
            format!("bit {bit}"),
            "unknown",
            caps::ALL.last().map_or("", |c| c.name),
        ));
    }
    out
}
