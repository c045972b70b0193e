//! The calls of the engine: status, live scaling and rolling restarts. Each changes the target
//! the library keeps (or reads it) and returns at once.

use std::ffi::c_char;

use super::boundary::{guard, names, text};
use super::{json_out, mpsup_result, mpsup_supervisor, registry, to_json};
use crate::config::RestartOptions;

/// Writes to `*out_json` the status of every group and what holds on this host:
/// `{"groups": {NAME: {"started", "failed", "generation", "target", "running", "ready",
/// "rollout", "listen"}}, "guarantees": {"exit_watch", "spawn", "host_death", "tree_kill",
/// "parallel_spawn", "reuse_port_handoff", "limits"}}`. `rollout` is null, or
/// `{"generation", "state"` (`"running"` or `"failed"`), `"replaced", "remaining", "worker_id",
/// "reason"}`. `listen` is
/// `[{"name", "address"}]` of the group's open listen sockets (the bound port of port 0).
/// `guarantees` never claims more than holds: `exit_watch` is `"pidfd"` or `"poll"`,
/// `host_death` names the mechanism that kills workers when the host dies or is `"none"`,
/// `tree_kill` is `"cgroup"` or `"process_group"`, `reuse_port_handoff` is `"migrate"` or
/// `"reset"`, `limits` (which cgroups hold the groups' limit keys) is `"cgroup2"`, `"cgroup1"`
/// or `"none"`. Free it with `mpsup_string_free`.
#[no_mangle]
pub extern "C" fn mpsup_status_json(
    sup: mpsup_supervisor,
    out_json: *mut *mut c_char,
) -> mpsup_result {
    json_out(sup, out_json, |s| to_json(&s.status()?))
}

/// Sets the worker count of the started group `name` (0 to 4096) and returns at once. Up: new
/// workers take the next indices and the group's running configuration, and count for
/// `mpsup_wait_ready`. Down: the highest indices are stopped gracefully (`STOP DRAIN`, or
/// `stop_signal`) and killed when still alive after the group's `stop_timeout_ms`; none is
/// respawned. Emits `group_scaled`. `MPSUP_ERR_UNKNOWN_GROUP` for a name never configured;
/// `MPSUP_ERR_INVALID_ARGUMENT` for a group that is not started, has failed, or is being rolled
/// out, and for a count above 4096.
#[no_mangle]
pub extern "C" fn mpsup_scale_group(
    sup: mpsup_supervisor,
    name: *const c_char,
    workers: u32,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let name = unsafe { text(name, "name") }?;
        supervisor.scale_group(name, workers)
    })
}

/// Starts a rolling restart of each of the `n` named started groups to its current
/// configuration and returns at once. `options_json` is NULL (the defaults) or
/// `{"max_surge": 1, "max_unavailable": 0, "ready_timeout_ms": 30000}` (`ready_timeout_ms` 0:
/// no limit). Slot by slot a new
/// worker (same `worker_id`, next `generation`) is started, and the old one is stopped
/// gracefully only once the new one is ready; never more than `max_surge` workers above the
/// target or `max_unavailable` below it (both 0 is `MPSUP_ERR_INVALID_ARGUMENT`). A new worker
/// that exits or is not ready within `ready_timeout_ms` halts its group's rollout: it is killed,
/// the old workers stay, `rollout_failed`. Events: `rollout_started`, `worker_replaced`,
/// `rollout_finished`. `mpsup_wait_ready` waits for rollouts in progress and gives false when
/// one failed. All or nothing: a name never configured gives `MPSUP_ERR_UNKNOWN_GROUP`, one not
/// started (or already rolling out) `MPSUP_ERR_INVALID_ARGUMENT`, a configuration whose limits
/// (`memory_max`, ...) this host cannot hold `MPSUP_ERR_UNSUPPORTED`, and nothing begins.
#[no_mangle]
pub extern "C" fn mpsup_restart_groups(
    sup: mpsup_supervisor,
    names_ptr: *const *const c_char,
    n: usize,
    options_json: *const c_char,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        // SAFETY: the caller passes `n` string pointers.
        let names = unsafe { names(names_ptr, n) }?;
        let options = if options_json.is_null() {
            RestartOptions::default()
        } else {
            // SAFETY: a NUL-terminated string.
            RestartOptions::parse(unsafe { text(options_json, "options_json") }?)?
        };
        supervisor.restart_groups(&names, &options)
    })
}
