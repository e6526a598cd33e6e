//! The human-readable report: one table per workload, then the suggestion. Every string that
//! came from the workload or an engine (names, thread names, warnings that quote them) goes
//! through [`escape::text`]: control characters are shown, never sent to the terminal.

use std::fmt::Write as _;

use crate::linux::caps::{Cap, Danger};
use crate::model::profile::{Profile, WorkloadKind};
use crate::model::record::{Audit, Check, Phase, Verdict};
use crate::model::suggest::{CapVerdict, Status};
pub use crate::model::text::{visible_width, wrap, wrap_with};
use crate::model::verify::{Run, Verification};
use crate::render::escape;
use crate::render::{seconds, set_label, verify_command};

/// Terminal styling, only when writing to a TTY and `NO_COLOR` is unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn detect(stream_is_tty: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: stream_is_tty && !no_color,
        }
    }

    pub fn plain() -> Style {
        Style { color: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    pub fn red(&self, t: &str) -> String {
        self.paint("1;31", t)
    }
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TextOptions {
    /// Show runtime set-up checks and every check record.
    pub verbose: bool,
    /// Add the explanation section.
    pub explain: bool,
    /// The terminal's width in columns: lines are wrapped to it (0: not wrapped).
    pub width: usize,
}

/// Pads `text` (which may contain escape codes) to `width` visible characters.
fn pad(text: &str, visible: usize, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(visible)))
}

/// The text report of one profile.
/// Lines wider than `opts.width` are wrapped at spaces, each part with its hanging indent:
/// table rows under the WHY column, the rest under their text. The title is never wrapped: a
/// command line's quoted words hold spaces, and a break inside one would change what a shell
/// reads back.
pub fn text(profile: &Profile, style: Style, opts: TextOptions) -> String {
    let width = opts.width;
    let mut part = String::new();
    header(&mut part, profile, style);
    let (title, facts) = part.split_once('\n').unwrap_or((&part, ""));
    let mut out = format!("{title}\n");
    out.push_str(&wrap(facts, width, 4));
    let verdicts = &profile.suggestion.capabilities;
    part.clear();
    table(&mut part, verdicts, style, opts.verbose);
    out.push_str(&wrap(&part, width, why_column(verdicts)));
    let missing: Vec<Cap> = profile.suggestion.missing().map(|v| v.cap).collect();
    if !missing.is_empty() && !profile.verified() {
        let line = format!(
            "\n  {} the workload hit a wall: {} was denied and the syscall failed; it is included below\n",
            style.red("needed but missing:"),
            cap_list(&missing)
        );
        out.push_str(&wrap(&line, width, 4));
    }
    if opts.verbose {
        part.clear();
        every_check(&mut part, profile, style);
        out.push_str(&wrap(&part, width, 6));
    }
    part.clear();
    not_for_cap_add(&mut part, profile, style);
    if let Some(v) = &profile.verification {
        verification(&mut part, v, style, opts.verbose);
    }
    out.push_str(&wrap(&part, width, 6));
    out.push_str(&wrap(
        &explain_section(profile, style, opts.explain),
        width,
        6,
    ));
    for warning in &profile.warnings {
        let line = format!(
            "\n  {} {}\n",
            style.yellow("warning:"),
            escape::text(warning)
        );
        out.push_str(&wrap(&line, width, 4));
    }
    part.clear();
    unverified_note(&mut part, profile, style);
    out.push_str(&wrap(&part, width, 4));
    suggestion(&mut out, profile, style, width);
    out
}

