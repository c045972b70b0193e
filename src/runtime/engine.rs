//! The engine: the core and the descriptors it acts on, behind one lock (`Engine`), and what the
//! host's calls, the monitor and the reaper share (`Shared`). Letting go of the lock (`Locked`)
//! settles the engine: effects carried out, events passed on, lines sent without the lock, the
//! waiting calls woken.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock;
use crate::core::state::State;
use crate::core::worker::{ExitStatus, Key};
use crate::core::Spawned;
use crate::runtime::child;
use crate::runtime::io::Io;
use crate::runtime::output::Captures;
use crate::runtime::probes::Report;
use crate::runtime::reaper::Told;
use crate::runtime::sending;
use crate::runtime::spawner::{SpawnOutcome, Spawner, ToMonitor};
use crate::runtime::tokens::Tokens;
use crate::sync::lock;

/// How often workers without a pidfd (and unreaped orphans) are checked for an exit.
const POLL_TICK: Duration = Duration::from_millis(10);

/// The core and the descriptors it acts on, behind one lock.
pub struct Engine {
    pub core: State,
    pub io: Io,
    /// Until when the monitor sleeps (None: until a descriptor is ready): a new deadline
    /// before that must wake it.
    pub monitor_sleeps_until: Option<Instant>,
    pub to_monitor: Arc<ToMonitor>,
    /// What the host calls waiting for a change wait for.
    pub waiting: Waiting,
}

/// What the waiting host calls wait for, so that letting go of the lock wakes them only when
/// one of them may be done: a stop of 1,000 workers then wakes its caller a few times rather
/// than at every exit.
#[derive(Debug, Default)]
pub struct Waiting {
    /// Calls that look again at any change (`wait_ready`).
    any: usize,
    /// Calls waiting for workers to go: each looks again once `core.removed` reaches its entry.
    removed_at: Vec<u64>,
}

impl Waiting {
    fn due(&self, core: &State) -> bool {
        self.any > 0 || self.removed_at.iter().any(|&at| core.removed >= at)
    }
}

/// What one waiting call waits for.
#[derive(Debug, Clone, Copy)]
enum Interest {
    Any,
    RemovedAt(u64),
}

impl Engine {
    /// Carries out whatever the core asked for, feeds back what failed, and passes new events
    /// on to the event fd and the log writer.
    pub fn settle(&mut self) {
        loop {
            // Waiting groups whose conditions now hold start (or fail) in this same hold, and
            // groups restarted with a dependency roll out once it is ready again.
            self.core.advance_dependencies();
            if self.core.dependency_restarts_pending() {
                self.core.advance_dependency_restarts(Instant::now());
            }
            let effects = self.core.take_effects();
            if effects.is_empty() {
                break;
            }
            let samples = self.io.apply(effects);
            if !samples.is_empty() {
                let now = Instant::now();
                for (key, rss) in samples {
                    self.core.rss_sampled(key, rss, now);
                }
            }
        }
        self.io.out.sync(&mut self.core.events);
        let wanted = self.wake_at();
        if wanted.is_some_and(|at| self.monitor_sleeps_until.is_none_or(|until| at < until)) {
            self.monitor_sleeps_until = wanted;
            self.to_monitor.wake.set();
        }
    }

    /// When the monitor must look again even if no descriptor becomes ready: the next deadline,
    /// or the next poll of workers without a pidfd (and of unreaped orphans).
    pub fn wake_at(&self) -> Option<Instant> {
        let deadline = self.core.next_deadline();
        if self.io.has_polled() || child::have_orphans() {
            let tick = Instant::now() + POLL_TICK;
            return Some(deadline.map_or(tick, |d| d.min(tick)));
        }
        deadline
    }

    /// Adopts a spawned child as its worker, or kills it when nobody wants it any more; a failed
    /// spawn goes to the restart policy.
    pub fn take_outcome(&mut self, outcome: SpawnOutcome, now: Instant) {
        match outcome.result {
            Ok(child) => {
                let spawned = Spawned {
                    pid: child.pid,
                    has_channel: child.control.is_some(),
                    channel_error: child.channel_error.clone(),
                    at: child.spawned_at,
                    at_ms: child.spawned_at_ms,
                };
                let pid = child.pid;
                if self.core.adopt(outcome.key, spawned) {
                    self.io.register(outcome.key, child);
                    let spec = &self.core.workers[&outcome.key].plan.spec;
                    if spec.readiness == crate::config::Readiness::SdNotify {
                        let access = spec.notify_access;
                        // What it said before it was adopted counts now.
                        let early = self.io.notify.track(outcome.key, pid, access);
                        for message in early {
                            self.core.notify(outcome.key, message, now, clock::now_ms());
                        }
                    }
                }
                // Else `child` is dropped here, which kills it and has it reaped.
            }
            Err(error) => self.core.spawn_failed(outcome.key, error.to_string(), now),
        }
    }

    /// Whether worker `key` has exited: if so, it goes to the reaper, which tells the core
    /// once it has reaped it (`exit_reaped`).
    pub fn check_exit(&mut self, key: u64) -> bool {
        self.io.is_exiting(key) || self.io.check_exit(key)
    }

    /// The reaper reaped worker `key`, and drained its captured output.
    pub fn exit_reaped(
        &mut self,
        key: u64,
        status: ExitStatus,
        tail: Option<Vec<String>>,
        now: Instant,
    ) {
        self.io.exit_told(key);
        self.core.output_ended(key, tail);
        self.core.exited(key, status, now, clock::now_ms());
    }
}

