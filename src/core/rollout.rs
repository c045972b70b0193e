//! Rolling restarts, as Kubernetes' Deployment controller does them: slot by slot a new worker
//! is started, and the old one of its slot is stopped only once the new one is ready; never more
//! than `max_surge` workers above the target, never more than `max_unavailable` below it. A new
//! worker that fails halts the rollout and the old workers stay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::effects::Effect;
use crate::core::group::{Rollout, RolloutOptions, RolloutState};
use crate::core::plan::Plan;
use crate::core::state::State;
use crate::core::worker::{Key, Role};
use crate::error::{Error, Result};
use crate::events::{EventKind, ExitReason};

impl State {
    /// Starts replacing every worker of a started group by one that runs `plan`.
    pub fn begin_rollout(
        &mut self,
        name: &str,
        plan: Arc<Plan>,
        options: RolloutOptions,
        now: Instant,
    ) -> Result<()> {
        if options.max_surge == 0 && options.max_unavailable == 0 {
            return Err(Error::InvalidArgument(
                "max_surge and max_unavailable cannot both be 0".into(),
            ));
        }
        let Some(g) = self.groups.get(name).filter(|g| g.started) else {
            return Err(Error::InvalidArgument(format!(
                "group '{name}' is not started"
            )));
        };
        if g.failed {
            return Err(Error::InvalidArgument(format!(
                "group '{name}' has failed; start it again"
            )));
        }
        if g.running_rollout().is_some() {
            return Err(Error::InvalidArgument(format!(
                "group '{name}' is already being rolled out"
            )));
        }
        let target = g.target;
        self.cancel_replacements(name);
        let generation = self.next_generation(name);
        let g = self.groups.get_mut(name).expect("checked");
        g.rollout = Some(Rollout {
            generation,
            plan,
            options,
            pending: (1..=target).collect(),
            replacing: BTreeMap::new(),
            replaced: 0,
            started_at: now,
            state: RolloutState::Running,
        });
        self.events.push(EventKind::RolloutStarted {
            group_name: name.to_string(),
            generation,
            workers: target,
        });
        self.advance_rollout(name, now);
        Ok(())
    }

    /// How long a new worker of the group's running rollout may take to be ready; None when
    /// there is no such rollout or its `ready_timeout_ms` is 0 (off, as for a group's own).
    pub(crate) fn rollout_ready_timeout(&self, name: &str) -> Option<Duration> {
        let r = self.groups.get(name)?.rollout.as_ref()?;
        let timeout = r.options.ready_timeout;
        (r.state == RolloutState::Running && !timeout.is_zero()).then_some(timeout)
    }

    /// Starts replacements and stops old workers as far as the bounds allow; finishes the
    /// rollout when every slot is done.
    pub(crate) fn advance_rollout(&mut self, name: &str, now: Instant) {
        loop {
            let Some(g) = self.groups.get(name) else {
                return;
            };
            let Some(r) = g.running_rollout() else {
                return;
            };
            if r.pending.is_empty() && r.replacing.is_empty() {
                self.finish_rollout(name, now);
                return;
            }
            let target = g.target;
            let (counting, ready) = self.capacity(name);
            let opts = r.options;
            if let Some(&slot) = r.pending.front() {
                if counting < target + opts.max_surge {
                    let (plan, generation) = (Arc::clone(&r.plan), r.generation);
                    let job = self.new_worker(&plan, slot, generation, Role::Surge);
                    let r = self.rollout_mut(name);
                    r.pending.pop_front();
                    r.replacing.insert(slot, job.key);
                    self.effect(Effect::Spawn(job));
                    continue;
                }
            }
            // No room above the target: an old worker may go first, within max_unavailable.
            let unavailable = target.saturating_sub(ready);
            let candidates: Vec<u32> = r
                .replacing
                .keys()
                .copied()
                .chain(r.pending.front().copied())
                .collect();
            let old = candidates.into_iter().find_map(|slot| {
                self.old_workers(name, slot).into_iter().find(|k| {
                    let w = &self.workers[k];
                    w.counts() && (!w.ready() || unavailable < opts.max_unavailable)
                })
            });
            match old {
                Some(key) => self.retire(key, now),
                None => return,
            }
        }
    }

    /// Workers that count towards the target, and how many of them are ready.
    fn capacity(&self, name: &str) -> (u32, u32) {
        let workers = self.keys_of(name).into_iter().map(|k| &self.workers[&k]);
        let counting: Vec<_> = workers.filter(|w| w.counts()).collect();
        let ready = counting.iter().filter(|w| w.ready()).count() as u32;
        (counting.len() as u32, ready)
    }

