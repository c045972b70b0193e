//! The settings of `configure_lifecycle_logging`: a minimum level, which events to log, and the
//! exporters, parsed strictly (unknown keys are errors, the message names the JSON path).

use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// Severity of a record; the order of the variants is the order of the levels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Everything.
    Debug,
    /// The ordinary course of events (the default).
    Info,
    /// A worker failed or broke the protocol; events were dropped.
    Warn,
    /// A group failed.
    Error,
}

/// What is logged: the `lifecycle_events` object of the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleEvents {
    /// `false` writes nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The lowest level written.
    #[serde(default = "info")]
    pub level: Level,
}

impl Default for LifecycleEvents {
    fn default() -> Self {
        LifecycleEvents {
            enabled: true,
            level: Level::Info,
        }
    }
}

fn yes() -> bool {
    true
}
fn info() -> Level {
    Level::Info
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exporter {
    /// JSON lines on the host's stdout.
    Stdout,
    /// JSON lines on the host's stderr.
    Stderr,
    /// Appends to the file at `path`.
    Jsonl {
        /// The file, created if missing.
        path: String,
    },
    /// Lines for people on stdout (or stderr), coloured on a terminal.
    Console {
        /// On the host's stderr instead of its stdout.
        stderr: bool,
    },
}

/// The settings of `configure_lifecycle_logging`: what is logged, and where it goes.
///
/// ```
/// use mpsupervisor::logging::{Exporter, LogSettings};
/// let settings = LogSettings { exporters: vec![Exporter::Stderr], ..Default::default() };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(into = "SettingsJson")]
pub struct LogSettings {
    /// What is logged.
    pub lifecycle_events: LifecycleEvents,
    /// Where records go, in order.
    pub exporters: Vec<Exporter>,
}

/// The settings as written in JSON: the shape the schema describes.
#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "LoggingSettings")]
struct SettingsJson {
    #[serde(default)]
    lifecycle_events: LifecycleEvents,
    /// Where records go, in order.
    #[serde(default)]
    exporters: Vec<ExporterJson>,
}

/// One exporter as written in JSON.
#[derive(Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum ExporterJson {
    /// JSON lines on the host's stdout.
    Stdout,
    /// JSON lines on the host's stderr.
    Stderr,
    /// JSON lines appended to a file.
    Jsonl { settings: JsonlSettings },
    /// Lines for people, coloured on a terminal.
    Console {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<ConsoleSettings>,
    },
}

impl From<LogSettings> for SettingsJson {
    fn from(s: LogSettings) -> Self {
        let exporters = s.exporters.into_iter().map(|e| match e {
            Exporter::Stdout => ExporterJson::Stdout,
            Exporter::Stderr => ExporterJson::Stderr,
            Exporter::Jsonl { path } => ExporterJson::Jsonl {
                settings: JsonlSettings { path },
            },
            Exporter::Console { stderr } => ExporterJson::Console {
                settings: Some(ConsoleSettings {
                    stream: if stderr {
                        ConsoleStream::Stderr
                    } else {
                        ConsoleStream::Stdout
                    },
                }),
            },
        });
        SettingsJson {
            lifecycle_events: s.lifecycle_events,
            exporters: exporters.collect(),
        }
    }
}

impl JsonSchema for LogSettings {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LoggingSettings".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        SettingsJson::json_schema(generator)
    }
}

/// A `T` that must be written as a JSON object: serde's derive would also build a struct from an
/// array of its fields in order, which a strict parser must not accept.
struct Object<T>(T);

