//! Parsing and validation of the groups JSON given to `configure_process_groups`.
//!
//! Parsing is strict (unknown keys are errors) and all-or-nothing: a `Vec<GroupSpec>` comes back
//! only when every element is valid. Each error names its JSON path, such as `groups[1].argv`.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::time::Duration;

use serde::Deserialize;

use crate::core::policy::{Restart, RestartSpec};
use crate::error::{Error, Result};

mod listen;
mod output;

pub use listen::{Listen, ListenAddress};
pub use output::Output;
pub(crate) use output::MAX_TAIL_LINES;

/// The most workers one group may have.
pub(crate) const MAX_WORKERS: u32 = 4096;
/// The longest duration any `*_ms` key accepts (one year), so deadlines never overflow.
pub(crate) const MAX_MS: u64 = 365 * 86_400_000;

/// How a worker proves it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// Ready once alive `warmup_ms` after spawn.
    Warmup,
    /// Ready once it sends `READY` on its control channel.
    Notify,
    /// Ready once it sends `READY=1` to `NOTIFY_SOCKET` (systemd's notify protocol).
    #[serde(rename = "sd_notify")]
    SdNotify,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Warmup => "warmup",
            Readiness::Notify => "notify",
            Readiness::SdNotify => "sd_notify",
        }
    }
}

/// Whether workers get a control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlChannelMode {
    /// A socket pair when one can be made, else the signal fallback.
    Auto,
    /// Always the signal fallback.
    Off,
}

/// Who gets a graceful stop's signal (systemd's `KillMode`). SIGKILL always goes to the whole
/// process group (and cgroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KillMode {
    /// The worker's whole process group.
    #[default]
    ProcessGroup,
    /// The worker's own process only: a master process (haproxy -Ws, postgres) stops its
    /// children itself, and may kill one that got the signal before it could handle it.
    Mixed,
}

/// Which processes may send sd_notify messages for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyAccess {
    /// Only the worker's own process.
    Main,
    /// Any process of the worker's process group.
    All,
}

/// A signal named in the configuration, such as `"SIGTERM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StopSignal(pub libc::c_int);

const SIGNALS: &[(&str, libc::c_int)] = &[
    ("SIGTERM", libc::SIGTERM),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGHUP", libc::SIGHUP),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGKILL", libc::SIGKILL),
    ("SIGALRM", libc::SIGALRM),
    ("SIGPWR", libc::SIGPWR),
    ("SIGWINCH", libc::SIGWINCH),
];

impl TryFrom<String> for StopSignal {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Self, String> {
        SIGNALS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, sig)| StopSignal(sig))
            .ok_or_else(|| {
                let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown signal '{name}', expected one of {}",
                    known.join(", ")
                )
            })
    }
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_warmup_ms() -> u64 {
    20
}
fn sigterm() -> StopSignal {
    StopSignal(libc::SIGTERM)
}

