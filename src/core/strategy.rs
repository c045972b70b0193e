//! `restart_strategy: one_for_all`: a worker that is respawned takes every other running worker
//! of its group with it. The others are stopped gracefully (a kill after `stop_timeout_ms`) and
//! respawned once gone, with the same delay; only the worker that ended counts against the
//! group's restart intensity.

use std::time::{Duration, Instant};

use crate::config::RestartStrategy;
use crate::core::state::State;
use crate::core::timers::Timer;
use crate::core::worker::{Key, Phase, Role};
use crate::events::EventKind;

impl State {
    /// The worker `key` ended and is respawned after `delay`: under `one_for_all`, its group's
    /// other running members go too.
    pub(crate) fn restart_the_others(&mut self, key: Key, delay: Duration, now: Instant) {
        let Some(w) = self.workers.get(&key) else {
            return;
        };
        if w.plan.spec.restart_strategy != RestartStrategy::OneForAll || w.role != Role::Member {
            return;
        }
        let group = w.group.clone();
        for other in self.keys_of(&group) {
            let w = &self.workers[&other];
            if other == key
                || w.role != Role::Member
                || !matches!(w.phase, Phase::Starting | Phase::Ready { .. })
            {
                continue;
            }
            self.workers
                .get_mut(&other)
                .expect("listed")
                .respawn_after_stop = Some(delay);
            self.stop_for_good(other, now);
        }
    }

    /// A worker stopped by `one_for_all` is gone: it waits for its respawn instead of being
    /// removed. False when it is to be removed (not such a worker, or its group stopped).
    pub(crate) fn respawn_stopped(&mut self, key: Key, now: Instant) -> bool {
        let Some(w) = self.workers.get_mut(&key) else {
            return false;
        };
        let Some(delay) = w.respawn_after_stop.take() else {
            return false;
        };
        let (group, index) = (w.group.clone(), w.index);
        // A replacement or a rollout's new worker that became ready meanwhile serves the slot.
        let served = self.keys_of(&group).into_iter().any(|k| {
            let o = &self.workers[&k];
            k != key && o.index == index && o.role == Role::Member && o.alive()
        });
        let w = self.workers.get_mut(&key).expect("looked up above");
        if served {
            return false;
        }
        // A scale-down meanwhile may have left no room for its index.
        let running = self
            .groups
            .get(&w.group)
            .is_some_and(|g| g.started && !g.failed && w.index <= g.target);
        if !running {
            return false;
        }
        w.phase = Phase::Restarting;
        let event = EventKind::WorkerRestarting {
            group_name: w.group.clone(),
            worker_id: w.id.clone(),
            generation: w.generation,
            // Its own backoff is untouched: it did not fail.
            attempt: w.backoff.consecutive + 1,
            delay_ms: delay.as_millis() as u64,
        };
        self.events.push(event);
        self.arm(now + delay, key, Timer::Respawn);
        true
    }
}

#[cfg(test)]
#[path = "strategy_tests.rs"]
mod tests;
