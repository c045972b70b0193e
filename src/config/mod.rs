//! Parsing and validation of the groups JSON given to `configure_process_groups`.
//!
//! Parsing is strict (unknown keys are errors) and all-or-nothing: a `Vec<GroupSpec>` comes back
//! only when every element is valid. Each error names its JSON path, such as `groups[1].argv`.

use std::collections::HashSet;
use std::ffi::CString;

use crate::error::{Error, Result};

mod bounded;
mod depends;
mod group;
mod identity;
mod limits;
mod listen;
mod output;
mod probes;
mod recycle;
mod restart_options;
mod signal;

pub use depends::{DependsCondition, OnDependencyRestart};
pub use group::{Bootstrap, ControlChannelMode, GroupSpec, KillMode, NotifyAccess, Readiness};
pub use limits::{CpuMax, Limits, MemorySize, PidsMax};
pub use signal::StopSignal;

pub use identity::{parse_umask, Id, Infinity, Limit, Rlimit, Rlimits};

pub use bounded::MAX_VALUE_DEPTH;
pub(crate) use bounded::{bounded_value, TOO_DEEP};

pub use listen::{Listen, ListenAddress};
pub use output::Output;
pub(crate) use output::MAX_TAIL_LINES;
pub use probes::Probe;
pub(crate) use probes::{Placeholders, Target};
pub use restart_options::{Restart, RestartOptions, RestartStrategy};

/// The most workers one group may have.
pub(crate) const MAX_WORKERS: u32 = 4096;
/// The longest duration any `*_ms` key accepts (one year), so deadlines never overflow.
pub(crate) const MAX_MS: u64 = 365 * 86_400_000;
/// Parses and validates the whole groups array. It needs a few KiB of stack per level of
/// nesting (up to `MAX_VALUE_DEPTH`): the supervisor runs it on a thread with a large stack.
pub fn parse_groups(json: &str) -> Result<Vec<GroupSpec>> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let groups: Vec<GroupSpec> = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let mut path = if path == "." {
            "groups".to_string()
        } else {
            format!("groups{path}")
        };
        let inner = e.inner().to_string();
        if inner.starts_with(TOO_DEEP) {
            // The path goes down to the level past the bound: name the key that holds it.
            if let Some(at) = path.find(".bootstrap") {
                path.truncate(at + ".bootstrap".len());
            }
        }
        Error::InvalidConfig(format!("{path}: {inner}"))
    })?;
    // Only whitespace may follow the array: `[] garbage` is not a configuration.
    de.end()
        .map_err(|e| Error::InvalidConfig(format!("groups: after the array: {e}")))?;
    let mut names = HashSet::new();
    for (i, g) in groups.iter().enumerate() {
        validate(i, g)?;
        if !names.insert(g.name.as_str()) {
            return Err(invalid(
                i,
                "name",
                format!("duplicate group name '{}'", g.name),
            ));
        }
    }
    depends::validate(&groups)?;
    Ok(groups)
}

fn invalid(index: usize, key: &str, why: String) -> Error {
    Error::InvalidConfig(format!("groups[{index}].{key}: {why}"))
}

fn no_nul(index: usize, key: &str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(invalid(index, key, "contains a NUL byte".into()));
    }
    Ok(())
}

fn validate(i: usize, g: &GroupSpec) -> Result<()> {
    if g.name.is_empty() {
        return Err(invalid(i, "name", "must not be empty".into()));
    }
    if g.name.contains('#') {
        return Err(invalid(
            i,
            "name",
            format!("'{}' must not contain '#'", g.name),
        ));
    }
    no_nul(i, "name", &g.name)?;
    if !(1..=MAX_WORKERS).contains(&g.workers) {
        return Err(invalid(
            i,
            "workers",
            format!("{} is out of range 1..={MAX_WORKERS}", g.workers),
        ));
    }
    if g.argv.is_empty() {
        return Err(invalid(i, "argv", "must not be empty".into()));
    }
    if g.argv[0].is_empty() {
        return Err(invalid(i, "argv[0]", "must not be empty".into()));
    }
    for (j, arg) in g.argv.iter().enumerate() {
        no_nul(i, &format!("argv[{j}]"), arg)?;
    }
    for (key, value) in &g.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(invalid(
                i,
                "env",
                format!("'{key}' is not a valid variable name"),
            ));
        }
        no_nul(i, &format!("env.{key}"), value)?;
    }
    if let Some(cwd) = &g.cwd {
        if cwd.is_empty() {
            return Err(invalid(i, "cwd", "must not be empty".into()));
        }
        no_nul(i, "cwd", cwd)?;
    }
    for (key, value) in [
        ("warmup_ms", g.warmup_ms),
        ("restart_delay_ms", g.restart_delay_ms),
        ("restart_delay_max_ms", g.restart_delay_max_ms),
        ("backoff_reset_ms", g.backoff_reset_ms),
        ("restart_window_ms", g.restart_window_ms),
        ("ready_timeout_ms", g.ready_timeout_ms),
        ("heartbeat_timeout_ms", g.heartbeat_timeout_ms),
        ("stop_timeout_ms", g.stop_timeout_ms),
    ] {
        if value > MAX_MS {
            return Err(invalid(i, key, format!("{value} is more than {MAX_MS}")));
        }
    }
    if g.output_tail_lines > MAX_TAIL_LINES {
        return Err(invalid(
            i,
            "output_tail_lines",
            format!("{} is more than {MAX_TAIL_LINES}", g.output_tail_lines),
        ));
    }
    listen::validate(&g.listen, g.reuse_port).map_err(|(key, why)| invalid(i, &key, why))?;
    identity::validate(g).map_err(|(key, why)| invalid(i, &key, why))?;
    recycle::validate(g).map_err(|(key, why)| invalid(i, key, why))?;
    probes::validate(g).map_err(|(key, why)| invalid(i, &key, why))?;
    Ok(())
}

/// `s` as a C string; callers have validated that it holds no NUL.
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s).expect("validated to hold no NUL")
}

#[cfg(test)]
mod tests;

/// The error of a one-group configuration holding `keys` (a JSON object's members), for the
/// tests of the keys' checks.
#[cfg(test)]
pub(crate) fn error_of(keys: &str) -> String {
    let json = format!(r#"[{{"name": "g", "argv": ["/bin/true"], {keys}}}]"#);
    parse_groups(&json).unwrap_err().to_string()
}
