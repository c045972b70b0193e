//! Recycling: one worker replaced as one slot of a rolling restart (a new process of its
//! `worker_id` first, the old one stopped gracefully once the new one is ready), when its
//! resident set outgrows `max_rss_bytes`, when it outlives its lifetime (`max_lifetime_ms` plus
//! its share of `lifetime_jitter_ms`), or when the host asks (`replace_worker`). The runtime
//! reads the resident set (`Effect::SampleRss`) and feeds it back (`rss_sampled`).

use std::time::{Duration, Instant};

use crate::core::effects::Effect;
use crate::core::state::State;
use crate::core::timers::Timer;
use crate::core::worker::{Key, Role};
use crate::error::{Error, Result};
use crate::events::{EventKind, RecycleReason};

/// How soon a worker whose lifetime is over is looked at again when it cannot be replaced yet
/// (not ready, its group being rolled out, or a replacement of its slot under way).
const LIFETIME_RETRY: Duration = Duration::from_secs(1);

/// What a replacement worker replaces, kept on it until it is ready (serde: it crosses a
/// handover as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replaces {
    pub reason: RecycleReason,
    pub old_pid: i32,
    pub rss_bytes: Option<u64>,
    pub age_ms: u64,
}

/// A worker's lifetime: `max` plus a share of `jitter` drawn from its key (splitmix64), so that
/// the workers of a group, spawned together, are not all replaced at once. No clock nor
/// random source: the core makes no system call.
pub(crate) fn lifetime(key: Key, max_ms: u64, jitter_ms: u64) -> Duration {
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let share = if jitter_ms == 0 {
        0
    } else {
        z % (jitter_ms + 1)
    };
    Duration::from_millis(max_ms.saturating_add(share))
}

impl State {
    /// Arms the recycling timers of a process just adopted, spawned at `at`.
    pub(crate) fn arm_recycling(&mut self, key: Key, at: Instant) {
        let spec = &self.workers[&key].plan.spec;
        let (max_life, jitter) = (spec.max_lifetime_ms, spec.lifetime_jitter_ms);
        let (max_rss, sample) = (spec.max_rss_bytes, spec.rss_sample_ms);
        if max_life > 0 {
            self.arm(at + lifetime(key, max_life, jitter), key, Timer::Lifetime);
        }
        if max_rss > 0 {
            // On the timers' grid, so that a group's samples are read in one wake-up.
            let every = Duration::from_millis(sample);
            let first = self.timers.on_grid(at + every, every);
            self.arm(first, key, Timer::RssSample);
        }
    }

    /// `replace_worker`: replaces the worker `worker_id` (`<group>#<index>`) of a started group.
    pub fn replace_worker(&mut self, worker_id: &str, now: Instant) -> Result<()> {
        let unknown = || Error::UnknownGroup(format!("no worker '{worker_id}'"));
        let (group, _) = worker_id.rsplit_once('#').ok_or_else(unknown)?;
        self.started_group(group)?;
        let key = self
            .keys_of(group)
            .into_iter()
            .find(|k| {
                let w = &self.workers[k];
                w.id == worker_id && w.role == Role::Member && w.counts()
            })
            .ok_or_else(unknown)?;
        if let Some(why) = self.not_recyclable(key) {
            return Err(Error::InvalidArgument(format!(
                "worker '{worker_id}' cannot be replaced now: {why}"
            )));
        }
        self.begin_replacement(key, RecycleReason::Requested, None, now);
        Ok(())
    }

