//! Lifecycle events: their shapes, and the bounded queue the host drains.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};

use serde::Serialize;

use crate::logging::Logger;
use crate::sys;

/// The default bound of the event queue.
pub(crate) const DEFAULT_CAPACITY: usize = 65_536;

/// How a stop was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    Graceful,
    Forced,
}

/// What an event says; serialized as `"kind": "<snake_case name>"` plus the fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    WorkerSpawned {
        group_name: String,
        worker_id: String,
        pid: i32,
        stop_strategy: &'static str,
        control_channel: &'static str,
        readiness: &'static str,
    },
    SupervisorStartGroups {
        group_count: usize,
        worker_count: usize,
    },
    WorkerReady {
        group_name: String,
        worker_id: String,
        pid: i32,
    },
    WorkerStopping {
        group_name: String,
        worker_id: String,
        pid: i32,
        mode: StopMode,
    },
    WorkerStopped {
        group_name: String,
        worker_id: String,
        pid: i32,
        mode: StopMode,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    WorkerFailed {
        group_name: String,
        worker_id: String,
        pid: i32,
        reason: &'static str,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    StopEventUnavailable {
        group_name: String,
        worker_id: String,
        fallback: &'static str,
        error: String,
    },
    WorkerProtocolError {
        group_name: String,
        worker_id: String,
        pid: i32,
        error: String,
    },
    EventsDropped {
        count: u64,
    },
    WorkerRestarting {
        group_name: String,
        worker_id: String,
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
}

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub seq: u64,
    pub ts_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A bounded FIFO of events with an eventfd that is readable while the queue is not empty.
///
/// When the queue is full, new events are dropped and counted; as soon as there is room again an
/// `events_dropped` event takes the place where they were lost, so `seq` stays gapless.
#[derive(Debug)]
pub struct EventQueue {
    queue: VecDeque<Event>,
    capacity: usize,
    next_seq: u64,
    dropped: u64,
    readable: OwnedFd,
    /// Where every event also goes as a log record (`configure_lifecycle_logging`).
    logger: Option<Logger>,
}

impl EventQueue {
    pub fn new(capacity: usize) -> std::io::Result<Self> {
        Ok(EventQueue {
            queue: VecDeque::new(),
            capacity: capacity.max(2),
            next_seq: 1,
            dropped: 0,
            readable: sys::eventfd()?,
            logger: None,
        })
    }

    /// The descriptor the host may poll; owned by the queue.
    pub fn fd(&self) -> i32 {
        self.readable.as_raw_fd()
    }

    /// Replaces the logger; the old one is returned so that the caller can drop it (which waits
    /// for its writer) outside any lock.
    pub fn set_logger(&mut self, logger: Option<Logger>) -> Option<Logger> {
        std::mem::replace(&mut self.logger, logger)
    }

    pub fn logger(&self) -> Option<&Logger> {
        self.logger.as_ref()
    }

    pub fn push(&mut self, kind: EventKind) {
        // Logged before the bound applies, so the log stays whole even when nobody drains.
        if let Some(logger) = &self.logger {
            logger.log(&Event {
                seq: self.next_seq,
                ts_ms: sys::now_ms(),
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
        if self.queue.is_empty() {
            sys::eventfd_reset(&self.readable);
        }
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
        if self.queue.is_empty() {
            sys::eventfd_signal(&self.readable);
        }
        self.queue.push_back(Event {
            seq: self.next_seq,
            ts_ms: sys::now_ms(),
            kind,
        });
        self.next_seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(i: i32) -> EventKind {
        EventKind::WorkerReady {
            group_name: "g".into(),
            worker_id: format!("g#{i}"),
            pid: i,
        }
    }

    fn fd_readable(q: &EventQueue) -> bool {
        let mut p = libc::pollfd {
            fd: q.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn serializes_kind_and_fields_flat() {
        let mut q = EventQueue::new(8).unwrap();
        q.push(ready(7));
        let json = serde_json::to_value(&q.drain(0)[0]).unwrap();
        assert_eq!(json["seq"], 1);
        assert_eq!(json["kind"], "worker_ready");
        assert_eq!(json["worker_id"], "g#7");
        assert!(json["ts_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }

    #[test]
    fn fd_is_readable_exactly_while_events_wait() {
        let mut q = EventQueue::new(8).unwrap();
        assert!(!fd_readable(&q));
        q.push(ready(1));
        q.push(ready(2));
        assert!(fd_readable(&q));
        assert_eq!(q.drain(1).len(), 1);
        assert!(fd_readable(&q));
        assert_eq!(q.drain(0).len(), 1);
        assert!(!fd_readable(&q));
    }

    #[test]
    fn overflow_is_counted_and_reported_in_place_with_gapless_seq() {
        let mut q = EventQueue::new(4).unwrap();
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
