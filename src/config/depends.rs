//! Dependencies between groups (API.md part 8): `depends_on` and `on_dependency_restart`, and
//! their checks at configure time (every dependency configured, no cycle).

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::GroupSpec;
use crate::error::{Error, Result};

/// What a dependency must have reached before its dependent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DependsCondition {
    /// Every worker of the dependency has been spawned.
    Started,
    /// Every worker of the dependency is ready.
    Ready,
    /// Every worker of the dependency exited 0 and its restart policy does not respawn them.
    Completed,
}

impl DependsCondition {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DependsCondition::Started => "started",
            DependsCondition::Ready => "ready",
            DependsCondition::Completed => "completed",
        }
    }
}

/// What a group does when a worker of a group it depends on ends after the group started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDependencyRestart {
    /// Nothing.
    #[default]
    Ignore,
    /// Replace the group's workers as a rolling restart once the dependency is ready again
    /// (OTP's `rest_for_one` across groups).
    Restart,
    /// Stop the group (systemd's `BindsTo=`).
    Stop,
}

/// Checks every group's dependencies: each names a configured group other than itself, the
/// graph has no cycle.
pub(super) fn validate(groups: &[GroupSpec]) -> Result<()> {
    let index: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.as_str(), i))
        .collect();
    for (i, g) in groups.iter().enumerate() {
        for dep in g.depends_on.keys() {
            if !index.contains_key(dep.as_str()) {
                return Err(at(i, format!("'{dep}' is not a configured group")));
            }
        }
    }
    for (i, g) in groups.iter().enumerate() {
        let mut path = vec![g.name.as_str()];
        if let Some(cycle) = find_cycle(groups, &index, &mut path) {
            return Err(at(i, cycle.join(" -> ")));
        }
    }
    Ok(())
}

fn at(i: usize, why: String) -> Error {
    Error::InvalidConfig(format!("groups[{i}].depends_on: {why}"))
}

/// A path from `path[0]` back to itself through `depends_on`, if there is one. Depth-first;
/// the graph is small (at most a few hundred groups) and checked once per configure.
fn find_cycle<'a>(
    groups: &'a [GroupSpec],
    index: &HashMap<&str, usize>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    let last = path[path.len() - 1];
    let deps: &'a BTreeMap<String, DependsCondition> = &groups[index[last]].depends_on;
    for dep in deps.keys() {
        if dep == path[0] {
            let mut cycle = path.clone();
            cycle.push(dep.as_str());
            return Some(cycle);
        }
        // A cycle not through path[0] is found when its own first group is checked.
        if path.contains(&dep.as_str()) {
            continue;
        }
        path.push(dep.as_str());
        if let Some(c) = find_cycle(groups, index, path) {
            return Some(c);
        }
        path.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_groups;

    fn groups(deps: &[(&str, &str)]) -> String {
        let items: Vec<String> = deps
            .iter()
            .map(|(name, on)| {
                format!(r#"{{"name": "{name}", "argv": ["/bin/true"], "depends_on": {on}}}"#)
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    fn error_of(deps: &[(&str, &str)]) -> String {
        parse_groups(&groups(deps)).unwrap_err().to_string()
    }

    #[test]
    fn dependencies_parse_with_their_conditions() {
        let g = parse_groups(&groups(&[
            ("db", "{}"),
            ("migrate", r#"{"db": "ready"}"#),
            ("web", r#"{"db": "started", "migrate": "completed"}"#),
        ]))
        .unwrap();
        assert!(g[0].depends_on.is_empty());
        assert_eq!(g[0].on_dependency_restart, OnDependencyRestart::Ignore);
        assert_eq!(g[2].depends_on["db"], DependsCondition::Started);
        assert_eq!(g[2].depends_on["migrate"], DependsCondition::Completed);
    }

    /// `as_str` names a condition as its JSON does (the Rust face prints what a host wrote).
    #[test]
    fn each_condition_is_named_as_in_json() {
        for c in [
            DependsCondition::Started,
            DependsCondition::Ready,
            DependsCondition::Completed,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn unknown_dependency_and_bad_condition_are_named() {
        let e = error_of(&[("db", "{}"), ("web", r#"{"dbx": "ready"}"#)]);
        assert!(e.contains("groups[1].depends_on: 'dbx' is not"), "{e}");
        let e = error_of(&[("db", "{}"), ("web", r#"{"db": "healthy"}"#)]);
        assert!(e.contains("groups[1].depends_on"), "{e}");
    }

    #[test]
    fn cycles_are_rejected_with_their_path() {
        let e = error_of(&[
            ("db", "{}"),
            ("api", r#"{"web": "ready"}"#),
            ("web", r#"{"api": "ready", "db": "ready"}"#),
        ]);
        assert!(e.contains("groups[1].depends_on: api -> web -> api"), "{e}");
        let e = error_of(&[("a", r#"{"a": "started"}"#)]);
        assert!(e.contains("groups[0].depends_on: a -> a"), "{e}");
        let e = error_of(&[
            ("a", r#"{"b": "started"}"#),
            ("b", r#"{"c": "started"}"#),
            ("c", r#"{"a": "started"}"#),
        ]);
        assert!(e.contains("groups[0].depends_on: a -> b -> c -> a"), "{e}");
    }

    #[test]
    fn on_dependency_restart_takes_its_three_values() {
        let json = r#"[{"name": "a", "argv": ["x"], "on_dependency_restart": "restart"}]"#;
        let g = parse_groups(json).unwrap();
        assert_eq!(g[0].on_dependency_restart, OnDependencyRestart::Restart);
        let json = r#"[{"name": "a", "argv": ["x"], "on_dependency_restart": "again"}]"#;
        assert!(parse_groups(json).is_err());
        let json = r#"[{"name": "a", "argv": ["x"], "on_dependency_restart": "stop"}]"#;
        let g = parse_groups(json).unwrap();
        assert_eq!(g[0].on_dependency_restart, OnDependencyRestart::Stop);
    }
}
