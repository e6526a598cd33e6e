//! The compose override file: `cap_drop: [ALL]`, `cap_add` and `privileged: false` for each
//! service of one compose project, to deploy with `-f compose.yaml -f caps.yaml`.
//!
//! Compose tools merge an override's lists into the base file's (docker compose, docker-compose
//! 1.x and podman-compose alike), so a `cap_add` in compose.yaml would survive. By default the
//! list is tagged `!override` (compose-spec), which replaces it; `--compose-lists merge` writes
//! plain lists for the tools that refuse the tag, and says in the file what that means.
//! `cap_drop` stays a plain list: with `ALL` among the drops, Docker and podman both grant
//! exactly `cap_add`, whatever else the base drops.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::model::profile::Profile;
use crate::render::deploy::{RenderError, hash_header, listed, names, yaml_list};
use crate::render::escape;

/// How `cap_add` is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lists {
    /// `cap_add: !override [...]`: replaces the base file's list.
    #[default]
    Override,
    /// `cap_add: [...]`: merged with the base file's list by every compose tool.
    Merge,
}

/// The compose service of a profile, when it is one a compose file can name: a container
/// started by a compose tool (its `com.docker.compose.service` label), with a service name of
/// the compose specification's characters (`[a-zA-Z0-9._-]+`).
fn service(p: &Profile) -> Result<(Option<&str>, &str), String> {
    let Some(c) = &p.workload.compose else {
        return Err("not started by a compose tool (no com.docker.compose.service label)".into());
    };
    let valid = !c.service.is_empty()
        && c.service
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
    if !valid {
        return Err(format!(
            "its compose service label `{}` is no service name a compose file can have",
            c.service
        ));
    }
    Ok((c.project.as_deref(), &c.service))
}

/// What the file says about `cap_add` in the chosen mode, one comment line each.
fn lists_note(lists: Lists) -> &'static [&'static str] {
    match lists {
        Lists::Override => &[
            "cap_add is tagged !override: it replaces any cap_add compose.yaml sets (compose-spec:",
            "docker compose v2, podman-compose 1.6). docker-compose 1.x and podman-compose 1.0",
            "refuse the tag, and podman-compose 1.6 fails on it for a service whose cap_add",
            "compose.yaml does not set: render with --compose-lists merge for those.",
        ],
        Lists::Merge => &[
            "cap_add is a plain list, which every compose tool MERGES with the cap_add compose.yaml",
            "sets for the service: this file grants exactly these capabilities only where compose.yaml",
            "sets no cap_add. Remove cap_add there, or render with --compose-lists override.",
        ],
    }
}

