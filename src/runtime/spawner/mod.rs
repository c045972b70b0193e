//! The spawner: threads the library owns that run every spawn and respawn, never under the state
//! lock. Threads start as work arrives, up to one per core, so a big start spawns on every core.
//! The jobs of one submission share their spawn attributes, made once by whichever thread needs
//! them first.
//!
//! The descriptors a spawn needs cross into the spawner threads' own descriptor table and back
//! as described in `table.rs` (the two tables) and `crossing.rs` (the messages between them);
//! `worker.rs` builds one worker's spawn; `outcome.rs` says where an outcome goes.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

use crate::core::effects::SpawnJob;
use crate::core::worker::Key;
use crate::runtime::child::Child;
use crate::runtime::lifeline::Lifeline;
use crate::runtime::listen::{Carried, Listeners};
use crate::runtime::tokens::Tokens;
use crate::sync::lock;
use crate::threads;

mod crossing;
mod outcome;
mod table;
mod worker;

use crossing::Crossing;
use outcome::{error, failure};
pub use outcome::{Reply, SpawnOutcome, ToMonitor};
use table::{enter, Batch, Given, Link, Private};
pub use worker::SpawnHook;
use worker::{spawn_one, Spawning};

/// The most jobs one spawner thread takes at once.
const BURST: usize = 32;
/// The stack of a spawner thread.
const STACK: usize = 256 * 1024;

struct Queue {
    jobs: VecDeque<(SpawnJob, Arc<Batch>)>,
    idle: usize,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    monitor: Arc<ToMonitor>,
    /// What each worker's spawn needs (`worker.rs`).
    spawning: Spawning,
    max_threads: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set by the first spawner thread before it runs a job: Some when the spawner threads have a
    /// table of their own.
    private: OnceLock<Option<Private>>,
    /// Messages to and from the private table.
    crossing: Crossing,
}

impl Shared {
    fn private(&self) -> Option<&Private> {
        self.private.get().and_then(Option::as_ref)
    }
}

struct HostSide {
    started: bool,
    link: Option<Link>,
}

pub struct Spawner {
    shared: Arc<Shared>,
    host: Mutex<HostSide>,
    private_table: bool,
    /// The monitor's epoll set, which watches `from_private`.
    tokens: Arc<Tokens>,
    /// Where outcomes arrive from the private table (a copy of the link's), for `collect`.
    arrivals: Mutex<Option<(Arc<OwnedFd>, u64)>>,
}

/// What a spawner is made with.
pub struct SpawnerParts {
    /// Where outcomes for the monitor go.
    pub monitor: Arc<ToMonitor>,
    /// The monitor's epoll set: with a private table, outcomes arrive on a socket there
    /// (`Source::Spawned`), and the monitor calls `collect`.
    pub tokens: Arc<Tokens>,
    /// Every spawned process goes to it (its cgroup, the keeper) before it is handed over.
    pub lifeline: Arc<Lifeline>,
    /// The groups' listen sockets, passed to their workers.
    pub listeners: Arc<Listeners>,
    pub use_pidfd: bool,
    pub hook: Option<SpawnHook>,
    /// At most this many spawner threads (None: one per core, up to 8).
    pub threads: Option<usize>,
    /// Run them in a descriptor table of their own where the system allows (`table.rs`).
    pub private_table: bool,
}