    /// Why worker `key` cannot be replaced now, or None when it can.
    fn not_recyclable(&self, key: Key) -> Option<&'static str> {
        let w = &self.workers[&key];
        let g = self.groups.get(&w.group)?;
        if !g.started || g.failed {
            return Some("its group is not started");
        }
        if g.running_rollout().is_some() {
            return Some("its group is being rolled out");
        }
        if w.role != Role::Member || !w.ready() {
            return Some("it is not ready");
        }
        let busy = self.keys_of(&w.group).into_iter().any(|k| {
            let other = &self.workers[&k];
            other.index == w.index && other.role == Role::Replacement
        });
        busy.then_some("a replacement of it is under way")
    }

    /// Spawns the replacement of worker `key`, of the same plan, slot and generation.
    fn begin_replacement(
        &mut self,
        key: Key,
        reason: RecycleReason,
        rss_bytes: Option<u64>,
        now: Instant,
    ) {
        let w = &self.workers[&key];
        let replaces = Replaces {
            reason,
            old_pid: w.pid,
            rss_bytes,
            age_ms: w
                .spawned_at
                .map_or(0, |at| now.saturating_duration_since(at).as_millis() as u64),
        };
        let (plan, index, generation) = (w.plan.clone(), w.index, w.generation);
        let job = self.new_worker(&plan, index, generation, Role::Replacement);
        self.workers.get_mut(&job.key).expect("new").replaces = Some(replaces);
        self.effect(Effect::Spawn(job));
    }

    /// A replacement became ready: it takes its slot, the old worker of the slot is stopped
    /// gracefully (killed after `stop_timeout_ms`), and `worker_recycled`.
    pub(crate) fn replacement_ready(&mut self, key: Key, now: Instant) {
        let w = self.workers.get_mut(&key).expect("ready");
        let Some(r) = w.replaces.take() else {
            return;
        };
        w.role = Role::Member;
        let (group, index, id, generation, new_pid) =
            (w.group.clone(), w.index, w.id.clone(), w.generation, w.pid);
        for old in self.keys_of(&group) {
            let o = &self.workers[&old];
            if old == key || o.index != index || o.role != Role::Member {
                continue;
            }
            // One that crashed meanwhile (failed, or waiting for its respawn) is forgotten:
            // the slot is served. One being stopped already is left to end.
            if !o.alive() {
                self.remove(old);
            } else if o.counts() {
                self.stop_for_good(old, now);
            }
        }
        self.events.push(EventKind::WorkerRecycled {
            group_name: group,
            worker_id: id,
            generation,
            reason: r.reason,
            old_pid: r.old_pid,
            new_pid,
            rss_bytes: r.rss_bytes,
            age_ms: r.age_ms,
        });
    }

    /// A rolling restart of the group begins: replacements not ready yet are killed (the
    /// rollout replaces their slots), so that none of them retires a worker of the rollout.
    pub(crate) fn cancel_replacements(&mut self, name: &str) {
        for key in self.keys_of(name) {
            let w = &self.workers[&key];
            if w.role != Role::Replacement {
                continue;
            }
            if w.alive() {
                self.kill(key);
            } else {
                self.remove(key);
            }
        }
    }

    /// A replacement ended before it was ready (its `worker_failed` is queued): it goes, the
    /// old worker stays; one due for its lifetime is tried again after `restart_delay_ms`.
    pub(crate) fn replacement_failed(&mut self, key: Key, now: Instant) {
        let Some(w) = self.remove(key) else {
            return;
        };
        let lifetime = w
            .replaces
            .is_some_and(|r| r.reason == RecycleReason::MaxLifetime);
        if !lifetime {
            return;
        }
        let delay = Duration::from_millis(w.plan.spec.restart_delay_ms);
        for old in self.keys_of(&w.group) {
            let o = &self.workers[&old];
            if o.index == w.index && o.role == Role::Member && o.alive() {
                self.arm(now + delay, old, Timer::Lifetime);
            }
        }
    }

    /// The lifetime of worker `key` is over: it is replaced, or looked at again soon.
    pub(crate) fn lifetime_due(&mut self, key: Key, now: Instant) {
        if !self.workers[&key].counts() {
            return;
        }
        match self.not_recyclable(key) {
            None => self.begin_replacement(key, RecycleReason::MaxLifetime, None, now),
            Some(_) => self.arm(now + LIFETIME_RETRY, key, Timer::Lifetime),
        }
    }

    /// Time to read the resident set of worker `key`: asks the runtime, and arms the next one.
    pub(crate) fn sample_due(&mut self, key: Key, now: Instant) {
        let w = &self.workers[&key];
        if !w.alive() || !w.counts() {
            return;
        }
        let every = Duration::from_millis(w.plan.spec.rss_sample_ms);
        self.effect(Effect::SampleRss { key });
        // The next grid instant: one step on, though the monitor woke a little late.
        let next = self.timers.on_grid(now + every / 2, every);
        self.arm(next, key, Timer::RssSample);
    }

    /// The runtime read the resident set of worker `key` (None: it could not). Two samples in
    /// a row above `max_rss_bytes` replace the worker.
    pub fn rss_sampled(&mut self, key: Key, rss: Option<u64>, now: Instant) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        let max = w.plan.spec.max_rss_bytes;
        match rss {
            Some(bytes) if max > 0 && bytes > max => w.rss_over += 1,
            _ => w.rss_over = 0,
        }
        if w.rss_over < 2 || self.not_recyclable(key).is_some() {
            return;
        }
        self.workers.get_mut(&key).expect("sampled").rss_over = 0;
        self.begin_replacement(key, RecycleReason::MaxRss, rss, now);
    }
}

#[cfg(test)]
#[path = "recycle_tests.rs"]
mod tests;
