//! The restart policy of a group (`"restart"`) and the options of a rolling restart (the
//! `options_json` of `restart_groups`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::MAX_MS;

/// Which workers of a group a failure replaces (Erlang/OTP's supervisor strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartStrategy {
    /// Only the worker that ended is respawned.
    #[default]
    OneForOne,
    /// When a worker that ended is to be respawned, every other running worker of the group is
    /// stopped gracefully and respawned with it (for workers that share state).
    OneForAll,
}

/// When a worker that ended unasked is respawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum Restart {
    /// Never: the worker fails.
    #[default]
    #[serde(rename = "never")]
    Never,
    /// After a non-zero exit, a signal, or a timeout.
    #[serde(rename = "on-failure")]
    OnFailure,
    /// Also after exit 0.
    #[serde(rename = "always")]
    Always,
}

/// How a rolling restart replaces a group's workers (Kubernetes' `maxSurge` and
/// `maxUnavailable`).
///
/// ```
/// use mpsupervisor::config::RestartOptions;
/// let options = RestartOptions { max_surge: 2, ..Default::default() };
/// assert_eq!(options.ready_timeout_ms, 30_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "RestartOptions",
    description = "How a rolling restart replaces a group's workers."
)]
pub struct RestartOptions {
    /// How many new workers may run beyond the target while old ones are replaced.
    #[serde(default = "one")]
    pub max_surge: u32,
    /// How many workers may be missing from the target (an old one stopped before its
    /// replacement is ready).
    #[serde(default)]
    pub max_unavailable: u32,
    /// A new worker not ready this long (ms) fails the rollout, which halts; 0: off.
    #[serde(default = "thirty_seconds")]
    #[schemars(range(max = MAX_MS))]
    pub ready_timeout_ms: u64,
}

fn one() -> u32 {
    1
}
fn thirty_seconds() -> u64 {
    30_000
}

impl Default for RestartOptions {
    fn default() -> Self {
        RestartOptions {
            max_surge: one(),
            max_unavailable: 0,
            ready_timeout_ms: thirty_seconds(),
        }
    }
}

impl RestartOptions {
    /// Checks the bounds serde cannot.
    pub(crate) fn validate(self) -> Result<RestartOptions> {
        if self.ready_timeout_ms > MAX_MS {
            return Err(Error::InvalidArgument(format!(
                "options_json.ready_timeout_ms: {} is more than {MAX_MS}",
                self.ready_timeout_ms
            )));
        }
        Ok(self)
    }

    /// Parses the `options_json` of `restart_groups`.
    pub(crate) fn parse(json: &str) -> Result<RestartOptions> {
        // The path names the key a bad value was given for.
        let de = &mut serde_json::Deserializer::from_str(json);
        let parsed: RestartOptions = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!(".{path}")
            };
            Error::InvalidArgument(format!("options_json{at}: {}", e.inner()))
        })?;
        de.end()
            .map_err(|e| Error::InvalidArgument(format!("options_json: after the object: {e}")))?;
        parsed.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys left out of `options_json` take the documented defaults (`max_surge` 1,
    /// `max_unavailable` 0, `ready_timeout_ms` 30 s), the same as `RestartOptions::default()`.
    #[test]
    fn left_out_options_take_their_documented_defaults() {
        let parsed = RestartOptions::parse("{}").unwrap();
        assert_eq!(
            (
                parsed.max_surge,
                parsed.max_unavailable,
                parsed.ready_timeout_ms
            ),
            (1, 0, 30_000)
        );
        assert_eq!(parsed, RestartOptions::default());
        let only_surge = RestartOptions::parse(r#"{"max_surge": 3}"#).unwrap();
        assert_eq!(only_surge.ready_timeout_ms, 30_000);
    }
}
