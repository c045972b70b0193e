//! What becomes of a spawn job, and where it goes.

use std::sync::mpsc::Sender;
use std::sync::Mutex;

use crate::core::worker::Key;
use crate::os::Flag;
use crate::runtime::child::Child;
use crate::sync::lock;

/// What became of one job.
#[derive(Debug)]
pub struct SpawnOutcome {
    pub key: Key,
    pub result: Result<Child, std::io::Error>,
}

/// Where a job's outcome goes.
#[derive(Debug, Clone)]
pub enum Reply {
    /// To the monitor, which adopts it (respawns, scale-ups, rollouts).
    Monitor,
    /// To a host call that waits for its whole batch (`start_groups`).
    Batch(Sender<SpawnOutcome>),
}

impl Reply {
    /// Hands `outcome` on without waking anyone: true when it went to the monitor, which the
    /// caller then wakes (where its flag is a number of the caller's table). A caller that
    /// stopped waiting drops the outcome, and with it the child (killed).
    pub(super) fn send(&self, monitor: &ToMonitor, outcome: SpawnOutcome) -> bool {
        match self {
            Reply::Monitor => {
                lock(&monitor.outcomes).push(outcome);
                true
            }
            Reply::Batch(tx) => {
                drop(tx.send(outcome));
                false
            }
        }
    }
}

/// Outcomes for the monitor, and the flag that wakes it.
#[derive(Debug)]
pub struct ToMonitor {
    pub outcomes: Mutex<Vec<SpawnOutcome>>,
    pub wake: Flag,
}

/// A failure shared by the jobs of one submission (an `io::Error` is not `Clone`).
pub(super) type Failure = (std::io::ErrorKind, String);

pub(super) fn failure(e: &std::io::Error) -> Failure {
    (e.kind(), e.to_string())
}

pub(super) fn error(f: &Failure) -> std::io::Error {
    std::io::Error::new(f.0, f.1.clone())
}
