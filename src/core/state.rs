//! Everything the supervisor knows, and the transitions the host's calls make. No system
//! calls: each transition updates the state, queues events and records effects for the runtime.
//! The transitions driven by the kernel (spawned, exited, a line, a timer) are in `lifecycle.rs`,
//! rolling restarts in `rollout.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::GroupSpec;
use crate::core::effects::{Effect, SpawnJob};
use crate::core::group::Group;
use crate::core::plan::Plan;
use crate::core::timers::{Timer, Timers};
use crate::core::worker::{Key, Phase, Role, Worker};
use crate::error::{Error, Result};
use crate::events::{EventKind, EventQueue, StopMode};

/// What `wait_ready` would answer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// No worker counts: false at once.
    NoWorkers,
    /// A worker or a rollout failed: false at once.
    Failed,
    AllReady,
    Pending,
}

pub struct State {
    pub config: BTreeMap<String, GroupSpec>,
    pub groups: BTreeMap<String, Group>,
    pub workers: HashMap<Key, Worker>,
    pub events: EventQueue,
    pub(crate) timers: Timers,
    /// The last generation each group name ran, so generations only grow.
    pub(crate) generations: HashMap<String, u32>,
    pub(crate) next_key: Key,
    /// Set by `shutdown`; later calls fail as if the handle were invalid.
    pub closed: bool,
    /// Set by a handover's prepare (`supervisor/handover/`) until it is aborted: every call
    /// fails, nothing changes.
    pub handed_over: bool,
    /// How many worker records were ever removed: a call waiting for workers to go needs to
    /// look again only once this has grown by as many as it still waits for.
    pub removed: u64,
    effects: Vec<Effect>,
    /// Groups started and waiting for their dependencies (`depends.rs`), with their plans.
    pub(crate) waiting: BTreeMap<String, Arc<Plan>>,
}

impl State {
    pub fn new(event_capacity: usize) -> State {
        State {
            config: BTreeMap::new(),
            groups: BTreeMap::new(),
            workers: HashMap::new(),
            events: EventQueue::new(event_capacity),
            timers: Timers::default(),
            generations: HashMap::new(),
            next_key: 1,
            closed: false,
            handed_over: false,
            removed: 0,
            effects: Vec::new(),
            waiting: BTreeMap::new(),
        }
    }

