//! cap-trace: learn which Linux capabilities a workload really needs.
//!
//! The kernel side (`cap-trace-ebpf`) observes every `cap_capable` call of the traced cgroups;
//! this library is grouped by pipeline stage, each folder depending only on the ones before it:
//!
//! - [`linux`]: what Linux is (capabilities, syscall names, the audit call-site rules);
//! - [`kernel`]: the hook: loading and attaching the programs, reading their maps;
//! - [`session`]: a tracing session: events into records, cgroups, containers, privileges;
//! - [`model`]: the profile and the rules over it (suggestion, merge, gate): pure data;
//! - [`render`]: every output, from a profile;
//! - [`commands`]: one file per subcommand, on top of all of them.
//!
//! `linux` ← `kernel` ← `session` ← `commands`, and `linux` ← `model` ← `render` ←
//! `commands`; `session` also builds `model` records.

pub mod cli;
pub mod commands;
pub mod error;
pub mod kernel;
pub mod linux;
pub mod model;
pub mod render;
pub mod session;

/// The dependency rule above, checked on the source: every `crate::` path in a stage's files
/// (tests included) names that stage or one it may use, the pure stages name no kernel or
/// runtime crate, and no file reaches itself through the files it names (tests left out:
/// a test may use the fixtures built from the code it tests).
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// What each stage (a folder, or a file at the top) may name besides itself.
    const MAY_USE: &[(&str, &[&str])] = &[
        ("linux", &[]),
        ("kernel", &["linux"]),
        ("model", &["linux"]),
        ("session", &["linux", "kernel", "model"]),
        ("render", &["linux", "model"]),
        ("error", &["linux", "kernel", "session", "model", "render"]),
        ("cli", &["linux", "kernel", "model", "error"]),
        (
            "commands",
            &[
                "linux", "kernel", "session", "model", "render", "error", "cli",
            ],
        ),
    ];

    /// Crates the pure stages must not name: the kernel side's types, eBPF, the runtime, libc.
    const NOT_IN: &[(&str, &[&str])] = &[
        ("linux", &["aya", "cap_trace_common", "libc", "tokio"]),
        ("model", &["aya", "cap_trace_common", "libc", "tokio"]),
        ("render", &["aya", "cap_trace_common", "tokio"]),
    ];

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// Every `.rs` file below `dir`, as a path relative to `src`.
    fn files(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                files(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push(path.strip_prefix(src()).expect("below src").to_path_buf());
            }
        }
    }

    /// The code of a file without its comments (a rule written in a comment is no import),
    /// and without its test module (at the end, by convention) unless `tests`.
    fn code(file: &Path, tests: bool) -> String {
        let text = std::fs::read_to_string(src().join(file)).expect("read source");
        text.lines()
            .take_while(|l| tests || !l.starts_with("#[cfg(test)]"))
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The stage a file belongs to: its folder, or its own name at the top.
    fn stage(file: &Path) -> String {
        let first = file.components().next().expect("a path");
        let first = first.as_os_str().to_string_lossy();
        first.trim_end_matches(".rs").to_owned()
    }

    /// Every `crate::a::b::...` path in `code`, as its segments.
    fn crate_paths(code: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // `cap_trace_crate::`, say
            }
            let rest = &code[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let segments: Vec<String> = rest[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if !segments.is_empty() {
                out.push(segments);
            }
        }
        out
    }

    /// The file a `crate::` path lands in: the longest prefix that is a module file.
    fn file_of(segments: &[String]) -> Option<PathBuf> {
        (1..=segments.len()).rev().find_map(|n| {
            let base: PathBuf = segments[..n].iter().collect();
            [base.with_extension("rs"), base.join("mod.rs")]
                .into_iter()
                .find(|f| src().join(f).is_file())
        })
    }

    /// The child modules a module file names by a relative path (`child::item`).
    fn children_used(file: &Path, code: &str) -> Vec<PathBuf> {
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs") => file.parent().unwrap_or(Path::new("")).to_path_buf(),
            _ => return Vec::new(),
        };
        code.lines()
            .filter_map(|l| {
                let l = l.trim_start().trim_start_matches("pub ");
                l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
            })
            .filter(|child| {
                code.match_indices(&format!("{child}::")).any(|(i, _)| {
                    !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                })
            })
            .filter_map(|child| file_of(&[dir.join(child).to_string_lossy().into_owned()]))
            .collect()
    }

    fn all_files() -> Vec<PathBuf> {
        let mut all = Vec::new();
        files(&src(), &mut all);
        all.sort();
        all
    }

    #[test]
    fn stages_use_only_earlier_stages() {
        let rules: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
        let mut broken = Vec::new();
        for file in all_files() {
            let stage = stage(&file);
            let Some(may) = rules.get(stage.as_str()) else {
                assert!(
                    ["lib", "main"].contains(&stage.as_str()),
                    "{} is in no stage: add it to MAY_USE",
                    file.display()
                );
                continue;
            };
            for path in crate_paths(&code(&file, true)) {
                let used = &path[0];
                if *used != stage && !may.contains(&used.as_str()) {
                    broken.push(format!(
                        "{} uses crate::{}",
                        file.display(),
                        path.join("::")
                    ));
                }
            }
        }
        assert!(
            broken.is_empty(),
            "later stages used:\n{}",
            broken.join("\n")
        );
    }

    #[test]
    fn pure_stages_name_no_kernel_or_runtime_crate() {
        let mut broken = Vec::new();
        for file in all_files() {
            let stage = stage(&file);
            let Some((_, crates)) = NOT_IN.iter().find(|(s, _)| *s == stage) else {
                continue;
            };
            let code = code(&file, true);
            for name in *crates {
                let named = code.match_indices(&format!("{name}::")).any(|(i, _)| {
                    !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                });
                if named {
                    broken.push(format!("{} names {name}", file.display()));
                }
            }
        }
        assert!(broken.is_empty(), "{}", broken.join("\n"));
    }

    #[test]
    fn no_file_reaches_itself() {
        let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = all_files()
            .into_iter()
            .map(|file| {
                let code = code(&file, false);
                let uses = crate_paths(&code)
                    .iter()
                    .filter_map(|p| file_of(p))
                    .chain(children_used(&file, &code))
                    .filter(|used| *used != file)
                    .collect();
                (file, uses)
            })
            .collect();
        for start in graph.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<Vec<&PathBuf>> = vec![vec![start]];
            while let Some(route) = stack.pop() {
                let last = route[route.len() - 1];
                for next in graph.get(last).into_iter().flatten() {
                    let names = |r: &[&PathBuf]| {
                        r.iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    };
                    assert!(
                        next != start,
                        "a cycle: {} -> {}",
                        names(&route),
                        start.display()
                    );
                    if seen.insert(next) {
                        let mut longer = route.clone();
                        longer.push(next);
                        stack.push(longer);
                    }
                }
            }
        }
    }
}
