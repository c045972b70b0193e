//! A spawned process that nobody has adopted yet, and the orphanage that reaps the ones that
//! were never adopted. No live process is ever untracked: a `Child` dropped before adoption (a
//! panic, a spawn for a worker stopped meanwhile) kills its process group and hands the pid to
//! the orphanage, which reaps it without blocking anyone.

use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Instant;

use once_cell::sync::Lazy;

use crate::os;
use crate::sync::lock;

/// A process just spawned for a worker, with what the supervisor keeps of it.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    /// The supervisor's end of the control socket.
    pub control: Option<OwnedFd>,
    /// Why there is no control socket, when one was wanted.
    pub channel_error: Option<String>,
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
            spawned_at,
            spawned_at_ms,
            adopted: false,
        }
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
        ORPHANS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.pid);
        reap_orphans();
    }
}

/// Killed children of this process that are not reaped yet.
static ORPHANS: Lazy<Mutex<Vec<i32>>> = Lazy::new(|| Mutex::new(Vec::new()));

/// Reaps the orphans that have died; the monitors call it on every round while any are left.
pub fn reap_orphans() {
    lock(&ORPHANS).retain(|&pid| !os::try_reap(pid));
}

/// Hands a tracked worker that could not be reaped in time (it ignores SIGKILL for now) to the
/// orphanage, so that a later round of any monitor reaps it.
pub fn orphan(pid: i32) {
    lock(&ORPHANS).push(pid);
}

pub fn have_orphans() -> bool {
    !lock(&ORPHANS).is_empty()
}
