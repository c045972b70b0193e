//! The C API. This module is the only place that touches raw C pointers: it converts the
//! arguments, calls the core, and maps errors to `mpsup_result`.
//!
//! Conventions, true of every function below:
//! - Every call is thread-safe and catches panics (`MPSUP_ERR_PANIC`).
//! - On failure, `mpsup_last_error_message()` gives this thread's detail; out-parameters are
//!   written only on success.
//! - Strings the library returns are freed with `mpsup_string_free`, never with `free`.
//! - The library installs no signal handler and opens every descriptor with `O_CLOEXEC`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod boundary;
mod engine;
mod handover;
mod one_group;
mod registry;
mod schema;

use std::ffi::{c_char, c_int, CString};
use std::os::fd::AsRawFd;
use std::time::Duration;

pub use boundary::mpsup_result;
use boundary::{guard, guard_void, into_c_string, names, out, text, RESULT_NAMES};
pub use engine::{mpsup_restart_groups, mpsup_scale_group, mpsup_status_json};
pub use handover::{mpsup_handover_abort, mpsup_handover_prepare, mpsup_supervisor_adopt};
pub use one_group::{
    mpsup_reload_groups, mpsup_replace_worker, mpsup_signal_group, mpsup_stop_named_groups,
};
pub use schema::mpsup_schema_json;

use crate::error::Error;
use crate::supervisor::Supervisor;
use crate::worker_side::{self, StopRequest};

/// The body of the calls that take a supervisor and an array of `n` group names.
fn on_groups(
    sup: mpsup_supervisor,
    names_ptr: *const *const c_char,
    n: usize,
    call: fn(&Supervisor, &[&str]) -> crate::error::Result<()>,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes `n` string pointers.
        let names = unsafe { names(names_ptr, n) }?;
        call(&supervisor, &names)
    })
}

/// The body of the calls that write a JSON string the library made to `*out_json`.
fn json_out(
    sup: mpsup_supervisor,
    out_json: *mut *mut c_char,
    make: impl FnOnce(&Supervisor) -> crate::error::Result<String>,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        out(out_json, "out_json")?;
        let json = make(&supervisor)?;
        // SAFETY: checked non-NULL.
        unsafe { out_json.write(into_c_string(json)) };
        Ok(())
    })
}

/// `value` as JSON text.
fn to_json<T: serde::Serialize>(value: &T) -> crate::error::Result<String> {
    serde_json::to_string(value).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// The `Duration` a wait of `seconds` lasts: zero for NaN and anything not above zero, and at
/// most a century (which stands for "forever").
fn wait_for(seconds: f64) -> Duration {
    if seconds > 0.0 {
        Duration::from_secs_f64(seconds.min(3_153_600_000.0))
    } else {
        Duration::ZERO
    }
}

/// A supervisor handle, passed by value: a generation-checked id into a process-wide table,
/// never a pointer. Id 0 is never valid. A freed, stale, zeroed or made-up handle gives
/// `MPSUP_ERR_INVALID_HANDLE`, never a crash. Handles do not survive `fork()`: in the child,
/// every call on a handle of the parent gives `MPSUP_ERR_INVALID_HANDLE` and touches nothing.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mpsup_supervisor {
    /// The generation-checked id; 0 is never valid.
    pub id: u64,
}

/// The name of a result, such as "MPSUP_ERR_TIMEOUT": a static string, never freed. Any
/// integer is accepted; unknown values give "MPSUP_ERR_UNKNOWN".
#[no_mangle]
pub extern "C" fn mpsup_result_name(result: u32) -> *const c_char {
    RESULT_NAMES
        .iter()
        .find(|(r, _)| *r as u32 == result)
        .map_or(c"MPSUP_ERR_UNKNOWN".as_ptr(), |(_, name)| name.as_ptr())
}

/// The detail of this thread's last failed call (it names the group, the JSON path or the errno
/// text), or "" if none failed yet. Never NULL. Owned by the library: valid until this thread's
/// next failing call; do not free it.
#[no_mangle]
pub extern "C" fn mpsup_last_error_message() -> *const c_char {
    boundary::last_error_ptr()
}

/// The library version, "0.1.0": a static string, never freed.
#[no_mangle]
pub extern "C" fn mpsup_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Creates a supervisor (and its monitor thread) and writes its handle to `*out_handle`,
/// which must not be NULL.
#[no_mangle]
pub extern "C" fn mpsup_supervisor_new(out_handle: *mut mpsup_supervisor) -> mpsup_result {
    guard(|| {
        out(out_handle, "out_handle")?;
        let id = registry::insert(Supervisor::new()?);
        // SAFETY: checked non-NULL; the caller gives a writable mpsup_supervisor.
        unsafe { out_handle.write(mpsup_supervisor { id }) };
        Ok(())
    })
}

