//! The C calls of a handover (API.md part 9): the host hands its workers to its next version.

use std::ffi::c_int;

use super::boundary::{guard, out};
use super::{mpsup_result, mpsup_supervisor, registry};
use crate::supervisor::Supervisor;

/// Prepares handing every worker to the next image of this host process (an upgrade of the
/// host without restarting a worker), and writes the number of a memfd holding the state to
/// `*out_fd`, which must not be NULL.
///
/// The steps a host takes:
/// 1. `mpsup_handover_prepare(sup, &fd)`. All change stops: no respawn, scale or rollout
///    begins; exits and events that happen meanwhile are kept for the next image. The memfd and
///    every descriptor the next image needs (the workers' pidfds and control sockets, the
///    groups' listen sockets, `reuse_port` ones included, the sd_notify socket, the captured
///    output's pipes, the keeper's socket, and the event fd if you took it with
///    `mpsup_event_fd`) are left open across `exec`; every other call on `sup` now gives
///    `MPSUP_ERR_INVALID_HANDLE`. Captured output read so far is written out first (rotating
///    files, log records); what the workers write meanwhile waits in the pipes, so no line is
///    lost or doubled.
/// 2. `exec` the new binary (the same process: it keeps its pid, so the workers stay its
///    children), passing the number, by convention in the environment variable
///    `MPSUP_HANDOVER_FD`. Keep the library's descriptors open: do not close descriptors you
///    did not open before the `exec`.
/// 3. If the `exec` fails: `mpsup_handover_abort(sup)`; the handle is live again and nothing
///    was lost.
/// 4. In the new image: `mpsup_supervisor_adopt(fd, &sup)`. An event fd you took before the
///    prepare is the adopted supervisor's, at the same number, and polls readable while events
///    wait (`supervisor_adopted` at least): a poll loop that registers that number again goes
///    on working (`mpsup_event_fd` gives the same number).
///
/// Workers in cgroups of their own (the default where writable, and limits) stay in them: after
/// the adoption a forced kill still reaches their whole cgroup, an exit removes it, the limits
/// stay in force (an OOM kill is still `oom_killed`). If the host dies between prepare and
/// adopt, the keeper kills every worker (and their cgroups) as at any host death. Changes in
/// progress (a rollout, a worker being stopped, a reload, a replacement, groups waiting for
/// their dependencies) cross with their timers and go on in the next image; spawns in flight
/// are waited for (they take milliseconds). `MPSUP_ERR_NOT_READY` only when a spawn has not arrived within 2 s or a
/// control line to a worker is still on its way: try again.
#[no_mangle]
pub extern "C" fn mpsup_handover_prepare(
    sup: mpsup_supervisor,
    out_fd: *mut c_int,
) -> mpsup_result {
    guard(|| {
        let supervisor = registry::get(sup.id)?;
        out(out_fd, "out_fd")?;
        let fd = supervisor.handover_prepare()?;
        // SAFETY: checked non-NULL.
        unsafe { out_fd.write(fd) };
        Ok(())
    })
}

/// Undoes `mpsup_handover_prepare` when the `exec` failed: the memfd is closed, the library's
/// descriptors are close-on-exec again, and the handle works on as before (what happened
/// meanwhile is handled now). `MPSUP_ERR_INVALID_ARGUMENT` when no handover is prepared.
/// `mpsup_supervisor_free` after a prepare aborts it first.
#[no_mangle]
pub extern "C" fn mpsup_handover_abort(sup: mpsup_supervisor) -> mpsup_result {
    guard(|| registry::get(sup.id)?.handover_abort())
}

/// In the host's new image: rebuilds the supervisor that `mpsup_handover_prepare` wrote into
/// memfd `fd`, and writes its handle to `*out`, which must not be NULL. The workers keep their
/// pids, control sockets, listen sockets, captured output (pipes, tails, rotating files) and
/// cgroups; the event fd, if the host took it, keeps its number; the memfd is closed; every
/// descriptor is close-on-exec again; exits that happened during the `exec` are seen now and go
/// through the restart policy as usual; timers resume with the time that passed; undrained
/// events are still there, followed by `supervisor_adopted` (`workers`, `exited_meanwhile`).
///
/// A state written by a library version whose state format this one cannot read is refused
/// with `MPSUP_ERR_INVALID_ARGUMENT` naming both versions, and its workers are killed (as at the
/// host's death), never left without a supervisor.
#[no_mangle]
pub extern "C" fn mpsup_supervisor_adopt(
    fd: c_int,
    out_handle: *mut mpsup_supervisor,
) -> mpsup_result {
    guard(|| {
        out(out_handle, "out")?;
        let id = registry::insert(Supervisor::adopt(fd)?);
        // SAFETY: checked non-NULL; the caller gives a writable mpsup_supervisor.
        unsafe { out_handle.write(mpsup_supervisor { id }) };
        Ok(())
    })
}