/// What the host's calls, the monitor and the spawner share.
pub struct Shared {
    engine: Mutex<Engine>,
    /// Notified whenever the engine was used: waits re-check their condition.
    pub changed: Condvar,
    /// The monitor's epoll set and its token table.
    pub tokens: Arc<Tokens>,
    pub to_monitor: Arc<ToMonitor>,
    pub spawner: Arc<Spawner>,
    /// The engine's captured output, which the monitor reads without the engine's lock.
    pub captures: Arc<Mutex<Captures>>,
    /// Tells the monitor to end.
    pub shutdown: AtomicBool,
}

impl Shared {
    pub fn new(
        engine: Engine,
        tokens: Arc<Tokens>,
        to_monitor: Arc<ToMonitor>,
        spawner: Arc<Spawner>,
    ) -> Shared {
        Shared {
            captures: Arc::clone(&engine.io.captures),
            engine: Mutex::new(engine),
            changed: Condvar::new(),
            tokens,
            to_monitor,
            spawner,
            shutdown: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) -> Locked<'_> {
        Locked {
            guard: Some(crate::sync::lock(&self.engine)),
            engine: &self.engine,
            changed: &self.changed,
            sent_on: Vec::new(),
        }
    }
}

impl Told for Shared {
    /// Lets go of the reaped workers' captures, drains what their output still held (under the
    /// captures' lock only), and tells the core, all of them under one hold of each lock.
    fn exits_reaped(&self, exits: Vec<(Key, ExitStatus)>) {
        let tails: Vec<_> = {
            let mut captures = lock(&self.captures);
            exits
                .iter()
                .map(|&(key, _)| {
                    captures.release(key);
                    captures.take_ended(key)
                })
                .collect()
        };
        let mut engine = self.lock();
        let now = Instant::now();
        for ((key, status), tail) in exits.into_iter().zip(tails) {
            engine.exit_reaped(key, status, tail, now);
        }
    }
}

impl Report for Shared {
    fn probe_results(
        &self,
        results: Vec<(Key, crate::events::ProbeKind, Result<(), String>)>,
    ) -> Vec<bool> {
        let mut engine = self.lock();
        let now = Instant::now();
        results
            .into_iter()
            .map(|(key, which, result)| engine.core.probe_result(key, which, result, now))
            .collect()
    }
}

/// The locked engine. Letting go of it settles the engine first (effects carried out, events
/// passed on), sends the lines that go without the lock (`sending.rs`), and wakes the waiting
/// calls that may be done, so no path can forget any of these.
pub struct Locked<'a> {
    guard: Option<MutexGuard<'a, Engine>>,
    engine: &'a Mutex<Engine>,
    changed: &'a Condvar,
    /// The sockets of lines sent without the lock, let go of after it.
    sent_on: Vec<Arc<std::os::fd::OwnedFd>>,
}

impl Locked<'_> {
    /// Settles, then waits up to `timeout` for any change, without holding the lock.
    pub fn wait(self, timeout: Duration) -> Self {
        self.wait_for(Interest::Any, timeout)
    }

    /// Settles, then waits up to `timeout`, without holding the lock, until `core.removed`
    /// has reached `at` (or for less: wakeups may come early).
    pub fn wait_removed(self, at: u64, timeout: Duration) -> Self {
        self.wait_for(Interest::RemovedAt(at), timeout)
    }

    fn wait_for(mut self, interest: Interest, timeout: Duration) -> Self {
        if self.settle_and_send() {
            // The lock was let go to send: what the caller waits for may have happened
            // meanwhile, unseen, so it looks again before waiting.
            return self;
        }
        // Sockets of lines an earlier round of this wait sent: not kept for the whole wait.
        self.sent_on.clear();
        let mut guard = self.guard.take().expect("held");
        if guard.waiting.due(&guard.core) {
            self.changed.notify_all();
        }
        match interest {
            Interest::Any => guard.waiting.any += 1,
            Interest::RemovedAt(at) => guard.waiting.removed_at.push(at),
        }
        let mut guard = self
            .changed
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        let waiting = &mut guard.waiting;
        match interest {
            Interest::Any => waiting.any -= 1,
            Interest::RemovedAt(at) => {
                if let Some(i) = waiting.removed_at.iter().position(|&a| a == at) {
                    waiting.removed_at.swap_remove(i);
                }
            }
        }
        self.guard = Some(guard);
        self
    }

    /// Settles and sends the lines that go without the lock: lets go of it for them, wakes
    /// the calls that may be done, and takes it again to see how they went, until no line
    /// is left. True when the lock was let go.
    fn settle_and_send(&mut self) -> bool {
        let mut let_go = false;
        loop {
            let engine = self.guard.as_mut().expect("held");
            engine.settle();
            let lines = engine.io.take_unlocked();
            if lines.is_empty() {
                return let_go;
            }
            let wake = engine.waiting.due(&engine.core);
            self.guard = None;
            if wake {
                self.changed.notify_all();
            }
            let outcomes = sending::send_all(lines);
            let mut engine = crate::sync::lock(self.engine);
            let sockets = engine.io.after_unlocked(outcomes);
            self.sent_on.extend(sockets);
            self.guard = Some(engine);
            let_go = true;
        }
    }
}

impl Deref for Locked<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.guard.as_ref().expect("held")
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        self.guard.as_mut().expect("held")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.guard.is_none() {
            return;
        }
        // While unwinding, only let go (a second panic here would abort the host), and wake
        // every waiting call.
        let panicking = std::thread::panicking();
        if !panicking {
            self.settle_and_send();
        }
        let guard = self.guard.take().expect("held");
        let wake = panicking || guard.waiting.due(&guard.core);
        drop(guard);
        if wake {
            self.changed.notify_all();
        }
        self.sent_on.clear();
    }
}