/// Denials `--cap-add` cannot fix: said apart, since the suggestion leaves them out.
fn not_for_cap_add(out: &mut String, profile: &Profile, style: Style) {
    let lists = |status: Status| -> Vec<Cap> {
        profile
            .suggestion
            .capabilities
            .iter()
            .filter(|v| v.status == status)
            .map(|v| v.cap)
            .collect()
    };
    let host = lists(Status::HostCannot);
    if !host.is_empty() {
        let _ = writeln!(
            out,
            "\n  {} {} was denied and this host's bounding set lacks it: nothing started here can hold it, so it is left out",
            style.yellow("this host cannot grant:"),
            cap_list(&host)
        );
    }
    let user = lists(Status::NotGrantable);
    if !user.is_empty() {
        let _ = writeln!(
            out,
            "\n  {} {} was denied to a process running as another user than root, while the workload held it: --cap-add cannot give it; a file capability (setcap), an ambient capability, or a root process would",
            style.yellow("not grantable by --cap-add:"),
            cap_list(&user)
        );
    }
}

/// The runs that verified the set (or failed to), one line each.
fn verification(out: &mut String, v: &Verification, style: Style, verbose: bool) {
    if !v.sources.is_empty() {
        let _ = writeln!(out, "\n  {}", style.bold("verified sets of the sources:"));
        for s in &v.sources {
            let _ = writeln!(
                out,
                "    {}: {} ({})",
                escape::text(&s.source),
                cap_list(&s.set),
                if s.verified {
                    "verified"
                } else {
                    "not verified"
                }
            );
        }
    }
    if v.runs.is_empty() {
        if let Some(problem) = &v.problem {
            let _ = writeln!(
                out,
                "\n  {} {}",
                style.red("not verified:"),
                escape::text(problem)
            );
        }
        return;
    }
    let _ = writeln!(
        out,
        "\n  {} {} run{} in {}{}",
        style.bold("verification:"),
        v.runs.len(),
        if v.runs.len() == 1 { "" } else { "s" },
        seconds(v.duration_ms),
        if v.strict { " (strict)" } else { "" }
    );
    for (i, run) in v.runs.iter().enumerate() {
        run_line(out, i + 1, run, style, verbose);
    }
    if let Some(problem) = &v.problem {
        let _ = writeln!(
            out,
            "\n  {} {}; the suggestion below is what the workload was seen to use, not verified",
            style.red("verification failed:"),
            escape::text(problem)
        );
    }
}

fn run_line(out: &mut String, number: usize, run: &Run, style: Style, verbose: bool) {
    let result = if run.passed {
        style.green("passed")
    } else {
        style.red("failed")
    };
    let _ = writeln!(
        out,
        "    {number:>2}. {:<28} {result}  {:>7}  with {}",
        run.title(),
        seconds(run.duration_ms),
        cap_list(&run.set)
    );
    let mut lines: Vec<String> = Vec::new();
    if let Some(failure) = run.failure() {
        lines.push(failure);
    }
    let shown = if verbose { usize::MAX } else { 2 };
    lines.extend(
        run.evidence
            .iter()
            .filter(|e| !run.passed || e.cap.is_some())
            .map(|e| e.text.clone())
            .filter(|t| Some(t) != run.failure().as_ref())
            .take(shown),
    );
    if !run.passed && !run.output.is_empty() {
        lines.push(format!(
            "it printed: {}",
            crate::model::verify::last_line(&run.output)
        ));
    }
    let mut shown_lines: Vec<String> = Vec::new();
    for line in lines {
        if !shown_lines.contains(&line) {
            let _ = writeln!(out, "        {}", style.dim(&escape::text(&line)));
            shown_lines.push(line);
        }
    }
}

