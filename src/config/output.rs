//! Where a worker's stdout and stderr go: the `"stdout"` and `"stderr"` keys.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// Where a worker's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "serde_json::Value", into = "OutputJson")]
pub enum Output {
    /// The host's own descriptor (`"inherit"`).
    Inherit,
    /// `/dev/null` (`"null"`).
    Null,
    /// A file the worker writes itself (`{"file": PATH, "append": BOOL}`); `append: false`
    /// truncates it at each spawn.
    File {
        /// The file.
        path: String,
        /// Append to it (`false`: truncate it at each spawn).
        append: bool,
    },
    /// A pipe read by the supervisor: lines become `worker.output` log records.
    Capture,
    /// A pipe read by the supervisor, written to a file that rotates at `max_bytes`, keeping
    /// `keep` older files (`PATH.1` ... `PATH.keep`).
    Rotate {
        /// The file.
        path: String,
        /// The size at which it rotates.
        max_bytes: u64,
        /// How many older files are kept (0 to 100).
        keep: u32,
    },
}

/// An output as it is written in JSON: the shape the schema describes.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
enum OutputJson {
    Named(OutputName),
    File(FileOutput),
    Rotate(RotateOutput),
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum OutputName {
    /// The host's own descriptor.
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe read by the supervisor: lines become `worker.output` log records and the
    /// worker's `stderr_tail`.
    Capture,
}

/// A file the worker writes itself.
#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FileOutput {
    #[schemars(length(min = 1))]
    file: String,
    /// `false` truncates the file at each spawn.
    #[serde(default = "yes")]
    append: bool,
}

/// A file written by the supervisor that rotates when it reaches `max_bytes`, keeping `keep`
/// older files (`PATH.1` ... `PATH.keep`). Only a regular file is rotated.
#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RotateOutput {
    #[schemars(length(min = 1))]
    file: String,
    #[schemars(range(min = 1))]
    max_bytes: u64,
    #[serde(default = "three")]
    #[schemars(range(max = MAX_KEEP))]
    keep: u32,
}

fn yes() -> bool {
    true
}
fn three() -> u32 {
    3
}

impl From<Output> for OutputJson {
    fn from(o: Output) -> Self {
        match o {
            Output::Inherit => OutputJson::Named(OutputName::Inherit),
            Output::Null => OutputJson::Named(OutputName::Null),
            Output::Capture => OutputJson::Named(OutputName::Capture),
            Output::File { path, append } => OutputJson::File(FileOutput { file: path, append }),
            Output::Rotate {
                path,
                max_bytes,
                keep,
            } => OutputJson::Rotate(RotateOutput {
                file: path,
                max_bytes,
                keep,
            }),
        }
    }
}

impl JsonSchema for Output {
    fn schema_name() -> Cow<'static, str> {
        "Output".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        OutputJson::json_schema(generator)
    }
}

impl Output {
    /// Whether the supervisor reads this stream through a pipe.
    pub fn captured(&self) -> bool {
        matches!(self, Output::Capture | Output::Rotate { .. })
    }
}

/// The most older files a rotating output keeps.
pub(crate) const MAX_KEEP: u32 = 100;
/// The most lines of each stream kept per worker.
pub(crate) const MAX_TAIL_LINES: u32 = 10_000;

impl TryFrom<serde_json::Value> for Output {
    type Error = String;

    fn try_from(value: serde_json::Value) -> std::result::Result<Self, String> {
        const EXPECTED: &str = r#"expected "inherit", "null", "capture", {"file": PATH, "append": BOOL} or {"file": PATH, "max_bytes": N, "keep": K}"#;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileOutput {
            file: String,
            append: Option<bool>,
            max_bytes: Option<u64>,
            keep: Option<u32>,
        }
        match value {
            serde_json::Value::String(s) if s == "inherit" => Ok(Output::Inherit),
            serde_json::Value::String(s) if s == "null" => Ok(Output::Null),
            serde_json::Value::String(s) if s == "capture" => Ok(Output::Capture),
            obj @ serde_json::Value::Object(_) => {
                let f: FileOutput =
                    serde_json::from_value(obj).map_err(|e| format!("{EXPECTED}: {e}"))?;
                if f.file.is_empty() || f.file.contains('\0') {
                    return Err("file must be a non-empty path without NUL".into());
                }
                match (f.max_bytes, f.keep, f.append) {
                    (None, None, append) => Ok(Output::File {
                        path: f.file,
                        append: append.unwrap_or(true),
                    }),
                    (Some(_), _, Some(_)) | (None, Some(_), _) => {
                        Err("a rotating file takes max_bytes and keep (and no append)".into())
                    }
                    (Some(max_bytes), keep, None) => {
                        let keep = keep.unwrap_or(3);
                        if max_bytes == 0 {
                            return Err("max_bytes must be at least 1".into());
                        }
                        if keep > MAX_KEEP {
                            return Err(format!("keep {keep} is more than {MAX_KEEP}"));
                        }
                        Ok(Output::Rotate {
                            path: f.file,
                            max_bytes,
                            keep,
                        })
                    }
                }
            }
            other => Err(format!("{EXPECTED}, got {other}")),
        }
    }
}
