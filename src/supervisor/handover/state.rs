//! The state that crosses the host's `exec`: serde types, written as JSON into a memfd.
//!
//! `FORMAT` changes whenever a field's meaning does; an image reads only its own format. The
//! fields an image needs to kill the workers when it refuses a state (`lifeline`, `pids`) keep
//! their names and shapes in every format, so even a refused state never leaves a worker
//! without a supervisor.
//!
//! Times cross as signed microseconds from the moment the state was written (`written_ns`, on
//! CLOCK_MONOTONIC, the clock of `Instant`, which an `exec` does not reset): the next image
//! places them on its own `Instant`s, so timers resume with the time that passed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{GroupSpec, Readiness};
use crate::core::notify::NotifyFacts;
use crate::core::probes::ProbeState;
use crate::core::timers::Timer;
use crate::core::worker::Key;
use crate::events::Event;
use crate::os::handover::monotonic_ns;
use crate::runtime::io::ProcFds;
use crate::runtime::lifeline::LifelineState;
use crate::runtime::listen::ListenState;
use crate::runtime::output::CapturesState;
use crate::snapshot::LastExit;

// Changes in progress (`changes.rs`).
pub use super::changes::{ReloadState, RolloutState};
use crate::core::recycle::Replaces;
use crate::core::worker::Role;
use crate::events::{ExitReason, StopMode};

/// The version of this format. 2: captured output, `reuse_port` listen sockets, the workers'
/// cgroups and the event fd cross (`carry.rs`), and so do changes in progress (`changes.rs`);
/// format 1 refused them.
pub const FORMAT: u32 = 2;

/// Everything the next image needs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    pub format: u32,
    /// The library version that wrote it (for messages).
    pub library: String,
    pub written_ns: u64,
    /// The keeper (pid, socket) and the cgroups.
    pub lifeline: LifelineState,
    /// Every worker process's pid.
    pub pids: Vec<i32>,
    /// Killed children not reaped yet.
    pub orphans: Vec<i32>,
    pub options: OptionsState,
    /// The logging settings in force, as JSON text.
    pub logging: Option<String>,
    pub core: CoreState,
    pub procs: Vec<ProcFds>,
    pub listen: Vec<ListenState>,
    /// The sd_notify socket: its number and address.
    pub notify: Option<(i32, String)>,
    // Carried since format 2 (`carry.rs`): captured output, and the event fd if the host has
    // it (at the same number).
    pub outputs: CapturesState,
    pub event_fd: Option<i32>,
}

/// The options the supervisor was made with (all but the tests' spawn hook).
#[derive(Debug, Serialize, Deserialize)]
pub struct OptionsState {
    pub event_capacity: usize,
    pub use_pidfd: bool,
    pub keeper: bool,
    pub cgroup: bool,
    pub spawn_threads: Option<usize>,
    pub private_fd_table: bool,
}

/// What the core knows.
#[derive(Debug, Serialize, Deserialize)]
pub struct CoreState {
    pub config: Vec<GroupSpec>,
    pub generations: HashMap<String, u32>,
    pub next_key: Key,
    pub removed: u64,
    /// Each plan once; groups and workers name theirs by index.
    pub plans: Vec<PlanState>,
    pub groups: Vec<GroupState>,
    pub workers: Vec<WorkerState>,
    /// (when, in µs from `written_ns`; whose; what).
    pub timers: Vec<(i64, Key, Timer)>,
    pub events: Vec<Event>,
    pub next_seq: u64,
    pub dropped: u64,
    // Changes in progress (`changes.rs`).
    /// Groups waiting for their dependencies, with their plans' indices.
    pub waiting: Vec<(String, usize)>,
}

/// A `Plan`, its C strings as bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlanState {
    pub spec: GroupSpec,
    pub program: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub cwd: Option<Vec<u8>>,
    pub rlimits: Vec<(String, u64, u64)>,
    pub umask: Option<u32>,
    pub groups: Option<Vec<u32>>,
    pub gid: Option<u32>,
    pub uid: Option<u32>,
    pub no_new_privileges: bool,
}

/// A started group.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupState {
    pub name: String,
    pub plan: usize,
    pub generation: u32,
    pub target: u32,
    /// When its recent respawns happened (µs from `written_ns`).
    pub intensity: Vec<i64>,
    pub work_started: bool,
    pub started: bool,
    pub failed: bool,
    pub completed: bool,
    pub dependency_failed: Option<String>,
    /// Waiting to be rolled out for a dependency's restart.
    #[serde(default)]
    pub restart_pending: bool,
    // Changes in progress (`changes.rs`).
    /// Its rolling restart, running or failed.
    pub rollout: Option<RolloutState>,
}

/// Where a worker is in its life: every phase but `Spawning` (the prepare lands every spawn
/// first, `changes.rs`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum PhaseState {
    Starting,
    Ready { last_heartbeat: i64 },
    Restarting,
    Failed,
    // Changes in progress (`changes.rs`): its stop deadline, if any, is among the timers.
    Stopping(StopMode),
    Killed(ExitReason),
}

/// One worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerState {
    pub key: Key,
    pub group: String,
    pub index: u32,
    pub generation: u32,
    pub plan: usize,
    pub pid: i32,
    pub phase: PhaseState,
    pub readiness: Readiness,
    pub has_channel: bool,
    pub restarts: u32,
    pub consecutive: u32,
    pub ready_at: Option<i64>,
    pub spawned_at: Option<i64>,
    pub started_at_ms: u64,
    pub last_heartbeat_ms: Option<u64>,
    /// Its latest process's exit: code, signal, killed by the OOM killer.
    pub exit: (Option<i32>, Option<i32>, bool),
    pub last_exit: Option<LastExit>,
    pub status: Option<String>,
    pub extend_until: Option<i64>,
    pub stderr_tail: Option<Vec<String>>,
    pub notify: Option<NotifyFacts>,
    pub rss_over: u32,
    /// What its probes have shown (their runs start again after adoption).
    #[serde(default)]
    pub probes: ProbeState,
    pub respawn_after_stop_ms: Option<u64>,
    // Changes in progress (`changes.rs`).
    /// Its part in a rollout or a replacement.
    pub role: Role,
    pub reload: Option<ReloadState>,
    pub replaces: Option<Replaces>,
}

/// Places `Instant`s on the time line of the state: µs from the moment it was written.
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// For writing: `written_ns` is now.
    pub fn writing() -> (Clock, u64) {
        let base = Instant::now();
        (Clock { base }, monotonic_ns())
    }

    /// For reading a state written at `written_ns`: the `Instant` of that moment in this image.
    pub fn reading(written_ns: u64) -> Clock {
        let now = Instant::now();
        let ago = Duration::from_nanos(monotonic_ns().saturating_sub(written_ns));
        Clock {
            base: now.checked_sub(ago).unwrap_or(now),
        }
    }

    pub fn offset(&self, at: Instant) -> i64 {
        if at >= self.base {
            (at - self.base).as_micros() as i64
        } else {
            -((self.base - at).as_micros() as i64)
        }
    }

    pub fn instant(&self, us: i64) -> Instant {
        let d = Duration::from_micros(us.unsigned_abs());
        if us >= 0 {
            self.base + d
        } else {
            self.base.checked_sub(d).unwrap_or(self.base)
        }
    }
}