/// An unverified suggestion is an upper bound: say so, and how to verify it.
fn unverified_note(out: &mut String, profile: &Profile, style: Style) {
    if profile.verified() {
        return;
    }
    let how = match (verify_command(profile), profile.workload.kind) {
        (Some(command), Some(WorkloadKind::Container)) => format!(
            "verify it with `{}`, started before the container (it re-creates the container once per capability and more: staging only)",
            escape::text(&command)
        ),
        (Some(command), _) => format!(
            "verify it with `{}` (it runs the workload again, once per capability: staging only)",
            escape::text(&command)
        ),
        (None, Some(WorkloadKind::Container)) => "cap-trace verifies podman and Docker containers (`cap-trace --container NAME --verify`) and commands (`cap-trace run --verify -- CMD`); this one's engine cannot re-create it: run its workload under one of those to verify it".into(),
        (None, Some(WorkloadKind::Process | WorkloadKind::Cgroup | WorkloadKind::Unit)) => "cap-trace verifies commands (`cap-trace run --verify -- CMD`) and containers (`cap-trace --container NAME --verify`), not running workloads: run its command or container that way, or restart it with the set less one capability at a time".into(),
        (None, _) => "verify each source with `cap-trace run --verify`, then merge them".into(),
    };
    let _ = writeln!(
        out,
        "\n  {} this is what the workload was seen to use: an upper bound, often more than it needs; {how}",
        style.yellow("not verified:")
    );
}

/// What was traced: the workload, how it ended, how it was traced, what it ran with.
fn header(out: &mut String, profile: &Profile, style: Style) {
    let w = &profile.workload;
    let name = escape::text(&w.name);
    let title = match w.kind {
        Some(WorkloadKind::Container) => format!("container {name}"),
        Some(WorkloadKind::Merged) => format!("merged profile {name}"),
        Some(WorkloadKind::Process | WorkloadKind::Cgroup | WorkloadKind::Unit) => {
            escape::text(&crate::render::attached_title(w).unwrap_or_default()).into_owned()
        }
        // The command line as a shell reads it back: each argument one word.
        _ => match &w.command {
            Some(argv) => argv
                .iter()
                .map(|a| escape::shell(a))
                .collect::<Vec<_>>()
                .join(" "),
            None => format!("`{name}`"),
        },
    };
    let _ = writeln!(out, "{}", style.bold(&title));
    let mut facts = Vec::new();
    if let Some(status) = w.exit_status {
        facts.push(format!("exited with status {status}"));
    } else if let Some(signal) = w.exit_signal {
        facts.push(format!("killed by signal {signal}"));
    }
    facts.push(format!(
        "traced for {:.2} s with {} on Linux {}",
        profile.trace.duration_ms as f64 / 1000.0,
        escape::text(&profile.trace.hook),
        escape::text(&profile.trace.kernel)
    ));
    let _ = writeln!(out, "  {}", facts.join(", "));
    if let (Some(cgroup), Some(WorkloadKind::Process)) = (&w.cgroup, w.kind) {
        let _ = writeln!(out, "  in cgroup {}", escape::text(cgroup));
    }
    if let Some(h) = &w.health {
        let _ = writeln!(
            out,
            "  health check {} ({} attempt{}): {}",
            if h.passed { "passed" } else { "FAILED" },
            h.attempts,
            if h.attempts == 1 { "" } else { "s" },
            escape::text(&h.command)
        );
    }
    let _ = writeln!(out, "  capability set: {}", set_label(profile));
    if let Some(caps) = &w.capabilities {
        let _ = writeln!(out, "  ran with: {}", cap_list(caps));
    }
}

/// Where the WHY column of [`table`] starts.
fn why_column(verdicts: &[CapVerdict]) -> usize {
    let name_w = width(verdicts.iter().map(|v| v.cap.name().len()), 10);
    let status_w = width(verdicts.iter().map(|v| v.status.label().len()), 6);
    2 + name_w + 2 + status_w + 2 + 7 + 2
}

/// The widest of `widths`, and at least `min`.
fn width(widths: impl Iterator<Item = usize>, min: usize) -> usize {
    widths.max().unwrap_or(min).max(min)
}

