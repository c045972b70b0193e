//! A spawned process that nobody has adopted yet, and the orphanage that reaps the ones that
//! were never adopted. No live process is ever untracked: a `Child` dropped before adoption (a
//! panic, a spawn for a worker stopped meanwhile) kills its process group and hands the pid to
//! the orphanage, which reaps it without blocking anyone.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::os;
use crate::sync::{lock, PerProcess};

/// A process just spawned for a worker, with what the supervisor keeps of it.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    /// The supervisor's end of the control socket.
    pub control: Option<OwnedFd>,
    /// Why there is no control socket, when one was wanted.
    pub channel_error: Option<String>,
    /// The read ends of its captured streams.
    pub output: Option<crate::runtime::output::Captured>,
    pub spawned_at: Instant,
    pub spawned_at_ms: u64,
    adopted: bool,
}

impl Child {
    pub fn new(pid: i32, spawned_at: Instant, spawned_at_ms: u64) -> Child {
        Child {
            pid,
            pidfd: None,
            control: None,
            channel_error: None,
            output: None,
            spawned_at,
            spawned_at_ms,
            adopted: false,
        }
    }

    /// The exec shim forked the worker (`worker`, also this process's child) and exits: the
    /// worker is tracked from now on, the shim goes to the orphanage, which reaps it.
    pub fn forked(&mut self, worker: i32) {
        let shim = std::mem::replace(&mut self.pid, worker);
        orphan(shim);
        reap_orphans();
    }

    /// Hands the process over to whoever tracks it from now on: dropping what is left of this
    /// value no longer kills it.
    pub fn adopt(mut self) -> (Option<OwnedFd>, Option<OwnedFd>) {
        self.adopted = true;
        (self.pidfd.take(), self.control.take())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.adopted {
            return;
        }
        // It leads its own process group, which its zombie keeps reserved until it is reaped.
        let _ = os::kill_group(self.pid, libc::SIGKILL);
        let _ = os::kill_pid(self.pid, libc::SIGKILL);
        orphan(self.pid);
        reap_orphans();
    }
}

/// Killed children of this process that are not reaped yet, one orphanage per process
/// (`PerProcess`): a child the host forked must never wait for a lock that a thread of its
/// parent held at the fork.
#[derive(Default)]
struct Orphanage {
    pids: Mutex<Vec<i32>>,
    count: AtomicUsize,
}

static ORPHANAGE: PerProcess<Orphanage> = PerProcess::new();

fn orphanage() -> &'static Orphanage {
    ORPHANAGE
        .get_or_make(|| Some(Orphanage::default()))
        .expect("always made")
}

/// Reaps the orphans that have died; the monitors call it on every round while any are left.
pub fn reap_orphans() {
    let o = orphanage();
    if o.count.load(Ordering::Acquire) == 0 {
        return;
    }
    let mut pids = lock(&o.pids);
    pids.retain(|&pid| !os::try_reap(pid));
    o.count.store(pids.len(), Ordering::Release);
}

/// Hands a killed process that is not reaped yet to the orphanage, so that a later round of any
/// monitor reaps it.
pub fn orphan(pid: i32) {
    let o = orphanage();
    let mut pids = lock(&o.pids);
    pids.push(pid);
    o.count.store(pids.len(), Ordering::Release);
}

/// The orphans not reaped yet, for the next image of the host (`handover`), which reaps them.
pub fn orphans() -> Vec<i32> {
    lock(&orphanage().pids).clone()
}

pub fn have_orphans() -> bool {
    orphanage().count.load(Ordering::Acquire) > 0
}
