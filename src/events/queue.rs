//! The bounded queue of events the host drains.

use std::collections::VecDeque;

use super::kinds::{Event, EventKind};
use crate::clock;

/// A bounded FIFO of events.
///
/// When the queue is full, new events are dropped and counted; as soon as there is room again an
/// `events_dropped` event takes the place where they were lost, so `seq` stays gapless. With the
/// tap on, every event (dropped ones too) is also kept for the log writer.
#[derive(Debug)]
pub(crate) struct EventQueue {
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

    /// The undrained events, the next sequence number and the count of dropped events not yet
    /// reported: what a handover carries.
    pub fn export(&self) -> (Vec<Event>, u64, u64) {
        (
            self.queue.iter().cloned().collect(),
            self.next_seq,
            self.dropped,
        )
    }

    /// Takes the place of the queue `export` described (the tap is left as it is).
    pub fn import(&mut self, events: Vec<Event>, next_seq: u64, dropped: u64) {
        self.queue = events.into();
        self.next_seq = next_seq;
        self.dropped = dropped;
    }

    #[cfg(test)]
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