/// One row per capability: its status, its checks, why, and what made the checks (three
/// lines of evidence, or all with --verbose).
fn table(out: &mut String, verdicts: &[CapVerdict], style: Style, verbose: bool) {
    if verdicts.is_empty() {
        let _ = writeln!(out, "\n  no capability checks by the workload");
        return;
    }
    let name_w = width(verdicts.iter().map(|v| v.cap.name().len()), 10);
    let status_w = width(verdicts.iter().map(|v| v.status.label().len()), 6);
    // Padded by what shows, not by the escape codes around it.
    let _ = writeln!(
        out,
        "\n  {}  {}   {}  {}",
        pad(&style.bold("CAPABILITY"), 10, name_w),
        pad(&style.bold("STATUS"), 6, status_w),
        style.bold("CHECKS"),
        style.bold("WHY")
    );
    let under = |out: &mut String, text: &str| {
        let _ = writeln!(
            out,
            "  {}  {}  {:>7}  {}",
            " ".repeat(name_w),
            " ".repeat(status_w),
            "",
            style.dim(text)
        );
    };
    for v in verdicts {
        let label = v.status.label();
        let painted = match v.status {
            Status::Required | Status::Needed | Status::PrivilegeDrop => style.green(label),
            Status::Missing => style.red(label),
            Status::HostCannot | Status::NotGrantable => style.yellow(label),
            _ => style.dim(label),
        };
        let _ = writeln!(
            out,
            "  {}  {}  {:>7}  {}",
            pad(&v.cap.name(), v.cap.name().len(), name_w),
            pad(&painted, label.len(), status_w),
            v.count,
            escape::text(&v.reason)
        );
        let shown = if verbose { v.evidence.len() } else { 3 };
        for e in v.evidence.iter().take(shown) {
            under(out, &escape::text(e));
        }
        if v.evidence.len() > shown {
            under(
                out,
                &format!("... {} more (--verbose)", v.evidence.len() - shown),
            );
        }
    }
}

/// With --verbose: the runtime's set-up checks, then every check of the workload.
fn every_check(out: &mut String, profile: &Profile, style: Style) {
    let runtime: Vec<_> = profile
        .checks
        .iter()
        .filter(|c| c.phase == Phase::Runtime)
        .collect();
    if !runtime.is_empty() {
        let _ = writeln!(
            out,
            "\n  {}",
            style.bold("runtime set-up (not part of the workload):")
        );
        for c in runtime {
            let _ = writeln!(out, "    {}", describe_check(c));
        }
    }
    let _ = writeln!(out, "\n  {}", style.bold("all workload checks:"));
    for c in profile.checks.iter().filter(|c| c.phase == Phase::Workload) {
        let _ = writeln!(out, "    {}", describe_check(c));
    }
}

/// The suggested flags, and what they drop of what the workload runs with now.
/// Flags that do not fit the line go on the next, after a ` \\`: pasted into a shell, they
/// stay one command.
fn suggestion(out: &mut String, profile: &Profile, style: Style, width: usize) {
    let line = format!(
        "\n{} {}\n",
        style.bold("Suggestion:"),
        style.bold(&profile.suggestion.docker_flags())
    );
    out.push_str(&wrap_with(&line, width, 2, " \\"));
    if let Some(current) = &profile.workload.capabilities {
        let dropped: Vec<Cap> = current
            .iter()
            .copied()
            .filter(|c| !profile.suggestion.add.contains(c))
            .collect();
        if !dropped.is_empty() {
            let line = format!(
                "  drops {} it runs with now: {}\n",
                dropped.len(),
                cap_list(&dropped)
            );
            out.push_str(&wrap(&line, width, 4));
        }
    }
}

fn describe_check(c: &Check) -> String {
    format!(
        "{:<18} {:<7} {:<8} {:<16} {:<16} x{}{}",
        c.cap.name(),
        match c.verdict {
            Verdict::Granted => "granted",
            Verdict::Denied => "denied",
        },
        match c.audit {
            Audit::Audited => "audited",
            Audit::Noaudit => "noaudit",
            Audit::Unknown => "unknown",
        },
        escape::text(&c.comm),
        c.syscall.as_deref().unwrap_or("-"),
        c.count,
        c.site
            .as_deref()
            .map(|s| format!("  [{}]", escape::text(s)))
            .unwrap_or_default()
    )
}

