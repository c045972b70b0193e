//! Lock helpers shared by every layer.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering the data if a panic poisoned it: every update is complete before
/// anything that could panic, so the data stays consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
