//! One group of workers as the host describes it (`GroupSpec`), with the small types of its keys.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::depends::{DependsCondition, OnDependencyRestart};
use super::identity::{Id, Rlimits};
use super::limits::{CpuMax, Limits, MemorySize, PidsMax};
use super::probes::Probe;
use super::{
    bounded_value, listen, recycle, Listen, Output, Restart, RestartStrategy, StopSignal, MAX_MS,
    MAX_TAIL_LINES, MAX_WORKERS,
};
use crate::core::policy::RestartSpec;

/// How a worker proves it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// Ready once alive `warmup_ms` after spawn.
    Warmup,
    /// Ready once it sends `READY` on its control channel.
    Notify,
    /// Ready once it sends `READY=1` to `NOTIFY_SOCKET` (systemd's notify protocol).
    #[serde(rename = "sd_notify")]
    SdNotify,
    /// Ready once its `readiness_probe` succeeds (`success_threshold` times in a row).
    Probe,
}

impl Readiness {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Warmup => "warmup",
            Readiness::Notify => "notify",
            Readiness::SdNotify => "sd_notify",
            Readiness::Probe => "probe",
        }
    }
}

/// Whether workers get a control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ControlChannelMode {
    /// A socket pair when one can be made, else the signal fallback.
    Auto,
    /// Always the signal fallback.
    Off,
}

/// Who gets a graceful stop's signal (systemd's `KillMode`). SIGKILL always goes to the whole
/// process group (and cgroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyAccess {
    /// Only the worker's own process.
    Main,
    /// Any process of the worker's process group.
    All,
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
fn main() -> NotifyAccess {
    NotifyAccess::Main
}
fn twenty() -> u32 {
    20
}