pub fn cap_list(caps: &[Cap]) -> String {
    if caps.is_empty() {
        return "none".into();
    }
    caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

/// What each suggested capability allows and how dangerous it is; `detailed` adds advice and
/// the evidence that made it required.
pub fn explain_section(profile: &Profile, style: Style, detailed: bool) -> String {
    let mut out = String::new();
    if profile.suggestion.add.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n  {}",
        style.bold(if profile.verified() {
            "what the verified capabilities allow:"
        } else {
            "what the suggested capabilities allow:"
        })
    );
    for cap in &profile.suggestion.add {
        let Some(info) = cap.info() else { continue };
        let danger = format!("{} risk", info.danger);
        let danger = match info.danger {
            Danger::Critical | Danger::High => style.red(&danger),
            _ => danger,
        };
        let _ = writeln!(
            out,
            "    {} ({danger}): {}",
            style.bold(info.name),
            info.allows
        );
        if detailed {
            let _ = writeln!(out, "      {}", info.advice);
            if let Some(v) = profile.suggestion.verdict(*cap) {
                let _ = writeln!(
                    out,
                    "      evidence: {}",
                    escape::text(&v.evidence.join("; "))
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::sample;

    #[test]
    fn plain_report_has_table_and_suggestion() {
        let text = text(&sample(), Style::plain(), TextOptions::default());
        assert!(text.starts_with("chown nobody /tmp/x\n"), "{text}");
        assert!(text.contains("exited with status 0"));
        assert!(text.contains("CHOWN"));
        assert!(text.contains("required"));
        assert!(text.contains("probed, not required"));
        assert!(
            text.ends_with("Suggestion: --cap-drop=ALL --cap-add=CHOWN\n"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn workload_strings_reach_the_terminal_escaped() {
        let mut p = sample();
        p.workload.name = "evil\n\u{1b}]0;title\u{7}\u{1b}[31m".into();
        p.workload.command = Some(vec![p.workload.name.clone(), "it's".into()]);
        for c in &mut p.checks {
            c.comm = "ch\rown\u{1b}[2J".into();
        }
        p.warnings.push("saw \u{1b}[5m".into());
        let p = Profile::new(p.workload, p.trace, p.checks, p.outcomes, p.warnings);
        for opts in [
            TextOptions::default(),
            TextOptions {
                verbose: true,
                explain: true,
                width: 0,
            },
        ] {
            let text = text(&p, Style::plain(), opts);
            assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
            assert!(!text.contains('\u{7}'), "{text}");
            assert!(
                text.starts_with(r"$'evil\n\x1b]0;title\x07\x1b[31m' 'it'\''s'"),
                "{text}"
            );
            assert!(text.contains("ch\\rown\\e[2J: fchownat"), "{text}");
            assert!(text.contains("warning: saw \\e[5m"), "{text}");
        }
    }

    #[test]
    fn colours_only_when_asked() {
        let text = text(&sample(), Style { color: true }, TextOptions::default());
        assert!(text.contains("\x1b[32mrequired\x1b[0m"));
    }

    #[test]
    fn explains_what_kept_capabilities_allow() {
        let short = text(&sample(), Style::plain(), TextOptions::default());
        assert!(
            short.contains("    CHOWN (medium risk): change the owner and group of any file\n"),
            "{short}"
        );
        assert!(!short.contains("evidence:"));
        let long = text(
            &sample(),
            Style::plain(),
            TextOptions {
                verbose: false,
                explain: true,
                width: 0,
            },
        );
        assert!(long.contains("evidence: chown: fchownat"), "{long}");
        assert!(long.contains("chown volumes at start-up"), "{long}");
    }

    #[test]
    fn verbose_lists_every_check() {
        let text = text(
            &sample(),
            Style::plain(),
            TextOptions {
                verbose: true,
                explain: false,
                width: 0,
            },
        );
        assert!(text.contains("all workload checks:"));
        assert!(
            text.contains("SYS_ADMIN          granted noaudit  chown            mmap"),
            "{text}"
        );
    }

    /// Every word of `wrapped` is a word of `original`: breaks fall between words only.
    fn same_words(original: &str, wrapped: &str) {
        let words = |t: &str| {
            t.split_whitespace()
                .filter(|w| *w != "\\")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(words(original), words(wrapped));
    }

    #[test]
    fn wraps_at_spaces_with_a_hanging_indent() {
        let line = "  warning: the workload ran under a seccomp filter that refused some syscalls before the kernel checked a capability\n";
        let wrapped = wrap(line, 40, 4);
        assert_eq!(
            wrapped,
            "  warning: the workload ran under a\n    seccomp filter that refused some\n    syscalls before the kernel checked a\n    capability\n"
        );
        same_words(line, &wrapped);
        // Short lines and column padding are left alone; a word longer than the line stays whole.
        assert_eq!(wrap("  A      B\n", 40, 4), "  A      B\n");
        assert_eq!(
            wrap("x aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 20, 2),
            "x\n  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert_eq!(wrap(line, 0, 4), line);
        // A line indented deeper than the hanging indent hangs below its own text.
        assert_eq!(
            wrap(
                "        the run exited with status 1 (the learning run exited with 0)",
                40,
                6
            ),
            "        the run exited with status 1\n          (the learning run exited with\n          0)"
        );
        // Escape codes take no room.
        let bold = Style { color: true }.bold("word");
        assert_eq!(visible_width(&bold), 4);
        assert_eq!(
            wrap(&format!("{bold} {bold}"), 9, 0),
            format!("{bold} {bold}")
        );
        // A shell command stays one command.
        assert_eq!(
            wrap_with("run --a --b --c", 12, 2, " \\"),
            "run --a \\\n  --b --c"
        );
    }

    #[test]
    fn a_command_title_is_one_line_even_when_long() {
        let mut p = sample();
        p.workload.command = Some(vec!["sh".into(), "-c".into(), "x ".repeat(50)]);
        let opts = TextOptions {
            width: 40,
            ..TextOptions::default()
        };
        let text = text(&p, Style::plain(), opts);
        let title = format!("sh -c '{}'\n", "x ".repeat(50));
        assert!(text.starts_with(&title), "{text}");
    }

    #[test]
    fn the_report_fits_80_columns() {
        let mut p = sample();
        p.warnings.push(
            "the workload ran under a seccomp filter: a syscall it refuses never reaches the capability check, so a capability that such a syscall would need is not seen here; trace with the seccomp profile you deploy with, or with --security-opt seccomp=unconfined to see every check the workload would make without it".into(),
        );
        p.workload.capabilities = Some(
            crate::linux::caps::ALL
                .iter()
                .map(|c| Cap(c.number))
                .collect(),
        );
        let p = Profile::new(p.workload, p.trace, p.checks, p.outcomes, p.warnings);
        for color in [false, true] {
            for verbose in [false, true] {
                let style = Style { color };
                let opts = TextOptions {
                    verbose,
                    explain: true,
                    width: 80,
                };
                let text = text(&p, style, opts);
                for line in text.lines() {
                    assert!(
                        visible_width(line) <= 80,
                        "{} columns: {line}",
                        visible_width(line)
                    );
                }
                let unwrapped = super::text(&p, style, TextOptions { width: 0, ..opts });
                same_words(&unwrapped, &text);
            }
        }
    }

    #[test]
    fn column_titles_sit_over_their_values_in_colour_too() {
        let plain = text(&sample(), Style::plain(), TextOptions::default());
        let color = text(&sample(), Style { color: true }, TextOptions::default());
        let strip = |t: &str| {
            let mut out = String::new();
            let mut esc = false;
            for c in t.chars() {
                match c {
                    '\x1b' => esc = true,
                    'm' if esc => esc = false,
                    _ if esc => {}
                    c => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&color), plain);
    }
}
