//! The deadline heap of the core: what is due when, for which worker process.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::core::worker::Key;

/// What a deadline is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Timer {
    Warmup,
    ReadyTimeout,
    Heartbeat,
    Respawn,
    /// A graceful stop of a scale-down or a rollout ran out of `stop_timeout_ms`.
    StopTimeout,
    /// A new worker of a rollout was not ready within the rollout's `ready_timeout_ms`.
    RolloutReady,
    /// A reloading worker was not ready again within its group's `ready_timeout_ms`.
    ReloadTimeout,
    /// A worker outlived its lifetime (`max_lifetime_ms` plus its jitter).
    Lifetime,
    /// Time to read a worker's resident set (`rss_sample_ms`).
    RssSample,
}

/// The heap size that first triggers a clean-up of stale timers.
const PRUNE_FLOOR: usize = 4096;

#[derive(Debug)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Key, Timer)>>,
    prune_at: usize,
    /// Where the grid of `on_grid` starts: the first instant it was asked about.
    grid_epoch: Option<Instant>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            prune_at: PRUNE_FLOOR,
            grid_epoch: None,
        }
    }
}

impl Timers {
    /// Arms a timer. Timers of gone workers are skipped when they fire; `keep` tells which keys
    /// still matter, so that they can be dropped in bulk when the heap has doubled (amortised
    /// O(1) per timer) and start/stop cycles with long timeouts do not grow it without bound.
    pub fn add(&mut self, at: Instant, key: Key, timer: Timer, keep: impl Fn(Key) -> bool) {
        if self.heap.len() >= self.prune_at {
            self.heap.retain(|Reverse((_, k, _))| keep(*k));
            self.prune_at = (2 * self.heap.len()).max(PRUNE_FLOOR);
        }
        self.heap.push(Reverse((at, key, timer)));
    }

    /// The first instant at or after `after` on a grid of step `every` shared by every caller.
    /// Periodic work of many workers (reading their resident sets) armed on it falls due in
    /// one wake-up of the monitor instead of one per worker.
    pub fn on_grid(&mut self, after: Instant, every: Duration) -> Instant {
        let epoch = *self.grid_epoch.get_or_insert(after);
        let step = every.as_nanos().max(1);
        let since = after.saturating_duration_since(epoch).as_nanos();
        let steps = since.div_ceil(step);
        // Past u64 nanoseconds (584 years) the grid is of no use: `after` itself then.
        u64::try_from(steps * step)
            .ok()
            .and_then(|n| epoch.checked_add(Duration::from_nanos(n)))
            .unwrap_or(after)
    }

    /// Every timer armed (stale ones too), in no order: what a handover carries.
    pub fn entries(&self) -> Vec<(Instant, Key, Timer)> {
        self.heap.iter().map(|Reverse(t)| *t).collect()
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes and returns every timer due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<(Key, Timer)> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, key, timer)) = self.heap.pop().expect("peeked");
            due.push((key, timer));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_timers_come_out_in_order_and_later_ones_stay() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.add(t0 + Duration::from_millis(30), 3, Timer::Respawn, |_| true);
        timers.add(t0 + Duration::from_millis(10), 1, Timer::Warmup, |_| true);
        timers.add(t0 + Duration::from_millis(20), 2, Timer::Heartbeat, |_| {
            true
        });
        assert_eq!(timers.next(), Some(t0 + Duration::from_millis(10)));
        let due = timers.pop_due(t0 + Duration::from_millis(20));
        assert_eq!(due, vec![(1, Timer::Warmup), (2, Timer::Heartbeat)]);
        assert_eq!(timers.next(), Some(t0 + Duration::from_millis(30)));
    }

    #[test]
    fn grid_instants_are_shared_and_never_early() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timers = Timers::default();
        assert_eq!(timers.on_grid(t0, ms(1000)), t0);
        // Two workers spawned 300 ms apart fall due together, each at least a step after.
        let a = timers.on_grid(t0 + ms(100) + ms(1000), ms(1000));
        let b = timers.on_grid(t0 + ms(400) + ms(1000), ms(1000));
        assert_eq!(a, t0 + ms(2000));
        assert_eq!(b, a);
        assert_eq!(timers.on_grid(t0 + ms(2000), ms(1000)), t0 + ms(2000));
        assert_eq!(timers.on_grid(t0 + ms(2001), ms(1000)), t0 + ms(3000));
        // Another step has its own multiples of the same epoch.
        assert_eq!(timers.on_grid(t0 + ms(1), ms(250)), t0 + ms(250));
    }

    #[test]
    fn pruning_looks_over_the_heap_only_each_time_it_has_doubled() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let calls = std::cell::Cell::new(0u64);
        for k in 0..20_000 {
            timers.add(t0, k, Timer::Warmup, |_| {
                calls.set(calls.get() + 1);
                true
            });
        }
        // Every timer of a live worker stays.
        assert_eq!(timers.entries().len(), 20_000);
        // Amortised O(1) per timer: 4096 + 8192 + 16384 looks, not one look per add.
        assert_eq!(calls.get(), 4096 + 8192 + 16384);
    }

    #[test]
    fn timers_of_gone_workers_are_pruned_when_the_heap_grows() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for k in 0..10_000 {
            timers.add(t0, k, Timer::Warmup, |k| k >= 9_990);
        }
        assert!(timers.heap.len() < 5_000);
    }
}