/// Force-terminates and reaps every worker, then frees the supervisor. The handle (and every
/// copy of it) is invalid afterwards; freeing it again gives `MPSUP_ERR_INVALID_HANDLE`. Safe
/// while another thread is inside a call on the same handle: a wait in progress
/// (`mpsup_wait_ready`, `mpsup_stop_groups`) ends at once, other calls finish (calls that would
/// start new work fail with `MPSUP_ERR_INVALID_HANDLE`), then the supervisor is dropped.
/// Bounded: it never waits more than 5 s after SIGKILL, and not at all for a worker the host may
/// not signal (EPERM). A worker still alive then (see
/// `mpsup_force_terminate_groups`) is left to the library's orphan reaper and the call gives
/// `MPSUP_ERR_TIMEOUT` naming it; the handle is freed all the same.
#[no_mangle]
pub extern "C" fn mpsup_supervisor_free(sup: mpsup_supervisor) -> mpsup_result {
    guard(|| {
        let supervisor = registry::remove(sup.id)?;
        supervisor.shutdown()
    })
}

/// Replaces the configuration with `groups_json`, a JSON array of group objects (see the
/// README). All or nothing: on `MPSUP_ERR_INVALID_CONFIG` the message names the JSON path (such
/// as `groups[1].argv`) and the old configuration stays in force. A new configuration applies
/// at the next start of a group; running workers are not touched. An empty array is valid.
/// Nothing but whitespace may follow the array (the message gives the line and column of what
/// does). A `bootstrap` value may nest arrays and objects at most 64 levels deep; the parsing
/// never needs more than a few KiB of the calling thread's stack, however deep the value.
#[no_mangle]
pub extern "C" fn mpsup_configure_process_groups(
    sup: mpsup_supervisor,
    groups_json: *const c_char,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let json = unsafe { text(groups_json, "groups_json") }?;
        supervisor.configure_json(json)
    })
}

/// Starts the `n` named groups in order: running workers of a group are force-terminated
/// first, then its `workers` processes are spawned. An unknown name gives
/// `MPSUP_ERR_UNKNOWN_GROUP` and spawns nothing; a spawn failure gives `MPSUP_ERR_SPAWN` and the
/// workers this call spawned are killed and reaped. A name given twice is started once.
/// `names` may be NULL only when `n` is 0.
#[no_mangle]
pub extern "C" fn mpsup_start_groups(
    sup: mpsup_supervisor,
    names_ptr: *const *const c_char,
    n: usize,
) -> mpsup_result {
    on_groups(sup, names_ptr, n, Supervisor::start_groups)
}

/// Waits up to `timeout_seconds` until every started worker is ready and writes the answer to
/// `*out_ready`. False at once when `timeout_seconds <= 0` or NaN, when there are no workers, or
/// when a worker has failed. It wakes on events, never by sleeping in steps, and does not block
/// `mpsup_snapshot_json` or `mpsup_drain_events_json` on other threads.
#[no_mangle]
pub extern "C" fn mpsup_wait_ready(
    sup: mpsup_supervisor,
    timeout_seconds: f64,
    out_ready: *mut bool,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        out(out_ready, "out_ready")?;
        let ready = supervisor.wait_ready(wait_for(timeout_seconds))?;
        // SAFETY: checked non-NULL.
        unsafe { out_ready.write(ready) };
        Ok(())
    })
}

/// Stops every running worker gracefully: `STOP DRAIN` (or `STOP NOW` when `drain_inflight` is
/// false) over its control channel, else its `stop_signal` to its process group. Waits up to
/// `graceful_timeout_seconds` (negative or NaN: `MPSUP_ERR_INVALID_ARGUMENT`). Workers still
/// alive then stay tracked in state `stopping` and the call gives `MPSUP_ERR_TIMEOUT` (`worker
/// '<id>' did not stop within graceful timeout`); `mpsup_force_terminate_groups` ends them.
#[no_mangle]
pub extern "C" fn mpsup_stop_groups(
    sup: mpsup_supervisor,
    graceful_timeout_seconds: f64,
    drain_inflight: bool,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        if graceful_timeout_seconds.is_nan() || graceful_timeout_seconds < 0.0 {
            return Err(Error::InvalidArgument(format!(
                "graceful_timeout_seconds must be zero or more, got {graceful_timeout_seconds}"
            )));
        }
        supervisor.stop_groups(wait_for(graceful_timeout_seconds), drain_inflight)
    })
}

