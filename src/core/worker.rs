//! One worker process as the core tracks it: who it is, where it is in its life, and its
//! figures. Plain data; the descriptors of its process live in the runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Readiness;
use crate::core::notify::NotifyFacts;
use crate::core::one_group::Reload;
use crate::core::plan::Plan;
use crate::core::policy::Backoff;
use crate::core::probes::ProbeState;
use crate::core::recycle::Replaces;
use crate::events::{ControlChannel, EventKind, ExitReason, StopMode, StopStrategy};
use crate::snapshot::{LastExit, WorkerSnapshot, WorkerState};

/// Identifies one process of a worker: every spawn gets a new key, so a timer or a descriptor
/// of an earlier process can never act on a later one.
pub type Key = u64;

/// How a process ended; both None when the status was lost (someone else reaped it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed by SIGKILL while the OOM killer killed in its memory cgroup: `oom_killed`.
    pub oom_killed: bool,
}

impl ExitStatus {
    pub fn lost(&self) -> bool {
        self.code.is_none() && self.signal.is_none()
    }
}

/// Where a worker is in its life; each state carries what only it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Asked of the spawner; no process yet.
    Spawning,
    /// Running, not ready yet.
    Starting,
    /// Running and ready.
    Ready { last_heartbeat: Instant },
    /// Asked to stop; the mode of the latest request.
    Stopping(StopMode),
    /// Killed by the supervisor for `reason` (a timeout); it fails with that reason when reaped.
    Killed(ExitReason),
    /// Ended unasked; its respawn is due at a timer.
    Restarting,
    /// Ended unasked and not to be respawned.
    Failed,
}

/// A worker's part in a rolling restart (serde: it crosses a handover as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// An ordinary member of its group.
    Member,
    /// A new worker of a rollout that is not ready yet: it replaces the old one of its slot
    /// once it is.
    Surge,
    /// A worker's replacement (recycling, `replace_worker`) that is not ready yet: the old
    /// worker of its slot is stopped once it is.
    Replacement,
}

#[derive(Debug)]
pub struct Worker {
    pub group: String,
    pub index: u32,
    pub id: String,
    pub generation: u32,
    /// What its processes run; respawns reuse it.
    pub plan: Arc<Plan>,
    /// The pid of its latest process (0 before the first one exists).
    pub pid: i32,
    pub phase: Phase,
    pub role: Role,
    /// The readiness in force: a `notify` worker without a channel falls back to `warmup`.
    pub readiness: Readiness,
    pub has_channel: bool,
    pub restarts: u32,
    pub backoff: Backoff,
    pub spawned_at: Option<Instant>,
    pub started_at_ms: u64,
    pub last_heartbeat_ms: Option<u64>,
    /// How its latest process ended.
    pub exit: ExitStatus,
    pub last_exit: Option<LastExit>,
    pub status: Option<String>,
    /// What it said of itself through sd_notify (sd_notify workers only).
    pub notify: Option<NotifyFacts>,
    /// `EXTEND_TIMEOUT_USEC=`: the ready or stop deadline in force is not before this.
    pub extend_until: Option<Instant>,
    /// The last lines of its captured stderr when its latest process ended.
    pub stderr_tail: Option<Vec<String>>,
    /// A reload in progress (`reload_groups` on an `sd_notify` worker).
    pub reload: Option<Reload>,
    /// With `Role::Replacement`: what it replaces.
    pub replaces: Option<Replaces>,
    /// Consecutive resident-set samples above `max_rss_bytes`.
    pub rss_over: u32,
    /// Stopped by `one_for_all` because another worker ended: respawned after this delay once
    /// its process is gone, instead of being removed.
    pub respawn_after_stop: Option<Duration>,
    /// What its probes have shown of its current process.
    pub probes: ProbeState,
}

impl Worker {
    pub fn new(plan: Arc<Plan>, index: u32, generation: u32, role: Role) -> Worker {
        let group = plan.spec.name.clone();
        Worker {
            id: format!("{group}#{index}"),
            group,
            index,
            generation,
            readiness: plan.spec.readiness,
            plan,
            pid: 0,
            phase: Phase::Spawning,
            role,
            has_channel: false,
            restarts: 0,
            backoff: Backoff::default(),
            spawned_at: None,
            started_at_ms: 0,
            last_heartbeat_ms: None,
            exit: ExitStatus::default(),
            last_exit: None,
            status: None,
            notify: None,
            extend_until: None,
            stderr_tail: None,
            reload: None,
            replaces: None,
            rss_over: 0,
            respawn_after_stop: None,
            probes: ProbeState::default(),
        }
    }

    /// Whether a process of this worker is running (or not yet reaped).
    pub fn alive(&self) -> bool {
        matches!(
            self.phase,
            Phase::Starting | Phase::Ready { .. } | Phase::Stopping(_) | Phase::Killed(_)
        )
    }

