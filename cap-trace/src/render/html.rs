//! The fleet report as one self-contained HTML page (`cap-trace report --html`): one row per
//! workload, what it holds against what it needs as a grid of every capability coloured by
//! risk, the excess and the flags to deploy, and the evidence for each needed capability in a
//! `<details>` element. No script, no external resource: the page opens offline, from a file,
//! in any browser. Every string that came from a profile or an engine goes through [`text`].

use std::fmt::Write as _;

use crate::linux::caps::{self, Cap};
use crate::model::fleet::{self, Row};
use crate::model::profile::Profile;
use crate::model::record::{Check, Phase, Verdict};
use crate::render::fleet::risky_list;

/// What the page says about where and when it was made.
pub struct Page<'a> {
    /// The host it was generated on.
    pub host: &'a str,
    /// RFC 3339 time it was generated.
    pub generated: &'a str,
    /// Where the profiles came from (files, a daemon).
    pub sources: &'a str,
    /// One row per workload, riskiest excess first, each with its profile.
    pub workloads: &'a [(Row, Profile)],
}

/// `s` as HTML text or a quoted attribute value: `&`, `<`, `>`, `"` and `'` as references, and
/// what must not reach a reader as it is (control characters, bidirectional controls,
/// noncharacters: an HTML parser reports them as errors) shown escaped, as on a terminal.
pub fn text(s: &str) -> String {
    let shown = crate::model::text::shown(s);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if noncharacter(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Unicode's noncharacters: U+FDD0..U+FDEF and the last two code points of every plane.
fn noncharacter(c: char) -> bool {
    let n = u32::from(c);
    (0xfdd0..=0xfdef).contains(&n) || n & 0xfffe == 0xfffe
}

/// The state of one capability in a workload's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Held and needed.
    Kept,
    /// Held, not needed: to drop.
    Excess,
    /// Needed, not held.
    Lacking,
    /// Needed; what the workload holds is unknown.
    Needed,
    /// Neither held nor needed (or, held unknown, not needed).
    Absent,
}

impl State {
    fn class(self) -> &'static str {
        match self {
            State::Kept => "kept",
            State::Excess => "excess",
            State::Lacking => "lacking",
            State::Needed => "needed",
            State::Absent => "absent",
        }
    }

    fn words(self) -> &'static str {
        match self {
            State::Kept => "held and needed",
            State::Excess => "held, not needed: drop it",
            State::Lacking => "needed, not held",
            State::Needed => "needed (held unknown)",
            State::Absent => "not held",
        }
    }
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#1d2329;background:#fff}
h1{font-size:20px;margin:0 0 4px}
.meta{color:#555;margin:0 0 12px}
table.fleet{border-collapse:collapse;width:100%}
table.fleet>thead>tr>th{text-align:left;border-bottom:2px solid #333;padding:6px 8px;font-size:13px}
table.fleet>tbody>tr>td{border-bottom:1px solid #ccc;padding:8px;vertical-align:top}
.id{font-weight:600;overflow-wrap:anywhere}
.sub{color:#555;font-size:12px;overflow-wrap:anywhere}
.grid{display:grid;grid-template-columns:repeat(14,22px);gap:2px}
.cap{width:22px;height:18px;font:9px/18px monospace;text-align:center;border-radius:2px;overflow:hidden;color:#000}
.cap.absent{background:#eef0f2;color:#9aa}
.cap.kept{background:#2e9d4a;color:#fff}
.cap.needed{background:#fff;outline:2px solid #2e9d4a;outline-offset:-2px}
.cap.lacking{background:repeating-linear-gradient(45deg,#fff,#fff 3px,#1e6fd9 3px,#1e6fd9 5px);outline:2px solid #1e6fd9;outline-offset:-2px}
.cap.excess.low{background:#f7e27a}
.cap.excess.medium{background:#f5a442}
.cap.excess.high{background:#e4572e;color:#fff}
.cap.excess.critical{background:#8e1111;color:#fff}
.n{font-size:20px;font-weight:700}
.n.bad{color:#8e1111}
.n.ok{color:#2e9d4a}
code{font:12px monospace;background:#f4f5f7;padding:2px 4px;border-radius:3px;overflow-wrap:anywhere}
col.w{width:16%}col.c{width:330px}col.e{width:28%}col.d{width:20%}col.p{width:16%}
.badge{display:inline-block;font-size:11px;padding:1px 6px;border-radius:9px;margin:0 4px 4px 0;color:#fff}
.badge.good{background:#2e9d4a}
.badge.warn{background:#c0392b}
.badge.info{background:#6b7785}
.badge.unknown{background:#fff;color:#555;border:1px solid #999}
details summary{cursor:pointer;color:#1e4f9a}
table.ev{border-collapse:collapse;margin:6px 0 10px;font-size:12px}
table.ev th,table.ev td{border:1px solid #ddd;padding:2px 6px;text-align:left}
.legend{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 14px;font-size:12px;align-items:center}
.legend .cap{display:inline-block;vertical-align:middle;margin-right:4px}
.lst{font-size:12px;color:#333}
";

/// The whole page.
pub fn page(p: &Page) -> String {
    let mut out = String::with_capacity(16 * 1024 + p.workloads.len() * 4096);
    let with_excess = p
        .workloads
        .iter()
        .filter(|(r, _)| r.comparison.as_ref().is_some_and(|c| !c.excess.is_empty()))
        .count();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"cap-trace {version}\">\n\
         <title>Capabilities on {host}: held against needed</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<h1>Capabilities on {host}: held against needed</h1>\n\
         <p class=\"meta\">Generated <time datetime=\"{time}\">{time}</time> on <b id=\"host\">{host}</b> \
         by cap-trace {version} from {sources}: {n} workload{s}, {with_excess} with capabilities \
         to drop.</p>\n",
        version = env!("CARGO_PKG_VERSION"),
        host = text(p.host),
        time = text(p.generated),
        sources = text(p.sources),
        n = p.workloads.len(),
        s = if p.workloads.len() == 1 { "" } else { "s" },
    );
    out.push_str(&legend());
    out.push_str(
        "<table class=\"fleet\">\n<colgroup><col class=\"w\"><col class=\"c\"><col class=\"e\">\
         <col class=\"d\"><col class=\"p\"></colgroup>\n<thead><tr><th>Workload</th><th>Capabilities</th>\
         <th>Excess</th><th>Deploy with</th><th>Profile</th></tr></thead>\n<tbody>\n",
    );
    for (row, profile) in p.workloads {
        out.push_str(&workload_row(row, profile));
    }
    out.push_str("</tbody>\n</table>\n");
    if p.workloads.is_empty() {
        out.push_str("<p>No profiles: nothing to show.</p>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn legend() -> String {
    let mut out = String::from("<div class=\"legend\">");
    let items = [
        ("kept", "held and needed"),
        ("needed", "needed, held unknown"),
        ("lacking", "needed, not held"),
        ("excess low", "excess, low risk"),
        ("excess medium", "excess, medium risk"),
        ("excess high", "excess, high risk"),
        ("excess critical", "excess, critical risk"),
        ("absent", "not held"),
    ];
    for (class, words) in items {
        let _ = write!(
            out,
            "<span><span class=\"cap {class}\"></span>{words}</span>"
        );
    }
    out.push_str("</div>\n");
    out
}

/// Every capability this build knows, then any other one the row holds or needs.
fn columns(row: &Row) -> Vec<Cap> {
    let mut all: Vec<Cap> = (0..caps::ALL.len() as u32).map(Cap).collect();
    let comparison = row.comparison.as_ref();
    let extra = row
        .granted()
        .iter()
        .chain(comparison.map_or(&[][..], |c| &c.needed))
        .filter(|c| c.info().is_none());
    for c in extra {
        if !all.contains(c) {
            all.push(*c);
        }
    }
    all
}

fn state(row: &Row, cap: Cap) -> State {
    let needed = row
        .comparison
        .as_ref()
        .is_some_and(|c| c.needed.contains(&cap));
    if row.held_unknown {
        return if needed { State::Needed } else { State::Absent };
    }
    match (row.granted().contains(&cap), needed) {
        (true, true) => State::Kept,
        (true, false) => State::Excess,
        (false, true) => State::Lacking,
        (false, false) => State::Absent,
    }
}

/// A short label for a grid cell: the capability's initials (`SYS_ADMIN` is `SA`).
fn initials(cap: Cap) -> String {
    match cap.info() {
        Some(info) => info
            .name
            .split('_')
            .filter_map(|w| w.chars().next())
            .take(3)
            .collect(),
        None => cap.0.to_string(),
    }
}

fn grid(row: &Row) -> String {
    let mut out = String::from("<div class=\"grid\">");
    for cap in columns(row) {
        let state = state(row, cap);
        let danger = fleet::danger(cap);
        let _ = write!(
            out,
            "<span class=\"cap {} {danger}\" data-cap=\"{cap}\" data-state=\"{}\" \
             title=\"{cap} ({danger} risk): {}\">{}</span>",
            state.class(),
            state.class(),
            state.words(),
            initials(cap)
        );
    }
    out.push_str("</div>");
    out
}

fn workload_row(row: &Row, profile: &Profile) -> String {
    let mut out = format!(
        "<tr class=\"workload\" data-identity=\"{}\" data-held=\"{}\">\n",
        text(&row.identity),
        if row.held_unknown { "unknown" } else { "known" }
    );
    // Who it is.
    let _ = write!(out, "<td><div class=\"id\">{}</div>", text(&row.identity));
    let mut sub: Vec<String> = Vec::new();
    if let Some(engine) = &row.engine {
        sub.push(format!("<span class=\"engine\">{}</span>", text(engine)));
    }
    if let Some(image) = &row.image {
        sub.push(text(image));
    }
    if let Some(id) = &row.id {
        sub.push(text(&id.chars().take(12).collect::<String>()));
    }
    if !row.pids.is_empty() {
        let pids = row.pids.len();
        sub.push(format!(
            "{pids} process{} running",
            if pids == 1 { "" } else { "es" }
        ));
    }
    let _ = writeln!(out, "<div class=\"sub\">{}</div></td>", sub.join(" · "));
    // What it holds against what it needs.
    let _ = write!(out, "<td>{}", grid(row));
    let summary = text(&row.summary());
    let _ = writeln!(out, "<div class=\"sub\">{summary}</div></td>");
    // The excess.
    out.push_str(&excess_cell(row));
    // How to deploy it.
    let flags = row
        .profile
        .as_ref()
        .map_or(String::new(), |p| text(&p.flags));
    let _ = writeln!(out, "<td><code class=\"flags\">{flags}</code></td>");
    // The profile and its evidence.
    let _ = write!(
        out,
        "<td>{}{}</td>\n</tr>\n",
        badges(row, profile),
        evidence(row, profile)
    );
    out
}

fn excess_cell(row: &Row) -> String {
    let Some(c) = row.comparison.as_ref() else {
        return "<td></td>\n".to_owned();
    };
    if row.held_unknown {
        return "<td><span class=\"n\" data-excess=\"unknown\">?</span>\
                <div class=\"lst\">held unknown: not running here</div></td>\n"
            .to_owned();
    }
    let high = c.excess.iter().filter(|c| fleet::is_high_risk(**c)).count();
    let mut out = format!(
        "<td><span class=\"n {}\" data-excess=\"{}\">{}</span>",
        if c.excess.is_empty() { "ok" } else { "bad" },
        c.excess.len(),
        c.excess.len()
    );
    if high > 0 {
        let _ = write!(out, " <span class=\"lst\">({high} high risk)</span>");
    }
    if !c.excess.is_empty() {
        let _ = write!(
            out,
            "<div class=\"lst\">drop {}</div>",
            risky_list(&c.excess)
        );
    }
    if !c.lacking.is_empty() {
        let _ = write!(
            out,
            "<div class=\"lst\">lacks {}</div>",
            risky_list(&c.lacking)
        );
    }
    out.push_str("</td>\n");
    out
}

fn badges(row: &Row, profile: &Profile) -> String {
    let mut out = String::new();
    let badge = |class: &str, words: &str| format!("<span class=\"badge {class}\">{words}</span>");
    if profile.trace.complete {
        out.push_str(&badge("good complete", "complete"));
    } else {
        out.push_str(&badge("warn incomplete", "incomplete"));
    }
    if profile.verified() {
        out.push_str(&badge("good verified", "verified minimal"));
    } else {
        out.push_str(&badge("info observed", "observed, not verified"));
    }
    if row.held_unknown {
        out.push_str(&badge("unknown", "held unknown"));
    }
    if let Some(p) = &row.profile {
        let _ = write!(out, "<div class=\"sub\">{}</div>", text(&p.source));
    }
    for reason in &profile.trace.incomplete {
        let _ = write!(out, "<div class=\"sub\">incomplete: {}</div>", text(reason));
    }
    out
}

/// Each needed capability's verdict and the checks that showed it.
fn evidence(row: &Row, profile: &Profile) -> String {
    let needed = row
        .comparison
        .as_ref()
        .map_or(&[][..], |c| c.needed.as_slice());
    if needed.is_empty() {
        return "<div class=\"sub\">needs no capability</div>".to_owned();
    }
    let mut out = format!(
        "<details><summary>Evidence for {} needed capabilit{}</summary>",
        needed.len(),
        if needed.len() == 1 { "y" } else { "ies" }
    );
    for cap in needed {
        let verdict = profile.suggestion.verdict(*cap);
        let _ = write!(
            out,
            "<div class=\"evidence\" data-cap=\"{cap}\"><b>{cap}</b> ({} risk): {}",
            fleet::danger(*cap),
            verdict.map_or_else(
                || "needed".to_owned(),
                |v| format!("{}: {}", text(v.status.label()), text(&v.reason))
            )
        );
        let checks: Vec<&Check> = profile.checks.iter().filter(|c| c.cap == *cap).collect();
        if checks.is_empty() {
            out.push_str("</div>");
            continue;
        }
        out.push_str(
            "<table class=\"ev\"><thead><tr><th>comm</th><th>syscall</th><th>call site</th>\
             <th>verdict</th><th>by</th><th>count</th></tr></thead><tbody>",
        );
        for check in checks {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
                text(&check.comm),
                text(check.syscall.as_deref().unwrap_or("-")),
                text(check.site.as_deref().unwrap_or("-")),
                match check.verdict {
                    Verdict::Granted => "granted",
                    Verdict::Denied => "denied",
                },
                match check.audit {
                    crate::model::record::Audit::Noaudit => " (probe)",
                    _ => "",
                },
                match check.phase {
                    Phase::Workload => "workload",
                    Phase::Runtime => "runtime set-up",
                },
                check.count
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</details>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::caps::{defaults, from_mask};
    use crate::model::fixtures::sample;
    use crate::model::fleet::{compare, needs_only, row_of};

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            text("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(text("a\u{1b}[2J\nb\0"), "a\\e[2J\\nb\\x00");
        assert_eq!(
            text("\u{fdd0}\u{1fffe}\u{202e}"),
            "\\u{fdd0}\\u{1fffe}\\u{202e}"
        );
        assert_eq!(text("café"), "café");
    }

    fn page_of(workloads: &[(Row, Profile)]) -> String {
        page(&Page {
            host: "node<1>",
            generated: "2026-11-26T22:00:00.000Z",
            sources: "/var/lib/cap-trace",
            workloads,
        })
    }

    #[test]
    fn a_row_per_workload_with_its_grid() {
        let mut p = sample();
        p.workload.name = "<script>alert(1)</script>".into();
        p.workload.capabilities = Some(defaults::DOCKER.to_vec());
        let mut row = row_of(&p, "a&b.json");
        row.comparison = Some(compare(&[Cap(0), Cap(21)], &[Cap(0), Cap(12)]));
        row.held = vec![Cap(0), Cap(21)];
        let gone = needs_only(&p, "gone.json");
        let html = page_of(&[(row, p.clone()), (gone, p)]);
        assert!(!html.contains("<script"), "{html}");
        assert_eq!(html.matches("<tr class=\"workload\"").count(), 2);
        assert!(html.contains("data-identity=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(html.contains("data-cap=\"CHOWN\" data-state=\"kept\""));
        assert!(html.contains("data-cap=\"SYS_ADMIN\" data-state=\"excess\""));
        assert!(html.contains("data-cap=\"NET_ADMIN\" data-state=\"lacking\""));
        assert!(html.contains("data-held=\"unknown\""));
        assert!(html.contains("data-cap=\"CHOWN\" data-state=\"needed\""));
        assert!(html.contains("<code class=\"flags\">--cap-drop=ALL --cap-add=CHOWN</code>"));
        assert!(html.contains("<b id=\"host\">node&lt;1&gt;</b>"));
        assert!(html.contains("a&amp;b.json"));
        // Evidence: the check that showed CHOWN.
        assert!(html.contains("<td>chown</td><td>fchownat</td>"), "{html}");
        // Nothing is fetched: no URL, no script.
        assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("src="));
    }

    #[test]
    fn unknown_capabilities_get_a_cell() {
        let mut p = sample();
        p.workload.identity = Some("x".into());
        let mut row = row_of(&p, "x.json");
        row.held = from_mask((1 << 45) | 1);
        row.comparison = Some(compare(&row.held, &[Cap(0)]));
        assert_eq!(columns(&row).len(), caps::ALL.len() + 1);
        let html = page_of(&[(row, p)]);
        assert!(html.contains("data-cap=\"CAP_45\" data-state=\"excess\""));
        assert!(
            html.contains("data-cap=\"CAP_45\" data-state=\"excess\" title=\"CAP_45 (high risk)")
        );
    }
}