/// One group of workers: what they run and how they are supervised. One element of the array
/// `configure_process_groups` takes.
///
/// Every key but `name` and `argv` has a default, so a Rust host writes only what it changes:
///
/// ```
/// use mpsupervisor::config::{GroupSpec, Readiness};
/// let group = GroupSpec {
///     name: "ingest".into(),
///     argv: vec!["/usr/bin/ingest".into(), "--fast".into()],
///     workers: 2,
///     readiness: Readiness::Notify,
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Group",
    description = "One group of workers: what they run and how they are supervised.",
    extend(
        "if" = {"properties": {"readiness": {"const": "probe"}}, "required": ["readiness"]},
        "then" = {"properties": {"readiness_probe": {"type": "object"}}, "required": ["readiness_probe"]}
    )
)]
pub struct GroupSpec {
    /// The group's name: non-empty, unique among the groups, without `#`.
    #[schemars(length(min = 1), pattern(r"^[^#\x00]*$"))]
    pub name: String,
    /// How many processes, 1 to 4096.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = MAX_WORKERS))]
    pub workers: u32,
    /// The program and its arguments. An `argv[0]` without `/` is searched in the `PATH` of the
    /// group's `env` when it sets one, else in the host's, when the group is started.
    #[schemars(length(min = 1), extend("prefixItems" = [{"type": "string", "minLength": 1}]))]
    pub argv: Vec<String>,
    /// Variables added to the worker's environment (names starting with `MPSUP_` are reserved
    /// and ignored).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Start from the host's environment; `false` starts from an empty one.
    #[serde(default = "yes")]
    pub inherit_env: bool,
    /// The worker's working directory (absent: the host's).
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub cwd: Option<String>,
    /// How a worker proves it is ready.
    #[serde(default = "warmup")]
    pub readiness: Readiness,
    /// The warm-up of `"warmup"` readiness, in ms.
    #[serde(default = "default_warmup_ms")]
    #[schemars(range(max = MAX_MS))]
    pub warmup_ms: u64,
    /// `"auto"`: a control socket when one can be made, else the signal fallback; `"off"`:
    /// always the signal fallback (for programs that do not speak the protocol).
    #[serde(default = "auto")]
    pub control_channel: ControlChannelMode,
    /// What a graceful stop sends to a worker without a control channel (and after a protocol
    /// error).
    #[serde(default)]
    pub stop_signal: StopSignal,
    /// Who gets `stop_signal`.
    #[serde(default)]
    pub kill_mode: KillMode,
    /// The worker's standard output.
    #[serde(default = "inherit")]
    pub stdout: Output,
    /// The worker's standard error.
    #[serde(default = "inherit")]
    pub stderr: Output,
    /// When a worker that ended unasked is respawned.
    #[serde(default)]
    pub restart: Restart,
    /// Whether a respawn replaces only the worker that ended, or every worker of the group.
    #[serde(default)]
    pub restart_strategy: RestartStrategy,
    /// The first respawn delay in ms; it doubles with each consecutive failure of that worker.
    #[serde(default = "ms::<100>")]
    #[schemars(range(max = MAX_MS))]
    pub restart_delay_ms: u64,
    /// The cap of that doubling, in ms.
    #[serde(default = "ms::<30_000>")]
    #[schemars(range(max = MAX_MS))]
    pub restart_delay_max_ms: u64,
    /// A worker that stays up this long (ms) after becoming ready starts its backoff afresh.
    #[serde(default = "ms::<10_000>")]
    #[schemars(range(max = MAX_MS))]
    pub backoff_reset_ms: u64,
    /// More respawns than this within `restart_window_ms`, counted over the group, fail the
    /// group.
    #[serde(default = "five")]
    pub max_restarts: u32,
    /// The window of `max_restarts`, in ms.
    #[serde(default = "ms::<60_000>")]
    #[schemars(range(max = MAX_MS))]
    pub restart_window_ms: u64,
    /// A worker not ready this long (ms) after its spawn is killed and fails with reason
    /// `ready_timeout`; 0: off.
    #[serde(default)]
    #[schemars(range(max = MAX_MS))]
    pub ready_timeout_ms: u64,
    /// Once ready, a worker that sends no `HEARTBEAT` for this long (ms) is killed and fails
    /// with reason `heartbeat_timeout`; 0: off.
    #[serde(default)]
    #[schemars(range(max = MAX_MS))]
    pub heartbeat_timeout_ms: u64,
    /// Any JSON value (`null` included), sent as the first line `BOOTSTRAP <compact JSON>`;
    /// absent: no such line.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub bootstrap: Option<Bootstrap>,
    /// The workers wait for `START`, sent by `start_work`.
    #[serde(default)]
    pub start_gate: bool,
    /// How long (ms) a worker stopped by a scale-down or a rolling restart may take before it
    /// is killed.
    #[serde(default = "ms::<10_000>")]
    #[schemars(range(max = MAX_MS))]
    pub stop_timeout_ms: u64,
    /// With `"sd_notify"` readiness: which processes may send notify messages for a worker.
    #[serde(default = "main")]
    pub notify_access: NotifyAccess,
    /// How many of the last lines of each captured stream are kept per worker (a failed
    /// worker's `stderr_tail`).
    #[serde(default = "twenty")]
    #[schemars(range(max = MAX_TAIL_LINES))]
    pub output_tail_lines: u32,
    /// Sockets opened once for the group and passed to every worker (descriptors 3, 4, ...).
    #[serde(default)]
    #[schemars(length(max = listen::MAX_LISTEN))]
    pub listen: Vec<Listen>,
    /// One `SO_REUSEPORT` socket per worker instead of one shared socket (TCP only).
    #[serde(default)]
    pub reuse_port: bool,
    // Resource limits (API.md part 7): each worker process in cgroups of its own that hold them.
    /// The most memory each worker process (with its descendants) may use; past it the OOM
    /// killer ends it (`reason: "oom_killed"`). cgroup `memory.max` (v1 `memory.limit_in_bytes`).
    #[serde(default)]
    pub memory_max: Option<MemorySize>,
    /// Memory use past which each worker is throttled and reclaimed hard (cgroup v2's
    /// `memory.high`; a v1 memory controller has none).
    #[serde(default)]
    pub memory_high: Option<MemorySize>,
    /// The most processes and threads each worker (with its descendants) may have: a fork past
    /// it fails. cgroup `pids.max`.
    #[serde(default)]
    pub pids_max: Option<PidsMax>,
    /// The CPU time each worker (with its descendants) may use: `"50%"` of one core, `"QUOTA
    /// PERIOD"` in µs, or `"max"`. cgroup `cpu.max` (v1 `cpu.cfs_quota_us`, `cpu.cfs_period_us`).
    #[serde(default)]
    pub cpu_max: Option<CpuMax>,

