//! What the core asks the runtime to do. Transitions only record effects; the runtime carries
//! them out (spawns on its spawner threads, signals and writes at once).

use std::sync::Arc;

use crate::core::plan::Plan;
use crate::core::probes::ProbeJob;
use crate::core::worker::Key;

/// Spawn one process for worker `key`.
#[derive(Debug, Clone)]
pub struct SpawnJob {
    pub key: Key,
    pub plan: Arc<Plan>,
    pub id: String,
}

#[derive(Debug)]
pub enum Effect {
    Spawn(SpawnJob),
    /// Send `signal` to the worker's process group (and to the worker, in case it left it).
    Signal {
        key: Key,
        signal: i32,
    },
    /// Send `signal` to the worker's process group (`group`) or to the worker alone, as its
    /// group's `kill_mode` says (`signal_group`, `reload_groups`).
    SignalAs {
        key: Key,
        signal: i32,
        group: bool,
    },
    /// Read the worker's resident set and tell the core (`State::rss_sampled`).
    SampleRss {
        key: Key,
    },
    /// Send one line (without its `\n`) on the worker's control channel, if it has one.
    Send {
        key: Key,
        line: Vec<u8>,
    },
    /// Probe the worker's process as its group says (the probe thread, `runtime/probes/`).
    Probe(ProbeJob),
    /// Ask the worker to stop: `STOP DRAIN`/`STOP NOW` on its channel, or `signal` when it has
    /// no usable channel: to its process group, or to the worker alone unless `group`.
    Stop {
        key: Key,
        drain: bool,
        signal: i32,
        group: bool,
    },
}
