//! The reference tables, the event kinds, a real snapshot and the JSON examples follow the
//! schemas and the library.

use super::*;

/// The schema `which` that the library generates (and `schema/` holds).
fn schema(which: &str) -> serde_json::Value {
    serde_json::from_str(&mpsupervisor::schema::schema_json(which).unwrap()).unwrap()
}

/// The property names of the definition `def` of `schema`.
fn properties(schema: &serde_json::Value, def: &str) -> BTreeSet<String> {
    schema["$defs"][def]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no definition {def} with properties"))
        .keys()
        .cloned()
        .collect()
}

/// Every event kind of the events schema, each with its field names (the envelope left out).
fn event_kinds() -> Vec<(String, Vec<String>)> {
    let events = schema("events");
    let variants = events["$defs"]["Event"]["oneOf"].as_array().unwrap();
    let kinds: Vec<(String, Vec<String>)> = variants
        .iter()
        .map(|v| {
            let props = v["properties"].as_object().unwrap();
            let kind = props["kind"]["const"].as_str().unwrap().to_string();
            let fields = props.keys().filter(|k| *k != "kind").cloned().collect();
            (kind, fields)
        })
        .collect();
    assert!(kinds.len() >= 10, "too few event kinds: {kinds:?}");
    kinds
}

#[test]
fn the_reference_tables_and_the_schemas_name_the_same_keys() {
    let doc = reference();
    let groups = schema("groups");
    same_keys(
        "groups",
        "schema",
        &table_keys(section(&doc, "## Group configuration")),
        &properties(&groups, "GroupSpec"),
    );
    let logging = schema("logging");
    let mut logging_keys: BTreeSet<String> = logging["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for key in properties(&logging, "LifecycleEvents") {
        logging_keys.insert(format!("lifecycle_events.{key}"));
    }
    for exporter in logging["$defs"]["ExporterJson"]["oneOf"]
        .as_array()
        .unwrap()
    {
        for key in exporter["properties"].as_object().unwrap().keys() {
            logging_keys.insert(format!("exporters[].{key}"));
        }
    }
    for def in ["ConsoleSettings", "JsonlSettings"] {
        for key in properties(&logging, def) {
            logging_keys.insert(format!("exporters[].settings.{key}"));
        }
    }
    same_keys(
        "logging",
        "schema",
        &table_keys(section(&doc, "## Lifecycle logging settings")),
        &logging_keys,
    );
    same_keys(
        "snapshot",
        "schema",
        &table_keys(section(&doc, "## Snapshot")),
        &properties(&schema("snapshot"), "WorkerSnapshot"),
    );
    let status = schema("status");
    let mut status_keys = properties(&status, "GroupStatus");
    for key in properties(&status, "Guarantees") {
        status_keys.insert(format!("guarantees.{key}"));
    }
    for key in status["properties"].as_object().unwrap().keys() {
        if key != "groups" && key != "guarantees" {
            status_keys.insert(key.clone());
        }
    }
    same_keys(
        "status",
        "schema",
        &table_keys(section(&doc, "## Status")),
        &status_keys,
    );
    let restart = section(&doc, "### `mpsup_restart_groups`");
    for key in schema("restart-options")["properties"]
        .as_object()
        .unwrap()
        .keys()
    {
        assert!(
            restart.contains(&format!("`{key}`")),
            "restart option {key} undocumented"
        );
    }
}

#[test]
fn every_event_kind_has_a_section_naming_each_of_its_fields() {
    let doc = reference();
    let events = section(&doc, "## Events");
    for (kind, fields) in event_kinds() {
        let body = section(events, &format!("### `{kind}`"));
        for field in fields {
            assert!(
                body.contains(&format!("`{field}`")),
                "the section of {kind} does not name its field `{field}`"
            );
        }
    }
    let documented = events
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(String::from)
        .collect::<BTreeSet<_>>();
    let kinds: BTreeSet<String> = event_kinds().into_iter().map(|(k, _)| k).collect();
    let stale: Vec<_> = documented.difference(&kinds).collect();
    assert!(
        stale.is_empty(),
        "documented kinds that do not exist: {stale:?}"
    );
}

#[test]
fn every_field_of_a_real_snapshot_is_a_row_and_events_seen_are_documented() {
    let sup = common::supervisor(&[common::sh_group("g", 1, common::POLITE)]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(30.0)).unwrap());
    let snapshot = sup.snapshot_value();
    let doc = reference();
    let table = table_keys(section(&doc, "## Snapshot"));
    let entry = snapshot["g"][0].as_object().expect("one worker entry");
    for key in entry.keys() {
        assert!(table.contains(key), "snapshot field `{key}` is not a row");
    }
    for key in &table {
        assert!(
            entry.contains_key(key),
            "row `{key}` is not a snapshot field"
        );
    }
    sup.stop_groups(secs(30.0), true).unwrap();
    // Every event of a real run has the documented envelope and a documented kind and fields.
    let events = section(&doc, "## Events");
    for event in common::drain_all(&sup) {
        let kind = event["kind"].as_str().unwrap();
        let body = section(events, &format!("### `{kind}`"));
        for key in event.as_object().unwrap().keys() {
            if !["seq", "ts_ms", "kind"].contains(&key.as_str()) {
                assert!(body.contains(&format!("`{key}`")), "{kind}: field {key}");
            }
        }
    }
    assert!(events.contains("`seq`") && events.contains("`ts_ms`") && events.contains("`kind`"));
}

/// The ```json blocks of `text`.
fn json_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match current.as_mut() {
            None if line.trim_start().starts_with("```json") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => out.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    out
}

#[test]
fn the_json_examples_of_the_reference_are_what_the_library_accepts_and_gives() {
    let doc = reference();
    let groups = json_blocks(section(&doc, "## Group configuration"));
    assert_eq!(groups.len(), 1);
    Supervisor::new()
        .unwrap()
        .configure_json(&groups[0])
        .unwrap_or_else(|e| panic!("the group example is rejected: {e}"));
    let settings = json_blocks(section(&doc, "## Lifecycle logging settings"));
    assert_eq!(settings.len(), 1);
    // Checked against the schema only: configuring it would open /var/log/sup.jsonl.
    let example: serde_json::Value = serde_json::from_str(&settings[0]).unwrap();
    let errors: Vec<String> = jsonschema::validator_for(&schema("logging"))
        .unwrap()
        .iter_errors(&example)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "the logging example is rejected: {errors:?}"
    );
    let snapshot = json_blocks(section(&doc, "## Snapshot"));
    assert_eq!(snapshot.len(), 1);
    let example: serde_json::Value = serde_json::from_str(&snapshot[0]).unwrap();
    let keys: BTreeSet<String> = example["ingest"][0]
        .as_object()
        .expect("an entry")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, table_keys(section(&doc, "## Snapshot")));
}
