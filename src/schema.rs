//! The JSON Schemas of the configuration and of what comes out, generated from the Rust types
//! (the single description of every key and field). The same text is committed under `schema/`
//! and checked by `tests/schema.rs`, and `mpsup_schema_json` returns it.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;

use crate::config::{GroupSpec, RestartOptions};
use crate::events::Event;
use crate::logging::LogSettings;
use crate::snapshot::Snapshot;
use crate::status::Status;

/// The names of the schemas, each the stem of its file `schema/<name>.schema.json`.
pub const NAMES: &[&str] = &[
    "groups",
    "restart-options",
    "logging",
    "snapshot",
    "status",
    "events",
];

/// The schema `which` as pretty JSON text ending in a newline; None for an unknown name.
///
/// ```
/// let groups = mpsupervisor::schema::schema_json("groups").unwrap();
/// assert!(groups.contains("\"warmup_ms\""));
/// ```
pub fn schema_json(which: &str) -> Option<String> {
    let (title, description, schema) = match which {
        "groups" => (
            "Groups",
            "The process groups of a supervisor: what `configure_process_groups` takes.",
            input::<Vec<GroupSpec>>(),
        ),
        "restart-options" => (
            "RestartOptions",
            "The options of a rolling restart: the `options_json` of `restart_groups`.",
            input::<RestartOptions>(),
        ),
        "logging" => (
            "LoggingSettings",
            "What `configure_lifecycle_logging` takes.",
            input::<LogSettings>(),
        ),
        "snapshot" => (
            "Snapshot",
            "What `snapshot_json` returns: group name to its workers in index order.",
            output::<Snapshot>(),
        ),
        "status" => ("Status", "What `status_json` returns.", output::<Status>()),
        "events" => (
            "Events",
            "What `drain_events_json` returns: lifecycle events, oldest first.",
            output::<Vec<Event>>(),
        ),
        _ => return None,
    };
    let mut schema = schema;
    schema.insert("title".into(), title.into());
    schema.insert("description".into(), description.into());
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    Some(text)
}

/// The draft 2020-12 schema of what the library takes as a `T`: keys with a default may be left
/// out.
fn input<T: JsonSchema>() -> schemars::Schema {
    SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// The draft 2020-12 schema of what the library writes as a `T`: every key it always writes is
/// required (null where it has no value).
fn output<T: JsonSchema>() -> schemars::Schema {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
}
