//! Per-worker figures read from /proc when a snapshot is taken: outside the lock, merged into
//! the snapshot's entries by pid. A host that polls the snapshot often (every few ms) would
//! read /proc for every worker each time, so figures younger than `FRESH` are reused: they are
//! kept by pid and start time, so a reused pid never gets another process's figures.
//!
//! Figures read together go stale together: with a thousand workers, one call in every
//! `FRESH` read a thousand files (about 10 ms, the p99 of a host's calls in
//! `bench/probe_load.c`). So one call reads again at most `REFRESH_BUDGET` stale figures and
//! reuses the others while they are younger than `MAX_AGE`; the reads spread over the calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::os::notify::process_figures;
use crate::sync::lock;

/// How old reused figures may be.
pub const FRESH: Duration = Duration::from_millis(250);
/// How many stale figures one call reads again at most (new workers' are always read).
pub const REFRESH_BUDGET: usize = 64;
/// Stale figures past the budget are reused until this old, then read whatever the budget.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// (pid, started_at_ms) -> (when read, cpu_ms, rss_bytes).
type Cache = HashMap<(i32, u64), (Instant, u64, u64)>;

/// (pid, started_at_ms) -> (cpu_ms, rss_bytes).
pub type Readings = HashMap<(i32, u64), (u64, u64)>;

#[derive(Default)]
pub struct Figures {
    cache: Mutex<Cache>,
}

impl Figures {
    /// The figures of the given live processes, by (pid, started_at_ms): fresh enough cached ones
    /// (or stale ones past this call's budget), else read now. Only these stay cached.
    pub fn read(&self, live: &[(i32, u64)]) -> Readings {
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        let mut kept: Cache = HashMap::with_capacity(live.len());
        let mut out = HashMap::with_capacity(live.len());
        let mut budget = REFRESH_BUDGET;
        for &key in live {
            let cached = cache.get(&key).copied();
            let age = cached.map(|(at, _, _)| now.saturating_duration_since(at));
            let reuse = match age {
                Some(age) if age < FRESH => true,
                Some(age) if age < MAX_AGE && budget == 0 => true,
                Some(age) if age < MAX_AGE => {
                    budget -= 1;
                    false
                }
                _ => false,
            };
            let reading = match cached {
                Some(reading) if reuse => Some(reading),
                _ => process_figures(key.0).map(|(cpu, rss)| (now, cpu, rss)),
            };
            if let Some((at, cpu, rss)) = reading {
                kept.insert(key, (at, cpu, rss));
                out.insert(key, (cpu, rss));
            }
        }
        *cache = kept;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of this very process (a live pid), `n` of them: `started_at` is only a key here.
    fn keys(n: u64) -> Vec<(i32, u64)> {
        (0..n).map(|s| (std::process::id() as i32, s)).collect()
    }

    /// Ages every cached reading by `by`.
    fn age(figures: &Figures, by: Duration) {
        for (at, _, _) in lock(&figures.cache).values_mut() {
            *at -= by;
        }
    }

    fn read_since(figures: &Figures, since: Instant) -> usize {
        lock(&figures.cache)
            .values()
            .filter(|(at, _, _)| *at >= since)
            .count()
    }

    #[test]
    fn one_call_reads_again_at_most_a_budget_of_stale_figures_and_every_one_past_max_age() {
        let figures = Figures::default();
        let live = keys(3 * REFRESH_BUDGET as u64);
        let first = Instant::now();
        assert_eq!(figures.read(&live).len(), live.len());
        assert_eq!(
            read_since(&figures, first),
            live.len(),
            "none cached yet: all read"
        );

        age(&figures, FRESH);
        let second = Instant::now();
        assert_eq!(
            figures.read(&live).len(),
            live.len(),
            "stale ones are still given"
        );
        assert_eq!(read_since(&figures, second), REFRESH_BUDGET);

        age(&figures, MAX_AGE);
        let third = Instant::now();
        figures.read(&live);
        assert_eq!(
            read_since(&figures, third),
            live.len(),
            "too old: all read again"
        );
    }
}
