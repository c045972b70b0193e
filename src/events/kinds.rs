//! The shapes of lifecycle events: what each kind says, and the closed sets of its fields.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::Readiness;

/// The default bound of the event queue.
pub(crate) const DEFAULT_CAPACITY: usize = 65_536;

/// How a stop was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    /// `STOP` over the control channel, or the group's `stop_signal`.
    Graceful,
    /// `SIGKILL` to the worker's process group (and cgroup).
    Forced,
}

/// How a graceful stop reaches a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopStrategy {
    /// A `STOP` line on its control channel.
    Event,
    /// The group's `stop_signal`.
    TerminateFallback,
}

/// Whether a worker has a control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlChannel {
    /// A socket pair, on the descriptor `MPSUP_CONTROL_FD` names.
    Socketpair,
    /// None: the signal fallback.
    Unavailable,
}

/// Why a group failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupFailReason {
    /// More than `max_restarts` respawns within `restart_window_ms`.
    TooManyRestarts,
    /// A group it depends on failed (or completed unsuccessfully) before it could start.
    DependencyFailed,
}

/// Why a worker's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// It exited (or was killed by a signal) unasked.
    Exited,
    /// It was not ready within `ready_timeout_ms` and was killed.
    ReadyTimeout,
    /// It sent no `HEARTBEAT` within `heartbeat_timeout_ms` and was killed.
    HeartbeatTimeout,
    /// It was asked to stop (only in a snapshot's `last_exit`).
    Stopped,
    /// The OOM killer killed it: its memory cgroup (`memory_max`) was full.
    OomKilled,
    /// Its liveness probe failed `failure_threshold` times in a row and it was killed.
    LivenessFailed,
}