    // Identity, limits and environment (API.md part 7), applied by the exec shim between the
    // spawn and the program's exec, at every spawn and respawn.
    /// The user the workers run as: a name or a uid, resolved when the group is started. Unless
    /// `supplementary_groups` is given, the workers get that user's groups too, and unless
    /// `group` is given, its primary group.
    #[serde(default)]
    pub user: Option<Id>,
    /// The group the workers run as: a name or a gid, resolved when the group is started.
    /// Without `user` (and without `supplementary_groups`), the supplementary groups are cleared.
    #[serde(default)]
    pub group: Option<Id>,
    /// The workers' supplementary groups, names or gids (`[]` clears them); absent: `user`'s.
    #[serde(default)]
    pub supplementary_groups: Option<Vec<Id>>,
    /// The workers' umask, 3 or 4 octal digits such as `"0027"` (absent: the host's).
    #[serde(default)]
    #[schemars(pattern(r"^0?[0-7]{3}$"))]
    pub umask: Option<String>,
    /// Sets `PR_SET_NO_NEW_PRIVS`: setuid programs and file capabilities give a worker nothing.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Resource limits (`setrlimit`) the workers start with; absent ones are the host's.
    #[serde(default)]
    pub rlimits: Rlimits,
    /// Files of `KEY=VALUE` lines (systemd's `EnvironmentFile=` syntax), absolute paths, read at
    /// every spawn, applied after the host's environment and before `env`; a `-` before the path
    /// makes a missing file no error.
    #[serde(default)]
    #[schemars(extend("items" = {"type": "string", "pattern": "^-?/"}))]
    pub env_files: Vec<String>,

    // One group at a time and recycling (API.md part 7; checked in `recycle.rs`).
    /// What `reload_groups` sends each worker (to its process group or to it alone, as
    /// `kill_mode` says).
    #[serde(default = "sighup")]
    pub reload_signal: StopSignal,
    /// A worker whose resident set stays above this many bytes for two consecutive samples is
    /// replaced (a new one first, the old one stopped once it is ready); 0: off.
    #[serde(default)]
    pub max_rss_bytes: u64,
    /// How often (ms) the resident set of each worker is sampled when `max_rss_bytes` is set,
    /// 10 or more. Samples fall on one grid of instants (one wake-up reads every worker's): a
    /// worker's first comes one to two periods after its spawn.
    #[serde(default = "ms::<5_000>")]
    #[schemars(range(min = recycle::MIN_SAMPLE_MS, max = MAX_MS))]
    pub rss_sample_ms: u64,
    /// A worker older than this (ms, plus its share of `lifetime_jitter_ms`) is replaced (a new
    /// one first, the old one stopped once it is ready); 0: off.
    #[serde(default)]
    #[schemars(range(max = MAX_MS))]
    pub max_lifetime_ms: u64,
    /// Each worker's lifetime is drawn once in `[max_lifetime_ms, max_lifetime_ms + this]`, so
    /// that the workers of a group are not all replaced at once.
    #[serde(default)]
    #[schemars(range(max = MAX_MS))]
    pub lifetime_jitter_ms: u64,