impl<T: Default> Default for Object<T> {
    fn default() -> Self {
        Object(T::default())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        de.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

/// The settings as written; `settings` is kept raw so its errors can name their path per kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    lifecycle_events: Object<LifecycleEvents>,
    #[serde(default)]
    exporters: Vec<Object<RawExporter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExporter {
    kind: ExporterKind,
    /// `Some(Null)` for an explicit `null`, so only an absent key means "no settings".
    #[serde(default, deserialize_with = "present")]
    settings: Option<serde_json::Value>,
}

fn present<'de, D: Deserializer<'de>>(
    de: D,
) -> std::result::Result<Option<serde_json::Value>, D::Error> {
    crate::config::bounded_value(de).map(Some)
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExporterKind {
    Stdout,
    Stderr,
    Jsonl,
    Console,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConsoleSettings {
    /// Which of the host's streams the lines go to.
    #[serde(default = "stdout_stream")]
    stream: ConsoleStream,
}

#[derive(Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ConsoleStream {
    Stdout,
    Stderr,
}

fn stdout_stream() -> ConsoleStream {
    ConsoleStream::Stdout
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JsonlSettings {
    /// The file, opened for appending (created if missing).
    #[schemars(length(min = 1))]
    path: String,
}

/// Deserializes a `T` written as an object, naming the failing path under `prefix`.
fn deserialize_at<'de, T, D>(prefix: &str, de: D) -> Result<T>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
    D::Error: fmt::Display,
{
    serde_path_to_error::deserialize(de)
        .map(|Object(t)| t)
        .map_err(|e| {
            let path = e.path().to_string();
            let mut path = match path.as_str() {
                "." => prefix.to_string(),
                p if p.starts_with('[') => format!("{prefix}{p}"),
                p => format!("{prefix}.{p}"),
            };
            let inner = e.inner().to_string();
            if inner.starts_with(crate::config::TOO_DEEP) {
                // The path goes down to the level past the bound: name the key that holds it.
                if let Some(at) = path.find("].settings") {
                    path.truncate(at + "].settings".len());
                }
            }
            Error::InvalidConfig(format!("{path}: {inner}"))
        })
}

/// Parses and validates the settings JSON; each error names its JSON path, such as
/// `settings.exporters[1].kind`. Like the groups, the supervisor runs it on a thread with a large
/// stack.
pub fn parse_settings(json: &str) -> Result<LogSettings> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let raw: RawSettings = deserialize_at("settings", &mut *de)?;
    // Only whitespace may follow the object: `{} garbage` is not a setting.
    de.end()
        .map_err(|e| Error::InvalidConfig(format!("settings: after the object: {e}")))?;
    let mut exporters = Vec::with_capacity(raw.exporters.len());
    for (i, Object(e)) in raw.exporters.into_iter().enumerate() {
        let at = format!("settings.exporters[{i}].settings");
        exporters.push(match (e.kind, e.settings) {
            (ExporterKind::Stdout, None) => Exporter::Stdout,
            (ExporterKind::Stderr, None) => Exporter::Stderr,
            (ExporterKind::Stdout | ExporterKind::Stderr, Some(_)) => {
                return Err(Error::InvalidConfig(format!(
                    "{at}: stdout and stderr take no settings"
                )));
            }
            (ExporterKind::Console, None) => Exporter::Console { stderr: false },
            (ExporterKind::Console, Some(value)) => {
                let s: ConsoleSettings = deserialize_at(&at, value)?;
                Exporter::Console {
                    stderr: s.stream == ConsoleStream::Stderr,
                }
            }
            (ExporterKind::Jsonl, None) => {
                return Err(Error::InvalidConfig(format!(
                    "{at}: jsonl requires settings with a path"
                )));
            }
            (ExporterKind::Jsonl, Some(value)) => {
                let s: JsonlSettings = deserialize_at(&at, value)?;
                if s.path.is_empty() || s.path.contains('\0') {
                    return Err(Error::InvalidConfig(format!(
                        "{at}.path: must be a non-empty path without NUL"
                    )));
                }
                Exporter::Jsonl { path: s.path }
            }
        });
    }
    Ok(LogSettings {
        lifecycle_events: raw.lifecycle_events.0,
        exporters,
    })
}
