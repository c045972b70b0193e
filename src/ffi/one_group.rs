//! The calls that act on one group (or a few) while the others run: stop, signal, reload, and
//! the replacement of one worker.

use std::ffi::{c_char, c_int};

use super::boundary::{guard, names, text};
use super::{mpsup_result, mpsup_supervisor, registry, wait_for};
use crate::error::Error;

/// `mpsup_stop_groups` for the `n` named groups only: their workers are stopped gracefully
/// (`STOP DRAIN`, or `STOP NOW` when `drain_inflight` is false, else their `stop_signal`) and
/// waited for up to `graceful_timeout_seconds` (negative or NaN: `MPSUP_ERR_INVALID_ARGUMENT`);
/// workers still alive then stay in state `stopping` and the call gives `MPSUP_ERR_TIMEOUT`.
/// The named groups are no longer started (nothing of them is respawned; `status_json` shows
/// `"started": false`) and their listen sockets are closed; every other group keeps running
/// with its sockets open. `mpsup_start_groups` starts a stopped group again. A name never
/// configured gives `MPSUP_ERR_UNKNOWN_GROUP` and stops nothing. `names` may be NULL only when
/// `n` is 0.
#[no_mangle]
pub extern "C" fn mpsup_stop_named_groups(
    sup: mpsup_supervisor,
    names_ptr: *const *const c_char,
    n: usize,
    graceful_timeout_seconds: f64,
    drain_inflight: bool,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes `n` string pointers.
        let names = unsafe { names(names_ptr, n) }?;
        if graceful_timeout_seconds.is_nan() || graceful_timeout_seconds < 0.0 {
            return Err(Error::InvalidArgument(format!(
                "graceful_timeout_seconds must be zero or more, got {graceful_timeout_seconds}"
            )));
        }
        let timeout = wait_for(graceful_timeout_seconds);
        supervisor.stop_named_groups(&names, timeout, drain_inflight)
    })
}

/// Sends `signal` to every live worker of the started group `name` (for log reopening and the
/// like): to its process group, or to the worker alone with `"kill_mode": "mixed"`. Emits
/// `worker_signaled` per worker and returns at once. `MPSUP_ERR_UNKNOWN_GROUP` for a name never
/// configured; `MPSUP_ERR_INVALID_ARGUMENT` for a group that is not started or a `signal` that
/// is not a signal number (1 to 31).
#[no_mangle]
pub extern "C" fn mpsup_signal_group(
    sup: mpsup_supervisor,
    name: *const c_char,
    signal: c_int,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let name = unsafe { text(name, "name") }?;
        supervisor.signal_group(name, signal)
    })
}

/// Sends each worker of the `n` named started groups its group's `reload_signal` (default
/// `SIGHUP`, to the process group or the worker alone as `kill_mode` says) and returns at once.
/// A ready `sd_notify` worker is in state `reloading` from then until the `READY=1` that
/// follows its `RELOADING=1` (systemd's `Type=notify-reload`), so `mpsup_wait_ready` called
/// after this waits for it; events `worker_reloading` and `worker_reloaded`. One not done
/// within its group's `ready_timeout_ms` (when set) is killed and fails with reason
/// `ready_timeout`. Workers of other readiness modes just get the signal (`worker_signaled`).
/// All or nothing: a name never configured gives `MPSUP_ERR_UNKNOWN_GROUP`, one not started
/// `MPSUP_ERR_INVALID_ARGUMENT`, and no signal is sent.
#[no_mangle]
pub extern "C" fn mpsup_reload_groups(
    sup: mpsup_supervisor,
    names_ptr: *const *const c_char,
    n: usize,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes `n` string pointers.
        let names = unsafe { names(names_ptr, n) }?;
        supervisor.reload_groups(&names)
    })
}

/// Replaces the worker `worker_id` (`"<group>#<index>"`) as one slot of a rolling restart: a new
/// process of the same `worker_id`, configuration and generation is started, and only once it
/// is ready is the old one stopped gracefully (killed after the group's `stop_timeout_ms`);
/// event `worker_recycled` with reason `"requested"`. Returns at once. A replacement that exits
/// or is not ready within `ready_timeout_ms` goes (its `worker_failed`), and the old worker
/// stays. `MPSUP_ERR_UNKNOWN_GROUP` for a group never configured or a worker it does not have;
/// `MPSUP_ERR_INVALID_ARGUMENT` for a group that is not started or is being rolled out, a
/// worker that is not ready, or one already being replaced.
#[no_mangle]
pub extern "C" fn mpsup_replace_worker(
    sup: mpsup_supervisor,
    worker_id: *const c_char,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let worker_id = unsafe { text(worker_id, "worker_id") }?;
        supervisor.replace_worker(worker_id)
    })
}