    // Dependencies between groups (API.md part 8; checked in `depends.rs`).
    /// Groups this one depends on, each with what it must have reached first: `"started"`,
    /// `"ready"` or `"completed"`. `start_groups` starts them too, and this group only once
    /// every condition holds.
    #[serde(default)]
    pub depends_on: BTreeMap<String, DependsCondition>,
    /// What this group does when a worker of a group it depends on ends: `"ignore"`,
    /// `"restart"` (a rolling restart once the dependency is ready again) or `"stop"`.
    #[serde(default)]
    pub on_dependency_restart: OnDependencyRestart,

    // Probes (API.md part 8; checked in `probes.rs`).
    /// Run on each worker: once ready, `failure_threshold` failures in a row make it unready
    /// until the probe passes again; with `"readiness": "probe"` it makes the worker ready.
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    /// Run on each worker: `failure_threshold` failures in a row kill it (`worker_failed` with
    /// `reason: "liveness_failed"`), then the restart policy applies.
    #[serde(default)]
    pub liveness_probe: Option<Probe>,
    /// The first worker's port: `{port}` in probes and `env` is `port_base + index - 1`.
    #[serde(default)]
    pub port_base: Option<u16>,
}

impl Default for GroupSpec {
    /// A group with every default and no name or argv yet.
    fn default() -> Self {
        GroupSpec {
            name: String::new(),
            workers: one(),
            argv: Vec::new(),
            env: BTreeMap::new(),
            inherit_env: yes(),
            cwd: None,
            readiness: warmup(),
            warmup_ms: default_warmup_ms(),
            control_channel: auto(),
            stop_signal: StopSignal::default(),
            kill_mode: KillMode::default(),
            stdout: inherit(),
            stderr: inherit(),
            restart: Restart::default(),
            restart_strategy: RestartStrategy::default(),
            restart_delay_ms: 100,
            restart_delay_max_ms: 30_000,
            backoff_reset_ms: 10_000,
            max_restarts: five(),
            restart_window_ms: 60_000,
            ready_timeout_ms: 0,
            heartbeat_timeout_ms: 0,
            bootstrap: None,
            start_gate: false,
            stop_timeout_ms: 10_000,
            notify_access: main(),
            output_tail_lines: twenty(),
            listen: Vec::new(),
            reuse_port: false,
            memory_max: None,
            memory_high: None,
            pids_max: None,
            cpu_max: None,
            user: None,
            group: None,
            supplementary_groups: None,
            umask: None,
            no_new_privileges: false,
            rlimits: Rlimits::default(),
            env_files: Vec::new(),
            reload_signal: sighup(),
            max_rss_bytes: 0,
            rss_sample_ms: 5_000,
            max_lifetime_ms: 0,
            lifetime_jitter_ms: 0,
            depends_on: BTreeMap::new(),
            on_dependency_restart: OnDependencyRestart::default(),
            readiness_probe: None,
            liveness_probe: None,
            port_base: None,
        }
    }
}

impl GroupSpec {
    /// The group's cgroup limits.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_max: self.memory_max,
            memory_high: self.memory_high,
            pids_max: self.pids_max,
            cpu_max: self.cpu_max,
        }
    }

    pub(crate) fn restart_spec(&self) -> RestartSpec {
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

/// A `bootstrap` payload: any JSON value, kept as its compact text (the line a worker gets is
/// `BOOTSTRAP <this>`). Only text is kept, so sending or dropping it never recurses through a
/// deep value on a host thread.
///
/// ```
/// use mpsupervisor::config::Bootstrap;
/// let b = Bootstrap::from(serde_json::json!({"shard": 3}));
/// assert_eq!(b.as_str(), r#"{"shard":3}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap(String);

impl Bootstrap {
    /// The compact JSON text of the value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<serde_json::Value> for Bootstrap {
    fn from(value: serde_json::Value) -> Self {
        Bootstrap(value.to_string())
    }
}

impl std::fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Bootstrap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl JsonSchema for Bootstrap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bootstrap".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Any JSON value, at most 64 levels of arrays and objects deep."
        })
    }
}

fn sighup() -> StopSignal {
    StopSignal::HUP
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