/// One element of the groups JSON array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    #[serde(default = "one")]
    pub workers: u32,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub inherit_env: bool,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default = "warmup")]
    pub readiness: Readiness,
    #[serde(default = "default_warmup_ms")]
    pub warmup_ms: u64,
    #[serde(default = "auto")]
    pub control_channel: ControlChannelMode,
    #[serde(default = "sigterm")]
    pub stop_signal: StopSignal,
    /// Who gets `stop_signal`.
    #[serde(default)]
    pub kill_mode: KillMode,
    #[serde(default = "inherit")]
    pub stdout: Output,
    #[serde(default = "inherit")]
    pub stderr: Output,
    #[serde(default)]
    pub restart: Restart,
    #[serde(default = "ms::<100>")]
    pub restart_delay_ms: u64,
    #[serde(default = "ms::<30_000>")]
    pub restart_delay_max_ms: u64,
    #[serde(default = "ms::<10_000>")]
    pub backoff_reset_ms: u64,
    #[serde(default = "five")]
    pub max_restarts: u32,
    #[serde(default = "ms::<60_000>")]
    pub restart_window_ms: u64,
    /// 0: off.
    #[serde(default)]
    pub ready_timeout_ms: u64,
    /// 0: off.
    #[serde(default)]
    pub heartbeat_timeout_ms: u64,
    /// Any JSON value, `null` included, at most `MAX_VALUE_DEPTH` levels deep; absent means no
    /// `BOOTSTRAP` line.
    #[serde(default, deserialize_with = "present")]
    pub bootstrap: Option<Bootstrap>,
    #[serde(default)]
    pub start_gate: bool,
    /// How long a worker stopped by a scale-down or a rollout may take before it is killed.
    #[serde(default = "ms::<10_000>")]
    pub stop_timeout_ms: u64,
    /// Which processes may send sd_notify messages for a worker.
    #[serde(default = "main")]
    pub notify_access: NotifyAccess,
    /// How many of the last lines of each captured stream are kept per worker.
    #[serde(default = "twenty")]
    pub output_tail_lines: u32,
    /// Sockets opened once for the group and passed to every worker (fds 3, 4, ...).
    #[serde(default)]
    pub listen: Vec<Listen>,
    /// One `SO_REUSEPORT` socket per worker instead of one shared socket.
    #[serde(default)]
    pub reuse_port: bool,
}

fn main() -> NotifyAccess {
    NotifyAccess::Main
}
fn twenty() -> u32 {
    20
}

impl GroupSpec {
    pub fn restart_spec(&self) -> RestartSpec {
        RestartSpec {
            restart: self.restart,
            delay: Duration::from_millis(self.restart_delay_ms),
            delay_max: Duration::from_millis(self.restart_delay_max_ms),
            backoff_reset: Duration::from_millis(self.backoff_reset_ms),
            max_restarts: self.max_restarts,
            window: Duration::from_millis(self.restart_window_ms),
        }
    }
}

fn ms<const N: u64>() -> u64 {
    N
}
fn five() -> u32 {
    5
}
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Bootstrap>, D::Error> {
    bounded_value(d).map(|v| Some(Bootstrap(v.to_string())))
}

/// A `bootstrap` payload, kept as the compact JSON text of the configured value: the line a
/// worker gets is `BOOTSTRAP <this>`. Only text is kept, so sending or dropping it never
/// recurses through a deep value on a host thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap(String);

impl Bootstrap {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The deepest nesting of arrays and objects a free-form value (`bootstrap`, an exporter's
/// `settings`) may have. Parsing recurses once per level on the calling thread, so the bound
/// keeps the stack a configure call needs small (a host thread may have as little as 64 KiB).
pub const MAX_VALUE_DEPTH: usize = 64;

pub(crate) const TOO_DEEP: &str = "nested more than 64 levels deep (arrays and objects)";

/// A JSON value of at most `MAX_VALUE_DEPTH` levels; a deeper one is an error as soon as the
/// parser reaches the level past the bound.
pub(crate) fn bounded_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<serde_json::Value, D::Error> {
    serde::de::DeserializeSeed::deserialize(Bounded(MAX_VALUE_DEPTH), d)
}

/// Builds a `serde_json::Value` with `.0` levels of nesting left.
struct Bounded(usize);

impl Bounded {
    fn inner<E: serde::de::Error>(&self) -> std::result::Result<Bounded, E> {
        match self.0 {
            0 => Err(E::custom(TOO_DEEP)),
            left => Ok(Bounded(left - 1)),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Bounded {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<serde_json::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> std::result::Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<serde_json::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.inner()?)? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<serde_json::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.inner()?)?;
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }
}

fn warmup() -> Readiness {
    Readiness::Warmup
}
fn auto() -> ControlChannelMode {
    ControlChannelMode::Auto
}
fn inherit() -> Output {
    Output::Inherit
}

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
    Ok(())
}

/// `s` as a C string; callers have validated that it holds no NUL.
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s).expect("validated to hold no NUL")
}

#[cfg(test)]
mod tests;