impl ExitReason {
    /// Its name in JSON, such as `"ready_timeout"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Exited => "exited",
            ExitReason::ReadyTimeout => "ready_timeout",
            ExitReason::HeartbeatTimeout => "heartbeat_timeout",
            ExitReason::Stopped => "stopped",
            ExitReason::OomKilled => "oom_killed",
            ExitReason::LivenessFailed => "liveness_failed",
        }
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event says; serialized as `"kind": "<snake_case name>"` plus the fields. Every event
/// of one worker process carries the `generation` of the configuration it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A worker process was spawned (also for each respawn).
    WorkerSpawned {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// How a graceful stop reaches it.
        stop_strategy: StopStrategy,
        /// Whether it has a control channel.
        control_channel: ControlChannel,
        /// The readiness in force (a `notify` worker without a channel falls back to `warmup`).
        readiness: Readiness,
    },
    /// `start_groups` has spawned every worker it was asked for.
    SupervisorStartGroups {
        /// How many groups.
        group_count: usize,
        /// How many workers.
        worker_count: usize,
    },
    /// A worker became ready, once per spawn.
    WorkerReady {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
    },
    /// The supervisor has asked a worker to stop.
    WorkerStopping {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// How the stop was asked for.
        mode: StopMode,
    },
    /// A worker that was asked to stop has been reaped; one per `worker_stopping`.
    WorkerStopped {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// How the stop was asked for.
        mode: StopMode,
        /// Its exit code when it exited, else null.
        exit_code: Option<i32>,
        /// The signal that ended it, else null.
        signal: Option<i32>,
        /// Present (true) when someone else reaped the worker first (a host that ignores
        /// SIGCHLD or calls `waitpid(-1)`): the exit status is lost.
        #[serde(default, skip_serializing_if = "is_false")]
        status_unavailable: bool,
    },
    /// A worker ended without being asked, or was killed for a timeout.
    WorkerFailed {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// Why it ended.
        reason: ExitReason,
        /// Its exit code when it exited, else null.
        exit_code: Option<i32>,
        /// The signal that ended it, else null.
        signal: Option<i32>,
        /// As in `WorkerStopped`.
        #[serde(default, skip_serializing_if = "is_false")]
        status_unavailable: bool,
        /// The last lines the worker wrote to a captured stderr (empty when not captured).
        stderr_tail: Vec<String>,
    },
    /// The worker sent `STATUS=` through sd_notify.
    WorkerStatus {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// The `STATUS=` text (cut at 4,096 bytes).
        status: String,
    },
    /// A process for the worker could not be spawned (a respawn, a scale-up or a rollout).
    WorkerSpawnFailed {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// What went wrong, with the errno text.
        error: String,
    },
    /// No control channel could be made for a worker, which therefore stops by signal.
    StopEventUnavailable {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// How it stops instead.
        fallback: StopStrategy,
        /// What went wrong, with the errno text.
        error: String,
    },
    /// A worker broke the line protocol: its channel is closed and it is stopped by its `stop_signal`.
    WorkerProtocolError {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// What went wrong, with the errno text.
        error: String,
    },
    /// SIGKILL did not end the worker within the bound (the process is stuck in the kernel), or
    /// the kernel refused it (EPERM, reported at once); it stays tracked.
    WorkerUnkillable {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// What went wrong, with the errno text.
        error: String,
    },
    /// Events were lost because the queue was full.
    EventsDropped {
        /// How many events were lost.
        count: u64,
    },
    /// The restart policy will respawn a worker.
    WorkerRestarting {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// 1 for the first consecutive respawn.
        attempt: u32,
        /// The wait before the respawn, in ms.
        delay_ms: u64,
    },
    /// More than `max_restarts` respawns within `restart_window_ms`: the group's workers are killed and nothing of it respawns.
    GroupFailed {
        /// The worker's group.
        group_name: String,
        /// The respawns counted within the window.
        restarts: u32,
        /// The window, in ms (`restart_window_ms`).
        window_ms: u64,
        /// Why: `"too_many_restarts"`, or `"dependency_failed"` (then `restarts` and
        /// `window_ms` are 0).
        reason: GroupFailReason,
        /// With `"dependency_failed"`: the group it depends on that failed; else null.
        dependency: Option<String>,
    },
    /// A group started with `depends_on` waits for the named dependencies' conditions.
    GroupWaiting {
        /// The waiting group.
        group_name: String,
        /// The dependencies whose conditions do not hold yet.
        waiting_for: Vec<String>,
    },
    /// Every worker of a group that another depends on as `"completed"` exited 0 and none is
    /// respawned: `"completed"` holds, and the group counts as ready.
    GroupCompleted {
        /// The group.
        group_name: String,
        /// How many workers completed.
        workers: u32,
    },
    /// `start_work` sent `START`.
    SupervisorStartWork {
        /// How many groups.
        group_count: usize,
        /// How many workers.
        worker_count: usize,
    },
    /// `adopt` rebuilt the supervisor in the host's new image (a handover, API.md part 9).
    SupervisorAdopted {
        /// How many worker processes were handed over.
        workers: usize,
        /// How many of them exited while the host was between images: their exits follow,
        /// and the restart policy handles them as usual.
        exited_meanwhile: usize,
    },
    /// `scale_group` changed a group's worker count.
    GroupScaled {
        /// The worker's group.
        group_name: String,
        /// The worker count before.
        from: u32,
        /// The worker count now.
        to: u32,
    },
    /// `restart_groups` began a rolling restart.
    RolloutStarted {
        /// The worker's group.
        group_name: String,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// How many slots it replaces.
        workers: u32,
    },
    /// A slot's new worker became ready and took over; the old one is being stopped.
    WorkerReplaced {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// The old worker's pid (null when it had no process).
        old_pid: Option<i32>,
        /// The new worker's pid.
        new_pid: i32,
    },
    /// Every slot of a rolling restart runs the new generation.
    RolloutFinished {
        /// The worker's group.
        group_name: String,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// How long it took, in ms.
        duration_ms: u64,
    },
    /// A new worker failed and the rolling restart halted; the old workers stay.
    RolloutFailed {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// Why it halted: `"exited"`, `"ready_timeout"` or `"spawn_failed: <error>"`.
        reason: String,
    },
    // One group at a time and recycling (API.md part 7).
    /// `signal_group` sent a signal to a worker (to its process group or to it alone, as the
    /// group's `kill_mode` says); `reload_groups` too, for a worker that is not `sd_notify`.
    WorkerSignaled {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// The signal's number.
        signal: i32,
    },
    /// `reload_groups` sent an `sd_notify` worker its `reload_signal`: it is `reloading` until
    /// the `READY=1` that follows its `RELOADING=1`.
    WorkerReloading {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// The signal's number.
        signal: i32,
    },
    /// A reloading worker sent `READY=1` after `RELOADING=1`: it is ready again.
    WorkerReloaded {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// How long the reload took, in ms (from the signal to `READY=1`).
        duration_ms: u64,
    },
    /// A worker was replaced as one slot of a rolling restart (its new process is ready, the
    /// old one is being stopped): it outgrew `max_rss_bytes` or `max_lifetime_ms`, or the host
    /// asked (`replace_worker`).
    WorkerRecycled {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// Why it was replaced.
        reason: RecycleReason,
        /// The old process's pid.
        old_pid: i32,
        /// The new process's pid.
        new_pid: i32,
        /// With `max_rss`: the old process's resident set at the last sample, in bytes (else
        /// null).
        rss_bytes: Option<u64>,
        /// The old process's age when its replacement began, in ms.
        age_ms: u64,
    },
    // Probes (API.md part 8).
    /// A worker's probe failed: on its first failure after a success (or its first run), and
    /// when its failures reach `failure_threshold`; never once per period.
    ProbeFailed {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
        /// Which probe.
        probe: ProbeKind,
        /// What failed, such as `"connect: Connection refused"` or `"HTTP 503"`.
        detail: String,
        /// Its failures in a row so far.
        failures: u32,
    },
    /// A ready worker's readiness probe failed `failure_threshold` times in a row: it counts
    /// as not ready (snapshot, `wait_ready`, rollouts) until the probe passes again
    /// (`worker_ready`).
    WorkerUnready {
        /// The worker's group.
        group_name: String,
        /// `<group>#<index>`.
        worker_id: String,
        /// The worker's process id.
        pid: i32,
        /// The generation of the configuration the worker runs.
        generation: u32,
    },
}

/// Which probe of a worker.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// `readiness_probe`.
    Readiness,
    /// `liveness_probe`.
    Liveness,
}

/// Why a worker was recycled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecycleReason {
    /// Its resident set stayed above `max_rss_bytes` for two samples.
    MaxRss,
    /// It outlived its lifetime (`max_lifetime_ms` plus its share of `lifetime_jitter_ms`).
    MaxLifetime,
    /// The host called `replace_worker`.
    Requested,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One lifecycle event: its place in the stream, its time, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Event")]
pub struct Event {
    /// 1 for the first event of a supervisor, then one more each, with no gaps.
    pub seq: u64,
    /// Unix time in ms.
    pub ts_ms: u64,
    /// What happened, with its fields (`"kind"` in JSON).
    #[serde(flatten)]
    pub kind: EventKind,
}