    /// Ready, and its readiness probe (if any) has not failed since.
    pub fn ready(&self) -> bool {
        matches!(self.phase, Phase::Ready { .. }) && !self.probes.unready
    }

    /// Counts towards the group's worker count: it runs, or will run again, and nobody asked it
    /// to stop.
    pub fn counts(&self) -> bool {
        matches!(
            self.phase,
            Phase::Spawning | Phase::Starting | Phase::Ready { .. } | Phase::Restarting
        )
    }

    pub fn stop_strategy(&self) -> StopStrategy {
        if self.has_channel {
            StopStrategy::Event
        } else {
            StopStrategy::TerminateFallback
        }
    }

    pub fn control_channel_name(&self) -> ControlChannel {
        if self.has_channel {
            ControlChannel::Socketpair
        } else {
            ControlChannel::Unavailable
        }
    }

    pub fn state(&self) -> WorkerState {
        match self.phase {
            Phase::Spawning | Phase::Starting => WorkerState::Starting,
            Phase::Ready { .. } if self.reload.is_some() => WorkerState::Reloading,
            Phase::Ready { .. } => WorkerState::Ready,
            Phase::Stopping(_) | Phase::Killed(_) => WorkerState::Stopping,
            Phase::Restarting => WorkerState::Restarting,
            Phase::Failed => WorkerState::Failed,
        }
    }

    pub fn snapshot(&self, now: Instant) -> WorkerSnapshot {
        let exit = if self.alive() {
            ExitStatus::default()
        } else {
            self.exit
        };
        WorkerSnapshot {
            worker_id: self.id.clone(),
            pid: self.pid,
            os_pid: self.pid,
            alive: self.alive(),
            ready: self.ready() && self.reload.is_none(),
            state: self.state(),
            // Each worker leads its own process group.
            pgid: self.pid,
            exit_code: exit.code,
            signal: exit.signal,
            has_stop_event: self.has_channel,
            stop_strategy: self.stop_strategy(),
            control_channel: self.control_channel_name(),
            started_at_ms: self.started_at_ms,
            restarts: self.restarts,
            last_heartbeat_ms: self.last_heartbeat_ms,
            generation: self.generation,
            uptime_ms: self
                .spawned_at
                .filter(|_| self.alive())
                .map(|at| now.saturating_duration_since(at).as_millis() as u64),
            last_exit: self.last_exit.clone(),
            status: self.status.clone(),
            rss_bytes: None,
            cpu_ms: None,
            stderr_tail: self
                .stderr_tail
                .as_ref()
                .filter(|_| matches!(self.phase, Phase::Failed | Phase::Restarting))
                .cloned(),
            notify: self.notify.clone(),
        }
    }

    fn who(&self) -> (String, String) {
        (self.group.clone(), self.id.clone())
    }

    pub fn spawned_event(&self) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerSpawned {
            group_name,
            worker_id,
            pid: self.pid,
            generation: self.generation,
            stop_strategy: self.stop_strategy(),
            control_channel: self.control_channel_name(),
            readiness: self.readiness,
        }
    }

    pub fn ready_event(&self) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerReady {
            group_name,
            worker_id,
            pid: self.pid,
            generation: self.generation,
        }
    }

    pub fn stopping_event(&self, mode: StopMode) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerStopping {
            group_name,
            worker_id,
            pid: self.pid,
            generation: self.generation,
            mode,
        }
    }

    pub fn stopped_event(&self, mode: StopMode, status: ExitStatus) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerStopped {
            group_name,
            worker_id,
            pid: self.pid,
            generation: self.generation,
            mode,
            exit_code: status.code,
            signal: status.signal,
            status_unavailable: status.lost(),
        }
    }

    pub fn failed_event(&self, reason: ExitReason, status: ExitStatus) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerFailed {
            group_name,
            worker_id,
            pid: self.pid,
            generation: self.generation,
            reason,
            exit_code: status.code,
            signal: status.signal,
            status_unavailable: status.lost(),
            stderr_tail: self.stderr_tail.clone().unwrap_or_default(),
        }
    }

    pub fn spawn_failed_event(&self, error: String) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerSpawnFailed {
            group_name,
            worker_id,
            generation: self.generation,
            error,
        }
    }

    pub fn protocol_error_event(&self, error: String) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerProtocolError {
            group_name,
            worker_id,
            pid: self.pid,
            generation: self.generation,
            error,
        }
    }

    pub fn unkillable_event(&self, error: String) -> EventKind {
        let (group_name, worker_id) = self.who();
        EventKind::WorkerUnkillable {
            group_name,
            worker_id,
            pid: self.pid,
            generation: self.generation,
            error,
        }
    }
}
