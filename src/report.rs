//! What the host reads about its groups (the snapshot, a group's entry of the status), made
//! from the core's plain data.

use std::time::Instant;

use crate::core::group::RolloutState as CoreRolloutState;
use crate::core::state::State;
use crate::core::worker::{Phase, Worker};
use crate::runtime::figures::Readings as Figures;
use crate::snapshot::{Snapshot, WorkerSnapshot};
use crate::status::{GroupStatus, RolloutState, RolloutStatus};

/// One group's entry of the status: target, running, ready, generation, rollout (its listen
/// sockets are the runtime's to add).
pub(crate) fn group_status(core: &State, name: &str) -> GroupStatus {
    if core.waiting.contains_key(name) {
        // Started, its workers not spawned yet: they come once its dependencies are there.
        let target = core.config.get(name).map_or(0, |s| s.workers);
        return GroupStatus {
            started: true,
            target,
            waiting_for: core.waiting_for(name),
            ..GroupStatus::default()
        };
    }
    let Some(g) = core.groups.get(name) else {
        return GroupStatus::default();
    };
    let workers: Vec<_> = g
        .keys
        .iter()
        .filter_map(|(_, k)| core.workers.get(k))
        .collect();
    let running = workers
        .iter()
        .filter(|w| w.alive() && !matches!(w.phase, Phase::Stopping(_)))
        .count();
    // A worker reloading (`reload_groups`) is not ready until it says so again.
    let ready = workers
        .iter()
        .filter(|w| w.ready() && w.reload.is_none())
        .count();
    let rollout = g.rollout.as_ref().map(|r| {
        let (state, worker_id, reason) = match &r.state {
            CoreRolloutState::Running => (RolloutState::Running, None, None),
            CoreRolloutState::Failed { worker_id, reason } => (
                RolloutState::Failed,
                Some(worker_id.clone()),
                Some(reason.clone()),
            ),
        };
        RolloutStatus {
            generation: r.generation,
            state,
            replaced: r.replaced,
            remaining: (r.pending.len() + r.replacing.len()) as u32,
            worker_id,
            reason,
        }
    });
    let generation = g.running_rollout().map_or(g.generation, |r| r.generation);
    // A failed group keeps no worker count (nothing of it respawns until it is started again),
    // so the status calls it not started; the core's flag stays set until a stop or a force.
    let started = g.started && !g.failed;
    GroupStatus {
        started,
        failed: g.failed,
        generation,
        target: if started { g.target } else { 0 },
        running: running as u32,
        ready: ready as u32,
        rollout,
        listen: Vec::new(),
        waiting_for: Vec::new(),
    }
}

/// The groups a snapshot shows: started ones, and any that still has workers.
fn shown(core: &State) -> impl Iterator<Item = (&String, &crate::core::group::Group)> {
    core.groups
        .iter()
        .filter(|(_, g)| g.started || !g.keys.is_empty())
}

/// (pid, started_at_ms) of every live worker a snapshot shows.
pub(crate) fn live_processes(core: &State) -> Vec<(i32, u64)> {
    shown(core)
        .flat_map(|(_, g)| g.keys.iter())
        .filter_map(|(_, k)| core.workers.get(k))
        .filter(|w| w.alive())
        .map(|w| (w.pid, w.started_at_ms))
        .collect()
}

/// A worker's snapshot entry with its /proc figures.
fn entry(w: &Worker, now: Instant, figures: &Figures) -> WorkerSnapshot {
    let mut entry = w.snapshot(now);
    if w.alive() {
        if let Some(&(cpu, rss)) = figures.get(&(w.pid, w.started_at_ms)) {
            entry.cpu_ms = Some(cpu);
            entry.rss_bytes = Some(rss);
        }
    }
    entry
}

/// The snapshot: every shown group's worker entries in index order.
pub(crate) fn snapshot(core: &State, now: Instant, figures: &Figures) -> Snapshot {
    let groups = shown(core)
        .map(|(name, g)| {
            let workers = g
                .keys
                .iter()
                .filter_map(|(_, k)| core.workers.get(k))
                .map(|w| entry(w, now, figures))
                .collect();
            (name.clone(), workers)
        })
        .collect();
    Snapshot { groups }
}
