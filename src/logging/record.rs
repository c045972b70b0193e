//! The JSON log records: one per lifecycle event, one per captured output line, and the count
//! of dropped records.

use std::sync::Arc;

use serde::Serialize;

use crate::events::Event;

use super::settings::Level;

/// The fixed level of an event kind: failures `warn`, `group_failed` `error`, the rest `info`.
pub fn level_of(kind: &str) -> Level {
    match kind {
        "worker_failed" | "worker_protocol_error" | "stop_event_unavailable" | "events_dropped" => {
            Level::Warn
        }
        "group_failed" => Level::Error,
        _ => Level::Info,
    }
}

/// One log line. A struct rather than a `json!` map so the keys keep this order.
#[derive(Serialize)]
pub(super) struct Record<'a> {
    pub(super) ts_ms: u64,
    pub(super) level: Level,
    pub(super) message: &'a str,
    pub(super) fields: &'a serde_json::Map<String, serde_json::Value>,
}

/// The log line (without newline) for `event`, or `None` when its level is below `min_level`.
#[cfg(test)]
pub fn record_for(event: &Event, min_level: Level) -> Option<String> {
    let (kind, level, fields) = fields_of(event, min_level)?;
    serde_json::to_string(&Record {
        ts_ms: event.ts_ms,
        level,
        message: &format!("bootstrap.{kind}"),
        fields: &fields,
    })
    .ok()
}

/// The kind, level and fields of `event`'s record, or `None` when its level is below
/// `min_level`.
pub(super) fn fields_of(
    event: &Event,
    min_level: Level,
) -> Option<(String, Level, serde_json::Map<String, serde_json::Value>)> {
    // The event serializes as one flat object; seq, ts_ms and kind go to the envelope (or away).
    // Taking the kind from serde keeps its name from drifting away from `events/kinds.rs`.
    let serde_json::Value::Object(mut fields) = serde_json::to_value(event).ok()? else {
        return None;
    };
    let kind = fields.remove("kind")?;
    let kind = kind.as_str()?;
    let level = level_of(kind);
    if level < min_level {
        return None;
    }
    let kind = kind.to_string();
    fields.remove("seq");
    fields.remove("ts_ms");
    Some((kind, level, fields))
}

/// A line a worker wrote to a captured stream.
#[derive(Debug)]
pub struct OutputLine {
    pub ts_ms: u64,
    pub group: Arc<str>,
    pub worker_id: Arc<str>,
    pub pid: i32,
    pub stream: &'static str,
    pub line: String,
}

pub(super) fn output_record(o: &OutputLine) -> String {
    let mut fields = serde_json::Map::new();
    fields.insert("group_name".into(), (*o.group).into());
    fields.insert("line".into(), o.line.as_str().into());
    fields.insert("pid".into(), o.pid.into());
    fields.insert("stream".into(), o.stream.into());
    fields.insert("worker_id".into(), (*o.worker_id).into());
    serde_json::to_string(&Record {
        ts_ms: o.ts_ms,
        level: Level::Info,
        message: "worker.output",
        fields: &fields,
    })
    .expect("a map of strings serializes")
}

pub(super) fn dropped_record(count: u64) -> String {
    let mut fields = serde_json::Map::new();
    fields.insert("count".into(), count.into());
    serde_json::to_string(&Record {
        ts_ms: crate::clock::now_ms(),
        level: Level::Warn,
        message: "bootstrap.log_records_dropped",
        fields: &fields,
    })
    .expect("a map of a number serializes")
}