    fn rollout_mut(&mut self, name: &str) -> &mut Rollout {
        self.groups
            .get_mut(name)
            .and_then(|g| g.rollout.as_mut())
            .expect("a rollout in progress")
    }

    /// The group's ordinary workers of one slot (a slot's surge worker is not among them).
    fn old_workers(&self, name: &str, slot: u32) -> Vec<Key> {
        self.keys_of(name)
            .into_iter()
            .filter(|k| {
                let w = &self.workers[k];
                w.index == slot && w.role == Role::Member
            })
            .collect()
    }

    /// Stops an old worker for good, or forgets it when it has no process.
    fn retire(&mut self, key: Key, now: Instant) {
        if self.workers[&key].alive() {
            self.stop_for_good(key, now);
        } else {
            self.remove(key);
        }
    }

    /// A surge worker became ready: it takes its slot, and the old worker of the slot goes.
    pub(crate) fn replace_slot(&mut self, key: Key, now: Instant) {
        let w = &self.workers[&key];
        let (name, slot, new_pid, generation) = (w.group.clone(), w.index, w.pid, w.generation);
        let old = self.old_workers(&name, slot);
        let old_pid = old
            .iter()
            .map(|k| &self.workers[k])
            .find(|w| w.alive())
            .map(|w| w.pid);
        for k in old {
            if self.workers[&k].counts() {
                self.retire(k, now);
            }
        }
        self.workers.get_mut(&key).expect("ready").role = Role::Member;
        let id = self.workers[&key].id.clone();
        let r = self.rollout_mut(&name);
        r.replacing.remove(&slot);
        r.replaced += 1;
        self.events.push(EventKind::WorkerReplaced {
            group_name: name.clone(),
            worker_id: id,
            generation,
            old_pid,
            new_pid,
        });
        self.advance_rollout(&name, now);
    }

    fn finish_rollout(&mut self, name: &str, now: Instant) {
        let g = self.groups.get_mut(name).expect("has a rollout");
        let r = g.rollout.take().expect("has a rollout");
        g.plan = r.plan;
        g.generation = r.generation;
        self.events.push(EventKind::RolloutFinished {
            group_name: name.to_string(),
            generation: r.generation,
            duration_ms: now.saturating_duration_since(r.started_at).as_millis() as u64,
        });
    }

    /// Halts a rollout: the failed new worker and the other new ones that are not ready go, the
    /// old workers stay, and empty slots get a worker of the old configuration.
    pub(crate) fn fail_rollout(
        &mut self,
        name: &str,
        worker_id: &str,
        reason: String,
        now: Instant,
    ) {
        let Some(r) = self
            .groups
            .get_mut(name)
            .and_then(|g| g.rollout.as_mut())
            .filter(|r| r.state == RolloutState::Running)
        else {
            return;
        };
        r.state = RolloutState::Failed {
            worker_id: worker_id.to_string(),
            reason: reason.clone(),
        };
        let generation = r.generation;
        let surge: Vec<Key> = std::mem::take(&mut r.replacing).into_values().collect();
        r.pending.clear();
        self.events.push(EventKind::RolloutFailed {
            group_name: name.to_string(),
            worker_id: worker_id.to_string(),
            generation,
            reason: reason.clone(),
        });
        for key in surge {
            let Some(w) = self.workers.get(&key) else {
                continue;
            };
            if w.id == worker_id && reason == "ready_timeout" {
                self.fail_for(key, ExitReason::ReadyTimeout);
            } else if w.alive() {
                self.kill(key);
            } else {
                self.remove(key);
            }
        }
        self.fill(name, now);
    }

    /// Gives every slot up to the target that has no worker one of the group's configuration.
    pub(crate) fn fill(&mut self, name: &str, _now: Instant) {
        let Some(g) = self.groups.get(name).filter(|g| g.started && !g.failed) else {
            return;
        };
        let (plan, generation, target) = (Arc::clone(&g.plan), g.generation, g.target);
        let taken: BTreeSet<u32> = self
            .keys_of(name)
            .iter()
            .map(|k| &self.workers[k])
            .filter(|w| w.counts())
            .map(|w| w.index)
            .collect();
        for index in (1..=target).filter(|i| !taken.contains(i)) {
            let job = self.new_worker(&plan, index, generation, Role::Member);
            self.effect(Effect::Spawn(job));
        }
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
