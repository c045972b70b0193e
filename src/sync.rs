//! Lock helpers shared by every layer.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering the data if a panic poisoned it: every update is complete before
/// anything that could panic, so the data stays consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A value of one process, made on first use and never freed: found by pid, so that a child the
/// host forked (which has none of its parent's threads, and copies of its locks as they were at
/// the fork) never touches its parent's copy, nor waits for a lock a thread of its parent held.
/// The child makes its own and leaks the parent's, which it must not drop either.
pub(crate) struct PerProcess<T: 'static> {
    current: AtomicPtr<Stamped<T>>,
}

struct Stamped<T> {
    pid: u32,
    value: T,
}

impl<T: 'static> PerProcess<T> {
    pub(crate) const fn new() -> Self {
        PerProcess {
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This process's value, made by `make` the first time (None: `make` could not make one,
    /// and a later call tries again).
    pub(crate) fn get_or_make(&self, make: impl FnOnce() -> Option<T>) -> Option<&'static T> {
        let pid = std::process::id();
        let mut current = self.current.load(Ordering::Acquire);
        // SAFETY: a pointer stored here comes from Box::into_raw and is never freed.
        if let Some(s) = unsafe { current.as_ref() }.filter(|s| s.pid == pid) {
            return Some(&s.value);
        }
        let fresh = Box::into_raw(Box::new(Stamped {
            pid,
            value: make()?,
        }));
        loop {
            match self
                .current
                .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: just published, never freed.
                Ok(_) => return Some(unsafe { &(*fresh).value }),
                Err(other) => {
                    // SAFETY: as above.
                    if let Some(s) = unsafe { other.as_ref() }.filter(|s| s.pid == pid) {
                        // Another thread of this process got there first: use its value.
                        // SAFETY: ours was never published.
                        drop(unsafe { Box::from_raw(fresh) });
                        return Some(&s.value);
                    }
                    current = other;
                }
            }
        }
    }
}
