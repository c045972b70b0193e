//! Lifecycle events: their shapes (`kinds`), and the bounded queue the host drains (`queue`).
//!
//! Plain data: the queue knows nothing of descriptors or log writers. The runtime makes the
//! event fd follow `is_empty()` and hands the events of `take_tapped()` to the log writer.

mod kinds;
mod queue;

pub use kinds::*;
pub(crate) use queue::EventQueue;

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
