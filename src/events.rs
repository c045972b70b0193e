//! Lifecycle events: their shapes, and the bounded queue the host drains.
//!
//! Plain data: the queue knows nothing of descriptors or log writers. The runtime makes the
//! event fd follow `is_empty()` and hands the events of `take_tapped()` to the log writer.

use std::collections::VecDeque;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::Readiness;

use crate::clock;

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
}

impl ExitReason {
    /// Its name in JSON, such as `"ready_timeout"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Exited => "exited",
            ExitReason::ReadyTimeout => "ready_timeout",
            ExitReason::HeartbeatTimeout => "heartbeat_timeout",
            ExitReason::Stopped => "stopped",
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
    WorkerSpawned {
        group_name: String,
        worker_id: String,
        pid: i32,
        generation: u32,
        stop_strategy: StopStrategy,
        control_channel: ControlChannel,
        readiness: Readiness,
    },
    SupervisorStartGroups {
        group_count: usize,
        worker_count: usize,
    },
    WorkerReady {
        group_name: String,
        worker_id: String,
        pid: i32,
        generation: u32,
    },
    WorkerStopping {
        group_name: String,
        worker_id: String,
        pid: i32,
        generation: u32,
        mode: StopMode,
    },
    WorkerStopped {
        group_name: String,
        worker_id: String,
        pid: i32,
        generation: u32,
        mode: StopMode,
        exit_code: Option<i32>,
        signal: Option<i32>,
        /// Present (true) when someone else reaped the worker first (a host that ignores
        /// SIGCHLD or calls `waitpid(-1)`): the exit status is lost.
        #[serde(default, skip_serializing_if = "is_false")]
        status_unavailable: bool,
    },
    WorkerFailed {
        group_name: String,
        worker_id: String,
        pid: i32,
        generation: u32,
        reason: ExitReason,
        exit_code: Option<i32>,
        signal: Option<i32>,
        /// As in `WorkerStopped`.
        #[serde(default, skip_serializing_if = "is_false")]
        status_unavailable: bool,
        /// The last lines the worker wrote to a captured stderr (empty when not captured).
        stderr_tail: Vec<String>,
    },
    /// The worker sent `STATUS=` through sd_notify.
    WorkerStatus {
        group_name: String,
        worker_id: String,
        pid: i32,
        generation: u32,
        status: String,
    },
    /// A process for the worker could not be spawned (a respawn, a scale-up or a rollout).
    WorkerSpawnFailed {
        group_name: String,
        worker_id: String,
        generation: u32,
        error: String,
    },
    StopEventUnavailable {
        group_name: String,
        worker_id: String,
        generation: u32,
        fallback: StopStrategy,
        error: String,
    },
    WorkerProtocolError {
        group_name: String,
        worker_id: String,
        pid: i32,
        generation: u32,
        error: String,
    },
    /// SIGKILL did not end the worker within the bound (the process is stuck in the kernel), or
    /// the kernel refused it (EPERM, reported at once); it stays tracked.
    WorkerUnkillable {
        group_name: String,
        worker_id: String,
        pid: i32,
        generation: u32,
        error: String,
    },
    EventsDropped {
        count: u64,
    },
    WorkerRestarting {
        group_name: String,
        worker_id: String,
        generation: u32,
        attempt: u32,
        delay_ms: u64,
    },
    GroupFailed {
        group_name: String,
        restarts: u32,
        window_ms: u64,
    },
    SupervisorStartWork {
        group_count: usize,
        worker_count: usize,
    },
    GroupScaled {
        group_name: String,
        from: u32,
        to: u32,
    },
    RolloutStarted {
        group_name: String,
        generation: u32,
        workers: u32,
    },
    WorkerReplaced {
        group_name: String,
        worker_id: String,
        generation: u32,
        old_pid: Option<i32>,
        new_pid: i32,
    },
    RolloutFinished {
        group_name: String,
        generation: u32,
        duration_ms: u64,
    },
    RolloutFailed {
        group_name: String,
        worker_id: String,
        generation: u32,
        reason: String,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One lifecycle event: its place in the stream, its time, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Event")]
pub struct Event {
    pub seq: u64,
    pub ts_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A bounded FIFO of events.
///
/// When the queue is full, new events are dropped and counted; as soon as there is room again an
/// `events_dropped` event takes the place where they were lost, so `seq` stays gapless. With the
/// tap on, every event (dropped ones too) is also kept for the log writer.
#[derive(Debug)]
pub struct EventQueue {
    queue: VecDeque<Event>,
    capacity: usize,
    next_seq: u64,
    dropped: u64,
    tap: Option<Vec<Event>>,
}

impl EventQueue {
    pub fn new(capacity: usize) -> Self {
        EventQueue {
            queue: VecDeque::new(),
            capacity: capacity.max(2),
            next_seq: 1,
            dropped: 0,
            tap: None,
        }
    }

    /// Starts or stops keeping a copy of every event for `take_tapped`.
    pub fn set_tap(&mut self, on: bool) {
        self.tap = on.then(Vec::new);
    }

    /// The events pushed since the last call (with the tap on).
    pub fn take_tapped(&mut self) -> Vec<Event> {
        self.tap.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn push(&mut self, kind: EventKind) {
        // Tapped before the bound applies, so the log stays whole even when nobody drains.
        if let Some(tap) = &mut self.tap {
            tap.push(Event {
                seq: self.next_seq,
                ts_ms: clock::now_ms(),
                kind: kind.clone(),
            });
        }
        self.flush_dropped();
        if self.queue.len() >= self.capacity {
            self.dropped += 1;
            return;
        }
        self.append(kind);
    }

    /// Removes and returns up to `max` events (0 = all), oldest first.
    pub fn drain(&mut self, max: usize) -> Vec<Event> {
        let n = if max == 0 {
            self.queue.len()
        } else {
            max.min(self.queue.len())
        };
        let out: Vec<Event> = self.queue.drain(..n).collect();
        self.flush_dropped();
        out
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn flush_dropped(&mut self) {
        if self.dropped > 0 && self.queue.len() < self.capacity {
            let count = std::mem::take(&mut self.dropped);
            self.append(EventKind::EventsDropped { count });
        }
    }

    fn append(&mut self, kind: EventKind) {
        self.queue.push_back(Event {
            seq: self.next_seq,
            ts_ms: clock::now_ms(),
            kind,
        });
        self.next_seq += 1;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `worker_ready` of worker `g#i` (pid `i`); the logging tests use it too.
    pub(crate) fn ready(i: i32) -> EventKind {
        EventKind::WorkerReady {
            group_name: "g".into(),
            worker_id: format!("g#{i}"),
            pid: i,
            generation: 1,
        }
    }

    #[test]
    fn serializes_kind_and_fields_flat() {
        let mut q = EventQueue::new(8);
        q.push(ready(7));
        let json = serde_json::to_value(&q.drain(0)[0]).unwrap();
        assert_eq!(json["seq"], 1);
        assert_eq!(json["kind"], "worker_ready");
        assert_eq!(json["worker_id"], "g#7");
        assert_eq!(json["generation"], 1);
        assert!(json["ts_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }

    #[test]
    fn the_tap_sees_every_event_even_the_dropped_ones() {
        let mut q = EventQueue::new(2);
        q.set_tap(true);
        for i in 0..5 {
            q.push(ready(i));
        }
        assert_eq!(q.take_tapped().len(), 5);
        assert!(q.take_tapped().is_empty());
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn overflow_is_counted_and_reported_in_place_with_gapless_seq() {
        let mut q = EventQueue::new(4);
        for i in 0..10 {
            q.push(ready(i));
        }
        assert_eq!(q.len(), 4);
        let first = q.drain(2);
        // Room again: the marker comes right after the events that were kept.
        let rest = q.drain(0);
        q.push(ready(99));
        let last = q.drain(0);
        let all: Vec<Event> = first.into_iter().chain(rest).chain(last).collect();
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(all[4].kind, EventKind::EventsDropped { count: 6 });
        assert_eq!(all[5].kind, ready(99));
    }
}
