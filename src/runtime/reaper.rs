//! The reaper thread: the costliest end of a worker's exit runs here, beside the monitor and off
//! the engine's lock.
//!
//! The monitor sees an exit (through the pidfd, the control socket's end of file or a poll),
//! stops tracking the worker, and hands the exit over. The reaper kills the worker's process
//! group while the zombie still holds its id, tells the keeper, frees the zombie (`waitid`),
//! closes the worker's descriptors, drains what its captured output still holds (under the
//! captures' lock only), and only then tells the core, under the engine's lock: so a worker the
//! core no longer tracks has been reaped. At a stop of many workers the monitor is left with
//! a fraction of the work per exit, and another core does the rest.

use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;

use crate::core::worker::{ExitStatus, Key};
use crate::os::{self, ChildState};
use crate::runtime::lifeline::Lifeline;
use crate::sync::lock;

/// Who is told of the exits the reaper finished: the engine (`Shared` in `engine.rs`), which
/// drains the workers' captured output and tells the core.
pub trait Told: Send + Sync {
    fn exits_reaped(&self, exits: Vec<(Key, ExitStatus)>);
}

/// An exit the monitor has seen, for the reaper to finish.
#[derive(Debug)]
pub struct Exit {
    pub key: Key,
    pub pid: i32,
    /// What the monitor found when it looked (`peek_exit`), its process group already killed;
    /// None when the worker's pidfd said it exited, and the reaper looks.
    pub seen: Option<ChildState>,
    /// Whether the keeper holds a pidfd of the worker (`Lifeline::reaping`).
    pub keeper_has_pidfd: bool,
    /// The worker's pidfd and control socket.
    pub descriptors: Vec<Arc<OwnedFd>>,
}

#[derive(Debug, Default)]
struct Queue {
    exits: Vec<Exit>,
    /// Descriptors to let go of (control sockets closed before their worker's exit, or last
    /// held by a line sent without the lock).
    close: Vec<Arc<OwnedFd>>,
    ending: bool,
}

/// The queue of exits and the reaper thread that works it off.
pub struct Reaper {
    queue: Mutex<Queue>,
    work: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    lifeline: Arc<Lifeline>,
}

impl Reaper {
    pub fn new(lifeline: Arc<Lifeline>) -> Reaper {
        Reaper {
            queue: Mutex::default(),
            work: Condvar::new(),
            thread: Mutex::new(None),
            lifeline,
        }
    }

    /// Starts the thread; it holds the engine only weakly, so a supervisor that is dropped
    /// ends it.
    pub fn start(self: &Arc<Self>, told: Weak<dyn Told>) -> std::io::Result<()> {
        // Again after a `shutdown` too (a handover that was aborted).
        lock(&self.queue).ending = false;
        let reaper = Arc::clone(self);
        let handle = crate::threads::spawn_named("mpsup-reaper", Some(128 * 1024), move || {
            reaper.run(told)
        })?;
        *lock(&self.thread) = Some(handle);
        Ok(())
    }

    pub fn hand(&self, exit: Exit) {
        self.push(|q| q.exits.push(exit));
    }

    /// Lets go of descriptors on the reaper's thread (closing a socket is not free).
    pub fn close_later(&self, fds: Vec<Arc<OwnedFd>>) {
        if !fds.is_empty() {
            self.push(|q| q.close.extend(fds));
        }
    }

    /// Queues work; wakes the thread only for the first of a batch (it takes the whole queue
    /// each time it looks, and looks again before it sleeps).
    fn push(&self, add: impl FnOnce(&mut Queue)) {
        let mut q = lock(&self.queue);
        let was_empty = q.exits.is_empty() && q.close.is_empty();
        add(&mut q);
        drop(q);
        if was_empty {
            self.work.notify_one();
        }
    }

    /// Finishes what is queued, then ends the thread and waits for it.
    pub fn shutdown(&self) {
        lock(&self.queue).ending = true;
        self.work.notify_one();
        if let Some(handle) = lock(&self.thread).take() {
            let _ = handle.join();
        }
    }

    /// Leaves the thread to itself (a forked child's copy, which has no such thread).
    pub fn forget(&self) {
        if let Some(handle) = lock(&self.thread).take() {
            std::mem::forget(handle);
        }
    }

    fn run(&self, told: Weak<dyn Told>) {
        loop {
            let (exits, close, ending) = {
                let mut q = lock(&self.queue);
                while q.exits.is_empty() && q.close.is_empty() && !q.ending {
                    q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                (
                    std::mem::take(&mut q.exits),
                    std::mem::take(&mut q.close),
                    q.ending,
                )
            };
            drop(close);
            if !exits.is_empty() {
                match told.upgrade() {
                    // A bug in one batch must not stop the reaper: exits would never be told.
                    Some(told) => {
                        let _ = catch_unwind(AssertUnwindSafe(|| {
                            told.exits_reaped(self.reap(exits));
                        }));
                    }
                    None => drop(self.reap(exits)),
                }
            }
            if ending && {
                let q = lock(&self.queue);
                q.exits.is_empty() && q.close.is_empty()
            } {
                return;
            }
        }
    }

    /// Frees the zombies and closes their descriptors; returns what the core is to be told.
    fn reap(&self, exits: Vec<Exit>) -> Vec<(Key, ExitStatus)> {
        exits
            .into_iter()
            .map(|exit| {
                let status = self.reap_one(&exit);
                drop(exit.descriptors);
                (exit.key, status)
            })
            .collect()
    }

    fn reap_one(&self, exit: &Exit) -> ExitStatus {
        let pid = exit.pid;
        let state = exit.seen.unwrap_or_else(|| look_at_exit(pid));
        // Before the reap: until then the pid is the worker's, for the keeper too.
        let oom = self.lifeline.reaping(pid, exit.keeper_has_pidfd);
        match state {
            ChildState::Exited(mut status) => {
                os::try_reap(pid);
                status.oom_killed = oom && status.signal == Some(libc::SIGKILL);
                status
            }
            // The kernel reaped it (the host ignores SIGCHLD): the status is lost.
            ChildState::Gone => ExitStatus::default(),
            // A pidfd is readable only once its process exited, so this cannot be; were it so,
            // the child is still ours (unreaped): killed and left to the orphanage.
            ChildState::Running => {
                let _ = os::kill_pid(pid, libc::SIGKILL);
                crate::runtime::child::orphan(pid);
                ExitStatus::default()
            }
        }
    }
}

/// Looks at a child without reaping it and, if it has exited, kills its process group while the
/// zombie still holds the group's id (so the id cannot name another group yet).
pub fn look_at_exit(pid: i32) -> ChildState {
    let state = os::peek_exit(pid);
    if let ChildState::Exited(_) = state {
        let _ = os::kill_group(pid, libc::SIGKILL);
    }
    state
}
