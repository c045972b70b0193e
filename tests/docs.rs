//! The reference documentation in docs/ stays current: every function of the header, every result,
//! every key the parsers accept, every event kind and field, every snapshot field, every protocol
//! line and every `MPSUP_*` variable is documented, and every relative Markdown link stays inside
//! the repository.
//!
//! The lists come from the library itself wherever it can say them (the parsers name the keys they
//! accept when they reject an unknown one; `mpsup_result_name` names every result; a real
//! supervisor gives a real snapshot), and otherwise from the source (the header, `EventKind`).

mod common;

use common::{secs, Views};

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

use mpsupervisor::ffi::mpsup_result_name;
use mpsupervisor::Supervisor;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn reference() -> String {
    read("docs/reference.md")
}

/// Every page under docs/, concatenated.
fn all_docs() -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap());
            text.push('\n');
        }
    }
    text
}

/// The lines of `doc` from the heading `heading` (exact line) to the next heading of the same or
/// a higher level.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading `{heading}` in the docs"))
        + 1;
    let body = &doc[start + heading.len()..];
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        offset += line.len();
    }
    &doc[start..start + heading.len() + offset]
}

/// The keys named in the first column of the Markdown tables of `text` ("| `key` | ...").
fn table_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect()
}

/// The names serde lists in "expected one of `a`, `b`" (or "expected `a` or `b`", "expected `a`").
fn expected_names(message: &str) -> Vec<String> {
    let tail = message
        .split_once("expected one of ")
        .or_else(|| message.split_once("expected "))
        .unwrap_or_else(|| panic!("no list of expected names in: {message}"))
        .1;
    let mut names = Vec::new();
    let mut rest = tail;
    // Names are in backticks, separated by ", "; the list ends at the first other text.
    while let Some(after) = rest.strip_prefix('`') {
        let (name, more) = after.split_once('`').expect("a closing backtick");
        names.push(name.to_string());
        match more
            .strip_prefix(", ")
            .or_else(|| more.strip_prefix(" or "))
        {
            Some(next) => rest = next,
            None => break,
        }
    }
    assert!(!names.is_empty(), "no names in: {message}");
    names
}

fn config_error(groups_json: &str) -> String {
    let sup = Supervisor::new().unwrap();
    match sup.configure_json(groups_json) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("accepted: {groups_json}"),
    }
}

fn logging_error(settings_json: &str) -> String {
    let sup = Supervisor::new().unwrap();
    match sup.configure_logging_json(settings_json) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("accepted: {settings_json}"),
    }
}