/// One compose override file for the services of one project; profiles that are no compose
/// service are left out with a note, and profiles of several projects are refused with a way
/// to pick one.
pub fn compose(profiles: &[Profile], lists: Lists) -> Result<String, RenderError> {
    let mut services: Vec<(Option<&str>, &str, &Profile)> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    for p in profiles {
        match service(p) {
            Ok((project, name)) => services.push((project, name, p)),
            Err(why) => left_out.push(format!("left out: {}: {why}", p.workload.name)),
        }
    }
    if services.is_empty() {
        return Err(RenderError(format!(
            "no profile here is of a compose service ({}); a compose override needs containers started by docker compose or podman-compose (render the others with --format docker or k8s)",
            listed(profiles.iter().map(|p| p.workload.key()))
        )));
    }
    let projects: BTreeSet<Option<&str>> = services.iter().map(|s| s.0).collect();
    if projects.len() > 1 {
        return Err(RenderError(format!(
            "the profiles are of {} compose projects ({}), and one override file is for one project: pick one with --name PROJECT",
            projects.len(),
            listed(projects.iter().map(|p| p.unwrap_or("(no project label)")))
        )));
    }
    let mut seen = BTreeSet::new();
    for (_, name, _) in &services {
        if !seen.insert(*name) {
            return Err(RenderError(format!(
                "there are several profiles of compose service `{}`: merge them first (cap-trace merge)",
                escape::text(name)
            )));
        }
    }
    let project = services[0].0;
    let mut out = String::new();
    out.push_str(&escape::hash_comment(&format!(
        "compose override for project {}: docker compose -f compose.yaml -f THIS_FILE up",
        project.unwrap_or("(no project label)")
    )));
    out.push_str("# (podman-compose -f compose.yaml -f THIS_FILE up alike)\n");
    for line in lists_note(lists) {
        out.push_str(&escape::hash_comment(line));
    }
    for line in &left_out {
        out.push_str(&escape::hash_comment(line));
    }
    out.push_str("services:\n");
    for (_, name, p) in services {
        hash_header(&mut out, p, 2);
        let _ = writeln!(out, "  {}:", escape::yaml(name));
        out.push_str("    cap_drop:");
        yaml_list(&mut out, 6, &["ALL".to_owned()]);
        out.push_str("    cap_add:");
        if lists == Lists::Override {
            out.push_str(" !override");
        }
        yaml_list(&mut out, 6, &names(&p.suggestion.add));
        // A base file's `privileged: true` would grant every capability whatever the lists say.
        out.push_str("    privileged: false\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::sample;
    use crate::model::profile::ComposeInfo;
    use crate::render::deploy::tests::HOSTILE;

    fn service(project: &str, name: &str) -> Profile {
        let mut p = sample();
        p.workload.name = format!("{project}/{name}");
        p.workload.compose = Some(ComposeInfo {
            project: Some(project.into()),
            service: name.into(),
        });
        p
    }

    #[test]
    fn override_file_replaces_the_lists() {
        let text = compose(&[service("shop", "web")], Lists::Override).unwrap();
        assert!(
            text.contains(
                "  web:\n    cap_drop:\n      - ALL\n    cap_add: !override\n      - CHOWN\n    privileged: false\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# compose override for project shop:"),
            "{text}"
        );
        let mut none = service("shop", "on");
        none.suggestion.add.clear();
        let text = compose(&[none], Lists::Merge).unwrap();
        // `on` is a boolean to YAML 1.1 unless quoted.
        assert!(text.contains("  \"on\":\n"), "{text}");
        assert!(text.contains("    cap_add: []\n"), "{text}");
        assert!(text.contains("MERGES"), "{text}");
    }

    #[test]
    fn other_workloads_are_left_out_and_projects_kept_apart() {
        let text = compose(
            &[service("shop", "web"), sample(), service("shop", "worker")],
            Lists::Override,
        )
        .unwrap();
        assert!(
            text.contains("\n  web:\n") && text.contains("\n  worker:\n"),
            "{text}"
        );
        assert!(
            text.contains("# left out: chown nobody /tmp/x: not started by a compose tool"),
            "{text}"
        );
        let err = compose(&[sample()], Lists::Override)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no profile here is of a compose service"),
            "{err}"
        );
        let err = compose(
            &[service("shop", "web"), service("blog", "web")],
            Lists::Override,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("2 compose projects (`blog`, `shop`)"), "{err}");
        assert!(err.contains("--name PROJECT"), "{err}");
        let err = compose(
            &[service("shop", "web"), service("shop", "web")],
            Lists::Override,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("merge them first"), "{err}");
    }

    #[test]
    fn hostile_labels_reach_only_comments() {
        let hostile = service(HOSTILE, "web");
        let text = compose(&[hostile], Lists::Override).unwrap();
        for line in text.lines() {
            let t = line.trim_start();
            assert!(
                t.starts_with('#')
                    || t == "services:"
                    || t == "web:"
                    || t.starts_with("cap_")
                    || t.starts_with("- ")
                    || t == "privileged: false",
                "{line:?} in\n{text}"
            );
        }
        let bad_service = service("shop", HOSTILE);
        let err = compose(&[bad_service], Lists::Override)
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err}");
    }
}