    /// The effects recorded since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub(crate) fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::InvalidHandle("the supervisor has been freed".into()));
        }
        if self.handed_over {
            return Err(Error::InvalidHandle(
                "the supervisor was handed over (mpsup_handover_prepare): only \
                 mpsup_handover_abort may use it now"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Every name is configured, or still has workers from an older configuration.
    pub fn check_known(&self, names: &[&str]) -> Result<()> {
        for &name in names {
            if !self.config.contains_key(name) && !self.groups.contains_key(name) {
                return Err(Error::UnknownGroup(name.to_string()));
            }
        }
        Ok(())
    }

    /// The configurations of the named groups, each once, in order.
    pub fn specs_of(&self, names: &[&str]) -> Result<Vec<GroupSpec>> {
        let mut seen = BTreeSet::new();
        let mut specs = Vec::new();
        for &name in names {
            let spec = self
                .config
                .get(name)
                .ok_or_else(|| Error::UnknownGroup(name.to_string()))?;
            if seen.insert(name) {
                specs.push(spec.clone());
            }
        }
        Ok(specs)
    }

    pub(crate) fn arm(&mut self, at: Instant, key: Key, timer: Timer) {
        let workers = &self.workers;
        self.timers
            .add(at, key, timer, |k| workers.contains_key(&k));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next generation of a group name: 1 at its first start, then one more each time.
    pub(crate) fn next_generation(&mut self, name: &str) -> u32 {
        let g = self.generations.entry(name.to_string()).or_insert(0);
        *g += 1;
        *g
    }

    /// Creates a worker waiting for its first process and returns the job that spawns it.
    pub(crate) fn new_worker(
        &mut self,
        plan: &Arc<Plan>,
        index: u32,
        generation: u32,
        role: Role,
    ) -> SpawnJob {
        let worker = Worker::new(Arc::clone(plan), index, generation, role);
        self.insert_spawning(worker)
    }

    /// Gives `worker` a new key in the `Spawning` phase, and returns its spawn job.
    pub(crate) fn insert_spawning(&mut self, mut worker: Worker) -> SpawnJob {
        let key = self.next_key;
        self.next_key += 1;
        worker.phase = Phase::Spawning;
        let job = SpawnJob {
            key,
            plan: Arc::clone(&worker.plan),
            id: worker.id.clone(),
        };
        if let Some(g) = self.groups.get_mut(&worker.group) {
            g.keys.insert((worker.index, key));
        }
        self.workers.insert(key, worker);
        job
    }

    /// Removes a worker record (its process, if any, is gone or is dealt with by the caller).
    pub(crate) fn remove(&mut self, key: Key) -> Option<Worker> {
        let w = self.workers.remove(&key)?;
        self.removed += 1;
        if let Some(g) = self.groups.get_mut(&w.group) {
            g.keys.remove(&(w.index, key));
        }
        Some(w)
    }

    /// Begins a start of the given groups (their old workers are already gone): makes each a
    /// fresh group at its next generation and returns the spawn jobs of all their workers.
    pub fn begin_start(&mut self, plans: Vec<Arc<Plan>>) -> Vec<SpawnJob> {
        let mut jobs = Vec::new();
        for plan in plans {
            let name = plan.spec.name.clone();
            for key in self.keys_of(&name) {
                self.remove(key);
            }
            let generation = self.next_generation(&name);
            self.groups
                .insert(name, Group::new(Arc::clone(&plan), generation));
            for index in 1..=plan.spec.workers {
                jobs.push(self.new_worker(&plan, index, generation, Role::Member));
            }
        }
        jobs
    }

    /// Ends a start: the `supervisor_start_groups` event, or, when a spawn failed, the groups are
    /// left stopped and every worker of them is killed: those a `scale` or a `restart_groups`
    /// (from another thread, while the start spawned without the core) added too.
    pub fn finish_start(&mut self, names: &[String], workers: usize, ok: bool) {
        if ok {
            self.events.push(EventKind::SupervisorStartGroups {
                group_count: names.len(),
                worker_count: workers,
            });
        } else {
            self.begin_force(Some(names));
        }
    }

    /// The keys of a group's workers in index order.
    pub fn keys_of(&self, name: &str) -> Vec<Key> {
        self.groups
            .get(name)
            .map(|g| g.keys.iter().map(|&(_, k)| k).collect())
            .unwrap_or_default()
    }

    fn keys_of_groups(&self, names: Option<&[String]>) -> Vec<Key> {
        match names {
            None => {
                // Every worker: those of the groups in order, then any other (none, normally).
                let mut keys: Vec<Key> = self.groups.keys().flat_map(|n| self.keys_of(n)).collect();
                let listed: BTreeSet<Key> = keys.iter().copied().collect();
                keys.extend(self.workers.keys().filter(|k| !listed.contains(k)));
                keys
            }
            Some(names) => names.iter().flat_map(|n| self.keys_of(n)).collect(),
        }
    }

    /// Sends `START` to every worker of the named groups, or to none when any is not ready.
    pub fn start_work(&mut self, names: &[&str]) -> Result<()> {
        self.check_known(names)?;
        let mut seen = BTreeSet::new();
        let names: Vec<String> = names
            .iter()
            .filter(|n| seen.insert(**n))
            .map(|n| n.to_string())
            .collect();
        let keys: Vec<Key> = names
            .iter()
            .flat_map(|n| self.keys_of(n))
            // Workers on their way out (a scale-down, a replaced one) neither need nor get it.
            .filter(|k| !matches!(self.workers[k].phase, Phase::Stopping(_)))
            .collect();
        let mut missing: Vec<String> = names
            .iter()
            .filter(|n| {
                self.groups
                    .get(n.as_str())
                    .is_none_or(|g| g.keys.is_empty())
            })
            .map(|n| format!("{n}#*"))
            .collect();
        missing.extend(
            keys.iter()
                .map(|k| &self.workers[k])
                .filter(|w| !w.ready())
                .map(|w| w.id.clone()),
        );
        if !missing.is_empty() {
            missing.sort();
            return Err(Error::NotReady(format!(
                "workers not ready: {}",
                missing.join(", ")
            )));
        }
        for &key in &keys {
            self.effect(Effect::Send {
                key,
                line: crate::protocol::to_worker::START.to_vec(),
            });
        }
        for name in &names {
            if let Some(g) = self.groups.get_mut(name) {
                g.work_started = true;
            }
        }
        self.events.push(EventKind::SupervisorStartWork {
            group_count: names.len(),
            worker_count: keys.len(),
        });
        Ok(())
    }

    /// Asks every running worker of the named groups (every group when `None`) to stop
    /// gracefully and returns the keys to wait for. The groups stop: nothing of them is
    /// respawned, scaled or rolled out any more.
    pub fn begin_stop(&mut self, names: Option<&[String]>, drain: bool) -> Vec<Key> {
        self.mark_stopped(names);
        let keys = self.keys_of_groups(names);
        self.forget_dead(&keys);
        let keys = self.keys_of_groups(names);
        for &key in &keys {
            self.stop_gracefully(key, drain);
        }
        keys
    }

    /// `worker_stopping` (graceful) and the stop request, for a worker that runs and was not
    /// asked to stop yet.
    pub(crate) fn stop_gracefully(&mut self, key: Key, drain: bool) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        if !matches!(
            w.phase,
            Phase::Starting | Phase::Ready { .. } | Phase::Killed(_)
        ) {
            return;
        }
        w.phase = Phase::Stopping(StopMode::Graceful);
        let signal = w.plan.spec.stop_signal.number();
        let group = w.plan.spec.kill_mode == crate::config::KillMode::ProcessGroup;
        let event = w.stopping_event(StopMode::Graceful);
        self.events.push(event);
        self.effect(Effect::Stop {
            key,
            drain,
            signal,
            group,
        });
    }

    /// Kills the workers of the named groups (all when `None`): `worker_stopping` (forced) and
    /// SIGKILL for each one still running. Returns the keys to wait for.
    pub fn begin_force(&mut self, names: Option<&[String]>) -> Vec<Key> {
        self.mark_stopped(names);
        let keys = self.keys_of_groups(names);
        self.forget_dead(&keys);
        let keys = self.keys_of_groups(names);
        for &key in &keys {
            self.kill(key);
        }
        keys
    }

    /// The named groups (every group when `None`) are no longer started: nothing of them is
    /// respawned, scaled, rolled out or recycled any more.
    fn mark_stopped(&mut self, names: Option<&[String]>) {
        self.forget_waiting(names);
        let groups: Vec<String> = match names {
            Some(n) => n.to_vec(),
            None => self.groups.keys().cloned().collect(),
        };
        for name in &groups {
            if let Some(g) = self.groups.get_mut(name) {
                g.started = false;
                g.rollout = None;
                g.dependency_failed = None;
            }
        }
    }

    /// Kills the given workers (those still running) and returns them.
    pub fn begin_force_keys(&mut self, keys: &[Key]) -> Vec<Key> {
        self.forget_dead(keys);
        for &key in keys {
            self.kill(key);
        }
        keys.to_vec()
    }

    /// `worker_stopping` (forced) and SIGKILL, once per worker.
    pub(crate) fn kill(&mut self, key: Key) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        if !w.alive() || w.phase == Phase::Stopping(StopMode::Forced) {
            return;
        }
        w.phase = Phase::Stopping(StopMode::Forced);
        let event = w.stopping_event(StopMode::Forced);
        self.events.push(event);
        self.effect(Effect::Signal {
            key,
            signal: libc::SIGKILL,
        });
    }

    /// Forgets workers without a process (failed, waiting for a respawn, or not spawned yet: a
    /// child that arrives for a forgotten key is killed by the runtime).
    pub(crate) fn forget_dead(&mut self, keys: &[Key]) {
        for &key in keys {
            if self.workers.get(&key).is_some_and(|w| !w.alive()) {
                self.remove(key);
            }
        }
    }

    /// Marks SIGKILL as not effective for a worker (the kernel refused it, or it is stuck).
    pub fn unkillable(&mut self, key: Key, error: String) {
        if let Some(w) = self.workers.get(&key) {
            let event = w.unkillable_event(error);
            self.events.push(event);
        }
    }

    /// Sets the worker count of a started group.
    pub fn scale(&mut self, name: &str, to: u32, now: Instant) -> Result<()> {
        let Some(g) = self.groups.get(name).filter(|g| g.started) else {
            return Err(
                if self.config.contains_key(name) || self.groups.contains_key(name) {
                    Error::InvalidArgument(format!("group '{name}' is not started"))
                } else {
                    Error::UnknownGroup(name.to_string())
                },
            );
        };
        if g.failed {
            return Err(Error::InvalidArgument(format!(
                "group '{name}' has failed; start it again"
            )));
        }
        if g.running_rollout().is_some() {
            return Err(Error::InvalidArgument(format!(
                "group '{name}' is being rolled out; scale it when the rollout is over"
            )));
        }
        let from = g.target;
        self.groups.get_mut(name).expect("checked").target = to;
        self.events.push(EventKind::GroupScaled {
            group_name: name.to_string(),
            from,
            to,
        });
        // Down: the highest indices go; those without a process are just forgotten.
        for key in self.keys_of(name) {
            let w = &self.workers[&key];
            if w.index <= to || !w.counts() {
                continue;
            }
            if w.alive() {
                self.stop_for_good(key, now);
            } else {
                self.remove(key);
            }
        }
        // Up: every index up to the target without a worker gets one.
        self.fill(name, now);
        Ok(())
    }

    /// A graceful stop that becomes a kill after the group's `stop_timeout_ms`.
    pub(crate) fn stop_for_good(&mut self, key: Key, now: Instant) {
        let Some(w) = self.workers.get(&key) else {
            return;
        };
        let timeout = Duration::from_millis(w.plan.spec.stop_timeout_ms);
        self.stop_gracefully(key, true);
        self.arm(now + timeout, key, Timer::StopTimeout);
    }

    /// What `wait_ready` would answer now.
    pub fn readiness(&self) -> Readiness {
        if self.closed {
            return Readiness::NoWorkers;
        }
        let mut any = false;
        let mut all_ready = true;
        for w in self.workers.values() {
            match w.phase {
                // A completed group's workers exited 0 for good: it counts as ready.
                Phase::Failed if self.in_completed_group(w) => any = true,
                Phase::Failed => return Readiness::Failed,
                Phase::Stopping(_) => {}
                // A reload in progress is waited for, as the start was.
                Phase::Ready { .. } if w.reload.is_some() || w.probes.unready => {
                    any = true;
                    all_ready = false;
                }
                Phase::Ready { .. } => any = true,
                Phase::Spawning | Phase::Starting | Phase::Killed(_) | Phase::Restarting => {
                    any = true;
                    all_ready = false;
                }
            }
        }
        for g in self.groups.values() {
            match g.rollout.as_ref().map(|r| &r.state) {
                Some(crate::core::group::RolloutState::Failed { .. }) => return Readiness::Failed,
                Some(_) => all_ready = false,
                None => {}
            }
        }
        match self.dependency_readiness() {
            Some(Readiness::Failed) => return Readiness::Failed,
            Some(_) => (any, all_ready) = (true, false),
            None => {}
        }
        match (any, all_ready) {
            (false, _) => Readiness::NoWorkers,
            (true, true) => Readiness::AllReady,
            (true, false) => Readiness::Pending,
        }
    }

    /// The first of `keys` still tracked, if any.
    pub fn first_left(&self, keys: &[Key]) -> Option<&Worker> {
        keys.iter().find_map(|k| self.workers.get(k))
    }
}
