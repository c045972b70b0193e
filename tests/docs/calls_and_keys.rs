//! Every function of the header, every result, every group and logging key has its place.

use super::*;

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
    same_keys("group keys", "parser", &table, &accepted_set);

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
    same_keys("logging keys", "parser", &table, &accepted);

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