/// Kills every worker of the `n` named groups with `SIGKILL` to its whole process group and
/// returns once all are reaped. Bounded: a worker still alive 5 s after SIGKILL (stuck in the
/// kernel) gets a `worker_unkillable` event, stays tracked, and the call gives
/// `MPSUP_ERR_TIMEOUT` naming it; so does, at once, a worker the kernel refused the signal for
/// (EPERM: the host may not signal it), which is not waited for. The groups stop: nothing of them
/// is respawned until they are started again. A configured group with no workers is a no-op; a
/// name never configured gives `MPSUP_ERR_UNKNOWN_GROUP` and kills nothing. `names` may be NULL
/// only when `n` is 0.
#[no_mangle]
pub extern "C" fn mpsup_force_terminate_groups(
    sup: mpsup_supervisor,
    names_ptr: *const *const c_char,
    n: usize,
) -> mpsup_result {
    on_groups(sup, names_ptr, n, Supervisor::force_terminate_groups)
}

/// Writes to `*out_json` a JSON object keyed by group name, each value the array of that
/// group's worker entries in index order. Free it with `mpsup_string_free`.
#[no_mangle]
pub extern "C" fn mpsup_snapshot_json(
    sup: mpsup_supervisor,
    out_json: *mut *mut c_char,
) -> mpsup_result {
    json_out(sup, out_json, |s| s.snapshot_json())
}

/// Removes up to `max_events` events (0 = all) and writes them to `*out_json` as a JSON array,
/// oldest first. Free it with `mpsup_string_free`.
#[no_mangle]
pub extern "C" fn mpsup_drain_events_json(
    sup: mpsup_supervisor,
    max_events: usize,
    out_json: *mut *mut c_char,
) -> mpsup_result {
    json_out(sup, out_json, |s| {
        let events = s.drain_events(max_events)?;
        to_json(&events)
    })
}

/// Writes to `*out_fd` a descriptor that polls readable while undrained events exist. It is
/// owned by the supervisor: do not read, write or close it; it is closed by
/// `mpsup_supervisor_free`. Across a handover (`mpsup_handover_prepare`) it stays open at the
/// same number and belongs to the adopted supervisor.
#[no_mangle]
pub extern "C" fn mpsup_event_fd(sup: mpsup_supervisor, out_fd: *mut c_int) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        out(out_fd, "out_fd")?;
        let fd = supervisor.event_fd()?.as_raw_fd();
        // SAFETY: checked non-NULL.
        unsafe { out_fd.write(fd) };
        Ok(())
    })
}

