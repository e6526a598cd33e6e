//! Every profile the daemon holds, in memory, as the JSON it serves: what `profiles` and
//! `profile NAME` answer from, without reading the state dir again. Each profile is kept once,
//! serialized (a few kilobytes), and shared by every reply that carries it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::fleet::{self, Row};
use crate::model::profile::Profile;

/// One profile, by identity.
struct Entry {
    /// The container name and id, for `profile NAME` by either.
    name: String,
    id: Option<String>,
    json: Arc<str>,
    /// Its row of the fleet view (`report`).
    row: Row,
}

#[derive(Default)]
pub(super) struct Index {
    entries: BTreeMap<String, Entry>,
}

impl Index {
    /// Keeps `profile` as the latest of `identity`.
    pub(super) fn insert(&mut self, identity: &str, profile: &Profile) {
        let json: Arc<str> = serde_json::to_string(profile)
            .expect("profile serializes")
            .into();
        self.entries.insert(
            identity.to_owned(),
            Entry {
                name: profile.workload.name.clone(),
                id: profile.workload.id.clone(),
                json,
                row: fleet::row_of(profile, "cap-trace daemon"),
            },
        );
    }

    /// The profile of an identity, parsed again.
    pub(super) fn profile(&self, identity: &str) -> Option<Profile> {
        let entry = self.entries.get(identity)?;
        Profile::parse(&entry.json, identity).ok()
    }

    /// The JSON of the profile `name` names: an identity, else a container name or id.
    pub(super) fn find(&self, name: &str) -> Option<(&str, Arc<str>)> {
        if let Some((identity, entry)) = self.entries.get_key_value(name) {
            return Some((identity, entry.json.clone()));
        }
        self.entries
            .iter()
            .find(|(_, e)| e.name == name || e.id.as_deref() == Some(name))
            .map(|(identity, e)| (identity.as_str(), e.json.clone()))
    }

    /// Every profile's JSON, by identity.
    pub(super) fn all(&self) -> Vec<Arc<str>> {
        self.entries.values().map(|e| e.json.clone()).collect()
    }

    /// The fleet view of every profile: held against needed, riskiest excess first.
    pub(super) fn report(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self.entries.values().map(|e| e.row.clone()).collect();
        fleet::sort_by_risk(&mut rows);
        rows
    }

    pub(super) fn contains(&self, identity: &str) -> bool {
        self.entries.contains_key(identity)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::sample;

    #[test]
    fn finds_by_identity_name_or_id_and_shares_the_json() {
        let mut index = Index::default();
        let mut p = sample();
        p.workload.name = "shop-web-1".into();
        p.workload.id = Some("abcdef123456".into());
        index.insert("shop/web", &p);
        let (identity, json) = index.find("shop/web").unwrap();
        assert_eq!(identity, "shop/web");
        for name in ["shop-web-1", "abcdef123456"] {
            let (identity, again) = index.find(name).unwrap();
            assert_eq!(identity, "shop/web");
            assert!(Arc::ptr_eq(&json, &again), "one copy, shared");
        }
        assert!(index.find("nope").is_none());
        assert_eq!(
            index.profile("shop/web").unwrap().workload.name,
            "shop-web-1"
        );
        assert_eq!(index.all().len(), 1);
        p.workload.name = "shop-web-2".into();
        index.insert("shop/web", &p);
        assert_eq!(index.len(), 1);
        assert!(index.find("shop-web-2").is_some());
    }
}