impl Spawner {
    pub fn new(parts: SpawnerParts) -> Spawner {
        let SpawnerParts {
            monitor,
            tokens,
            lifeline,
            listeners,
            use_pidfd,
            hook,
            threads,
            private_table,
        } = parts;
        let cores =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Spawner {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    idle: 0,
                    shutdown: false,
                }),
                work: Condvar::new(),
                monitor,
                spawning: Spawning {
                    use_pidfd,
                    hook,
                    lifeline,
                    listeners,
                },
                max_threads: cores.clamp(1, 8),
                threads: Mutex::new(Vec::new()),
                private: OnceLock::new(),
                crossing: Crossing::default(),
            }),
            host: Mutex::new(HostSide {
                started: false,
                link: None,
            }),
            private_table,
            tokens,
            arrivals: Mutex::new(None),
        }
    }

    /// How many spawner threads may run at once.
    pub fn parallelism(&self) -> usize {
        self.shared.max_threads
    }

    /// Queues jobs, with the descriptors they carry; their outcomes go to `reply`. Called on a
    /// thread of the host's descriptor table. A job that cannot be queued (after shutdown, when
    /// no thread can be started, when its descriptors cannot be passed) gets a failed outcome at
    /// once.
    pub fn submit(&self, jobs: Vec<SpawnJob>, reply: Reply, carried: Carried) {
        if jobs.is_empty() {
            return;
        }
        let fail = |jobs: Vec<SpawnJob>, e: &std::io::Error| {
            for job in jobs {
                deliver(&self.shared, &reply, job.key, Err(error(&failure(e))));
            }
        };
        let mut host = lock(&self.host);
        if lock(&self.shared.queue).shutdown {
            return fail(jobs, &shutting_down());
        }
        if !host.started {
            if let Err(e) = self.start(&mut host) {
                let e = std::io::Error::new(e.kind(), format!("starting a spawner thread: {e}"));
                return fail(jobs, &e);
            }
            host.started = true;
        }
        let given = match &host.link {
            None => Given::Here(carried),
            Some(link) => match self.shared.crossing.ship(link, &carried) {
                Ok(given) => given,
                Err(e) => return fail(jobs, &e),
            },
        };
        let batch = Arc::new(Batch::new(reply.clone(), given, jobs.len()));
        {
            let mut q = lock(&self.shared.queue);
            if q.shutdown {
                drop(q);
                return fail(jobs, &shutting_down());
            }
            q.jobs
                .extend(jobs.into_iter().map(|j| (j, Arc::clone(&batch))));
        }
        self.shared.work.notify_all();
    }

    /// Starts the first spawner thread, which gives itself a private table when it can (and the
    /// socket for its outcomes first).
    fn start(&self, host: &mut HostSide) -> std::io::Result<()> {
        let link = if self.private_table {
            Link::open(&self.tokens).ok()
        } else {
            None
        };
        let ends = link.as_ref().map(|(_, inbox, outbox)| {
            let keep = self.shared.spawning.lifeline.spawner_descriptors();
            (inbox.as_raw_fd(), outbox.as_raw_fd(), keep)
        });
        let (answer, answered) = mpsc::sync_channel::<()>(1);
        let shared = Arc::clone(&self.shared);
        let started = {
            let mut threads = lock(&self.shared.threads);
            threads::spawn_named("mpsup-spawner", Some(STACK), move || {
                let private = ends.and_then(|(inbox, outbox, keep)| enter(inbox, outbox, &keep));
                let _ = shared.private.set(private);
                drop(answer);
                run(&shared);
            })
            .map(|handle| threads.push(handle))
        };
        if let Err(e) = started {
            if let Some((link, _, _)) = link {
                link.close(&self.tokens);
            }
            return Err(e);
        }
        // Disconnected once the thread has decided.
        let _ = answered.recv();
        if let Some((link, inbox, outbox)) = link {
            // The host's copies of the spawner threads' ends go.
            drop(inbox);
            drop(outbox);
            if self.shared.private().is_some() {
                *lock(&self.arrivals) = Some((Arc::clone(&link.from_private), link.token));
                host.link = Some(link);
            } else {
                link.close(&self.tokens);
            }
        }
        Ok(())
    }

    /// Stops the threads once they have finished the jobs they hold; jobs still queued are
    /// failed; the outcomes still on their way are handed over.
    /// On a thread of the host's table (the monitor, when the arrivals are readable): hands over
    /// every outcome that has arrived from the private table, with its descriptors put back.
    /// `wake`: wake the monitor for those it gets (false: the monitor itself calls).
    pub fn collect(&self, wake: bool) {
        if let Some((sock, token)) = lock(&self.arrivals).as_ref() {
            let (tokens, monitor) = (&self.tokens, &self.shared.monitor);
            self.shared
                .crossing
                .collect((sock, *token), tokens, monitor, wake);
        }
    }

    pub fn shutdown(&self) {
        let left: Vec<_> = {
            let mut q = lock(&self.shared.queue);
            q.shutdown = true;
            q.jobs.drain(..).collect()
        };
        self.shared.work.notify_all();
        for (job, batch) in left {
            deliver(&self.shared, &batch.reply, job.key, Err(shutting_down()));
        }
        // A thread may start another until it sees the shutdown.
        loop {
            let handles: Vec<_> = lock(&self.shared.threads).drain(..).collect();
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
        // Every outcome has been sent: hand over what the monitor has not collected yet.
        self.collect(true);
        if let Some(link) = lock(&self.host).link.take() {
            link.close(&self.tokens);
        }
        lock(&self.arrivals).take();
    }
}

fn shutting_down() -> std::io::Error {
    std::io::Error::other("the supervisor is shutting down")
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts one more spawner thread, from a spawner thread (so that it shares its table), while
/// jobs wait that no idle thread will take.
fn grow(shared: &Arc<Shared>) {
    let mut threads = lock(&shared.threads);
    {
        let q = lock(&shared.queue);
        if q.shutdown || q.jobs.is_empty() || q.idle > 0 || threads.len() >= shared.max_threads {
            return;
        }
    }
    let for_thread = Arc::clone(shared);
    if let Ok(handle) = threads::spawn_named("mpsup-spawner", Some(STACK), move || run(&for_thread))
    {
        threads.push(handle);
    }
}

fn run(shared: &Arc<Shared>) {
    loop {
        let burst: Vec<(SpawnJob, Arc<Batch>)> = {
            let mut q = lock(&shared.queue);
            while q.jobs.is_empty() && !q.shutdown {
                q.idle += 1;
                q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
                q.idle -= 1;
            }
            if q.jobs.is_empty() {
                return;
            }
            let n = q.jobs.len().min(BURST);
            q.jobs.drain(..n).collect()
        };
        grow(shared);
        let private = shared.private();
        for (job, batch) in burst {
            let key = job.key;
            let result = batch.attrs(private.is_some()).and_then(|attrs| {
                let given = batch.view(private, &job.plan.spec.name)?;
                catch_unwind(AssertUnwindSafe(|| {
                    spawn_one(&shared.spawning, &job, attrs, &given)
                }))
                .unwrap_or_else(|_| Err(std::io::Error::other("a panic in the spawner")))
            });
            batch.finished();
            match private {
                Some(private) => {
                    let monitor = &shared.monitor;
                    let reply = &batch.reply;
                    shared
                        .crossing
                        .hand_over(private, monitor, reply, key, result);
                }
                None => deliver(shared, &batch.reply, key, result),
            }
        }
    }
}

/// Passes an outcome on, from a thread of the host's table.
fn deliver(shared: &Shared, reply: &Reply, key: Key, result: Result<Child, std::io::Error>) {
    if reply.send(&shared.monitor, SpawnOutcome { key, result }) {
        shared.monitor.wake.set();
    }
}