/// Frees a string returned by this library. NULL is fine.
#[no_mangle]
pub extern "C" fn mpsup_string_free(s: *mut c_char) {
    guard_void(|| {
        if !s.is_null() {
            // SAFETY: the caller passes a string this library returned, once.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// For worker processes: sends `READY` on the control channel named by `MPSUP_CONTROL_FD`.
/// `MPSUP_ERR_INVALID_ARGUMENT` when the worker has no usable control channel: the variable is
/// unset, is not a number, or names no open socket (a closed descriptor, a regular file, a
/// directory, `/dev/null`, a pipe); the message says which. `MPSUP_ERR_OS` when the write fails.
#[no_mangle]
pub extern "C" fn mpsup_worker_notify_ready() -> mpsup_result {
    guard(worker_side::notify_ready)
}

/// For worker processes: waits up to `timeout_seconds` (negative: no limit; NaN:
/// `MPSUP_ERR_INVALID_ARGUMENT`) for a stop request on the control channel. On `STOP DRAIN`:
/// `*out_stop = true, *out_drain = true`; on `STOP NOW` or end of file (the supervisor is gone):
/// `*out_stop = true, *out_drain = false`; on timeout both false. Other lines are skipped.
/// `MPSUP_ERR_INVALID_ARGUMENT` when the worker has no control channel (it then stops by
/// signal), including when `MPSUP_CONTROL_FD` names no open socket (as for
/// `mpsup_worker_notify_ready`: such a descriptor never reads as a stop); `MPSUP_ERR_OS` when
/// reading fails. Either out-pointer may be NULL.
#[no_mangle]
pub extern "C" fn mpsup_worker_wait_stop(
    timeout_seconds: f64,
    out_stop: *mut bool,
    out_drain: *mut bool,
) -> mpsup_result {
    guard(|| {
        let request = worker_side::wait_stop(timeout_seconds)?;
        let (stop, drain) = match request {
            StopRequest::None => (false, false),
            StopRequest::Drain => (true, true),
            StopRequest::Now | StopRequest::SupervisorGone => (true, false),
        };
        // SAFETY: each pointer is NULL or writable.
        unsafe {
            if !out_stop.is_null() {
                out_stop.write(stop);
            }
            if !out_drain.is_null() {
                out_drain.write(drain);
            }
        }
        Ok(())
    })
}

/// Sends `START` to every worker of the `n` named groups (groups with `start_gate`), all or
/// none: when any of them is not ready (or a group has no workers), nothing is sent and the
/// call gives `MPSUP_ERR_NOT_READY`, its message naming the missing worker ids in sorted order.
/// Workers without a control channel cannot be gated and get nothing.
#[no_mangle]
pub extern "C" fn mpsup_start_work(
    sup: mpsup_supervisor,
    names_ptr: *const *const c_char,
    n: usize,
) -> mpsup_result {
    on_groups(sup, names_ptr, n, Supervisor::start_work)
}

/// For worker processes: sends `HEARTBEAT` on the control channel (groups with
/// `heartbeat_timeout_ms`). Errors as `mpsup_worker_notify_ready`.
#[no_mangle]
pub extern "C" fn mpsup_worker_heartbeat() -> mpsup_result {
    guard(worker_side::heartbeat)
}

/// For worker processes: waits up to `timeout_seconds` (negative: no limit) for `START` (groups
/// with `start_gate`; such workers find `MPSUP_START_GATE=1` in their environment).
/// `*out_started` is false on timeout or when the supervisor closed the channel. Errors as
/// `mpsup_worker_wait_stop`.
#[no_mangle]
pub extern "C" fn mpsup_worker_wait_start(
    timeout_seconds: f64,
    out_started: *mut bool,
) -> mpsup_result {
    guard(|| {
        out(out_started, "out_started")?;
        let started = worker_side::wait_start(timeout_seconds)?;
        // SAFETY: checked non-NULL.
        unsafe { out_started.write(started) };
        Ok(())
    })
}

/// For worker processes: waits up to `timeout_seconds` (negative: no limit) for the `BOOTSTRAP`
/// line (groups with `bootstrap`; such workers find `MPSUP_BOOTSTRAP=1` in their environment)
/// and writes its compact JSON text to `*out_json` (free it with `mpsup_string_free`), or NULL
/// on timeout or when the supervisor closed the channel. Errors as `mpsup_worker_wait_stop`.
#[no_mangle]
pub extern "C" fn mpsup_worker_bootstrap_json(
    timeout_seconds: f64,
    out_json: *mut *mut c_char,
) -> mpsup_result {
    guard(|| {
        out(out_json, "out_json")?;
        let json = worker_side::bootstrap(timeout_seconds)?;
        // SAFETY: checked non-NULL.
        unsafe { out_json.write(json.map_or(std::ptr::null_mut(), into_c_string)) };
        Ok(())
    })
}

/// Configures lifecycle logging from `settings_json`, for example
/// `{"lifecycle_events": {"enabled": true, "level": "info"}, "exporters": [{"kind": "stdout"},
/// {"kind": "jsonl", "settings": {"path": "/var/log/sup.jsonl"}}]}`. Every later event also
/// becomes one JSON line `{"ts_ms", "level", "message": "bootstrap.<kind>", "fields"}` on each
/// exporter (`stdout`, `stderr`, or `jsonl` appending to a file), unless its level (failures
/// `warn`, `group_failed` `error`, the rest `info`) is below the configured one. A writer thread
/// with a bounded queue does the writing, so a slow exporter never blocks the supervisor: records
/// it cannot take are dropped and counted in a `bootstrap.log_records_dropped` record. All or
/// nothing: `MPSUP_ERR_INVALID_CONFIG` names the JSON path (nothing but whitespace may follow the
/// object); `MPSUP_ERR_OS` when a file cannot be opened. Opening never blocks: a `jsonl` path
/// that is a FIFO without a reader fails at once with `ENXIO`. The previous settings are replaced.
#[no_mangle]
pub extern "C" fn mpsup_configure_lifecycle_logging(
    sup: mpsup_supervisor,
    settings_json: *const c_char,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let json = unsafe { text(settings_json, "settings_json") }?;
        supervisor.configure_logging_json(json)
    })
}
