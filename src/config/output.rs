//! Where a worker's stdout and stderr go: the `"stdout"` and `"stderr"` keys.

use serde::Deserialize;

/// Where a worker's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum Output {
    Inherit,
    Null,
    File {
        path: String,
        append: bool,
    },
    /// A pipe read by the supervisor: lines become `worker.output` log records.
    Capture,
    /// A pipe read by the supervisor, written to a file that rotates at `max_bytes`, keeping
    /// `keep` older files (`PATH.1` ... `PATH.keep`).
    Rotate {
        path: String,
        max_bytes: u64,
        keep: u32,
    },
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
