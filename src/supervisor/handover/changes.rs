//! Changes in progress cross the handover, so that a prepare succeeds at any moment (a rollout
//! of slow-starting workers may take minutes): the prepare stops every change from beginning,
//! and what had begun goes on in the next image where it was.
//!
//! - A rollout crosses with its slots (pending, being replaced, done), its options and its
//!   start; its surge workers keep their role, their `RolloutReady` deadlines are among the
//!   timers. The next image goes on with the same bounds (`max_surge`, `max_unavailable`).
//! - Groups waiting for their dependencies cross with their plans and start once their
//!   conditions hold.
//! - A worker being stopped or killed crosses in that phase: its stop request or SIGKILL was
//!   sent already, and its stop deadline (`StopTimeout`) is among the timers, so it is killed
//!   when the deadline that was running falls due.
//! - A reload crosses with its signal time, whether `RELOADING=1` came, and its deadline; a
//!   replacement (recycling, `replace_worker`) with its role and what it replaces.
//! - Spawns in flight are landed before the state is written (`land_spawns`): the spawner
//!   threads do not survive the `exec`, and a process spawned unseen would be lost and spawned
//!   twice. A spawn takes milliseconds; one that has not arrived after `SPAWN_BOUND` makes the
//!   prepare fail with `NotReady` (the supervisor goes on: try again).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::core::group::{Rollout, RolloutOptions, RolloutState as Progress};
use crate::core::one_group::Reload;
use crate::core::plan::Plan;
use crate::core::state::State;
use crate::core::worker::{Key, Phase};
use crate::error::{Error, Result};
use crate::runtime::engine::Engine;
use crate::sync::lock;

use super::state::Clock;
use super::Supervisor;

/// How long a prepare waits for the spawns in flight to arrive.
const SPAWN_BOUND: Duration = Duration::from_secs(2);

/// A rolling restart (`core::group::Rollout`), its times on the state's clock.
#[derive(Debug, Serialize, Deserialize)]
pub struct RolloutState {
    pub generation: u32,
    /// Its plan's index.
    pub plan: usize,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub ready_timeout_ms: u64,
    pub pending: Vec<u32>,
    /// Slot → its new worker's key.
    pub replacing: Vec<(u32, Key)>,
    pub replaced: u32,
    pub started_at: i64,
    /// Halted: (the worker that failed, why).
    pub failed: Option<(String, String)>,
}

/// A reload in progress (`core::one_group::Reload`), its times on the state's clock.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReloadState {
    pub since: i64,
    pub confirmed: bool,
    pub until: Option<i64>,
}

pub fn rollout_state(r: &Rollout, plan: usize, clock: &Clock) -> RolloutState {
    RolloutState {
        generation: r.generation,
        plan,
        max_surge: r.options.max_surge,
        max_unavailable: r.options.max_unavailable,
        ready_timeout_ms: r.options.ready_timeout.as_millis() as u64,
        pending: r.pending.iter().copied().collect(),
        replacing: r.replacing.iter().map(|(&s, &k)| (s, k)).collect(),
        replaced: r.replaced,
        started_at: clock.offset(r.started_at),
        failed: match &r.state {
            Progress::Running => None,
            Progress::Failed { worker_id, reason } => Some((worker_id.clone(), reason.clone())),
        },
    }
}

pub fn rollout_of(r: RolloutState, plan: Arc<Plan>, clock: &Clock) -> Rollout {
    Rollout {
        generation: r.generation,
        plan,
        options: RolloutOptions {
            max_surge: r.max_surge,
            max_unavailable: r.max_unavailable,
            ready_timeout: Duration::from_millis(r.ready_timeout_ms),
        },
        pending: VecDeque::from(r.pending),
        replacing: r.replacing.into_iter().collect(),
        replaced: r.replaced,
        started_at: clock.instant(r.started_at),
        state: match r.failed {
            None => Progress::Running,
            Some((worker_id, reason)) => Progress::Failed { worker_id, reason },
        },
    }
}

pub fn reload_state(r: &Reload, clock: &Clock) -> ReloadState {
    ReloadState {
        since: clock.offset(r.since),
        confirmed: r.confirmed,
        until: r.until.map(|t| clock.offset(t)),
    }
}

pub fn reload_of(r: ReloadState, clock: &Clock) -> Reload {
    Reload {
        since: clock.instant(r.since),
        confirmed: r.confirmed,
        until: r.until.map(|t| clock.instant(t)),
    }
}

/// The groups waiting for their dependencies, each with its plan's index from `index`.
pub fn waiting_state(
    core: &State,
    mut index: impl FnMut(&Arc<Plan>) -> usize,
) -> Vec<(String, usize)> {
    core.waiting
        .iter()
        .map(|(name, plan)| (name.clone(), index(plan)))
        .collect()
}

/// Refuses a state with a spawn in flight (`land_spawns` landed them all; this is the check
/// made under the lock the state is written under).
pub fn check_landed(engine: &Engine, outcomes_pending: bool) -> Result<()> {
    match spawning(engine) {
        Some(id) => Err(in_flight(id)),
        None if outcomes_pending => Err(in_flight("a worker")),
        None => Ok(()),
    }
}

/// The id of a worker whose spawn has not arrived, if any.
fn spawning(engine: &Engine) -> Option<&str> {
    engine
        .core
        .workers
        .values()
        .find(|w| w.phase == Phase::Spawning)
        .map(|w| w.id.as_str())
}

fn in_flight(who: &str) -> Error {
    Error::NotReady(format!(
        "cannot hand over while the spawn of {who} has not arrived after {} ms; try again",
        SPAWN_BOUND.as_millis()
    ))
}

impl Supervisor {
    /// With the monitor and the reaper stopped: waits (at most `SPAWN_BOUND`) until every spawn
    /// in flight has arrived and been taken as the monitor would (a child adopted, or a failure
    /// through the restart policy). Taking one may begin another (a failed spawn of a rollout
    /// fills its slot again): waited for as well. No probe starts meanwhile (`start_probes`).
    pub(super) fn land_spawns(&self) -> Result<()> {
        let until = Instant::now() + SPAWN_BOUND;
        loop {
            self.shared.spawner.collect(false);
            let outcomes = std::mem::take(&mut *lock(&self.shared.to_monitor.outcomes));
            if !outcomes.is_empty() {
                let mut engine = self.shared.lock();
                let now = Instant::now();
                for outcome in outcomes {
                    engine.take_outcome(outcome, now);
                }
                // Letting go settles: a spawn this began is submitted, and seen below.
            }
            let Some(id) = spawning(&self.shared.lock()).map(str::to_string) else {
                return Ok(());
            };
            if Instant::now() >= until {
                return Err(in_flight(&id));
            }
            // Spawns take milliseconds; their outcomes come from threads that wake nobody here.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
