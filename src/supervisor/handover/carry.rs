//! What crosses the `exec` besides the workers' own descriptors (format 2): captured output
//! (the pipes' read ends, what was read of them and not yet a line, the tails; the rotating
//! files are flushed and opened again at their size by the next image) and the event fd, kept
//! at its number when the host has it. The listen sockets (with `reuse_port` too) and the
//! cgroups cross with `Listeners` and `Lifeline`.
//!
//! No line is lost or doubled: the monitor is stopped before anything is written, so a line is
//! either read (and in the rotating file once the file writer ended, or a log record once the
//! log writer ended, or carried as the unfinished line) or still in its pipe, which the next
//! image reads on.

use std::os::fd::RawFd;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::os::handover::take_inherited;
use crate::runtime::engine::{Engine, Shared};
use crate::runtime::output::CapturesState;
use crate::sync::lock;

use super::state::Handover;

/// Ends the rotating-file writer once it has written every byte the monitor read (with the
/// monitor stopped): the next image opens the files again and goes on at their size. The
/// writer is waited for with no lock held.
pub fn flush_files(shared: &Arc<Shared>) {
    let files = {
        let engine = shared.lock();
        let taken = lock(&engine.io.captures).take_files();
        taken
    };
    drop(files);
}

/// The captured output and the event fd's number (if the host has it), for the state.
pub fn export(engine: &Engine) -> (CapturesState, Option<RawFd>) {
    (lock(&engine.io.captures).export(), engine.io.out.export())
}

/// The descriptors of `state` that this module carries: left open across the `exec`.
pub fn descriptors(state: &Handover) -> Vec<RawFd> {
    let pipes = state.outputs.watched.iter().flat_map(|w| &w.pipes);
    let mut fds: Vec<RawFd> = pipes.filter_map(|p| p.fd).collect();
    fds.extend(state.event_fd);
    fds
}

/// The same numbers in a state as JSON (`adopt::refuse`, which closes them).
pub fn descriptors_of(value: &serde_json::Value) -> Vec<i64> {
    let mut fds = Vec::new();
    let watched = value.pointer("/outputs/watched").and_then(|w| w.as_array());
    for w in watched.into_iter().flatten() {
        let pipes = w["pipes"].as_array().into_iter().flatten();
        fds.extend(pipes.filter_map(|p| p["fd"].as_i64()));
    }
    fds.extend(value.get("event_fd").and_then(|f| f.as_i64()));
    fds
}

/// Takes over the captured output and the event fd in the adopting supervisor (its workers'
/// processes registered already): the pipes are watched again, the event fd replaces the one
/// `assemble` made.
pub fn resume(engine: &mut Engine, outputs: CapturesState, event_fd: Option<RawFd>) -> Result<()> {
    lock(&engine.io.captures)
        .resume(outputs, take_inherited)
        .map_err(|e| Error::os("handover: captured output", e))?;
    if let Some(fd) = event_fd {
        let fd = take_inherited(fd).map_err(|e| Error::os("handover: the event fd", e))?;
        engine
            .io
            .out
            .resume(fd)
            .map_err(|e| Error::os("handover: the event fd", e))?;
    }
    Ok(())
}
