//! The snapshot's types: what `Supervisor::snapshot` returns and `mpsup_snapshot_json` writes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::core::notify::NotifyFacts;
use crate::events::{ControlChannel, ExitReason, StopStrategy};

/// Every shown group's workers: group name → worker entries in index order. A group is shown
/// once started, and while it still has workers after a stop.
///
/// ```no_run
/// # fn main() -> mpsupervisor::Result<()> {
/// let sup = mpsupervisor::Supervisor::new()?;
/// for (group, workers) in &sup.snapshot()?.groups {
///     for w in workers {
///         println!("{group} {} pid {} {:?}", w.worker_id, w.pid, w.state);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(
    title = "Snapshot",
    description = "Group name to its workers in index order."
)]
pub struct Snapshot {
    /// Group name → its workers, in index order.
    pub groups: BTreeMap<String, Vec<WorkerSnapshot>>,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Spawned (or being spawned), not ready yet.
    Starting,
    /// Running and ready.
    Ready,
    /// Ready, and reloading since `reload_groups` sent its `reload_signal` (`sd_notify`
    /// workers, until the `READY=1` that follows their `RELOADING=1`).
    Reloading,
    /// Asked to stop, not reaped yet.
    Stopping,
    /// Ended unasked; waiting for its respawn delay.
    Restarting,
    /// Ended unasked and not to be respawned (or its respawn failed).
    Failed,
}

/// How a worker's previous process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LastExit {
    /// Its exit code once it exited normally, else null.
    pub exit_code: Option<i32>,
    /// The signal that ended it, else null.
    pub signal: Option<i32>,
    /// Why it ended.
    pub reason: ExitReason,
    /// Unix time in ms of its end.
    pub at_ms: u64,
}

/// One worker of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerSnapshot {
    /// `"<group>#<index>"`, index from 1; kept across respawns.
    pub worker_id: String,
    /// The current process id (0 while it has none).
    pub pid: i32,
    /// The same as `pid` (a key the original Python supervisor had).
    pub os_pid: i32,
    /// The process has not been reaped.
    pub alive: bool,
    /// It has become ready since its last spawn, and is not reloading.
    pub ready: bool,
    /// Where it is in its life.
    pub state: WorkerState,
    /// Its process group, which it leads (equal to its `pid`).
    pub pgid: i32,
    /// Its exit code once it has exited normally, else null.
    pub exit_code: Option<i32>,
    /// The signal that ended it, else null.
    pub signal: Option<i32>,
    /// It has a control channel, so a graceful stop is a `STOP` line.
    pub has_stop_event: bool,
    /// How a graceful stop reaches it.
    pub stop_strategy: StopStrategy,
    /// Whether it has a control channel.
    pub control_channel: ControlChannel,
    /// Unix time in ms of its latest spawn.
    pub started_at_ms: u64,
    /// How many times this worker has been respawned.
    pub restarts: u32,
    /// Unix time in ms of its last `HEARTBEAT`, or null.
    pub last_heartbeat_ms: Option<u64>,
    /// The generation of the configuration it runs.
    pub generation: u32,
    /// How long its current process has run, or null when it has none.
    pub uptime_ms: Option<u64>,
    /// How its previous process ended, or null.
    pub last_exit: Option<LastExit>,
    /// The last `STATUS=` an `sd_notify` worker sent, or null.
    pub status: Option<String>,
    /// Its resident memory in bytes, or null when it is not alive.
    pub rss_bytes: Option<u64>,
    /// Its CPU time (user + system) in ms, or null when it is not alive.
    pub cpu_ms: Option<u64>,
    /// For a failed (or restarting) worker, the last lines of its captured stderr, else null.
    pub stderr_tail: Option<Vec<String>>,
    /// What an `sd_notify` worker said of itself, or null.
    pub notify: Option<NotifyFacts>,
}
