//! The fleet view as a table (`cap-trace ps`, the daemon's `status`): one row per workload,
//! what it holds against what it needs, the excess riskiest first and the flags to deploy.

use crate::linux::caps::{Cap, Danger};
use crate::model::fleet::{self, Row};
use crate::render::escape;
use crate::render::text::Style;

/// Names riskiest first, each high or critical one marked with its risk.
pub fn risky_list(caps: &[Cap]) -> String {
    fleet::by_risk(caps)
        .iter()
        .map(|c| match fleet::danger(*c) {
            d @ (Danger::High | Danger::Critical) => format!("{c} ({d})"),
            _ => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn users(row: &Row) -> String {
    if row.users.is_empty() {
        return "-".to_owned();
    }
    row.users
        .iter()
        .map(|u| {
            if *u == 0 {
                "root".to_owned()
            } else {
                u.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn pad(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(s.chars().count())))
}

/// The table, then per workload what to drop and how to deploy it.
/// The table and each workload's details, those wrapped to `width` columns (0: not wrapped).
pub fn table(rows: &[Row], style: Style, verbose: bool, width: usize) -> String {
    if rows.is_empty() {
        return "no running containers\n".to_owned();
    }
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                escape::text(&r.identity).into_owned(),
                escape::text(r.engine.as_deref().unwrap_or("-")).into_owned(),
                users(r),
                r.summary(),
            ]
        })
        .collect();
    let header = ["WORKLOAD", "ENGINE", "USER", "HOLDS / NEEDS"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |c: [&str; 4]| {
        format!(
            "{}  {}  {}  {}",
            pad(c[0], widths[0]),
            pad(c[1], widths[1]),
            pad(c[2], widths[2]),
            c[3]
        )
        .trim_end()
        .to_owned()
            + "\n"
    };
    let mut out = style.bold(&line(header));
    for (row, c) in rows.iter().zip(&cells) {
        let high = row.unjustified().iter().any(|c| fleet::is_high_risk(*c));
        let text = line([&c[0], &c[1], &c[2], &c[3]]);
        out.push_str(&if high { style.red(&text) } else { text });
    }
    out.push('\n');
    for (row, c) in rows.iter().zip(&cells) {
        for line in details(row, &c[0], verbose).split_inclusive('\n') {
            // Flags broken over lines stay one shell command.
            let end = if line.starts_with("  deploy: ") {
                " \\"
            } else {
                ""
            };
            out.push_str(&crate::render::text::wrap_with(line, width, 4, end));
        }
    }
    out
}

/// What one workload should drop, and the flags that deploy its profile.
fn details(row: &Row, name: &str, verbose: bool) -> String {
    let mut out = format!("{name}\n");
    match (&row.comparison, &row.profile) {
        (Some(c), Some(p)) => {
            if row.held_unknown {
                out.push_str(&format!(
                    "  needs: {}\n  held: unknown (it does not run here now)\n",
                    if c.needed.is_empty() { "nothing".to_owned() } else { risky_list(&c.needed) }
                ));
            } else if c.excess.is_empty() {
                out.push_str("  nothing to drop\n");
            } else {
                out.push_str(&format!("  drop: {}\n", risky_list(&c.excess)));
            }
            if !c.lacking.is_empty() {
                out.push_str(&format!(
                    "  lacks what its profile needs: {}\n",
                    risky_list(&c.lacking)
                ));
            }
            if !row.held_unknown && row.held.len() < row.granted().len() {
                out.push_str(&format!(
                    "  effective now: {} (its processes dropped the rest)\n",
                    if row.held.is_empty() { "nothing".to_owned() } else { risky_list(&row.held) }
                ));
            }
            out.push_str(&format!("  deploy: {}\n", p.flags));
            out.push_str(&format!(
                "  profile: {} ({}, {})\n",
                escape::text(&p.source),
                if p.complete {
                    "complete"
                } else {
                    "INCOMPLETE: events were lost"
                },
                if p.verified {
                    "verified minimal"
                } else {
                    "observed"
                }
            ));
        }
        _ => out.push_str(&format!(
            "  holds: {}\n  no profile: trace it (cap-trace --container ..., or the daemon) to know what it needs\n",
            if row.granted().is_empty() { "nothing".to_owned() } else { risky_list(row.granted()) }
        )),
    }
    if verbose {
        let list = |caps: &[Cap]| {
            caps.iter()
                .map(Cap::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        out.push_str(&format!("  effective: {}\n", list(&row.held)));
        if let Some(b) = &row.bounding {
            out.push_str(&format!("  bounding: {}\n", list(b)));
        }
        if let Some(id) = &row.id {
            out.push_str(&format!("  id: {}\n", escape::text(id)));
        }
        if !row.pids.is_empty() {
            out.push_str(&format!(
                "  pids: {}\n",
                row.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::caps::{defaults, from_mask};

    fn row(identity: &str, held: &[Cap], needed: Option<&[Cap]>) -> Row {
        crate::model::fixtures::fleet_row(identity, held, needed)
    }

    #[test]
    fn table_rows_and_details() {
        let rows = [
            row("web", &from_mask(0x1ff_ffff_ffff), Some(&[Cap(10)])),
            row("evil\x1b[2Jname\n", defaults::DOCKER, None),
        ];
        let out = table(&rows, Style::plain(), false, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "WORKLOAD         ENGINE  USER        HOLDS / NEEDS"
        );
        assert_eq!(
            lines[1],
            "web              podman  root,65534  holds 41, needs 1, drop 40 (11 high risk)"
        );
        assert_eq!(
            lines[2],
            "evil\\e[2Jname\\n  podman  root,65534  holds 14, no profile"
        );
        assert!(
            out.contains(
                "  drop: SYS_MODULE (critical), SYS_RAWIO (critical), SYS_ADMIN (critical)"
            )
        );
        assert!(out.contains("  deploy: --cap-drop=ALL --cap-add=NET_BIND_SERVICE\n"));
        assert!(out.contains("  profile: web.json (complete, observed)\n"));
        assert!(out.contains("  holds: CHOWN, DAC_OVERRIDE,"));
        assert!(!out.contains('\x1b'));
        assert_eq!(
            table(&[], Style::plain(), false, 0),
            "no running containers\n"
        );
    }

    #[test]
    fn details_fit_the_terminal() {
        let rows = [row("web", &from_mask(0x1ff_ffff_ffff), Some(&[Cap(10)]))];
        let out = table(&rows, Style::plain(), false, 80);
        let details = out.split("\nweb\n").nth(1).expect("details");
        for line in details.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        let narrow = table(&rows, Style::plain(), false, 40);
        assert!(
            narrow.contains("  deploy: --cap-drop=ALL \\\n    --cap-add=NET_BIND_SERVICE\n"),
            "{narrow}"
        );
        // The drop list goes on under itself, every capability still there.
        assert!(details.contains("\n    "), "{details}");
        let wide = table(&rows, Style::plain(), false, 0);
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            wide.split_whitespace().collect::<Vec<_>>()
        );
    }
}
