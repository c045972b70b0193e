//! The runtime: the threads and descriptors of a supervisor. It feeds what the kernel says into
//! the core and carries out the effects the core records.
//!
//! One lock guards the core and the descriptors together (`Engine`); it is held only for
//! transitions and non-blocking system calls, never across a spawn or a wait. Every spawn runs
//! on the spawner's threads; the monitor thread watches every descriptor in one epoll set, whose
//! token table (`tokens.rs`) names each descriptor's source; the reaper thread finishes the exits
//! the monitor sees; lines to workers are sent with the lock let go (`sending.rs`).
//!
//! Which thread owns which descriptor (every one close-on-exec; every thread the library starts
//! blocks all signals, `threads.rs`):
//!
//! | thread | makes | uses | closes |
//! | --- | --- | --- | --- |
//! | the host's (each call) | the epoll set and its wake eventfd, the event fd (`events_out.rs`); the keeper's socket and process, the supervisor's cgroup (`lifeline/`); listen sockets (`listen.rs`); the log's jsonl files (`logging/`); the sd_notify socket (`notify.rs`); the link to the spawner's private table (`spawner/table.rs`) | lines to workers' control sockets, sent without the lock (`sending.rs`); the host's 0, 1, 2 and listen sockets, sent to the spawner with each submission | listen sockets of groups no longer started; everything at `free` |
//! | monitor (`monitor.rs`) | — | the epoll set; pidfds (readable once), control sockets (read, and written when room comes), the sd_notify socket, output pipes (under the captures' own lock, `output.rs`); the arrivals socket of the spawner's table, whose messages bring the descriptors of spawned children into the host's table; like any thread that lets go of the lock, lines to control sockets (`sending.rs`) | a control socket that broke the protocol or ended, through the reaper |
//! | reaper (`reaper.rs`) | — | the keeper's socket (`D` messages, `lifeline/keeper.rs`) | an exited worker's pidfd, control socket and output pipes (drained first) |
//! | spawner threads (`spawner/`) | in their own descriptor table: each child's control socket pair, output pipes, the exec shim's report pipe, `reuse_port` listen sockets, its pidfd (`spawner/worker.rs`) | the keeper's socket (`A` messages); what a submission sent them | their copies, once a child is spawned and its descriptors sent to the host's table |
//! | log writer (`logging/`) | — | the jsonl files, stdout and stderr of the exporters | its files, when the logger is replaced or freed |
//! | rotating-file writer (`rotate.rs`) | the rotating output files | them | them |
//! | cgroup remover (`lifeline/cgroup.rs`) | — | none (cgroup directories, by path) | — |
//! | the keeper process (`src/bin/mpsup-keeper.rs`) | pidfds of the host and of workers without one | its end of the keeper socket (its descriptor 3) | all, when it exits |

pub(crate) mod child;
pub(crate) mod events_out;
pub(crate) mod figures;
pub(crate) mod io;
pub(crate) mod lifeline;
pub(crate) mod listen;
pub(crate) mod monitor;
pub(crate) mod notify;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod reaper;
pub(crate) mod rotate;
pub(crate) mod sending;
pub(crate) mod spawner;
pub(crate) mod tokens;

use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock;
use crate::core::state::State;
use crate::core::Spawned;
use crate::runtime::io::Io;
use crate::runtime::output::Captures;
use crate::runtime::spawner::{SpawnOutcome, Spawner, ToMonitor};
use crate::runtime::tokens::Tokens;

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
            let effects = self.core.take_effects();
            if effects.is_empty() {
                break;
            }
            self.io.apply(effects);
        }
        self.io.out.sync(&mut self.core.events);
        let wanted = monitor::wake_at(self);
        if wanted.is_some_and(|at| self.monitor_sleeps_until.is_none_or(|until| at < until)) {
            self.monitor_sleeps_until = wanted;
            self.to_monitor.wake.set();
        }
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
        status: crate::core::worker::ExitStatus,
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
