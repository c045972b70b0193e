//! Per-worker figures read from /proc when a snapshot is taken: outside the lock, merged into
//! the snapshot's entries by pid. A host that polls the snapshot often (every few ms) would
//! read /proc for every worker each time, so figures younger than `FRESH` are reused: they are
//! kept by pid and start time, so a reused pid never gets another process's figures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::os::notify::process_figures;
use crate::sync::lock;

/// How old reused figures may be.
pub const FRESH: Duration = Duration::from_millis(250);

/// (pid, started_at_ms) -> (when read, cpu_ms, rss_bytes).
type Cache = HashMap<(i32, u64), (Instant, u64, u64)>;

/// (pid, started_at_ms) -> (cpu_ms, rss_bytes).
pub type Readings = HashMap<(i32, u64), (u64, u64)>;

#[derive(Default)]
pub struct Figures {
    cache: Mutex<Cache>,
}

impl Figures {
    /// The figures of the given live processes, by (pid, started_at_ms): fresh enough cached ones,
    /// else read now. Only these stay cached.
    pub fn read(&self, live: &[(i32, u64)]) -> Readings {
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        let mut kept: Cache = HashMap::with_capacity(live.len());
        let mut out = HashMap::with_capacity(live.len());
        for &key in live {
            let reading = match cache.get(&key) {
                Some(&(at, cpu, rss)) if now.saturating_duration_since(at) < FRESH => {
                    Some((at, cpu, rss))
                }
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