/// The functions the header declares.
fn header_functions() -> BTreeSet<String> {
    let header = read("include/mpsupervisor.h");
    let mut out = BTreeSet::new();
    for (i, _) in header.match_indices("mpsup_") {
        let name: String = header[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if header[i + name.len()..].starts_with('(') && !header[..i].ends_with('`') {
            out.insert(name);
        }
    }
    assert!(out.len() >= 20, "too few functions found: {out:?}");
    out
}

#[test]
fn every_function_of_the_header_has_a_section() {
    let doc = section(&reference(), "## Functions").to_string();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(String::from)
        .collect();
    let declared = header_functions();
    let missing: Vec<_> = declared.difference(&documented).collect();
    assert!(missing.is_empty(), "undocumented functions: {missing:?}");
    let stale: Vec<_> = documented.difference(&declared).collect();
    assert!(
        stale.is_empty(),
        "documented but not in the header: {stale:?}"
    );
    for name in &declared {
        let body = section(&doc, &format!("### `{name}`"));
        assert!(
            body.contains(&format!("{name}(")),
            "the section of {name} does not give its signature"
        );
    }
}

#[test]
fn every_result_is_in_the_results_table() {
    let table = table_keys(section(&reference(), "## Results"));
    let mut names = Vec::new();
    for value in 0..1024u32 {
        // SAFETY: the library returns a static NUL-terminated string for any value.
        let name = unsafe { CStr::from_ptr(mpsup_result_name(value)) }
            .to_str()
            .unwrap()
            .to_string();
        if name != "MPSUP_ERR_UNKNOWN" {
            names.push((value, name));
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    let reference = reference();
    for (value, name) in &names {
        assert!(
            reference.contains(&format!("| {value} | `{name}` |")),
            "{name} ({value}) is not a row of the results table"
        );
    }
    // The header's enumerators are the same set.
    let header = read("include/mpsupervisor.h");
    for (_, name) in &names {
        assert!(
            header.contains(&format!("  {name} = ")),
            "{name} not in the header"
        );
    }
    let named: BTreeSet<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
    for key in &table {
        assert!(named.contains(key.as_str()), "{key} is not a result");
    }
}

#[test]
fn every_group_key_the_parser_accepts_is_a_row_and_no_row_is_stale() {
    let accepted = expected_names(&config_error(
        r#"[{"name":"a","argv":["x"],"no_such_key":1}]"#,
    ));
    assert!(accepted.contains(&"argv".to_string()), "{accepted:?}");
    let doc = reference();
    let table = table_keys(section(&doc, "## Group configuration"));
    let accepted_set: BTreeSet<String> = accepted.iter().cloned().collect();
    let missing: Vec<_> = accepted_set.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "group keys missing from the table: {missing:?}"
    );
    let stale: Vec<_> = table.difference(&accepted_set).collect();
    assert!(
        stale.is_empty(),
        "rows for keys the parser rejects: {stale:?}"
    );

    // The values of the keys that take a name are listed in their row.
    for key in ["readiness", "control_channel", "restart"] {
        let values = expected_names(&config_error(&format!(
            r#"[{{"name":"a","argv":["x"],"{key}":"no-such-value"}}]"#
        )));
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap();
        for v in values {
            assert!(
                row.contains(&format!("\"{v}\"")),
                "{key}: value {v} missing: {row}"
            );
        }
    }
    let signals = config_error(r#"[{"name":"a","argv":["x"],"stop_signal":"SIGNOPE"}]"#);
    let row = doc
        .lines()
        .find(|l| l.starts_with("| `stop_signal` |"))
        .unwrap();
    let list = signals.split_once("expected one of ").unwrap().1;
    for s in list
        .split(", ")
        .map(|s| s.split_whitespace().next().unwrap())
    {
        assert!(row.contains(&format!("`{s}`")), "signal {s} missing: {row}");
    }
}

#[test]
fn every_logging_key_kind_and_level_is_documented() {
    let doc = reference();
    let table = table_keys(section(&doc, "## Lifecycle logging settings"));
    let groups = [
        ("", r#"{"no_such_key": 1}"#),
        (
            "lifecycle_events.",
            r#"{"lifecycle_events": {"no_such_key": 1}}"#,
        ),
        (
            "exporters[].",
            r#"{"exporters": [{"kind": "stdout", "no_such_key": 1}]}"#,
        ),
        (
            "exporters[].settings.",
            r#"{"exporters": [{"kind": "jsonl", "settings": {"path": "/x", "no_such_key": 1}}]}"#,
        ),
        (
            "exporters[].settings.",
            r#"{"exporters": [{"kind": "console", "settings": {"no_such_key": 1}}]}"#,
        ),
    ];
    let mut accepted = BTreeSet::new();
    for (prefix, json) in groups {
        for key in expected_names(&logging_error(json)) {
            accepted.insert(format!("{prefix}{key}"));
        }
    }
    let missing: Vec<_> = accepted.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "logging keys missing from the table: {missing:?}"
    );
    let stale: Vec<_> = table.difference(&accepted).collect();
    assert!(
        stale.is_empty(),
        "rows for keys the parser rejects: {stale:?}"
    );

    let kinds = expected_names(&logging_error(
        r#"{"exporters": [{"kind": "no-such-kind"}]}"#,
    ));
    let levels = expected_names(&logging_error(
        r#"{"lifecycle_events": {"level": "no-such-level"}}"#,
    ));
    for (key, values) in [
        ("exporters[].kind", kinds),
        ("lifecycle_events.level", levels),
    ] {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap();
        for v in values {
            assert!(
                row.contains(&format!("\"{v}\"")),
                "{key}: {v} missing: {row}"
            );
        }
    }
}

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

/// Both ways: what `table` names and what `schema` has are the same keys.
fn same_keys(what: &str, table: &BTreeSet<String>, schema: &BTreeSet<String>) {
    let missing: Vec<_> = schema.difference(table).collect();
    assert!(
        missing.is_empty(),
        "{what}: keys of the schema missing from the docs: {missing:?}"
    );
    let stale: Vec<_> = table.difference(schema).collect();
    assert!(
        stale.is_empty(),
        "{what}: rows the schema does not have: {stale:?}"
    );
}

#[test]
fn the_reference_tables_and_the_schemas_name_the_same_keys() {
    let doc = reference();
    let groups = schema("groups");
    same_keys(
        "groups",
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
        &table_keys(section(&doc, "## Lifecycle logging settings")),
        &logging_keys,
    );
    same_keys(
        "snapshot",
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

/// Every string literal in src/ that starts with an `MPSUP_` name (set in workers or read from
/// the environment).
fn mpsup_variables() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("\"MPSUP_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if name.len() > "MPSUP_".len() && !name.starts_with("MPSUP_ERR") {
                        out.insert(name);
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&root().join("src"), &mut out);
    out
}

#[test]
fn every_mpsup_environment_variable_is_documented() {
    let vars = mpsup_variables();
    for expected in ["MPSUP_GROUP", "MPSUP_WORKER_ID", "MPSUP_CONTROL_FD"] {
        assert!(
            vars.contains(expected),
            "{expected} not found in src: {vars:?}"
        );
    }
    let docs = all_docs();
    for var in vars {
        assert!(docs.contains(&format!("`{var}")), "{var} is not documented");
    }
}

/// The protocol lines of src/protocol.rs, the one list the supervisor and the worker helpers
/// use: what a worker sends (`from_worker`) and what it is sent (`to_worker`, whose
/// `BOOTSTRAP ` is a prefix).
fn protocol_lines() -> (BTreeSet<String>, BTreeSet<String>) {
    let source = read("src/protocol.rs");
    let section = |name: &str| -> &str {
        let start = source
            .find(&format!("pub mod {name} {{"))
            .unwrap_or_else(|| panic!("no module {name} in src/protocol.rs"));
        let rest = &source[start..];
        &rest[..rest.find("\n}").unwrap_or(rest.len())]
    };
    let literal = |text: &str| -> BTreeSet<String> {
        text.match_indices("b\"")
            .filter_map(|(i, _)| {
                let rest = &text[i + 2..];
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == ' ')
                    .collect();
                (rest[word.len()..].starts_with('"') && !word.trim().is_empty())
                    .then(|| word.trim().to_string())
            })
            .collect()
    };
    (
        literal(section("from_worker")),
        literal(section("to_worker")),
    )
}

#[test]
fn every_protocol_line_is_in_the_protocol_table() {
    let (sent, received) = protocol_lines();
    assert!(
        sent.contains("READY") && sent.contains("HEARTBEAT"),
        "{sent:?}"
    );
    assert!(
        received.contains("STOP DRAIN") && received.contains("BOOTSTRAP"),
        "{received:?}"
    );
    let doc = read("docs/worker-protocol.md");
    let table = section(&doc, "## The control socket (descriptor 3)");
    for line in &sent {
        assert!(
            table.contains(&format!("| worker → supervisor | `{line}")),
            "worker line {line} is not in the protocol table"
        );
    }
    for line in &received {
        assert!(
            table.contains(&format!("| supervisor → worker | `{line}")),
            "supervisor line {line} is not in the protocol table"
        );
    }
}

/// Every Markdown file of the repository (not build output, not hidden directories).
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let skip = name.starts_with('.')
                    || ["target", "build", "node_modules", "__pycache__"].contains(&name.as_str())
                    || name.ends_with(".egg-info");
                if !skip {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out
}

/// The targets of the inline links `[text](target)` and reference definitions `[x]: target` of
/// `text`, outside code fences and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Drop code spans.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let trimmed = plain.trim_start();
        if trimmed.starts_with('[') {
            if let Some((_, target)) = trimmed.split_once("]: ") {
                out.push(target.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push(
                after[..end]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            );
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn the_link_scanner_finds_links_and_skips_code() {
    let text = "a [b](c.md) and [d](e/f.md#x \"t\")\n`[no](code.md)`\n```\n[no](fence.md)\n```\n[r]: g.md\n";
    assert_eq!(link_targets(text), vec!["c.md", "e/f.md#x", "g.md"]);
}

#[test]
fn every_relative_markdown_link_resolves_inside_the_repository() {
    let root = root().canonicalize().unwrap();
    let files = markdown_files();
    assert!(files.iter().any(|f| f.ends_with("README.md")));
    assert!(files.iter().any(|f| f.ends_with("docs/reference.md")));
    let mut bad = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&text) {
            if target.is_empty()
                || target.starts_with('#')
                || target.starts_with("https://")
                || target.starts_with("http://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = file.parent().unwrap().join(path);
            match resolved.canonicalize() {
                Ok(p) if p.starts_with(&root) => {}
                Ok(p) => bad.push(format!(
                    "{}: {target} leaves the repository ({})",
                    file.display(),
                    p.display()
                )),
                Err(e) => bad.push(format!("{}: {target}: {e}", file.display())),
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}
